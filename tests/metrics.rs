//! `/metrics` after known traffic: every series of `docs/metrics.md` is exported from the
//! start, counters move by exactly what was sent, a Redis hit moves the Redis tier, and a scan
//! of unknown codes adds no series. The first scrape (an instance with a replica) is kept for
//! `promtool check metrics` (`scripts/check-monitoring.sh`, run by CI).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Scrape, TestApp, eventually, send, spawn_app, spawn_app_on};

const REDIRECT: &str = "/{code}";

/// The metric names of the catalogue: the first cell of each table row (of the service's
/// own sections: the platform series the alerts read are Kubernetes').
fn catalogue() -> BTreeSet<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md"))
        .expect("docs/metrics.md");
    text.split("\n## ")
        .filter(|section| !section.starts_with("Platform series"))
        .flat_map(str::lines)
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// The metric names a scrape exports (a histogram's series under its own name).
fn exported(scrape: &Scrape) -> BTreeSet<String> {
    scrape
        .samples
        .keys()
        .map(|key| {
            let name = key.split('{').next().unwrap();
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| scrape.text.contains(&format!("# TYPE {base} histogram")))
                .unwrap_or(name)
                .to_owned()
        })
        .collect()
}

fn requests(scrape: &Scrape, route: &str, method: &str, class: &str) -> f64 {
    scrape.value(
        "http_server_requests_total",
        &[
            ("http_route", route),
            ("http_request_method", method),
            ("http_response_status_class", class),
        ],
    )
}

fn resolutions(scrape: &Scrape, outcome: &str) -> f64 {
    scrape.value("shortener_link_resolutions_total", &[("outcome", outcome)])
}

#[tokio::test]
async fn every_catalogued_series_is_exported_from_the_start_and_nothing_else() {
    // With a replica (the stack's; its pools connect only when used): some series are a
    // replica's only.
    let db_url = common::fresh_database().await;
    let replica = std::env::var("SHORTENER_TEST_REPLICA_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5433/postgres".into());
    let app = spawn_app_on(&db_url, &["--database-replica-urls", &replica]).await;
    let response = send(app.admin, "GET", "/metrics", &[], b"").await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let scrape = Scrape::parse(response.text());
    let catalogue = catalogue();
    let exported = exported(&scrape);
    assert!(catalogue.len() > 30, "the catalogue parsed: {catalogue:?}");
    let missing: Vec<_> = catalogue.difference(&exported).collect();
    assert!(missing.is_empty(), "catalogued, not exported: {missing:?}");
    let unlisted: Vec<_> = exported.difference(&catalogue).collect();
    assert!(
        unlisted.is_empty(),
        "exported, not catalogued: {unlisted:?}"
    );
    // Every label set is there before its first event: counters read 0.
    assert_eq!(requests(&scrape, REDIRECT, "GET", "3xx"), 0.0);
    assert_eq!(requests(&scrape, "other", "_OTHER", "5xx"), 0.0);
    assert_eq!(resolutions(&scrape, "redis"), 0.0);
    assert_eq!(
        scrape.value(
            "shortener_db_errors_total",
            &[("operation", "create"), ("cause", "pool_timeout")]
        ),
        0.0
    );
    assert_eq!(
        scrape.value(
            "shortener_db_pool_max_connections",
            &[("database", "primary"), ("pool", "write")]
        ),
        8.0
    );
    assert_eq!(
        scrape.value("shortener_cache_capacity", &[("cache", "links")]),
        1_000_000.0
    );
    assert_eq!(
        scrape.value(
            "shortener_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert!(scrape.value("process_resident_memory_bytes", &[]) > 0.0);
    // Kept for `promtool check metrics` and for the check that every series the rules and
    // the dashboard use is exported (scripts/check-monitoring.sh).
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("metrics-scrape.prom");
    std::fs::write(&path, &scrape.text).expect("keep the scrape for promtool");
    app.shutdown().await;
}

#[tokio::test]
async fn known_traffic_moves_exactly_the_series_it_should() {
    let app = spawn_app(&[]).await;
    let code = app.create("https://example.com/metrics").await;
    let [in_postgres] = <[String; 1]>::try_from(app.links_in_postgres("pg", 1).await).unwrap();
    const REDIRECTS: usize = 7;
    for _ in 0..REDIRECTS {
        assert_eq!(app.get(&format!("/{code}")).await.status, 302);
    }
    // Made by "another instance": the first redirect reads the primary, the second memory.
    assert_eq!(app.get(&format!("/{in_postgres}")).await.status, 302);
    assert_eq!(app.get(&format!("/{in_postgres}")).await.status, 302);
    assert_eq!(
        send(app.addr, "HEAD", &format!("/{code}"), &[], b"")
            .await
            .status,
        302
    );
    // An unknown code: looked up once, then remembered as unknown.
    assert_eq!(app.get("/nosuchcode").await.status, 404);
    assert_eq!(app.get("/nosuchcode").await.status, 404);
    assert_eq!(app.get(&format!("/{code}/stats")).await.status, 200);
    assert_eq!(app.get("/a/b/c").await.status, 404);
    assert_eq!(
        send(app.addr, "PUT", "/shorten", &[], b"").await.status,
        405
    );

    let scrape = app.scrape().await;
    assert_eq!(requests(&scrape, "/shorten", "POST", "2xx"), 1.0);
    assert_eq!(
        requests(&scrape, REDIRECT, "GET", "3xx"),
        (REDIRECTS + 2) as f64
    );
    assert_eq!(requests(&scrape, REDIRECT, "HEAD", "3xx"), 1.0);
    assert_eq!(requests(&scrape, REDIRECT, "GET", "4xx"), 2.0);
    assert_eq!(requests(&scrape, "/{code}/stats", "GET", "2xx"), 1.0);
    assert_eq!(requests(&scrape, "other", "GET", "4xx"), 1.0);
    assert_eq!(requests(&scrape, "/shorten", "_OTHER", "4xx"), 1.0);
    assert_eq!(
        scrape.value(
            "http_server_request_duration_seconds_count",
            &[("http_route", REDIRECT)]
        ),
        (REDIRECTS + 5) as f64
    );
    assert!(
        scrape.value(
            "http_server_request_duration_seconds_bucket",
            &[("http_route", REDIRECT), ("le", "10")]
        ) == (REDIRECTS + 5) as f64
    );
    // The create filled memory, so its redirects (and the stats read) never left it.
    assert_eq!(resolutions(&scrape, "moka"), (REDIRECTS + 1 + 1 + 1) as f64);
    assert_eq!(resolutions(&scrape, "primary"), 1.0);
    assert_eq!(resolutions(&scrape, "not_found"), 1.0);
    assert_eq!(resolutions(&scrape, "negative"), 1.0);
    assert_eq!(resolutions(&scrape, "redis"), 0.0);
    assert_eq!(resolutions(&scrape, "replica"), 0.0);
    assert_eq!(
        scrape.value("shortener_create_batches_total", &[("result", "committed")]),
        1.0
    );
    assert_eq!(scrape.value("shortener_create_batch_size_count", &[]), 1.0);
    assert!(scrape.value("shortener_worker_id", &[]) >= 0.0);
    assert_eq!(
        scrape.value("shortener_rate_limit_create_mode", &[("mode", "off")]),
        1.0
    );

    // Clicks reach Postgres within a flush interval (100 ms in tests); HEAD counts none.
    let flushed = eventually(Duration::from_secs(5), || async {
        let scrape = app.scrape().await;
        let flushed = |kind| scrape.value("shortener_clicks_flushed_total", &[("kind", kind)]);
        flushed("person") + flushed("bot") == (REDIRECTS + 2) as f64
            && scrape.value("shortener_click_batches_pending", &[]) == 0.0
    })
    .await;
    assert!(flushed, "{}", app.scrape().await.text);
    let up = eventually(Duration::from_secs(5), || async {
        app.scrape()
            .await
            .value("shortener_db_up", &[("database", "primary")])
            == 1.0
    })
    .await;
    assert!(up, "the probe marks the primary up");
    app.shutdown().await;
}

#[tokio::test]
async fn a_scan_of_unknown_codes_adds_no_series() {
    let app = spawn_app(&[]).await;
    assert_eq!(app.get("/warmup").await.status, 404);
    let before = app.scrape().await;
    for n in 0..200 {
        let status = app.get(&format!("/scan{n}")).await.status;
        assert_eq!(status, 404);
        assert_eq!(app.get(&format!("/wp-admin/{n}.php")).await.status, 404);
    }
    let after = app.scrape().await;
    let names = |scrape: &Scrape| scrape.samples.keys().cloned().collect::<BTreeSet<_>>();
    assert_eq!(names(&before), names(&after), "the same series, no more");
    assert_eq!(resolutions(&after, "not_found"), 201.0);
    assert_eq!(requests(&after, "other", "GET", "4xx"), 200.0);
    assert!(!after.text.contains("scan1"), "no code in any label");
    app.shutdown().await;
}

#[tokio::test]
async fn rate_limit_decisions_are_counted_by_route_and_outcome() {
    let app = spawn_app(&["--rate-limit-redirect", "1/s,burst=2"]).await;
    let code = app.create("https://example.com/limited").await;
    let statuses = [
        app.get(&format!("/{code}")).await.status,
        app.get(&format!("/{code}")).await.status,
        app.get(&format!("/{code}")).await.status,
    ];
    assert_eq!(statuses, [302, 302, 429]);
    let scrape = app.scrape().await;
    let decisions = |decision: &str| {
        scrape.value(
            "shortener_rate_limit_decisions_total",
            &[("route", "redirect"), ("decision", decision)],
        )
    };
    assert_eq!((decisions("allowed"), decisions("limited")), (2.0, 1.0));
    assert_eq!(requests(&scrape, REDIRECT, "GET", "4xx"), 1.0);
    app.shutdown().await;
}

async fn spawn_with_redis(db_url: &str, prefix: &str) -> TestApp {
    let redis = common::redis_single_url();
    spawn_app_on(
        db_url,
        &["--redis-url", &redis, "--redis-key-prefix", prefix],
    )
    .await
}

#[tokio::test]
async fn a_redis_hit_moves_the_redis_tier() {
    let db_url = common::fresh_database().await;
    let prefix = common::unique_redis_prefix();
    let first = spawn_with_redis(&db_url, &prefix).await;
    // Written through to Redis by the create.
    let code = first.create("https://example.com/redis-tier").await;
    first.shutdown().await;
    let second = spawn_with_redis(&db_url, &prefix).await;
    assert_eq!(second.get(&format!("/{code}")).await.status, 302);
    assert_eq!(second.get(&format!("/{code}")).await.status, 302);
    let scrape = second.scrape().await;
    assert_eq!(resolutions(&scrape, "redis"), 1.0);
    assert_eq!(resolutions(&scrape, "moka"), 1.0);
    assert_eq!(resolutions(&scrape, "primary"), 0.0);
    assert_eq!(scrape.value("shortener_redis_circuit_open", &[]), 0.0);
    second.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_redis_is_counted_by_command_and_cause() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let redis = format!("redis://{}", closed.local_addr().unwrap());
    drop(closed);
    let app = spawn_app(&["--redis-url", &redis]).await;
    let [code] = <[String; 1]>::try_from(app.links_in_postgres("nr", 1).await).unwrap();
    assert_eq!(app.get(&format!("/{code}")).await.status, 302);
    let scrape = app.scrape().await;
    let failed: f64 = ["timeout", "unavailable", "error"]
        .iter()
        .map(|cause| {
            scrape.value(
                "shortener_redis_errors_total",
                &[("command", "get"), ("cause", cause)],
            )
        })
        .sum();
    assert_eq!(failed, 1.0, "the one GET failed");
    assert_eq!(
        scrape.value(
            "shortener_redis_errors_total",
            &[("command", "get"), ("cause", "error")]
        ),
        0.0,
        "and its cause is a connection that is not there, not an answer"
    );
    assert_eq!(resolutions(&scrape, "primary"), 1.0);
    app.shutdown().await;
}

#[tokio::test]
async fn a_database_that_is_away_is_counted_by_operation_and_cause() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("postgres://postgres@{}/x", closed.local_addr().unwrap());
    drop(closed);
    let app = common::spawn_with(
        common::config(&dead, &["--db-acquire-timeout", "100ms"]),
        &dead,
    )
    .await;
    assert_eq!(app.get("/unknowncode").await.status, 503);
    let scrape = app.scrape().await;
    assert_eq!(resolutions(&scrape, "unavailable"), 1.0);
    let lookups: f64 = ["pool_timeout", "connection", "timeout"]
        .iter()
        .map(|cause| {
            scrape.value(
                "shortener_db_errors_total",
                &[("operation", "lookup_primary"), ("cause", cause)],
            )
        })
        .sum();
    assert_eq!(lookups, 1.0, "{}", scrape.text);
    assert_eq!(requests(&scrape, REDIRECT, "GET", "5xx"), 1.0);
    let timed_out = eventually(Duration::from_secs(5), || async {
        app.scrape().await.value(
            "shortener_db_pool_acquire_timeouts_total",
            &[("database", "primary"), ("pool", "read")],
        ) >= 1.0
    })
    .await;
    assert!(timed_out, "the pool's own statistics count the timeout");
    assert_eq!(
        app.scrape()
            .await
            .value("shortener_db_up", &[("database", "primary")]),
        0.0
    );
    app.shutdown().await;
}

#[tokio::test]
async fn metrics_off_records_nothing_and_serves_no_metrics() {
    let app = spawn_app(&["--metrics", "off"]).await;
    let code = app.create("https://example.com/quiet").await;
    assert_eq!(app.get(&format!("/{code}")).await.status, 302);
    let answer = send(app.admin, "GET", "/metrics", &[], b"").await;
    answer.assert_problem(404);
    app.shutdown().await;
}
