//! `POST /shorten/batch`: items answered each on its own and in order, the bounds of a batch,
//! one Idempotency-Key for the whole batch (its links and its answer in one transaction), and
//! one create token per item.

mod common;

use common::{TestApp, make_key, send, spawn_app};

async fn batch(app: &TestApp, body: &str, headers: &[(&str, &str)]) -> common::TestResponse {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    send(app.addr, "POST", "/shorten/batch", &all, body.as_bytes()).await
}

fn statuses(answer: &serde_json::Value) -> Vec<u64> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| result["status"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn each_item_is_answered_on_its_own_in_the_order_sent() {
    let app = spawn_app(&[]).await;
    let key = make_key(&app.db_url, "owner", "links");
    let (name, value) = common::bearer(&key);
    let existing = app
        .keyed(
            "POST",
            "/shorten",
            &key,
            r#"{"url": "https://example.com/again", "reuse": true}"#,
        )
        .await;
    assert_eq!(existing.status, 201);
    app.shorten(r#"{"url": "https://example.com/t", "alias": "taken-one"}"#)
        .await;
    let body = serde_json::json!({"items": [
        {"url": "https://example.com/one"},
        {"url": "ftp://example.com/not-http"},
        {"url": "https://example.com/two", "alias": "batch-alias", "max_visits": 3},
        {"url": "https://example.com/dup", "alias": "batch-alias"},
        {"url": "https://example.com/t", "alias": "taken-one"},
        {"url": "https://example.com/again", "reuse": true},
        {"nope": 1},
        {"url": "https://example.com/past", "expires_at": "2001-01-01T00:00:00Z"},
        {"url": "https://example.com/three"},
    ]});
    let answer = batch(&app, &body.to_string(), &[(name, &value)]).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let answer = answer.json();
    assert_eq!(
        statuses(&answer),
        [201, 400, 201, 409, 409, 200, 400, 400, 201],
        "{answer}"
    );
    let results = &answer["results"];
    let one = &results[0]["link"];
    assert_eq!(one["url"], "https://example.com/one");
    for field in [
        "code",
        "short_url",
        "created_at",
        "expires_at",
        "clicks",
        "disabled",
        "max_visits",
        "visits_left",
        "etag",
    ] {
        assert!(one.get(field).is_some(), "{field} missing: {one}");
    }
    assert_eq!(one["etag"], "\"1\"");
    assert_eq!(results[2]["link"]["code"], "batch-alias");
    assert_eq!(results[2]["link"]["visits_left"], 3);
    assert_eq!(
        results[5]["link"]["code"],
        existing.json()["code"],
        "reused"
    );
    for at in [1, 3, 4, 6, 7] {
        let problem = &results[at]["problem"];
        assert_eq!(problem["status"], results[at]["status"], "{problem}");
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:shortener:problem:")
        );
        assert!(problem["detail"].is_string());
    }
    assert_eq!(
        results[3]["problem"]["type"],
        "urn:shortener:problem:alias-taken"
    );
    // Every link made is served, and belongs to the key.
    for at in [0, 2, 8] {
        let code = results[at]["link"]["code"].as_str().unwrap();
        assert_eq!(app.get(&format!("/{code}")).await.status, 302);
    }
    let listed = app.keyed("GET", "/links", &key, "").await.json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 4, "{listed}");
    assert_eq!(app.count("links").await, 5);
    app.shutdown().await;
}

#[tokio::test]
async fn a_batch_outside_its_bounds_is_refused_whole_and_changes_nothing() {
    let app = spawn_app(&["--batch-body-limit", "4096"]).await;
    let item = serde_json::json!({"url": "https://example.com/x"});
    let too_many = serde_json::json!({"items": vec![item.clone(); 1001]}).to_string();
    let large = spawn_app_large().await;
    for (app, body, status) in [
        (&app, r#"{"items": []}"#.to_owned(), 400),
        (&app, r#"{"items": {}}"#.to_owned(), 400),
        (&app, r#"[]"#.to_owned(), 400),
        (
            &app,
            r#"{"items": [{"url": "https://example.com/a"}], "x": 1}"#.to_owned(),
            400,
        ),
        (&app, r#"{"items": [}"#.to_owned(), 400),
        (&large, too_many, 400),
        (
            &app,
            serde_json::json!({"items": vec![item.clone(); 200]}).to_string(),
            413,
        ),
    ] {
        batch(app, &body, &[]).await.assert_problem(status);
    }
    let text = send(
        app.addr,
        "POST",
        "/shorten/batch",
        &[("Content-Type", "text/plain")],
        br#"{"items": [{"url": "https://example.com/a"}]}"#,
    )
    .await;
    text.assert_problem(415);
    let get = app.get("/shorten/batch").await;
    get.assert_problem(405);
    assert_eq!(get.header("allow"), Some("POST"));
    assert_eq!(app.count("links").await, 0);
    assert_eq!(large.count("links").await, 0);
    // 1000 items are allowed.
    let most = serde_json::json!({"items": vec![item; 1000]}).to_string();
    let answer = batch(&large, &most, &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(statuses(&answer.json()), vec![201; 1000]);
    assert_eq!(large.count("links").await, 1000);
    large.shutdown().await;
    app.shutdown().await;
}

/// An instance with the default batch body limit (1 MiB).
async fn spawn_app_large() -> TestApp {
    spawn_app(&[]).await
}

#[tokio::test]
async fn one_idempotency_key_covers_the_whole_batch() {
    // Group commits of two rows at most: the batch, larger, is still one transaction.
    let app = spawn_app(&["--create-batch-max", "2"]).await;
    let body = serde_json::json!({"items": [
        {"url": "https://example.com/k1"},
        {"url": "https://example.com/k2", "alias": "keyed-batch"},
        {"url": "not a url"},
        {"url": "https://example.com/k4"},
        {"url": "https://example.com/k5"},
    ]})
    .to_string();
    let key = [("Idempotency-Key", "batch-key-1")];
    let batches_before = app.scrape().await.total("shortener_create_batches_total");
    let first = batch(&app, &body, &key).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.header("idempotent-replayed"), None);
    assert_eq!(app.count("links").await, 4);
    assert_eq!(
        app.scrape().await.total("shortener_create_batches_total") - batches_before,
        1.0,
        "written by the group-commit writer, in one batch of its own"
    );
    // The same batch again: the same answer, byte for byte, and nothing made.
    let again = batch(&app, &body, &key).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, first.body);
    assert_eq!(app.count("links").await, 4);
    // Another body under the key is refused.
    let other = serde_json::json!({"items": [{"url": "https://example.com/k3"}]}).to_string();
    batch(&app, &other, &key).await.assert_problem(422);
    assert_eq!(app.count("links").await, 4);
    // The answer is stored with the links: one row for the key, none per item.
    let db = app.db().await;
    assert_eq!(
        common::scalar(&db, "SELECT count(*) FROM idempotency_keys").await,
        1
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_batch_takes_one_create_token_per_item_and_is_refused_whole_without_enough() {
    let app = spawn_app(&["--rate-limit-create", "1/s,burst=10"]).await;
    let items = |count: usize| {
        serde_json::json!({"items": vec![serde_json::json!({"url": "https://example.com/r"}); count]})
            .to_string()
    };
    let refused = batch(&app, &items(11), &[]).await;
    refused.assert_problem(429);
    assert!(refused.header("retry-after").is_some());
    assert!(refused.header("ratelimit").is_some());
    assert_eq!(app.count("links").await, 0, "refused whole");
    let allowed = batch(&app, &items(10), &[]).await;
    assert_eq!(allowed.status, 200);
    assert!(
        allowed.header("ratelimit").unwrap().contains("r=0"),
        "{:?}",
        allowed.header("ratelimit")
    );
    assert_eq!(app.count("links").await, 10);
    batch(&app, &items(1), &[]).await.assert_problem(429);
    app.shutdown().await;

    let strict = spawn_app(&["--require-api-key-for-create", "true"]).await;
    let refused = batch(&strict, &items(1), &[]).await;
    refused.assert_problem(401);
    assert_eq!(strict.count("links").await, 0);
    strict.shutdown().await;
}

#[tokio::test]
async fn a_batch_whose_answer_cannot_be_stored_leaves_none_of_its_links() {
    let app = spawn_app(&["--db-statement-timeout", "1s"]).await;
    let body = serde_json::json!({"items": [
        {"url": "https://example.com/u1"},
        {"url": "https://example.com/u2", "alias": "unit-alias"},
    ]})
    .to_string();
    // Another transaction holds the batch's key, uncommitted: the batch inserts its links, then
    // waits on the key until its statement times out.
    let mut blocker = common::connect(&app.db_url).await;
    let tx = blocker.transaction().await.unwrap();
    tx.execute(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, status, body) \
         VALUES ('127.0.0.1', 'unit-key', '\\x00', 200, '{}')",
        &[],
    )
    .await
    .unwrap();
    let failed = batch(&app, &body, &[("Idempotency-Key", "unit-key")]).await;
    assert!(failed.status >= 500, "{}", failed.text());
    tx.rollback().await.unwrap();
    // Its links went with it: none, not even the alias.
    assert_eq!(app.count("links").await, 0);
    let retried = batch(&app, &body, &[("Idempotency-Key", "unit-key")]).await;
    assert_eq!(retried.status, 200, "{}", retried.text());
    assert_eq!(statuses(&retried.json()), [201, 201]);
    assert_eq!(app.count("links").await, 2);
    app.shutdown().await;
}
