//! Pools by role: creates stuck on a lock cannot take the connections redirects need, and
//! readiness is probed on connections of its own, so a saturated write pool does not make
//! a healthy database look down (docs/requirements.md F13).

mod common;

use std::time::Duration;

use common::{TestApp, eventually, send, spawn_app, waiting_on_a_lock};

/// Starts `count` creates of one alias that an uncommitted transaction holds: each waits
/// on Postgres' unique index with a write connection, or waits for one.
fn contested_creates(app: &TestApp, count: usize) -> Vec<tokio::task::JoinHandle<u16>> {
    (0..count)
        .map(|_| {
            let addr = app.addr;
            tokio::spawn(async move {
                let body = br#"{"url": "https://example.com/contested", "alias": "contested"}"#;
                send(
                    addr,
                    "POST",
                    "/shorten",
                    &[("Content-Type", "application/json")],
                    body,
                )
                .await
                .status
            })
        })
        .collect()
}

/// Waits until the contested creates have settled on the held alias: Postgres shows one
/// waiting on the lock, and none waits for a write connection any more (each holds one, or was
/// shed at the acquire timeout).
async fn wait_until_creates_are_held(app: &TestApp) {
    let watcher = app.db().await;
    let held = eventually(Duration::from_secs(10), || async {
        waiting_on_a_lock(&watcher, "INSERT INTO links%").await > 0
            && app.scrape().await.value(
                "shortener_db_pool_waiters",
                &[("database", "primary"), ("pool", "write")],
            ) == 0.0
    })
    .await;
    assert!(held, "no create waits on the held alias");
}

/// When the readiness prober last finished probing the primary: its probe reads the WAL position
/// and the applied migrations on a connection of its own, which `pg_stat_activity` shows with
/// its start.
async fn last_probe(db: &tokio_postgres::Client) -> Option<std::time::SystemTime> {
    db.query_one(
        "SELECT max(query_start) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'shortener' \
           AND (query LIKE '%pg_current_wal_lsn%' OR query LIKE '%refinery_schema_history%') \
           AND state = 'idle'",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

async fn hold_alias(db: &mut tokio_postgres::Client) -> tokio_postgres::Transaction<'_> {
    let tx = db.transaction().await.unwrap();
    tx.execute(
        "INSERT INTO links (id, code, target_url, created_at) \
         VALUES (999999, 'contested', 'https://example.com/first', now())",
        &[],
    )
    .await
    .unwrap();
    tx
}

#[tokio::test]
async fn redirects_are_served_while_creates_hold_every_write_connection() {
    let app = spawn_app(&["--db-write-pool-size", "4", "--db-acquire-timeout", "250ms"]).await;
    let codes = app.links_in_postgres("uncached", 20).await;
    let mut blocker = app.db().await;
    let tx = hold_alias(&mut blocker).await;
    let creates = contested_creates(&app, 16);
    wait_until_creates_are_held(&app).await;
    let held = || {
        creates
            .iter()
            .filter(|create| !create.is_finished())
            .count()
    };
    assert!(held() >= 4, "the write pool is not held by blocked creates");

    for code in &codes {
        let response = app.get(&format!("/{code}")).await;
        assert_eq!(response.status, 302, "{code}: {}", response.text());
    }
    assert_eq!(app.get(&format!("/{}/stats", codes[0])).await.status, 200);
    assert!(
        held() >= 4,
        "the creates were let go before the redirects were served"
    );

    tx.rollback().await.unwrap();
    let mut statuses = Vec::new();
    for create in creates {
        statuses.push(create.await.unwrap());
    }
    // One create wins the alias once the blocker is gone; the others find it taken or were
    // shed while waiting for a connection. Nothing else.
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [201, 409, 503].contains(s)),
        "{statuses:?}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn readiness_stays_200_while_the_write_pool_is_saturated() {
    let app = spawn_app(&["--db-write-pool-size", "2", "--db-acquire-timeout", "250ms"]).await;
    let ready = common::eventually(Duration::from_secs(5), || async {
        send(app.admin, "GET", "/readyz", &[], b"").await.status == 200
    })
    .await;
    assert!(ready, "never ready");

    let mut blocker = app.db().await;
    let tx = hold_alias(&mut blocker).await;
    let creates = contested_creates(&app, 400);
    wait_until_creates_are_held(&app).await;
    // Readiness is polled until the prober has probed the primary twice since (its answers
    // are cached), every answer meanwhile 200 with the primary up.
    let watcher = app.db().await;
    let mut polls = 0;
    for probe in 1..=2 {
        let before = last_probe(&watcher).await;
        let probed = eventually(Duration::from_secs(5), || {
            polls += 1;
            let (app, watcher, poll) = (&app, &watcher, polls);
            async move {
                let response = send(app.admin, "GET", "/readyz", &[], b"").await;
                assert_eq!(response.status, 200, "poll {poll}: {}", response.text());
                let body = response.json();
                assert_eq!(body["tiers"]["primary"], "up", "{body}");
                assert_eq!(body["creates"], "ready", "{body}");
                last_probe(watcher).await > before
            }
        })
        .await;
        assert!(probed, "probe {probe} of the primary never finished");
    }
    tx.rollback().await.unwrap();
    for create in creates {
        let status = create.await.unwrap();
        assert!([201, 409, 503].contains(&status), "{status}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn readiness_names_each_tier() {
    let db_url = common::fresh_database().await;
    let replicas = format!("{db_url},postgres://postgres@127.0.0.1:1/dead");
    let app = common::spawn_app_on(&db_url, &["--database-replica-urls", &replicas]).await;
    let described = common::eventually(Duration::from_secs(5), || async {
        let body = send(app.admin, "GET", "/readyz", &[], b"").await.json();
        body["tiers"]["replicas"] == serde_json::json!(["up", "down"])
    })
    .await;
    assert!(described, "replica states never reported");
    let response = send(app.admin, "GET", "/readyz", &[], b"").await;
    assert_eq!(response.status, 200);
    let body = response.json();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["tiers"]["primary"], "up");
    assert!(body["tiers"]["cache_entries"].is_u64(), "{body}");
    assert_eq!(body["tiers"]["redis"], "off", "{body}");
    assert_eq!(body["creates"], "ready");
    app.shutdown().await;
}

#[tokio::test]
async fn without_any_database_an_instance_serves_what_it_cached_and_stays_ready() {
    let db_url = common::fresh_database().await;
    let proxy = common::DbProxy::start(&db_url).await;
    let app = common::spawn_app_on(&proxy.url, &["--db-acquire-timeout", "250ms"]).await;
    let code = app.create("https://example.com/cached").await;
    let ready = common::eventually(Duration::from_secs(5), || async {
        let body = send(app.admin, "GET", "/readyz", &[], b"").await.json();
        body["tiers"]["cache_entries"] == 1
    })
    .await;
    assert!(ready, "the cached link never showed in readiness");

    proxy.cut();
    let down = common::eventually(Duration::from_secs(5), || async {
        let body = send(app.admin, "GET", "/readyz", &[], b"").await.json();
        body["tiers"]["primary"] == "down"
    })
    .await;
    assert!(down, "the probe never noticed the database was gone");
    let response = send(app.admin, "GET", "/readyz", &[], b"").await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["creates"], "primary_down");
    // What memory holds is served; what it does not is 503, and so are creates.
    assert_eq!(app.get(&format!("/{code}")).await.status, 302);
    let miss = app.get("/not-in-memory").await;
    miss.assert_problem(503);
    assert_eq!(miss.header("retry-after"), Some("1"));
    app.shorten(r#"{"url": "https://example.com/new"}"#)
        .await
        .assert_problem(503);
    app.shutdown().await;
}

#[tokio::test]
async fn without_any_database_and_an_empty_cache_readiness_is_503_and_says_why() {
    let app = common::spawn_app_on(
        "postgres://postgres@127.0.0.1:1/none",
        &["--db-acquire-timeout", "250ms"],
    )
    .await;
    let down = common::eventually(Duration::from_secs(5), || async {
        let body = send(app.admin, "GET", "/readyz", &[], b"").await.json();
        body["tiers"]["primary"] == "down"
    })
    .await;
    assert!(down);
    let response = send(app.admin, "GET", "/readyz", &[], b"").await;
    let body = response.assert_problem(503);
    assert_eq!(body["tiers"]["cache_entries"], 0);
    assert_eq!(body["creates"], "no_worker_id");
    app.shutdown().await;
}
