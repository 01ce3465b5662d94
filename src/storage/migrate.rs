//! Applies the SQL files in `migrations/`, embedded in the binary, with refinery.

use anyhow::Context;

use super::PgTarget;

refinery::embed_migrations!("migrations");

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
