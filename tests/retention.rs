//! Data that does not grow for ever: the pruner works a backlog off in chunks that each finish
//! within the statement timeout (where one statement over the backlog does not), and retention
//! removes exactly what it should: daily click rows past `SHORTENER_STATS_RETENTION` (their
//! counts folded into the link's totals), links expired past `SHORTENER_LINK_RETENTION` (a
//! tombstone kept: 410, the code never issued again; disabled links and recent ones left
//! alone), click-batch ids and the change feed past their week.

mod common;

use std::time::Duration;

use common::{connect, eventually, fresh_database, scalar, spawn_app_on};

const BACKLOG: i64 = 500_000;
/// Tight enough that one statement over the backlog does not fit (about 300 ms here), loose
/// enough for a chunk (about 3 ms) many times over.
const STATEMENT_TIMEOUT: &str = "100ms";
/// A stored answer as a create writes it: its size is what a DELETE moves.
const ANSWER: &str = r#"{"code":"AbCdEfGhIjK","short_url":"https://sho.rt/AbCdEfGhIjK","url":"https://example.com/a/path/of/an/ordinary/length?utm_source=newsletter&utm_medium=email&utm_campaign=december","created_at":"2026-12-07T10:00:00Z","expires_at":null}"#;

#[tokio::test]
async fn a_backlog_of_half_a_million_keys_is_pruned_in_chunks_within_the_statement_timeout() {
    let db_url = fresh_database().await;
    let db = connect(&db_url).await;
    db.execute(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, status, body, created_at) \
         SELECT 'client:192.0.2.1', 'expired-' || n, sha256(n::text::bytea), 201, $2, \
                now() - interval '2 days' - n * interval '1 ms' \
         FROM generate_series(1, $1::int) AS n",
        &[&(BACKLOG as i32), &ANSWER],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, status, body) \
         SELECT 'client:192.0.2.1', 'fresh-' || n, sha256(n::text::bytea), 201, $1 \
         FROM generate_series(1, 1000) AS n",
        &[&ANSWER],
    )
    .await
    .unwrap();
    db.batch_execute("ANALYZE idempotency_keys").await.unwrap();
    // One statement over the whole backlog does not fit in the timeout the service runs with
    // (rolled back either way)...
    let mut db = db;
    let tx = db.transaction().await.unwrap();
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'"
    ))
    .await
    .unwrap();
    let unbatched = tx
        .execute(
            "DELETE FROM idempotency_keys WHERE created_at < now() - interval '1 day'",
            &[],
        )
        .await;
    let error = unbatched.expect_err("the unbatched DELETE finished within the timeout");
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
        "{error}"
    );
    tx.rollback().await.unwrap();
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM idempotency_keys").await,
        BACKLOG + 1000
    );

    // ...while the pruner's chunks do, every one of them.
    let app = spawn_app_on(
        &db_url,
        &[
            "--prune-interval",
            "1s",
            "--db-statement-timeout",
            STATEMENT_TIMEOUT,
        ],
    )
    .await;
    let table = [("table", "idempotency_keys")];
    assert!(
        eventually(Duration::from_secs(180), || async {
            app.scrape()
                .await
                .value("shortener_prune_rows_total", &table)
                >= BACKLOG as f64
        })
        .await,
        "the backlog was not pruned: {} rows",
        app.scrape()
            .await
            .value("shortener_prune_rows_total", &table)
    );
    let scrape = app.scrape().await;
    assert_eq!(
        scrape.value("shortener_prune_rows_total", &table),
        BACKLOG as f64
    );
    assert_eq!(scrape.value("shortener_prune_failures_total", &table), 0.0);
    let chunks = scrape.value("shortener_prune_chunks_total", &table);
    assert!(
        chunks >= (BACKLOG / shortener::links::CHUNK_ROWS) as f64,
        "{chunks} chunks"
    );
    // Only the expired records went.
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM idempotency_keys WHERE key LIKE 'fresh-%'"
        )
        .await,
        1000
    );
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM idempotency_keys").await,
        1000
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.scrape()
                .await
                .value("shortener_prune_overdue_seconds", &table)
                == 0.0
        })
        .await
    );
    app.shutdown().await;
}

async fn link_id(db: &tokio_postgres::Client, code: &str) -> i64 {
    db.query_one("SELECT id FROM links WHERE code = $1", &[&code])
        .await
        .unwrap()
        .get(0)
}

/// Daily rows of `id`, `days_ago` each, with `clicks` clicks and a tenth as many bot clicks.
async fn clicks_on(db: &tokio_postgres::Client, id: i64, days_ago: &[i32], clicks: i64) {
    for &days in days_ago {
        db.execute(
            "INSERT INTO link_clicks_daily (link_id, day, clicks, bot_clicks, last_click_at) \
             VALUES ($1, current_date - $2::int, $3::bigint, $3::bigint / 10, \
                     (current_date - $2::int)::timestamptz + interval '12 hours')",
            &[&id, &days, &clicks],
        )
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn retention_removes_exactly_what_it_should() {
    let db_url = fresh_database().await;
    // The pruner must not start before the set-up is done (a pass every second would race
    // it): the lock every chunk takes first is held here until then.
    let mut holder = connect(&db_url).await;
    let hold = holder.transaction().await.unwrap();
    hold.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&shortener::storage::PRUNE_LOCK_KEY],
    )
    .await
    .unwrap();
    let app = spawn_app_on(
        &db_url,
        &[
            "--prune-interval",
            "1s",
            "--stats-retention",
            "30d",
            "--link-retention",
            "10d",
        ],
    )
    .await;
    let db = app.db().await;

    let live = app.create("https://example.com/live").await;
    let live_id = link_id(&db, &live).await;
    clicks_on(&db, live_id, &[100, 31, 29, 0], 50).await;
    let before = app.get(&format!("/{live}/stats")).await.json();
    assert_eq!(before["clicks"], 200, "{before}");
    assert_eq!(before["bot_clicks"], 20, "{before}");

    // Expired 20 days ago, past the 10 days kept: it goes (with a record and clicks).
    let old = app.create("https://example.com/expired-long-ago").await;
    let old_id = link_id(&db, &old).await;
    clicks_on(&db, old_id, &[40, 25], 7).await;
    db.execute(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, status, body, link_id) \
         VALUES ('client:192.0.2.1', 'of-the-expired-link', '\\x00', 201, '{}', $1)",
        &[&old_id],
    )
    .await
    .unwrap();
    // Expired 5 days ago: kept whole. Disabled and expired 20 days ago: an operator's
    // takedown, kept whole.
    let recent = app.create("https://example.com/expired-recently").await;
    let disabled = app.create("https://example.com/disabled").await;
    db.execute(
        "UPDATE links SET expires_at = now() - interval '20 days' WHERE code = $1",
        &[&old],
    )
    .await
    .unwrap();
    db.execute(
        "UPDATE links SET expires_at = now() - interval '5 days' WHERE code = $1",
        &[&recent],
    )
    .await
    .unwrap();
    db.execute(
        "UPDATE links SET expires_at = now() - interval '20 days', disabled_at = now() \
         WHERE code = $1",
        &[&disabled],
    )
    .await
    .unwrap();
    db.batch_execute(
        "INSERT INTO stats_batches (batch_id, applied_at) VALUES \
           (-1, now() - interval '8 days'), (-2, now() - interval '1 hour'); \
         INSERT INTO link_changes (link_id, code, version, changed_at) VALUES \
           (0, 'aged-change', 1, now() - interval '8 days')",
    )
    .await
    .unwrap();
    let changes_before = scalar(&db, "SELECT count(*) FROM link_changes").await;
    // Nothing went while the lock was held, though passes ran (and left it to the holder).
    let left = [("end", "left_to_another")];
    let passes_left = app
        .scrape()
        .await
        .value("shortener_prune_passes_total", &left);
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.scrape()
                .await
                .value("shortener_prune_passes_total", &left)
                > passes_left
        })
        .await
    );
    assert_eq!(
        app.scrape().await.total("shortener_prune_chunks_total"),
        0.0
    );
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM link_clicks_daily").await,
        6
    );
    hold.rollback().await.unwrap();

    // Released: the next pass prunes, and then finds nothing overdue.
    assert!(
        eventually(Duration::from_secs(30), || async {
            let scrape = app.scrape().await;
            scrape.value("shortener_prune_rows_total", &[("table", "links")]) >= 1.0
                && scrape.total("shortener_prune_overdue_seconds") == 0.0
        })
        .await,
        "{}",
        app.scrape().await.text
    );
    let scrape = app.scrape().await;
    assert_eq!(scrape.total("shortener_prune_failures_total"), 0.0);
    assert_eq!(
        scrape.value("shortener_prune_rows_total", &[("table", "links")]),
        1.0
    );

    // The live link: the two days past 30 are folded into its totals, which did not move.
    let days: Vec<i32> = db
        .query(
            "SELECT current_date - day FROM link_clicks_daily WHERE link_id = $1 ORDER BY day",
            &[&live_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(days, [29, 0]);
    let folded = db
        .query_one(
            "SELECT clicks, bot_clicks FROM link_clicks_total WHERE link_id = $1",
            &[&live_id],
        )
        .await
        .unwrap();
    assert_eq!(
        (folded.get::<_, i64>(0), folded.get::<_, i64>(1)),
        (100, 10)
    );
    let after = app.get(&format!("/{live}/stats")).await.json();
    assert_eq!(after["clicks"], before["clicks"], "{after}");
    assert_eq!(after["bot_clicks"], before["bot_clicks"], "{after}");
    assert_eq!(after["last_click_at"], before["last_click_at"], "{after}");
    assert_eq!(after["daily"].as_array().unwrap().len(), 2, "{after}");
    assert_eq!(app.get(&format!("/{live}")).await.status, 302);

    // The long-expired link: a tombstone without its target or rows, 410 everywhere, its
    // code never issued again.
    let tomb = db
        .query_one(
            "SELECT target_url, deleted_at IS NOT NULL FROM links WHERE id = $1",
            &[&old_id],
        )
        .await
        .unwrap();
    assert_eq!(tomb.get::<_, String>(0), "");
    assert!(tomb.get::<_, bool>(1));
    for table in ["link_clicks_daily", "link_clicks_total", "idempotency_keys"] {
        let left = db
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE link_id = $1"),
                &[&old_id],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
        assert_eq!(left, 0, "{table}");
    }
    // Every tier hears of it through the feed (read every second).
    assert!(
        eventually(Duration::from_secs(5), || async {
            app.get(&format!("/{old}")).await.status == 410
                && app.get(&format!("/{old}/stats")).await.status == 410
        })
        .await
    );
    app.shorten(&format!(
        r#"{{"url": "https://example.com/again", "alias": "{old}"}}"#
    ))
    .await
    .assert_problem(409);

    // Kept whole: the recently expired and the disabled link.
    for (code, url) in [
        (&recent, "https://example.com/expired-recently"),
        (&disabled, "https://example.com/disabled"),
    ] {
        let kept = db
            .query_one(
                "SELECT target_url, deleted_at IS NULL FROM links WHERE code = $1",
                &[code],
            )
            .await
            .unwrap();
        assert_eq!(kept.get::<_, String>(0), url);
        assert!(kept.get::<_, bool>(1));
        assert_eq!(app.get(&format!("/{code}/stats")).await.status, 200);
    }

    // Batch ids and the feed: only what is past its week.
    let batches: Vec<i64> = db
        .query(
            "SELECT batch_id FROM stats_batches WHERE batch_id IN (-1, -2)",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(batches, [-2]);
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM link_changes WHERE code = 'aged-change'"
        )
        .await,
        0
    );
    // The aged row went; the tombstone's change came.
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM link_changes").await,
        changes_before
    );
    app.shutdown().await;
}
