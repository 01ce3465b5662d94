//! The Prometheus metrics of one server: its own recorder, and a handle for every series of
//! `docs/metrics.md`, registered up front with every label set it can take.
//!
//! Each server builds its own recorder instead of installing a global one: the `metrics`
//! macros reach only the process-global recorder, which the several servers of one test
//! process would share. Components get the handles of their area (`ClickMetrics`, …) and
//! update them where events happen; an update is an atomic add, and a histogram record is a
//! push onto a lock-free buffer that [`Metrics::run_upkeep`] drains into buckets. Each
//! group's `Default` is a set of no-op handles, for components built without a server
//! (benchmarks, unit tests). Labels are closed vocabularies (enums here), never codes, URLs
//! or addresses.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

mod pipelines;
mod registry;
mod requests;
mod sampled;
mod storage;
mod vocabulary;

pub use pipelines::{BlocklistMetrics, ClickMetrics, CreateMetrics, LeaseMetrics, PruneMetrics};
pub use requests::{HttpMetrics, LimitMetrics, ResolveMetrics};
pub use sampled::{PoolGauges, PoolName, Sampled};
pub use storage::{DbMetrics, RedisMetrics};
pub use vocabulary::{
    BatchResult, CacheName, ClickLabel, CreateLimitMode, DbCause, DbOperation, HttpMethod,
    HttpRoute, LimitRoute, PrunePass, PruneTable, RedisCause, RedisCommand, ReloadResult,
    RenewalResult, ResolveOutcome, StatusClass,
};

use registry::Registry;

/// How often histogram samples are drained into their buckets (and on every scrape).
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Request durations, in seconds: sub-millisecond steps for cached redirects, and every SLO
/// threshold (5 ms redirects, 50 ms creates) as a bucket bound.
pub const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Rows per create batch (the batch bound defaults to 256).
const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Whether a server records metrics (`SHORTENER_METRICS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recording {
    On,
    Off,
}

/// What the server is, for [`Metrics::new`].
pub struct Layout {
    /// `primary`, `replica_1`, …
    pub databases: Vec<String>,
    pub pools: Vec<PoolName>,
    /// Capacity of each [`CacheName`], in its order.
    pub cache_capacity: [u64; CacheName::COUNT],
}

/// One server's recorder and every handle on it.
pub struct Metrics {
    handle: PrometheusHandle,
    recording: Recording,
    /// Upkeeps run so far.
    upkeeps: AtomicU64,
    started_unix_seconds: f64,
    pub http: HttpMetrics,
    pub resolve: ResolveMetrics,
    pub redis: RedisMetrics,
    pub db: DbMetrics,
    pub creates: CreateMetrics,
    pub clicks: ClickMetrics,
    pub limits: LimitMetrics,
    pub lease: LeaseMetrics,
    pub prune: PruneMetrics,
    pub blocklist: BlocklistMetrics,
    pub sampled: Sampled,
}

impl Metrics {
    /// A recorder of its own, with every series of the catalogue registered.
    pub fn new(layout: &Layout) -> Metrics {
        Self::build(layout, Recording::On)
    }

    /// With `Recording::Off`, every handle a no-op and nothing to render.
    pub fn recording(layout: &Layout, recording: Recording) -> Metrics {
        Self::build(layout, recording)
    }

    /// Whether anything is recorded.
    pub fn is_on(&self) -> bool {
        self.recording == Recording::On
    }

    fn build(layout: &Layout, recording: Recording) -> Metrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("_duration_seconds".into()),
                DURATION_BUCKETS,
            )
            .and_then(|builder| {
                builder.set_buckets_for_metric(
                    Matcher::Full("shortener_create_batch_size".into()),
                    BATCH_SIZE_BUCKETS,
                )
            })
            .expect("the bucket lists are not empty")
            .build_recorder();
        let handle = recorder.handle();
        let registry = Registry {
            recorder: (recording == Recording::On).then_some(&recorder),
        };
        let metrics = Metrics {
            http: requests::http_metrics(&registry),
            resolve: ResolveMetrics::register(&registry),
            redis: RedisMetrics::register(&registry),
            db: DbMetrics::register(&registry),
            creates: pipelines::create_metrics(&registry),
            clicks: pipelines::click_metrics(&registry),
            limits: LimitMetrics::register(&registry),
            lease: LeaseMetrics::register(&registry),
            prune: PruneMetrics::register(&registry),
            blocklist: BlocklistMetrics::register(&registry),
            sampled: sampled::sampled(&registry, layout),
            handle,
            recording,
            upkeeps: AtomicU64::new(0),
            started_unix_seconds: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |since| since.as_secs_f64()),
        };
        registry
            .gauge(
                "shortener_build_info",
                "Always 1; the version of the running binary.",
                &[("version", env!("CARGO_PKG_VERSION"))],
            )
            .set(1.0);
        metrics
    }

    /// The exposition text of every series, the process's own included.
    pub fn render(&self) -> String {
        self.http.publish();
        self.resolve.publish();
        self.limits.publish();
        let mut text = self.handle.render();
        if self.is_on() {
            self.http.render_durations(&mut text);
        }
        super::process::render(&mut text, self.started_unix_seconds);
        text
    }

    /// Drains histogram samples into their buckets, so the buffers stay small.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
        self.upkeeps.fetch_add(1, Ordering::Relaxed);
    }

    /// Upkeeps run so far.
    pub fn upkeeps(&self) -> u64 {
        self.upkeeps.load(Ordering::Relaxed)
    }

    /// Runs the upkeep every `every` until `stop` is cancelled.
    pub async fn keep_up(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.run_upkeep(),
                _ = stop.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Arc<Metrics> {
        Arc::new(Metrics::new(&Layout {
            databases: vec!["primary".into()],
            pools: vec![],
            cache_capacity: [10, 1],
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn upkeep_runs_every_interval_until_stopped() {
        let metrics = metrics();
        let stop = CancellationToken::new();
        let tasks = tokio_util::task::TaskTracker::new();
        let task = tasks.spawn(Arc::clone(&metrics).keep_up(UPKEEP_EVERY, stop.clone()));
        // Paused time jumps straight to each tick: at 0, 1, 2 and 3 intervals.
        tokio::time::sleep(UPKEEP_EVERY * 3 + Duration::from_millis(1)).await;
        assert_eq!(metrics.upkeeps(), 4);
        stop.cancel();
        task.await.unwrap();
        tokio::time::sleep(UPKEEP_EVERY * 3).await;
        assert_eq!(metrics.upkeeps(), 4, "no upkeep after the stop");
    }

    #[test]
    fn observations_land_in_the_series_of_their_labels() {
        let metrics = metrics();
        let http = &metrics.http;
        http.observe(
            HttpRoute::Redirect,
            HttpMethod::Get,
            302,
            Duration::from_micros(300),
        );
        http.observe(
            HttpRoute::Shorten,
            HttpMethod::Post,
            503,
            Duration::from_millis(40),
        );
        metrics.run_upkeep();
        let text = metrics.render();
        let has = |line: &str| text.lines().any(|candidate| candidate == line);
        assert!(has(
            r#"http_server_requests_total{http_route="/{code}",http_request_method="GET",http_response_status_class="3xx"} 1"#
        ));
        assert!(has(
            r#"http_server_requests_total{http_route="/shorten",http_request_method="POST",http_response_status_class="5xx"} 1"#
        ));
        assert!(has(
            r#"http_server_request_duration_seconds_bucket{http_route="/{code}",le="0.0005"} 1"#
        ));
        assert!(has(
            r#"http_server_request_duration_seconds_bucket{http_route="/{code}",le="0.00025"} 0"#
        ));
        assert!(has(
            r#"http_server_request_duration_seconds_bucket{http_route="/shorten",le="0.05"} 1"#
        ));
    }
}
