//! Reads through the local streaming replica (`make services` starts it on :5433): a scan of
//! unknown generated codes costs the primary nothing (unknown aliases still ask it), and with
//! the primary cut off a fresh instance serves existing codes from the replica.
//!
//! Faults of the replica itself (replay paused, F5) and of a really stopped primary (F4) are
//! in tests/faults.rs, against a primary and replica of the test's own.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{connect, eventually, spawn_app_on};
use shortener::clicks::ClickRecorder;
use shortener::ids::{CodeCodec, CodeKey, EPOCH_UNIX_MS, compose_id};
use shortener::links::{CacheSettings, LinkCache, ResolveError, Resolver};
use shortener::storage::{Db, PoolSettings, PoolSizes};

/// The code key of the test configuration (tests/common).
const TEST_CODE_KEY: &[u8] = b"integration-test-code-key";

fn replica_url(database: &str) -> String {
    let base = std::env::var("SHORTENER_TEST_REPLICA_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5433/postgres".into());
    let cut = base.rfind('/').expect("replica URL names a database");
    format!("{}{database}", &base[..=cut])
}

fn database_name(url: &str) -> &str {
    &url[url.rfind('/').unwrap() + 1..]
}

/// Waits until the stack's replica has replayed everything the primary has written so far.
async fn wait_for_replica(primary_url: &str) {
    common::wait_for_replay(primary_url, &replica_url("postgres")).await;
}

fn now_ms_since_epoch() -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    now.as_millis() as u64 - EPOCH_UNIX_MS
}

#[tokio::test]
async fn a_scan_of_unknown_generated_codes_costs_the_primary_nothing() {
    let db_url = common::fresh_database().await;
    wait_for_replica(&db_url).await;
    let settings = PoolSettings {
        sizes: PoolSizes {
            read: 4,
            write: 1,
            background: 1,
        },
        acquire_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
    };
    let replicas = [common::target(&replica_url(database_name(&db_url)))];
    let mut db = Db::connect_lazy(&common::target(&db_url), &replicas, &settings);
    let metrics = common::metrics();
    db.count_in(metrics.db.clone());
    let lookups = |operation: &str| common::db_operations(&metrics, operation);
    let codec = CodeCodec::new(&CodeKey::derive(TEST_CODE_KEY));
    let cache = Arc::new(LinkCache::new(CacheSettings {
        capacity: 10_000,
        ttl: Duration::from_secs(60),
        negative_ttl: Duration::from_secs(60),
    }));
    let resolver = Resolver::new(
        cache,
        db.clone(),
        codec.clone(),
        Arc::new(ClickRecorder::new()),
        Duration::from_secs(5),
    );
    const SCANNED: u64 = 200;
    for _ in 0..SCANNED {
        // What a scanner guessing generated codes sends: valid codes of random ids.
        let id = fastrand::i64(0..i64::MAX);
        let code = String::from_utf8(codec.encode(id).to_vec()).unwrap();
        assert!(matches!(
            resolver.resolve(&common::code(&code)).await,
            Err(ResolveError::NotFound)
        ));
    }
    assert_eq!(
        lookups("lookup_replica") + lookups("lookup_primary"),
        SCANNED,
        "each unknown code asked the replica once"
    );
    assert_eq!(
        lookups("lookup_primary"),
        0,
        "the primary answered none of the scan"
    );
    // An unknown alias may be younger than the replica: the primary is asked.
    assert!(matches!(
        resolver.resolve(&common::code("no-such-alias")).await,
        Err(ResolveError::NotFound)
    ));
    assert_eq!(lookups("lookup_primary"), 1);
}

#[tokio::test]
async fn with_the_primary_gone_a_fresh_instance_serves_existing_codes_from_the_replica() {
    let db_url = common::fresh_database().await;
    let creator = spawn_app_on(&db_url, &[]).await;
    let codec = CodeCodec::new(&CodeKey::derive(TEST_CODE_KEY));
    // Older than the lag bound, so the replica's answer is the one that counts.
    let id = compose_id(now_ms_since_epoch() - 60_000, 1001, 1);
    let old = String::from_utf8(codec.encode(id).to_vec()).unwrap();
    connect(&db_url)
        .await
        .execute(
            "INSERT INTO links (id, code, target_url, created_at) \
             VALUES ($1, $2, 'https://example.com/existing', now())",
            &[&id, &old],
        )
        .await
        .unwrap();
    let young = creator.create("https://example.com/young").await;
    creator.shutdown().await;
    wait_for_replica(&db_url).await;

    // A fresh instance, its cache empty, whose primary is about to disappear.
    let proxy = common::DbProxy::start(&db_url).await;
    let replica = replica_url(database_name(&db_url));
    let app = spawn_app_on(
        &proxy.url,
        &[
            "--database-replica-urls",
            &replica,
            "--db-acquire-timeout",
            "250ms",
        ],
    )
    .await;
    proxy.cut();
    let started = std::time::Instant::now();
    // HEAD: a click would wait for the primary until shutdown's grace period ends.
    let response = common::send(app.addr, "HEAD", &format!("/{old}"), &[], b"").await;
    assert_eq!(response.status, 302, "{}", response.text());
    assert_eq!(
        response.header("location"),
        Some("https://example.com/existing")
    );
    // A code young enough to be read from the primary, and creates, fail fast with 503.
    app.get(&format!("/{young}")).await.assert_problem(503);
    let create = app.shorten(r#"{"url": "https://example.com/new"}"#).await;
    create.assert_problem(503);
    assert_eq!(create.header("retry-after"), Some("1"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answers took {:?}",
        started.elapsed()
    );
    let ready = eventually(Duration::from_secs(5), || async {
        let response = common::send(app.admin, "GET", "/readyz", &[], b"").await;
        let body = response.json();
        response.status == 200
            && body["tiers"]["primary"] == "down"
            && body["tiers"]["replicas"] == serde_json::json!(["up"])
    })
    .await;
    assert!(ready, "a replica that answers keeps the instance ready");
    app.shutdown().await;
}
