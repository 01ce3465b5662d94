//! What every section shares: the problem list, and the parsers of durations, numbers,
//! switches, lists, addresses and secrets (given directly or in a file). A parser answers why
//! a value is refused, without repeating a secret; the section names the variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

/// One configuration problem: the variable it is about, and why its value was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{variable}: {reason}")]
pub struct ConfigError {
    /// The environment variable (its flag is the same name in kebab case).
    pub variable: &'static str,
    pub reason: String,
}

/// Every problem found in one pass over the configuration, in the order found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// The parsed value, or `None` with the problem recorded against `variable`.
    pub(super) fn take<T>(
        &mut self,
        variable: &'static str,
        parsed: Result<T, String>,
    ) -> Option<T> {
        parsed.map_err(|reason| self.push(variable, reason)).ok()
    }

    pub(super) fn push(&mut self, variable: &'static str, reason: impl Into<String>) {
        self.0.push(ConfigError {
            variable,
            reason: reason.into(),
        });
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems, in the order they were found.
    pub fn problems(&self) -> &[ConfigError] {
        &self.0
    }
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "invalid configuration ({} problems):", self.0.len())?;
        for error in &self.0 {
            writeln!(f, "  - {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Longest duration any option takes: larger values are surely typos, and would overflow
/// deadline arithmetic.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// `250ms`, `1s`, `2m`, `1h`: a positive whole number and a unit, at most 24 hours.
pub fn duration(raw: &str) -> Result<Duration, String> {
    let duration = duration_or_zero(raw)?;
    if duration.is_zero() {
        return Err(format!("'{raw}' must be longer than zero"));
    }
    Ok(duration)
}

/// Like [`duration`], but `0s` is allowed.
pub fn duration_or_zero(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let error = || format!("'{raw}' is not a duration such as 250ms, 1s, 2m or 1h");
    let number: u64 = number.parse().map_err(|_| error())?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(error()),
    };
    number
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .filter(|duration| *duration <= MAX_DURATION)
        .ok_or_else(|| format!("'{raw}' is longer than 24h"))
}

/// A whole number above zero.
pub fn positive<T: std::str::FromStr + PartialOrd + Default>(raw: &str) -> Result<T, String> {
    match raw.trim().parse::<T>() {
        Ok(value) if value > T::default() => Ok(value),
        _ => Err(format!("'{}' is not a positive whole number", raw.trim())),
    }
}

/// `true`, `1`, `yes`, `on` or `false`, `0`, `no`, `off`.
pub fn switch(raw: &str) -> Result<bool, String> {
    match raw.trim() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        other => Err(format!("'{other}' is not true or false")),
    }
}

/// The non-empty items of a comma-separated list, trimmed.
pub fn list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(String::from)
        .collect()
}

pub fn socket_address(raw: &str) -> Result<SocketAddr, String> {
    let raw = raw.trim();
    raw.parse()
        .map_err(|_| format!("'{raw}' is not a socket address such as 0.0.0.0:8080"))
}

/// A secret given directly or in a file (a mounted secret), one of the two: `names` are the
/// variable and its `_FILE` variant. The file's trailing line break is dropped. Start-up only:
/// the runtime is not serving yet, so the small synchronous read blocks nobody.
pub fn secret(
    value: Option<String>,
    file: Option<PathBuf>,
    [name, file_name]: [&str; 2],
) -> Result<Option<String>, String> {
    match (value.filter(|value| !value.is_empty()), file) {
        (Some(_), Some(_)) => Err(format!("set {name} or {file_name}, not both")),
        (Some(value), None) => Ok(Some(value)),
        (None, Some(path)) => std::fs::read_to_string(&path)
            .map(|text| Some(text.trim_end_matches(['\r', '\n']).to_owned()))
            .map_err(|e| format!("cannot read {file_name} {}: {e}", path.display())),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        for bad in [
            "",
            "1",
            "s",
            "1.5s",
            "-1s",
            "0s",
            "10 s",
            "1d",
            "25h",
            "99999999999999999999h",
            "18446744073709551615h",
        ] {
            assert!(duration(bad).is_err(), "{bad}");
        }
        assert_eq!(duration_or_zero("0s"), Ok(Duration::ZERO));
        assert_eq!(duration("24h"), Ok(Duration::from_secs(86_400)));
    }

    #[test]
    fn every_problem_names_its_variable() {
        let mut errors = ConfigErrors::default();
        assert_eq!(errors.take("A", positive::<u32>("0")), None);
        assert_eq!(errors.take("B", positive::<u32>("3")), Some(3));
        assert_eq!(errors.problems().len(), 1);
        assert_eq!(errors.problems()[0].variable, "A");
        assert_eq!(
            errors.to_string(),
            "invalid configuration (1 problems):\n  - A: '0' is not a positive whole number\n"
        );
    }
}
