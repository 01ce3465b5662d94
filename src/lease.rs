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

/// A name for this process in the lease table: host, pid and a random part.
pub fn holder_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "unknown-host".into());
    format!("{host}/{}/{:08x}", std::process::id(), fastrand::u32(..))
}

/// Keeps a lease until `stop` is cancelled, then releases it.
pub async fn keep_worker_lease(
    db: Db,
    ids: Arc<IdGenerator>,
    fixed: Option<WorkerId>,
    holder: String,
    stop: CancellationToken,
) {
    let range: RangeInclusive<u16> = match fixed {
        Some(worker) => worker.get()..=worker.get(),
        None => 0..=MAX_WORKER_ID,
    };
    let mut held: Option<(WorkerId, Instant)> = None;
    loop {
        let wait = match held {
            None => match db
                .acquire_worker_id(&holder, range.clone(), LEASE_TTL)
                .await
            {
                Ok(Some(lease)) => {
                    ids.assign(lease.worker, lease.high_water_ms);
                    held = Some((lease.worker, Instant::now() + LEASE_TTL - SAFETY_MARGIN));
                    tracing::info!(worker_id = lease.worker.get(), "worker id leased");
                    RENEW_EVERY
                }
                Ok(None) => {
                    tracing::warn!(
                        ?range,
                        "every worker id in range is held by a live instance"
                    );
                    RETRY_EVERY
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot lease a worker id yet");
                    RETRY_EVERY
                }
            },
            Some((worker, valid_until)) => {
                let sent = Instant::now();
                match db
                    .renew_worker_id(worker, &holder, ids.high_water_ms(), LEASE_TTL)
                    .await
                {
                    Ok(true) => {
                        held = Some((worker, sent + LEASE_TTL - SAFETY_MARGIN));
                        RENEW_EVERY
                    }
                    Ok(false) => {
                        ids.revoke();
                        held = None;
                        tracing::error!(worker_id = worker.get(), "worker id lease lost");
                        Duration::ZERO
                    }
                    Err(error) if Instant::now() >= valid_until => {
                        ids.revoke();
                        held = None;
                        tracing::error!(%error, "worker id lease could not be renewed in time");
                        RETRY_EVERY
                    }
                    Err(error) => {
                        tracing::warn!(%error, "worker id lease renewal failed; retrying");
                        RETRY_EVERY
                    }
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => break,
        }
    }
    ids.revoke();
    if let Some((worker, _)) = held
        && let Err(error) = db
            .release_worker_id(worker, &holder, ids.high_water_ms())
            .await
    {
        tracing::warn!(%error, "worker id lease not released; it expires by itself");
    }
}
