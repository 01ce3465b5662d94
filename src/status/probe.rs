//! The probes behind `/readyz`: each database asked about once a second by a background
//! prober, the results cached here.
//!
//! The prober asks each database a trivial query about once a second, on connections of its
//! own (never the request pools: a pool saturated by creates must not make a healthy
//! database look down and pull a busy instance out of its load balancer). `/readyz` only
//! reads the cached result, so it answers at once even while a database hangs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::links::LinkCache;
use crate::storage::Db;

/// How often the databases are probed; `/readyz` is at most this stale (plus one probe).
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long one probe may take before its database counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_millis(900);

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

    fn of(answered: bool) -> Self {
        if answered {
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
    pub fn new(replica_count: usize) -> Self {
        Probes {
            primary: AtomicU8::new(TierState::Unknown.to_u8()),
            replicas: (0..replica_count).map(|_| AtomicU8::new(0)).collect(),
            cached_links: AtomicU64::new(0),
        }
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
            .store(TierState::of(primary).to_u8(), Ordering::Relaxed);
        for (slot, answered) in self.replicas.iter().zip(replicas) {
            slot.store(TierState::of(answered).to_u8(), Ordering::Relaxed);
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
