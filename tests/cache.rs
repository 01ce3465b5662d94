//! The moka tier, end to end: hits never reach Postgres, gone links answer from memory,
//! negative entries and their window, the TTL bound, and `shortener disable` / `enable`.
//!
//! A hit is told apart from a database read by changing the row behind the cache's back:
//! a deleted row still redirects while it is cached, and would answer 404 from Postgres.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{eventually, spawn_app};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Inserts a link straight into the database, as another instance would.
async fn insert_link(db: &tokio_postgres::Client, id: i64, code: &str, url: &str) {
    db.execute(
        "INSERT INTO links (id, code, target_url, created_at) VALUES ($1, $2, $3, now())",
        &[&id, &code, &url],
    )
    .await
    .unwrap();
}

async fn delete_link(db: &tokio_postgres::Client, code: &str) {
    let deleted = db
        .execute("DELETE FROM links WHERE code = $1", &[&code])
        .await
        .unwrap();
    assert_eq!(deleted, 1);
}

fn shortener(database_url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shortener"))
        .env_clear()
        .env("DATABASE_URL", database_url)
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn a_cached_link_is_served_from_memory_without_postgres() {
    let app = spawn_app(&["--cache-ttl", "1h"]).await;
    let db = app.db().await;
    insert_link(&db, 101, "from-elsewhere", "https://example.com/elsewhere").await;
    // The first request misses and fills the cache; the row then disappears.
    let first = app.get("/from-elsewhere").await;
    assert_eq!(first.status, 302);
    delete_link(&db, "from-elsewhere").await;
    for _ in 0..3 {
        let again = app.get("/from-elsewhere").await;
        assert_eq!(again.status, 302, "{}", again.text());
        assert_eq!(
            again.header("location"),
            Some("https://example.com/elsewhere")
        );
    }
    // A link created here is cached by its create, before any redirect.
    let code = app.create("https://example.com/created-here").await;
    delete_link(&db, &code).await;
    assert_eq!(app.get(&format!("/{code}")).await.status, 302);
    // Stats read the link from memory too (and its clicks from Postgres).
    assert_eq!(app.get(&format!("/{code}/stats")).await.status, 200);
    app.shutdown().await;
}

#[tokio::test]
async fn a_link_that_expires_while_cached_answers_410_from_memory() {
    let app = spawn_app(&["--cache-ttl", "1h"]).await;
    // Far enough ahead that the first redirect lands before it on a slow machine.
    let expires_at = (OffsetDateTime::now_utc() + Duration::from_secs(3))
        .format(&Rfc3339)
        .unwrap();
    let body = serde_json::json!({ "url": "https://example.com/soon", "expires_at": expires_at });
    let created = app.shorten(&body.to_string()).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let code = created.json()["code"].as_str().unwrap().to_owned();
    assert_eq!(app.get(&format!("/{code}")).await.status, 302);
    // Without the row, only memory can know the link exists and when it expires.
    delete_link(&app.db().await, &code).await;
    let gone = eventually(Duration::from_secs(10), || async {
        app.get(&format!("/{code}")).await.status == 410
    })
    .await;
    assert!(gone, "the cached link never answered 410");
    app.get(&format!("/{code}")).await.assert_problem(410);
    app.shutdown().await;
}

#[tokio::test]
async fn a_disabled_link_stays_cached_and_answers_410() {
    let app = spawn_app(&["--cache-ttl", "1h"]).await;
    let db = app.db().await;
    insert_link(&db, 102, "taken-down", "https://example.com/phish").await;
    db.execute(
        "UPDATE links SET disabled_at = now() WHERE code = 'taken-down'",
        &[],
    )
    .await
    .unwrap();
    app.get("/taken-down").await.assert_problem(410);
    delete_link(&db, "taken-down").await;
    app.get("/taken-down").await.assert_problem(410);
    app.shutdown().await;
}

#[tokio::test]
async fn the_cache_ttl_bounds_how_long_a_disabled_link_keeps_redirecting() {
    let app = spawn_app(&["--cache-ttl", "1s"]).await;
    let code = app.create("https://example.com/bad").await;
    assert_eq!(app.get(&format!("/{code}")).await.status, 302);

    let disabled = shortener(&app.db_url, &["disable", &code]);
    assert!(disabled.status.success(), "{disabled:?}");
    let stopped = eventually(Duration::from_secs(4), || async {
        app.get(&format!("/{code}")).await.status == 410
    })
    .await;
    assert!(stopped, "still redirecting after the cache TTL");

    let enabled = shortener(&app.db_url, &["enable", &code]);
    assert!(enabled.status.success(), "{enabled:?}");
    let back = eventually(Duration::from_secs(4), || async {
        app.get(&format!("/{code}")).await.status == 302
    })
    .await;
    assert!(back, "not redirecting again after enable");

    // A code no link has: exit 1, and a message that says so.
    let missing = shortener(&app.db_url, &["disable", "no-such-code"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no link has this code"));
    app.shutdown().await;
}

#[tokio::test]
async fn unknown_codes_are_remembered_for_the_negative_ttl_only() {
    // A long window: within it, a link another instance creates is not seen here.
    let app = spawn_app(&["--negative-ttl", "1h"]).await;
    let db = app.db().await;
    app.get("/made-elsewhere").await.assert_problem(404);
    insert_link(&db, 103, "made-elsewhere", "https://example.com/").await;
    app.get("/made-elsewhere").await.assert_problem(404);
    // A create on this instance drops its code's negative entry at once.
    app.get("/made-here").await.assert_problem(404);
    let body = r#"{"url": "https://example.com/here", "alias": "made-here"}"#;
    assert_eq!(app.shorten(body).await.status, 201);
    assert_eq!(app.get("/made-here").await.status, 302);
    app.shutdown().await;

    // A short window: the other instance's link is seen once it passes.
    let app = spawn_app(&["--negative-ttl", "300ms"]).await;
    let db = app.db().await;
    app.get("/made-later").await.assert_problem(404);
    insert_link(&db, 104, "made-later", "https://example.com/later").await;
    let seen = eventually(Duration::from_secs(3), || async {
        app.get("/made-later").await.status == 302
    })
    .await;
    assert!(seen, "the negative entry outlived its TTL");
    app.shutdown().await;
}

#[tokio::test]
async fn a_takedown_by_host_disables_every_link_to_it_and_records_who_and_why() {
    let app = spawn_app(&[]).await;
    let phishing = [
        app.create("https://login.evil.example/a").await,
        app.create("https://LOGIN.EVIL.EXAMPLE:8443/b?c=d").await,
        app.create("http://login.evil.example/c").await,
    ];
    // Another host, a subdomain of it, and a path that merely names it.
    let others = [
        app.create("https://example.com/fine").await,
        app.create("https://www.login.evil.example/d").await,
        app.create("https://example.com/login.evil.example").await,
    ];
    // Bulk takedowns need a reason.
    let unexplained = shortener(&app.db_url, &["disable", "--host", "login.evil.example"]);
    assert_eq!(unexplained.status.code(), Some(64), "{unexplained:?}");
    assert!(String::from_utf8_lossy(&unexplained.stderr).contains("--reason"));

    let disabled = shortener(
        &app.db_url,
        &[
            "disable",
            "--host",
            "login.evil.example",
            "--reason",
            "phishing, ticket 4711",
            "--by",
            "alice",
        ],
    );
    assert!(disabled.status.success(), "{disabled:?}");
    for code in &phishing {
        let gone = eventually(Duration::from_secs(5), || async {
            app.get(&format!("/{code}")).await.status == 410
        })
        .await;
        assert!(gone, "{code} still redirects");
    }
    for code in &others {
        assert_eq!(app.get(&format!("/{code}")).await.status, 302, "{code}");
    }
    // Again: nothing left to change, and not an error.
    let again = shortener(
        &app.db_url,
        &[
            "disable",
            "--host",
            "login.evil.example",
            "--reason",
            "again",
        ],
    );
    assert!(again.status.success(), "{again:?}");

    let audit = shortener(&app.db_url, &["audit"]);
    let audit = String::from_utf8_lossy(&audit.stdout);
    let lines: Vec<&str> = audit
        .lines()
        .filter(|line| line.contains(" disable "))
        .collect();
    assert_eq!(lines.len(), 3, "{audit}");
    for (line, code) in lines.iter().zip(&phishing) {
        assert!(
            line.contains(&format!(
                " cli:alice disable {code} host=login.evil.example; reason: phishing, ticket 4711"
            )),
            "{line}"
        );
    }

    // One link back, with its own reason.
    let enabled = shortener(
        &app.db_url,
        &["enable", &phishing[0], "--reason", "false positive"],
    );
    assert!(enabled.status.success(), "{enabled:?}");
    let back = eventually(Duration::from_secs(5), || async {
        app.get(&format!("/{}", phishing[0])).await.status == 302
    })
    .await;
    assert!(back);
    let audit = shortener(&app.db_url, &["audit"]);
    assert!(
        String::from_utf8_lossy(&audit.stdout)
            .lines()
            .any(|line| line.ends_with(&format!(
                " cli enable {} reason: false positive",
                phishing[0]
            ))),
        "{}",
        String::from_utf8_lossy(&audit.stdout)
    );
    app.shutdown().await;
}
