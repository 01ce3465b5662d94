//! The command line and the environment, parsed once, before anything binds, into typed
//! sections: one per area, each turning its variables into the final value the code that uses
//! it takes. Every problem of every section is collected and reported together
//! ([`ConfigErrors`], exit status 64). Nothing outside this module reads the environment.
//!
//! | section | variables |
//! | --- | --- |
//! | `server` | listeners, connection limits, redirects, proxies, CORS, access log, shutdown |
//! | `database` | Postgres primary and replicas, pools, timeouts, replica lag |
//! | `redis` | one node or a cluster, credentials, the tier's timeout and TTL |
//! | `cache` | moka's capacity and lifetimes |
//! | `limits` | per-client rate limits |
//! | `creates` | public base URL, code key, refused targets, group commit |
//! | `clicks` | the flush interval |
//! | `retention` | how long click rows and expired links are kept, how often the pruner runs |
//! | `lease` | worker id and its lease |
//! | `telemetry` | metrics, log format and filter |

mod cache;
mod cli;
mod clicks;
mod creates;
mod database;
mod lease;
mod limits;
mod parse;
mod redis;
mod retention;
mod server;
mod telemetry;

pub use cli::{
    ApikeyAction, ApikeyArgs, AuditArgs, Cli, Command, LinkArgs, MigrateArgs, SeedArgs, ServeArgs,
};
pub use creates::{CreateConfig, DEVELOPMENT_CODE_KEY, KeySource};
pub use database::DatabaseConfig;
pub use parse::{ConfigError, ConfigErrors};
pub use redis::RedisConfig;
pub use server::{ServerConfig, ShutdownSettings};
pub use telemetry::{TelemetryConfig, command_logs};

use clap::CommandFactory;

use crate::clicks::FlushSettings;
use crate::lease::LeaseConfig;
use crate::limits::LimitSettings;
use crate::links::{CacheSettings, RetentionSettings};

/// The validated configuration of `shortener serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    /// The Redis tier, when Redis is configured.
    pub redis: Option<RedisConfig>,
    pub cache: CacheSettings,
    pub limits: LimitSettings,
    pub creates: CreateConfig,
    pub clicks: FlushSettings,
    pub retention: RetentionSettings,
    pub lease: LeaseConfig,
    pub telemetry: TelemetryConfig,
}

impl ServeArgs {
    /// Every section parsed; every problem of all of them when any is refused.
    pub fn parse(&self) -> Result<ServeConfig, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let server = self.server.parse(&mut errors);
        let creates = self
            .creates
            .parse(server.as_ref().map(|server| server.listen), &mut errors);
        let database = self.database.parse(&mut errors);
        let redis = errors.take("REDIS_URL", self.redis.parse());
        let cache = self.cache.parse(&mut errors);
        let limits = self.limits.parse(&mut errors);
        let clicks = self.clicks.parse(&mut errors);
        let retention = self.retention.parse(&mut errors);
        let lease = self.lease.parse(&mut errors);
        let telemetry = self.telemetry.parse(&mut errors);
        if let (Some(creates), Some(database)) = (&creates, &database)
            && creates.writer.concurrency > database.pools.sizes.write as usize
        {
            errors.push(
                "SHORTENER_CREATE_WRITERS",
                "at most SHORTENER_DB_WRITE_POOL_SIZE (each batch holds a connection)",
            );
        }
        // A create waits for the writer as long as a request waits for a connection.
        let creates = creates.map(|mut creates| {
            if let Some(database) = &database {
                creates.writer.queue_wait = database.pools.acquire_timeout;
            }
            creates
        });
        let config = (|| {
            Some(ServeConfig {
                server: server?,
                database: database?,
                redis: redis?,
                cache: cache?,
                limits: limits?,
                creates: creates?,
                clicks: clicks?,
                retention: retention?,
                lease: lease?,
                telemetry: telemetry?,
            })
        })();
        match config {
            Some(config) if errors.is_empty() => Ok(config),
            _ => Err(errors),
        }
    }
}

/// Every environment variable `serve` reads, sorted: its options' names and `RUST_LOG`.
/// `shortener serve --list-config-names` prints them, so a deployment's files can be checked
/// against them.
pub fn config_names() -> Vec<String> {
    let command = Cli::command();
    let mut names: Vec<String> = command
        .find_subcommand("serve")
        .map(variables_of)
        .unwrap_or_default();
    names.push(telemetry::LOG_FILTER_VARIABLE.to_owned());
    names.sort();
    names.dedup();
    names
}

/// The environment variables `command`'s options read.
fn variables_of(command: &clap::Command) -> Vec<String> {
    command
        .get_arguments()
        .filter_map(|argument| argument.get_env())
        .map(|name| name.to_string_lossy().into_owned())
        .collect()
}

/// The `SHORTENER_*` names among `environment` that no option reads: a typo, or a setting
/// that was renamed (e.g. `SHORTENER_DB_POOL_SIZE`, now one size per pool). Warned about at
/// start-up. `SHORTENER_TEST_*` belongs to the test suite.
pub fn unknown_variables(environment: impl IntoIterator<Item = String>) -> Vec<String> {
    let command = Cli::command();
    let known: Vec<String> = command.get_subcommands().flat_map(variables_of).collect();
    environment
        .into_iter()
        .filter(|name| name.starts_with("SHORTENER_") && !name.starts_with("SHORTENER_TEST_"))
        .filter(|name| !known.contains(name))
        .collect()
}

/// [`unknown_variables`] of this process's environment.
pub fn unknown_variables_set() -> Vec<String> {
    unknown_variables(std::env::vars_os().filter_map(|(name, _)| name.into_string().ok()))
}

#[cfg(test)]
mod tests;
