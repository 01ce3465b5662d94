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

use super::shards::{CounterFamily, DurationHistograms};
use ::metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::PrometheusRecorder;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

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

/// Declares a closed label vocabulary: an enum, its label values in order, and its size.
macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $value:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub const COUNT: usize = Self::ALL.len();

            pub fn label(self) -> &'static str {
                match self { $($name::$variant => $value),+ }
            }

            fn index(self) -> usize {
                self as usize
            }
        }

        impl Vocabulary for $name {
            fn labels() -> Vec<&'static str> {
                $name::ALL.iter().map(|value| value.label()).collect()
            }
        }
    };
}

vocabulary!(
    /// `http_route`: the route template, never the path.
    HttpRoute {
        Redirect => "/{code}",
        Stats => "/{code}/stats",
        Shorten => "/shorten",
        OpenApi => "/openapi.json",
        Other => "other",
    }
);
vocabulary!(
    /// `http_request_method`, as OpenTelemetry names it (`_OTHER` for the rest).
    HttpMethod {
        Get => "GET",
        Head => "HEAD",
        Post => "POST",
        Options => "OPTIONS",
        Other => "_OTHER",
    }
);
vocabulary!(
    /// `http_response_status_class`.
    StatusClass {
        Success => "2xx",
        Redirection => "3xx",
        ClientError => "4xx",
        ServerError => "5xx",
    }
);
vocabulary!(
    /// Where a resolved code's answer came from.
    ResolveOutcome {
        Moka => "moka",
        Negative => "negative",
        Redis => "redis",
        Replica => "replica",
        Primary => "primary",
        Coalesced => "coalesced",
        NotFound => "not_found",
        Unavailable => "unavailable",
        Error => "error",
    }
);
vocabulary!(
    /// The Redis commands the service sends.
    RedisCommand {
        Get => "get",
        Set => "set",
        Del => "del",
        Ping => "ping",
        Gcra => "gcra",
    }
);
vocabulary!(
    /// Why a Redis command failed.
    RedisCause {
        Timeout => "timeout",
        Unavailable => "unavailable",
        Error => "error",
    }
);
vocabulary!(
    /// What a failed storage call was doing.
    DbOperation {
        LookupReplica => "lookup_replica",
        LookupPrimary => "lookup_primary",
        Stats => "stats",
        Create => "create",
        Clicks => "clicks",
        Lease => "lease",
        Prune => "prune",
    }
);
vocabulary!(
    /// Why a storage call failed.
    DbCause {
        PoolTimeout => "pool_timeout",
        Timeout => "timeout",
        Connection => "connection",
        Overloaded => "overloaded",
        Query => "query",
    }
);
vocabulary!(
    /// What became of a batch of creates.
    BatchResult {
        Committed => "committed",
        Unavailable => "unavailable",
        Failed => "failed",
    }
);
vocabulary!(
    /// Who clicked.
    ClickLabel {
        Person => "person",
        Bot => "bot",
    }
);
vocabulary!(
    /// The per-client limits.
    LimitRoute {
        Create => "create",
        Redirect => "redirect",
        Stats => "stats",
    }
);
vocabulary!(
    /// Where the create limit is kept.
    CreateLimitMode {
        Shared => "shared",
        PerInstance => "per_instance",
        Off => "off",
    }
);
vocabulary!(
    /// What became of a lease renewal.
    RenewalResult {
        Renewed => "renewed",
        Failed => "failed",
        Lost => "lost",
    }
);
vocabulary!(
    /// The in-process caches.
    CacheName {
        Links => "links",
        UnknownCodes => "unknown_codes",
    }
);

/// Registers handles on one recorder, describing each name once; without a recorder
/// (metrics off) every handle is a no-op.
struct Registry<'a> {
    recorder: Option<&'a PrometheusRecorder>,
}

const METADATA: Metadata<'static> = Metadata::new("shortener", Level::INFO, None);

impl Registry<'_> {
    fn static_labels(labels: &[(&'static str, &'static str)]) -> Vec<Label> {
        labels
            .iter()
            .map(|(key, value)| Label::from_static_parts(key, value))
            .collect()
    }

    fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> Counter {
        self.counter_owned(name, help, Self::static_labels(labels))
    }

    fn gauge(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> Gauge {
        self.gauge_owned(name, help, Self::static_labels(labels))
    }

    /// A gauge whose labels may be built at start-up (database names).
    fn gauge_owned(&self, name: &'static str, help: &'static str, labels: Vec<Label>) -> Gauge {
        let Some(recorder) = self.recorder else {
            return Gauge::noop();
        };
        recorder.describe_gauge(KeyName::from_const_str(name), None, help.into());
        recorder.register_gauge(&Key::from_parts(name, labels), &METADATA)
    }

    fn counter_owned(&self, name: &'static str, help: &'static str, labels: Vec<Label>) -> Counter {
        let Some(recorder) = self.recorder else {
            return Counter::noop();
        };
        recorder.describe_counter(KeyName::from_const_str(name), None, help.into());
        recorder.register_counter(&Key::from_parts(name, labels), &METADATA)
    }

    fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> Histogram {
        let Some(recorder) = self.recorder else {
            return Histogram::noop();
        };
        recorder.describe_histogram(KeyName::from_const_str(name), None, help.into());
        let key = Key::from_parts(name, Self::static_labels(labels));
        recorder.register_histogram(&key, &METADATA)
    }

    /// One counter per value of `V`, under the label `label`.
    fn counters_by<V: Vocabulary>(
        &self,
        name: &'static str,
        help: &'static str,
        label: &'static str,
    ) -> Arc<[Counter]> {
        V::labels()
            .iter()
            .map(|value| self.counter(name, help, &[(label, value)]))
            .collect()
    }

    /// One counter per pair of values, `A` major.
    fn counters_by_pair<A: Vocabulary, B: Vocabulary>(
        &self,
        name: &'static str,
        help: &'static str,
        labels: (&'static str, &'static str),
    ) -> Arc<[Counter]> {
        let mut handles = Vec::with_capacity(A::labels().len() * B::labels().len());
        for a in A::labels() {
            for b in B::labels() {
                handles.push(self.counter(name, help, &[(labels.0, a), (labels.1, b)]));
            }
        }
        handles.into()
    }
}

/// The label values of a vocabulary, in index order.
trait Vocabulary {
    fn labels() -> Vec<&'static str>;
}

fn noops(count: usize) -> Arc<[Counter]> {
    (0..count).map(|_| Counter::noop()).collect()
}

const HTTP_REQUEST_COUNTERS: usize = HttpRoute::COUNT * HttpMethod::COUNT * StatusClass::COUNT;
const HTTP_DURATION_SLOTS: usize =
    HttpRoute::COUNT * DurationHistograms::<0>::slots_per_route(DURATION_BUCKETS.len());
const HTTP_DURATION: (&str, &str, &str) = (
    "http_server_request_duration_seconds",
    "Server time from the parsed request head to the response, by route.",
    "http_route",
);

/// Requests of the main listener: the redirect path's own series, sharded by thread
/// (`shards`), published to the recorder when scraped.
#[derive(Clone)]
pub struct HttpMetrics {
    inner: Arc<HttpInner>,
}

struct HttpInner {
    /// `[route][method][class]`.
    requests: CounterFamily<HTTP_REQUEST_COUNTERS>,
    durations: DurationHistograms<HTTP_DURATION_SLOTS>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics::with_handles(
            (0..HTTP_REQUEST_COUNTERS)
                .map(|_| Counter::noop())
                .collect(),
        )
    }
}

impl HttpMetrics {
    fn with_handles(requests: Vec<Counter>) -> Self {
        HttpMetrics {
            inner: Arc::new(HttpInner {
                requests: CounterFamily::new(requests),
                durations: DurationHistograms::new(
                    HTTP_DURATION,
                    HttpRoute::ALL.iter().map(|route| route.label()).collect(),
                    DURATION_BUCKETS,
                ),
            }),
        }
    }

    /// One request answered with `status` after `elapsed`.
    #[inline]
    pub fn observe(&self, route: HttpRoute, method: HttpMethod, status: u16, elapsed: Duration) {
        let class = match status {
            ..300 => StatusClass::Success,
            300..400 => StatusClass::Redirection,
            400..500 => StatusClass::ClientError,
            _ => StatusClass::ServerError,
        };
        let index = (route.index() * HttpMethod::COUNT + method.index()) * StatusClass::COUNT
            + class.index();
        self.inner.requests.increment(index);
        self.inner.durations.record(route.index(), elapsed);
    }

    fn publish(&self) {
        self.inner.requests.publish();
    }

    fn render_durations(&self, text: &mut String) {
        self.inner.durations.render(text);
    }
}

/// The read path's outcomes (sharded: a moka hit is counted on every cached redirect).
#[derive(Clone)]
pub struct ResolveMetrics {
    outcomes: Arc<CounterFamily<{ ResolveOutcome::COUNT }>>,
}

impl Default for ResolveMetrics {
    fn default() -> Self {
        ResolveMetrics {
            outcomes: Arc::new(CounterFamily::noop()),
        }
    }
}

impl ResolveMetrics {
    #[inline]
    pub fn count(&self, outcome: ResolveOutcome) {
        self.outcomes.increment(outcome.index());
    }
}

/// Failed Redis commands.
#[derive(Clone)]
pub struct RedisMetrics {
    /// `[command][cause]`.
    errors: Arc<[Counter]>,
}

impl Default for RedisMetrics {
    fn default() -> Self {
        RedisMetrics {
            errors: noops(RedisCommand::COUNT * RedisCause::COUNT),
        }
    }
}

impl RedisMetrics {
    pub fn failed(&self, command: RedisCommand, cause: RedisCause) {
        self.errors[command.index() * RedisCause::COUNT + cause.index()].increment(1);
    }
}

/// Storage calls, and those that failed.
#[derive(Clone)]
pub struct DbMetrics {
    /// `[operation]`.
    calls: Arc<[Counter]>,
    /// `[operation][cause]`.
    errors: Arc<[Counter]>,
}

impl Default for DbMetrics {
    fn default() -> Self {
        DbMetrics {
            calls: noops(DbOperation::COUNT),
            errors: noops(DbOperation::COUNT * DbCause::COUNT),
        }
    }
}

impl DbMetrics {
    /// One call of `operation` made (whatever its outcome).
    pub fn called(&self, operation: DbOperation) {
        self.calls[operation.index()].increment(1);
    }

    pub fn failed(&self, operation: DbOperation, cause: DbCause) {
        self.errors[operation.index() * DbCause::COUNT + cause.index()].increment(1);
    }
}

/// The group-commit writer.
#[derive(Clone)]
pub struct CreateMetrics {
    pub batch_size: Histogram,
    pub batch_duration: Histogram,
    batches: Arc<[Counter]>,
}

impl Default for CreateMetrics {
    fn default() -> Self {
        CreateMetrics {
            batch_size: Histogram::noop(),
            batch_duration: Histogram::noop(),
            batches: noops(BatchResult::COUNT),
        }
    }
}

impl CreateMetrics {
    pub fn batch(&self, result: BatchResult, rows: usize, took: Duration) {
        self.batches[result.index()].increment(1);
        self.batch_size.record(rows as f64);
        self.batch_duration.record(took.as_secs_f64());
    }
}

/// The click flusher.
#[derive(Clone)]
pub struct ClickMetrics {
    flushed: Arc<[Counter]>,
    pub dropped: Counter,
    pub batches_pending: Gauge,
    pub rows_pending: Gauge,
    /// The bound on `rows_pending`, past which the oldest batches are dropped.
    pub rows_pending_max: Gauge,
    pub lag_seconds: Gauge,
    pub flush_duration: Histogram,
    failures: Arc<[Counter]>,
}

impl Default for ClickMetrics {
    fn default() -> Self {
        ClickMetrics {
            flushed: noops(ClickLabel::COUNT),
            dropped: Counter::noop(),
            batches_pending: Gauge::noop(),
            rows_pending: Gauge::noop(),
            rows_pending_max: Gauge::noop(),
            lag_seconds: Gauge::noop(),
            flush_duration: Histogram::noop(),
            failures: noops(DbCause::COUNT),
        }
    }
}

impl ClickMetrics {
    pub fn flushed(&self, kind: ClickLabel, clicks: u64) {
        self.flushed[kind.index()].increment(clicks);
    }

    pub fn flush_failed(&self, cause: DbCause) {
        self.failures[cause.index()].increment(1);
    }
}

/// Rate-limit decisions (sharded: every redirect is decided while its limit is on).
#[derive(Clone)]
pub struct LimitMetrics {
    /// `[route][allowed, limited]`.
    decisions: Arc<CounterFamily<{ LimitRoute::COUNT * 2 }>>,
}

impl Default for LimitMetrics {
    fn default() -> Self {
        LimitMetrics {
            decisions: Arc::new(CounterFamily::noop()),
        }
    }
}

impl LimitMetrics {
    #[inline]
    pub fn decided(&self, route: LimitRoute, allowed: bool) {
        self.decisions
            .increment(route.index() * 2 + usize::from(!allowed));
    }
}

/// The worker-id lease.
#[derive(Clone)]
pub struct LeaseMetrics {
    renewals: Arc<[Counter]>,
}

impl Default for LeaseMetrics {
    fn default() -> Self {
        LeaseMetrics {
            renewals: noops(RenewalResult::COUNT),
        }
    }
}

impl LeaseMetrics {
    pub fn renewal(&self, result: RenewalResult) {
        self.renewals[result.index()].increment(1);
    }
}

/// One connection pool, as `storage` lays them out.
#[derive(Debug, Clone)]
pub struct PoolName {
    /// `primary`, `replica_1`, …
    pub database: String,
    /// `read`, `write`, `background`, `lease`, `probe`.
    pub pool: &'static str,
    pub max: u32,
}

/// The gauges of one pool, set when `/metrics` is scraped.
pub struct PoolGauges {
    pub connections: Gauge,
    pub idle: Gauge,
    pub waiters: Gauge,
    pub acquire_timeouts: Counter,
}

/// Values read from their source when `/metrics` is scraped.
pub struct Sampled {
    cache_entries: Vec<Gauge>,
    pub redis_circuit_open: Gauge,
    /// In the order of the database names given to [`Metrics::new`].
    pub db_up: Vec<Gauge>,
    /// In the order of the pools given to [`Metrics::new`].
    pub pools: Vec<PoolGauges>,
    pub create_queue_depth: Gauge,
    pub create_queue_capacity: Gauge,
    create_mode: Vec<Gauge>,
    pub worker_id: Gauge,
    pub clock_steps_back: Counter,
    pub borrowed_ahead_seconds: Gauge,
}

impl Sampled {
    pub fn cache_entries(&self, cache: CacheName, entries: u64) {
        self.cache_entries[cache.index()].set(entries as f64);
    }

    pub fn create_mode(&self, mode: CreateLimitMode) {
        for (index, gauge) in self.create_mode.iter().enumerate() {
            gauge.set(if index == mode.index() { 1.0 } else { 0.0 });
        }
    }
}

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
            http: http_metrics(&registry),
            resolve: ResolveMetrics {
                outcomes: Arc::new(CounterFamily::new(
                    registry
                        .counters_by::<ResolveOutcome>(
                            "shortener_link_resolutions_total",
                            "Codes resolved, by where the answer came from.",
                            "outcome",
                        )
                        .to_vec(),
                )),
            },
            redis: RedisMetrics {
                errors: registry.counters_by_pair::<RedisCommand, RedisCause>(
                    "shortener_redis_errors_total",
                    "Redis commands that failed, by command and cause.",
                    ("command", "cause"),
                ),
            },
            db: DbMetrics {
                calls: registry.counters_by::<DbOperation>(
                    "shortener_db_operations_total",
                    "Storage calls made, by operation (the failed ones too).",
                    "operation",
                ),
                errors: registry.counters_by_pair::<DbOperation, DbCause>(
                    "shortener_db_errors_total",
                    "Storage calls that failed, by operation and cause.",
                    ("operation", "cause"),
                ),
            },
            creates: create_metrics(&registry),
            clicks: click_metrics(&registry),
            limits: LimitMetrics {
                decisions: Arc::new(CounterFamily::new({
                    let name = "shortener_rate_limit_decisions_total";
                    let help = "Per-client rate-limit decisions, by route and decision.";
                    LimitRoute::ALL
                        .iter()
                        .flat_map(|route| {
                            ["allowed", "limited"].map(|decision| {
                                registry.counter(
                                    name,
                                    help,
                                    &[("route", route.label()), ("decision", decision)],
                                )
                            })
                        })
                        .collect()
                })),
            },
            lease: LeaseMetrics {
                renewals: registry.counters_by::<RenewalResult>(
                    "shortener_lease_renewals_total",
                    "Worker-id lease renewals, by result.",
                    "result",
                ),
            },
            sampled: sampled(&registry, layout),
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
        self.resolve.outcomes.publish();
        self.limits.decisions.publish();
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

fn http_metrics(registry: &Registry) -> HttpMetrics {
    let mut requests = Vec::new();
    for route in HttpRoute::ALL {
        for method in HttpMethod::ALL {
            for class in StatusClass::ALL {
                requests.push(registry.counter(
                    "http_server_requests_total",
                    "Requests answered by the main listener's router.",
                    &[
                        ("http_route", route.label()),
                        ("http_request_method", method.label()),
                        ("http_response_status_class", class.label()),
                    ],
                ));
            }
        }
    }
    HttpMetrics::with_handles(requests)
}

fn create_metrics(registry: &Registry) -> CreateMetrics {
    CreateMetrics {
        batch_size: registry.histogram(
            "shortener_create_batch_size",
            "Rows per batch of creates written in one transaction.",
            &[],
        ),
        batch_duration: registry.histogram(
            "shortener_create_batch_duration_seconds",
            "Time to write one batch of creates, checkout to commit.",
            &[],
        ),
        batches: registry.counters_by::<BatchResult>(
            "shortener_create_batches_total",
            "Batches of creates written, by result.",
            "result",
        ),
    }
}

fn click_metrics(registry: &Registry) -> ClickMetrics {
    ClickMetrics {
        flushed: registry.counters_by::<ClickLabel>(
            "shortener_clicks_flushed_total",
            "Clicks written to Postgres, by kind.",
            "kind",
        ),
        dropped: registry.counter(
            "shortener_clicks_dropped_total",
            "Clicks given up because Postgres stayed unreachable past the pending bound.",
            &[],
        ),
        batches_pending: registry.gauge(
            "shortener_click_batches_pending",
            "Sealed click batches not yet written.",
            &[],
        ),
        rows_pending: registry.gauge(
            "shortener_click_rows_pending",
            "(link, day) rows in the unwritten click batches.",
            &[],
        ),
        rows_pending_max: registry.gauge(
            "shortener_click_rows_pending_max",
            "Most unwritten click rows kept; past it the oldest batches are dropped.",
            &[],
        ),
        lag_seconds: registry.gauge(
            "shortener_click_flush_lag_seconds",
            "Age of the oldest unwritten click batch, in seconds (0 when none).",
            &[],
        ),
        flush_duration: registry.histogram(
            "shortener_click_flush_duration_seconds",
            "Time to write one click batch.",
            &[],
        ),
        failures: registry.counters_by::<DbCause>(
            "shortener_click_flush_failures_total",
            "Click batch writes that failed and will be retried, by cause.",
            "cause",
        ),
    }
}

fn sampled(registry: &Registry, layout: &Layout) -> Sampled {
    let cache_entries = CacheName::ALL
        .iter()
        .zip(layout.cache_capacity)
        .map(|(cache, capacity)| {
            registry
                .gauge(
                    "shortener_cache_capacity",
                    "Configured capacity of the in-process cache.",
                    &[("cache", cache.label())],
                )
                .set(capacity as f64);
            registry.gauge(
                "shortener_cache_entries",
                "Entries in the in-process cache now.",
                &[("cache", cache.label())],
            )
        })
        .collect();
    let pools = layout
        .pools
        .iter()
        .map(|pool| {
            let labels = || {
                vec![
                    Label::new("database", pool.database.clone()),
                    Label::from_static_parts("pool", pool.pool),
                ]
            };
            registry
                .gauge_owned(
                    "shortener_db_pool_max_connections",
                    "Configured size of the connection pool.",
                    labels(),
                )
                .set(f64::from(pool.max));
            PoolGauges {
                connections: registry.gauge_owned(
                    "shortener_db_pool_connections",
                    "Connections the pool holds open now.",
                    labels(),
                ),
                idle: registry.gauge_owned(
                    "shortener_db_pool_idle_connections",
                    "Idle connections in the pool now.",
                    labels(),
                ),
                waiters: registry.gauge_owned(
                    "shortener_db_pool_waiters",
                    "Checkouts waiting for a connection now.",
                    labels(),
                ),
                acquire_timeouts: registry.counter_owned(
                    "shortener_db_pool_acquire_timeouts_total",
                    "Checkouts that got no connection within the acquire timeout.",
                    labels(),
                ),
            }
        })
        .collect();
    Sampled {
        cache_entries,
        redis_circuit_open: registry.gauge(
            "shortener_redis_circuit_open",
            "1 while the breaker skips Redis for links, else 0.",
            &[],
        ),
        db_up: layout
            .databases
            .iter()
            .map(|database| {
                registry.gauge_owned(
                    "shortener_db_up",
                    "1 when the last readiness probe of the database answered, else 0.",
                    vec![Label::new("database", database.clone())],
                )
            })
            .collect(),
        pools,
        create_queue_depth: registry.gauge(
            "shortener_create_queue_depth",
            "Creates waiting for the group-commit writer now.",
            &[],
        ),
        create_queue_capacity: registry.gauge(
            "shortener_create_queue_capacity",
            "Most creates that may wait for the writer; beyond it creates are refused (503).",
            &[],
        ),
        create_mode: CreateLimitMode::ALL
            .iter()
            .map(|mode| {
                registry.gauge(
                    "shortener_rate_limit_create_mode",
                    "1 for the mode the create limit is in now, 0 for the others.",
                    &[("mode", mode.label())],
                )
            })
            .collect(),
        worker_id: registry.gauge(
            "shortener_worker_id",
            "The worker id ids are issued with; -1 while none is held.",
            &[],
        ),
        clock_steps_back: registry.counter(
            "shortener_id_clock_steps_back_total",
            "Ids issued while the wall clock read earlier than for the id before.",
            &[],
        ),
        borrowed_ahead_seconds: registry.gauge(
            "shortener_id_borrowed_ahead_seconds",
            "How far the last issued id's millisecond is ahead of the wall clock now, in seconds.",
            &[],
        ),
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
