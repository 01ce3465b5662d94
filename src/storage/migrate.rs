//! Applies the SQL files in `migrations/`, embedded in the binary, with refinery.

use anyhow::Context;

use super::PgTarget;

refinery::embed_migrations!("migrations");

/// The migrations embedded in this binary: (version, name), oldest first.
pub fn embedded_migrations() -> Vec<(i64, String)> {
    migrations::runner()
        .get_migrations()
        .iter()
        .map(|migration| (i64::from(migration.version()), migration.name().to_owned()))
        .collect()
}

/// Why one attempt to reach the database failed.
#[derive(Debug)]
pub enum Unreachable {
    /// Worth another try: nothing listens yet, the server is starting up or shutting down,
    /// the database is not created yet.
    NotYet(anyhow::Error),
    /// Trying again will not help (the credentials are refused).
    Refused(anyhow::Error),
}

/// One attempt to reach `target`: a connection and a query.
pub async fn database_answers(target: &PgTarget) -> Result<(), Unreachable> {
    let reached = super::on_own_connection(target, async |client: &mut tokio_postgres::Client| {
        client.simple_query("SELECT 1").await.map(drop)
    })
    .await;
    reached.map_err(|error| {
        // Class 28: invalid authorization. Anything else at connect time may pass.
        let refused = error
            .code()
            .is_some_and(|code| code.code().starts_with("28"));
        let error = anyhow::Error::new(error).context("connecting to the database");
        if refused {
            Unreachable::Refused(error)
        } else {
            Unreachable::NotYet(error)
        }
    })
}

/// Key of the session-level advisory lock every `migrate` holds while it runs, so two runs
/// (two rollouts' Jobs, a Job and an operator) apply migrations one after the other instead
/// of racing on refinery's history table. The value only has to be this program's own.
pub const MIGRATION_LOCK_KEY: i64 = 0x73_686f_7274_656e; // "shorten"

/// Applies every pending migration to `target`; a no-op when all are applied. Waits for any
/// other run to finish first (an advisory lock, released when this session ends). Answers the
/// names of the migrations applied by this call.
pub async fn migrate(target: &PgTarget) -> anyhow::Result<Vec<String>> {
    super::on_own_connection(target, async |client: &mut tokio_postgres::Client| {
        let locked = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
            .await
            .context("taking the migration lock")?;
        if !locked.try_get::<_, bool>(0)? {
            tracing::info!("another migration is running; waiting for it to finish");
            client
                .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
                .await
                .context("waiting for the migration lock")?;
        }
        let report = migrations::runner()
            .run_async(client)
            .await
            .context("applying migrations")?;
        Ok::<_, anyhow::Error>(
            report
                .applied_migrations()
                .iter()
                .map(|migration| migration.to_string())
                .collect(),
        )
    })
    .await
    .context("migrating the database")
}

/// What the role the service runs as may do with each table (`shortener migrate` with an
/// application role grants exactly this, and revokes anything else). Every table of the schema
/// is named: a migration that adds one adds it here too (a test compares the two).
pub const APP_ROLE_PRIVILEGES: &[(&str, &str)] = &[
    // Links are never deleted (a delete is a tombstone, its code never issued again).
    ("links", "SELECT, INSERT, UPDATE"),
    ("idempotency_keys", "SELECT, INSERT, UPDATE, DELETE"),
    ("link_clicks_daily", "SELECT, INSERT, UPDATE, DELETE"),
    // Pruned days folded in (retention).
    ("link_clicks_total", "SELECT, INSERT, UPDATE, DELETE"),
    ("stats_batches", "SELECT, INSERT, UPDATE, DELETE"),
    ("worker_leases", "SELECT, INSERT, UPDATE, DELETE"),
    // Keys are made and revoked by `shortener apikey`, run as the owner; the service reads them.
    ("api_keys", "SELECT"),
    ("api_key_usage", "SELECT, INSERT, UPDATE"),
    // Appended to, never rewritten; pruned after a week.
    ("link_changes", "SELECT, INSERT, DELETE"),
    // Appended to, never rewritten.
    ("audit_log", "SELECT, INSERT"),
    // Which migrations are applied (read to compare with the binary's).
    ("refinery_schema_history", "SELECT"),
];

/// Gives `role` (which must exist) the rights of [`APP_ROLE_PRIVILEGES`] and no others, with
/// the use of every sequence, in one transaction: the service never sees a moment without
/// them. Safe to run again; `role` must be a plain identifier (checked by the caller).
pub async fn grant_app_role(target: &PgTarget, role: &str) -> anyhow::Result<()> {
    super::on_own_connection(target, async |client: &mut tokio_postgres::Client| {
        let exists = client
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
            .await?
            .is_some();
        anyhow::ensure!(
            exists,
            "the role {role} does not exist: create it first (deploy/postgres/roles.sql)"
        );
        let role = format!("\"{role}\"");
        let mut sql = format!(
            "BEGIN;\n\
             GRANT USAGE ON SCHEMA public TO {role};\n\
             REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role};\n\
             REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role};\n\
             GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role};\n"
        );
        for (table, privileges) in APP_ROLE_PRIVILEGES {
            sql.push_str(&format!("GRANT {privileges} ON {table} TO {role};\n"));
        }
        sql.push_str("COMMIT;");
        client.batch_execute(&sql).await?;
        Ok::<_, anyhow::Error>(())
    })
    .await
    .context("granting the application role its rights")
}
