//! The running service: its shared state ([`App`]) and [`run`], the one entry point used by
//! `main`, the integration tests and the benchmarks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::{HeaderValue, StatusCode};
use tokio::net::TcpListener;
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clicks::{ClickRecorder, FlushSettings, run_flusher};
use crate::config::Config;
use crate::domain::{TrustedProxies, UrlPolicy};
use crate::http::{ConnectionLimits, PerPeerCap, handle_admin, handle_public, serve};
use crate::ids::{CodeCodec, IdGenerator};
use crate::lease::LeaseKeeper;
use crate::limits::LimitMode;
use crate::limits::RouteLimits;
use crate::links::{BreakerState, CreateWriter, Creator, LinkCache, RemoteCache, Resolver};
use crate::readiness::{Readiness, RedisState, TierState, Tiers, run_prober};
use crate::storage::{Db, RedisStore};
use crate::telemetry::AccessLog;
use crate::telemetry::metrics::{CacheName, CreateLimitMode, Layout, Metrics, UPKEEP_EVERY};

/// Unwritten click rows kept while Postgres is unreachable (about 100 MB at worst).
const MAX_PENDING_CLICK_ROWS: usize = 1_000_000;
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// How long start-up waits for Redis before serving without it (it connects later).
const FIRST_REDIS_WAIT: Duration = Duration::from_secs(1);
/// The last 1/N of the shutdown grace period is kept for writing pending clicks.
const FLUSH_SHARE_OF_GRACE: u32 = 5;
/// How long start-up waits for the first worker-id lease before serving without one
/// (creates answer 503 until the background keeper gets it).
const FIRST_LEASE_WAIT: Duration = Duration::from_secs(5);

/// What every handler shares. Built once from the configuration.
pub struct App {
    /// The read path: redirects and stats.
    pub resolver: Resolver,
    /// The write path: creates.
    pub creator: Creator,
    pub ids: Arc<IdGenerator>,
    pub readiness: Arc<Readiness>,
    /// The Redis tier, when configured.
    pub remote: Option<Arc<RemoteCache>>,
    pub trusted_proxies: TrustedProxies,
    pub redirect_status: StatusCode,
    pub redirect_cache_control: HeaderValue,
    /// Time a client has to send a create's body (408 after it).
    pub body_read_timeout: Duration,
    /// Per-client limits of creates, redirects and stats.
    pub limits: RouteLimits,
    /// Origins whose pages may call creates and stats (CORS); empty: CORS off.
    pub cors_origins: Vec<HeaderValue>,
    /// This server's recorder and every handle on it.
    pub metrics: Arc<Metrics>,
    /// Which requests get an access-log line.
    pub access_log: AccessLog,
    /// Share of answers below 500 logged when `access_log` is `All`.
    pub access_log_sample: f64,
    /// Every pool, for the sampled pool gauges.
    db: Db,
    writer: Arc<CreateWriter>,
    /// Set once the main listener serves.
    started: AtomicBool,
    /// Cancelled when the service stops accepting (SIGTERM): readiness goes 503 at once.
    shutdown: CancellationToken,
}

/// Whether this instance can create links now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CreatesState {
    Ready,
    /// No worker-id lease is held, so no id can be issued.
    NoWorkerId,
    /// The primary did not answer its last probe.
    PrimaryDown,
}

/// What `/readyz` reports.
#[derive(Debug, Clone)]
pub struct ReadinessReport {
    /// Why the instance must not take traffic, if it must not.
    pub not_ready: Option<&'static str>,
    pub tiers: Tiers,
    pub creates: CreatesState,
}

/// What [`App::new`] is built from besides the configuration: the connections and tasks
/// `run` started.
pub struct AppParts {
    pub db: Db,
    pub writer: Arc<CreateWriter>,
    pub clicks: Arc<ClickRecorder>,
    /// The Redis tier of links, when Redis is configured.
    pub remote: Option<Arc<RemoteCache>>,
    /// The Redis client the create limit shares, when Redis is configured.
    pub redis: Option<RedisStore>,
    /// Where the main listener really listens.
    pub listen: std::net::SocketAddr,
    pub metrics: Arc<Metrics>,
}

impl App {
    pub fn new(config: &Config, parts: AppParts, shutdown: CancellationToken) -> Self {
        let AppParts {
            db,
            writer,
            clicks,
            remote,
            redis,
            listen,
            metrics,
        } = parts;
        let ids = Arc::new(IdGenerator::new());
        let codec = CodeCodec::new(&config.code_key);
        let cache = Arc::new(LinkCache::new(config.cache));
        App {
            resolver: Resolver::new(
                Arc::clone(&cache),
                db.clone(),
                codec.clone(),
                clicks,
                config.replica_lag_bound,
            )
            .with_remote(remote.clone())
            .with_metrics(metrics.resolve.clone()),
            creator: Creator::new(
                db.clone(),
                Arc::clone(&writer),
                Arc::clone(&ids),
                codec,
                cache,
                UrlPolicy {
                    own_host: config.public_host.clone(),
                    own_port: config.public_port,
                    listen,
                    block_private: config.block_private_targets,
                    blocklist: config.blocklist.clone(),
                },
                config.public_base_url.clone(),
            )
            .with_remote(remote.clone()),
            ids,
            remote,
            readiness: Arc::new(Readiness::new(db.replica_count())),
            trusted_proxies: config.trusted_proxies.clone(),
            redirect_status: config.redirect_status,
            body_read_timeout: config.body_read_timeout,
            cors_origins: config
                .cors_origins
                .iter()
                .filter_map(|origin| HeaderValue::from_str(origin).ok())
                .collect(),
            limits: RouteLimits::new(
                config.rate_limits.create,
                config.rate_limits.redirect,
                config.rate_limits.stats,
                config.rate_limits.max_keys,
                redis,
            )
            .with_metrics(metrics.limits.clone()),
            redirect_cache_control: HeaderValue::from_str(&format!(
                "private, max-age={}",
                config.redirect_max_age
            ))
            .expect("digits are a valid header value"),
            started: AtomicBool::new(false),
            shutdown,
            metrics,
            access_log: config.access_log,
            access_log_sample: config.access_log_sample,
            db,
            writer,
        }
    }

    /// Reads the sampled series from their sources (pools, caches, breaker, probes, ids);
    /// called before each render of `/metrics`.
    pub fn sample_metrics(&self) {
        let sampled = &self.metrics.sampled;
        let tiers = self.readiness.tiers();
        sampled.cache_entries(CacheName::Links, tiers.cache_entries);
        sampled.cache_entries(
            CacheName::UnknownCodes,
            self.resolver.cache().unknown_entries(),
        );
        let up = std::iter::once(tiers.primary).chain(tiers.replicas.iter().copied());
        for (gauge, state) in sampled.db_up.iter().zip(up) {
            gauge.set(if state == TierState::Up { 1.0 } else { 0.0 });
        }
        for (gauges, state) in sampled.pools.iter().zip(self.db.pool_states()) {
            let statistics = &state.statistics;
            gauges.connections.set(state.connections);
            gauges.idle.set(state.idle_connections);
            // Gets started and not yet finished one way or the other.
            let finished = statistics.get_direct + statistics.get_waited + statistics.get_timed_out;
            gauges
                .waiters
                .set(statistics.get_started.saturating_sub(finished) as f64);
            gauges.acquire_timeouts.absolute(statistics.get_timed_out);
        }
        sampled
            .redis_circuit_open
            .set(match self.remote.as_ref().map(|remote| remote.state()) {
                Some(BreakerState::Open) => 1.0,
                _ => 0.0,
            });
        sampled.create_queue_depth.set(self.writer.queued() as f64);
        sampled
            .create_queue_capacity
            .set(self.writer.capacity() as f64);
        sampled.create_mode(match self.limits.create_mode() {
            LimitMode::Shared => CreateLimitMode::Shared,
            LimitMode::PerInstance => CreateLimitMode::PerInstance,
            LimitMode::Off => CreateLimitMode::Off,
        });
        sampled.worker_id.set(
            self.ids
                .worker()
                .map_or(-1.0, |worker| f64::from(worker.get())),
        );
        sampled
            .clock_steps_back
            .absolute(self.ids.clock_steps_back());
        sampled
            .borrowed_ahead_seconds
            .set(self.ids.borrowed_ahead_ms() as f64 / 1000.0);
    }

    /// Whether SIGTERM arrived: answers then say `Connection: close`, so keep-alive clients
    /// move to another instance before this one closes their connections.
    pub fn draining(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Whether the instance can take traffic, from the cached probe results: started, not
    /// draining, and a database answers or memory holds links.
    pub fn readiness_report(&self) -> ReadinessReport {
        let mut tiers = self.readiness.tiers();
        tiers.redis = match self.remote.as_ref().map(|remote| remote.state()) {
            None => RedisState::Off,
            Some(BreakerState::Closed) => RedisState::Up,
            Some(BreakerState::Open) => RedisState::Down,
        };
        let not_ready = if self.shutdown.is_cancelled() {
            Some("the service is shutting down")
        } else if !self.started.load(Ordering::Acquire) {
            Some("the service is starting")
        } else if !tiers.can_serve_redirects() {
            Some("no database answers and the cache is empty")
        } else {
            None
        };
        let creates = if self.ids.worker().is_none() {
            CreatesState::NoWorkerId
        } else if tiers.primary != crate::readiness::TierState::Up {
            CreatesState::PrimaryDown
        } else {
            CreatesState::Ready
        };
        ReadinessReport {
            not_ready,
            tiers,
            creates,
        }
    }
}

/// The two bound listeners.
pub struct Listeners {
    pub main: TcpListener,
    pub admin: TcpListener,
}

/// Serves until `shutdown` is cancelled, then drains within `config.shutdown_grace`:
/// readiness turns 503 at once, the main listener keeps serving for `config.shutdown_delay`,
/// then stops accepting and finishes in-flight requests (until 4/5 of the grace period),
/// pending clicks are written, the worker-id lease is released, and `run` returns.
pub async fn run(
    listeners: Listeners,
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if config.code_key_is_development {
        tracing::warn!("SHORTENER_CODE_KEY is not set: using the public development key");
    }
    let mut db = Db::connect_lazy(&config.database_url, &config.replica_urls, &config.pool)?;
    let layout = Layout {
        databases: db.database_names(),
        pools: db.pool_layout(),
        cache_capacity: LinkCache::capacities(config.cache),
    };
    let metrics = Arc::new(if config.metrics {
        Metrics::new(&layout)
    } else {
        Metrics::off(&layout)
    });
    db.count_errors_in(metrics.db.clone());
    let clicks = Arc::new(ClickRecorder::new());
    let redis_store = match &config.redis {
        Some(redis) => {
            let store = RedisStore::connect(&redis.settings)?.with_metrics(metrics.redis.clone());
            if !store.wait_connected(FIRST_REDIS_WAIT).await {
                tracing::warn!("redis is not reachable yet; serving without it until it is");
            }
            Some(store)
        }
        None => None,
    };
    let remote = redis_store
        .clone()
        .zip(config.redis.as_ref())
        .map(|(store, redis)| Arc::new(RemoteCache::new(store, redis.ttl)));
    let background = CancellationToken::new();
    let tasks = TaskTracker::new();
    let (writer, write_creates) = CreateWriter::with_metrics(
        db.clone(),
        config.writer,
        background.clone(),
        metrics.creates.clone(),
    );
    tasks.spawn(write_creates);
    let parts = AppParts {
        db: db.clone(),
        writer: Arc::new(writer),
        clicks: Arc::clone(&clicks),
        remote: remote.clone(),
        redis: redis_store,
        // Where it really listens (the configured address, or the port a test was given).
        listen: listeners.main.local_addr().unwrap_or(config.listen),
        metrics: Arc::clone(&metrics),
    };
    let app = Arc::new(App::new(&config, parts, shutdown.clone()));

    tasks.spawn(run_prober(
        Arc::clone(&app.readiness),
        db.clone(),
        app.resolver.cache(),
        background.clone(),
    ));
    if let Some(remote) = remote {
        tasks.spawn(remote.run_probe(background.clone()));
    }
    tasks.spawn(run_flusher(
        clicks,
        db.clone(),
        FlushSettings {
            interval: config.stats_flush_interval,
            max_pending_rows: MAX_PENDING_CLICK_ROWS,
        },
        metrics.clicks.clone(),
        background.clone(),
    ));
    if metrics.is_on() {
        tasks.spawn(Arc::clone(&metrics).keep_up(UPKEEP_EVERY, background.clone()));
    }
    tasks.spawn(prune_periodically(db.clone(), background.clone()));
    if let Some(path) = &config.blocklist_file {
        tasks.spawn(crate::shutdown::reload_blocklist_on_hangup(
            crate::shutdown::hangup()?,
            path.clone(),
            config.blocklist.clone(),
            background.clone(),
        ));
    }

    let limits = ConnectionLimits {
        header_read_timeout: config.header_read_timeout,
        max_connections: config.max_connections,
        per_peer: None,
    };
    let public_limits = ConnectionLimits {
        per_peer: Some(PerPeerCap {
            max: config.max_connections_per_peer,
            exempt: config.trusted_proxies.clone(),
        }),
        ..limits.clone()
    };
    let admin_stop = CancellationToken::new();
    let admin = tokio::spawn(serve(
        listeners.admin,
        limits.clone(),
        {
            let app = Arc::clone(&app);
            move |request, peer| handle_admin(Arc::clone(&app), request, peer)
        },
        admin_stop.clone(),
    ));
    let mut lease = LeaseKeeper::new(
        db.clone(),
        Arc::clone(&app.ids),
        config.worker_id,
        config.lease,
    )
    .with_metrics(metrics.lease.clone());
    let _ = tokio::time::timeout(FIRST_LEASE_WAIT, lease.step()).await;
    tasks.spawn(lease.run(background.clone()));

    let stop_accepting = CancellationToken::new();
    let main = tokio::spawn(serve(
        listeners.main,
        public_limits,
        {
            let app = Arc::clone(&app);
            move |request, peer| handle_public(Arc::clone(&app), request, peer)
        },
        stop_accepting.clone(),
    ));
    app.started.store(true, Ordering::Release);
    tracing::info!(listen = %config.listen, admin = %config.admin_listen, "serving");

    shutdown.cancelled().await;
    // Readiness answers 503 from here on. Keep serving for the delay, so load balancers stop
    // sending first; then stop accepting and let in-flight requests finish, keeping the last
    // part of the grace period for writing pending clicks.
    let stopping_since = Instant::now();
    let deadline = stopping_since + config.shutdown_grace;
    let drain_deadline = deadline - (config.shutdown_grace / FLUSH_SHARE_OF_GRACE);
    tracing::info!(grace = ?config.shutdown_grace, delay = ?config.shutdown_delay, "shutting down");
    tokio::time::sleep_until(stopping_since + config.shutdown_delay).await;
    stop_accepting.cancel();
    if timeout_at(drain_deadline.max(Instant::now()), main)
        .await
        .is_err()
    {
        tracing::error!("requests still in flight when the drain deadline passed");
    }
    background.cancel();
    tasks.close();
    if timeout_at(deadline, tasks.wait()).await.is_err() {
        tracing::error!(
            "background tasks did not finish within the grace period; unwritten clicks are lost"
        );
    }
    admin_stop.cancel();
    let _ = timeout_at(deadline, admin).await;
    tracing::info!("stopped");
    Ok(())
}

async fn prune_periodically(db: Db, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = stop.cancelled() => return,
        }
        match db.prune_expired().await {
            Ok(rows) => tracing::debug!(rows, "pruned expired idempotency keys and stats batches"),
            Err(error) => {
                tracing::warn!(error = %crate::telemetry::Chain(&error), "pruning failed; will retry")
            }
        }
    }
}
