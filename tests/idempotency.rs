//! Idempotency-Key semantics of POST /shorten (docs/requirements.md F10): on one instance, across two
//! sharing a database, and with their Redis gone (Redis is not in the correctness path).

mod common;
#[path = "support/processes.rs"]
mod processes;

use std::sync::Arc;

use common::{TestApp, send, spawn_app, spawn_app_on, spawn_app_with_clock};
use shortener::clock::Clock;

const BODY: &str = r#"{"url": "https://example.com/idempotent", "expires_at": null}"#;

#[tokio::test]
async fn a_retry_with_the_same_key_replays_the_first_answer() {
    let app = spawn_app(&[]).await;
    let key = [("Idempotency-Key", "retry-1")];
    let first = app.shorten_with(BODY, &key).await;
    assert_eq!(first.status, 201);
    assert_eq!(first.header("idempotent-replayed"), None);
    // Same JSON, other spacing and key order: the same request.
    let again = app
        .shorten_with(
            "{ \"expires_at\": null,\n  \"url\" : \"https://example.com/idempotent\" }",
            &key,
        )
        .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(app.count("links").await, 1);
    assert_eq!(app.count("idempotency_keys").await, 1);
    app.shutdown().await;
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422() {
    let app = spawn_app(&[]).await;
    let key = [("Idempotency-Key", "k")];
    assert_eq!(app.shorten_with(BODY, &key).await.status, 201);
    let other = app
        .shorten_with(r#"{"url": "https://example.com/other"}"#, &key)
        .await;
    other.assert_problem(422);
    // A different body that would not even validate is still a reused key.
    let invalid = app
        .shorten_with(r#"{"url": "javascript:alert(1)"}"#, &key)
        .await;
    invalid.assert_problem(422);
    assert_eq!(app.count("links").await, 1);
    app.shutdown().await;
}

#[tokio::test]
async fn bad_keys_are_400_and_change_nothing() {
    let app = spawn_app(&[]).await;
    let long = "k".repeat(256);
    for key in ["", "has space", long.as_str(), "tab\tkey"] {
        app.shorten_with(BODY, &[("Idempotency-Key", key)])
            .await
            .assert_problem(400);
    }
    let two = send(
        app.addr,
        "POST",
        "/shorten",
        &[
            ("Content-Type", "application/json"),
            ("Idempotency-Key", "a"),
            ("Idempotency-Key", "b"),
        ],
        BODY.as_bytes(),
    )
    .await;
    two.assert_problem(400);
    assert_eq!(app.count("links").await, 0);
    app.shutdown().await;
}

#[tokio::test]
async fn keys_are_scoped_per_client() {
    let app = spawn_app(&["--trusted-proxies", "127.0.0.0/8"]).await;
    let as_client = |ip: &'static str| [("Idempotency-Key", "shared"), ("X-Forwarded-For", ip)];
    let first = app.shorten_with(BODY, &as_client("198.51.100.1")).await;
    let second = app.shorten_with(BODY, &as_client("198.51.100.2")).await;
    assert_eq!((first.status, second.status), (201, 201));
    assert_ne!(first.json()["code"], second.json()["code"]);
    assert_eq!(second.header("idempotent-replayed"), None);
    assert_eq!(app.count("links").await, 2);
    app.shutdown().await;
}

/// F10: 50 concurrent requests with one key, spread over `apps`, for 10 keys in turn: one
/// link per key, every 201 the same body (the first answer or its replay), the others 409, and
/// another body with a used key 422.
async fn fifty_retries_per_key_make_one_link(apps: &[Arc<TestApp>], label: &str) {
    for round in 0..10 {
        let key = format!("{label}-{round}");
        let tasks: Vec<_> = (0..50)
            .map(|n| {
                let app = Arc::clone(&apps[n % apps.len()]);
                let key = key.clone();
                tokio::spawn(
                    async move { app.shorten_with(BODY, &[("Idempotency-Key", &key)]).await },
                )
            })
            .collect();
        let mut bodies = std::collections::HashSet::new();
        for task in tasks {
            let response = task.await.unwrap();
            match response.status {
                201 => {
                    bodies.insert(response.body);
                }
                409 => {
                    response.assert_problem(409);
                }
                other => panic!("unexpected {other}: {}", response.text()),
            }
        }
        assert!(bodies.len() <= 1, "every 201 carries the same body");
        // Whatever raced, a retry now is the first answer again.
        let replay = apps[round % apps.len()]
            .shorten_with(BODY, &[("Idempotency-Key", &key)])
            .await;
        assert_eq!(replay.status, 201, "{}", replay.text());
        assert_eq!(replay.header("idempotent-replayed"), Some("true"));
        bodies.insert(replay.body);
        assert_eq!(bodies.len(), 1, "every 201 carries the same body");
        apps[0]
            .shorten_with(
                r#"{"url": "https://example.com/another"}"#,
                &[("Idempotency-Key", &key)],
            )
            .await
            .assert_problem(422);
    }
    let db = apps[0].db().await;
    let keyed =
        format!("SELECT count(DISTINCT link_id) FROM idempotency_keys WHERE key LIKE '{label}-%'");
    assert_eq!(
        common::scalar(&db, &keyed).await,
        10,
        "one stored answer per key"
    );
}

async fn links(app: &TestApp) -> i64 {
    app.count("links").await
}

#[tokio::test]
async fn concurrent_requests_with_one_key_create_one_link() {
    let app = Arc::new(spawn_app(&[]).await);
    fifty_retries_per_key_make_one_link(&[Arc::clone(&app)], "one").await;
    assert_eq!(links(&app).await, 10);
    Arc::into_inner(app).unwrap().shutdown().await;
}

#[tokio::test]
async fn concurrent_requests_with_one_key_across_two_instances_create_one_link() {
    let db_url = common::fresh_database().await;
    let apps = [
        Arc::new(spawn_app_on(&db_url, &[]).await),
        Arc::new(spawn_app_on(&db_url, &[]).await),
    ];
    fifty_retries_per_key_make_one_link(&apps, "two").await;
    assert_eq!(links(&apps[0]).await, 10);
    for app in apps {
        Arc::into_inner(app).unwrap().shutdown().await;
    }
}

#[tokio::test]
async fn with_redis_gone_retries_still_make_one_link() {
    let redis = processes::OwnRedis::start();
    let db_url = common::fresh_database().await;
    let flags = [
        "--redis-url",
        &redis.url(),
        "--redis-command-timeout",
        "50ms",
    ];
    let apps = [
        Arc::new(spawn_app_on(&db_url, &flags).await),
        Arc::new(spawn_app_on(&db_url, &flags).await),
    ];
    assert_eq!(
        apps[0].shorten(BODY).await.status,
        201,
        "creates work with Redis up"
    );
    redis.kill();
    fifty_retries_per_key_make_one_link(&apps, "no-redis").await;
    assert_eq!(
        links(&apps[0]).await,
        11,
        "the ten keys' links and the one made before"
    );
    for app in apps {
        Arc::into_inner(app).unwrap().shutdown().await;
    }
}

#[tokio::test]
async fn a_key_in_use_by_an_unfinished_request_is_409() {
    let app = spawn_app(&[]).await;
    // Hold the lock that an in-flight request with this key (from this client) would hold.
    let db = app.db().await;
    db.execute(
        "SELECT pg_advisory_lock(hashtextextended($1, 0))",
        &[&"127.0.0.1\nbusy"],
    )
    .await
    .unwrap();
    let response = app.shorten_with(BODY, &[("Idempotency-Key", "busy")]).await;
    response.assert_problem(409);
    assert!(response.header("retry-after").is_some());
    // Another key is not blocked; and once the lock is released, the key works.
    assert_eq!(
        app.shorten_with(BODY, &[("Idempotency-Key", "free")])
            .await
            .status,
        201
    );
    db.execute("SELECT pg_advisory_unlock_all()", &[])
        .await
        .unwrap();
    assert_eq!(
        app.shorten_with(BODY, &[("Idempotency-Key", "busy")])
            .await
            .status,
        201
    );
    assert_eq!(app.count("links").await, 2);
    app.shutdown().await;
}

#[tokio::test]
async fn stale_keys_can_be_used_again() {
    let app = spawn_app(&[]).await;
    let key = [("Idempotency-Key", "old")];
    assert_eq!(app.shorten_with(BODY, &key).await.status, 201);
    app.db()
        .await
        .execute(
            "UPDATE idempotency_keys SET created_at = now() - interval '25 hours'",
            &[],
        )
        .await
        .unwrap();
    let fresh = app
        .shorten_with(r#"{"url": "https://example.com/new"}"#, &key)
        .await;
    assert_eq!(fresh.status, 201);
    assert_eq!(fresh.header("idempotent-replayed"), None);
    assert_eq!(app.count("links").await, 2);
    assert_eq!(app.count("idempotency_keys").await, 1);
    app.shutdown().await;
}

#[tokio::test]
async fn a_retry_is_replayed_even_after_the_link_expired() {
    let clock = Clock::adjustable();
    let app = spawn_app_with_clock(&[], clock.clone()).await;
    let soon = (clock.now() + time::Duration::seconds(2))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let body =
        serde_json::json!({ "url": "https://example.com/brief", "expires_at": soon }).to_string();
    let key = [("Idempotency-Key", "brief")];
    let first = app.shorten_with(&body, &key).await;
    assert_eq!(first.status, 201, "{}", first.text());
    let code = first.json()["code"].as_str().unwrap().to_owned();
    assert_eq!(app.get(&format!("/{code}")).await.status, 302);
    // An hour later (the key is good for a day): the link has expired, and a new create with
    // that expires_at would be refused.
    clock.advance(std::time::Duration::from_secs(3_600));
    assert_eq!(app.get(&format!("/{code}")).await.status, 410);
    app.shorten(&body).await.assert_problem(400);
    // The same body now names a past expires_at; it is still the same request.
    let again = app.shorten_with(&body, &key).await;
    assert_eq!(again.status, 201, "{}", again.text());
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    app.shutdown().await;
}
