//! `shortener serve`: the configuration parsed (every problem at once, exit 64), the logs set
//! up, then [`Application`] built and run until SIGTERM or SIGINT.

use std::process::ExitCode;

use tokio::runtime::Runtime;

use super::{EXIT_CANNOT_LISTEN, EXIT_CONFIG};
use crate::config::{ServeArgs, config_names, unknown_variables_set};
use crate::startup::{Application, BuildError};
use crate::telemetry::{self, Chain};

pub fn run(runtime: &Runtime, args: &ServeArgs) -> ExitCode {
    if args.list_config_names {
        for name in config_names() {
            println!("{name}");
        }
        return ExitCode::SUCCESS;
    }
    let config = match args.parse() {
        Ok(config) => config,
        Err(errors) => {
            eprint!("{errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let _logs = telemetry::init(&config.telemetry.logs);
    for name in unknown_variables_set() {
        tracing::warn!(variable = %name, "unknown SHORTENER_ variable; it is ignored");
    }
    runtime.block_on(async {
        let application = match Application::build(config).await {
            Ok(application) => application,
            Err(BuildError::Listen { address, source }) => {
                tracing::error!(%address, error = %Chain(&source), "cannot listen on this address");
                return ExitCode::from(EXIT_CANNOT_LISTEN);
            }
            Err(error) => {
                tracing::error!(error = %Chain(&error), "the service cannot start");
                return ExitCode::FAILURE;
            }
        };
        if let Err(error) = application.stop_on_signals() {
            tracing::error!(error = %Chain(&error), "the service cannot start");
            return ExitCode::FAILURE;
        }
        match application.run_until_stopped().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "service failed");
                ExitCode::FAILURE
            }
        }
    })
}
