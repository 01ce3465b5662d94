//! The series read from their sources when `/metrics` is scraped (pools, caches, the breaker,
//! the probes, the worker id), rather than mirrored on every change.

use ::metrics::{Counter, Gauge, Label};

use super::Layout;
use super::registry::Registry;
use super::vocabulary::{CacheName, CreateLimitMode};

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
    pub checkouts: Counter,
    pub acquire_timeouts: Counter,
}

/// Values read from their source when `/metrics` is scraped.
pub struct Sampled {
    cache_entries: Vec<Gauge>,
    pub redis_circuit_open: Gauge,
    /// In the order of the database names given to [`Metrics::new`](super::Metrics::new).
    pub db_up: Vec<Gauge>,
    /// In the order of the pools given to [`Metrics::new`](super::Metrics::new).
    pub pools: Vec<PoolGauges>,
    pub create_queue_depth: Gauge,
    pub create_queue_capacity: Gauge,
    create_mode: Vec<Gauge>,
    pub worker_id: Gauge,
    pub clock_steps_back: Counter,
    pub borrowed_ahead_seconds: Gauge,
    pub api_keys_age_seconds: Gauge,
    pub link_cache_trusted: Gauge,
    /// In the order of the replicas (the databases after the primary).
    pub replica_lag_seconds: Vec<Gauge>,
    pub replica_lag_bound_seconds: Gauge,
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

pub(super) fn sampled(registry: &Registry, layout: &Layout) -> Sampled {
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
                checkouts: registry.counter_owned(
                    "shortener_db_pool_checkouts_total",
                    "Checkouts finished, with a connection or timed out: the denominator of the \
                     timeout ratio.",
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
        replica_lag_seconds: layout
            .databases
            .iter()
            .skip(1)
            .map(|database| {
                registry.gauge_owned(
                    "shortener_db_replica_lag_seconds",
                    "How long ago the primary first held WAL the replica has not replayed yet (0: caught up), to within a probe.",
                    vec![Label::new("database", database.clone())],
                )
            })
            .collect(),
        replica_lag_bound_seconds: registry.gauge(
            "shortener_db_replica_lag_bound_seconds",
            "SHORTENER_REPLICA_LAG_BOUND: past it a replica's not-found is checked on the primary.",
            &[],
        ),
        api_keys_age_seconds: registry.gauge(
            "shortener_api_keys_age_seconds",
            "Seconds since the API keys were last read; past 5 keyed requests answer 503.",
            &[],
        ),
        link_cache_trusted: registry.gauge(
            "shortener_link_cache_trusted",
            "1 while the instance hears changes to links and caches them for the cache TTL; 0 while it cannot and keeps each for a second at most.",
            &[],
        ),
    }
}
