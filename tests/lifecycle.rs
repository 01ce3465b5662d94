//! Start-up, readiness, degraded operation and shutdown.

mod common;

use std::time::Duration;

use common::{
    ListenerSockets, connect, eventually, scalar, send, spawn_app, spawn_app_on, waiting_on_a_lock,
};
use shortener::ids::WorkerId;
use shortener::storage::{Db, PoolSettings, PoolSizes};

#[tokio::test]
async fn health_and_readiness_on_the_admin_listener() {
    let app = spawn_app(&[]).await;
    let health = send(app.admin, "GET", "/healthz", &[], b"").await;
    assert_eq!(health.status, 200);
    let ready = eventually(Duration::from_secs(5), || async {
        send(app.admin, "GET", "/readyz", &[], b"").await.status == 200
    })
    .await;
    assert!(ready);
    send(app.admin, "GET", "/nothing", &[], b"")
        .await
        .assert_problem(404);
    // The public listener does not serve the probes.
    app.get("/healthz").await.assert_problem(404);
    app.shutdown().await;
}

#[tokio::test]
async fn without_a_database_the_service_is_unready_and_answers_503() {
    // A port where nothing listens.
    let app = spawn_app_on(
        "postgres://postgres@127.0.0.1:1/none",
        &["--db-acquire-timeout", "250ms"],
    )
    .await;
    send(app.admin, "GET", "/healthz", &[], b"").await;
    let ready = send(app.admin, "GET", "/readyz", &[], b"").await;
    ready.assert_problem(503);
    let started = std::time::Instant::now();
    let create = app.shorten(r#"{"url": "https://example.com/"}"#).await;
    create.assert_problem(503);
    assert_eq!(create.header("retry-after"), Some("1"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "503 took {:?}",
        started.elapsed()
    );
    let redirect = app.get("/AAAAAAAAAAA").await;
    redirect.assert_problem(503);
    assert_eq!(redirect.header("retry-after"), Some("1"));
    let body = redirect.text();
    assert!(
        !body.contains("127.0.0.1") && !body.to_lowercase().contains("sql"),
        "{body}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn shutdown_writes_pending_clicks_and_releases_the_lease() {
    let app = spawn_app(&["--stats-flush-interval", "1h"]).await;
    let code = app.create("https://example.com/").await;
    for _ in 0..3 {
        assert_eq!(app.get(&format!("/{code}")).await.status, 302);
    }
    let db = app.db().await;
    assert_eq!(
        app.count("link_clicks_daily").await,
        0,
        "flushed before the interval"
    );
    app.shutdown().await;
    let clicks = "SELECT coalesce(sum(clicks), 0)::bigint FROM link_clicks_daily";
    assert_eq!(scalar(&db, clicks).await, 3);
    let live = "SELECT count(*) FROM worker_leases WHERE expires_at > now()";
    assert_eq!(scalar(&db, live).await, 0);
}

#[tokio::test]
async fn clicks_of_a_link_deleted_by_hand_do_not_hold_back_the_others() {
    let app = spawn_app(&["--stats-flush-interval", "1h"]).await;
    let kept = app.create("https://example.com/kept").await;
    let deleted = app.create("https://example.com/deleted").await;
    let db = app.db().await;
    // An operator deletes a link (or a restore loses it) while this instance still has it
    // cached: its clicks are counted in memory and sealed into the same batch as the others'.
    db.execute("DELETE FROM links WHERE code = $1", &[&deleted])
        .await
        .unwrap();
    for code in [&kept, &deleted, &kept] {
        assert_eq!(app.get(&format!("/{code}")).await.status, 302);
    }
    app.shutdown().await;
    // The batch was written: the kept link's clicks, without a row for the deleted one.
    let clicks = "SELECT coalesce(sum(clicks), 0)::bigint FROM link_clicks_daily";
    assert_eq!(scalar(&db, clicks).await, 2);
    assert_eq!(scalar(&db, "SELECT count(*) FROM stats_batches").await, 1);
}

#[tokio::test]
async fn readiness_turns_503_as_soon_as_shutdown_begins() {
    let app = spawn_app(&[]).await;
    // Hold a connection open with a half-sent request so draining takes a while.
    let mut held = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut held, b"GET /abc HTTP/1.1\r\n")
        .await
        .unwrap();
    app.stop.cancel();
    let unready = eventually(Duration::from_secs(2), || async {
        send(app.admin, "GET", "/readyz", &[], b"").await.status == 503
    })
    .await;
    assert!(unready);
    drop(held);
    app.wait_stopped().await;
}

#[tokio::test]
async fn two_instances_on_one_database_lease_different_worker_ids() {
    let first = spawn_app(&[]).await;
    let second = spawn_app_on(&first.db_url, &[]).await;
    let a = first.create("https://example.com/a").await;
    let b = second.create("https://example.com/b").await;
    // Each redirects the other's link.
    assert_eq!(first.get(&format!("/{b}")).await.status, 302);
    assert_eq!(second.get(&format!("/{a}")).await.status, 302);
    let db = connect(&first.db_url).await;
    let workers: Vec<i32> = db
        .query(
            "SELECT worker_id FROM worker_leases WHERE expires_at > now() ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(workers, vec![0, 1]);
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test]
async fn a_fixed_worker_id_held_by_a_live_instance_is_not_shared() {
    let db_url = common::fresh_database().await;
    let settings = PoolSettings {
        sizes: PoolSizes {
            read: 2,
            write: 2,
            background: 1,
        },
        acquire_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        statement_timeout: Duration::from_secs(2),
    };
    let db = Db::connect_lazy(&common::target(&db_url), &[], &settings);
    let ttl = Duration::from_secs(30);
    let seven = WorkerId::new(7).unwrap();
    let lease = db
        .acquire_worker_id("a", 7..=7, ttl)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lease.worker, seven);
    assert_eq!(db.acquire_worker_id("b", 7..=7, ttl).await.unwrap(), None);
    // The holder itself may take it again (an answer lost in transit).
    assert!(
        db.acquire_worker_id("a", 7..=7, ttl)
            .await
            .unwrap()
            .is_some()
    );
    assert!(db.renew_worker_id(seven, "a", 1234, ttl).await.unwrap());
    assert!(!db.renew_worker_id(seven, "b", 1234, ttl).await.unwrap());
    db.release_worker_id(seven, "a", 5678).await.unwrap();
    let taken = db
        .acquire_worker_id("b", 7..=7, ttl)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        taken.high_water_ms, 5678,
        "the next holder starts above the last one"
    );
    // An instance configured with a held id serves, but creates nothing until it is free.
    let app = spawn_app_on(&db_url, &["--worker-id", "7"]).await;
    app.shorten(r#"{"url": "https://example.com/"}"#)
        .await
        .assert_problem(503);
    app.shutdown().await;
}

#[tokio::test]
async fn replicas_serve_lookups_and_a_dead_one_falls_back_to_the_primary() {
    let db_url = common::fresh_database().await;
    // The "replica" is the primary's own database: this checks the read path, not replication.
    let replicas = format!("{db_url},postgres://postgres@127.0.0.1:1/dead");
    let app = spawn_app_on(&db_url, &["--database-replica-urls", &replicas]).await;
    let code = app.create("https://example.com/replicated").await;
    for _ in 0..6 {
        let response = app.get(&format!("/{code}")).await;
        assert_eq!(response.status, 302);
        assert_eq!(
            response.header("location"),
            Some("https://example.com/replicated")
        );
    }
    app.get("/AAAAAAAAAAA").await.assert_problem(404);
    app.shutdown().await;
}

#[tokio::test]
async fn a_request_in_flight_at_shutdown_completes() {
    let app = spawn_app(&[]).await;
    // An uncommitted row with the alias makes the create wait on Postgres' unique index.
    let mut blocker = app.db().await;
    let tx = blocker.transaction().await.unwrap();
    tx.execute(
        "INSERT INTO links (id, code, target_url, created_at) VALUES (1, 'slow-one', 'https://example.com/', now())",
        &[],
    )
    .await
    .unwrap();
    let addr = app.addr;
    let create = tokio::spawn(async move {
        let body = br#"{"url": "https://example.com/slow", "alias": "slow-one"}"#;
        send(
            addr,
            "POST",
            "/shorten",
            &[("Content-Type", "application/json")],
            body,
        )
        .await
    });
    let watcher = app.db().await;
    let blocked = eventually(Duration::from_secs(10), || async {
        waiting_on_a_lock(&watcher, "INSERT INTO links%").await > 0
    })
    .await;
    assert!(blocked, "no insert waited on the uncommitted row");
    assert!(!create.is_finished(), "the create did not wait on the lock");
    // Shutdown has begun while the create waits: the main listener is closed.
    app.stop.cancel();
    let closed = eventually(Duration::from_secs(5), || async {
        !ListenerSockets::of(app.addr).listening
    })
    .await;
    assert!(closed, "the listener was not closed on the stop");
    assert!(!create.is_finished(), "the create ended with the listener");
    tx.rollback().await.unwrap();
    let response = create.await.unwrap();
    assert_eq!(response.status, 201, "{}", response.text());
    app.wait_stopped().await;
}

#[tokio::test]
async fn new_requests_are_served_during_the_shutdown_delay() {
    let app = spawn_app(&["--shutdown-delay", "1s"]).await;
    let code = app.create("https://example.com/").await;
    app.stop.cancel();
    let draining = eventually(Duration::from_millis(500), || async {
        send(app.admin, "GET", "/readyz", &[], b"").await.status == 503
    })
    .await;
    assert!(draining, "readiness did not turn 503 on the stop");
    send(app.admin, "GET", "/readyz", &[], b"")
        .await
        .assert_problem(503);
    assert_eq!(app.get(&format!("/{code}")).await.status, 302);
    app.wait_stopped().await;
}

#[tokio::test]
async fn clicks_counted_while_postgres_is_away_reach_the_stats_when_it_returns() {
    let db_url = common::fresh_database().await;
    let proxy = common::DbProxy::start(&db_url).await;
    let app = spawn_app_on(&proxy.url, &["--db-acquire-timeout", "250ms"]).await;
    let code = app.create("https://example.com/counted").await;

    proxy.cut();
    let down = eventually(Duration::from_secs(5), || async {
        let body = send(app.admin, "GET", "/readyz", &[], b"").await.json();
        body["tiers"]["primary"] == "down"
    })
    .await;
    assert!(down, "the outage was never noticed");
    for _ in 0..20 {
        assert_eq!(app.get(&format!("/{code}")).await.status, 302);
    }
    // Several flushes of those clicks fail while the database is away (a batch is written
    // only once it holds clicks, so every failure counted is theirs).
    let failed = eventually(Duration::from_secs(10), || async {
        let scrape = app.scrape().await;
        scrape.value("shortener_click_rows_pending", &[]) >= 1.0
            && scrape.total("shortener_click_flush_failures_total") >= 3.0
    })
    .await;
    assert!(failed, "{}", app.scrape().await.text);
    proxy.restore();

    let db = connect(&db_url).await;
    let clicks = "SELECT coalesce(sum(clicks), 0)::bigint FROM link_clicks_daily";
    let counted = eventually(Duration::from_secs(10), || async {
        scalar(&db, clicks).await == 20
    })
    .await;
    assert!(counted, "clicks: {}", scalar(&db, clicks).await);
    // Exactly once: nothing more arrives with later flushes. Checked once the flusher holds
    // no batch, so no retry of an already applied batch can come after.
    let written = eventually(Duration::from_secs(10), || async {
        app.scrape()
            .await
            .value("shortener_click_batches_pending", &[])
            == 0.0
    })
    .await;
    assert!(written, "click batches still pending");
    assert_eq!(scalar(&db, clicks).await, 20);
    assert_eq!(
        app.scrape().await.total("shortener_clicks_flushed_total"),
        20.0,
        "a batch was counted twice"
    );
    app.shutdown().await;
}
