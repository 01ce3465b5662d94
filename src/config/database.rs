//! Postgres: the primary (given directly or in a file), the read replicas, the pools of each
//! role and their limits, and the replication-lag bound. Every connection string is parsed
//! here, once, into the typed target (TLS settings and CA file included) that `storage` takes.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::parse::{self, ConfigErrors};
use crate::storage::{OWN_CONNECTIONS_PRIMARY, PgTarget, PoolSettings, PoolSizes};

/// How long opening one Postgres connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The primary's URL, given directly or in a file (a mounted secret).
#[derive(Debug, Args)]
pub struct PrimaryArgs {
    /// Postgres primary, e.g. postgres://user@host:5432/shortener.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// File holding the Postgres primary's URL (instead of DATABASE_URL).
    #[arg(long, env = "DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,
}

impl PrimaryArgs {
    /// The primary, parsed. Errors never repeat the URL (it may hold a password).
    pub fn target(&self) -> Result<PgTarget, String> {
        let url = parse::secret(
            self.database_url.clone(),
            self.database_url_file.clone(),
            ["DATABASE_URL", "DATABASE_URL_FILE"],
        )?
        .ok_or("is required (or DATABASE_URL_FILE)")?;
        PgTarget::parse(&url)
    }
}

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    #[command(flatten)]
    pub primary: PrimaryArgs,
    /// Comma-separated Postgres read replicas.
    #[arg(
        long,
        env = "DATABASE_REPLICA_URLS",
        hide_env_values = true,
        default_value = ""
    )]
    pub database_replica_urls: String,
    /// File holding the read replicas' URLs (instead of DATABASE_REPLICA_URLS): separated by
    /// commas or one a line, as a mounted Secret holds them.
    #[arg(long, env = "DATABASE_REPLICA_URLS_FILE")]
    pub database_replica_urls_file: Option<PathBuf>,
    /// Generated codes younger than this are read from the primary, not a replica: the
    /// longest replication lag (and clock difference between instances) to allow for.
    #[arg(long, env = "SHORTENER_REPLICA_LAG_BOUND", default_value = "5s")]
    pub replica_lag_bound: String,
    /// Connections to the primary for redirect and stats lookups; also the pool size per replica.
    #[arg(long, env = "SHORTENER_DB_READ_POOL_SIZE", default_value = "16")]
    pub db_read_pool_size: String,
    /// Connections to the primary for creates.
    #[arg(long, env = "SHORTENER_DB_WRITE_POOL_SIZE", default_value = "8")]
    pub db_write_pool_size: String,
    /// Connections to the primary for click flushes and pruning.
    #[arg(long, env = "SHORTENER_DB_BACKGROUND_POOL_SIZE", default_value = "2")]
    pub db_background_pool_size: String,
    /// Most connections this instance may open to one Postgres server: the pools above plus
    /// one for the worker-id lease and one for readiness probes. Larger pools are refused.
    #[arg(long, env = "SHORTENER_DB_CONNECTION_BUDGET", default_value = "32")]
    pub db_connection_budget: String,
    /// How long a request waits for a Postgres connection before it is answered 503.
    #[arg(long, env = "SHORTENER_DB_ACQUIRE_TIMEOUT", default_value = "250ms")]
    pub db_acquire_timeout: String,
    /// Server-side limit on every SQL statement.
    #[arg(long, env = "SHORTENER_DB_STATEMENT_TIMEOUT", default_value = "2s")]
    pub db_statement_timeout: String,
}

/// The databases and how to use them.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub primary: PgTarget,
    pub replicas: Vec<PgTarget>,
    pub pools: PoolSettings,
    /// Generated codes younger than this are read from the primary.
    pub replica_lag_bound: Duration,
}

impl DatabaseArgs {
    pub(super) fn parse(&self, errors: &mut ConfigErrors) -> Option<DatabaseConfig> {
        let primary = errors.take("DATABASE_URL", self.primary.target());
        let mut replicas = Vec::new();
        let replica_urls = errors.take(
            "DATABASE_REPLICA_URLS",
            parse::secret(
                Some(self.database_replica_urls.clone()),
                self.database_replica_urls_file.clone(),
                ["DATABASE_REPLICA_URLS", "DATABASE_REPLICA_URLS_FILE"],
            ),
        );
        let replica_urls = replica_urls
            .flatten()
            .unwrap_or_default()
            .replace('\n', ",");
        for url in parse::list(&replica_urls) {
            // Never the URL itself in the error: it may hold a password.
            if let Some(replica) = errors.take("DATABASE_REPLICA_URLS", PgTarget::parse(&url)) {
                replicas.push(replica);
            }
        }
        let replica_lag_bound = errors.take(
            "SHORTENER_REPLICA_LAG_BOUND",
            parse::duration(&self.replica_lag_bound),
        );
        let read = errors.take(
            "SHORTENER_DB_READ_POOL_SIZE",
            parse::positive::<u32>(&self.db_read_pool_size),
        );
        let write = errors.take(
            "SHORTENER_DB_WRITE_POOL_SIZE",
            parse::positive::<u32>(&self.db_write_pool_size),
        );
        let background = errors.take(
            "SHORTENER_DB_BACKGROUND_POOL_SIZE",
            parse::positive::<u32>(&self.db_background_pool_size),
        );
        let budget = errors.take(
            "SHORTENER_DB_CONNECTION_BUDGET",
            parse::positive::<u32>(&self.db_connection_budget),
        );
        let acquire_timeout = errors.take(
            "SHORTENER_DB_ACQUIRE_TIMEOUT",
            parse::duration(&self.db_acquire_timeout),
        );
        let statement_timeout = errors.take(
            "SHORTENER_DB_STATEMENT_TIMEOUT",
            parse::duration(&self.db_statement_timeout),
        );
        let sizes = PoolSizes {
            read: read?,
            write: write?,
            background: background?,
        };
        check_connection_budget(sizes, budget?, errors);
        Some(DatabaseConfig {
            primary: primary?,
            replicas,
            pools: PoolSettings {
                sizes,
                acquire_timeout: acquire_timeout?,
                connect_timeout: CONNECT_TIMEOUT,
                statement_timeout: statement_timeout?,
            },
            replica_lag_bound: replica_lag_bound?,
        })
    }
}

/// The pools must fit the budget on the primary: three pools and two connections of their own
/// (a replica needs fewer: the read pool and a probe connection).
fn check_connection_budget(sizes: PoolSizes, budget: u32, errors: &mut ConfigErrors) {
    let primary = sizes.primary_total();
    if primary > budget {
        errors.push(
            "SHORTENER_DB_CONNECTION_BUDGET",
            format!(
                "the pools need {primary} connections to the primary (read {} + write {} + \
                 background {} + {OWN_CONNECTIONS_PRIMARY} of their own), more than the budget \
                 of {budget}",
                sizes.read, sizes.write, sizes.background,
            ),
        );
    }
}
