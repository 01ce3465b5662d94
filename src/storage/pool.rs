//! bb8 pools of Postgres connections that carry their prepared statements with them.
//!
//! bb8's defaults (30 s to wait for a connection, a test query on every checkout) suit neither a
//! redirect path that must answer in milliseconds nor one that must shed load quickly; every
//! limit is explicit here. Statements are prepared once, when a connection is opened.

use std::str::FromStr;
use std::time::Duration;

use bb8::{ErrorSink, ManageConnection, Pool, PooledConnection, QueueStrategy, RunError};
use bb8_postgres::PostgresConnectionManager;
use tokio_postgres::{Client, Config, NoTls, Statement};

use super::StorageError;

/// A peer that vanished (host down, network cut) is noticed within about half a minute
/// instead of the kernel's default two hours.
const TCP_KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const TCP_KEEPALIVE_RETRIES: u32 = 3;
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// Limits of one pool.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_size: u32,
    /// How long a request waits for a connection before it is shed (answered 503).
    pub acquire_timeout: Duration,
    /// How long opening a connection may take.
    pub connect_timeout: Duration,
    /// Server-side cap on every statement.
    pub statement_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Primary,
    Replica,
}

pub(super) type PgPool = Pool<PgManager>;

/// A connection and the statements prepared on it.
pub struct PgConn {
    pub client: Client,
    pub(super) read: ReadStatements,
    /// Present on the primary only: a hot standby refuses writes anyway.
    pub(super) write: Option<WriteStatements>,
}

pub(super) struct ReadStatements {
    /// `(decoded id, code)`: the primary-key lookup, then the code index for an alias that
    /// merely looks like a generated code.
    pub find_by_id_then_code: Statement,
    pub find_by_code: Statement,
}

pub(super) struct WriteStatements {
    pub insert_link: Statement,
    pub idempotency_lock: Statement,
    pub idempotency_get: Statement,
    pub idempotency_delete: Statement,
    pub idempotency_insert: Statement,
    pub claim_batch: Statement,
    pub upsert_clicks: Statement,
    pub daily_clicks: Statement,
}

const LINK_COLUMNS: &str = "id, code, target_url, created_at, expires_at, disabled_at";

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
        })
    }
}

impl WriteStatements {
    async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
        Ok(WriteStatements {
            insert_link: client
                .prepare(
                    "INSERT INTO links (id, code, target_url, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (code) DO NOTHING",
                )
                .await?,
            idempotency_lock: client
                .prepare("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))")
                .await?,
            idempotency_get: client
                .prepare(
                    "SELECT fingerprint, status, body, created_at > now() - interval '24 hours' \
                     FROM idempotency_keys WHERE scope = $1 AND key = $2",
                )
                .await?,
            idempotency_delete: client
                .prepare("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2")
                .await?,
            idempotency_insert: client
                .prepare(
                    "INSERT INTO idempotency_keys (scope, key, fingerprint, status, body, link_id) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .await?,
            claim_batch: client
                .prepare("INSERT INTO stats_batches (batch_id) VALUES ($1) ON CONFLICT DO NOTHING")
                .await?,
            upsert_clicks: client
                .prepare(
                    "INSERT INTO link_clicks_daily (link_id, day, clicks, bot_clicks, last_click_at) \
                     SELECT * FROM UNNEST($1::bigint[], $2::date[], $3::bigint[], $4::bigint[], \
                                          $5::timestamptz[]) \
                     ON CONFLICT (link_id, day) DO UPDATE SET \
                       clicks = link_clicks_daily.clicks + EXCLUDED.clicks, \
                       bot_clicks = link_clicks_daily.bot_clicks + EXCLUDED.bot_clicks, \
                       last_click_at = GREATEST(link_clicks_daily.last_click_at, EXCLUDED.last_click_at)",
                )
                .await?,
            daily_clicks: client
                .prepare(
                    "SELECT day, clicks, bot_clicks, last_click_at FROM link_clicks_daily \
                     WHERE link_id = $1 ORDER BY day",
                )
                .await?,
        })
    }
}

pub struct PgManager {
    inner: PostgresConnectionManager<NoTls>,
    role: Role,
}

impl ManageConnection for PgManager {
    type Connection = PgConn;
    type Error = tokio_postgres::Error;

    async fn connect(&self) -> Result<PgConn, Self::Error> {
        let client = self.inner.connect().await?;
        let read = ReadStatements::prepare(&client).await?;
        let write = match self.role {
            Role::Primary => Some(WriteStatements::prepare(&client).await?),
            Role::Replica => None,
        };
        Ok(PgConn {
            client,
            read,
            write,
        })
    }

    async fn is_valid(&self, conn: &mut PgConn) -> Result<(), Self::Error> {
        conn.client.simple_query("").await.map(|_| ())
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client.is_closed()
    }
}

/// Logs connection failures that bb8 would otherwise swallow.
#[derive(Debug, Clone, Copy)]
struct LogErrors(Role);

impl ErrorSink<tokio_postgres::Error> for LogErrors {
    fn sink(&self, error: tokio_postgres::Error) {
        tracing::warn!(role = ?self.0, %error, "postgres connection failed");
    }

    fn boxed_clone(&self) -> Box<dyn ErrorSink<tokio_postgres::Error>> {
        Box::new(*self)
    }
}

pub(super) fn build(
    url: &str,
    role: Role,
    settings: &PoolSettings,
) -> Result<PgPool, StorageError> {
    let mut config = Config::from_str(url)
        .map_err(|_| StorageError::Unavailable("the database URL is malformed".into()))?;
    config
        .connect_timeout(settings.connect_timeout)
        .keepalives(true)
        .keepalives_idle(TCP_KEEPALIVE_IDLE)
        .keepalives_interval(TCP_KEEPALIVE_INTERVAL)
        .keepalives_retries(TCP_KEEPALIVE_RETRIES)
        .tcp_user_timeout(TCP_USER_TIMEOUT)
        .application_name("shortener")
        .options(format!(
            "-c statement_timeout={}",
            settings.statement_timeout.as_millis()
        ));
    let manager = PgManager {
        inner: PostgresConnectionManager::new(config, NoTls),
        role,
    };
    Ok(Pool::builder()
        .max_size(settings.max_size)
        .min_idle(Some(settings.max_size.min(2)))
        .connection_timeout(settings.acquire_timeout)
        .test_on_check_out(false)
        .queue_strategy(QueueStrategy::Lifo)
        .error_sink(Box::new(LogErrors(role)))
        .build_unchecked(manager))
}

pub(super) async fn checkout(
    pool: &PgPool,
) -> Result<PooledConnection<'_, PgManager>, StorageError> {
    pool.get().await.map_err(|error| match error {
        RunError::User(error) => StorageError::from(error),
        RunError::TimedOut => {
            StorageError::Unavailable("timed out waiting for a database connection".into())
        }
    })
}

impl PgConn {
    pub(super) fn write(&self) -> Result<&WriteStatements, StorageError> {
        self.write
            .as_ref()
            .ok_or_else(|| StorageError::Unavailable("write on a read-only connection".into()))
    }
}
