//! Pruning of rows that only matter for a while.

use super::{Db, StorageError, pool};
use crate::telemetry::metrics::DbOperation;

impl Db {
    /// Deletes idempotency records past their 24 hours and stats batch ids past any retry.
    /// Answers how many rows went.
    pub async fn prune_expired(&self) -> Result<u64, StorageError> {
        self.bounded(DbOperation::Prune, async {
            let conn = pool::checkout(&self.background).await?;
            let keys = conn
                .client
                .execute(
                    "DELETE FROM idempotency_keys WHERE created_at < now() - interval '24 hours'",
                    &[],
                )
                .await?;
            let batches = conn
                .client
                .execute(
                    "DELETE FROM stats_batches WHERE applied_at < now() - interval '7 days'",
                    &[],
                )
                .await?;
            Ok(keys + batches)
        })
        .await
    }
}
