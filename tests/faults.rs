//! Fault injection (docs/requirements.md F1–F5). Each test starts the servers it faults itself, on
//! ports of its own (tests/support/processes.rs): a Redis, a Redis Cluster, a Postgres primary
//! and its streaming replica; the machine's services are never stopped or paused. Run one at a
//! time by `make fault` (these tests are `#[ignore]`d so that `make test` stays quick).
//!
//! - F1 Redis killed, F2 Redis paused: redirects cost at most one command timeout, the breaker
//!   opens, and closes once Redis answers again.
//! - F3 a cluster master killed: redirects go on, its replica takes over and the client
//!   follows it (reads and writes reach the new master).
//! - F4 the primary stopped: existing codes redirect, a fresh instance serves from Redis and
//!   from the replica, creates fail fast, and everything (clicks included) resumes after.
//! - F5 replica replay paused: a fresh code and a new alias resolve through the primary; over
//!   a 30 s pause, codes made at its start, middle and end resolve on their first late read.
//!
//! And the link-management faults: a change made while Redis is down is served by every
//! instance within the bound, and by Redis once it is back; a change Redis refused to store (out of memory) reaches it
//! once it takes writes again; a replica still holding a link's old version hands it to no
//! instance started after the change, and so to no tier.

mod common;
#[path = "support/load.rs"]
mod load;
#[path = "support/processes.rs"]
mod processes;
#[path = "support/scenario.rs"]
mod scenario;
#[path = "support/service.rs"]
mod service;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{ListenerSockets, TestApp, connect, eventually, scalar, send, spawn_app_on};
use processes::{OwnCluster, OwnPostgres, OwnRedis};
use scenario::database_on;
use service::Service;
use shortener::ids::{CodeCodec, CodeKey, EPOCH_UNIX_MS, compose_id};
use shortener::links::{CATCH_UP_EVERY, UNTRUSTED_TTL};

/// The command timeout the tests configure, and the margin a loaded test machine gets.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(50);
const MARGIN: Duration = Duration::from_millis(250);
/// The code key of the test configuration (tests/common).
const TEST_CODE_KEY: &[u8] = b"integration-test-code-key";

async fn readiness(app: &TestApp) -> (u16, serde_json::Value) {
    let response = send(app.admin, "GET", "/readyz", &[], b"").await;
    (response.status, response.json())
}

async fn redis_state(app: &TestApp) -> String {
    let (_, body) = readiness(app).await;
    body["tiers"]["redis"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Resolutions the Redis tier has answered so far.
async fn redis_answers(app: &TestApp) -> f64 {
    app.scrape()
        .await
        .value("shortener_link_resolutions_total", &[("outcome", "redis")])
}

/// Redirects `codes` one by one (HEAD: no clicks), each within the command timeout plus the
/// margin of a loaded machine; answers the slowest.
async fn redirect_all_quickly(app: &TestApp, codes: &[String]) -> Duration {
    let mut slowest = Duration::ZERO;
    for code in codes {
        let started = Instant::now();
        let response = send(app.addr, "HEAD", &format!("/{code}"), &[], b"").await;
        let took = started.elapsed();
        assert_eq!(response.status, 302, "{code}");
        assert!(took <= COMMAND_TIMEOUT + MARGIN, "{code} took {took:?}");
        slowest = slowest.max(took);
    }
    slowest
}

async fn spawn_on_redis(redis_url: &str) -> TestApp {
    let db_url = common::fresh_database().await;
    spawn_app_on(
        &db_url,
        &["--redis-url", redis_url, "--redis-command-timeout", "50ms"],
    )
    .await
}

#[tokio::test]
#[ignore = "fault injection: run by `make fault`"]
async fn f2_a_paused_redis_costs_each_redirect_at_most_one_command_timeout() {
    let redis = OwnRedis::start();
    let app = spawn_on_redis(&redis.url()).await;
    let codes = app.links_in_postgres("fault", 40).await;
    redirect_all_quickly(&app, &codes[..10]).await;
    assert_eq!(redis_state(&app).await, "up");

    redis.signal(libc::SIGSTOP);
    redirect_all_quickly(&app, &codes[10..30]).await;
    let opened = eventually(Duration::from_secs(5), || async {
        redis_state(&app).await == "down"
    })
    .await;
    assert!(opened, "the breaker did not open while Redis was paused");

    redis.signal(libc::SIGCONT);
    let closed = eventually(Duration::from_secs(5), || async {
        redis_state(&app).await == "up"
    })
    .await;
    assert!(
        closed,
        "the breaker did not close once Redis answered again"
    );
    redirect_all_quickly(&app, &codes[30..]).await;
    app.shutdown().await;
}

#[tokio::test]
#[ignore = "fault injection: run by `make fault`"]
async fn f1_a_killed_redis_costs_redirects_nothing_and_is_used_again_once_back() {
    let redis = OwnRedis::start();
    let app = spawn_on_redis(&redis.url()).await;
    let codes = app.links_in_postgres("fault", 40).await;
    redirect_all_quickly(&app, &codes[..10]).await;

    let port = redis.kill();
    redirect_all_quickly(&app, &codes[10..30]).await;
    let opened = eventually(Duration::from_secs(5), || async {
        redis_state(&app).await == "down"
    })
    .await;
    assert!(opened, "the breaker did not open with Redis gone");

    let back = OwnRedis::start_on(port);
    let closed = eventually(Duration::from_secs(10), || async {
        redis_state(&app).await == "up"
    })
    .await;
    assert!(closed, "the service did not return to Redis");
    redirect_all_quickly(&app, &codes[30..]).await;
    // Filled into the Redis that came back.
    let filled = eventually(Duration::from_secs(5), || async {
        back.cli(&["EXISTS", "shortener:link:fault-40"]).trim() == "1"
    })
    .await;
    assert!(filled, "nothing was filled into the Redis that came back");
    app.shutdown().await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MasterFault {
    /// SIGKILL: its connections are refused.
    Killed,
    /// SIGSTOP: its connections stay open and nothing answers (aembke/fred.rs#363).
    Hung,
}

#[tokio::test]
#[ignore = "fault injection: run by `make fault`"]
async fn f3_a_killed_cluster_master_is_replaced_by_its_replica_and_the_client_follows() {
    master_fails_over(MasterFault::Killed).await;
}

#[tokio::test]
#[ignore = "fault injection: run by `make fault`"]
async fn f3_a_hung_cluster_master_is_replaced_by_its_replica_and_the_client_follows() {
    master_fails_over(MasterFault::Hung).await;
}

async fn master_fails_over(fault: MasterFault) {
    const PREFIX: &str = "f3:";
    let mut cluster = OwnCluster::start();
    let db_url = common::fresh_database().await;
    // A short memory TTL, so that once the rows are gone below, only Redis can answer.
    let app = spawn_app_on(
        &db_url,
        &[
            "--redis-cluster-nodes",
            &cluster.seeds(),
            "--redis-command-timeout",
            "50ms",
            "--redis-key-prefix",
            PREFIX,
            "--cache-ttl",
            "200ms",
        ],
    )
    .await;
    let codes = app.links_in_postgres("f3", 60).await;
    redirect_all_quickly(&app, &codes).await;
    let filled = eventually(Duration::from_secs(10), || async {
        codes
            .iter()
            .all(|code| cluster.cli(&["EXISTS", &format!("{PREFIX}{code}")]).trim() == "1")
    })
    .await;
    assert!(filled, "the links were not filled into the cluster");

    // The master that holds the first code's key, and every code whose key it holds.
    let victim = cluster
        .master_of(&format!("{PREFIX}{}", codes[0]))
        .expect("a healthy cluster");
    let on_victim: Vec<String> = codes
        .iter()
        .filter(|code| cluster.master_of(&format!("{PREFIX}{code}")) == Some(victim))
        .cloned()
        .collect();
    // Its replica has every write before the master dies.
    let acknowledged = Command::new("redis-cli")
        .args(["-p", &victim.to_string(), "--raw", "WAIT", "1", "5000"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&acknowledged.stdout).trim(), "1");
    match fault {
        MasterFault::Killed => cluster.kill(victim),
        MasterFault::Hung => cluster.pause(victim),
    }

    // Redirects go on at full speed while the cluster notices and fails over.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut failed_over = false;
    while Instant::now() < deadline {
        redirect_all_quickly(&app, &on_victim).await;
        let new_master = cluster.master_of(&format!("{PREFIX}{}", codes[0]));
        if new_master.is_some_and(|port| port != victim) && cluster.is_healthy() {
            failed_over = true;
            break;
        }
    }
    assert!(
        failed_over,
        "the replica did not take over:\n{}",
        cluster.nodes_view()
    );
    let up = eventually(Duration::from_secs(10), || async {
        redis_state(&app).await == "up"
    })
    .await;
    assert!(up, "the service did not return to the cluster");

    // The rows gone: once memory has let a code go, only the new master can answer it,
    // through the same client. Each code is redirected until one redirect of it is counted
    // as Redis' answer.
    connect(&db_url)
        .await
        .batch_execute("DELETE FROM links")
        .await
        .unwrap();
    let not_yet_from_redis = std::sync::Mutex::new(on_victim.clone());
    let served = eventually(Duration::from_secs(10), || async {
        let codes = not_yet_from_redis.lock().unwrap().clone();
        let mut left = Vec::new();
        for code in codes {
            let before = redis_answers(&app).await;
            let status = send(app.addr, "HEAD", &format!("/{code}"), &[], b"")
                .await
                .status;
            if !(status == 302 && redis_answers(&app).await > before) {
                left.push(code);
            }
        }
        let done = left.is_empty();
        *not_yet_from_redis.lock().unwrap() = left;
        done
    })
    .await;
    assert!(
        served,
        "the promoted replica's links were not served: {:?}",
        not_yet_from_redis.lock().unwrap()
    );
    // Writes reach the new master too.
    let code = app.create("https://example.com/after-failover").await;
    let stored = cluster.cli(&["GET", &format!("{PREFIX}{code}")]);
    assert!(
        stored
            .trim_end()
            .ends_with("https://example.com/after-failover"),
        "not written through after the failover: {stored:?}"
    );
    app.shutdown().await;
}

/// A migrated database `shortener` on `server`; answers its URL.
/// The lag the instance measures on its first replica, in seconds.
async fn replica_lag(app: &TestApp) -> f64 {
    app.scrape().await.value(
        "shortener_db_replica_lag_seconds",
        &[("database", "replica_1")],
    )
}

/// The one lookup so far asked the replica and was answered by the primary.
async fn assert_replica_asked_then_primary(app: &TestApp) {
    let scrape = app.scrape().await;
    assert_eq!(
        scrape.value(
            "shortener_db_operations_total",
            &[("operation", "lookup_replica")]
        ),
        1.0
    );
    assert_eq!(
        scrape.value(
            "shortener_link_resolutions_total",
            &[("outcome", "primary")]
        ),
        1.0
    );
}

/// Waits until `replica` has replayed everything `primary` has written so far.
async fn wait_for_replica(primary: &OwnPostgres, replica: &OwnPostgres) {
    common::wait_for_replay(&primary.url("postgres"), &replica.url("postgres")).await;
}

fn now_ms_since_epoch() -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    now.as_millis() as u64 - EPOCH_UNIX_MS
}

/// A generated code of an id made `age` ago, and the id.
fn code_made_ago(age: Duration, sequence: u16) -> (i64, String) {
    let codec = CodeCodec::new(&CodeKey::derive(TEST_CODE_KEY));
    let id = compose_id(
        now_ms_since_epoch() - age.as_millis() as u64,
        1000,
        sequence,
    );
    (id, String::from_utf8(codec.encode(id).to_vec()).unwrap())
}

async fn insert_link(db_url: &str, id: i64, code: &str, target: &str) {
    connect(db_url)
        .await
        .execute(
            "INSERT INTO links (id, code, target_url, created_at) VALUES ($1, $2, $3, now())",
            &[&id, &code, &target],
        )
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "fault injection: run by `make fault`"]
async fn f4_with_the_primary_stopped_existing_codes_redirect_and_all_resumes_after() {
    let primary = OwnPostgres::start();
    let replica = OwnPostgres::replica_of(&primary);
    let redis = OwnRedis::start();
    let db_url = database_on(&primary).await;
    let replica_url = replica.url("shortener");
    let app = spawn_app_on(
        &db_url,
        &[
            "--database-replica-urls",
            &replica_url,
            "--redis-url",
            &redis.url(),
            "--redis-command-timeout",
            "50ms",
            "--db-acquire-timeout",
            "250ms",
        ],
    )
    .await;
    let ready = eventually(Duration::from_secs(10), || async {
        readiness(&app).await.1["creates"] == "ready"
    })
    .await;
    assert!(ready, "no worker id: {:?}", readiness(&app).await);
    // Created here (in memory and written through to Redis), and an older one made elsewhere
    // (only in Postgres until a redirect fills it into memory and Redis).
    let created = app.create("https://example.com/created").await;
    let (id, old) = code_made_ago(Duration::from_secs(3_600), 1);
    insert_link(&db_url, id, &old, "https://example.com/old").await;
    assert_eq!(app.get(&format!("/{old}")).await.status, 302);
    let filled = eventually(Duration::from_secs(5), || async {
        redis
            .cli(&["EXISTS", &format!("shortener:link:{old}")])
            .trim()
            == "1"
    })
    .await;
    assert!(filled, "the old link was not filled into Redis");
    wait_for_replica(&primary, &replica).await;

    primary.stop();
    let started = Instant::now();
    // This instance serves what it holds, and counts the clicks.
    for _ in 0..5 {
        assert_eq!(app.get(&format!("/{created}")).await.status, 302);
        assert_eq!(app.get(&format!("/{old}")).await.status, 302);
    }
    // Creates fail fast.
    let create = app.shorten(r#"{"url": "https://example.com/new"}"#).await;
    create.assert_problem(503);
    assert!(create.header("retry-after").is_some());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answers took {:?}",
        started.elapsed()
    );
    let still_ready = eventually(Duration::from_secs(5), || async {
        let (status, body) = readiness(&app).await;
        status == 200 && body["tiers"]["primary"] == "down"
    })
    .await;
    assert!(still_ready, "{:?}", readiness(&app).await);

    // A fresh instance, its memory empty, with only Redis below it: Redis serves both codes.
    let from_redis = spawn_app_on(
        &db_url,
        &[
            "--redis-url",
            &redis.url(),
            "--redis-command-timeout",
            "50ms",
            "--db-acquire-timeout",
            "250ms",
        ],
    )
    .await;
    for (code, target) in [
        (&created, "https://example.com/created"),
        (&old, "https://example.com/old"),
    ] {
        // HEAD: a click could not be written before this instance shuts down.
        let response = send(from_redis.addr, "HEAD", &format!("/{code}"), &[], b"").await;
        assert_eq!(response.status, 302, "{}", response.text());
        assert_eq!(response.header("location"), Some(target));
    }
    // What no tier holds is a fast 503, never a hang.
    let started = Instant::now();
    let (_, unknown) = code_made_ago(Duration::from_secs(60), 2);
    let miss = from_redis.get(&format!("/{unknown}")).await;
    miss.assert_problem(503);
    assert!(miss.header("retry-after").is_some());
    assert!(started.elapsed() < Duration::from_secs(2));

    // A fresh instance with only the replica below it serves the old code from there.
    let from_replica = spawn_app_on(
        &db_url,
        &[
            "--database-replica-urls",
            &replica_url,
            "--db-acquire-timeout",
            "250ms",
        ],
    )
    .await;
    let response = send(from_replica.addr, "HEAD", &format!("/{old}"), &[], b"").await;
    assert_eq!(response.status, 302, "{}", response.text());

    // The primary returns: creates work again, and the clicks counted meanwhile arrive.
    primary.start_again();
    let creating = eventually(Duration::from_secs(15), || async {
        app.shorten(r#"{"url": "https://example.com/after"}"#)
            .await
            .status
            == 201
    })
    .await;
    assert!(creating, "creates did not resume once the primary returned");
    let db = connect(&db_url).await;
    let clicks = "SELECT coalesce(sum(clicks), 0)::bigint FROM link_clicks_daily";
    let counted = eventually(Duration::from_secs(15), || async {
        scalar(&db, clicks).await == 11
    })
    .await;
    assert!(counted, "clicks: {}", scalar(&db, clicks).await);
    for instance in [app, from_redis, from_replica] {
        instance.shutdown().await;
    }
    assert_eq!(scalar(&db, clicks).await, 11, "no click counted twice");
}

#[tokio::test]
#[ignore = "fault injection: run by `make fault`"]
async fn f5_with_replay_paused_young_codes_and_new_aliases_resolve_through_the_primary() {
    let primary = OwnPostgres::start();
    let replica = OwnPostgres::replica_of(&primary);
    let db_url = database_on(&primary).await;
    wait_for_replica(&primary, &replica).await;
    let reader = spawn_app_on(
        &db_url,
        &[
            "--database-replica-urls",
            &replica.url("shortener"),
            "--negative-ttl",
            "200ms",
        ],
    )
    .await;
    let writer = spawn_app_on(&db_url, &[]).await;

    // An old link, replicated: the replica serves it.
    let (id, replicated) = code_made_ago(Duration::from_secs(3_600), 1);
    insert_link(&db_url, id, &replicated, "https://example.com/old").await;
    wait_for_replica(&primary, &replica).await;
    assert_eq!(reader.get(&format!("/{replicated}")).await.status, 302);

    connect(&replica.url("postgres"))
        .await
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    // Created elsewhere during the pause: only the primary has them.
    let young = writer.create("https://example.com/young").await;
    let alias = writer
        .shorten(r#"{"url": "https://example.com/alias", "alias": "during-the-pause"}"#)
        .await;
    assert_eq!(alias.status, 201);
    let (id, old) = code_made_ago(Duration::from_secs(7_200), 2);
    insert_link(&db_url, id, &old, "https://example.com/late").await;

    let response = reader.get(&format!("/{young}")).await;
    assert_eq!(
        response.status, 302,
        "a young code is read from the primary"
    );
    assert_eq!(
        response.header("location"),
        Some("https://example.com/young")
    );
    assert_eq!(reader.get("/during-the-pause").await.status, 302);
    // An old generated code the replica does not have is unknown: the replica's answer is
    // final for those (the price of sparing the primary a scanner's misses).
    reader.get(&format!("/{old}")).await.assert_problem(404);

    connect(&replica.url("postgres"))
        .await
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    wait_for_replica(&primary, &replica).await;
    let seen = eventually(Duration::from_secs(5), || async {
        reader.get(&format!("/{old}")).await.status == 302
    })
    .await;
    assert!(
        seen,
        "the old code was not served once the replica caught up"
    );
    reader.shutdown().await;
    writer.shutdown().await;
}

/// `shortener serve` as a process of its own, so that it can be paused: a fixed worker id and a
/// 3 s lease.
fn leasing_service(db_url: &str, worker_id: &str) -> Service {
    Service::start(
        db_url,
        &[
            ("SHORTENER_WORKER_ID", worker_id),
            ("SHORTENER_LEASE_TTL", "3s"),
            ("SHORTENER_LEASE_RENEW_EVERY", "1s"),
            ("SHORTENER_LEASE_SAFETY_MARGIN", "1s"),
        ],
    )
}

#[tokio::test]
#[ignore = "fault injection: run by `make fault`"]
async fn an_instance_paused_past_its_lease_issues_no_id_once_it_runs_again() {
    let db_url = common::fresh_database().await;
    let first = leasing_service(&db_url, "7");
    assert!(
        first.wait_creates("ready").await,
        "the first instance got no lease"
    );
    let mut made = Vec::new();
    for n in 0..5 {
        let created = first
            .shorten(&format!("https://example.com/first/{n}"))
            .await;
        assert_eq!(created.status, 201);
        made.push(created.json()["code"].as_str().unwrap().to_owned());
    }
    // A second instance configured with the same worker id waits for it, and says so.
    let second = leasing_service(&db_url, "7");
    assert!(second.wait_creates("no_worker_id").await);
    let refused = second.shorten("https://example.com/refused").await;
    assert_eq!(
        refused.assert_problem(503)["type"],
        "urn:shortener:problem:no-worker-id"
    );
    // Ready once its first probe of the primary has answered (503 while starting).
    let ready = eventually(Duration::from_secs(5), || async {
        send(second.admin, "GET", "/readyz", &[], b"").await.status == 200
    })
    .await;
    assert!(
        ready,
        "redirects are still served: {}",
        send(second.admin, "GET", "/readyz", &[], b"").await.text()
    );
    let redirect = send(second.addr, "HEAD", &format!("/{}", made[0]), &[], b"").await;
    assert_eq!(
        redirect.status, 302,
        "an instance without a worker id still redirects"
    );

    // The first is paused past its lease; the second takes the worker id and creates.
    first.signal(libc::SIGSTOP);
    assert!(
        second.wait_creates("ready").await,
        "the lease was never taken over"
    );
    for n in 0..30 {
        assert_eq!(
            second
                .shorten(&format!("https://example.com/second/{n}"))
                .await
                .status,
            201
        );
    }
    // Creates sent to the paused instance wait in its accept queue and are handled the moment
    // it runs again, before its lease keeper has had a chance to notice anything.
    let waiting: Vec<_> = (0..30)
        .map(|n| {
            let addr = first.addr;
            tokio::spawn(async move {
                let body = serde_json::json!({ "url": format!("https://example.com/late/{n}") });
                send(
                    addr,
                    "POST",
                    "/shorten",
                    &[("Content-Type", "application/json")],
                    body.to_string().as_bytes(),
                )
                .await
                .status
            })
        })
        .collect();
    // All thirty wait in the paused instance's accept queue, each with its request there.
    let queued = eventually(Duration::from_secs(10), || async {
        let sockets = ListenerSockets::of(first.addr);
        sockets
            .established
            .iter()
            .filter(|side| !side.accepted && side.unread > 0)
            .count()
            == 30
    })
    .await;
    assert!(queued, "{:?}", ListenerSockets::of(first.addr));
    first.signal(libc::SIGCONT);
    for handle in waiting {
        assert_eq!(
            handle.await.unwrap(),
            503,
            "an id was issued after the lease expired"
        );
    }
    let db = connect(&db_url).await;
    assert_eq!(scalar(&db, "SELECT count(*) FROM links").await, 35);
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM links WHERE target_url LIKE '%/late/%'"
        )
        .await,
        0
    );
    // The first instance reports the loss: a log line and the renewal metric.
    let lost = [("result", "lost")];
    assert!(
        eventually(Duration::from_secs(10), || async {
            first.metric("shortener_lease_renewals_total", &lost).await >= 1.0
                && first.logged("worker id lease lost")
        })
        .await,
        "the loss was not reported: {}",
        first.log.lock().unwrap()
    );
    // Once the worker id is free again (the second instance stops and releases it), the first
    // leases it again and creates.
    second.signal(libc::SIGTERM);
    assert!(
        first.wait_creates("ready").await,
        "the first instance never leased again"
    );
    assert_eq!(first.shorten("https://example.com/after").await.status, 201);
}

#[tokio::test]
#[ignore = "fault injection: run by `make fault`"]
async fn the_primary_stopped_under_creates_loses_nothing_acknowledged() {
    let primary = OwnPostgres::start();
    let db_url = database_on(&primary).await;
    let app = std::sync::Arc::new(spawn_app_on(&db_url, &["--db-acquire-timeout", "250ms"]).await);
    let ready = eventually(Duration::from_secs(10), || async {
        readiness(&app).await.1["creates"] == "ready"
    })
    .await;
    assert!(ready);
    // Eight clients creating as fast as they can, every other request with a key of its own.
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let tally = std::sync::Arc::new(Tally::default());
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let (app, running) = (std::sync::Arc::clone(&app), std::sync::Arc::clone(&running));
            let tally = std::sync::Arc::clone(&tally);
            tokio::spawn(async move {
                let mut answers = Vec::new();
                let mut n = 0;
                while running.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let key = format!("client-{client}-{n}");
                    let body = format!(r#"{{"url": "https://example.com/{client}/{n}"}}"#);
                    let headers: &[(&str, &str)] = if n % 2 == 0 {
                        &[("Idempotency-Key", &key)]
                    } else {
                        &[]
                    };
                    let response = app.shorten_with(&body, headers).await;
                    tally.count(response.status);
                    let code = (response.status == 201)
                        .then(|| response.json()["code"].as_str().unwrap().to_owned());
                    answers.push((response.status, code, n % 2 == 0));
                }
                answers
            })
        })
        .collect();
    // Creates are being acknowledged when the primary stops.
    assert!(
        tally.wait_for_created(50).await,
        "creates were not acknowledged before the stop"
    );
    primary.stop();
    // It stays stopped until the service has noticed: a create refused, readiness down.
    let noticed = eventually(Duration::from_secs(15), || async {
        tally.refused() > 0 && readiness(&app).await.1["tiers"]["primary"] == "down"
    })
    .await;
    assert!(noticed, "the stop was never noticed: {tally:?}");
    primary.start_again();
    let back = eventually(Duration::from_secs(15), || async {
        readiness(&app).await.1["tiers"]["primary"] == "up"
    })
    .await;
    assert!(back, "the primary did not come back");
    // Creates are acknowledged again before the clients stop.
    let created_before = tally.created();
    assert!(
        tally.wait_for_created(created_before + 50).await,
        "creates did not resume: {tally:?}"
    );
    running.store(false, std::sync::atomic::Ordering::Relaxed);

    let mut acknowledged = Vec::new();
    let mut keyed = 0;
    let mut refused = 0;
    for client in clients {
        for (status, code, with_key) in client.await.unwrap() {
            match status {
                201 => {
                    keyed += i64::from(with_key);
                    acknowledged.push(code.unwrap());
                }
                503 => refused += 1,
                other => panic!("a create answered {other}"),
            }
        }
    }
    assert!(refused > 0, "the stop was never noticed");
    assert!(!acknowledged.is_empty());
    let db = connect(&db_url).await;
    let stored: i64 = db
        .query_one(
            "SELECT count(*) FROM links WHERE code = ANY($1)",
            &[&acknowledged],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        stored,
        acknowledged.len() as i64,
        "an acknowledged create is missing"
    );
    // No half-written create: every stored answer has its link (a foreign key), and every
    // acknowledged create with a key has its stored answer.
    let answers = scalar(&db, "SELECT count(*) FROM idempotency_keys").await;
    assert!(
        answers >= keyed,
        "{answers} stored answers for {keyed} keyed 201s"
    );
    std::sync::Arc::into_inner(app).unwrap().shutdown().await;
}

/// What the creating clients have been answered so far.
#[derive(Debug, Default)]
struct Tally {
    created: std::sync::atomic::AtomicU64,
    refused: std::sync::atomic::AtomicU64,
}

impl Tally {
    fn count(&self, status: u16) {
        let counter = match status {
            201 => &self.created,
            503 => &self.refused,
            _ => return,
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn created(&self) -> u64 {
        self.created.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits (at most 15 s) until `count` creates have been answered 201 in all.
    async fn wait_for_created(&self, count: u64) -> bool {
        eventually(Duration::from_secs(15), || async {
            self.created() >= count
        })
        .await
    }
}

async fn create_limit_mode(app: &TestApp) -> String {
    let (_, body) = readiness(app).await;
    body["create_limit"].as_str().unwrap_or_default().to_owned()
}

/// A create answered 201, and how long it took.
async fn timed_create(app: &TestApp, n: usize) -> Duration {
    let started = Instant::now();
    let response = app
        .shorten(&format!(r#"{{"url": "https://example.com/limited/{n}"}}"#))
        .await;
    let took = started.elapsed();
    assert_eq!(response.status, 201, "{}", response.text());
    took
}

#[tokio::test]
#[ignore = "fault injection: run by `make fault`"]
async fn the_create_limit_is_per_instance_while_redis_is_away_and_shared_again_after() {
    let redis = OwnRedis::start();
    let db_url = common::fresh_database().await;
    let app = spawn_app_on(
        &db_url,
        &[
            "--redis-url",
            &redis.url(),
            "--redis-command-timeout",
            "50ms",
            "--rate-limit-create",
            "1000/s,burst=1000",
        ],
    )
    .await;
    timed_create(&app, 0).await;
    assert_eq!(create_limit_mode(&app).await, "shared");

    // Killed: within one command timeout the create is decided here, and it says so.
    let port = redis.kill();
    for n in 1..5 {
        let took = timed_create(&app, n).await;
        assert!(took <= COMMAND_TIMEOUT + MARGIN, "create took {took:?}");
    }
    assert_eq!(create_limit_mode(&app).await, "per_instance");

    // Back, without the script (a fresh Redis): EVALSHA fails, EVAL loads it, shared again.
    let back = OwnRedis::start_on(port);
    let mut n = 5;
    let shared = eventually(Duration::from_secs(5), || {
        n += 1;
        let app = &app;
        async move {
            timed_create(app, n).await;
            create_limit_mode(app).await == "shared"
        }
    })
    .await;
    assert!(shared, "the create limit was not shared again within 5 s");

    // Paused: each create waits at most one command timeout more.
    back.signal(libc::SIGSTOP);
    for n in 100..105 {
        let took = timed_create(&app, n).await;
        assert!(took <= COMMAND_TIMEOUT + MARGIN, "create took {took:?}");
    }
    back.signal(libc::SIGCONT);
    app.shutdown().await;
}

/// Sends a keyed `PATCH` of `code`'s target.
async fn patch_target(app: &TestApp, key: &str, code: &str, url: &str) {
    let body = serde_json::json!({ "url": url }).to_string();
    let answer = app.keyed("PATCH", &format!("/{code}"), key, &body).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
}

async fn location_on(app: &TestApp, code: &str) -> Option<String> {
    app.get(&format!("/{code}"))
        .await
        .header("location")
        .map(str::to_owned)
}

/// Three instances on `db_url` with `flags`, a key, and a link it made that every instance
/// serves (so every instance holds it in memory).
async fn three_serving_a_new_link(db_url: &str, flags: &[&str]) -> ([TestApp; 3], String, String) {
    let apps = [
        spawn_app_on(db_url, flags).await,
        spawn_app_on(db_url, flags).await,
        spawn_app_on(db_url, flags).await,
    ];
    let key = common::make_key(db_url, "owner", "links");
    let made = apps[0]
        .keyed(
            "POST",
            "/shorten",
            &key,
            r#"{"url": "https://example.com/before"}"#,
        )
        .await;
    let code = made.json()["code"].as_str().unwrap().to_owned();
    for app in &apps {
        assert_eq!(
            location_on(app, &code).await.as_deref(),
            Some("https://example.com/before")
        );
    }
    (apps, key, code)
}

/// An instance started now serves `code`'s new target, read from Redis (not Postgres).
async fn a_fresh_instance_reads_the_change_from_redis(db_url: &str, flags: &[&str], code: &str) {
    let fresh = spawn_app_on(db_url, flags).await;
    assert_eq!(
        location_on(&fresh, code).await.as_deref(),
        Some("https://example.com/after")
    );
    assert_eq!(
        fresh
            .scrape()
            .await
            .value("shortener_link_resolutions_total", &[("outcome", "redis")]),
        1.0
    );
    fresh.shutdown().await;
}

#[tokio::test]
#[ignore = "fault injection: run by `make fault`"]
async fn a_change_made_while_redis_is_down_is_served_everywhere_and_by_redis_once_it_is_back() {
    let redis = OwnRedis::start();
    let db_url = common::fresh_database().await;
    let redis_url = redis.url();
    let flags = [
        "--redis-url",
        &redis_url,
        "--redis-command-timeout",
        "50ms",
        "--cache-ttl",
        "60s",
    ];
    let (apps, key, code) = three_serving_a_new_link(&db_url, &flags).await;

    let trusted = |scrape: common::Scrape| scrape.value("shortener_link_cache_trusted", &[]);
    for app in &apps {
        let hears = eventually(Duration::from_secs(10), || async {
            trusted(app.scrape().await) == 1.0
        })
        .await;
        assert!(hears, "an instance never subscribed to changes");
    }
    let port = redis.kill();
    patch_target(&apps[0], &key, &code, "https://example.com/after").await;
    // Neither written into Redis nor announced: the feed in Postgres carries it, within the
    // second an instance that cannot hear changes keeps a link (and the second between two
    // reads of the feed).
    let bound = UNTRUSTED_TTL + CATCH_UP_EVERY + MARGIN;
    for app in &apps {
        let served = eventually(bound, || async {
            location_on(app, &code).await.as_deref() == Some("https://example.com/after")
        })
        .await;
        assert!(
            served,
            "an instance still served the old target with Redis down"
        );
        // What the operator sees (LinkChangesNotHeard once it lasts).
        let deaf = eventually(Duration::from_secs(5), || async {
            trusted(app.scrape().await) == 0.0
        })
        .await;
        assert!(
            deaf,
            "an instance still reported hearing changes with Redis down"
        );
    }
    // Redis is back (empty, as after a restart without persistence): every instance keeps
    // serving the change, and the change is written there.
    let redis = OwnRedis::start_on(port);
    let redis_key = format!("shortener:link:{code}");
    let repaired = eventually(Duration::from_secs(10), || async {
        redis.cli(&["GET", &redis_key]).starts_with("v2\n")
    })
    .await;
    assert!(
        repaired,
        "the change was never written into Redis once it was back"
    );
    for app in &apps {
        let hears = eventually(Duration::from_secs(10), || async {
            trusted(app.scrape().await) == 1.0
        })
        .await;
        assert!(hears, "an instance never heard changes again");
    }
    for app in &apps {
        assert_eq!(
            location_on(app, &code).await.as_deref(),
            Some("https://example.com/after")
        );
    }
    a_fresh_instance_reads_the_change_from_redis(&db_url, &flags, &code).await;
    for app in apps {
        app.shutdown().await;
    }
}

#[tokio::test]
#[ignore = "fault injection: run by `make fault`"]
async fn a_change_redis_refused_to_store_reaches_it_once_it_takes_writes_again() {
    let redis = OwnRedis::start();
    let db_url = common::fresh_database().await;
    let redis_url = redis.url();
    let flags = ["--redis-url", &redis_url, "--cache-ttl", "60s"];
    let (apps, key, code) = three_serving_a_new_link(&db_url, &flags).await;
    let redis_key = format!("shortener:link:{code}");
    assert!(redis.cli(&["GET", &redis_key]).starts_with("v1\n"));

    // Redis is out of memory: it answers, publishes, and refuses every write.
    redis.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    patch_target(&apps[0], &key, &code, "https://example.com/after").await;
    // Announced: every instance serves the new target...
    for app in &apps {
        let served = eventually(Duration::from_secs(5), || async {
            location_on(app, &code).await.as_deref() == Some("https://example.com/after")
        })
        .await;
        assert!(served, "an instance still served the old target");
    }
    // ...and Redis still holds the old version, which it would give a fresh instance.
    assert!(
        redis.cli(&["GET", &redis_key]).starts_with("v1\n"),
        "Redis took a write while out of memory"
    );
    // Out of memory for longer than the feed's look-back for late commits (10 s): what
    // repairs Redis must not depend on the change being recent.
    let db = connect(&db_url).await;
    let old = eventually(Duration::from_secs(30), || async {
        scalar(
            &db,
            "SELECT count(*) FROM link_changes \
             WHERE changed_at < clock_timestamp() - interval '11 seconds'",
        )
        .await
            == 1
    })
    .await;
    assert!(old, "the change never aged past the feed's look-back");
    redis.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    let repaired = eventually(Duration::from_secs(10), || async {
        redis.cli(&["GET", &redis_key]).starts_with("v2\n")
    })
    .await;
    assert!(
        repaired,
        "the change never reached Redis once it took writes"
    );
    // A fresh instance reads the new version from Redis.
    a_fresh_instance_reads_the_change_from_redis(&db_url, &flags, &code).await;
    for app in apps {
        app.shutdown().await;
    }
}

#[tokio::test]
#[ignore = "fault injection: run by `make fault`"]
async fn a_replica_holding_the_old_version_puts_it_back_into_no_tier() {
    let primary = OwnPostgres::start();
    let replica = OwnPostgres::replica_of(&primary);
    let redis = OwnRedis::start();
    let db_url = database_on(&primary).await;
    // An old link (the replica is asked for it), replicated.
    let (id, code) = code_made_ago(Duration::from_secs(3_600), 3);
    insert_link(&db_url, id, &code, "https://example.com/before").await;
    wait_for_replica(&primary, &replica).await;
    let admin = common::make_key(&db_url, "ops", "admin");
    let redis_url = redis.url();
    let editor = spawn_app_on(&db_url, &["--redis-url", &redis_url]).await;
    connect(&replica.url("postgres"))
        .await
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    patch_target(&editor, &admin, &code, "https://example.com/after").await;
    let redis_key = format!("shortener:link:{code}");
    let announced = eventually(Duration::from_secs(5), || async {
        redis.cli(&["GET", &redis_key]).starts_with("v2\n")
    })
    .await;
    assert!(announced, "the change never reached Redis");
    // Many changes to other links since (more than a fresh instance reads back from the
    // feed's end), and Redis forgets the link (its TTL ran out): only the lagging replica
    // and the primary remain, and they disagree.
    connect(&db_url)
        .await
        .batch_execute(
            "INSERT INTO link_changes (link_id, code, version) \
             SELECT g, 'other' || g, 2 FROM generate_series(1, 1500) AS g",
        )
        .await
        .unwrap();
    redis.cli(&["DEL", &redis_key]);

    // An instance started after the change, reading the replica first.
    let reader = spawn_app_on(
        &db_url,
        &[
            "--database-replica-urls",
            &replica.url("shortener"),
            "--redis-url",
            &redis_url,
        ],
    )
    .await;
    assert_eq!(
        location_on(&reader, &code).await.as_deref(),
        Some("https://example.com/after"),
        "the replica's old version was served"
    );
    // The replica was asked, and its answer passed over for the primary's.
    assert_replica_asked_then_primary(&reader).await;
    let filled = eventually(Duration::from_secs(5), || async {
        !redis.cli(&["GET", &redis_key]).trim().is_empty()
    })
    .await;
    assert!(filled, "the lookup filled nothing into Redis");
    assert!(
        redis.cli(&["GET", &redis_key]).starts_with("v2\n"),
        "Redis was filled with the replica's old version"
    );
    connect(&replica.url("postgres"))
        .await
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    reader.shutdown().await;
    editor.shutdown().await;
}

#[tokio::test]
#[ignore = "fault injection: run by `make fault`"]
async fn a_replica_lagging_past_the_bound_never_turns_an_existing_link_into_a_404() {
    let primary = OwnPostgres::start();
    let replica = OwnPostgres::replica_of(&primary);
    let db_url = database_on(&primary).await;
    wait_for_replica(&primary, &replica).await;
    let replica_url = replica.url("shortener");
    let app = spawn_app_on(
        &db_url,
        &[
            "--database-replica-urls",
            &replica_url,
            "--replica-lag-bound",
            "2s",
        ],
    )
    .await;
    let lag = || replica_lag(&app);
    let caught_up = eventually(Duration::from_secs(10), || async { lag().await == 0.0 }).await;
    assert!(
        caught_up,
        "a replica that replays everything reads as lagging"
    );
    assert_eq!(
        app.scrape()
            .await
            .value("shortener_db_replica_lag_bound_seconds", &[]),
        2.0
    );

    connect(&replica.url("postgres"))
        .await
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    // A link older than the bound (its code says so), on the primary only.
    let (id, code) = code_made_ago(Duration::from_secs(3_600), 9);
    insert_link(
        &db_url,
        id,
        &code,
        "https://example.com/only-on-the-primary",
    )
    .await;
    let lagging = eventually(Duration::from_secs(15), || async { lag().await > 2.0 }).await;
    assert!(lagging, "the lag never passed the bound: {}", lag().await);

    // The replica is asked, has no such link, and lags: the primary answers.
    let found = app.get(&format!("/{code}")).await;
    assert_eq!(found.status, 302, "{}", found.text());
    assert_eq!(
        found.header("location"),
        Some("https://example.com/only-on-the-primary")
    );
    assert_replica_asked_then_primary(&app).await;

    connect(&replica.url("postgres"))
        .await
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    let back = eventually(Duration::from_secs(10), || async { lag().await == 0.0 }).await;
    assert!(back, "the lag never went back to 0 once replay resumed");
    app.shutdown().await;
}

/// F5 at its length: replay paused for 30 s, codes created at its start, in its middle and near
/// its end on one instance, each first read on another (nothing cached there) more than
/// `SHORTENER_REPLICA_LAG_BOUND` after its create, while the replica still lacks it: every one
/// resolves on its first read (the replica's "no such link" is checked on the primary), and is
/// not negative-cached.
#[tokio::test]
#[ignore = "fault injection: run by `make fault`"]
async fn f5_codes_made_during_a_30_s_pause_resolve_on_their_first_late_read() {
    const PAUSE: Duration = Duration::from_secs(30);
    const BOUND: Duration = Duration::from_secs(2);
    let primary = OwnPostgres::start();
    let replica = OwnPostgres::replica_of(&primary);
    let db_url = database_on(&primary).await;
    wait_for_replica(&primary, &replica).await;
    let replica_url = replica.url("shortener");
    let flags = [
        "--database-replica-urls",
        replica_url.as_str(),
        "--replica-lag-bound",
        "2s",
    ];
    let (writer, reader) = (
        spawn_app_on(&db_url, &flags).await,
        spawn_app_on(&db_url, &flags).await,
    );
    let lag = || replica_lag(&reader);
    assert!(eventually(Duration::from_secs(10), || async { lag().await == 0.0 }).await);

    let replica_admin = connect(&replica.url("postgres")).await;
    replica_admin
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    let paused_at = tokio::time::Instant::now();
    // The scenario is a length of time: creates and reads at fixed points of the pause.
    for (made_at, name) in [(0, "start"), (15, "middle"), (PAUSE.as_secs() - 5, "end")] {
        tokio::time::sleep_until(paused_at + Duration::from_secs(made_at)).await;
        let code = writer
            .create(&format!("https://example.com/f5/{name}"))
            .await;
        let made = tokio::time::Instant::now();
        // First read once the code is older than the bound (so it is not sent straight to the
        // primary as a young code), with the replica known to be past the bound.
        tokio::time::sleep_until(made + BOUND + Duration::from_secs(2)).await;
        assert!(
            eventually(Duration::from_secs(5), || async { lag().await > 2.0 }).await,
            "the replica was not measured past the bound: {}",
            lag().await
        );
        let replica_has_it = scalar(
            &connect(&replica_url).await,
            &format!("SELECT count(*) FROM links WHERE code = '{code}'"),
        )
        .await;
        assert_eq!(replica_has_it, 0, "the replica replayed the {name} code");
        for read in ["first", "second"] {
            let answer = reader.get(&format!("/{code}")).await;
            assert_eq!(
                answer.status,
                302,
                "the {name} code's {read} read: {}",
                answer.text()
            );
        }
    }
    // Replay stays paused until here, whatever the reads took.
    replica_admin
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || async { lag().await == 0.0 }).await);
    writer.shutdown().await;
    reader.shutdown().await;
}

/// Which way the injected clock is stepped.
#[derive(Debug, Clone, Copy)]
enum Step {
    None,
    Ahead(Duration),
    Back(Duration),
}

#[tokio::test]
#[ignore = "fault injection: run by `make fault`"]
async fn clock_steps_either_way_keep_ids_unique_and_young_codes_read_from_the_primary() {
    let (_primary, replica, db_url) = scenario::primary_with_replica().await;
    let replica_url = replica.url("shortener");
    // One clock for both instances (as NTP steps every host's), stepped by the test. The lag
    // bound is long enough that the replica is not found lagging within the test: whether a
    // code is young decides alone where it is read.
    let clock = shortener::clock::Clock::adjustable();
    let flags = [
        "--database-replica-urls",
        &replica_url,
        "--replica-lag-bound",
        "60s",
    ];
    let maker =
        common::spawn_with_clock(common::config(&db_url, &flags), &db_url, clock.clone()).await;
    let reader =
        common::spawn_with_clock(common::config(&db_url, &flags), &db_url, clock.clone()).await;
    let ready = eventually(Duration::from_secs(10), || async {
        readiness(&maker).await.1["creates"] == "ready"
    })
    .await;
    assert!(ready, "{:?}", readiness(&maker).await);
    // From here on the replica lacks every code made: read there, one would be a 404.
    connect(&replica.url("postgres"))
        .await
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();

    let mut made = Vec::new();
    for (n, step) in [
        Step::None,
        Step::Ahead(Duration::from_secs(2 * 3600)),
        Step::Back(Duration::from_secs(3 * 3600)),
    ]
    .into_iter()
    .enumerate()
    {
        // A code made just before the step and first read after it, and one made after it.
        let before = maker
            .create(&format!("https://example.com/step-{n}/before"))
            .await;
        match step {
            Step::None => {}
            Step::Ahead(by) => clock.advance(by),
            Step::Back(by) => clock.rewind(by),
        }
        let after = maker
            .create(&format!("https://example.com/step-{n}/after"))
            .await;
        for code in [&before, &after] {
            let response = send(reader.addr, "HEAD", &format!("/{code}"), &[], b"").await;
            assert_eq!(
                response.status, 302,
                "{code}, made around the step {step:?}, was not read from the primary"
            );
        }
        made.extend([before, after]);
    }
    let codec = CodeCodec::new(&CodeKey::derive(TEST_CODE_KEY));
    let ids: std::collections::BTreeSet<i64> = made
        .iter()
        .map(|code| codec.decode(code.as_bytes()).expect("a generated code"))
        .collect();
    assert_eq!(ids.len(), made.len(), "an id was issued twice: {made:?}");
    // The ids keep rising through the step back (they borrow ahead instead of repeating),
    // and the step is counted.
    let ordered: Vec<i64> = made
        .iter()
        .map(|code| codec.decode(code.as_bytes()).unwrap())
        .collect();
    assert!(
        ordered.windows(2).all(|pair| pair[0] < pair[1]),
        "{ordered:?}"
    );
    let counted = eventually(Duration::from_secs(5), || async {
        maker
            .scrape()
            .await
            .value("shortener_id_clock_steps_back_total", &[])
            >= 1.0
    })
    .await;
    assert!(counted, "the step back was not counted");
    connect(&replica.url("postgres"))
        .await
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    maker.shutdown().await;
    reader.shutdown().await;
}
