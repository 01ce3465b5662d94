//! CORS for browser front ends: preflights of creates and stats (never rate limited), the
//! allowed origin and the readable headers on their answers, nothing on redirects, nothing for
//! other origins, and no preflight route at all while CORS is off.

mod common;

use common::{TestApp, send, spawn_app};

const PAGE: &str = "https://app.example.com";

async fn preflight(app: &TestApp, path: &str, origin: &str) -> common::TestResponse {
    send(
        app.addr,
        "OPTIONS",
        path,
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "content-type, idempotency-key",
            ),
        ],
        b"",
    )
    .await
}

#[tokio::test]
async fn pages_of_an_allowed_origin_may_create_and_read_stats_but_redirects_carry_nothing() {
    let app = spawn_app(&[
        "--cors-origins",
        "https://app.example.com, https://admin.example.com:8443",
        "--rate-limit-create",
        "60/h,burst=1",
    ])
    .await;
    // Preflights, as many as a browser likes: never limited.
    for _ in 0..5 {
        let answer = preflight(&app, "/shorten", PAGE).await;
        assert_eq!(answer.status, 204);
        assert_eq!(answer.header("access-control-allow-origin"), Some(PAGE));
        assert_eq!(
            answer.header("access-control-allow-methods"),
            Some("POST, GET, PATCH, DELETE")
        );
        assert_eq!(
            answer.header("access-control-allow-headers"),
            Some("Content-Type, Idempotency-Key, Authorization, If-Match")
        );
        assert_eq!(answer.header("access-control-max-age"), Some("600"));
        assert_eq!(answer.header("vary"), Some("Origin"));
    }
    let other = preflight(&app, "/shorten", "https://evil.example").await;
    assert_eq!(other.status, 204);
    assert_eq!(other.header("access-control-allow-origin"), None);

    let created = app
        .shorten_with(
            r#"{"url": "https://example.com/cors"}"#,
            &[("Origin", PAGE)],
        )
        .await;
    assert_eq!(created.status, 201);
    assert_eq!(created.header("access-control-allow-origin"), Some(PAGE));
    let exposed = created.header("access-control-expose-headers").unwrap();
    for name in [
        "Location",
        "Idempotent-Replayed",
        "Retry-After",
        "RateLimit",
        "RateLimit-Policy",
    ] {
        assert!(exposed.contains(name), "{exposed}");
    }
    assert!(created.header("vary").unwrap().contains("Origin"));
    // Refused by the limit: the page can still read why.
    let refused = app
        .shorten_with(
            r#"{"url": "https://example.com/again"}"#,
            &[("Origin", PAGE)],
        )
        .await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("access-control-allow-origin"), Some(PAGE));

    let code = created.json()["code"].as_str().unwrap().to_owned();
    let stats = send(
        app.addr,
        "GET",
        &format!("/{code}/stats"),
        &[("Origin", PAGE)],
        b"",
    )
    .await;
    assert_eq!(stats.status, 200);
    assert_eq!(stats.header("access-control-allow-origin"), Some(PAGE));
    assert_eq!(
        preflight(&app, &format!("/{code}/stats"), PAGE)
            .await
            .status,
        204
    );

    let redirect = send(
        app.addr,
        "GET",
        &format!("/{code}"),
        &[("Origin", PAGE)],
        b"",
    )
    .await;
    assert_eq!(redirect.status, 302);
    assert_eq!(redirect.header("access-control-allow-origin"), None);
    assert_eq!(redirect.header("vary"), None);
    // A port is part of the origin.
    let admin = preflight(&app, "/shorten", "https://admin.example.com:8443").await;
    assert_eq!(
        admin.header("access-control-allow-origin"),
        Some("https://admin.example.com:8443")
    );
    let wrong_port = preflight(&app, "/shorten", "https://admin.example.com").await;
    assert_eq!(wrong_port.header("access-control-allow-origin"), None);
    app.shutdown().await;
}

#[tokio::test]
async fn without_cors_origins_there_is_no_preflight() {
    let app = spawn_app(&[]).await;
    let answer = preflight(&app, "/shorten", PAGE).await;
    answer.assert_problem(405);
    let created = app
        .shorten_with(r#"{"url": "https://example.com/x"}"#, &[("Origin", PAGE)])
        .await;
    assert_eq!(created.status, 201);
    assert_eq!(created.header("access-control-allow-origin"), None);
    app.shutdown().await;
}
