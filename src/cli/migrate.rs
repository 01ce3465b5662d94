//! `shortener migrate`: apply the embedded SQL migrations to `DATABASE_URL`, give the
//! application role (if one is named) its rights, then exit.

use std::process::ExitCode;

use tokio::runtime::Runtime;

use crate::config::{MigrateArgs, command_logs};
use crate::storage;
use crate::telemetry;

pub fn run(runtime: &Runtime, args: &MigrateArgs) -> ExitCode {
    let target = match args.primary.target() {
        Ok(target) => target,
        Err(reason) => return super::database_url_refused(&reason),
    };
    let app_role = match args.app_role() {
        Ok(role) => role,
        Err(reason) => {
            eprintln!("invalid configuration: SHORTENER_DATABASE_APP_ROLE: {reason}");
            return ExitCode::from(super::EXIT_CONFIG);
        }
    };
    let _logs = telemetry::init(&command_logs());
    let migrated = runtime.block_on(async {
        let applied = storage::migrate(&target).await?;
        tracing::info!(?applied, "migrations applied");
        if let Some(role) = app_role {
            storage::grant_app_role(&target, role).await?;
            tracing::info!(role, "the application role has the rights the service uses");
        }
        Ok::<_, anyhow::Error>(())
    });
    match migrated {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "migration failed");
            ExitCode::FAILURE
        }
    }
}
