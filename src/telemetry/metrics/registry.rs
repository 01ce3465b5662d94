//! Registering handles on one server's recorder: each name described once, every label set
//! registered up front; without a recorder (metrics off) every handle is a no-op.

use std::sync::Arc;

use ::metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::PrometheusRecorder;

use super::vocabulary::Vocabulary;

/// Registers handles on one recorder, describing each name once; without a recorder
/// (metrics off) every handle is a no-op.
pub(super) struct Registry<'a> {
    pub(super) recorder: Option<&'a PrometheusRecorder>,
}

const METADATA: Metadata<'static> = Metadata::new("shortener", Level::INFO, None);

impl Registry<'_> {
    pub(super) fn static_labels(labels: &[(&'static str, &'static str)]) -> Vec<Label> {
        labels
            .iter()
            .map(|(key, value)| Label::from_static_parts(key, value))
            .collect()
    }

    pub(super) fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> Counter {
        self.counter_owned(name, help, Self::static_labels(labels))
    }

    pub(super) fn gauge(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> Gauge {
        self.gauge_owned(name, help, Self::static_labels(labels))
    }

    /// A gauge whose labels may be built at start-up (database names).
    pub(super) fn gauge_owned(
        &self,
        name: &'static str,
        help: &'static str,
        labels: Vec<Label>,
    ) -> Gauge {
        let Some(recorder) = self.recorder else {
            return Gauge::noop();
        };
        recorder.describe_gauge(KeyName::from_const_str(name), None, help.into());
        recorder.register_gauge(&Key::from_parts(name, labels), &METADATA)
    }

    pub(super) fn counter_owned(
        &self,
        name: &'static str,
        help: &'static str,
        labels: Vec<Label>,
    ) -> Counter {
        let Some(recorder) = self.recorder else {
            return Counter::noop();
        };
        recorder.describe_counter(KeyName::from_const_str(name), None, help.into());
        recorder.register_counter(&Key::from_parts(name, labels), &METADATA)
    }

    pub(super) fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> Histogram {
        let Some(recorder) = self.recorder else {
            return Histogram::noop();
        };
        recorder.describe_histogram(KeyName::from_const_str(name), None, help.into());
        let key = Key::from_parts(name, Self::static_labels(labels));
        recorder.register_histogram(&key, &METADATA)
    }

    /// One counter per value of `V`, under the label `label`.
    pub(super) fn counters_by<V: Vocabulary>(
        &self,
        name: &'static str,
        help: &'static str,
        label: &'static str,
    ) -> Arc<[Counter]> {
        V::labels()
            .iter()
            .map(|value| self.counter(name, help, &[(label, value)]))
            .collect()
    }

    /// One counter per pair of values, `A` major.
    pub(super) fn counters_by_pair<A: Vocabulary, B: Vocabulary>(
        &self,
        name: &'static str,
        help: &'static str,
        labels: (&'static str, &'static str),
    ) -> Arc<[Counter]> {
        let mut handles = Vec::with_capacity(A::labels().len() * B::labels().len());
        for a in A::labels() {
            for b in B::labels() {
                handles.push(self.counter(name, help, &[(labels.0, a), (labels.1, b)]));
            }
        }
        handles.into()
    }
}

pub(super) fn noops(count: usize) -> Arc<[Counter]> {
    (0..count).map(|_| Counter::noop()).collect()
}
