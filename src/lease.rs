//! The task that keeps this instance's Snowflake worker id leased.
//!
//! Until a lease is held the id generator issues nothing (creates answer 503). The lease is
//! renewed every `renew_every`; each acquire or renewal tells the generator until when its ids
//! are safe (`ttl - safety_margin` after the request was sent, on the monotonic clock), and the
//! generator checks that deadline itself on every id. So ids stop before another instance
//! could take the same worker id, whether renewals fail or this process is paused and never
//! gets to run its keeper at all.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::ids::{IdGenerator, MAX_WORKER_ID, WorkerId, monotonic_ms};
use crate::storage::{Db, StorageError};
use crate::telemetry::Chain;
use crate::telemetry::metrics::{LeaseMetrics, RenewalResult};

const RETRY_EVERY: Duration = Duration::from_secs(1);

/// How long a lease lives, how often it is renewed, and how long before it could expire this
/// instance stops issuing ids (clock drift between hosts, a delayed answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSettings {
    pub ttl: Duration,
    pub renew_every: Duration,
    pub safety_margin: Duration,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            ttl: Duration::from_secs(30),
            renew_every: Duration::from_secs(10),
            safety_margin: Duration::from_secs(5),
        }
    }
}

/// Which worker id to lease, how, and in whose name.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// `SHORTENER_WORKER_ID`, leased like any other so that two instances configured with
    /// the same id cannot both issue ids; `None`: the lowest free one.
    pub fixed: Option<WorkerId>,
    pub settings: LeaseSettings,
    /// This host's name, part of the lease's holder.
    pub host: String,
}

impl LeaseSettings {
    /// Each lease statement's own limit: half the margin, so a hung database costs at most
    /// that before the keeper knows.
    fn sql_timeout(&self) -> Duration {
        self.safety_margin / 2
    }

    /// The monotonic deadline of a lease asked for at `sent_ms`.
    fn valid_until(&self, sent_ms: u64) -> u64 {
        sent_ms + (self.ttl - self.safety_margin).as_millis() as u64
    }
}

/// Holds (or keeps trying to hold) one worker-id lease for this process.
pub struct LeaseKeeper {
    db: Db,
    ids: Arc<IdGenerator>,
    settings: LeaseSettings,
    range: RangeInclusive<u16>,
    holder: String,
    /// The worker id held, and until when (monotonic milliseconds) it is safe to issue ids.
    held: Option<(WorkerId, u64)>,
    /// Whether "no worker id can be had" was logged since the last lease.
    said_unavailable: bool,
    metrics: LeaseMetrics,
}

impl LeaseKeeper {
    pub fn new(db: Db, ids: Arc<IdGenerator>, config: &LeaseConfig) -> Self {
        let range = match config.fixed {
            Some(worker) => worker.get()..=worker.get(),
            None => 0..=MAX_WORKER_ID,
        };
        LeaseKeeper {
            db,
            ids,
            settings: config.settings,
            range,
            holder: format!(
                "{}/{}/{:08x}",
                config.host,
                std::process::id(),
                fastrand::u32(..)
            ),
            held: None,
            said_unavailable: false,
            metrics: LeaseMetrics::default(),
        }
    }

    /// Counts renewals in `metrics`.
    pub fn with_metrics(mut self, metrics: LeaseMetrics) -> Self {
        self.metrics = metrics;
        self
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
            self.settings.renew_every
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
                tracing::warn!(error = %Chain(&error), "worker id lease not released; it expires by itself");
            }
        }
    }

    /// A lease statement, within its own limit.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        crate::storage::within(self.settings.sql_timeout(), call)
            .await
            .unwrap_or(Err(StorageError::TimedOut(
                "the lease statement did not answer within half the safety margin",
            )))
    }

    async fn acquire(&mut self) -> Duration {
        let sent = monotonic_ms();
        let acquired = self
            .bounded(
                self.db
                    .acquire_worker_id(&self.holder, self.range.clone(), self.settings.ttl),
            )
            .await;
        match acquired {
            Ok(Some(lease)) => {
                let valid_until = self.settings.valid_until(sent);
                self.ids
                    .assign(lease.worker, lease.high_water_ms, valid_until);
                self.held = Some((lease.worker, valid_until));
                self.said_unavailable = false;
                tracing::info!(worker_id = lease.worker.get(), "worker id leased");
                self.settings.renew_every
            }
            Ok(None) => {
                // Said once, not every second: the readiness body says it for as long as it lasts.
                if !self.said_unavailable {
                    self.said_unavailable = true;
                    tracing::error!(
                        range = ?self.range,
                        "every worker id this instance may use is held by a live instance; \
                         creates answer 503 (no-worker-id) until one is free, redirects go on"
                    );
                }
                RETRY_EVERY
            }
            Err(error) => {
                if !self.said_unavailable {
                    self.said_unavailable = true;
                    tracing::warn!(error = %Chain(&error), "cannot lease a worker id yet; retrying every second");
                }
                RETRY_EVERY
            }
        }
    }

    async fn renew(&mut self, worker: WorkerId, valid_until: u64) -> Duration {
        let sent = monotonic_ms();
        let renewed = self
            .bounded(self.db.renew_worker_id(
                worker,
                &self.holder,
                self.ids.high_water_ms(),
                self.settings.ttl,
            ))
            .await;
        match renewed {
            Ok(true) => {
                self.metrics.renewal(RenewalResult::Renewed);
                let valid_until = self.settings.valid_until(sent);
                self.ids.extend(valid_until);
                self.held = Some((worker, valid_until));
                self.settings.renew_every
            }
            Ok(false) => {
                self.metrics.renewal(RenewalResult::Lost);
                self.ids.revoke();
                self.held = None;
                tracing::error!(
                    worker_id = worker.get(),
                    "worker id lease lost; re-acquiring"
                );
                Duration::ZERO
            }
            Err(error) if monotonic_ms() >= valid_until => {
                self.metrics.renewal(RenewalResult::Lost);
                self.ids.revoke();
                self.held = None;
                tracing::error!(error = %Chain(&error), "worker id lease could not be renewed in time");
                RETRY_EVERY
            }
            Err(error) => {
                self.metrics.renewal(RenewalResult::Failed);
                crate::throttled!(warn, error = %Chain(&error), "worker id lease renewal failed; retrying");
                RETRY_EVERY
            }
        }
    }
}
