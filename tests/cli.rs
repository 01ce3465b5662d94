//! The binary: configuration errors, help, and `migrate`.

mod common;

use std::process::Command;

fn shortener() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shortener"));
    command.env_clear();
    command
}

#[test]
fn bad_configuration_reports_every_problem_and_exits_64() {
    let output = shortener()
        .args(["serve", "--listen", "bogus", "--redirect-status", "200"])
        .env("SHORTENER_STATS_FLUSH_INTERVAL", "soon")
        .env("DATABASE_URL", "postgres://user:hunter2@db.internal/x")
        .env("SHORTENER_CODE_KEY", "hunter2")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for name in [
        "SHORTENER_LISTEN",
        "SHORTENER_REDIRECT_STATUS",
        "SHORTENER_STATS_FLUSH_INTERVAL",
        "SHORTENER_CODE_KEY",
    ] {
        assert!(stderr.contains(name), "{name} missing: {stderr}");
    }
    assert!(
        !stderr.contains("hunter2"),
        "a secret was printed: {stderr}"
    );
}

#[test]
fn unusable_postgres_tls_settings_exit_64_naming_the_setting_not_the_url() {
    for (url, says) in [
        (
            "postgres://user:hunter2@db.internal/x?sslmode=verify-ca",
            "needs sslrootcert",
        ),
        (
            "postgres://user:hunter2@db.internal/x?sslmode=verify-full&sslrootcert=/no/such/ca.pem",
            "sslrootcert '/no/such/ca.pem'",
        ),
        (
            "postgres://user:hunter2@db.internal/x?sslmode=always",
            "sslmode 'always'",
        ),
    ] {
        let output = shortener()
            .arg("serve")
            .env("DATABASE_URL", url)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(64), "{url}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("DATABASE_URL") && stderr.contains(says),
            "{stderr}"
        );
        assert!(
            !stderr.contains("hunter2"),
            "a secret was printed: {stderr}"
        );
    }
}

#[test]
fn lease_settings_that_leave_no_room_for_a_failed_renewal_exit_64() {
    for (name, value, says) in [
        (
            "SHORTENER_LEASE_SAFETY_MARGIN",
            "40s",
            "SHORTENER_LEASE_SAFETY_MARGIN",
        ),
        (
            "SHORTENER_LEASE_RENEW_EVERY",
            "20s",
            "SHORTENER_LEASE_RENEW_EVERY",
        ),
    ] {
        let output = shortener()
            .arg("serve")
            .env("DATABASE_URL", "postgres://u@db.internal/x")
            .env(name, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(64), "{name}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{stderr}");
    }
}

#[test]
fn cors_origins_must_be_origins() {
    for bad in [
        "https://app.example.com/path",
        "app.example.com",
        "ftp://app.example.com",
    ] {
        let output = shortener()
            .arg("serve")
            .env("DATABASE_URL", "postgres://u@db.internal/x")
            .env("SHORTENER_CORS_ORIGINS", bad)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(64), "{bad}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("SHORTENER_CORS_ORIGINS"));
    }
}

#[test]
fn missing_database_url_exits_64() {
    let output = shortener().arg("serve").output().unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("DATABASE_URL"));
}

#[test]
fn help_documents_every_option_without_secrets() {
    let output = shortener()
        .args(["serve", "--help"])
        .env("SHORTENER_CODE_KEY", "super-secret-code-key")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for variable in [
        "SHORTENER_LISTEN",
        "SHORTENER_ADMIN_LISTEN",
        "SHORTENER_PUBLIC_BASE_URL",
        "DATABASE_URL",
        "DATABASE_REPLICA_URLS",
        "SHORTENER_WORKER_ID",
        "SHORTENER_CODE_KEY",
        "SHORTENER_CODE_KEY_FILE",
        "SHORTENER_REDIRECT_STATUS",
        "SHORTENER_TRUSTED_PROXIES",
        "SHORTENER_STATS_FLUSH_INTERVAL",
        "SHORTENER_BLOCKLIST_FILE",
        "SHORTENER_SHUTDOWN_GRACE",
    ] {
        assert!(help.contains(variable), "{variable} missing from --help");
    }
    assert!(!help.contains("super-secret-code-key"));
    assert!(shortener().arg("--help").output().unwrap().status.success());
}

#[tokio::test]
async fn migrate_is_idempotent() {
    let url = common::empty_database().await;
    for _ in 0..2 {
        let status = shortener()
            .arg("migrate")
            .env("DATABASE_URL", &url)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let db = common::connect(&url).await;
    let tables = "SELECT count(*) FROM information_schema.tables WHERE table_name IN \
                  ('links', 'idempotency_keys', 'link_clicks_daily', 'stats_batches', 'worker_leases')";
    assert_eq!(common::scalar(&db, tables).await, 5);
}

#[tokio::test]
async fn migrate_waits_for_a_migration_already_running() {
    let url = common::empty_database().await;
    let other = common::connect(&url).await;
    // Another run holds the lock `shortener migrate` takes.
    let key = shortener::storage::MIGRATION_LOCK_KEY;
    other
        .execute("SELECT pg_advisory_lock($1)", &[&key])
        .await
        .unwrap();
    let mut waiting = shortener()
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let tables = "SELECT count(*) FROM information_schema.tables WHERE table_name = 'links'";
    // It waits on the lock: Postgres shows its request for it not granted. Until the other
    // run lets go, nothing is applied and the command has not finished.
    let waiting_for_the_lock = "SELECT count(*) FROM pg_locks \
                                WHERE locktype = 'advisory' AND NOT granted \
                                  AND database = (SELECT oid FROM pg_database \
                                                  WHERE datname = current_database())";
    let blocked = common::eventually(std::time::Duration::from_secs(10), || async {
        common::scalar(&other, waiting_for_the_lock).await == 1
    })
    .await;
    assert!(blocked, "migrate never asked for the lock");
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "migrate did not wait"
    );
    assert_eq!(common::scalar(&other, tables).await, 0);
    other
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await
        .unwrap();
    // The unlock has been answered, so blocking this test's thread on the child is safe.
    let output = waiting.wait_with_output().unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("another migration is running"), "{stderr}");
    assert_eq!(common::scalar(&other, tables).await, 1);
}

#[test]
fn serve_lists_the_configuration_names_it_reads() {
    let output = shortener()
        .args(["serve", "--list-config-names"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let names: Vec<&str> = stdout.lines().collect();
    for name in [
        "DATABASE_URL",
        "SHORTENER_LISTEN",
        "REDIS_CLUSTER_NODES",
        "RUST_LOG",
    ] {
        assert!(names.contains(&name), "{name} missing: {stdout}");
    }
    assert!(
        names
            .iter()
            .all(|name| !name.is_empty() && !name.contains(' '))
    );
}

#[test]
fn migrate_fails_with_a_nonzero_status_when_the_database_is_unreachable() {
    let output = shortener()
        .arg("migrate")
        .env("SHORTENER_MIGRATE_WAIT", "1s")
        .env(
            "DATABASE_URL",
            "postgres://postgres:hunter2@127.0.0.1:1/none",
        )
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("hunter2"),
        "a secret was printed: {stderr}"
    );
}

#[tokio::test]
async fn the_database_url_may_come_from_a_file_but_not_from_both() {
    let url = common::empty_database().await;
    let file = std::env::temp_dir().join(format!("shortener-db-url-{}", std::process::id()));
    std::fs::write(&file, format!("{url}\n")).unwrap();
    let migrated = shortener()
        .arg("migrate")
        .env("DATABASE_URL_FILE", &file)
        .status()
        .unwrap();
    assert!(migrated.success());
    let db = common::connect(&url).await;
    let links = "SELECT count(*) FROM information_schema.tables WHERE table_name = 'links'";
    assert_eq!(common::scalar(&db, links).await, 1);

    for command in [&["migrate"][..], &["serve"], &["disable", "some-code"]] {
        let both = shortener()
            .args(command)
            .env("DATABASE_URL_FILE", &file)
            .env("DATABASE_URL", "postgres://postgres:hunter2@127.0.0.1/x")
            .output()
            .unwrap();
        assert_eq!(both.status.code(), Some(64), "{command:?}");
        let stderr = String::from_utf8_lossy(&both.stderr);
        assert!(stderr.contains("DATABASE_URL_FILE"), "{stderr}");
        assert!(
            !stderr.contains("hunter2"),
            "a secret was printed: {stderr}"
        );
    }
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn an_address_in_use_names_itself_and_exits_69() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output = shortener()
        .arg("serve")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/x")
        .env("SHORTENER_LISTEN", &address)
        .env("SHORTENER_ADMIN_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(69));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&address) && stderr.contains("cannot listen"),
        "{stderr}"
    );
}
