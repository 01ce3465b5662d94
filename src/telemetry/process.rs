//! The process's own series (`process_*`, as Prometheus' client libraries name them), read
//! from `/proc` when `/metrics` is scraped. `/proc` is served from kernel memory, so the
//! reads never wait on a disk. Elsewhere than Linux only the start time is exported.

use std::fmt::Write;

/// Appends the process series to an exposition text.
pub fn render(text: &mut String, started_unix_seconds: f64) {
    let mut series = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = write!(
            text,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n\n"
        );
    };
    series(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch, in seconds.",
        started_unix_seconds,
    );
    if let Some(cpu) = cpu_seconds() {
        series(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            cpu,
        );
    }
    if let Some(bytes) = resident_bytes() {
        series(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            bytes as f64,
        );
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        series(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            entries.count() as f64,
        );
    }
}

/// User plus system time, from fields 14 and 15 of `/proc/self/stat` (clock ticks).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let mut fields = after_name.split_ascii_whitespace().skip(11);
    let user: f64 = fields.next()?.parse().ok()?;
    let system: f64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf reads a constant of the C library and has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (user + system) / ticks as f64)
}

/// Resident pages (field 2 of `/proc/self/statm`) times the page size.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_ascii_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (page > 0).then(|| pages * page as u64)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn the_process_series_are_read_from_proc() {
        let mut text = String::new();
        super::render(&mut text, 1.5);
        assert!(text.contains("process_start_time_seconds 1.5\n"));
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
        ] {
            let line = text
                .lines()
                .find(|line| line.starts_with(name))
                .unwrap_or_else(|| panic!("{name} missing from {text}"));
            let value: f64 = line[name.len()..].parse().unwrap();
            // A young test process may not have used one clock tick of CPU yet.
            assert!(value > 0.0 || name.starts_with("process_cpu"), "{line}");
        }
    }
}
