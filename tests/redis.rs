//! The Redis tier against real Redis (the local single node on :6379 and the stack's
//! cluster on :7001-7006): write-through on create, fill-back on a Postgres hit, a fresh
//! instance served from Redis with the rows gone from Postgres, no negative entries in Redis,
//! and a Redis that does not answer costing nothing but opening the breaker.
//!
//! Each test uses a key prefix of its own, so tests (and anything else on that Redis) never
//! see each other's keys.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{TestApp, eventually, send, spawn_app, spawn_app_on};

#[derive(Debug, Clone, Copy)]
enum Topology {
    Single,
    Cluster,
}

fn single_url() -> String {
    common::redis_single_url()
}

fn cluster_nodes() -> String {
    common::redis_cluster_nodes()
}

fn unique_prefix() -> String {
    common::unique_redis_prefix()
}

fn redis_flags(topology: Topology, prefix: &str) -> Vec<String> {
    let (flag, value) = match topology {
        Topology::Single => ("--redis-url", single_url()),
        Topology::Cluster => ("--redis-cluster-nodes", cluster_nodes()),
    };
    vec![
        flag.into(),
        value,
        "--redis-key-prefix".into(),
        prefix.into(),
        "--redis-ttl".into(),
        "30s".into(),
    ]
}

/// What redis-cli prints for `args` (`-c` follows cluster redirections), trimmed.
fn redis_cli(topology: Topology, args: &[&str]) -> String {
    let mut command = Command::new("redis-cli");
    match topology {
        Topology::Single => command.args(["-u", &single_url()]),
        Topology::Cluster => {
            let seed = cluster_nodes();
            let (host, port) = seed.split(',').next().unwrap().rsplit_once(':').unwrap();
            command.args(["-c", "-h", host, "-p", port])
        }
    };
    let output = command
        .arg("--raw")
        .args(args)
        .output()
        .expect("redis-cli runs");
    assert!(output.status.success(), "redis-cli: {output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .trim_end_matches('\n')
        .to_owned()
}

/// What Redis holds under `key`.
fn redis_get(topology: Topology, key: &str) -> Option<String> {
    let value = redis_cli(topology, &["GET", key]);
    (!value.is_empty()).then_some(value)
}

/// Seconds `key` has left to live in Redis (-1: no expiry, -2: no such key).
fn redis_ttl(topology: Topology, key: &str) -> i64 {
    redis_cli(topology, &["TTL", key]).parse().unwrap()
}

async fn spawn_with_redis(db_url: &str, topology: Topology, prefix: &str) -> TestApp {
    let flags = redis_flags(topology, prefix);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    spawn_app_on(db_url, &flags).await
}

async fn tiers_fill_and_serve(topology: Topology) {
    let db_url = common::fresh_database().await;
    let prefix = unique_prefix();
    let first = spawn_with_redis(&db_url, topology, &prefix).await;

    // Written through before the 201.
    let code = first.create("https://example.com/through").await;
    let stored = redis_get(topology, &format!("{prefix}{code}")).expect("written through");
    assert!(
        stored.ends_with("\nhttps://example.com/through"),
        "{stored}"
    );

    // Filled back after a Postgres hit (in the background).
    let db = first.db().await;
    db.execute(
        "INSERT INTO links (id, code, target_url, created_at) \
         VALUES (77, 'made-in-sql', 'https://example.com/sql', now())",
        &[],
    )
    .await
    .unwrap();
    // HEAD: no click, which could not be written once the row is deleted below.
    let head = send(first.addr, "HEAD", "/made-in-sql", &[], b"").await;
    assert_eq!(head.status, 302);
    let filled = eventually(Duration::from_secs(5), || async {
        redis_get(topology, &format!("{prefix}made-in-sql")).is_some()
    })
    .await;
    assert!(filled, "not filled back into Redis");
    // Both live for SHORTENER_REDIS_TTL (30 s here).
    for key in [format!("{prefix}{code}"), format!("{prefix}made-in-sql")] {
        let ttl = redis_ttl(topology, &key);
        assert!((1..=30).contains(&ttl), "{key}: TTL {ttl}");
    }

    // Unknown codes are never written to Redis.
    first.get("/never-made").await.assert_problem(404);
    assert_eq!(redis_get(topology, &format!("{prefix}never-made")), None);

    // A fresh instance (nothing in its memory), the rows gone from Postgres: Redis serves.
    db.batch_execute("DELETE FROM links").await.unwrap();
    let second = spawn_with_redis(&db_url, topology, &prefix).await;
    for (path, target) in [
        (format!("/{code}"), "https://example.com/through"),
        ("/made-in-sql".to_owned(), "https://example.com/sql"),
    ] {
        // HEAD: a click on a link no longer in Postgres could never be written.
        let response = send(second.addr, "HEAD", &path, &[], b"").await;
        assert_eq!(response.status, 302, "{path}: {}", response.text());
        assert_eq!(response.header("location"), Some(target));
    }
    let ready = send(second.admin, "GET", "/readyz", &[], b"").await.json();
    assert_eq!(ready["tiers"]["redis"], "up", "{ready}");
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test]
async fn a_single_redis_is_written_through_filled_back_and_served_from() {
    tiers_fill_and_serve(Topology::Single).await;
}

#[tokio::test]
async fn a_redis_cluster_is_written_through_filled_back_and_served_from() {
    tiers_fill_and_serve(Topology::Cluster).await;
}

#[tokio::test]
async fn a_redis_that_is_not_there_costs_redirects_little_and_opens_the_breaker() {
    // Nothing listens on port 1.
    let app = spawn_app(&[
        "--redis-url",
        "redis://127.0.0.1:1",
        "--redis-command-timeout",
        "50ms",
    ])
    .await;
    let started = Instant::now();
    let code = app.create("https://example.com/no-redis").await;
    for _ in 0..10 {
        assert_eq!(app.get(&format!("/{code}")).await.status, 302);
    }
    app.get("/not-there").await.assert_problem(404);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "12 requests took {:?}",
        started.elapsed()
    );
    let opened = eventually(Duration::from_secs(10), || async {
        let body = send(app.admin, "GET", "/readyz", &[], b"").await.json();
        body["tiers"]["redis"] == "down"
    })
    .await;
    assert!(opened, "the breaker never opened");
    // Postgres still answers, so the instance stays ready.
    assert_eq!(
        send(app.admin, "GET", "/readyz", &[], b"").await.status,
        200
    );
    app.shutdown().await;
}

#[tokio::test]
async fn disable_deletes_the_redis_key_so_a_fresh_instance_answers_410_at_once() {
    let db_url = common::fresh_database().await;
    let prefix = unique_prefix();
    let app = spawn_with_redis(&db_url, Topology::Single, &prefix).await;
    let code = app.create("https://example.com/phish").await;
    assert!(redis_get(Topology::Single, &format!("{prefix}{code}")).is_some());

    let output = Command::new(env!("CARGO_BIN_EXE_shortener"))
        .env_clear()
        .env("DATABASE_URL", &db_url)
        .env("REDIS_URL", single_url())
        .env("SHORTENER_REDIS_KEY_PREFIX", &prefix)
        .args(["disable", &code])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        redis_get(Topology::Single, &format!("{prefix}{code}")),
        None
    );
    let fresh = spawn_with_redis(&db_url, Topology::Single, &prefix).await;
    fresh.get(&format!("/{code}")).await.assert_problem(410);
    app.shutdown().await;
    fresh.shutdown().await;
}
