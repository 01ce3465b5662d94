//! `X-Request-Id`: made here for every answer, believed only from a trusted proxy, and named
//! again as the `instance` of a problem.

mod common;

use common::{send, spawn_app};

fn is_uuid(id: &str) -> bool {
    id.len() == 36
        && id.split('-').map(str::len).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && id.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}

#[tokio::test]
async fn every_answer_carries_an_id_of_its_own() {
    let app = spawn_app(&[]).await;
    let code = app.create("https://example.com/ids").await;
    let first = app.get(&format!("/{code}")).await;
    let second = app.get(&format!("/{code}")).await;
    let (first, second) = (
        first.header("x-request-id").unwrap().to_owned(),
        second.header("x-request-id").unwrap().to_owned(),
    );
    assert!(is_uuid(&first) && is_uuid(&second), "{first} {second}");
    assert_ne!(first, second);
    // A client that is not a trusted proxy cannot choose it.
    let chosen = send(
        app.addr,
        "GET",
        "/openapi.json",
        &[("X-Request-Id", "mine")],
        b"",
    )
    .await;
    assert_ne!(chosen.header("x-request-id"), Some("mine"));
    app.shutdown().await;
}

#[tokio::test]
async fn a_trusted_proxy_names_the_request_and_a_problem_names_it_back() {
    let app = spawn_app(&["--trusted-proxies", "127.0.0.1/32"]).await;
    let answer = send(
        app.addr,
        "GET",
        "/nosuchcode",
        &[("X-Request-Id", "edge-4f2a:17")],
        b"",
    )
    .await;
    assert_eq!(answer.header("x-request-id"), Some("edge-4f2a:17"));
    let problem = answer.assert_problem(404);
    assert_eq!(problem["instance"], "urn:shortener:request:edge-4f2a:17");
    // One it cannot use as it is (a space) is replaced, not echoed.
    let answer = send(app.addr, "GET", "/x/y", &[("X-Request-Id", "a b")], b"").await;
    let id = answer.header("x-request-id").unwrap().to_owned();
    assert!(is_uuid(&id), "{id}");
    assert_eq!(
        answer.assert_problem(404)["instance"],
        format!("urn:shortener:request:{id}").as_str()
    );
    app.shutdown().await;
}
