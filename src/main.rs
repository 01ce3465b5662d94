//! The `shortener` binary: parse the command line, then run the subcommand ([`shortener::cli`]).

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use shortener::cli::{self, EXIT_CONFIG};
use shortener::config::Cli;

#[cfg(all(feature = "jemalloc", feature = "mimalloc"))]
compile_error!("choose one allocator: the features jemalloc and mimalloc exclude each other");

/// The allocator, when a feature chooses one other than the system's (ADR 0008).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
/// jemalloc's settings, read when it starts (ADR 0008): a background thread purges the pages a
/// burst freed (a connection flood) within the decay time, so an idle process does not stay at
/// its peak; without it, jemalloc purges only when the process allocates again.
/// `_RJEM_MALLOC_CONF` in the environment overrides these.
#[cfg(feature = "jemalloc")]
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: Option<&'static std::ffi::c_char> =
    // SAFETY: a pointer to the first byte of a static, NUL-terminated string.
    Some(unsafe { &*c"background_thread:true".as_ptr() });
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match Cli::try_parse() {
        Ok(cli) => cli::run(cli.command),
        Err(error) => {
            let _ = error.print();
            match error.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(EXIT_CONFIG),
            }
        }
    }
}
