//! `shortener migrate`: apply the embedded SQL migrations to `DATABASE_URL`, give the
//! application role (if one is named) its rights, then exit.

use std::process::ExitCode;
use std::time::{Duration, Instant};

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
    let wait = match args.wait() {
        Ok(wait) => wait,
        Err(reason) => {
            eprintln!("invalid configuration: SHORTENER_MIGRATE_WAIT: {reason}");
            return ExitCode::from(super::EXIT_CONFIG);
        }
    };
    let _logs = telemetry::init(&command_logs());
    let migrated = runtime.block_on(async {
        wait_for_database(&target, wait).await?;
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

/// Tries the database until it answers, for at most `wait` (backing off from a quarter of a
/// second to five), logging each miss; gives up at once when the credentials are refused.
async fn wait_for_database(target: &storage::PgTarget, wait: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(250);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match storage::database_answers(target).await {
            Ok(()) => return Ok(()),
            Err(storage::Unreachable::Refused(error)) => return Err(error),
            Err(storage::Unreachable::NotYet(error)) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(error.context(format!(
                        "the database did not answer within SHORTENER_MIGRATE_WAIT ({wait:?})"
                    )));
                }
                tracing::info!(
                    attempt,
                    error = format!("{error:#}"),
                    "the database does not answer yet; trying again"
                );
                tokio::time::sleep(pause.min(left)).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}
