//! Redis for tests: either topology, flags naming it with a prefix of the test's own, and
//! what `redis-cli` reads there.

use std::process::Command;

use super::{TestApp, redis_cluster_nodes, redis_single_url, spawn_app_on};

#[derive(Debug, Clone, Copy)]
pub enum Topology {
    Single,
    Cluster,
}

/// The flags that point an instance at `topology`, its keys under `prefix`.
pub fn redis_flags(topology: Topology, prefix: &str) -> Vec<String> {
    let (flag, value) = match topology {
        Topology::Single => ("--redis-url", redis_single_url()),
        Topology::Cluster => ("--redis-cluster-nodes", redis_cluster_nodes()),
    };
    vec![
        flag.into(),
        value,
        "--redis-key-prefix".into(),
        prefix.into(),
        "--redis-ttl".into(),
        "30s".into(),
    ]
}

/// A store of the library's own on `topology`, its keys under `prefix` (what an instance
/// started with [`redis_flags`] reads and writes).
pub fn store_settings(topology: Topology, prefix: &str) -> shortener::storage::RedisSettings {
    use shortener::storage::{RedisSettings, RedisTopology};
    RedisSettings {
        topology: match topology {
            Topology::Single => RedisTopology::Single(redis_single_url()),
            Topology::Cluster => RedisTopology::Cluster(
                redis_cluster_nodes()
                    .split(',')
                    .map(|seed| {
                        let (host, port) = seed.rsplit_once(':').unwrap();
                        (host.to_owned(), port.parse().unwrap())
                    })
                    .collect(),
            ),
        },
        username: None,
        password: None,
        cluster_tls: false,
        command_timeout: std::time::Duration::from_secs(2),
        key_prefix: prefix.to_owned(),
    }
}

/// An instance on `db_url` with Redis `topology` under `prefix`, and `extra` flags.
pub async fn spawn_with_redis(
    db_url: &str,
    topology: Topology,
    prefix: &str,
    extra: &[&str],
) -> TestApp {
    let flags = redis_flags(topology, prefix);
    let mut flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    flags.extend_from_slice(extra);
    spawn_app_on(db_url, &flags).await
}

/// What redis-cli prints for `args` (`-c` follows cluster redirections), trimmed.
pub fn redis_cli(topology: Topology, args: &[&str]) -> String {
    let mut command = Command::new("redis-cli");
    match topology {
        Topology::Single => command.args(["-u", &redis_single_url()]),
        Topology::Cluster => {
            let seed = redis_cluster_nodes();
            let (host, port) = seed.split(',').next().unwrap().rsplit_once(':').unwrap();
            command.args(["-c", "-h", host, "-p", port])
        }
    };
    let output = command
        .arg("--raw")
        .args(args)
        .output()
        .expect("redis-cli runs");
    assert!(output.status.success(), "redis-cli: {output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .trim_end_matches('\n')
        .to_owned()
}

/// What Redis holds under `key`.
pub fn redis_get(topology: Topology, key: &str) -> Option<String> {
    let value = redis_cli(topology, &["GET", key]);
    (!value.is_empty()).then_some(value)
}

/// Seconds `key` has left to live in Redis (-1: no expiry, -2: no such key).
pub fn redis_ttl(topology: Topology, key: &str) -> i64 {
    redis_cli(topology, &["TTL", key]).parse().unwrap()
}
