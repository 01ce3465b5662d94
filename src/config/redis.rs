//! Redis: one node or a cluster (never both), its credentials, and how the Redis tier behaves.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::parse;
use crate::storage::{RedisSettings, RedisTopology};

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

/// The Redis tier's settings.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub settings: RedisSettings,
    /// Lifetime of a link in Redis.
    pub ttl: Duration,
}

impl RedisArgs {
    /// The Redis tier, `None` when none is configured. Every problem is reported under
    /// `REDIS_URL` (the first that stops the tier from being used), never with a credential.
    pub fn parse(&self) -> Result<Option<RedisConfig>, String> {
        let url = self.redis_url.clone().filter(|url| !url.is_empty());
        let seeds = parse::list(&self.redis_cluster_nodes);
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
                            .ok_or_else(|| {
                                format!("REDIS_CLUSTER_NODES: '{seed}' is not host:port")
                            })
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        let password = parse::secret(
            self.redis_password.clone(),
            self.redis_password_file.clone(),
            ["REDIS_PASSWORD", "REDIS_PASSWORD_FILE"],
        )?;
        let cluster_tls = match self.redis_tls.trim() {
            "true" => true,
            "false" => false,
            other => {
                return Err(format!(
                    "SHORTENER_REDIS_TLS: '{other}' is not true or false"
                ));
            }
        };
        let command_timeout = parse::duration(&self.redis_command_timeout)
            .map_err(|e| format!("SHORTENER_REDIS_COMMAND_TIMEOUT: {e}"))?;
        let ttl =
            parse::duration(&self.redis_ttl).map_err(|e| format!("SHORTENER_REDIS_TTL: {e}"))?;
        Ok(Some(RedisConfig {
            settings: RedisSettings {
                topology,
                username: self.redis_username.clone().filter(|u| !u.is_empty()),
                password,
                cluster_tls,
                command_timeout,
                key_prefix: self.redis_key_prefix.clone(),
            },
            ttl,
        }))
    }
}
