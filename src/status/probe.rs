//! The probes behind `/readyz`: each database asked about once a second by a background
//! prober, the results cached here.
//!
//! The prober asks each database one small query about once a second, on connections of its
//! own (never the request pools: a pool saturated by creates must not make a healthy
//! database look down and pull a busy instance out of its load balancer). `/readyz` only
//! reads the cached result, so it answers at once even while a database hangs.
//!
//! The same queries read where each server is in the WAL, and so how far each replica lags:
//! by position, not by the time of its last replay (which grows on a primary that writes
//! nothing). The prober keeps the primary's recent positions with the instant it read each; a
//! replica lags by the age of the oldest position it has not replayed yet (0 when it has
//! replayed everything the primary had), measured to within one probe. A replica lagging past
//! `SHORTENER_REPLICA_LAG_BOUND` is marked so in storage: its "no such link" is not final.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::links::{LinkCache, SchemaCheck};
use crate::storage::Db;

/// How often the databases are probed; `/readyz` is at most this stale (plus one probe).
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long one probe may take before its database counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_millis(900);
/// The primary's positions kept: a replica further behind than this many probes reads as
/// lagging by at least that long.
const POSITIONS_KEPT: usize = 600;

/// What the last probe of one tier found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TierState {
    /// Not probed yet.
    Unknown,
    Up,
    Down,
}

impl TierState {
    fn from_u8(raw: u8) -> Self {
        match raw {
            1 => TierState::Up,
            2 => TierState::Down,
            _ => TierState::Unknown,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            TierState::Unknown => 0,
            TierState::Up => 1,
            TierState::Down => 2,
        }
    }

    fn of<T>(answered: &Option<T>) -> Self {
        if answered.is_some() {
            TierState::Up
        } else {
            TierState::Down
        }
    }
}

/// The probe results, written by the prober and read by `/readyz`.
pub struct Probes {
    primary: AtomicU8,
    replicas: Box<[AtomicU8]>,
    cached_links: AtomicU64,
    /// Each replica's lag at the last probe that could tell, in milliseconds.
    replica_lag_ms: Box<[AtomicU64]>,
    replica_lag_bound: Duration,
    /// The primary's recent WAL positions, oldest first, with when each was read.
    primary_positions: Mutex<VecDeque<(Instant, i64)>>,
    /// The schema, checked on every probe of the primary.
    schema: Arc<SchemaCheck>,
}

/// The Redis tier: not configured, or whether the resolver is asking it (its breaker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisState {
    Off,
    Up,
    Down,
}

/// Each tier's state, as `/readyz` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct Tiers {
    /// Links held in this instance's memory.
    pub cache_entries: u64,
    pub redis: RedisState,
    pub primary: TierState,
    pub replicas: Vec<TierState>,
}

impl Tiers {
    /// Redirects can be served: a database answers, or memory holds links.
    pub fn can_serve_redirects(&self) -> bool {
        self.primary == TierState::Up
            || self.replicas.contains(&TierState::Up)
            || self.redis == RedisState::Up
            || self.cache_entries > 0
    }
}

impl Probes {
    pub fn new(
        replica_count: usize,
        replica_lag_bound: Duration,
        schema: Arc<SchemaCheck>,
    ) -> Self {
        Probes {
            primary: AtomicU8::new(TierState::Unknown.to_u8()),
            replicas: (0..replica_count).map(|_| AtomicU8::new(0)).collect(),
            cached_links: AtomicU64::new(0),
            replica_lag_ms: (0..replica_count).map(|_| AtomicU64::new(0)).collect(),
            replica_lag_bound,
            primary_positions: Mutex::new(VecDeque::with_capacity(POSITIONS_KEPT)),
            schema,
        }
    }

    pub fn schema(&self) -> &SchemaCheck {
        &self.schema
    }

    /// Reads the primary's migrations and checks them against the binary's (a history that
    /// cannot be read leaves the last state).
    async fn check_schema(&self, db: &Db) {
        if let Some(applied) = db.applied_migrations(PROBE_TIMEOUT).await {
            self.schema.check(&applied);
        }
    }

    pub fn replica_lag_bound(&self) -> Duration {
        self.replica_lag_bound
    }

    /// Each replica's lag behind the primary at the last probe that could measure it.
    pub fn replica_lags(&self) -> Vec<Duration> {
        self.replica_lag_ms
            .iter()
            .map(|lag| Duration::from_millis(lag.load(Ordering::Relaxed)))
            .collect()
    }

    /// Records the primary at `position` now; answers how long ago it first stood past
    /// `replayed` for each replica's replayed position (`None`: not measured).
    fn lags(&self, position: i64, replayed: &[Option<i64>]) -> Vec<Option<Duration>> {
        let now = Instant::now();
        let mut positions = self
            .primary_positions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if positions.len() == POSITIONS_KEPT {
            positions.pop_front();
        }
        positions.push_back((now, position));
        replayed
            .iter()
            .map(|replayed| {
                let replayed = (*replayed)?;
                let lag = positions
                    .iter()
                    .find(|(_, position)| *position > replayed)
                    .map_or(Duration::ZERO, |(at, _)| now.duration_since(*at));
                Some(lag)
            })
            .collect()
    }

    pub fn tiers(&self) -> Tiers {
        Tiers {
            cache_entries: self.cached_links.load(Ordering::Relaxed),
            redis: RedisState::Off,
            primary: TierState::from_u8(self.primary.load(Ordering::Relaxed)),
            replicas: self
                .replicas
                .iter()
                .map(|state| TierState::from_u8(state.load(Ordering::Relaxed)))
                .collect(),
        }
    }

    /// Probes every tier once.
    pub async fn probe(&self, db: &Db, cache: &LinkCache) {
        let primary = db.probe_primary(PROBE_TIMEOUT);
        let replicas = async {
            let mut states = Vec::with_capacity(self.replicas.len());
            for index in 0..self.replicas.len() {
                states.push(db.probe_replica(index, PROBE_TIMEOUT).await);
            }
            states
        };
        let (primary, replicas) = tokio::join!(primary, replicas);
        self.primary
            .store(TierState::of(&primary).to_u8(), Ordering::Relaxed);
        for (slot, answered) in self.replicas.iter().zip(&replicas) {
            slot.store(TierState::of(answered).to_u8(), Ordering::Relaxed);
        }
        if primary.is_some() {
            self.check_schema(db).await;
        }
        // The lag needs the primary's position; without it the last measure stands.
        if let Some(Some(position)) = primary {
            let replayed: Vec<Option<i64>> = replicas.iter().map(|r| r.flatten()).collect();
            for (index, lag) in self.lags(position, &replayed).into_iter().enumerate() {
                let Some(lag) = lag else { continue };
                let was =
                    self.replica_lag_ms[index].swap(lag.as_millis() as u64, Ordering::Relaxed);
                let lagging = lag > self.replica_lag_bound;
                if lagging != (Duration::from_millis(was) > self.replica_lag_bound) {
                    if lagging {
                        tracing::warn!(replica = index + 1, lag = ?lag, bound = ?self.replica_lag_bound, "a replica lags past the bound: the primary is asked for what it does not have");
                    } else {
                        tracing::info!(replica = index + 1, lag = ?lag, "a replica is back within the lag bound");
                    }
                }
                db.set_replica_lagging(index, lagging);
            }
        }
        self.cached_links
            .store(cache.entry_count_now().await, Ordering::Relaxed);
    }
}

/// Probes every [`PROBE_EVERY`] until `stop` is cancelled.
pub async fn run_prober(
    readiness: Arc<Probes>,
    db: Db,
    cache: Arc<LinkCache>,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(PROBE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => readiness.probe(&db, &cache).await,
            _ = stop.cancelled() => return,
        }
    }
}
