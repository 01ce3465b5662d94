//! How long a change takes to reach another instance: two instances on one database (and one
//! Redis, or none), a link cached on both; N times, `PATCH` its target on the first, then ask
//! the second for it in a tight loop until it redirects to the new target. Prints the delay
//! from the `PATCH`'s answer to the second instance's first new answer: median, p90, p99, max.
//!
//!   loadtest/change_latency.sh            (makes the database and the key, runs this)
//!
//! or by hand, against a migrated database that is otherwise unused:
//!
//!   cargo build --release --example change_latency
//!   DATABASE_URL=... [REDIS_URL=redis://127.0.0.1:6379 | REDIS_CLUSTER_NODES=host:port,...] \
//!     target/release/examples/change_latency ROUNDS

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use shortener::Application;
use shortener::config::{Cli, Command};
use shortener::domain::{ApiKey, KeyScope};
use shortener::storage::{PgTarget, create_api_key};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest wait for one change before the run gives up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);

/// One request on a connection of its own; answers the status line and the `Location`.
async fn send(addr: SocketAddr, method: &str, path: &str, key: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: sho.rt\r\nConnection: close\r\n\
         Authorization: Bearer {key}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

fn location(answer: &str) -> Option<&str> {
    answer
        .lines()
        .find_map(|line| line.strip_prefix("location: "))
        .map(str::trim)
}

/// Which Redis the instances share.
#[derive(Clone, Copy)]
enum Redis<'a> {
    Single(&'a str),
    Cluster(&'a str),
    None,
}

async fn instance(database_url: &str, redis: Redis<'_>) -> (SocketAddr, Application) {
    let mut argv = vec![
        "shortener",
        "serve",
        "--database-url",
        database_url,
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--public-base-url",
        "http://sho.rt",
        "--rate-limit-create",
        "off",
        "--rate-limit-redirect",
        "off",
        "--code-key",
        "change-latency-example-key",
    ];
    match redis {
        Redis::Single(url) => argv.extend(["--redis-url", url]),
        Redis::Cluster(seeds) => argv.extend(["--redis-cluster-nodes", seeds]),
        Redis::None => {}
    }
    if !matches!(redis, Redis::None) {
        argv.extend(["--redis-key-prefix", "change-latency:"]);
    }
    let Command::Serve(args) = Cli::try_parse_from(argv).unwrap().command else {
        unreachable!()
    };
    let application = Application::build(args.parse().unwrap()).await.unwrap();
    (application.local_addr(), application)
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(100);
    let database_url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let (single, cluster) = (
        std::env::var("REDIS_URL").ok(),
        std::env::var("REDIS_CLUSTER_NODES").ok(),
    );
    let redis = match (&single, &cluster) {
        (Some(url), _) => Redis::Single(url),
        (None, Some(seeds)) => Redis::Cluster(seeds),
        (None, None) => Redis::None,
    };
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).expect("random bytes");
    let key = ApiKey::from_random(random);
    create_api_key(
        &PgTarget::parse(&database_url).unwrap(),
        "change-latency",
        KeyScope::Links,
        key.digest(),
    )
    .await
    .unwrap();
    let key = key.reveal().to_owned();
    let (first, a) = instance(&database_url, redis).await;
    let (second, b) = instance(&database_url, redis).await;
    let (stop_a, stop_b) = (a.stop_token(), b.stop_token());
    let served = tokio::spawn(async move {
        let _ = tokio::join!(a.run_until_stopped(), b.run_until_stopped());
    });
    // The key was made before the instances, so both read it at start-up.
    let made = send(
        first,
        "POST",
        "/shorten",
        &key,
        r#"{"url": "https://example.com/v0"}"#,
    )
    .await;
    let code = made
        .split("\"code\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no code in {made}"))
        .to_owned();
    let path = format!("/{code}");
    // Cached on the second.
    assert!(
        send(second, "GET", &path, &key, "")
            .await
            .starts_with("HTTP/1.1 302")
    );

    let mut delays = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        let target = format!("https://example.com/v{round}");
        let edit = format!(r#"{{"url": "{target}"}}"#);
        let answer = send(first, "PATCH", &path, &key, &edit).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let changed = Instant::now();
        loop {
            let seen = send(second, "GET", &path, &key, "").await;
            if location(&seen) == Some(target.as_str()) {
                break;
            }
            assert!(
                changed.elapsed() < GIVE_UP_AFTER,
                "round {round} never arrived"
            );
        }
        delays.push(changed.elapsed());
    }
    delays.sort();
    let at = |share: f64| delays[((delays.len() - 1) as f64 * share).round() as usize];
    println!(
        "change_latency: {rounds} changes, {}: median {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        match redis {
            Redis::Single(_) => "one Redis node (pub/sub)",
            Redis::Cluster(_) => "a Redis Cluster (sharded pub/sub)",
            Redis::None => "no Redis (the feed alone)",
        },
        at(0.5).as_secs_f64() * 1e3,
        at(0.9).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        delays[delays.len() - 1].as_secs_f64() * 1e3,
    );
    stop_a.cancel();
    stop_b.cancel();
    let _ = served.await;
}
