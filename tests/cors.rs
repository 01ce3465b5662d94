//! CORS for browser front ends: preflights of creates and stats (never rate limited), the
//! allowed origin and the readable headers on their answers (refusals of the API routes too,
//! and the OpenAPI document), nothing on redirects, nothing for other origins, and no
//! preflight route at all while CORS is off.

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
async fn a_page_can_read_why_an_api_route_refused_it_and_fetch_the_openapi_document() {
    let app = spawn_app(&["--cors-origins", PAGE]).await;
    let code = app.create("https://example.com/refusals").await;
    // A wrong method on each API route (405), and a change of a code that cannot exist (404):
    // answered with the problem, which the page can read.
    for (method, path, status) in [
        ("GET", "/shorten".to_owned(), 405),
        ("GET", "/shorten/batch".to_owned(), 405),
        ("POST", "/links".to_owned(), 405),
        ("POST", format!("/{code}/stats"), 405),
        ("PUT", format!("/{code}"), 405),
        ("PATCH", "/no.such.code".to_owned(), 404),
        ("POST", "/openapi.json".to_owned(), 405),
    ] {
        let answer = send(app.addr, method, &path, &[("Origin", PAGE)], b"").await;
        assert_eq!(answer.status, status, "{method} {path}: {}", answer.text());
        assert_eq!(
            answer.header("access-control-allow-origin"),
            Some(PAGE),
            "{method} {path}"
        );
    }
    // The contract itself, for an API explorer on the page's origin.
    let document = send(app.addr, "GET", "/openapi.json", &[("Origin", PAGE)], b"").await;
    assert_eq!(document.status, 200);
    assert_eq!(document.header("access-control-allow-origin"), Some(PAGE));
    // Still nothing on a redirect's refusals that are not API calls.
    let qr = send(
        app.addr,
        "POST",
        &format!("/{code}/qr"),
        &[("Origin", PAGE)],
        b"",
    )
    .await;
    assert_eq!(qr.status, 405);
    assert_eq!(qr.header("access-control-allow-origin"), None);
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
