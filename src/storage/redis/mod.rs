//! Redis: the client (fred) and the three commands the link tier needs. Only this module
//! names the Redis client.
//!
//! fred's defaults would queue commands without bound while Redis is away and wait on them
//! without a timeout; here every command fails fast when no connection is up and times out
//! after the configured command timeout otherwise, and the client reconnects by itself with
//! an exponential back-off. Values are opaque bytes: `links` decides what they mean.
//!
//! A cluster master that hangs (its connections open, nothing answered) is never given up by
//! fred on its own (aembke/fred.rs#363): after its replica takes over, commands for its slots
//! would keep going to it and timing out. So a command that times out against a cluster makes
//! every client re-read the slot map (`CLUSTER SLOTS`) in the background, at most once per
//! [`RESYNC_AT_MOST_EVERY`]: once the replica has taken over, the hung node is dropped and its
//! slots are routed to the new master.

mod pubsub;

pub use pubsub::{ChangeEvent, ChangeSubscriber};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::error::ErrorKind;
use fred::prelude::{
    Builder, ClientLike, ClusterInterface, Config, KeysInterface, LuaInterface, Options, Pool,
    PubsubInterface, ReconnectPolicy, Server, ServerConfig, TlsConnector,
};
use fred::types::ConnectHandle;
use fred::types::config::{ClusterDiscoveryPolicy, TlsConfig, TlsHostMapping, UnresponsiveConfig};
use fred::types::scripts::Script;
use thiserror::Error;
use tokio_util::task::TaskTracker;

use crate::telemetry::metrics::{RedisCause, RedisCommand, RedisMetrics};

/// Connections to Redis (to each node, in a cluster).
const POOL_SIZE: usize = 2;
/// Opening a connection, and the client's own commands while it (re)connects.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Commands waiting for a connection beyond this are refused at once.
const MAX_QUEUED_COMMANDS: usize = 10_000;
/// Reconnect back-off: 100 ms, doubling, at most 2 s, forever.
const RECONNECT_MIN_MS: u32 = 100;
const RECONNECT_MAX_MS: u32 = 2_000;
/// How long [`RedisStore::quit`] waits for the connection task to end.
const QUIT_WAIT: Duration = Duration::from_secs(1);
/// The slot map is re-read after a command timed out against a cluster, at most this often.
const RESYNC_AT_MOST_EVERY: Duration = Duration::from_secs(1);

/// GCRA in one atomic step, on Redis' clock (so every instance shares one). KEYS[1]: the
/// client's key; ARGV: the emission interval and the burst, in microseconds and requests, and
/// the cost (requests counted at once: all pass or none; a cost above the burst never passes).
/// Answers `{allowed, remaining, reset_us, retry_after_us}`. The key lives as long as it
/// matters (until its theoretical arrival time) and is the only key touched, so the script
/// runs on any Redis Cluster node.
const GCRA_LUA: &str = r#"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3] or '1')
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local tolerance = interval * (burst - cost)
if cost > burst then
  return {0, 0, tat - now, interval * burst}
end
if tat - now > tolerance then
  return {0, 0, tat - now, tat - now - tolerance}
end
local new_tat = tat + interval * cost
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000))
return {1, math.floor((interval * burst - (new_tat - now)) / interval), new_tat - now, 0}
"#;

/// One decision of the shared limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcraAnswer {
    pub allowed: bool,
    pub remaining: u32,
    /// Until the client's bucket is full again.
    pub reset: Duration,
    /// When refused: until one more request would pass.
    pub retry_after: Duration,
}

/// A client builder for `settings`: the connection limits, timeouts and reconnect policy every
/// client of the service shares.
fn builder(settings: &RedisSettings) -> Result<Builder, RedisError> {
    let mut config = match &settings.topology {
        RedisTopology::Single(url) => Config::from_url(url)?,
        RedisTopology::Cluster(seeds) => Config {
            server: ServerConfig::Clustered {
                hosts: seeds
                    .iter()
                    .map(|(host, port)| Server::new(host.as_str(), *port))
                    .collect(),
                policy: ClusterDiscoveryPolicy::ConfigEndpoint,
            },
            tls: if settings.cluster_tls {
                Some(TlsConfig {
                    connector: TlsConnector::default_rustls()?,
                    hostnames: TlsHostMapping::DefaultHost,
                })
            } else {
                None
            },
            ..Config::default()
        },
    };
    if settings.username.is_some() {
        config.username = settings.username.clone();
    }
    if settings.password.is_some() {
        config.password = settings.password.clone();
    }
    // Keep trying to connect when the first attempt fails.
    config.fail_fast = false;
    let mut builder = Builder::from_config(config);
    builder
        .with_performance_config(|performance| {
            performance.default_command_timeout = settings.command_timeout;
        })
        .with_connection_config(|connection| {
            connection.connection_timeout = CONNECT_TIMEOUT;
            connection.internal_command_timeout = CONNECT_TIMEOUT;
            connection.max_command_attempts = 1;
            connection.max_command_buffer_len = MAX_QUEUED_COMMANDS;
            // Off: under steady traffic it never fires, and once it does it takes a whole
            // cluster client down for one hung node; the breaker in `links` covers hangs.
            connection.unresponsive = UnresponsiveConfig {
                max_timeout: None,
                ..UnresponsiveConfig::default()
            };
        })
        .set_policy(ReconnectPolicy::new_exponential(
            0,
            RECONNECT_MIN_MS,
            RECONNECT_MAX_MS,
            2,
        ));
    Ok(builder)
}

/// Where Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTopology {
    /// `redis://` or `rediss://` URL of one node (credentials may be in it).
    Single(String),
    /// `host:port` seeds of a cluster.
    Cluster(Vec<(String, u16)>),
}

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub topology: RedisTopology,
    pub username: Option<String>,
    pub password: Option<String>,
    /// TLS for a cluster (a single node says so with `rediss://`).
    pub cluster_tls: bool,
    pub command_timeout: Duration,
    /// Prefix of every key, so several deployments (or tests) can share one Redis.
    pub key_prefix: String,
}

#[derive(Debug, Error)]
#[error("redis: {0}")]
pub struct RedisError(#[source] fred::error::Error);

impl From<fred::error::Error> for RedisError {
    fn from(error: fred::error::Error) -> Self {
        RedisError(error)
    }
}

/// The Redis client, cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    pool: Pool,
    options: Options,
    key_prefix: String,
    /// Set for a cluster: when the slot map was last re-read.
    resync: Option<Arc<Resync>>,
    /// Where the slot-map re-reads run.
    tasks: TaskTracker,
    /// fred's connection task, taken and awaited by [`RedisStore::quit`].
    connection: Arc<Mutex<Option<ConnectHandle>>>,
    /// What the pool was built from: the subscriber to changes is built from it too.
    settings: Arc<RedisSettings>,
    /// Failed commands, by command and cause.
    metrics: RedisMetrics,
}

/// When the clients last re-read a cluster's slot map, as milliseconds since `started`.
struct Resync {
    started: Instant,
    last_ms: AtomicU64,
}

impl RedisStore {
    /// Builds the client and starts connecting in the background: the service starts (and
    /// serves from its other tiers) while Redis is down. Re-reads of a cluster's slot map are
    /// tasks on `tasks`; fred's own connection tasks end at [`RedisStore::quit`].
    pub fn connect(settings: &RedisSettings, tasks: TaskTracker) -> Result<Self, RedisError> {
        let pool = builder(settings)?.build_pool(POOL_SIZE)?;
        let connection = Arc::new(Mutex::new(Some(pool.connect())));
        let resync = matches!(settings.topology, RedisTopology::Cluster(_)).then(|| {
            Arc::new(Resync {
                started: Instant::now(),
                last_ms: AtomicU64::new(0),
            })
        });
        Ok(RedisStore {
            resync,
            tasks,
            connection,
            settings: Arc::new(settings.clone()),
            pool,
            options: Options {
                timeout: Some(settings.command_timeout),
                fail_fast: true,
                ..Options::default()
            },
            key_prefix: settings.key_prefix.clone(),
            metrics: RedisMetrics::default(),
        })
    }

    /// Counts failed commands in `metrics` (set before the store is cloned).
    pub fn with_metrics(mut self, metrics: RedisMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Waits until every connection is up, at most `timeout`; answers whether they are.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        matches!(
            tokio::time::timeout(timeout, self.pool.wait_for_connect()).await,
            Ok(Ok(()))
        )
    }

    fn key(&self, code: &str) -> String {
        format!("{}{code}", self.key_prefix)
    }

    /// The value stored for `code` and its version, if any (a value written by another
    /// version of this program, without a version, is none).
    pub async fn get_link(&self, code: &str) -> Result<Option<(i64, Bytes)>, RedisError> {
        let result: Result<Option<Bytes>, _> = self
            .pool
            .with_options(&self.options)
            .get(self.key(code))
            .await;
        Ok(self.checked(RedisCommand::Get, result)?.and_then(versioned))
    }

    /// Passes `result` on, the command counted (and a failure); a timeout against a cluster first starts a
    /// re-read of its slot map.
    fn checked<T>(
        &self,
        command: RedisCommand,
        result: Result<T, fred::error::Error>,
    ) -> Result<T, RedisError> {
        self.metrics.sent(command);
        if let Err(error) = &result {
            let cause = match error.kind() {
                ErrorKind::Timeout => RedisCause::Timeout,
                // No connection (fail-fast while reconnecting), or one that broke.
                ErrorKind::IO | ErrorKind::Canceled | ErrorKind::Backpressure => {
                    RedisCause::Unavailable
                }
                _ => RedisCause::Error,
            };
            self.metrics.failed(command, cause);
            if let (RedisCause::Timeout, Some(resync)) = (cause, &self.resync) {
                self.resync_soon(resync);
            }
        }
        Ok(result?)
    }

    fn resync_soon(&self, resync: &Resync) {
        let now_ms = resync.started.elapsed().as_millis() as u64 + 1;
        let last_ms = resync.last_ms.load(Ordering::Relaxed);
        let due = last_ms == 0
            || now_ms.saturating_sub(last_ms) >= RESYNC_AT_MOST_EVERY.as_millis() as u64;
        if !due
            || resync
                .last_ms
                .compare_exchange(last_ms, now_ms, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let pool = self.pool.clone();
        self.tasks.spawn(async move {
            for client in pool.clients() {
                if let Err(error) = client.sync_cluster().await {
                    tracing::debug!(%error, "re-reading the redis cluster's slot map failed");
                }
            }
        });
    }

    /// Stores `value` for `code` for `ttl` as version `version`, unless what is stored there
    /// already is that version or a newer one (in one script, on the key's node): a late write
    /// of an older version never undoes a newer one. Answers whether it was stored.
    pub async fn put_link_if_newer(
        &self,
        code: &str,
        version: i64,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, RedisError> {
        let seconds = ttl.as_secs().max(1).to_string();
        let mut stored = format!("v{version}\n").into_bytes();
        stored.extend_from_slice(value);
        let args: Vec<fred::types::Value> = vec![
            version.to_string().into(),
            Bytes::from(stored).into(),
            seconds.into(),
        ];
        let key = self.key(code);
        let script = put_if_newer_script();
        let result: Result<i64, _> = match self
            .pool
            .with_options(&self.options)
            .evalsha(script.sha1().clone(), key.as_str(), args.clone())
            .await
        {
            Err(error) if error.details().starts_with("NOSCRIPT") => {
                self.pool
                    .with_options(&self.options)
                    .eval(PUT_IF_NEWER_LUA, key.as_str(), args)
                    .await
            }
            other => other,
        };
        self.checked(RedisCommand::Set, result)
            .map(|stored| stored == 1)
    }

    /// Announces `message` to every instance subscribed to changes.
    pub async fn publish_change(&self, message: &str) -> Result<(), RedisError> {
        let channel = self.changes_channel();
        let client = self.pool.next().with_options(&self.options);
        let result: Result<i64, _> = if self.resync.is_some() {
            client.spublish(channel, message).await
        } else {
            client.publish(channel, message).await
        };
        self.checked(RedisCommand::Publish, result).map(drop)
    }

    /// The channel changes are announced on (under this store's prefix, so deployments that
    /// share a Redis do not hear each other).
    fn changes_channel(&self) -> String {
        format!("{}changes", self.key_prefix)
    }

    /// One GCRA decision for `cost` requests of `key` (under this store's prefix), shared by
    /// every instance using this Redis. `EVALSHA`, and `EVAL` when Redis has lost the script (restarted, failed over,
    /// `SCRIPT FLUSH`); bounded by the command timeout.
    pub async fn gcra(
        &self,
        key: &str,
        interval: Duration,
        burst: u32,
        cost: u32,
    ) -> Result<GcraAnswer, RedisError> {
        let script = gcra_script();
        let key = format!("{}{key}", self.key_prefix);
        let args = vec![
            (interval.as_micros().max(1) as i64).to_string(),
            burst.to_string(),
            cost.to_string(),
        ];
        let result: Result<Vec<i64>, _> = match self
            .pool
            .evalsha(script.sha1().clone(), key.as_str(), args.clone())
            .await
        {
            Err(error) if error.details().starts_with("NOSCRIPT") => {
                self.pool.eval(GCRA_LUA, key.as_str(), args).await
            }
            other => other,
        };
        let answer = self.checked(RedisCommand::Gcra, result)?;
        let field = |n: usize| answer.get(n).copied().unwrap_or(0).max(0) as u64;
        Ok(GcraAnswer {
            allowed: field(0) == 1,
            remaining: field(1) as u32,
            reset: Duration::from_micros(field(2)),
            retry_after: Duration::from_micros(field(3)),
        })
    }

    /// Closes every connection and waits (at most `QUIT_WAIT`) for fred's connection task to
    /// end. The store answers nothing afterwards.
    pub async fn quit(&self) {
        if let Err(error) = self.pool.quit().await {
            tracing::debug!(%error, "redis quit failed");
        }
        await_connection_task(&self.connection, "redis connection").await;
    }

    /// Whether Redis answers a PING within the command timeout.
    pub async fn ping(&self) -> Result<(), RedisError> {
        let answer: Result<String, _> = self.pool.with_options(&self.options).ping(None).await;
        // Through `checked` too: while the breaker is open the probe's PING is the only command
        // sent, and its timeouts must still make a cluster client re-read the slot map, or a
        // client that last re-read it before the failover finished would never follow.
        self.checked(RedisCommand::Ping, answer).map(drop)
    }
}

/// Splits `v<version>\n<value>`.
fn versioned(stored: Bytes) -> Option<(i64, Bytes)> {
    let rest = stored.strip_prefix(b"v")?;
    let end = rest.iter().position(|byte| *byte == b'\n')?;
    let version = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
    Some((version, stored.slice(end + 2..)))
}

/// Waits (at most `QUIT_WAIT`) for fred's connection task, once quit: `what` names it in the
/// log when it does not end.
pub(super) async fn await_connection_task(connection: &Mutex<Option<ConnectHandle>>, what: &str) {
    let connection = connection
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    if let Some(connection) = connection
        && tokio::time::timeout(QUIT_WAIT, connection).await.is_err()
    {
        tracing::debug!("{what} task still running after quit");
    }
}

/// Stores ARGV[2] under KEYS[1] for ARGV[3] seconds unless the value there is of version
/// ARGV[1] or newer (its version is the number after its leading `v`). Answers 1 when stored.
const PUT_IF_NEWER_LUA: &str = r#"
local current = redis.call('GET', KEYS[1])
if current then
  local stored = tonumber(string.match(current, '^v(%d+)\n'))
  if stored and stored >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
return 1
"#;

fn put_if_newer_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::from_lua(PUT_IF_NEWER_LUA))
}

fn gcra_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::from_lua(GCRA_LUA))
}
