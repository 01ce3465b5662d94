//! Signals: SIGTERM and SIGINT ask the service to stop; SIGHUP reloads the blocklist file.
//! Each handler is a task that ends with the service (its `until` token).

use std::path::PathBuf;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::domain::Blocklist;

/// The SIGTERM and SIGINT streams, registered now (a signal that arrives before the task
/// runs is not lost).
pub struct TerminateSignals {
    terminate: Signal,
    interrupt: Signal,
}

impl TerminateSignals {
    pub fn register() -> std::io::Result<Self> {
        Ok(TerminateSignals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Cancels `stop` on the first SIGTERM or SIGINT; returns then, or when `until` is
    /// cancelled.
    pub async fn stop_on_first(mut self, stop: CancellationToken, until: CancellationToken) {
        tokio::select! {
            _ = self.terminate.recv() => tracing::info!("SIGTERM received"),
            _ = self.interrupt.recv() => tracing::info!("SIGINT received"),
            _ = until.cancelled() => return,
        }
        stop.cancel();
    }
}

/// The SIGHUP stream, registered now: registered before the service serves, a SIGHUP never
/// finds the process without a handler (which would end it).
pub fn hangup() -> std::io::Result<Signal> {
    signal(SignalKind::hangup())
}

/// Reads the blocklist file again on every SIGHUP until `until` is cancelled, so answering
/// abuse needs no restart. A file that cannot be read or parsed leaves the list as it was (and
/// says why); each reload is logged with its count.
pub async fn reload_blocklist_on_hangup(
    mut hangup: Signal,
    path: PathBuf,
    blocklist: Blocklist,
    until: CancellationToken,
) {
    let mut reloads: u64 = 0;
    loop {
        tokio::select! {
            received = hangup.recv() => if received.is_none() { return },
            _ = until.cancelled() => return,
        }
        let read = tokio::fs::read_to_string(&path).await;
        let parsed = match read {
            Ok(text) => Blocklist::parse(&text).map_err(|errors| errors.join("; ")),
            Err(error) => Err(format!("cannot read it: {error}")),
        };
        match parsed {
            Ok(fresh) => {
                reloads += 1;
                blocklist.replace_with(&fresh);
                tracing::info!(reloads, entries = fresh.len(), path = %path.display(), "blocklist reloaded");
            }
            Err(error) => {
                tracing::error!(%error, path = %path.display(), "blocklist not reloaded; the previous list stays in force");
            }
        }
    }
}
