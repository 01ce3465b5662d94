//! What the service tells its operators: logs and the Prometheus metrics of [`metrics`].
//!
//! Logs go to stderr through a non-blocking writer: a log storm during an outage fills a
//! bounded buffer that a thread of its own drains, and lines beyond it are dropped, so
//! logging never blocks a runtime worker. Lines are JSON or text (`SHORTENER_LOG_FORMAT`),
//! filtered by `RUST_LOG` (default `info`). A request's lines carry its `request_id`
//! ([`request_id`]); warnings that repeat are throttled ([`throttled!`](crate::throttled)).

pub mod metrics;
mod process;
pub mod request_id;
mod shards;

pub use request_id::{RequestId, current_request_id, request_span, with_request_id};

use std::error::Error;
use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::io::IsTerminal;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Log lines buffered for the writer thread; beyond this, lines are dropped, not waited for.
const LOG_BUFFER_LINES: usize = 65_536;

/// How log lines are written (`SHORTENER_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line: for log collectors.
    Json,
    /// Human-readable lines: for a terminal.
    Text,
}

impl LogFormat {
    /// `json`, `text`, or `auto` (text when stderr is a terminal, JSON otherwise).
    pub fn parse(raw: &str) -> Result<LogFormat, String> {
        match raw {
            "json" => Ok(LogFormat::Json),
            "text" => Ok(LogFormat::Text),
            "auto" => Ok(if std::io::stderr().is_terminal() {
                LogFormat::Text
            } else {
                LogFormat::Json
            }),
            other => Err(format!("'{other}' is not json, text or auto")),
        }
    }
}

/// How log lines are written and which are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub format: LogFormat,
    /// `RUST_LOG`'s directives; `info` when unset or unusable.
    pub filter: Option<String>,
}

/// Which requests get an access-log line (`SHORTENER_ACCESS_LOG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLog {
    Off,
    /// Answers with a 5xx status.
    Errors,
    All,
}

impl AccessLog {
    pub fn parse(raw: &str) -> Result<AccessLog, String> {
        match raw {
            "off" => Ok(AccessLog::Off),
            "errors" => Ok(AccessLog::Errors),
            "all" => Ok(AccessLog::All),
            other => Err(format!("'{other}' is not off, errors or all")),
        }
    }

    /// Whether an answer with `status` gets a line; with `All`, one below 500 only with
    /// probability `sample`.
    pub fn logs(self, status: u16, sample: f64) -> bool {
        match self {
            AccessLog::Off => false,
            AccessLog::Errors => status >= 500,
            AccessLog::All => status >= 500 || sample >= 1.0 || fastrand::f64() < sample,
        }
    }
}

/// Keeps the log writer thread alive; dropping it writes what is buffered. Hold it until the
/// process exits.
#[must_use = "logs written after the guard is dropped are lost"]
pub struct LogGuard(#[allow(dead_code)] Option<WorkerGuard>);

/// Installs the log subscriber (once per process; later calls change nothing).
pub fn init(settings: &LogSettings) -> LogGuard {
    let filter = settings
        .filter
        .as_deref()
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_BUFFER_LINES)
        .lossy(true)
        .thread_name("log-writer")
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match settings.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
    LogGuard(installed.is_ok().then_some(guard))
}

/// An error and every cause under it, `outer: inner: innermost` ("database unavailable: error
/// connecting to server: Connection refused (os error 111)"), for log lines.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(formatter, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// How often a warning that repeats (a database away, a failing dependency) is written: the
/// first, then one line per this long that says how many were left out.
pub const REPEAT_EVERY: Duration = Duration::from_secs(10);

/// The first event, then at most one per `every`, counting the ones left out. Lock-free: a
/// storm of failing requests costs each an atomic load, not a log line.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    /// Milliseconds since the process epoch of the last line written, plus one (0: none yet).
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl Throttle {
    pub const fn new(every: Duration) -> Self {
        Throttle {
            every,
            last_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(left out since the last line)` when this event is to be logged.
    pub fn admit(&self) -> Option<u64> {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        self.admit_at(EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64)
    }

    /// [`Throttle::admit`] at `elapsed_ms` since an epoch of the caller's (monotonic).
    fn admit_at(&self, elapsed_ms: u64) -> Option<u64> {
        let now = elapsed_ms + 1;
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= self.every.as_millis() as u64;
        if due
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::AcqRel));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// A `tracing` event at most once per [`REPEAT_EVERY`] from this call site, with a
/// `suppressed` field counting the ones left out since the last: `throttled!(warn, %error,
/// "message")`.
#[macro_export]
macro_rules! throttled {
    ($level:ident, $($rest:tt)+) => {{
        static THROTTLE: $crate::telemetry::Throttle =
            $crate::telemetry::Throttle::new($crate::telemetry::REPEAT_EVERY);
        if let Some(suppressed) = THROTTLE.admit() {
            tracing::$level!(suppressed, $($rest)+);
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storm_of_events_is_one_line_then_one_per_interval_with_a_count() {
        let throttle = Throttle::new(Duration::from_millis(200));
        assert_eq!(throttle.admit_at(0), Some(0), "the first is logged");
        let admitted = (0..1000).filter_map(|n| throttle.admit_at(n % 200)).count();
        assert_eq!(admitted, 0, "the storm within the interval is not");
        assert_eq!(
            throttle.admit_at(200),
            Some(1000),
            "then one line that counts the rest"
        );
        assert_eq!(
            throttle.admit_at(250),
            None,
            "and none until the next interval"
        );
        assert_eq!(throttle.admit_at(400), Some(1));
    }

    #[test]
    fn a_chain_names_every_cause() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let outer = std::io::Error::other(Wrapped(inner));
        assert_eq!(Chain(&outer).to_string(), "wrapped: refused");
    }

    #[derive(Debug)]
    struct Wrapped(std::io::Error);

    impl fmt::Display for Wrapped {
        fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("wrapped")
        }
    }

    impl Error for Wrapped {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }
}
