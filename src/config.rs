//! The command line and environment, parsed and validated once, before anything binds.
//!
//! clap reads every option as text (flag, else environment variable, else default); then
//! [`ServeArgs::validate`] checks all of them and reports every problem together.

use crate::telemetry::{AccessLog, LogFormat};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};
use http::StatusCode;

use crate::domain::{Blocklist, IpNet, TrustedProxies};
use crate::ids::{CodeKey, MAX_WORKER_ID, WorkerId};
use crate::lease::LeaseSettings;
use crate::limits::RateSpec;
use crate::links::{CacheSettings, WriterSettings};
use crate::storage::{PoolSettings, PoolSizes, RedisSettings, RedisTopology};

/// The code key used when none is configured. Development only: anyone can read it here.
pub const DEVELOPMENT_CODE_KEY: &str = "shortener development key: public, never use in production";
const MIN_CODE_KEY_LEN: usize = 16;

#[derive(Debug, Parser)]
#[command(
    name = "shortener",
    version,
    about = "A URL shortener built for high redirect volume"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: the main listener and the admin listener.
    Serve(Box<ServeArgs>),
    /// Apply the SQL migrations to DATABASE_URL, idempotently, then exit.
    Migrate(MigrateArgs),
    /// Take a link down (it answers 410) without SQL: sets its disabled_at. Instances that
    /// cached it stop serving it within SHORTENER_CACHE_TTL.
    Disable(LinkArgs),
    /// Serve a disabled link again: clears its disabled_at.
    Enable(LinkArgs),
    /// Load tests only: write N links straight into Postgres with COPY, their ids from a leased
    /// worker id and their codes from the code key, as the service would make them.
    #[command(hide = true)]
    Seed(SeedArgs),
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Secret of the code permutation: the one the service under test uses.
    #[arg(long, env = "SHORTENER_CODE_KEY", hide_env_values = true)]
    pub code_key: Option<String>,
    /// File holding the code key (instead of SHORTENER_CODE_KEY).
    #[arg(long, env = "SHORTENER_CODE_KEY_FILE")]
    pub code_key_file: Option<PathBuf>,
    /// How many links to write.
    #[arg(long)]
    pub links: u64,
    /// Write the generated codes to this file, one a line, in id order.
    #[arg(long)]
    pub codes_out: Option<PathBuf>,
}

impl SeedArgs {
    /// The database URL and the code key (`true` when it is the development key).
    pub fn resolve(self) -> Result<(String, CodeKey, bool), String> {
        let url = self.database.resolve()?;
        let (key, development) = read_code_key(self.code_key, self.code_key_file)?;
        Ok((url, key, development))
    }
}

#[derive(Debug, Args)]
pub struct LinkArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// When Redis is configured, the link's key is deleted there too.
    #[command(flatten)]
    pub redis: RedisArgs,
    /// The link's code (generated code or alias), as in its short URL.
    pub code: String,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// Where Redis is, and how the Redis tier behaves.
#[derive(Debug, Args)]
pub struct RedisArgs {
    /// One Redis node, redis://[user:password@]host:port (rediss:// for TLS). Not with
    /// REDIS_CLUSTER_NODES; neither means no Redis tier.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Comma-separated host:port seeds of a Redis Cluster. Not with REDIS_URL.
    #[arg(long, env = "REDIS_CLUSTER_NODES", default_value = "")]
    pub redis_cluster_nodes: String,
    /// Redis ACL user.
    #[arg(long, env = "REDIS_USERNAME")]
    pub redis_username: Option<String>,
    /// Redis password.
    #[arg(long, env = "REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,
    /// File holding the Redis password (instead of REDIS_PASSWORD).
    #[arg(long, env = "REDIS_PASSWORD_FILE")]
    pub redis_password_file: Option<PathBuf>,
    /// TLS to the Redis Cluster nodes (true or false; a single node uses rediss://).
    #[arg(long, env = "SHORTENER_REDIS_TLS", default_value = "false")]
    pub redis_tls: String,
    /// Longest a redirect waits on one Redis command.
    #[arg(long, env = "SHORTENER_REDIS_COMMAND_TIMEOUT", default_value = "50ms")]
    pub redis_command_timeout: String,
    /// How long a link stays in Redis after it was filled or created.
    #[arg(long, env = "SHORTENER_REDIS_TTL", default_value = "1h")]
    pub redis_ttl: String,
    /// Prefix of every Redis key, so deployments can share one Redis.
    #[arg(
        long,
        env = "SHORTENER_REDIS_KEY_PREFIX",
        default_value = "shortener:link:"
    )]
    pub redis_key_prefix: String,
}

/// The primary's URL, given directly or in a file (a mounted secret).
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// Postgres primary, e.g. postgres://user@host:5432/shortener.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// File holding the Postgres primary's URL (instead of DATABASE_URL).
    #[arg(long, env = "DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,
}

impl DatabaseArgs {
    pub fn resolve(self) -> Result<String, String> {
        let url = read_secret(
            self.database_url,
            self.database_url_file,
            ["DATABASE_URL", "DATABASE_URL_FILE"],
        )?
        .ok_or("is required (or DATABASE_URL_FILE)")?;
        parse_pg_url(&url)?;
        Ok(url)
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Print the name of every environment variable `serve` reads, one a line, and exit
    /// (deployment checks use it: a misspelt name is otherwise silently ignored).
    #[arg(long)]
    pub list_config_names: bool,
    /// Address of the main (public) listener.
    #[arg(long, env = "SHORTENER_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: String,
    /// Address of the admin listener (/metrics, /healthz, /readyz).
    #[arg(long, env = "SHORTENER_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: String,
    /// Base of every short_url; URLs pointing at its host are refused.
    #[arg(
        long,
        env = "SHORTENER_PUBLIC_BASE_URL",
        default_value = "http://localhost:8080"
    )]
    pub public_base_url: String,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Generated codes younger than this are read from the primary, not a replica: the
    /// longest replication lag (and clock difference between instances) to allow for.
    #[arg(long, env = "SHORTENER_REPLICA_LAG_BOUND", default_value = "5s")]
    pub replica_lag_bound: String,
    /// Comma-separated Postgres read replicas.
    #[arg(
        long,
        env = "DATABASE_REPLICA_URLS",
        hide_env_values = true,
        default_value = ""
    )]
    pub database_replica_urls: String,
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Fixed Snowflake worker id 0..=1023 (e.g. a StatefulSet ordinal); leased at start-up if unset.
    #[arg(long, env = "SHORTENER_WORKER_ID")]
    pub worker_id: Option<String>,
    /// Secret key of the code permutation (at least 16 characters).
    #[arg(long, env = "SHORTENER_CODE_KEY", hide_env_values = true)]
    pub code_key: Option<String>,
    /// File holding the secret key of the code permutation.
    #[arg(long, env = "SHORTENER_CODE_KEY_FILE")]
    pub code_key_file: Option<PathBuf>,
    /// Status of redirects: 301, 302, 307 or 308.
    #[arg(long, env = "SHORTENER_REDIRECT_STATUS", default_value = "302")]
    pub redirect_status: String,
    /// max-age, in seconds, of the `Cache-Control: private` header on redirects.
    #[arg(long, env = "SHORTENER_REDIRECT_MAX_AGE", default_value = "0")]
    pub redirect_max_age: String,
    /// Comma-separated CIDRs whose X-Forwarded-For is believed.
    #[arg(long, env = "SHORTENER_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,
    /// Comma-separated origins (`https://app.example.com`) whose browser pages may call the
    /// API (creates and stats); none by default.
    #[arg(long, env = "SHORTENER_CORS_ORIGINS", default_value = "")]
    pub cors_origins: String,
    /// How often click tallies are written to Postgres, e.g. 1s or 250ms.
    #[arg(long, env = "SHORTENER_STATS_FLUSH_INTERVAL", default_value = "1s")]
    pub stats_flush_interval: String,
    /// File of blocked hosts, one a line (subdomains are blocked too).
    #[arg(long, env = "SHORTENER_BLOCKLIST_FILE")]
    pub blocklist_file: Option<PathBuf>,
    /// Deadline for draining requests and flushing after SIGTERM.
    #[arg(long, env = "SHORTENER_SHUTDOWN_GRACE", default_value = "25s")]
    pub shutdown_grace: String,
    /// After SIGTERM, how long to keep serving new requests while readiness already answers
    /// 503, so load balancers stop sending before the listener closes (Kubernetes: ~5s).
    #[arg(long, env = "SHORTENER_SHUTDOWN_DELAY", default_value = "0s")]
    pub shutdown_delay: String,
    /// Time a client has to send request headers; also closes keep-alive connections idle this long.
    #[arg(long, env = "SHORTENER_HEADER_READ_TIMEOUT", default_value = "10s")]
    pub header_read_timeout: String,
    /// Refuse targets at literal private, loopback and link-local addresses (169.254.169.254
    /// included) and port 0: on for a public instance, off for an intranet shortener.
    #[arg(long, env = "SHORTENER_BLOCK_PRIVATE_TARGETS", default_value = "false")]
    pub block_private_targets: String,
    /// Time a client has to send a whole request body, once its headers arrived: 408 after it.
    #[arg(long, env = "SHORTENER_BODY_READ_TIMEOUT", default_value = "5s")]
    pub body_read_timeout: String,
    /// Creates per client (IP, or IPv6 /64): `N/s,burst=M` (also /m, /h), or `off`.
    #[arg(
        long,
        env = "SHORTENER_RATE_LIMIT_CREATE",
        default_value = "20/s,burst=40"
    )]
    pub rate_limit_create: String,
    /// Redirects per client, 404s included; kept in this instance's memory.
    #[arg(
        long,
        env = "SHORTENER_RATE_LIMIT_REDIRECT",
        default_value = "1000/s,burst=2000"
    )]
    pub rate_limit_redirect: String,
    /// Stats requests per client.
    #[arg(
        long,
        env = "SHORTENER_RATE_LIMIT_STATS",
        default_value = "50/s,burst=100"
    )]
    pub rate_limit_stats: String,
    /// Most clients each limit keeps state for; an evicted client starts with a full burst.
    #[arg(long, env = "SHORTENER_RATE_LIMIT_MAX_KEYS", default_value = "100000")]
    pub rate_limit_max_keys: String,
    /// Connections the kernel queues for accept on each listener (capped by net.core.somaxconn).
    #[arg(long, env = "SHORTENER_LISTEN_BACKLOG", default_value = "4096")]
    pub listen_backlog: String,
    /// Most connections open at once from one TCP peer (an IPv6 peer: its /64); more are closed
    /// at once. Never applied to SHORTENER_TRUSTED_PROXIES.
    #[arg(
        long,
        env = "SHORTENER_MAX_CONNECTIONS_PER_PEER",
        default_value = "256"
    )]
    pub max_connections_per_peer: String,
    /// Most open connections on the main listener; further clients wait in the accept backlog.
    #[arg(long, env = "SHORTENER_MAX_CONNECTIONS", default_value = "10000")]
    pub max_connections: String,
    /// Connections to the primary for redirect and stats lookups; also the pool size per replica.
    #[arg(long, env = "SHORTENER_DB_READ_POOL_SIZE", default_value = "16")]
    pub db_read_pool_size: String,
    /// Connections to the primary for creates.
    #[arg(long, env = "SHORTENER_DB_WRITE_POOL_SIZE", default_value = "8")]
    pub db_write_pool_size: String,
    /// How long a worker-id lease lives without renewal.
    #[arg(long, env = "SHORTENER_LEASE_TTL", default_value = "30s")]
    pub lease_ttl: String,
    /// How often the worker-id lease is renewed.
    #[arg(long, env = "SHORTENER_LEASE_RENEW_EVERY", default_value = "10s")]
    pub lease_renew_every: String,
    /// Ids stop this long before the lease could expire (clock drift, a late answer).
    #[arg(long, env = "SHORTENER_LEASE_SAFETY_MARGIN", default_value = "5s")]
    pub lease_safety_margin: String,
    /// Most creates written in one transaction (group commit); 1 writes each on its own.
    #[arg(long, env = "SHORTENER_CREATE_BATCH_MAX", default_value = "256")]
    pub create_batch_max: String,
    /// How long a batch that found other creates waiting waits for more (never when the queue
    /// was idle); 0s writes what is queued at once.
    #[arg(long, env = "SHORTENER_CREATE_LINGER", default_value = "0s")]
    pub create_linger: String,
    /// Batches written at once, each on a write-pool connection (at most the write pool's size).
    #[arg(long, env = "SHORTENER_CREATE_WRITERS", default_value = "1")]
    pub create_writers: String,
    /// Most creates waiting to be written; more are answered 503 at once.
    #[arg(long, env = "SHORTENER_CREATE_QUEUE", default_value = "4096")]
    pub create_queue: String,
    /// Connections to the primary for click flushes and pruning.
    #[arg(long, env = "SHORTENER_DB_BACKGROUND_POOL_SIZE", default_value = "2")]
    pub db_background_pool_size: String,
    /// Most connections this instance may open to one Postgres server: the pools above plus
    /// one for the worker-id lease and one for readiness probes. Larger pools are refused.
    #[arg(long, env = "SHORTENER_DB_CONNECTION_BUDGET", default_value = "32")]
    pub db_connection_budget: String,
    /// Most links held in this instance's memory.
    #[arg(long, env = "SHORTENER_CACHE_CAPACITY", default_value = "1000000")]
    pub cache_capacity: String,
    /// Longest a link is served from memory before it is read again: bounds how long a link
    /// disabled in the database keeps redirecting on an instance that cached it.
    #[arg(long, env = "SHORTENER_CACHE_TTL", default_value = "60s")]
    pub cache_ttl: String,
    /// Longest an unknown code is remembered as unknown (negative cache; a tenth of the capacity).
    #[arg(long, env = "SHORTENER_NEGATIVE_TTL", default_value = "1s")]
    pub negative_ttl: String,
    /// How long a request waits for a Postgres connection before it is answered 503.
    #[arg(long, env = "SHORTENER_DB_ACQUIRE_TIMEOUT", default_value = "250ms")]
    pub db_acquire_timeout: String,
    /// Server-side limit on every SQL statement.
    #[arg(long, env = "SHORTENER_DB_STATEMENT_TIMEOUT", default_value = "2s")]
    pub db_statement_timeout: String,
    /// `on`: record Prometheus metrics and serve them on the admin listener's /metrics;
    /// `off`: record nothing (/metrics answers 404).
    #[arg(long, env = "SHORTENER_METRICS", default_value = "on")]
    pub metrics: String,
    /// Log lines as `json` or `text`; `auto`: text on a terminal, JSON otherwise.
    #[arg(long, env = "SHORTENER_LOG_FORMAT", default_value = "auto")]
    pub log_format: String,
    /// One log line per request of the main listener: `off`, `errors` (5xx answers) or `all`.
    #[arg(long, env = "SHORTENER_ACCESS_LOG", default_value = "off")]
    pub access_log: String,
    /// With `SHORTENER_ACCESS_LOG=all`: the share of answers below 500 that get a line
    /// (0 < share ≤ 1); every 5xx gets one.
    #[arg(long, env = "SHORTENER_ACCESS_LOG_SAMPLE", default_value = "1")]
    pub access_log_sample: String,
}

/// The validated configuration of `shortener serve`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Whether metrics are recorded and served.
    pub metrics: bool,
    pub log_format: LogFormat,
    pub access_log: AccessLog,
    /// Share of answers below 500 logged when the access log is `all`.
    pub access_log_sample: f64,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// Without a trailing slash.
    pub public_base_url: String,
    pub public_host: String,
    /// The public base URL's port (its scheme's default when it names none).
    pub public_port: u16,
    /// Refuse targets at literal private, loopback and link-local addresses, and port 0.
    pub block_private_targets: bool,
    pub database_url: String,
    pub replica_urls: Vec<String>,
    pub replica_lag_bound: Duration,
    pub worker_id: Option<WorkerId>,
    pub code_key: CodeKey,
    pub code_key_is_development: bool,
    pub redirect_status: StatusCode,
    pub redirect_max_age: u32,
    pub trusted_proxies: TrustedProxies,
    /// Origins allowed to call the API from a browser (exact `scheme://host[:port]`).
    pub cors_origins: Vec<String>,
    pub stats_flush_interval: Duration,
    pub blocklist: Blocklist,
    /// Where the blocklist was read from: read again on SIGHUP.
    pub blocklist_file: Option<PathBuf>,
    pub shutdown_grace: Duration,
    pub shutdown_delay: Duration,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub rate_limits: RateLimits,
    pub max_connections: usize,
    pub max_connections_per_peer: usize,
    pub listen_backlog: u32,
    pub pool: PoolSettings,
    /// Most connections to one Postgres server (checked against `pool`).
    pub db_connection_budget: u32,
    pub cache: CacheSettings,
    /// The worker-id lease.
    pub lease: LeaseSettings,
    /// Group commit of creates.
    pub writer: WriterSettings,
    /// The Redis tier, when Redis is configured.
    pub redis: Option<RedisConfig>,
}

/// Per-client rate limits by route (`None`: off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub create: Option<RateSpec>,
    pub redirect: Option<RateSpec>,
    pub stats: Option<RateSpec>,
    /// Clients each limit keeps state for.
    pub max_keys: u64,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            create: None,
            redirect: None,
            stats: None,
            max_keys: 100_000,
        }
    }
}

/// The Redis tier's settings.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub settings: RedisSettings,
    /// Lifetime of a link in Redis.
    pub ttl: Duration,
}

/// Read by the log filter (`telemetry::init`), not by an option.
const LOG_FILTER_VARIABLE: &str = "RUST_LOG";

/// Every environment variable `serve` reads, sorted: its options' names and `RUST_LOG`.
/// `shortener serve --list-config-names` prints them, so a deployment's files can be checked
/// against them.
pub fn config_names() -> Vec<String> {
    let command = Cli::command();
    let mut names: Vec<String> = command
        .find_subcommand("serve")
        .map(variables_of)
        .unwrap_or_default();
    names.push(LOG_FILTER_VARIABLE.to_owned());
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

/// Every configuration problem found, one a line.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "invalid configuration ({} problems):", self.0.len())?;
        for error in &self.0 {
            writeln!(f, "  - {error}")?;
        }
        Ok(())
    }
}

impl ServeArgs {
    pub fn validate(self) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let mut check = |name: &str, result: Result<(), String>| {
            if let Err(error) = result {
                errors.push(format!("{name}: {error}"));
            }
        };
        let mut redis = None;
        check(
            "REDIS_URL",
            parse_redis(&self.redis).map(|config| redis = config),
        );
        let mut listen = None;
        check(
            "SHORTENER_LISTEN",
            parse_into(&self.listen, &mut listen, parse_addr),
        );
        let mut admin_listen = None;
        check(
            "SHORTENER_ADMIN_LISTEN",
            parse_into(&self.admin_listen, &mut admin_listen, parse_addr),
        );
        let mut public = None;
        check(
            "SHORTENER_PUBLIC_BASE_URL",
            parse_into(&self.public_base_url, &mut public, parse_base_url),
        );
        let mut database_url = None;
        check(
            "DATABASE_URL",
            self.database.resolve().map(|url| database_url = Some(url)),
        );
        let replica_urls = split_list(&self.database_replica_urls);
        for url in &replica_urls {
            check("DATABASE_REPLICA_URLS", parse_pg_url(url));
        }
        let mut replica_lag_bound = None;
        check(
            "SHORTENER_REPLICA_LAG_BOUND",
            parse_into(
                &self.replica_lag_bound,
                &mut replica_lag_bound,
                parse_duration,
            ),
        );
        let mut worker_id = None;
        if let Some(raw) = &self.worker_id {
            check(
                "SHORTENER_WORKER_ID",
                parse_into(raw, &mut worker_id, parse_worker_id),
            );
        }
        let mut code_key = None;
        check(
            "SHORTENER_CODE_KEY",
            read_code_key(self.code_key, self.code_key_file).map(|key| code_key = Some(key)),
        );
        let mut redirect_status = None;
        check(
            "SHORTENER_REDIRECT_STATUS",
            parse_into(
                &self.redirect_status,
                &mut redirect_status,
                parse_redirect_status,
            ),
        );
        let mut redirect_max_age = None;
        check(
            "SHORTENER_REDIRECT_MAX_AGE",
            parse_into(&self.redirect_max_age, &mut redirect_max_age, |raw| {
                raw.parse::<u32>().map_err(|e| e.to_string())
            }),
        );
        let mut proxies = Vec::new();
        for raw in split_list(&self.trusted_proxies) {
            check(
                "SHORTENER_TRUSTED_PROXIES",
                raw.parse::<IpNet>().map(|net| proxies.push(net)),
            );
        }
        let mut cors_origins = Vec::new();
        for raw in split_list(&self.cors_origins) {
            check(
                "SHORTENER_CORS_ORIGINS",
                parse_origin(&raw).map(|origin| cors_origins.push(origin)),
            );
        }
        let mut flush_interval = None;
        check(
            "SHORTENER_STATS_FLUSH_INTERVAL",
            parse_into(
                &self.stats_flush_interval,
                &mut flush_interval,
                parse_duration,
            ),
        );
        let mut blocklist = Some(Blocklist::default());
        if let Some(path) = &self.blocklist_file {
            check(
                "SHORTENER_BLOCKLIST_FILE",
                read_blocklist(path).map(|list| blocklist = Some(list)),
            );
        }
        let mut grace = None;
        check(
            "SHORTENER_SHUTDOWN_GRACE",
            parse_into(&self.shutdown_grace, &mut grace, parse_duration),
        );
        let mut shutdown_delay = None;
        check(
            "SHORTENER_SHUTDOWN_DELAY",
            parse_into(
                &self.shutdown_delay,
                &mut shutdown_delay,
                parse_duration_or_zero,
            ),
        );
        let mut header_timeout = None;
        check(
            "SHORTENER_HEADER_READ_TIMEOUT",
            parse_into(
                &self.header_read_timeout,
                &mut header_timeout,
                parse_duration,
            ),
        );
        let mut max_connections = None;
        check(
            "SHORTENER_MAX_CONNECTIONS",
            parse_into(
                &self.max_connections,
                &mut max_connections,
                parse_positive::<usize>,
            ),
        );
        let mut read_pool = None;
        check(
            "SHORTENER_DB_READ_POOL_SIZE",
            parse_into(
                &self.db_read_pool_size,
                &mut read_pool,
                parse_positive::<u32>,
            ),
        );
        let mut write_pool = None;
        check(
            "SHORTENER_DB_WRITE_POOL_SIZE",
            parse_into(
                &self.db_write_pool_size,
                &mut write_pool,
                parse_positive::<u32>,
            ),
        );
        let mut background_pool = None;
        check(
            "SHORTENER_DB_BACKGROUND_POOL_SIZE",
            parse_into(
                &self.db_background_pool_size,
                &mut background_pool,
                parse_positive::<u32>,
            ),
        );
        let mut limits = RateLimits::default();
        for (name, raw, slot) in [
            (
                "SHORTENER_RATE_LIMIT_CREATE",
                &self.rate_limit_create,
                &mut limits.create,
            ),
            (
                "SHORTENER_RATE_LIMIT_REDIRECT",
                &self.rate_limit_redirect,
                &mut limits.redirect,
            ),
            (
                "SHORTENER_RATE_LIMIT_STATS",
                &self.rate_limit_stats,
                &mut limits.stats,
            ),
        ] {
            check(name, parse_limit(raw).map(|spec| *slot = spec));
        }
        check(
            "SHORTENER_RATE_LIMIT_MAX_KEYS",
            parse_positive::<u64>(&self.rate_limit_max_keys).map(|keys| limits.max_keys = keys),
        );
        let mut backlog = None;
        check(
            "SHORTENER_LISTEN_BACKLOG",
            parse_into(&self.listen_backlog, &mut backlog, parse_positive::<u32>),
        );
        let mut per_peer = None;
        check(
            "SHORTENER_MAX_CONNECTIONS_PER_PEER",
            parse_into(
                &self.max_connections_per_peer,
                &mut per_peer,
                parse_positive::<usize>,
            ),
        );
        let mut metrics = None;
        check(
            "SHORTENER_METRICS",
            parse_into(&self.metrics, &mut metrics, parse_bool),
        );
        let mut log_format = None;
        check(
            "SHORTENER_LOG_FORMAT",
            parse_into(&self.log_format, &mut log_format, LogFormat::parse),
        );
        let mut access_log = None;
        check(
            "SHORTENER_ACCESS_LOG",
            parse_into(&self.access_log, &mut access_log, AccessLog::parse),
        );
        let mut access_log_sample = None;
        check(
            "SHORTENER_ACCESS_LOG_SAMPLE",
            parse_into(
                &self.access_log_sample,
                &mut access_log_sample,
                |raw| match raw.parse::<f64>() {
                    Ok(share) if share > 0.0 && share <= 1.0 => Ok(share),
                    _ => Err(format!("'{raw}' is not a share above 0 and at most 1")),
                },
            ),
        );
        let mut block_private = None;
        check(
            "SHORTENER_BLOCK_PRIVATE_TARGETS",
            parse_into(&self.block_private_targets, &mut block_private, parse_bool),
        );
        let mut body_timeout = None;
        check(
            "SHORTENER_BODY_READ_TIMEOUT",
            parse_into(&self.body_read_timeout, &mut body_timeout, parse_duration),
        );
        let mut lease_ttl = None;
        check(
            "SHORTENER_LEASE_TTL",
            parse_into(&self.lease_ttl, &mut lease_ttl, parse_duration),
        );
        let mut renew_every = None;
        check(
            "SHORTENER_LEASE_RENEW_EVERY",
            parse_into(&self.lease_renew_every, &mut renew_every, parse_duration),
        );
        let mut safety_margin = None;
        check(
            "SHORTENER_LEASE_SAFETY_MARGIN",
            parse_into(
                &self.lease_safety_margin,
                &mut safety_margin,
                parse_duration,
            ),
        );
        let lease = match (lease_ttl, renew_every, safety_margin) {
            (Some(ttl), Some(renew_every), Some(safety_margin)) => Some(LeaseSettings {
                ttl,
                renew_every,
                safety_margin,
            }),
            _ => None,
        };
        let mut batch_max = None;
        check(
            "SHORTENER_CREATE_BATCH_MAX",
            parse_into(
                &self.create_batch_max,
                &mut batch_max,
                parse_positive::<usize>,
            ),
        );
        let mut linger = None;
        check(
            "SHORTENER_CREATE_LINGER",
            parse_into(&self.create_linger, &mut linger, parse_duration_or_zero),
        );
        let mut writers = None;
        check(
            "SHORTENER_CREATE_WRITERS",
            parse_into(&self.create_writers, &mut writers, parse_positive::<usize>),
        );
        let mut create_queue = None;
        check(
            "SHORTENER_CREATE_QUEUE",
            parse_into(
                &self.create_queue,
                &mut create_queue,
                parse_positive::<usize>,
            ),
        );
        let mut budget = None;
        check(
            "SHORTENER_DB_CONNECTION_BUDGET",
            parse_into(
                &self.db_connection_budget,
                &mut budget,
                parse_positive::<u32>,
            ),
        );
        let mut cache_capacity = None;
        check(
            "SHORTENER_CACHE_CAPACITY",
            parse_into(
                &self.cache_capacity,
                &mut cache_capacity,
                parse_positive::<u64>,
            ),
        );
        let mut cache_ttl = None;
        check(
            "SHORTENER_CACHE_TTL",
            parse_into(&self.cache_ttl, &mut cache_ttl, parse_duration),
        );
        let mut negative_ttl = None;
        check(
            "SHORTENER_NEGATIVE_TTL",
            parse_into(&self.negative_ttl, &mut negative_ttl, parse_duration),
        );
        let mut acquire_timeout = None;
        check(
            "SHORTENER_DB_ACQUIRE_TIMEOUT",
            parse_into(
                &self.db_acquire_timeout,
                &mut acquire_timeout,
                parse_duration,
            ),
        );
        let mut statement_timeout = None;
        check(
            "SHORTENER_DB_STATEMENT_TIMEOUT",
            parse_into(
                &self.db_statement_timeout,
                &mut statement_timeout,
                parse_duration,
            ),
        );

        if let (Some(writers), Some(write_pool)) = (writers, write_pool)
            && writers > write_pool as usize
        {
            errors.push(
                "SHORTENER_CREATE_WRITERS: at most SHORTENER_DB_WRITE_POOL_SIZE (each batch holds a connection)"
                    .into(),
            );
        }
        if let Some(Err(error)) = lease.map(|lease| lease.check()) {
            errors.push(error);
        }
        if listen.is_some() && listen == admin_listen {
            errors.push("SHORTENER_ADMIN_LISTEN: must differ from SHORTENER_LISTEN".into());
        }
        if let (Some(grace), Some(delay)) = (grace, shutdown_delay)
            && delay >= grace
        {
            errors.push(
                "SHORTENER_SHUTDOWN_DELAY: must be shorter than SHORTENER_SHUTDOWN_GRACE".into(),
            );
        }
        let sizes = match (read_pool, write_pool, background_pool) {
            (Some(read), Some(write), Some(background)) => Some(PoolSizes {
                read,
                write,
                background,
            }),
            _ => None,
        };
        if let (Some(sizes), Some(budget)) = (sizes, budget) {
            errors.extend(check_connection_budget(sizes, budget));
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let (public_base_url, public_host, public_port) = public.expect("validated");
        let (code_key, code_key_is_development) = code_key.expect("validated");
        Ok(Config {
            metrics: metrics.expect("validated"),
            log_format: log_format.expect("validated"),
            access_log: access_log.expect("validated"),
            access_log_sample: access_log_sample.expect("validated"),
            listen: listen.expect("validated"),
            admin_listen: admin_listen.expect("validated"),
            public_base_url,
            public_host,
            public_port,
            block_private_targets: block_private.expect("validated"),
            database_url: database_url.expect("validated"),
            replica_urls,
            replica_lag_bound: replica_lag_bound.expect("validated"),
            worker_id,
            code_key,
            code_key_is_development,
            redirect_status: redirect_status.expect("validated"),
            redirect_max_age: redirect_max_age.expect("validated"),
            trusted_proxies: TrustedProxies::new(proxies),
            cors_origins,
            stats_flush_interval: flush_interval.expect("validated"),
            blocklist: blocklist.expect("validated"),
            blocklist_file: self.blocklist_file.clone(),
            shutdown_grace: grace.expect("validated"),
            shutdown_delay: shutdown_delay.expect("validated"),
            header_read_timeout: header_timeout.expect("validated"),
            body_read_timeout: body_timeout.expect("validated"),
            rate_limits: limits,
            max_connections_per_peer: per_peer.expect("validated"),
            listen_backlog: backlog.expect("validated"),
            max_connections: max_connections.expect("validated"),
            pool: PoolSettings {
                sizes: sizes.expect("validated"),
                acquire_timeout: acquire_timeout.expect("validated"),
                connect_timeout: Duration::from_secs(2),
                statement_timeout: statement_timeout.expect("validated"),
            },
            db_connection_budget: budget.expect("validated"),
            lease: lease.expect("validated"),
            writer: WriterSettings {
                batch_max: batch_max.expect("validated"),
                linger: linger.expect("validated"),
                queue: create_queue.expect("validated"),
                concurrency: writers.expect("validated"),
            },
            redis,
            cache: CacheSettings {
                capacity: cache_capacity.expect("validated"),
                ttl: cache_ttl.expect("validated"),
                negative_ttl: negative_ttl.expect("validated"),
            },
        })
    }
}

/// The pools must fit the budget on the primary: three pools and two connections of their own
/// (a replica needs fewer: the read pool and a probe connection).
fn check_connection_budget(sizes: PoolSizes, budget: u32) -> Option<String> {
    let primary = sizes.primary_total();
    (primary > budget).then(|| {
        format!(
            "SHORTENER_DB_CONNECTION_BUDGET: the pools need {primary} connections to the primary \
             (read {} + write {} + background {} + {} of their own), more than the budget of {budget}",
            sizes.read,
            sizes.write,
            sizes.background,
            crate::storage::OWN_CONNECTIONS_PRIMARY,
        )
    })
}

fn parse_into<T>(
    raw: &str,
    slot: &mut Option<T>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<(), String> {
    *slot = Some(parse(raw.trim())?);
    Ok(())
}

fn split_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(String::from)
        .collect()
}

fn parse_addr(raw: &str) -> Result<SocketAddr, String> {
    raw.parse()
        .map_err(|_| format!("'{raw}' is not a socket address such as 0.0.0.0:8080"))
}

fn parse_base_url(raw: &str) -> Result<(String, String, u16), String> {
    let url = url::Url::parse(raw).map_err(|e| format!("'{raw}' is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(format!(
            "'{raw}' must be an http(s) URL without query or fragment"
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| format!("'{raw}' has no host"))?
        .to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    Ok((url.as_str().trim_end_matches('/').to_owned(), host, port))
}

/// Checks a Postgres URL (its TLS settings and CA file too) without echoing it: it may hold a
/// password.
fn parse_pg_url(raw: &str) -> Result<(), String> {
    crate::storage::check_database_url(raw)
}

/// An origin as browsers send it: `scheme://host[:port]`, no path, no trailing slash.
fn parse_origin(raw: &str) -> Result<String, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("'{raw}' is not an origin: {e}"))?;
    let origin = url.origin().ascii_serialization();
    if !matches!(url.scheme(), "http" | "https")
        || url.path() != "/"
        || raw.trim_end_matches('/') != origin
    {
        return Err(format!(
            "'{raw}' is not an origin like https://app.example.com"
        ));
    }
    Ok(origin)
}

fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw.trim() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("'{raw}' is not true or false")),
    }
}

fn parse_limit(raw: &str) -> Result<Option<RateSpec>, String> {
    if raw.trim().eq_ignore_ascii_case("off") {
        Ok(None)
    } else {
        raw.parse().map(Some)
    }
}

fn parse_worker_id(raw: &str) -> Result<WorkerId, String> {
    raw.parse::<u16>()
        .ok()
        .and_then(WorkerId::new)
        .ok_or_else(|| format!("'{raw}' is not a worker id in 0..={MAX_WORKER_ID}"))
}

fn parse_redirect_status(raw: &str) -> Result<StatusCode, String> {
    match raw {
        "301" | "302" | "307" | "308" => Ok(StatusCode::from_bytes(raw.as_bytes()).expect("valid")),
        _ => Err(format!("'{raw}' is not one of 301, 302, 307, 308")),
    }
}

fn parse_positive<T: std::str::FromStr + PartialOrd + Default>(raw: &str) -> Result<T, String> {
    match raw.parse::<T>() {
        Ok(value) if value > T::default() => Ok(value),
        _ => Err(format!("'{raw}' is not a positive whole number")),
    }
}

/// Longest duration any option takes: larger values are surely typos, and would overflow
/// deadline arithmetic.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Parses `250ms`, `1s`, `2m`, `1h`: a positive whole number and a unit, at most 24 hours.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let duration = parse_duration_or_zero(raw)?;
    if duration.is_zero() {
        return Err(format!("'{raw}' must be longer than zero"));
    }
    Ok(duration)
}

/// Like [`parse_duration`], but `0s` is allowed.
pub fn parse_duration_or_zero(raw: &str) -> Result<Duration, String> {
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let error = || format!("'{raw}' is not a duration such as 250ms, 1s, 2m or 1h");
    let number: u64 = number.parse().map_err(|_| error())?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(error()),
    };
    let duration = number
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .filter(|duration| *duration <= MAX_DURATION)
        .ok_or_else(|| format!("'{raw}' is longer than 24h"))?;
    Ok(duration)
}

/// The Redis tier: REDIS_URL or REDIS_CLUSTER_NODES (not both), with its settings.
pub fn parse_redis(args: &RedisArgs) -> Result<Option<RedisConfig>, String> {
    let url = args.redis_url.clone().filter(|url| !url.is_empty());
    let seeds = split_list(&args.redis_cluster_nodes);
    let topology = match (url, seeds.is_empty()) {
        (Some(_), false) => return Err("set REDIS_URL or REDIS_CLUSTER_NODES, not both".into()),
        (None, true) => return Ok(None),
        (Some(url), true) => {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err("must be a redis:// or rediss:// URL (value not shown)".into());
            }
            RedisTopology::Single(url)
        }
        (None, false) => RedisTopology::Cluster(
            seeds
                .iter()
                .map(|seed| {
                    seed.rsplit_once(':')
                        .and_then(|(host, port)| Some((host.to_owned(), port.parse().ok()?)))
                        .ok_or_else(|| format!("REDIS_CLUSTER_NODES: '{seed}' is not host:port"))
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    let password = read_secret(
        args.redis_password.clone(),
        args.redis_password_file.clone(),
        ["REDIS_PASSWORD", "REDIS_PASSWORD_FILE"],
    )?;
    let cluster_tls = match args.redis_tls.trim() {
        "true" => true,
        "false" => false,
        other => {
            return Err(format!(
                "SHORTENER_REDIS_TLS: '{other}' is not true or false"
            ));
        }
    };
    let command_timeout = parse_duration(args.redis_command_timeout.trim())
        .map_err(|e| format!("SHORTENER_REDIS_COMMAND_TIMEOUT: {e}"))?;
    let ttl =
        parse_duration(args.redis_ttl.trim()).map_err(|e| format!("SHORTENER_REDIS_TTL: {e}"))?;
    Ok(Some(RedisConfig {
        settings: RedisSettings {
            topology,
            username: args.redis_username.clone().filter(|u| !u.is_empty()),
            password,
            cluster_tls,
            command_timeout,
            key_prefix: args.redis_key_prefix.clone(),
        },
        ttl,
    }))
}

/// A secret given directly or in a file (a mounted secret), one of the two: `names` are the
/// variable and its `_FILE` variant. The file's trailing line break is dropped. Start-up only.
fn read_secret(
    value: Option<String>,
    file: Option<PathBuf>,
    [name, file_name]: [&str; 2],
) -> Result<Option<String>, String> {
    match (value.filter(|value| !value.is_empty()), file) {
        (Some(_), Some(_)) => Err(format!("set {name} or {file_name}, not both")),
        (Some(value), None) => Ok(Some(value)),
        (None, Some(path)) => std::fs::read_to_string(&path)
            .map(|text| Some(text.trim_end_matches(['\r', '\n']).to_owned()))
            .map_err(|e| format!("cannot read {file_name} {}: {e}", path.display())),
        (None, None) => Ok(None),
    }
}

/// Start-up only: reading these small files synchronously happens before the runtime serves.
fn read_code_key(key: Option<String>, file: Option<PathBuf>) -> Result<(CodeKey, bool), String> {
    let names = ["SHORTENER_CODE_KEY", "SHORTENER_CODE_KEY_FILE"];
    let Some(secret) = read_secret(key, file, names)? else {
        return Ok((CodeKey::derive(DEVELOPMENT_CODE_KEY.as_bytes()), true));
    };
    if secret.len() < MIN_CODE_KEY_LEN {
        return Err(format!(
            "the code key must be at least {MIN_CODE_KEY_LEN} characters (value not shown)"
        ));
    }
    Ok((CodeKey::derive(secret.as_bytes()), false))
}

/// Reads and parses a blocklist file (at start-up, and on SIGHUP).
pub fn read_blocklist(path: &std::path::Path) -> Result<Blocklist, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Blocklist::parse(&text).map_err(|errors| format!("{}: {}", path.display(), errors.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> Result<Config, ConfigErrors> {
        let argv = ["shortener", "serve"].iter().chain(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(args) => args.validate(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn pools_beyond_the_connection_budget_are_refused() {
        let errors = serve(&[
            "--database-url",
            "postgres://localhost/x",
            "--db-read-pool-size",
            "20",
            "--db-write-pool-size",
            "10",
            "--db-background-pool-size",
            "2",
            "--db-connection-budget",
            "33",
        ])
        .unwrap_err()
        .0;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("SHORTENER_DB_CONNECTION_BUDGET"));
        assert!(errors[0].contains("34"), "{}", errors[0]);
        let fits = serve(&[
            "--database-url",
            "postgres://localhost/x",
            "--db-read-pool-size",
            "20",
            "--db-write-pool-size",
            "10",
            "--db-background-pool-size",
            "2",
            "--db-connection-budget",
            "34",
        ])
        .unwrap();
        assert_eq!(fits.pool.sizes.primary_total(), 34);
    }

    #[test]
    fn redis_is_one_node_or_a_cluster_never_both() {
        let base = ["--database-url", "postgres://localhost/x"];
        let none = serve(&base).unwrap();
        assert!(none.redis.is_none());
        let single =
            serve(&[&base[..], &["--redis-url", "redis://u:p@cache:6380"]].concat()).unwrap();
        let redis = single.redis.unwrap();
        assert_eq!(
            redis.settings.topology,
            RedisTopology::Single("redis://u:p@cache:6380".into())
        );
        assert_eq!(redis.settings.command_timeout, Duration::from_millis(50));
        assert_eq!(redis.ttl, Duration::from_secs(3600));
        let cluster = serve(&[&base[..], &["--redis-cluster-nodes", "a:7001, b:7002"]].concat())
            .unwrap()
            .redis
            .unwrap();
        assert_eq!(
            cluster.settings.topology,
            RedisTopology::Cluster(vec![("a".into(), 7001), ("b".into(), 7002)])
        );
        for bad in [
            &["--redis-url", "redis://a:1", "--redis-cluster-nodes", "b:2"][..],
            &["--redis-url", "http://a:1"],
            &["--redis-cluster-nodes", "a"],
            &["--redis-url", "redis://a:1", "--redis-tls", "yes"],
        ] {
            let errors = serve(&[&base[..], bad].concat()).unwrap_err().0;
            assert_eq!(errors.len(), 1, "{bad:?}: {errors:?}");
            assert!(errors[0].starts_with("REDIS_URL"), "{errors:?}");
            assert!(!errors[0].contains("u:p"), "{errors:?}");
        }
    }

    #[test]
    fn config_names_hold_the_fixed_names_sorted_once_and_none_is_warned_about() {
        let names = config_names();
        // The names API.md fixes, and some that later work added.
        for name in [
            "DATABASE_URL",
            "DATABASE_REPLICA_URLS",
            "REDIS_URL",
            "REDIS_CLUSTER_NODES",
            "SHORTENER_CODE_KEY_FILE",
            "SHORTENER_SHUTDOWN_GRACE",
            "SHORTENER_SHUTDOWN_DELAY",
            "SHORTENER_METRICS",
            "RUST_LOG",
        ] {
            assert!(
                names.contains(&name.to_owned()),
                "{name} missing from {names:?}"
            );
        }
        assert!(
            names.windows(2).all(|pair| pair[0] < pair[1]),
            "sorted, no repeats"
        );
        // What the unknown-variable warning accepts, `serve` lists (seed's options are its own).
        for name in &names {
            assert!(
                unknown_variables([name.clone()]).is_empty(),
                "{name} would be warned about"
            );
        }
    }

    #[test]
    fn unknown_shortener_variables_are_named() {
        let environment = [
            "SHORTENER_LISTEN",
            "SHORTENER_DB_POOL_SIZE",
            "SHORTENER_CACHE_TTL",
            "SHORTENER_TEST_ADMIN_URL",
            "PATH",
            "SHORTENER_LISTEN_ADDR",
        ]
        .map(String::from);
        assert_eq!(
            unknown_variables(environment),
            ["SHORTENER_DB_POOL_SIZE", "SHORTENER_LISTEN_ADDR"]
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        for bad in [
            "",
            "1",
            "s",
            "1.5s",
            "-1s",
            "0s",
            "10 s",
            "1d",
            "25h",
            "99999999999999999999h",
            "18446744073709551615h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_duration_or_zero("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
    }

    #[test]
    fn a_minimal_configuration_takes_the_documented_defaults() {
        let config = serve(&["--database-url", "postgres://localhost/x"]).unwrap();
        assert_eq!(config.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(config.public_base_url, "http://localhost:8080");
        assert_eq!(config.redirect_status, StatusCode::FOUND);
        assert_eq!(config.stats_flush_interval, Duration::from_secs(1));
        assert_eq!(config.shutdown_grace, Duration::from_secs(25));
        assert!(config.code_key_is_development);
        assert_eq!(config.cache.capacity, 1_000_000);
        assert_eq!(config.cache.ttl, Duration::from_secs(60));
        assert_eq!(config.cache.negative_ttl, Duration::from_secs(1));
        assert!(config.pool.sizes.primary_total() <= config.db_connection_budget);
    }

    #[test]
    fn listeners_must_differ_and_the_delay_must_fit_in_the_grace() {
        let errors = serve(&[
            "--database-url",
            "postgres://localhost/x",
            "--listen",
            "127.0.0.1:9000",
            "--admin-listen",
            "127.0.0.1:9000",
            "--shutdown-delay",
            "30s",
        ])
        .unwrap_err()
        .0;
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("SHORTENER_ADMIN_LISTEN"));
        assert!(errors[1].starts_with("SHORTENER_SHUTDOWN_DELAY"));
    }

    #[test]
    fn every_problem_is_reported_together() {
        let errors = serve(&[
            "--listen",
            "nowhere",
            "--database-url",
            "",
            "--redirect-status",
            "303",
            "--stats-flush-interval",
            "soon",
            "--worker-id",
            "1024",
            "--trusted-proxies",
            "10.0.0.0/8,bogus",
            "--code-key",
            "short",
        ])
        .unwrap_err()
        .0;
        for name in [
            "SHORTENER_LISTEN",
            "DATABASE_URL",
            "SHORTENER_REDIRECT_STATUS",
            "SHORTENER_STATS_FLUSH_INTERVAL",
            "SHORTENER_WORKER_ID",
            "SHORTENER_TRUSTED_PROXIES",
            "SHORTENER_CODE_KEY",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(name)),
                "{name} missing from {errors:?}"
            );
        }
        assert_eq!(errors.len(), 7);
    }
}
