//! Pruning of rows that only matter for a while.

use time::OffsetDateTime;

use super::{Db, StorageError, pool};
use crate::telemetry::metrics::DbOperation;

impl Db {
    /// Deletes idempotency records stored before `keys_stored_before` and stats batch ids past
    /// any retry. Answers how many rows went.
    pub async fn prune_expired(
        &self,
        keys_stored_before: OffsetDateTime,
    ) -> Result<u64, StorageError> {
        self.bounded(DbOperation::Prune, async {
            let conn = pool::checkout(&self.background).await?;
            let keys = conn
                .client
                .execute(
                    "DELETE FROM idempotency_keys WHERE created_at < $1",
                    &[&keys_stored_before],
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
