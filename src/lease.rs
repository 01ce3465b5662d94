//! The task that keeps this instance's Snowflake worker id leased.
//!
//! Until a lease is held the id generator issues nothing (creates answer 503). The lease is
//! renewed every third of its lifetime; when renewals fail for so long that the lease may
//! have expired, the generator stops before another instance could take the same id.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ids::{IdGenerator, MAX_WORKER_ID, WorkerId};
use crate::storage::Db;

/// How long a lease lives without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(30);
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// Stop issuing ids this long before the lease could expire, to absorb clock and network delay.
const SAFETY_MARGIN: Duration = Duration::from_secs(5);
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Holds (or keeps trying to hold) one worker-id lease for this process.
pub struct LeaseKeeper {
    db: Db,
    ids: Arc<IdGenerator>,
    range: RangeInclusive<u16>,
    holder: String,
    /// The worker id held, and until when it is safe to issue ids with it.
    held: Option<(WorkerId, Instant)>,
}

impl LeaseKeeper {
    /// `fixed`: the configured `SHORTENER_WORKER_ID`, leased like any other so that two
    /// instances configured with the same id cannot both issue ids.
    pub fn new(db: Db, ids: Arc<IdGenerator>, fixed: Option<WorkerId>) -> Self {
        let range = match fixed {
            Some(worker) => worker.get()..=worker.get(),
            None => 0..=MAX_WORKER_ID,
        };
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "unknown-host".into());
        LeaseKeeper {
            db,
            ids,
            range,
            holder: format!("{host}/{}/{:08x}", std::process::id(), fastrand::u32(..)),
            held: None,
        }
    }

    /// One acquire or renew; answers how long to wait before the next.
    pub async fn step(&mut self) -> Duration {
        match self.held {
            None => self.acquire().await,
            Some((worker, valid_until)) => self.renew(worker, valid_until).await,
        }
    }

    /// Keeps the lease until `stop` is cancelled, then releases it.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut wait = if self.held.is_some() {
            RENEW_EVERY
        } else {
            Duration::ZERO
        };
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => break,
            }
            wait = self.step().await;
        }
        self.ids.revoke();
        if let Some((worker, _)) = self.held {
            let released = self
                .db
                .release_worker_id(worker, &self.holder, self.ids.high_water_ms())
                .await;
            if let Err(error) = released {
                tracing::warn!(%error, "worker id lease not released; it expires by itself");
            }
        }
    }

    async fn acquire(&mut self) -> Duration {
        let sent = Instant::now();
        match self
            .db
            .acquire_worker_id(&self.holder, self.range.clone(), LEASE_TTL)
            .await
        {
            Ok(Some(lease)) => {
                self.ids.assign(lease.worker, lease.high_water_ms);
                self.held = Some((lease.worker, sent + LEASE_TTL - SAFETY_MARGIN));
                tracing::info!(worker_id = lease.worker.get(), "worker id leased");
                RENEW_EVERY
            }
            Ok(None) => {
                tracing::warn!(range = ?self.range, "every worker id in range is held by a live instance");
                RETRY_EVERY
            }
            Err(error) => {
                tracing::warn!(%error, "cannot lease a worker id yet");
                RETRY_EVERY
            }
        }
    }

    async fn renew(&mut self, worker: WorkerId, valid_until: Instant) -> Duration {
        let sent = Instant::now();
        let renewed = self
            .db
            .renew_worker_id(worker, &self.holder, self.ids.high_water_ms(), LEASE_TTL)
            .await;
        match renewed {
            Ok(true) => {
                self.held = Some((worker, sent + LEASE_TTL - SAFETY_MARGIN));
                RENEW_EVERY
            }
            Ok(false) => {
                self.ids.revoke();
                self.held = None;
                tracing::error!(
                    worker_id = worker.get(),
                    "worker id lease lost; re-acquiring"
                );
                Duration::ZERO
            }
            Err(error) if Instant::now() >= valid_until => {
                self.ids.revoke();
                self.held = None;
                tracing::error!(%error, "worker id lease could not be renewed in time");
                RETRY_EVERY
            }
            Err(error) => {
                tracing::warn!(%error, "worker id lease renewal failed; retrying");
                RETRY_EVERY
            }
        }
    }
}
