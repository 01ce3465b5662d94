//! The subcommands of the `shortener` binary, one module each. [`run`] builds the async
//! runtime and hands the parsed command to its module; each answers the process's exit status:
//! 0, 1 (it failed), [`EXIT_CONFIG`] (bad configuration), [`EXIT_CANNOT_LISTEN`].

mod apikey;
mod link_state;
mod migrate;
mod seed;
mod serve;

use std::process::ExitCode;

use crate::config::Command;
use link_state::LinkState;

/// Exit status for bad configuration (sysexits' EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;
/// Exit status when a listener cannot be bound (in use, or not an address of this host):
/// sysexits' EX_UNAVAILABLE.
pub const EXIT_CANNOT_LISTEN: u8 = 69;

/// Runs `command` to its end.
pub fn run(command: Command) -> ExitCode {
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
    match command {
        Command::Serve(args) => serve::run(&runtime, &args),
        Command::Migrate(args) => migrate::run(&runtime, &args),
        Command::Disable(args) => link_state::run(&runtime, &args, LinkState::Disabled),
        Command::Enable(args) => link_state::run(&runtime, &args, LinkState::Enabled),
        Command::Apikey(args) => apikey::run(&runtime, &args),
        Command::Audit(args) => apikey::audit(&runtime, &args),
        Command::Seed(args) => seed::run(&runtime, &args),
    }
}

/// The primary's URL of a command that runs once was refused.
fn database_url_refused(reason: &str) -> ExitCode {
    eprintln!("invalid configuration: DATABASE_URL: {reason}");
    ExitCode::from(EXIT_CONFIG)
}
