//! What is kept only for a while: idempotency records past their 24 hours and click-batch ids
//! past any retry are deleted every [`PRUNE_EVERY`], off the request path.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::idempotency::KEY_LIFETIME;
use crate::clock::Clock;
use crate::storage::Db;
use crate::telemetry::Chain;

/// How often expired rows are deleted.
pub const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Prunes every [`PRUNE_EVERY`] until `stop` is cancelled; a failure is retried next time.
pub async fn run_pruner(db: Db, clock: Clock, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = stop.cancelled() => return,
        }
        match db.prune_expired(clock.now() - KEY_LIFETIME).await {
            Ok(rows) => tracing::debug!(rows, "pruned expired idempotency keys and stats batches"),
            Err(error) => {
                tracing::warn!(error = %Chain(&error), "pruning failed; will retry")
            }
        }
    }
}
