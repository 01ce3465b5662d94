//! The `shortener` binary: parse the command line, then serve or migrate.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use shortener::config::{Cli, Command};
use shortener::{Listeners, run, shutdown, telemetry};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Exit status for bad configuration (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error)
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) =>
        {
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Migrate(args) => {
            telemetry::init();
            match runtime.block_on(shortener::storage::migrate(&args.database_url)) {
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
        Command::Serve(args) => {
            let config = match args.validate() {
                Ok(config) => config,
                Err(errors) => {
                    eprint!("{errors}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            telemetry::init();
            runtime.block_on(async {
                let listeners = match bind(&config).await {
                    Ok(listeners) => listeners,
                    Err(error) => {
                        tracing::error!(%error, "cannot bind the listeners");
                        return ExitCode::FAILURE;
                    }
                };
                let stop = CancellationToken::new();
                tokio::spawn(shutdown::cancel_on_signal(stop.clone()));
                match run(listeners, config, stop).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(error) => {
                        tracing::error!(error = format!("{error:#}"), "service failed");
                        ExitCode::FAILURE
                    }
                }
            })
        }
    }
}

async fn bind(config: &shortener::config::Config) -> std::io::Result<Listeners> {
    Ok(Listeners {
        main: TcpListener::bind(config.listen).await?,
        admin: TcpListener::bind(config.admin_listen).await?,
    })
}
