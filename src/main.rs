//! The `shortener` binary: parse the command line, then serve or migrate.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use shortener::config::{Cli, Command, LinkArgs, config_names, unknown_variables};
use shortener::storage::LinkState;
use shortener::{Listeners, run, shutdown, telemetry};
use tokio_util::sync::CancellationToken;

#[cfg(all(feature = "jemalloc", feature = "mimalloc"))]
compile_error!("choose one allocator: the features jemalloc and mimalloc exclude each other");

/// The allocator, when a feature chooses one other than the system's (ADR 0008).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long `disable` / `enable` wait for Redis.
const REDIS_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
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
            let database_url = match args.database.resolve() {
                Ok(url) => url,
                Err(error) => return configuration_error(&error),
            };
            let _logs = telemetry::init(telemetry::LogFormat::from_environment());
            match runtime.block_on(shortener::storage::migrate(&database_url)) {
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
        Command::Seed(args) => seed(&runtime, args),
        Command::Disable(args) => set_link_state(&runtime, args, LinkState::Disabled),
        Command::Enable(args) => set_link_state(&runtime, args, LinkState::Enabled),
        Command::Serve(args) if args.list_config_names => {
            for name in config_names() {
                println!("{name}");
            }
            ExitCode::SUCCESS
        }
        Command::Serve(args) => {
            let config = match args.validate() {
                Ok(config) => config,
                Err(errors) => {
                    eprint!("{errors}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let _logs = telemetry::init(config.log_format);
            let environment = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok());
            for name in unknown_variables(environment) {
                tracing::warn!(variable = %name, "unknown SHORTENER_ variable; it is ignored");
            }
            runtime.block_on(async {
                let listeners = match bind(&config).await {
                    Ok(listeners) => listeners,
                    Err((address, error)) => {
                        tracing::error!(%address, error = %telemetry::Chain(&error), "cannot listen on this address");
                        return ExitCode::from(EXIT_CANNOT_LISTEN);
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

/// `shortener seed --links N [--codes-out FILE]` (hidden: load tests only).
fn seed(runtime: &tokio::runtime::Runtime, args: shortener::config::SeedArgs) -> ExitCode {
    let (count, codes_out) = (args.links, args.codes_out.clone());
    let (database_url, key, development) = match args.resolve() {
        Ok(resolved) => resolved,
        Err(error) => return configuration_error(&error),
    };
    let _logs = telemetry::init(telemetry::LogFormat::from_environment());
    if development {
        tracing::warn!("SHORTENER_CODE_KEY is not set: seeding with the public development key");
    }
    let codes = match runtime.block_on(shortener::seed::seed(&database_url, &key, count)) {
        Ok(codes) => codes,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "seeding failed");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = codes_out {
        // The runtime is idle here: a plain write is fine.
        let mut text = codes.join("\n");
        text.push('\n');
        if let Err(error) = std::fs::write(&path, text) {
            tracing::error!(path = %path.display(), error = %telemetry::Chain(&error), "cannot write the codes");
            return ExitCode::FAILURE;
        }
    }
    tracing::info!(links = codes.len(), "seeded");
    ExitCode::SUCCESS
}

/// Exit status when a listener cannot be bound (in use, or not an address of this host):
/// sysexits' EX_UNAVAILABLE.
const EXIT_CANNOT_LISTEN: u8 = 69;

/// Both listeners, or the address that could not be bound and why.
async fn bind(
    config: &shortener::config::Config,
) -> Result<Listeners, (std::net::SocketAddr, std::io::Error)> {
    let listen = |address| {
        shortener::http::bind(address, config.listen_backlog).map_err(|error| (address, error))
    };
    Ok(Listeners {
        main: listen(config.listen)?,
        admin: listen(config.admin_listen)?,
    })
}

/// `shortener disable CODE` / `enable CODE`. Exit 1 when no link has the code.
fn set_link_state(runtime: &tokio::runtime::Runtime, args: LinkArgs, state: LinkState) -> ExitCode {
    let database_url = match args.database.resolve() {
        Ok(url) => url,
        Err(error) => return configuration_error(&error),
    };
    let _logs = telemetry::init(telemetry::LogFormat::from_environment());
    let changed = runtime.block_on(shortener::storage::set_link_state(
        &database_url,
        &args.code,
        state,
    ));
    match changed {
        Ok(true) => {
            forget_in_redis(runtime, &args.redis, &args.code);
            tracing::info!(code = %args.code, ?state, "link updated; instances that cached it follow within SHORTENER_CACHE_TTL");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            tracing::error!(code = %args.code, "no link has this code");
            ExitCode::FAILURE
        }
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "cannot update the link");
            ExitCode::FAILURE
        }
    }
}

fn configuration_error(error: &str) -> ExitCode {
    eprintln!("invalid configuration: DATABASE_URL: {error}");
    ExitCode::from(EXIT_CONFIG)
}

/// Deletes the link's Redis key, so instances that miss in memory read its new state.
fn forget_in_redis(
    runtime: &tokio::runtime::Runtime,
    args: &shortener::config::RedisArgs,
    code: &str,
) {
    let redis = match shortener::config::parse_redis(args) {
        Ok(Some(redis)) => redis,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(%error, "redis not configured correctly; its key is left to expire");
            return;
        }
    };
    let deleted = runtime.block_on(async {
        let store = shortener::storage::RedisStore::connect(&redis.settings).ok()?;
        store.wait_connected(REDIS_WAIT).await.then_some(())?;
        store.delete_link(code).await.ok()
    });
    if deleted.is_none() {
        tracing::warn!(
            code,
            "could not delete the link's Redis key; it expires within SHORTENER_REDIS_TTL"
        );
    }
}
