//! Counters for the redirect path, sharded by thread.
//!
//! A `metrics` counter handle of the Prometheus recorder is two atomic adds on cache lines
//! every runtime worker shares (the value and a generation counter): measured, the metrics of
//! a redirect cost 5 % of its throughput on two cores, most of it those lines bouncing between
//! the cores. Here each thread adds to a row of its own (a shard, on cache lines no other shard
//! touches), and a scrape sums the rows: the recorder's handles are set to the sums then
//! ([`CounterFamily::publish`]), and the request-duration histogram, which a handle cannot be
//! set to, is rendered from its sums directly ([`DurationHistograms::render`]).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use ::metrics::Counter;

/// Rows per family; threads beyond this share rows (correct, only slower).
const SHARDS: usize = 16;

/// One thread's row, on cache lines of its own.
#[repr(align(128))]
struct Row<const N: usize>([AtomicU64; N]);

impl<const N: usize> Row<N> {
    fn new() -> Self {
        Row(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// The row of the calling thread: threads are given rows in turn, once.
fn row_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static ROW: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    ROW.with(|row| *row)
}

/// `N` counters, sharded.
pub struct Sharded<const N: usize> {
    rows: Box<[Row<N>]>,
}

impl<const N: usize> Default for Sharded<N> {
    fn default() -> Self {
        Sharded {
            rows: (0..SHARDS).map(|_| Row::new()).collect(),
        }
    }
}

impl<const N: usize> Sharded<N> {
    #[inline]
    pub fn add(&self, index: usize, value: u64) {
        self.rows[row_index()].0[index].fetch_add(value, Ordering::Relaxed);
    }

    /// The total of counter `index` over every row.
    pub fn sum(&self, index: usize) -> u64 {
        self.rows
            .iter()
            .map(|row| row.0[index].load(Ordering::Relaxed))
            .sum()
    }
}

/// `N` sharded counters and the recorder handles their sums are published to.
pub struct CounterFamily<const N: usize> {
    counts: Sharded<N>,
    handles: Vec<Counter>,
}

impl<const N: usize> CounterFamily<N> {
    /// `handles` in index order (no-op handles when metrics are off).
    pub fn new(handles: Vec<Counter>) -> Self {
        assert_eq!(handles.len(), N, "one handle per counter");
        CounterFamily {
            counts: Sharded::default(),
            handles,
        }
    }

    pub fn noop() -> Self {
        Self::new((0..N).map(|_| Counter::noop()).collect())
    }

    #[inline]
    pub fn increment(&self, index: usize) {
        self.counts.add(index, 1);
    }

    /// Sets each handle to its counter's total, before a render.
    pub fn publish(&self) {
        for (index, handle) in self.handles.iter().enumerate() {
            handle.absolute(self.counts.sum(index));
        }
    }
}

/// Per-route request-duration histograms: `ROUTES` of them over `bounds`.
pub struct DurationHistograms<const SLOTS: usize> {
    name: &'static str,
    help: &'static str,
    label: &'static str,
    /// Each histogram's label value.
    routes: Vec<&'static str>,
    /// Bucket bounds in nanoseconds, ascending.
    bounds_ns: Vec<u64>,
    /// The same bounds as Prometheus writes them.
    bounds_text: Vec<String>,
    /// Per route: a slot per bound, one past the last bound, and the sum in nanoseconds.
    counts: Sharded<SLOTS>,
}

impl<const SLOTS: usize> DurationHistograms<SLOTS> {
    pub fn new(
        (name, help, label): (&'static str, &'static str, &'static str),
        routes: Vec<&'static str>,
        bounds_seconds: &[f64],
    ) -> Self {
        assert_eq!(
            SLOTS,
            routes.len() * Self::slots_per_route(bounds_seconds.len()),
            "room for every route's buckets and sum"
        );
        DurationHistograms {
            name,
            help,
            label,
            routes,
            bounds_ns: bounds_seconds
                .iter()
                .map(|bound| (bound * 1e9).round() as u64)
                .collect(),
            bounds_text: bounds_seconds
                .iter()
                .map(|bound| bound.to_string())
                .collect(),
            counts: Sharded::default(),
        }
    }

    /// A slot per bound, one for +Inf, one for the sum.
    pub const fn slots_per_route(bounds: usize) -> usize {
        bounds + 2
    }

    #[inline]
    pub fn record(&self, route: usize, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = self
            .bounds_ns
            .iter()
            .position(|bound| nanos <= *bound)
            .unwrap_or(self.bounds_ns.len());
        let base = route * Self::slots_per_route(self.bounds_ns.len());
        self.counts.add(base + bucket, 1);
        self.counts
            .add(base + self.bounds_ns.len() + 1, nanos.min(u64::MAX / 4));
    }

    /// Appends the histograms in the text exposition format.
    pub fn render(&self, text: &mut String) {
        let _ = writeln!(text, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(text, "# TYPE {} histogram", self.name);
        let bounds = self.bounds_ns.len();
        for (route_index, route) in self.routes.iter().enumerate() {
            let base = route_index * Self::slots_per_route(bounds);
            let mut cumulative = 0;
            for (bucket, bound) in self.bounds_text.iter().enumerate() {
                cumulative += self.counts.sum(base + bucket);
                let _ = writeln!(
                    text,
                    "{}_bucket{{{}=\"{route}\",le=\"{bound}\"}} {cumulative}",
                    self.name, self.label
                );
            }
            cumulative += self.counts.sum(base + bounds);
            let sum_seconds = self.counts.sum(base + bounds + 1) as f64 / 1e9;
            let name = self.name;
            let label = self.label;
            let _ = writeln!(
                text,
                "{name}_bucket{{{label}=\"{route}\",le=\"+Inf\"}} {cumulative}"
            );
            let _ = writeln!(text, "{name}_sum{{{label}=\"{route}\"}} {sum_seconds}");
            let _ = writeln!(text, "{name}_count{{{label}=\"{route}\"}} {cumulative}");
        }
        text.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_many_threads_add_up() {
        let counts = std::sync::Arc::new(Sharded::<3>::default());
        let threads: Vec<_> = (0..40)
            .map(|_| {
                let counts = std::sync::Arc::clone(&counts);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        counts.add(1, 1);
                    }
                    counts.add(2, 5);
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(
            (counts.sum(0), counts.sum(1), counts.sum(2)),
            (0, 40_000, 200)
        );
    }

    #[test]
    fn histograms_render_cumulative_buckets_a_sum_and_a_count() {
        let histograms = DurationHistograms::<{ 2 * 5 }>::new(
            ("t_seconds", "Test.", "route"),
            vec!["a", "b"],
            &[0.001, 0.01, 0.1],
        );
        histograms.record(0, Duration::from_micros(500));
        histograms.record(0, Duration::from_millis(10));
        histograms.record(0, Duration::from_secs(3));
        let mut text = String::new();
        histograms.render(&mut text);
        for line in [
            "# TYPE t_seconds histogram",
            r#"t_seconds_bucket{route="a",le="0.001"} 1"#,
            r#"t_seconds_bucket{route="a",le="0.01"} 2"#,
            r#"t_seconds_bucket{route="a",le="0.1"} 2"#,
            r#"t_seconds_bucket{route="a",le="+Inf"} 3"#,
            r#"t_seconds_sum{route="a"} 3.0105"#,
            r#"t_seconds_count{route="a"} 3"#,
            r#"t_seconds_bucket{route="b",le="+Inf"} 0"#,
            r#"t_seconds_count{route="b"} 0"#,
        ] {
            assert!(
                text.lines().any(|candidate| candidate == line),
                "{line}\n{text}"
            );
        }
    }
}
