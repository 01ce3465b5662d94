//! Applies the SQL files in `migrations/`, embedded in the binary, with refinery.

use anyhow::Context;

refinery::embed_migrations!("migrations");

/// Applies every pending migration to the database at `url`; a no-op when all are applied.
/// Answers the names of the migrations applied by this call.
pub async fn migrate(url: &str) -> anyhow::Result<Vec<String>> {
    let (mut client, connection) = super::connect_once(url)
        .await
        .context("connecting to the database to migrate it")?;
    let report = migrations::runner()
        .run_async(&mut client)
        .await
        .context("applying migrations")?;
    drop(client);
    let _ = connection.await;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|migration| migration.to_string())
        .collect())
}
