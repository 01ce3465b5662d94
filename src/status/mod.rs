//! What the admin listener reports about this instance: whether it is alive (the main runtime
//! beats: [`Status::stalled_for`]), whether it is ready ([`Status::report`], from the prober's
//! cached results, never a database round trip) and the gauges read from their sources when
//! `/metrics` is scraped ([`Status::sample_metrics`]). It reads the state
//! of the other parts; it changes none of them, and it serves nothing itself.

mod probe;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

pub use probe::{PROBE_EVERY, Probes, RedisState, TierState, Tiers, run_prober};

use crate::ids::IdGenerator;
use crate::limits::{LimitMode, RouteLimits};
use crate::links::{BreakerState, CreateWriter, KeyRing, LinkCache, RemoteCache, SchemaState};
use crate::storage::Db;
use crate::telemetry::metrics::{CacheName, CreateLimitMode, Metrics};

/// Whether this instance can create links now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CreatesState {
    Ready,
    /// No worker-id lease is held, so no id can be issued.
    NoWorkerId,
    /// The primary did not answer its last probe.
    PrimaryDown,
    /// The database's schema is not one this binary can write.
    SchemaMismatch,
}

/// What `/readyz` reports.
#[derive(Debug, Clone)]
pub struct ReadinessReport {
    /// Why the instance must not take traffic, if it must not.
    pub not_ready: Option<&'static str>,
    pub tiers: Tiers,
    pub creates: CreatesState,
    /// Where the create limit is kept now.
    pub create_limit: LimitMode,
    /// The database's schema against this binary's.
    pub schema: SchemaState,
}

/// The parts whose state is reported.
pub struct Watched {
    pub probes: Arc<Probes>,
    pub db: Db,
    pub cache: Arc<LinkCache>,
    /// The Redis tier, when configured.
    pub remote: Option<Arc<RemoteCache>>,
    pub writer: Arc<CreateWriter>,
    pub ids: Arc<IdGenerator>,
    pub limits: Arc<RouteLimits>,
    pub keys: Arc<KeyRing>,
    pub metrics: Arc<Metrics>,
}

/// The instance's state as the admin listener reports it.
pub struct Status {
    watched: Watched,
    /// Set once the main listener serves.
    started: AtomicBool,
    /// Cancelled when a stop was asked for (SIGTERM): readiness goes 503 at once.
    stopping: CancellationToken,
    /// When the main runtime last beat, in milliseconds since `born` ([`Status::beat`]).
    beat_ms: AtomicU64,
    born: Instant,
}

/// How often the main runtime beats.
pub const HEARTBEAT_EVERY: Duration = Duration::from_millis(250);
/// How long the main runtime may go without a beat before `/healthz` says it is wedged: a
/// runtime that is only busy still runs its timers within milliseconds.
pub const HEARTBEAT_STALE: Duration = Duration::from_secs(5);

impl Status {
    /// `stopping`: the token a stop request cancels.
    pub fn new(watched: Watched, stopping: CancellationToken) -> Self {
        Status {
            watched,
            started: AtomicBool::new(false),
            stopping,
            beat_ms: AtomicU64::new(0),
            born: Instant::now(),
        }
    }

    /// The main runtime ran just now.
    pub fn beat(&self) {
        let now = self.born.elapsed().as_millis() as u64;
        self.beat_ms.store(now, Ordering::Release);
    }

    /// How long the main runtime has gone without a beat, when longer than
    /// [`HEARTBEAT_STALE`]: it is wedged (a task holding its threads), though the admin
    /// listener, on a runtime of its own, still answers.
    pub fn stalled_for(&self) -> Option<Duration> {
        let since = Duration::from_millis(self.beat_ms.load(Ordering::Acquire));
        let stalled = self.born.elapsed().saturating_sub(since);
        (stalled > HEARTBEAT_STALE).then_some(stalled)
    }

    /// Beats every [`HEARTBEAT_EVERY`] on the runtime it runs on (the main one) until `stop`.
    pub async fn keep_beating(self: Arc<Self>, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(HEARTBEAT_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => self.beat(),
                _ = stop.cancelled() => return,
            }
        }
    }

    /// The main listener serves from now on.
    pub fn mark_started(&self) {
        self.started.store(true, Ordering::Release);
    }

    /// Whether a stop was asked for: answers then say `Connection: close`, so keep-alive
    /// clients move to another instance before this one closes their connections.
    pub fn draining(&self) -> bool {
        self.stopping.is_cancelled()
    }

    /// Whether the instance can take traffic, from the cached probe results: started, not
    /// draining, and a database answers or memory holds links.
    pub fn report(&self) -> ReadinessReport {
        let watched = &self.watched;
        let mut tiers = watched.probes.tiers();
        tiers.redis = match watched.remote.as_ref().map(|remote| remote.state()) {
            None => RedisState::Off,
            Some(BreakerState::Closed) => RedisState::Up,
            Some(BreakerState::Open) => RedisState::Down,
        };
        let schema = watched.probes.schema().state();
        let not_ready = if self.draining() {
            Some("the service is shutting down")
        } else if !self.started.load(Ordering::Acquire) {
            Some("the service is starting")
        } else if !tiers.can_serve_redirects() {
            Some("no database answers and the cache is empty")
        } else if schema == SchemaState::Behind {
            Some("the database schema is older than this binary: run shortener migrate")
        } else if schema == SchemaState::Ahead {
            Some("the database schema is newer than this binary and not expand-only")
        } else {
            None
        };
        let creates = if schema.refuses() {
            CreatesState::SchemaMismatch
        } else if watched.ids.worker().is_none() {
            CreatesState::NoWorkerId
        } else if tiers.primary != TierState::Up {
            CreatesState::PrimaryDown
        } else {
            CreatesState::Ready
        };
        ReadinessReport {
            not_ready,
            tiers,
            creates,
            create_limit: watched.limits.create_mode(),
            schema,
        }
    }

    /// Reads the sampled series from their sources (pools, caches, breaker, probes, ids);
    /// called before each render of `/metrics`.
    pub fn sample_metrics(&self) {
        let watched = &self.watched;
        let sampled = &watched.metrics.sampled;
        let tiers = watched.probes.tiers();
        sampled.cache_entries(CacheName::Links, tiers.cache_entries);
        sampled.cache_entries(CacheName::UnknownCodes, watched.cache.unknown_entries());
        let up = std::iter::once(tiers.primary).chain(tiers.replicas.iter().copied());
        for (gauge, state) in sampled.db_up.iter().zip(up) {
            gauge.set(if state == TierState::Up { 1.0 } else { 0.0 });
        }
        for (gauges, state) in sampled.pools.iter().zip(watched.db.pool_states()) {
            let statistics = &state.statistics;
            gauges.connections.set(state.connections);
            gauges.idle.set(state.idle_connections);
            // Gets started and not yet finished one way or the other.
            let finished = statistics.get_direct + statistics.get_waited + statistics.get_timed_out;
            gauges
                .waiters
                .set(statistics.get_started.saturating_sub(finished) as f64);
            gauges.checkouts.absolute(finished);
            gauges.acquire_timeouts.absolute(statistics.get_timed_out);
        }
        sampled.redis_circuit_open.set(
            match watched.remote.as_ref().map(|remote| remote.state()) {
                Some(BreakerState::Open) => 1.0,
                _ => 0.0,
            },
        );
        sampled
            .create_queue_depth
            .set(watched.writer.queued() as f64);
        sampled
            .create_queue_capacity
            .set(watched.writer.capacity() as f64);
        sampled.create_mode(match watched.limits.create_mode() {
            LimitMode::Shared => CreateLimitMode::Shared,
            LimitMode::PerInstance => CreateLimitMode::PerInstance,
            LimitMode::Off => CreateLimitMode::Off,
        });
        sampled.worker_id.set(
            watched
                .ids
                .worker()
                .map_or(-1.0, |worker| f64::from(worker.get())),
        );
        sampled
            .clock_steps_back
            .absolute(watched.ids.clock_steps_back());
        sampled
            .borrowed_ahead_seconds
            .set(watched.ids.borrowed_ahead_ms() as f64 / 1000.0);
        // Never read: +Inf, which any threshold alerts on.
        let age = watched.keys.age();
        sampled.api_keys_age_seconds.set(if age == Duration::MAX {
            f64::INFINITY
        } else {
            age.as_secs_f64()
        });
        for (gauge, lag) in sampled
            .replica_lag_seconds
            .iter()
            .zip(watched.probes.replica_lags())
        {
            gauge.set(lag.as_secs_f64());
        }
        sampled
            .replica_lag_bound_seconds
            .set(watched.probes.replica_lag_bound().as_secs_f64());
        sampled
            .link_cache_trusted
            .set(if watched.cache.hears_changes() {
                1.0
            } else {
                0.0
            });
    }
}
