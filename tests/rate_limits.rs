//! Per-client rate limits (the README's rate-limit settings; docs/requirements.md B6, B7): exact bursts per IP
//! and per IPv6 /64, the client a trusted proxy names (every `X-Forwarded-For` line), spoofed
//! headers from untrusted peers, 404s counting toward the redirect limit, the IETF RateLimit
//! fields on every non-3xx answer of a limited route, and the create limit shared by several
//! instances through one Redis (single node and Cluster), per instance when Redis is away.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TestApp, send, spawn_app, spawn_app_on};

/// A refill too slow to matter within a test: exactly the burst passes.
const SLOW: &str = "60/h,burst=100";

async fn get_as(app: &TestApp, path: &str, forwarded: &[&str]) -> common::TestResponse {
    let headers: Vec<(&str, &str)> = forwarded.iter().map(|f| ("X-Forwarded-For", *f)).collect();
    send(app.addr, "GET", path, &headers, b"").await
}

fn assert_limited(response: &common::TestResponse, policy: &str) {
    let problem = response.assert_problem(429);
    assert_eq!(problem["type"], "urn:shortener:problem:rate-limited");
    let retry: u64 = response.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(response.header("ratelimit-policy"), Some(policy));
    let state = response.header("ratelimit").unwrap();
    assert!(
        state.starts_with(&policy[..policy.find(';').unwrap()]) && state.contains(";r=0;"),
        "{state}"
    );
}

#[tokio::test]
async fn exactly_the_burst_of_redirects_passes_per_client_and_404s_count() {
    let app = spawn_app(&["--rate-limit-redirect", SLOW]).await;
    let mut passed = 0;
    for _ in 0..101 {
        let response = app.get("/no-such-code").await;
        match response.status {
            404 => {
                passed += 1;
                // A non-3xx answer of a limited route says where the client stands.
                assert_eq!(
                    response.header("ratelimit-policy"),
                    Some("\"redirect\";q=100;w=6000")
                );
                let remaining = 100 - passed;
                assert!(
                    response
                        .header("ratelimit")
                        .unwrap()
                        .starts_with(&format!("\"redirect\";r={remaining};t=")),
                    "{:?}",
                    response.header("ratelimit")
                );
            }
            429 => assert_limited(&response, "\"redirect\";q=100;w=6000"),
            other => panic!("{other}"),
        }
    }
    assert_eq!(passed, 100);
    // Paths that can name no link count too (a scanner's garbage).
    assert_eq!(app.get("/a/b/c").await.status, 429);
    // Other routes have limits of their own.
    assert_eq!(app.get("/openapi.json").await.status, 200);
    app.shutdown().await;
}

#[tokio::test]
async fn redirects_carry_no_rate_limit_fields_and_creates_and_stats_do() {
    let app = spawn_app(&[
        "--rate-limit-redirect",
        SLOW,
        "--rate-limit-create",
        "20/s,burst=40",
        "--rate-limit-stats",
        SLOW,
    ])
    .await;
    let created = app
        .shorten(r#"{"url": "https://example.com/fields"}"#)
        .await;
    assert_eq!(created.status, 201);
    assert_eq!(
        created.header("ratelimit-policy"),
        Some("\"create\";q=40;w=2")
    );
    assert!(
        created
            .header("ratelimit")
            .unwrap()
            .starts_with("\"create\";r=39;t=")
    );
    let code = created.json()["code"].as_str().unwrap().to_owned();
    let redirect = app.get(&format!("/{code}")).await;
    assert_eq!(redirect.status, 302);
    assert_eq!(redirect.header("ratelimit"), None);
    assert_eq!(redirect.header("ratelimit-policy"), None);
    let stats = app.get(&format!("/{code}/stats")).await;
    assert_eq!(stats.status, 200);
    assert_eq!(
        stats.header("ratelimit-policy"),
        Some("\"stats\";q=100;w=6000")
    );
    app.shutdown().await;
}

#[tokio::test]
async fn creates_are_limited_per_client() {
    let app = spawn_app(&["--rate-limit-create", "60/h,burst=5"]).await;
    for n in 0..5 {
        let body = format!(r#"{{"url": "https://example.com/{n}"}}"#);
        assert_eq!(app.shorten(&body).await.status, 201);
    }
    let refused = app.shorten(r#"{"url": "https://example.com/six"}"#).await;
    assert_limited(&refused, "\"create\";q=5;w=300");
    assert_eq!(
        app.count("links").await,
        5,
        "a refused create stores nothing"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn spoofed_forwarded_for_from_an_untrusted_peer_is_one_client() {
    // B6: no trusted proxies, so X-Forwarded-For proves nothing.
    let app = spawn_app(&["--rate-limit-redirect", SLOW]).await;
    let mut passed = 0;
    for n in 0..110 {
        let spoofed = format!("198.51.100.{}", n % 250);
        if get_as(&app, "/nope", &[&spoofed]).await.status == 404 {
            passed += 1;
        }
    }
    assert_eq!(passed, 100);
    app.shutdown().await;
}

/// One create on a keep-alive connection, with `forwarded` as its `X-Forwarded-For`: the status.
async fn create_on(stream: &mut tokio::net::TcpStream, forwarded: &str, n: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = format!(r#"{{"url": "https://example.com/b6/{n}"}}"#);
    let request = format!(
        "POST /shorten HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         X-Forwarded-For: {forwarded}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = stream.read(&mut chunk).await.unwrap();
        assert!(read > 0, "the connection closed");
        answer.extend_from_slice(&chunk[..read]);
        let Some(head) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let response = common::parse_response(&answer);
        let length: usize = response
            .header("content-length")
            .map_or(0, |length| length.parse().unwrap());
        if answer.len() >= head + 4 + length {
            return response.status;
        }
    }
}

/// B6 at its rate: 10,000 creates from one untrusted peer, each with an `X-Forwarded-For` of
/// its own, are limited as that one peer: what passes is the burst plus what the rate refilled
/// while they ran, within 1 %, and nothing else is stored.
#[tokio::test]
async fn ten_thousand_creates_with_forged_forwarded_for_are_one_client() {
    const CREATES: usize = 10_000;
    const CONNECTIONS: usize = 20;
    let app = spawn_app(&["--rate-limit-create", "60/m,burst=1000"]).await;
    let started = Instant::now();
    let mut senders = Vec::new();
    for connection in 0..CONNECTIONS {
        let addr = app.addr;
        senders.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut rng = fastrand::Rng::with_seed(connection as u64);
            let (mut created, mut limited) = (0usize, 0usize);
            for n in (connection..CREATES).step_by(CONNECTIONS) {
                let forged = std::net::Ipv4Addr::from(rng.u32(..)).to_string();
                match create_on(&mut stream, &forged, n).await {
                    201 => created += 1,
                    429 => limited += 1,
                    other => panic!("create {n}: {other}"),
                }
            }
            (created, limited)
        }));
    }
    let (mut created, mut limited) = (0, 0);
    for sender in senders {
        let (c, l) = sender.await.unwrap();
        created += c;
        limited += l;
    }
    // The burst, and one a second refilled meanwhile.
    let allowed = 1000.0 + started.elapsed().as_secs_f64();
    assert_eq!(created + limited, CREATES);
    assert!(
        created as f64 >= 1000.0 * 0.99 && created as f64 <= allowed * 1.01,
        "{created} created, {allowed:.0} allowed"
    );
    assert_eq!(app.count("links").await, created as i64);
    app.shutdown().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_limited_and_an_ipv6_64_is_one_client() {
    let app = spawn_app(&[
        "--rate-limit-redirect",
        SLOW,
        "--trusted-proxies",
        "127.0.0.1/32",
    ])
    .await;
    // Addresses all over one /64 are one client.
    let mut passed = 0;
    for n in 0..110 {
        let address = format!("2001:db8:1:2:{n:x}::{:x}", n * 7);
        if get_as(&app, "/nope", &[&address]).await.status == 404 {
            passed += 1;
        }
    }
    assert_eq!(passed, 100);
    // Another /64, and another IPv4 client, are not.
    assert_eq!(
        get_as(&app, "/nope", &["2001:db8:1:3::1"]).await.status,
        404
    );
    assert_eq!(get_as(&app, "/nope", &["203.0.113.9"]).await.status, 404);
    // The right-most untrusted address of all the lines is the client: a spoofed first line
    // does not make a new one.
    for n in 0..99 {
        let spoofed = format!("192.0.2.{n}");
        let response = get_as(&app, "/nope", &[&spoofed, "203.0.113.9"]).await;
        assert_eq!(response.status, 404, "request {n}");
    }
    assert_eq!(
        get_as(&app, "/nope", &["192.0.2.200", "203.0.113.9"])
            .await
            .status,
        429
    );
    app.shutdown().await;
}

async fn create_limit_mode(app: &TestApp) -> String {
    let body = send(app.admin, "GET", "/readyz", &[], b"").await.json();
    body["create_limit"].as_str().unwrap_or_default().to_owned()
}

/// Three instances on one database and one Redis; `attempts` creates spread over them from
/// one client; answers how many were accepted.
async fn creates_across_three(
    redis_flag: &str,
    redis: &str,
    limit: &str,
    attempts: usize,
) -> (usize, Vec<String>) {
    let db_url = common::fresh_database().await;
    let prefix = common::unique_redis_prefix();
    let flags = [
        redis_flag,
        redis,
        "--redis-key-prefix",
        &prefix,
        "--redis-command-timeout",
        "50ms",
        "--rate-limit-create",
        limit,
    ];
    // Built side by side: each may wait a second for a Redis that does not answer.
    let (first, second, third) = tokio::join!(
        spawn_app_on(&db_url, &flags),
        spawn_app_on(&db_url, &flags),
        spawn_app_on(&db_url, &flags),
    );
    let apps = [first, second, third].map(Arc::new);
    let mut modes = Vec::new();
    for app in &apps {
        modes.push(create_limit_mode(app).await);
    }
    let mut accepted = 0;
    for n in 0..attempts {
        let body = format!(r#"{{"url": "https://example.com/{n}"}}"#);
        let started = Instant::now();
        let response = apps[n % 3].shorten(&body).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a create waited {:?}",
            started.elapsed()
        );
        match response.status {
            201 => accepted += 1,
            429 => {}
            other => panic!("{other}: {}", response.text()),
        }
    }
    for app in apps {
        Arc::into_inner(app).unwrap().shutdown().await;
    }
    (accepted, modes)
}

#[tokio::test]
async fn three_instances_share_one_create_limit_through_a_redis_node() {
    let (accepted, modes) = creates_across_three(
        "--redis-url",
        &common::redis_single_url(),
        "60/h,burst=30",
        45,
    )
    .await;
    assert_eq!(modes, ["shared", "shared", "shared"]);
    assert_eq!(accepted, 30, "one bucket for the client across the three");
}

#[tokio::test]
async fn three_instances_share_one_create_limit_through_a_redis_cluster() {
    let (accepted, modes) = creates_across_three(
        "--redis-cluster-nodes",
        &common::redis_cluster_nodes(),
        "60/h,burst=30",
        45,
    )
    .await;
    assert_eq!(modes, ["shared", "shared", "shared"]);
    assert_eq!(accepted, 30, "one bucket for the client across the three");
}

#[tokio::test]
async fn with_redis_unreachable_each_instance_limits_on_its_own_never_not_at_all() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", closed.local_addr().unwrap());
    drop(closed);
    let (accepted, _) = creates_across_three("--redis-url", &url, "60/h,burst=5", 30).await;
    assert_eq!(accepted, 15, "at most instances x burst");
}
