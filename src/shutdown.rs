//! Turning SIGTERM and SIGINT into the cancellation of one token, and SIGHUP into a reload of
//! the blocklist.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGTERM or SIGINT.
pub async fn cancel_on_signal(token: CancellationToken) -> std::io::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = interrupt.recv() => tracing::info!("SIGINT received"),
    }
    token.cancel();
    Ok(())
}

/// Reads the blocklist file again on every SIGHUP until `stop` is cancelled, so answering abuse
/// needs no restart. A file that cannot be read or parsed leaves the list as it was (and says
/// why); each reload is logged with its count. `hangup` is registered by the caller before it
/// starts serving, so a SIGHUP can never find the process without a handler (which would end it).
pub async fn reload_blocklist_on_hangup(
    mut hangup: tokio::signal::unix::Signal,
    path: std::path::PathBuf,
    blocklist: crate::domain::Blocklist,
    stop: CancellationToken,
) {
    let mut reloads: u64 = 0;
    loop {
        tokio::select! {
            received = hangup.recv() => if received.is_none() { return },
            _ = stop.cancelled() => return,
        }
        match crate::config::read_blocklist(&path) {
            Ok(fresh) => {
                reloads += 1;
                blocklist.replace_with(&fresh);
                tracing::info!(reloads, entries = fresh.len(), path = %path.display(), "blocklist reloaded");
            }
            Err(error) => {
                tracing::error!(%error, "blocklist not reloaded; the previous list stays in force");
            }
        }
    }
}

/// The SIGHUP stream, registered now.
pub fn hangup() -> std::io::Result<tokio::signal::unix::Signal> {
    signal(SignalKind::hangup())
}
