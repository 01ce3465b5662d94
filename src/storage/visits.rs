//! Visits of links with a visit limit: the one statement a redirect writes. The count lives in
//! Postgres on the primary (a Redis counter would lose acknowledged decrements in a failover),
//! so every such redirect asks the primary, and none is answered while it does not answer.

use super::{Db, StorageError, pool};
use crate::telemetry::metrics::DbOperation;

impl Db {
    /// Takes one visit of link `id`: the visits left after it, or `None` when none was left.
    pub async fn take_visit(&self, id: i64) -> Result<Option<i64>, StorageError> {
        self.bounded(DbOperation::Visit, async {
            let conn = pool::checkout(&self.read).await?;
            let row = conn
                .client
                .query_opt(&conn.read()?.take_visit, &[&id])
                .await?;
            Ok(row.map(|row| row.try_get(0)).transpose()?)
        })
        .await
    }

    /// The visits link `id` has left (`None`: it has no limit, or no such link), read on the
    /// primary without taking one.
    pub async fn visits_left(&self, id: i64) -> Result<Option<i64>, StorageError> {
        self.bounded(DbOperation::Visit, async {
            let conn = pool::checkout(&self.read).await?;
            let row = conn
                .client
                .query_opt("SELECT visits_left FROM links WHERE id = $1", &[&id])
                .await?;
            Ok(row.map(|row| row.try_get(0)).transpose()?.flatten())
        })
        .await
    }
}
