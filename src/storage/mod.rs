//! Postgres: the pools, the prepared statements, and every SQL statement the service runs.
//!
//! Only this module speaks SQL. Reads that may go to a replica fall back to the primary
//! (read-your-writes); every write goes to the primary. Nothing here knows about HTTP.

mod janitor;
mod links;
mod migrate;
mod pool;
mod stats;
pub mod worker_lease;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use thiserror::Error;

pub use links::{CreateOutcome, IdempotentRequest, LinkRecord, NewLink, StoredAnswer};
pub use migrate::migrate;
pub use pool::{PgConn, PoolSettings};
pub use stats::{ClickRows, DailyClicks};

use pool::{PgPool, Role};

/// Why a storage call failed, as far as callers need to branch on it.
#[derive(Debug, Error)]
pub enum StorageError {
    /// No connection in time, the connection broke, or the server shed the query:
    /// worth retrying later (HTTP 503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or a schema out of step with the code (HTTP 500).
    #[error("database error: {0}")]
    Database(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for StorageError {
    fn from(error: tokio_postgres::Error) -> Self {
        // No SQLSTATE: the connection itself failed. Classes 08 (connection), 53 (resources)
        // and 57 (operator intervention, statement timeout) are transient too.
        let transient = error.is_closed()
            || error.code().is_none_or(|state| {
                let code = state.code();
                code.starts_with("08") || code.starts_with("53") || code.starts_with("57")
            });
        if transient {
            StorageError::Unavailable(error.to_string())
        } else {
            StorageError::Database(error)
        }
    }
}

/// Added to acquire + statement timeouts to bound a whole storage call from the client side.
const CALL_TIMEOUT_SLACK: Duration = Duration::from_millis(500);

/// How long a replica that failed is passed over, so that a dead replica does not cost every
/// lookup a pool-acquire timeout.
const REPLICA_BACKOFF: Duration = Duration::from_secs(5);

/// The primary and the read replicas.
#[derive(Clone)]
pub struct Db {
    /// Client-side bound on one storage call: the server's statement timeout does not help
    /// when the server or the network stops answering.
    call_timeout: Duration,
    primary: PgPool,
    replicas: Arc<[Replica]>,
    next_replica: Arc<AtomicUsize>,
}

struct Replica {
    pool: PgPool,
    /// Milliseconds since `epoch` before which this replica is passed over.
    skip_until_ms: AtomicU64,
    epoch: Instant,
}

impl Replica {
    fn is_skipped(&self) -> bool {
        self.elapsed_ms() < self.skip_until_ms.load(Ordering::Relaxed)
    }

    fn failed(&self, error: &StorageError) {
        tracing::warn!(%error, "replica failed; using the primary for a while");
        let until = self.elapsed_ms() + REPLICA_BACKOFF.as_millis() as u64;
        self.skip_until_ms.store(until, Ordering::Relaxed);
    }

    fn elapsed_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

impl Db {
    /// Builds the pools without connecting: connections are made in the background and on demand,
    /// so the service starts (and reports not-ready) while a database is down.
    pub fn connect_lazy(
        primary_url: &str,
        replica_urls: &[String],
        settings: &PoolSettings,
    ) -> Result<Self, StorageError> {
        let primary = pool::build(primary_url, Role::Primary, settings)?;
        let replicas = replica_urls
            .iter()
            .map(|url| {
                Ok(Replica {
                    pool: pool::build(url, Role::Replica, settings)?,
                    skip_until_ms: AtomicU64::new(0),
                    epoch: Instant::now(),
                })
            })
            .collect::<Result<_, StorageError>>()?;
        Ok(Db {
            call_timeout: settings.acquire_timeout
                + settings.statement_timeout
                + CALL_TIMEOUT_SLACK,
            primary,
            replicas,
            next_replica: Default::default(),
        })
    }

    async fn primary(&self) -> Result<bb8::PooledConnection<'_, pool::PgManager>, StorageError> {
        pool::checkout(&self.primary).await
    }

    /// The next healthy replica in round-robin order, if any.
    fn replica(&self) -> Option<&Replica> {
        if self.replicas.is_empty() {
            return None;
        }
        let index = self.next_replica.fetch_add(1, Ordering::Relaxed) % self.replicas.len();
        let replica = &self.replicas[index];
        (!replica.is_skipped()).then_some(replica)
    }

    /// Runs one storage call within `call_timeout`.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        tokio::time::timeout(self.call_timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(StorageError::Unavailable(
                    "the database did not answer in time".into(),
                ))
            })
    }

    /// True when the primary or any replica answers a trivial query.
    pub async fn is_reachable(&self) -> bool {
        let replicas = self.replicas.iter().map(|replica| &replica.pool);
        for pool in std::iter::once(&self.primary).chain(replicas) {
            if let Ok(conn) = pool::checkout(pool).await
                && conn.client.simple_query("").await.is_ok()
            {
                return true;
            }
        }
        false
    }
}
