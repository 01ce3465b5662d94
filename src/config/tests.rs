//! The sections parsed together: defaults, every problem at once, cross-section rules.

use std::time::Duration;

use clap::Parser;
use http::StatusCode;

use super::*;
use crate::storage::RedisTopology;

fn serve(args: &[&str]) -> Result<ServeConfig, ConfigErrors> {
    let argv = ["shortener", "serve"].iter().chain(args);
    match Cli::try_parse_from(argv).unwrap().command {
        Command::Serve(args) => args.parse(),
        _ => unreachable!(),
    }
}

fn variables(errors: &ConfigErrors) -> Vec<&'static str> {
    errors
        .problems()
        .iter()
        .map(|error| error.variable)
        .collect()
}

#[test]
fn pools_beyond_the_connection_budget_are_refused() {
    let pools = |budget: &'static str| {
        serve(&[
            "--database-url",
            "postgres://localhost/x",
            "--db-read-pool-size",
            "20",
            "--db-write-pool-size",
            "10",
            "--db-background-pool-size",
            "2",
            "--db-connection-budget",
            budget,
        ])
    };
    let errors = pools("33").unwrap_err();
    assert_eq!(variables(&errors), ["SHORTENER_DB_CONNECTION_BUDGET"]);
    assert!(errors.problems()[0].reason.contains("34"), "{errors}");
    let fits = pools("34").unwrap();
    assert_eq!(fits.database.pools.sizes.primary_total(), 34);
}

#[test]
fn redis_is_one_node_or_a_cluster_never_both() {
    let base = ["--database-url", "postgres://localhost/x"];
    let none = serve(&base).unwrap();
    assert!(none.redis.is_none());
    let single = serve(&[&base[..], &["--redis-url", "redis://u:p@cache:6380"]].concat()).unwrap();
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
        let errors = serve(&[&base[..], bad].concat()).unwrap_err();
        assert_eq!(variables(&errors), ["REDIS_URL"], "{bad:?}");
        assert!(!errors.to_string().contains("u:p"), "{errors}");
    }
}

#[test]
fn config_names_hold_the_fixed_names_sorted_once_and_none_is_warned_about() {
    let names = config_names();
    // The names the configuration contract fixes (README), and some that later work added.
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
fn a_minimal_configuration_takes_the_documented_defaults() {
    let config = serve(&["--database-url", "postgres://localhost/x"]).unwrap();
    assert_eq!(config.server.listen, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(config.server.admin_listen, "0.0.0.0:9090".parse().unwrap());
    assert_eq!(config.creates.public_base_url, "http://localhost:8080");
    assert_eq!(config.server.http.redirect_status, StatusCode::FOUND);
    assert_eq!(
        config.server.http.redirect_cache_control,
        "private, max-age=0"
    );
    assert_eq!(config.clicks.interval, Duration::from_secs(1));
    assert_eq!(config.server.shutdown.grace, Duration::from_secs(25));
    assert_eq!(config.creates.key_source, KeySource::Development);
    assert_eq!(config.cache.capacity, 1_000_000);
    assert_eq!(config.cache.ttl, Duration::from_secs(60));
    assert_eq!(config.cache.negative_ttl, Duration::from_secs(1));
    assert_eq!(config.database.pools.sizes.primary_total(), 28);
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
    .unwrap_err();
    assert_eq!(
        variables(&errors),
        ["SHORTENER_ADMIN_LISTEN", "SHORTENER_SHUTDOWN_DELAY"]
    );
    // Ports the system picks never collide.
    let ephemeral = serve(&[
        "--database-url",
        "postgres://localhost/x",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    assert!(ephemeral.is_ok(), "{ephemeral:?}");
}

#[test]
fn more_writers_than_write_connections_are_refused() {
    let errors = serve(&[
        "--database-url",
        "postgres://localhost/x",
        "--db-write-pool-size",
        "2",
        "--create-writers",
        "3",
    ])
    .unwrap_err();
    assert_eq!(variables(&errors), ["SHORTENER_CREATE_WRITERS"]);
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
    .unwrap_err();
    let mut found = variables(&errors);
    found.sort();
    assert_eq!(
        found,
        [
            "DATABASE_URL",
            "SHORTENER_CODE_KEY",
            "SHORTENER_LISTEN",
            "SHORTENER_REDIRECT_STATUS",
            "SHORTENER_STATS_FLUSH_INTERVAL",
            "SHORTENER_TRUSTED_PROXIES",
            "SHORTENER_WORKER_ID",
        ]
    );
}

#[test]
fn replicas_may_come_from_a_file_one_a_line_or_separated_by_commas() {
    let dir = std::env::temp_dir().join(format!("shortener-replicas-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("replica-urls");
    std::fs::write(
        &file,
        "postgres://app@replica-1/shortener\npostgres://app@replica-2/shortener, postgres://app@replica-3/shortener\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let config = serve(&[
        "--database-url",
        "postgres://app@primary/shortener",
        "--database-replica-urls-file",
        path,
    ])
    .unwrap();
    assert_eq!(config.database.replicas.len(), 3);
    // Not both at once, and a file that cannot be read is named.
    let both = serve(&[
        "--database-url",
        "postgres://app@primary/shortener",
        "--database-replica-urls",
        "postgres://app@replica-1/shortener",
        "--database-replica-urls-file",
        path,
    ])
    .unwrap_err();
    assert_eq!(variables(&both), ["DATABASE_REPLICA_URLS"]);
    let missing = dir.join("nothing-here");
    let unreadable = serve(&[
        "--database-url",
        "postgres://app@primary/shortener",
        "--database-replica-urls-file",
        missing.to_str().unwrap(),
    ])
    .unwrap_err();
    assert_eq!(variables(&unreadable), ["DATABASE_REPLICA_URLS"]);
    std::fs::remove_dir_all(&dir).unwrap();
}
