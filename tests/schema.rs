//! The schema the binary expects: a database one migration behind makes the instance unready
//! with the schema named, creates answer 503 `schema-mismatch`, and redirects go on; one ahead
//! is served only when every newer migration is expand-only (its name ends in `_expand`); the
//! state follows the database within a probe.

mod common;

use std::time::Duration;

use common::{TestApp, eventually, send, spawn_app_on};

async fn readiness(app: &TestApp) -> (u16, serde_json::Value) {
    let response = send(app.admin, "GET", "/readyz", &[], b"").await;
    (response.status, response.json())
}

async fn schema_is(app: &TestApp, state: &str) -> bool {
    eventually(Duration::from_secs(5), || async {
        readiness(app).await.1["schema"] == state
    })
    .await
}

#[tokio::test]
async fn a_schema_behind_the_binary_stops_creates_and_readiness_but_not_redirects() {
    let db_url = common::fresh_database().await;
    let app = spawn_app_on(&db_url, &[]).await;
    assert!(schema_is(&app, "current").await);
    let code = app.create("https://example.com/before-the-rollback").await;

    // The newest migration "not applied yet", as when a binary starts before its migration.
    let db = app.db().await;
    let newest = common::scalar(
        &db,
        "SELECT max(version)::bigint FROM refinery_schema_history",
    )
    .await;
    let removed = db
        .query_one(
            "DELETE FROM refinery_schema_history WHERE version = $1 RETURNING name, applied_on, checksum",
            &[&(newest as i32)],
        )
        .await
        .unwrap();
    assert!(
        schema_is(&app, "behind").await,
        "{}",
        readiness(&app).await.1
    );
    let (status, body) = readiness(&app).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("schema"),
        "{body}"
    );
    assert_eq!(body["creates"], "schema_mismatch", "{body}");
    let refused = app
        .shorten(r#"{"url": "https://example.com/refused"}"#)
        .await;
    let problem = refused.assert_problem(503);
    assert_eq!(problem["type"], "urn:shortener:problem:schema-mismatch");
    assert!(refused.header("retry-after").is_some());
    let batch = send(
        app.addr,
        "POST",
        "/shorten/batch",
        &[("Content-Type", "application/json")],
        br#"{"items": [{"url": "https://example.com/b"}]}"#,
    )
    .await;
    assert_eq!(batch.status, 503, "{}", batch.text());
    // What the tiers hold is still served.
    assert_eq!(app.get(&format!("/{code}")).await.status, 302);

    // Migrated again: ready and creating within a probe.
    db.execute(
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
         VALUES ($1, $2, $3, $4)",
        &[
            &(newest as i32),
            &removed.get::<_, String>(0),
            &removed.get::<_, String>(1),
            &removed.get::<_, String>(2),
        ],
    )
    .await
    .unwrap();
    assert!(schema_is(&app, "current").await);
    assert_eq!(readiness(&app).await.0, 200);
    app.create("https://example.com/after-the-migration").await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_schema_ahead_is_served_only_when_every_newer_migration_is_expand_only() {
    let db_url = common::fresh_database().await;
    let app = spawn_app_on(&db_url, &[]).await;
    assert!(schema_is(&app, "current").await);
    let db = app.db().await;
    // A newer binary migrated and was rolled back: an expand-only migration is fine...
    db.batch_execute(
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
         VALUES (900, 'link_tags_expand', now()::text, '0')",
    )
    .await
    .unwrap();
    assert!(schema_is(&app, "ahead_expand_only").await);
    assert_eq!(readiness(&app).await.0, 200);
    app.create("https://example.com/expand-only").await;
    // ...one that may have changed what this binary uses is not.
    db.batch_execute(
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
         VALUES (901, 'drop_old_column', now()::text, '0')",
    )
    .await
    .unwrap();
    assert!(schema_is(&app, "ahead").await);
    let (status, body) = readiness(&app).await;
    assert_eq!(status, 503, "{body}");
    app.shorten(r#"{"url": "https://example.com/refused"}"#)
        .await
        .assert_problem(503);
    app.shutdown().await;
}
