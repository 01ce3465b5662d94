//! bb8 pools of Postgres connections that carry their prepared statements with them.
//!
//! bb8's defaults (30 s to wait for a connection, a test query on every checkout) suit neither a
//! redirect path that must answer in milliseconds nor one that must shed load quickly; every
//! limit is explicit here. Statements are prepared once, when a connection is opened.

use std::sync::Arc;
use std::time::Duration;

use bb8::{ErrorSink, ManageConnection, Pool, PooledConnection, QueueStrategy, RunError};
use bb8_postgres::PostgresConnectionManager;
use tokio_postgres::{Client, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::StorageError;
use super::links::LINK_COLUMNS;
use super::tls::PgTarget;
use crate::telemetry::Throttle;

/// A peer that vanished (host down, network cut) is noticed within about half a minute
/// instead of the kernel's default two hours.
const TCP_KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const TCP_KEEPALIVE_RETRIES: u32 = 3;
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection is closed when it is returned to its pool this long after it was opened
/// (server-side caches do not grow forever; a moved server is followed). Checked here rather
/// than by bb8's `max_lifetime`, which needs a reaper task per pool that outlives the pool by up
/// to its period (30 s): when the service stops, its tasks must be gone (`tests/shutdown.rs`).
/// Idle connections are not closed: every pool is sized within the connection budget anyway.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// Connections of each role this instance opens to the primary. Every role has its own pool,
/// so a flood of creates blocked on a lock cannot take the connections redirects need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSizes {
    /// Redirect and stats lookups (also the size of each replica's pool).
    pub read: u32,
    /// Creates.
    pub write: u32,
    /// Click flushes and pruning.
    pub background: u32,
}

/// Connections opened to the primary outside the request pools: one for the worker-id lease
/// and one for readiness probes (a replica has one, for its probes).
pub const OWN_CONNECTIONS_PRIMARY: u32 = 2;

impl PoolSizes {
    /// Everything this instance may open to the primary at once.
    pub fn primary_total(&self) -> u32 {
        self.read + self.write + self.background + OWN_CONNECTIONS_PRIMARY
    }
}

/// Limits of the pools.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub sizes: PoolSizes,
    /// How long a request waits for a connection before it is shed (answered 503).
    pub acquire_timeout: Duration,
    /// How long opening a connection may take.
    pub connect_timeout: Duration,
    /// Server-side cap on every statement.
    pub statement_timeout: Duration,
}

/// What a pool's connections are for; it decides which statements they prepare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// Redirect and stats lookups, on the primary or a replica.
    Read,
    /// Creates, on the primary.
    Write,
    /// Click flushes and pruning, on the primary.
    Background,
    /// A connection of its own for one task (the lease, readiness probes): nothing prepared.
    Own,
}

/// A pool, and the gate its connects go through ([`ConnectGate`]).
#[derive(Clone)]
pub(super) struct PgPool {
    pool: Pool<PgManager>,
    gate: Arc<ConnectGate>,
}

impl PgPool {
    pub(super) fn state(&self) -> bb8::State {
        self.pool.state()
    }
}

/// A connection and the statements prepared on it for its role.
pub struct PgConn {
    pub client: Client,
    statements: Statements,
    opened: std::time::Instant,
    /// A call on it was given up by its time bound ([`within`]): an answer may still be on its
    /// way, and every later statement would queue behind it (a server that stopped answering
    /// without closing never sends it), so it is closed instead of reused.
    abandoned: bool,
}

enum Statements {
    Read(ReadStatements),
    Write(WriteStatements),
    Background(BackgroundStatements),
    None,
}

pub(super) struct ReadStatements {
    /// `(decoded id, code)`: the primary-key lookup, then the code index for an alias that
    /// merely looks like a generated code.
    pub find_by_id_then_code: Statement,
    pub find_by_code: Statement,
    pub daily_clicks: Statement,
    /// `(id)`: one visit of a link with a visit limit taken, if one is left (primary only).
    pub take_visit: Statement,
}

#[derive(Clone)]
pub(super) struct WriteStatements {
    pub idempotency_get: Statement,
    /// `(names text[])`: `pg_try_advisory_xact_lock` on each name, in the array's order.
    pub batch_claim_keys: Statement,
    /// `(scopes, keys, fresh_since)`: the answers stored under those keys after their
    /// `fresh_since`; older ones are deleted on the way.
    pub batch_stored_answers: Statement,
    /// `(ids, codes, targets, created, expires, owners, max visits, reuse digests)`: the links
    /// inserted, by id.
    pub batch_insert_links: Statement,
    /// `(codes)`: the id owning each code that exists.
    pub batch_code_owners: Statement,
    pub batch_insert_keys: Statement,
}

pub(super) struct BackgroundStatements {
    pub claim_batch: Statement,
    pub upsert_clicks: Statement,
}

impl ReadStatements {
    async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
        Ok(ReadStatements {
            find_by_id_then_code: client
                .prepare(&format!(
                    "(SELECT {LINK_COLUMNS} FROM links WHERE id = $1 AND code = $2) \
                     UNION ALL (SELECT {LINK_COLUMNS} FROM links WHERE code = $2) LIMIT 1"
                ))
                .await?,
            find_by_code: client
                .prepare(&format!("SELECT {LINK_COLUMNS} FROM links WHERE code = $1"))
                .await?,
            daily_clicks: client
                .prepare(
                    "SELECT day, clicks, bot_clicks, last_click_at FROM link_clicks_daily \
                     WHERE link_id = $1 \
                     UNION ALL SELECT NULL, clicks, bot_clicks, last_click_at \
                     FROM link_clicks_total WHERE link_id = $1 ORDER BY day NULLS FIRST",
                )
                .await?,
            // Prepared on replicas too (preparing is allowed there), executed on the primary.
            take_visit: client
                .prepare(
                    "UPDATE links SET visits_left = visits_left - 1 \
                     WHERE id = $1 AND visits_left > 0 AND deleted_at IS NULL \
                     RETURNING visits_left",
                )
                .await?,
        })
    }
}

impl WriteStatements {
    async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
        Ok(WriteStatements {
            idempotency_get: client
                .prepare(
                    "SELECT fingerprint, status, body, created_at > $3 \
                     FROM idempotency_keys WHERE scope = $1 AND key = $2",
                )
                .await?,
            batch_claim_keys: client
                .prepare(
                    "SELECT pg_try_advisory_xact_lock(hashtextextended(name, 0)) \
                     FROM UNNEST($1::text[]) WITH ORDINALITY AS claim(name, position) \
                     ORDER BY position",
                )
                .await?,
            batch_stored_answers: client
                .prepare(
                    "WITH asked AS (SELECT * FROM UNNEST($1::text[], $2::text[], \
                                                        $3::timestamptz[]) \
                                    AS a(scope, key, fresh_since)), \
                     stale AS (DELETE FROM idempotency_keys k USING asked \
                               WHERE k.scope = asked.scope AND k.key = asked.key \
                                 AND k.created_at <= asked.fresh_since) \
                     SELECT k.scope, k.key, k.fingerprint, k.status, k.body \
                     FROM idempotency_keys k JOIN asked USING (scope, key) \
                     WHERE k.created_at > asked.fresh_since",
                )
                .await?,
            batch_insert_links: client
                .prepare(
                    "INSERT INTO links (id, code, target_url, created_at, expires_at, \
                                        owner_key_id, max_visits, visits_left, reuse_digest) \
                     SELECT id, code, target_url, created_at, expires_at, owner_key_id, \
                            max_visits, max_visits, reuse_digest \
                     FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::timestamptz[], \
                                 $5::timestamptz[], $6::bigint[], $7::bigint[], $8::bytea[]) \
                       AS u (id, code, target_url, created_at, expires_at, owner_key_id, \
                             max_visits, reuse_digest) \
                     ON CONFLICT DO NOTHING RETURNING id",
                )
                .await?,
            batch_code_owners: client
                .prepare("SELECT code, id FROM links WHERE code = ANY($1::text[])")
                .await?,
            batch_insert_keys: client
                .prepare(
                    "INSERT INTO idempotency_keys \
                       (scope, key, fingerprint, status, body, link_id, created_at) \
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::bytea[], $4::smallint[], \
                                          $5::text[], $6::bigint[], $7::timestamptz[])",
                )
                .await?,
        })
    }
}

impl BackgroundStatements {
    async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
        Ok(BackgroundStatements {
            claim_batch: client
                .prepare("INSERT INTO stats_batches (batch_id) VALUES ($1) ON CONFLICT DO NOTHING")
                .await?,
            // Rows of links that no longer exist (deleted by hand, or lost to a restore while
            // an instance still had them cached) are left out: their clicks would have been
            // deleted with the link, and the foreign key would otherwise fail the whole batch
            // again at every retry, holding back every later click of this instance.
            upsert_clicks: client
                .prepare(
                    "INSERT INTO link_clicks_daily (link_id, day, clicks, bot_clicks, last_click_at) \
                     SELECT u.* FROM UNNEST($1::bigint[], $2::date[], $3::bigint[], $4::bigint[], \
                                            $5::timestamptz[]) \
                                AS u (link_id, day, clicks, bot_clicks, last_click_at) \
                     WHERE EXISTS (SELECT 1 FROM links WHERE links.id = u.link_id) \
                     ON CONFLICT (link_id, day) DO UPDATE SET \
                       clicks = link_clicks_daily.clicks + EXCLUDED.clicks, \
                       bot_clicks = link_clicks_daily.bot_clicks + EXCLUDED.bot_clicks, \
                       last_click_at = GREATEST(link_clicks_daily.last_click_at, EXCLUDED.last_click_at)",
                )
                .await?,
        })
    }
}

pub struct PgManager {
    inner: PostgresConnectionManager<MakeRustlsConnect>,
    role: Role,
    gate: Arc<ConnectGate>,
}

/// The first wait after a connection could not be opened, and the longest.
const CONNECT_BACKOFF_FIRST: Duration = Duration::from_millis(100);
const CONNECT_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Backs a pool's connects off while the server refuses them (down, or at its
/// `max_connections`: SQLSTATE 53300): after a failure, no connection is tried for a while
/// (100 ms, doubling to 2 s, with up to a quarter more), so a server back is used again within about 2.5 s, then one trial while the others wait for its outcome.
/// Without it every request that finds no idle connection starts a connect of its own, and an
/// overloaded server is asked for hundreds of connections a second (each one a backend forked
/// to refuse it).
#[derive(Debug)]
struct ConnectGate {
    epoch: std::time::Instant,
    /// Milliseconds since `epoch` before which no connection is tried; 0: open.
    closed_until: std::sync::atomic::AtomicU64,
    failures: std::sync::atomic::AtomicU32,
}

impl ConnectGate {
    fn new() -> Self {
        ConnectGate {
            epoch: std::time::Instant::now(),
            closed_until: Default::default(),
            failures: Default::default(),
        }
    }

    fn now_ms(&self) -> u64 {
        // Never 0: that means open.
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Waits until this caller may try to connect.
    async fn pass(&self, trial_hold: Duration) {
        use std::sync::atomic::Ordering;
        loop {
            let until = self.closed_until.load(Ordering::Acquire);
            if until == 0 {
                return;
            }
            let now = self.now_ms();
            if now < until {
                tokio::time::sleep(Duration::from_millis(until - now)).await;
                continue;
            }
            // The wait is over: one caller tries, the others wait for what it finds.
            let hold = now + trial_hold.as_millis() as u64;
            if self
                .closed_until
                .compare_exchange(until, hold, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return;
            }
        }
    }

    /// Whether connects are being held back now (after a failure, or while one trial runs).
    fn is_closed(&self) -> bool {
        let until = self.closed_until.load(std::sync::atomic::Ordering::Acquire);
        until != 0 && self.now_ms() < until
    }

    fn opened(&self) {
        use std::sync::atomic::Ordering;
        self.failures.store(0, Ordering::Relaxed);
        self.closed_until.store(0, Ordering::Release);
    }

    fn failed(&self) {
        use std::sync::atomic::Ordering;
        let failures = self.failures.fetch_add(1, Ordering::Relaxed).min(16);
        let backoff = CONNECT_BACKOFF_FIRST
            .saturating_mul(1 << failures)
            .min(CONNECT_BACKOFF_MAX);
        // Up to a quarter more, so that instances refused together do not come back together.
        let jitter = backoff.mul_f64(fastrand::f64() / 4.0);
        let until = self.now_ms() + (backoff + jitter).as_millis() as u64;
        self.closed_until.store(until, Ordering::Release);
    }
}

impl ManageConnection for PgManager {
    type Connection = PgConn;
    type Error = tokio_postgres::Error;

    async fn connect(&self) -> Result<PgConn, Self::Error> {
        self.gate.pass(CONNECT_BACKOFF_MAX).await;
        let client = match self.inner.connect().await {
            Ok(client) => {
                self.gate.opened();
                client
            }
            Err(error) => {
                self.gate.failed();
                return Err(error);
            }
        };
        let statements = match self.role {
            Role::Read => Statements::Read(ReadStatements::prepare(&client).await?),
            Role::Write => Statements::Write(WriteStatements::prepare(&client).await?),
            Role::Background => {
                Statements::Background(BackgroundStatements::prepare(&client).await?)
            }
            Role::Own => Statements::None,
        };
        Ok(PgConn {
            client,
            statements,
            opened: std::time::Instant::now(),
            abandoned: false,
        })
    }

    async fn is_valid(&self, conn: &mut PgConn) -> Result<(), Self::Error> {
        conn.client.simple_query("").await.map(|_| ())
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.abandoned || conn.client.is_closed() || conn.opened.elapsed() >= MAX_LIFETIME
    }
}

/// While the database is away each pool fails to connect several times a second; the first
/// failure is logged, then at most one line per this long, with how many were not.
const CONNECT_FAILURE_LOG_EVERY: Duration = Duration::from_secs(10);

/// Logs connection failures that bb8 would otherwise swallow, with their cause ("Connection
/// refused", a TLS error), and not as a storm: the first, then one summary per interval.
#[derive(Debug, Clone)]
struct LogErrors {
    role: Role,
    /// `host:port` (never the URL: it may hold a password).
    server: Arc<str>,
    throttle: Arc<Throttle>,
}

impl ErrorSink<tokio_postgres::Error> for LogErrors {
    fn sink(&self, error: tokio_postgres::Error) {
        if let Some(suppressed) = self.throttle.admit() {
            let error = crate::telemetry::Chain(&error);
            tracing::warn!(role = ?self.role, server = %self.server, %error, suppressed, "postgres connection failed");
        }
    }

    fn boxed_clone(&self) -> Box<dyn ErrorSink<tokio_postgres::Error>> {
        Box::new(self.clone())
    }
}

/// A pool of `size` connections of `role` to `target`.
pub(super) fn build(target: &PgTarget, role: Role, size: u32, settings: &PoolSettings) -> PgPool {
    let server: Arc<str> = target.server().into();
    let (mut config, tls) = (target.config.clone(), target.tls.clone());
    config
        .connect_timeout(settings.connect_timeout)
        .keepalives(true)
        .keepalives_idle(TCP_KEEPALIVE_IDLE)
        .keepalives_interval(TCP_KEEPALIVE_INTERVAL)
        .keepalives_retries(TCP_KEEPALIVE_RETRIES)
        .tcp_user_timeout(TCP_USER_TIMEOUT)
        .application_name("shortener")
        .options(format!(
            "-c statement_timeout={}{}",
            settings.statement_timeout.as_millis(),
            // The batch statements join arrays against the tables. A generic plan made while a
            // table was small (a new deployment) is a sequential scan kept for the connection's
            // life as the table grows; planning each batch (microseconds, once per batch)
            // follows the table's size instead.
            if role == Role::Write {
                " -c plan_cache_mode=force_custom_plan"
            } else {
                ""
            }
        ));
    let gate = Arc::new(ConnectGate::new());
    let manager = PgManager {
        inner: PostgresConnectionManager::new(config, tls),
        role,
        gate: Arc::clone(&gate),
    };
    // Request pools keep two connections warm; a task's own connection is opened on first use.
    let min_idle = (role != Role::Own).then_some(size.min(2));
    let pool = Pool::builder()
        .max_size(size)
        // No reaper task (see MAX_LIFETIME).
        .idle_timeout(None)
        .max_lifetime(None)
        .min_idle(min_idle)
        .connection_timeout(settings.acquire_timeout)
        .test_on_check_out(false)
        .queue_strategy(QueueStrategy::Lifo)
        .error_sink(Box::new(LogErrors {
            role,
            server,
            throttle: Arc::new(Throttle::new(CONNECT_FAILURE_LOG_EVERY)),
        }))
        .build_unchecked(manager);
    PgPool { pool, gate }
}

thread_local! {
    /// Set while [`within`] drops a call it gave up on: the connections that call holds are
    /// marked abandoned as they are dropped (a drop runs on the thread that does it, with no
    /// await in between).
    static ABANDONING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `call` for at most `limit`: `None` when the limit passed first. A call given up on is
/// dropped here, and every connection it held is closed rather than returned to its pool, so a
/// Postgres that stops answering without closing its connections cannot leave a pool of
/// connections that each wait for an answer that never comes.
pub async fn within<T>(limit: Duration, call: impl Future<Output = T>) -> Option<T> {
    let mut call = Box::pin(call);
    match tokio::time::timeout(limit, &mut call).await {
        Ok(result) => Some(result),
        Err(_) => {
            ABANDONING.with(|abandoning| abandoning.set(true));
            drop(call);
            ABANDONING.with(|abandoning| abandoning.set(false));
            None
        }
    }
}

/// A connection taken from a pool: back to it when dropped, unless [`within`] gave up on the
/// call that held it.
pub(super) struct Checkout<'a>(PooledConnection<'a, PgManager>);

impl std::ops::Deref for Checkout<'_> {
    type Target = PgConn;

    fn deref(&self) -> &PgConn {
        &self.0
    }
}

impl std::ops::DerefMut for Checkout<'_> {
    fn deref_mut(&mut self) -> &mut PgConn {
        &mut self.0
    }
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        if ABANDONING.with(std::cell::Cell::get) {
            self.0.abandoned = true;
        }
    }
}

/// A connection from a task's own pool (the lease's, the prober's), or, when that one cannot
/// be opened, an idle one of `fallback`, a request pool of the same server. A server at its
/// `max_connections` refuses new connections (SQLSTATE 53300) while this instance's request
/// pools hold connections it opened earlier: the lease and the probes then share those rather
/// than wait, not ready and without a worker id, for a place that other instances hold.
pub(super) async fn checkout_own<'a>(
    own: &'a PgPool,
    fallback: &'a PgPool,
) -> Result<Checkout<'a>, StorageError> {
    match checkout(own).await {
        Ok(conn) => Ok(conn),
        Err(error) => checkout(fallback).await.map_err(|_| error),
    }
}

pub(super) async fn checkout(pool: &PgPool) -> Result<Checkout<'_>, StorageError> {
    // The server refused a connection a moment ago and none is idle: waiting the acquire
    // timeout for a connect that is held back would only delay the same 503 (a create must be
    // refused within half a second while the primary is down).
    if pool.gate.is_closed() && pool.pool.state().idle_connections == 0 {
        return Err(StorageError::Unavailable(
            "the server refused a connection moments ago".to_owned(),
        ));
    }
    pool.pool
        .get()
        .await
        .map(Checkout)
        .map_err(|error| match error {
            RunError::User(error) => StorageError::from(error),
            RunError::TimedOut => StorageError::PoolTimeout,
        })
}

impl PgConn {
    pub(super) fn read(&self) -> Result<&ReadStatements, StorageError> {
        match &self.statements {
            Statements::Read(statements) => Ok(statements),
            _ => Err(wrong_role("a lookup")),
        }
    }

    pub(super) fn write(&self) -> Result<&WriteStatements, StorageError> {
        match &self.statements {
            Statements::Write(statements) => Ok(statements),
            _ => Err(wrong_role("a create")),
        }
    }

    pub(super) fn background(&self) -> Result<&BackgroundStatements, StorageError> {
        match &self.statements {
            Statements::Background(statements) => Ok(statements),
            _ => Err(wrong_role("a click flush")),
        }
    }
}

/// A bug: a call took a connection from a pool of another role.
fn wrong_role(what: &'static str) -> StorageError {
    StorageError::WrongRole(what)
}
