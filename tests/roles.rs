//! Least privilege, on a Postgres of the test's own: the roles of `deploy/postgres/roles.sql`,
//! `shortener migrate` as the owner giving the application role its rights, and the service
//! running as a login member of that role. Everything the service does works; dropping a
//! table, writing the API keys, deleting links or rewriting the change feed and the audit log
//! do not. And `shortener migrate` waiting for a Postgres that starts after it.

mod common;
#[path = "support/processes.rs"]
mod processes;

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::Duration;

use common::{connect, eventually, spawn_app_on};
use processes::OwnPostgres;
use shortener::storage::APP_ROLE_PRIVILEGES;

fn psql_file(server: &OwnPostgres, file: &str) -> Output {
    Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(server.url("postgres"))
        .args(["-f", file])
        .output()
        .expect("run psql")
}

fn migrate(database_url: &str, app_role: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shortener"));
    command.env_clear().env("DATABASE_URL", database_url);
    if let Some(role) = app_role {
        command.env("SHORTENER_DATABASE_APP_ROLE", role);
    }
    command
        .arg("migrate")
        .output()
        .expect("run shortener migrate")
}

/// The SQLSTATE of what `sql` failed with (`None`: it succeeded).
async fn refused(db: &tokio_postgres::Client, sql: &str) -> Option<String> {
    match db.batch_execute(sql).await {
        Ok(()) => None,
        Err(error) => Some(error.code().expect("a server error").code().to_owned()),
    }
}

#[tokio::test]
async fn the_service_runs_as_the_application_role_and_can_do_nothing_more() {
    let server = OwnPostgres::start();
    // The roles and the database, made twice: the second run changes nothing.
    for _ in 0..2 {
        let made = psql_file(&server, "deploy/postgres/roles.sql");
        assert!(made.status.success(), "{made:?}");
    }
    let url_as = |role: &str| {
        server
            .url("shortener")
            .replacen("postgres@", &format!("{role}@"), 1)
    };
    let owner_url = url_as("shortener_owner");
    let app_url = url_as("shortener_app_a");

    // A name that is not a plain identifier is refused before anything is done; a role that
    // does not exist fails the migration.
    let bad = migrate(&owner_url, Some("app; DROP TABLE links"));
    assert_eq!(bad.status.code(), Some(64), "{bad:?}");
    let missing = migrate(&owner_url, Some("no_such_role"));
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    assert!(
        String::from_utf8_lossy(&missing.stdout).contains("does not exist")
            || String::from_utf8_lossy(&missing.stderr).contains("does not exist"),
        "{missing:?}"
    );
    // Migrated as the owner, the rights given; again, with nothing to apply.
    for _ in 0..2 {
        let migrated = migrate(&owner_url, Some("shortener_app"));
        assert!(migrated.status.success(), "{migrated:?}");
    }
    // Every table of the schema has its line in the grants.
    let owner = connect(&owner_url).await;
    let tables: BTreeSet<String> = owner
        .query(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let granted: BTreeSet<String> = APP_ROLE_PRIVILEGES
        .iter()
        .map(|(table, _)| (*table).to_owned())
        .collect();
    assert_eq!(
        tables, granted,
        "a table without its grants (or a grant without its table)"
    );

    // The service, as the login member of the application role.
    let key = common::make_key(&owner_url, "owner", "links");
    let app = spawn_app_on(&app_url, &[]).await;
    let current_user = app
        .db()
        .await
        .query_one("SELECT current_user", &[])
        .await
        .unwrap();
    assert_eq!(current_user.get::<_, String>(0), "shortener_app_a");

    let anonymous = app.create("https://example.com/anonymous").await;
    let made = app
        .keyed_with(
            "POST",
            "/shorten",
            &key,
            r#"{"url": "https://example.com/owned", "alias": "owned-link", "max_visits": 5}"#,
            &[("Idempotency-Key", "role-test-1")],
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text());
    let replayed = app
        .keyed_with(
            "POST",
            "/shorten",
            &key,
            r#"{"url": "https://example.com/owned", "alias": "owned-link", "max_visits": 5}"#,
            &[("Idempotency-Key", "role-test-1")],
        )
        .await;
    assert_eq!(replayed.status, 201, "{}", replayed.text());
    let batch = app
        .keyed(
            "POST",
            "/shorten/batch",
            &key,
            r#"{"items": [{"url": "https://example.com/b1"}, {"url": "https://example.com/b2"}]}"#,
        )
        .await;
    assert_eq!(batch.status, 200, "{}", batch.text());
    assert_eq!(app.get(&format!("/{anonymous}")).await.status, 302);
    // The one redirect that writes: a visit taken from a limited link.
    assert_eq!(app.get("/owned-link").await.status, 302);
    let edited = app
        .keyed(
            "PATCH",
            "/owned-link",
            &key,
            r#"{"url": "https://example.com/edited"}"#,
        )
        .await;
    assert_eq!(edited.status, 200, "{}", edited.text());
    assert_eq!(app.keyed("GET", "/links", &key, "").await.status, 200);
    assert_eq!(app.get("/owned-link/qr").await.status, 200);
    // Clicks are counted in the database, and the key's use recorded.
    let counted = eventually(Duration::from_secs(10), || async {
        app.get(&format!("/{anonymous}/stats")).await.json()["clicks"] == 1
    })
    .await;
    assert!(counted, "the click was never written");
    let used = eventually(Duration::from_secs(15), || async {
        common::scalar(&owner, "SELECT count(*) FROM api_key_usage").await == 1
    })
    .await;
    assert!(used, "the key's use was never recorded");
    assert_eq!(
        app.keyed("DELETE", "/owned-link", &key, "").await.status,
        204
    );
    app.get("/owned-link").await.assert_problem(410);
    let ready = common::send(app.admin, "GET", "/readyz", &[], b"").await;
    assert_eq!(ready.status, 200, "{}", ready.text());

    // And nothing more: the same role, by hand.
    let db = connect(&app_url).await;
    assert_eq!(
        scalar_or_refused(&db, "SELECT count(*) FROM api_keys").await,
        Ok(1)
    );
    let insufficient = Some("42501".to_owned());
    for sql in [
        "DROP TABLE links",
        "TRUNCATE links",
        "DELETE FROM links",
        "CREATE TABLE mine (id int)",
        "ALTER TABLE links ADD COLUMN mine int",
        "UPDATE api_keys SET revoked_at = now()",
        "INSERT INTO api_keys (name, scope, digest) VALUES ('mine', 'admin', 'x')",
        "DELETE FROM api_keys",
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log",
        // The feed is appended to and pruned after a week (ADR 0013), never rewritten.
        "UPDATE link_changes SET version = 1",
        "DELETE FROM refinery_schema_history",
    ] {
        assert_eq!(refused(&db, sql).await, insufficient, "{sql}");
    }
    app.shutdown().await;
}

async fn scalar_or_refused(db: &tokio_postgres::Client, sql: &str) -> Result<i64, String> {
    db.query_one(sql, &[])
        .await
        .map(|row| row.get(0))
        .map_err(|error| error.to_string())
}

#[test]
fn migrate_waits_for_a_database_that_starts_after_it_within_its_bound() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::sync::mpsc;

    // Made, not started: nothing listens on its port yet.
    let server = OwnPostgres::init();
    let mut migrate = Command::new(env!("CARGO_BIN_EXE_shortener"))
        .env_clear()
        .env("DATABASE_URL", server.url("postgres"))
        .env("SHORTENER_MIGRATE_WAIT", "60s")
        .env("SHORTENER_LOG_FORMAT", "text")
        .arg("migrate")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shortener migrate");
    let (lines, heard) = mpsc::channel();
    for pipe in [
        Box::new(migrate.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(migrate.stderr.take().unwrap()),
    ] {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
    }
    // It tried, found nothing, and waits.
    let waiting = heard
        .iter()
        .take(20)
        .any(|line| line.contains("the database does not answer yet"));
    assert!(waiting, "migrate never said it was waiting");
    assert!(migrate.try_wait().unwrap().is_none(), "migrate gave up");
    server.start_again();
    let status = migrate.wait().unwrap();
    let output: Vec<String> = heard.try_iter().collect();
    assert!(status.success(), "{output:?}");
    let rows = Command::new("psql")
        .args(["-X", "-A", "-t", "-d"])
        .arg(server.url("postgres"))
        .args(["-c", "SELECT count(*) FROM refinery_schema_history"])
        .output()
        .unwrap();
    let applied: i64 = String::from_utf8_lossy(&rows.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(applied >= 2, "{applied} migrations applied");
}
