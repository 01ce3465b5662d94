//! Signals: SIGTERM and SIGINT ask the service to stop; SIGHUP (or a change of the file)
//! reloads the blocklist file.
//! Each handler is a task that ends with the service (its `until` token).

use std::path::PathBuf;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::domain::Blocklist;
use crate::telemetry::metrics::{BlocklistMetrics, ReloadResult};

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
        let signal = tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
            _ = until.cancelled() => return,
        };
        // Logged once the stop is under way: readiness already answers 503.
        stop.cancel();
        tracing::info!("{signal} received");
    }
}

/// The SIGHUP stream, registered now: registered before the service serves, a SIGHUP never
/// finds the process without a handler (which would end it).
pub fn hangup() -> std::io::Result<Signal> {
    signal(SignalKind::hangup())
}

/// Reads the blocklist file again on every SIGHUP, and whenever the file it names changes
/// (looked at every `watch_every`; `None`: never), until `until` is cancelled, so answering
/// abuse needs neither a restart nor a shell in the container. A change is what a Kubernetes
/// ConfigMap update makes (the path is a symlink through `..data`, which the kubelet swaps to a
/// new directory) as well as an edit in place or a file renamed over it: the file the path
/// leads to now is compared with the one read last, by device, inode, size and modification
/// time. A file that cannot be read or parsed leaves the list as it was (and says why, once per
/// change); each reload is logged with its count.
pub async fn reload_blocklist(
    mut hangup: Signal,
    path: PathBuf,
    blocklist: Blocklist,
    watch_every: Option<Duration>,
    metrics: BlocklistMetrics,
    until: CancellationToken,
) {
    let mut reloads: u64 = 0;
    let mut seen = FileStamp::of(&path);
    let mut ticks = watch_every.map(|every| {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks
    });
    loop {
        let why = tokio::select! {
            received = hangup.recv() => match received {
                Some(()) => "SIGHUP",
                None => return,
            },
            _ = tick(&mut ticks) => {
                let now = FileStamp::of(&path);
                if now == seen {
                    continue;
                }
                seen = now;
                "the file changed"
            }
            _ = until.cancelled() => return,
        };
        let read = tokio::fs::read_to_string(&path).await;
        let parsed = match read {
            Ok(text) => Blocklist::parse(&text).map_err(|errors| errors.join("; ")),
            Err(error) => Err(format!("cannot read it: {error}")),
        };
        match parsed {
            Ok(fresh) => {
                reloads += 1;
                blocklist.replace_with(&fresh);
                metrics.reload(ReloadResult::Reloaded);
                metrics.entries.set(fresh.len() as f64);
                tracing::info!(reloads, entries = fresh.len(), path = %path.display(), why, "blocklist reloaded");
            }
            Err(error) => {
                metrics.reload(ReloadResult::Refused);
                tracing::error!(%error, path = %path.display(), why, "blocklist not reloaded; the previous list stays in force");
            }
        }
    }
}

/// The next tick of `ticks`; never, without them.
async fn tick(ticks: &mut Option<tokio::time::Interval>) {
    match ticks {
        Some(ticks) => {
            ticks.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Which file a path leads to now, and its version: equal stamps are the same contents (as
/// far as a stat can tell). `None` when the path leads nowhere.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp(Option<(u64, u64, u64, Option<std::time::SystemTime>)>);

impl FileStamp {
    fn of(path: &std::path::Path) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        // `metadata` follows every symlink: the ConfigMap's `..data` swap shows as another
        // inode.
        FileStamp(
            std::fs::metadata(path)
                .ok()
                .map(|meta| (meta.dev(), meta.ino(), meta.len(), meta.modified().ok())),
        )
    }
}
