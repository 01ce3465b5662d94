//! What the service tells its operators: metrics on or off, and the log format and filter.

use clap::Args;

use super::parse::{self, ConfigErrors};
use crate::telemetry::metrics::Recording;
use crate::telemetry::{LogFormat, LogSettings};

/// Read by the log filter, not by an option of ours.
pub(super) const LOG_FILTER_VARIABLE: &str = "RUST_LOG";
const LOG_FORMAT_VARIABLE: &str = "SHORTENER_LOG_FORMAT";

#[derive(Debug, Args)]
pub struct TelemetryArgs {
    /// `on`: record Prometheus metrics and serve them on the admin listener's /metrics;
    /// `off`: record nothing (/metrics answers 404).
    #[arg(long, env = "SHORTENER_METRICS", default_value = "on")]
    pub metrics: String,
    /// Log lines as `json` or `text`; `auto`: text on a terminal, JSON otherwise.
    #[arg(long, env = "SHORTENER_LOG_FORMAT", default_value = "auto")]
    pub log_format: String,
}

/// Metrics and logs (the access log is the HTTP layer's: `server`).
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    pub metrics: Recording,
    pub logs: LogSettings,
}

impl TelemetryArgs {
    pub(super) fn parse(&self, errors: &mut ConfigErrors) -> Option<TelemetryConfig> {
        let metrics = errors.take(
            "SHORTENER_METRICS",
            parse::switch(&self.metrics).map(|on| if on { Recording::On } else { Recording::Off }),
        );
        let format = errors.take(
            LOG_FORMAT_VARIABLE,
            LogFormat::parse(self.log_format.trim()),
        );
        Some(TelemetryConfig {
            metrics: metrics?,
            logs: LogSettings {
                format: format?,
                filter: log_filter(),
            },
        })
    }
}

/// `RUST_LOG`, when set.
fn log_filter() -> Option<String> {
    std::env::var(LOG_FILTER_VARIABLE).ok()
}

/// The logs of the commands that run once (`migrate`, `disable`, `enable`, `seed`):
/// `SHORTENER_LOG_FORMAT` if it parses, `auto` otherwise, and `RUST_LOG`.
pub fn command_logs() -> LogSettings {
    let auto = || LogFormat::parse("auto").unwrap_or(LogFormat::Json);
    LogSettings {
        format: std::env::var(LOG_FORMAT_VARIABLE)
            .ok()
            .and_then(|raw| LogFormat::parse(raw.trim()).ok())
            .unwrap_or_else(auto),
        filter: log_filter(),
    }
}
