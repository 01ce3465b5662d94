//! `shortener migrate`: apply the embedded SQL migrations to `DATABASE_URL`, then exit.

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
    let _logs = telemetry::init(&command_logs());
    match runtime.block_on(storage::migrate(&target)) {
        Ok(applied) => {
            tracing::info!(?applied, "migrations applied");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "migration failed");
            ExitCode::FAILURE
        }
    }
}
