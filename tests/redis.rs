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

use common::redis::{Topology, redis_get, redis_ttl, spawn_with_redis, store_settings};
use common::{eventually, send, spawn_app};

async fn tiers_fill_and_serve(topology: Topology) {
    let db_url = common::fresh_database().await;
    let prefix = common::unique_redis_prefix();
    let first = spawn_with_redis(&db_url, topology, &prefix, &[]).await;

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
    let second = spawn_with_redis(&db_url, topology, &prefix, &[]).await;
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
async fn disable_writes_the_new_version_into_redis_so_a_fresh_instance_answers_410_at_once() {
    let db_url = common::fresh_database().await;
    let prefix = common::unique_redis_prefix();
    let app = spawn_with_redis(&db_url, Topology::Single, &prefix, &[]).await;
    let code = app.create("https://example.com/phish").await;
    assert!(redis_get(Topology::Single, &format!("{prefix}{code}")).is_some());

    let output = Command::new(env!("CARGO_BIN_EXE_shortener"))
        .env_clear()
        .env("DATABASE_URL", &db_url)
        .env("REDIS_URL", common::redis_single_url())
        .env("SHORTENER_REDIS_KEY_PREFIX", &prefix)
        .args(["disable", &code])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    // Not deleted (a late fill of the old version could bring it back): replaced by version 2,
    // disabled (`v2`, then the value: format, id, created, expires, disabled, …).
    let stored = redis_get(Topology::Single, &format!("{prefix}{code}")).unwrap();
    let fields: Vec<&str> = stored.lines().collect();
    assert_eq!(fields[0], "v2", "{stored}");
    assert!(!fields[5].is_empty(), "disabled_at is set: {stored}");
    let fresh = spawn_with_redis(&db_url, Topology::Single, &prefix, &[]).await;
    fresh.get(&format!("/{code}")).await.assert_problem(410);
    app.shutdown().await;
    fresh.shutdown().await;
}

/// A late write of an older version (a fill that read before a change) never replaces a newer
/// one: the compare-version script, on either topology.
async fn an_older_version_never_replaces_a_newer_one(topology: Topology) {
    use shortener::storage::RedisStore;
    let prefix = common::unique_redis_prefix();
    let settings = store_settings(topology, &prefix);
    let tasks = tokio_util::task::TaskTracker::new();
    let store = RedisStore::connect(&settings, tasks).unwrap();
    assert!(store.wait_connected(Duration::from_secs(5)).await);
    let ttl = Duration::from_secs(30);
    assert!(
        store
            .put_link_if_newer("abc", 2, b"two", ttl)
            .await
            .unwrap()
    );
    assert!(
        !store
            .put_link_if_newer("abc", 1, b"one", ttl)
            .await
            .unwrap()
    );
    assert!(
        !store
            .put_link_if_newer("abc", 2, b"two again", ttl)
            .await
            .unwrap()
    );
    let (version, value) = store.get_link("abc").await.unwrap().unwrap();
    assert_eq!((version, &value[..]), (2, &b"two"[..]));
    assert!(
        store
            .put_link_if_newer("abc", 3, b"three", ttl)
            .await
            .unwrap()
    );
    assert_eq!(
        redis_get(topology, &format!("{prefix}abc")).as_deref(),
        Some("v3\nthree")
    );
    assert!(
        redis_ttl(topology, &format!("{prefix}abc")) > 0,
        "it expires"
    );
    store.quit().await;
}

#[tokio::test]
async fn a_single_redis_never_takes_an_older_version_over_a_newer_one() {
    an_older_version_never_replaces_a_newer_one(Topology::Single).await;
}

#[tokio::test]
async fn a_redis_cluster_never_takes_an_older_version_over_a_newer_one() {
    an_older_version_never_replaces_a_newer_one(Topology::Cluster).await;
}
