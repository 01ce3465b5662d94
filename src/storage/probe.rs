//! Readiness probes: one small query on a connection of the prober's own, never one borrowed
//! from the request pools (a saturated pool must not make a healthy database look dead). The
//! query reads where the server is in the WAL: the primary's write position, a replica's replay
//! position (bytes since `0/0`), from which the prober tells how far a replica lags.

use std::time::Duration;

use std::sync::atomic::Ordering;

use super::{Db, pool};

impl Db {
    /// How many read replicas are configured.
    pub fn replica_count(&self) -> usize {
        self.replicas.len()
    }

    /// Whether the primary answers within `timeout` (`None`: it did not), and its WAL write
    /// position (`None` inside: it is in recovery, not a primary).
    pub async fn probe_primary(&self, timeout: Duration) -> Option<Option<i64>> {
        probe(
            (&self.probe, &self.read),
            timeout,
            "SELECT CASE WHEN pg_is_in_recovery() THEN NULL \
             ELSE (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint END",
        )
        .await
    }

    /// Whether replica `index` answers within `timeout`, and the WAL position it has replayed
    /// (`None` inside: it is not a standby).
    pub async fn probe_replica(&self, index: usize, timeout: Duration) -> Option<Option<i64>> {
        let replica = self.replicas.get(index)?;
        probe(
            (&replica.probe, &replica.pool),
            timeout,
            "SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint",
        )
        .await
    }

    /// The migrations applied to the primary (version, name), read on the prober's connection;
    /// empty when none ever was (no history table).
    pub async fn applied_migrations(&self, timeout: Duration) -> Option<Vec<(i64, String)>> {
        pool::within(timeout, async {
            let conn = pool::checkout_own(&self.probe, &self.read).await.ok()?;
            let rows = match conn
                .client
                .query(
                    "SELECT version::bigint, coalesce(name, '') FROM refinery_schema_history \
                     ORDER BY version",
                    &[],
                )
                .await
            {
                Ok(rows) => rows,
                // 42P01: undefined table (never migrated).
                Err(error) if error.code().is_some_and(|code| code.code() == "42P01") => {
                    return Some(Vec::new());
                }
                Err(_) => return None,
            };
            rows.iter()
                .map(|row| Some((row.try_get(0).ok()?, row.try_get(1).ok()?)))
                .collect()
        })
        .await
        .flatten()
    }

    /// Marks replica `index` as lagging past the bound (or not): its "no such link" is then
    /// not final (the caller asks the primary).
    pub fn set_replica_lagging(&self, index: usize, lagging: bool) {
        if let Some(replica) = self.replicas.get(index) {
            replica.lagging.store(lagging, Ordering::Relaxed);
        }
    }
}

/// Asks `sql` on a connection of the prober's own pool, or of the server's read pool when its
/// own cannot be opened ([`pool::checkout_own`]).
async fn probe(
    (own, fallback): (&pool::PgPool, &pool::PgPool),
    timeout: Duration,
    sql: &str,
) -> Option<Option<i64>> {
    pool::within(timeout, async {
        let conn = pool::checkout_own(own, fallback).await.ok()?;
        let row = conn.client.query_one(sql, &[]).await.ok()?;
        row.try_get::<_, Option<i64>>(0).ok()
    })
    .await
    .flatten()
}
