//! Readiness probes: a trivial query on a connection of the prober's own, never one borrowed
//! from the request pools (a saturated pool must not make a healthy database look dead).

use std::time::Duration;

use super::{Db, pool};

impl Db {
    /// How many read replicas are configured.
    pub fn replica_count(&self) -> usize {
        self.replicas.len()
    }

    /// Whether the primary answers within `timeout`.
    pub async fn probe_primary(&self, timeout: Duration) -> bool {
        probe(&self.probe, timeout).await
    }

    /// Whether replica `index` answers within `timeout`.
    pub async fn probe_replica(&self, index: usize, timeout: Duration) -> bool {
        match self.replicas.get(index) {
            Some(replica) => probe(&replica.probe, timeout).await,
            None => false,
        }
    }
}

async fn probe(pool: &pool::PgPool, timeout: Duration) -> bool {
    let answered = tokio::time::timeout(timeout, async {
        let conn = pool::checkout(pool).await.ok()?;
        conn.client.simple_query("").await.ok()
    })
    .await;
    matches!(answered, Ok(Some(_)))
}
