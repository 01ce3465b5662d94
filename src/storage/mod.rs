//! Postgres: the pools, the prepared statements, and every SQL statement the service runs.
//!
//! Only this module speaks SQL. It holds no business rules: which tier to ask, and what a
//! miss means, is decided in `links`. Every role has a pool of its own on the primary (read,
//! write, background), each replica a read pool, and the lease keeper and readiness probes a
//! connection of their own, so no role can starve another. Nothing here knows about HTTP.

mod batch;
mod changes;
mod janitor;
mod keys;
mod links;
mod listing;
mod migrate;
mod pool;
mod probe;
mod redis;
mod seed;
mod stats;
mod tls;
mod visits;
pub mod worker_lease;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::telemetry::Chain;
use crate::telemetry::metrics::{DbCause, DbMetrics, DbOperation, PoolName};

pub use batch::{BatchKey, BatchRow, RowOutcome, UnitKey, UnitOutcome};
pub use changes::{Audit, ChangeRow, Changed, LinkEdit, change_link_once, codes_for_host};
pub use janitor::{Chunk, PRUNE_FROM_START, PRUNE_LOCK_KEY, PruneCut};
pub use keys::{
    AuditEntry, KeyListing, KeyRow, audit_log, create_api_key, list_api_keys, revoke_api_key,
};
pub use links::{LinkRecord, ReplicaAnswer, StoredAnswer};
pub use listing::ListedLink;
pub use migrate::{
    APP_ROLE_PRIVILEGES, MIGRATION_LOCK_KEY, Unreachable, database_answers, embedded_migrations,
    grant_app_role, migrate,
};
pub use pool::within;
pub use pool::{OWN_CONNECTIONS_PRIMARY, PgConn, PoolSettings, PoolSizes};
pub use redis::{
    ChangeEvent, ChangeSubscriber, GcraAnswer, RedisError, RedisSettings, RedisStore, RedisTopology,
};
pub use seed::SeedLink;
pub use stats::{ClickRows, DailyClicks, StoredClicks};
pub use tls::PgTarget;

use pool::{PgPool, Role};

/// Runs `work` on a connection of its own to `target` (TLS as it says), driving the
/// connection beside it; for the commands that run once (`migrate`, `disable`, `enable`). The
/// connection is closed before this returns: it leaves no task behind.
async fn on_own_connection<T, E>(
    target: &PgTarget,
    work: impl AsyncFnOnce(&mut tokio_postgres::Client) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<tokio_postgres::Error>,
{
    let (mut client, connection) = target.config.connect(target.tls.clone()).await?;
    let mut connection = std::pin::pin!(connection);
    let mut connection_ended = false;
    let result = {
        let mut work = std::pin::pin!(work(&mut client));
        loop {
            tokio::select! {
                result = &mut work => break result,
                ended = &mut connection, if !connection_ended => {
                    connection_ended = true;
                    if let Err(error) = ended {
                        break Err(E::from(error));
                    }
                }
            }
        }
    };
    drop(client);
    if !connection_ended && let Err(error) = connection.await {
        tracing::debug!(%error, "postgres connection ended");
    }
    result
}

/// Why a storage call failed, as far as callers need to branch on it. Driver errors are kept
/// as the source, so a log line shows the whole chain (`telemetry::Chain`) and the SQLSTATE.
#[derive(Debug, Error)]
pub enum StorageError {
    /// No pooled connection within the acquire timeout: load is shed (HTTP 503).
    #[error("no database connection was free within the acquire timeout")]
    PoolTimeout,
    /// No answer within a bound of ours (the server or the network stopped answering).
    #[error("{0}")]
    TimedOut(&'static str),
    /// The connection failed or broke, or the server shed the statement (SQLSTATE classes 08,
    /// 53 and 57, a statement timeout among them): worth retrying later (HTTP 503).
    #[error("database unavailable")]
    Connection(#[source] tokio_postgres::Error),
    /// A batch lost to lock contention twice (serialization failure or deadlock).
    #[error("the database refused the batch twice for contention")]
    Contention(#[source] tokio_postgres::Error),
    /// Unavailable for a reason outside the driver (a URL that cannot be used, the writer
    /// stopped): worth retrying later (HTTP 503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else the server answered: a bug or a schema out of step with the code (HTTP 500).
    #[error("database error")]
    Database(#[source] tokio_postgres::Error),
    /// A bug: a call took a connection from the pool of another role.
    #[error("{0} on a connection of another role")]
    WrongRole(&'static str),
    /// A stored value this code cannot read (a schema out of step with the code).
    #[error("{0} could not be read")]
    Unreadable(&'static str),
}

impl StorageError {
    /// Whether a retry later may succeed (the answer is then 503, not 500).
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            StorageError::Database(_) | StorageError::WrongRole(_) | StorageError::Unreadable(_)
        )
    }

    /// The `cause` label of the error counters.
    pub fn cause(&self) -> DbCause {
        match self {
            StorageError::PoolTimeout => DbCause::PoolTimeout,
            StorageError::TimedOut(_) => DbCause::Timeout,
            StorageError::Connection(error) => match error.code().map(|state| state.code()) {
                Some("57014") => DbCause::Timeout,
                Some(code) if code.starts_with("53") => DbCause::Overloaded,
                _ => DbCause::Connection,
            },
            StorageError::Contention(_) => DbCause::Overloaded,
            StorageError::Unavailable(_) => DbCause::Connection,
            StorageError::Database(_)
            | StorageError::WrongRole(_)
            | StorageError::Unreadable(_) => DbCause::Query,
        }
    }

    /// The SQLSTATE the server answered, if it answered one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            StorageError::Connection(error)
            | StorageError::Contention(error)
            | StorageError::Database(error) => error.code().map(|state| state.code()),
            _ => None,
        }
    }
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
            StorageError::Connection(error)
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

/// The primary and the read replicas, a pool per role.
#[derive(Clone)]
pub struct Db {
    /// Client-side bound on one storage call: the server's statement timeout does not help
    /// when the server or the network stops answering.
    call_timeout: Duration,
    /// Redirect and stats lookups on the primary.
    read: PgPool,
    /// Creates.
    write: PgPool,
    /// Click flushes and pruning.
    background: PgPool,
    /// The worker-id lease keeper's own connection.
    lease: PgPool,
    /// The readiness prober's own connection to the primary.
    probe: PgPool,
    replicas: Arc<[Replica]>,
    next_replica: Arc<AtomicUsize>,
    /// Calls, and failed calls, by operation.
    metrics: DbMetrics,
    sizes: PoolSizes,
}

struct Replica {
    pool: PgPool,
    /// The readiness prober's own connection to this replica.
    probe: PgPool,
    /// Milliseconds since `epoch` before which this replica is passed over.
    skip_until_ms: AtomicU64,
    /// Lagging past the bound, as the prober last measured.
    lagging: AtomicBool,
    epoch: Instant,
}

impl Replica {
    fn is_skipped(&self) -> bool {
        self.elapsed_ms() < self.skip_until_ms.load(Ordering::Relaxed)
    }

    fn failed(&self, error: &StorageError) {
        tracing::warn!(error = %Chain(error), sqlstate = error.sqlstate(), "replica failed; using the primary for a while");
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
        primary: &PgTarget,
        replicas: &[PgTarget],
        settings: &PoolSettings,
    ) -> Self {
        let sizes = settings.sizes;
        let replicas = replicas
            .iter()
            .map(|target| Replica {
                pool: pool::build(target, Role::Read, sizes.read, settings),
                probe: pool::build(target, Role::Own, 1, settings),
                skip_until_ms: AtomicU64::new(0),
                lagging: AtomicBool::new(false),
                epoch: Instant::now(),
            })
            .collect();
        Db {
            call_timeout: settings.acquire_timeout
                + settings.statement_timeout
                + CALL_TIMEOUT_SLACK,
            read: pool::build(primary, Role::Read, sizes.read, settings),
            write: pool::build(primary, Role::Write, sizes.write, settings),
            background: pool::build(primary, Role::Background, sizes.background, settings),
            lease: pool::build(primary, Role::Own, 1, settings),
            probe: pool::build(primary, Role::Own, 1, settings),
            replicas,
            next_replica: Default::default(),
            metrics: DbMetrics::default(),
            sizes,
        }
    }

    /// Counts calls and failures in `metrics` from now on (set before the handle is cloned).
    pub fn count_in(&mut self, metrics: DbMetrics) {
        self.metrics = metrics;
    }

    /// Every pool, in the order [`Db::pool_states`] reports them.
    pub fn pool_layout(&self) -> Vec<PoolName> {
        self.pools()
            .map(|(database, pool, max, _)| PoolName {
                database,
                pool,
                max,
            })
            .collect()
    }

    /// Each pool's state now, in the order of [`Db::pool_layout`].
    pub fn pool_states(&self) -> impl Iterator<Item = bb8::State> + '_ {
        self.pools().map(|(_, _, _, pool)| pool.state())
    }

    /// The names of the databases, in the order readiness reports them: `primary`, then
    /// `replica_1`, … .
    pub fn database_names(&self) -> Vec<String> {
        std::iter::once("primary".to_owned())
            .chain((1..=self.replicas.len()).map(|n| format!("replica_{n}")))
            .collect()
    }

    /// Every pool: its database, its name, its size, and the pool.
    fn pools(&self) -> impl Iterator<Item = (String, &'static str, u32, &PgPool)> + '_ {
        let sizes = self.sizes;
        let primary = [
            ("read", sizes.read, &self.read),
            ("write", sizes.write, &self.write),
            ("background", sizes.background, &self.background),
            ("lease", 1, &self.lease),
            ("probe", 1, &self.probe),
        ]
        .into_iter()
        .map(|(name, max, pool)| ("primary".to_owned(), name, max, pool));
        let replicas = self
            .replicas
            .iter()
            .enumerate()
            .flat_map(move |(index, replica)| {
                let database = format!("replica_{}", index + 1);
                [
                    ("read", sizes.read, &replica.pool),
                    ("probe", 1, &replica.probe),
                ]
                .into_iter()
                .map(move |(name, max, pool)| (database.clone(), name, max, pool))
            });
        primary.chain(replicas)
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

    /// Runs one storage call within `call_timeout`, counted (and a failure counted) under
    /// `operation`.
    async fn bounded<T>(
        &self,
        operation: DbOperation,
        call: impl Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        self.metrics.called(operation);
        let result =
            pool::within(self.call_timeout, call)
                .await
                .unwrap_or(Err(StorageError::TimedOut(
                    "the database did not answer in time",
                )));
        if let Err(error) = &result {
            self.metrics.failed(operation, error.cause());
        }
        result
    }
}
