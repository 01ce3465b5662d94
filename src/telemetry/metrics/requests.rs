//! The redirect path's series: requests by route, method and status class with their
//! durations, resolution outcomes, and rate-limit decisions. Each is counted on every redirect,
//! so each is sharded by thread (`shards`) and published to the recorder when scraped.

use std::sync::Arc;
use std::time::Duration;

use ::metrics::Counter;

use super::DURATION_BUCKETS;
use super::registry::Registry;
use super::vocabulary::{HttpMethod, HttpRoute, LimitRoute, ResolveOutcome, StatusClass};
use crate::telemetry::shards::{CounterFamily, DurationHistograms};

const HTTP_REQUEST_COUNTERS: usize = HttpRoute::COUNT * HttpMethod::COUNT * StatusClass::COUNT;
const HTTP_DURATION_SLOTS: usize =
    HttpRoute::COUNT * DurationHistograms::<0>::slots_per_route(DURATION_BUCKETS.len());
const HTTP_DURATION: (&str, &str, &str) = (
    "http_server_request_duration_seconds",
    "Server time from the parsed request head to the response, by route.",
    "http_route",
);

/// Requests of the main listener: the redirect path's own series, sharded by thread
/// (`shards`), published to the recorder when scraped.
#[derive(Clone)]
pub struct HttpMetrics {
    inner: Arc<HttpInner>,
}

struct HttpInner {
    /// `[route][method][class]`.
    requests: CounterFamily<HTTP_REQUEST_COUNTERS>,
    durations: DurationHistograms<HTTP_DURATION_SLOTS>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics::with_handles(
            (0..HTTP_REQUEST_COUNTERS)
                .map(|_| Counter::noop())
                .collect(),
        )
    }
}

impl HttpMetrics {
    fn with_handles(requests: Vec<Counter>) -> Self {
        HttpMetrics {
            inner: Arc::new(HttpInner {
                requests: CounterFamily::new(requests),
                durations: DurationHistograms::new(
                    HTTP_DURATION,
                    HttpRoute::ALL.iter().map(|route| route.label()).collect(),
                    DURATION_BUCKETS,
                ),
            }),
        }
    }

    /// One request answered with `status` after `elapsed`.
    #[inline]
    pub fn observe(&self, route: HttpRoute, method: HttpMethod, status: u16, elapsed: Duration) {
        let class = match status {
            ..300 => StatusClass::Success,
            300..400 => StatusClass::Redirection,
            400..500 => StatusClass::ClientError,
            _ => StatusClass::ServerError,
        };
        let index = (route.index() * HttpMethod::COUNT + method.index()) * StatusClass::COUNT
            + class.index();
        self.inner.requests.increment(index);
        self.inner.durations.record(route.index(), elapsed);
    }

    pub(super) fn publish(&self) {
        self.inner.requests.publish();
    }

    pub(super) fn render_durations(&self, text: &mut String) {
        self.inner.durations.render(text);
    }
}

pub(super) fn http_metrics(registry: &Registry) -> HttpMetrics {
    let mut requests = Vec::new();
    for route in HttpRoute::ALL {
        for method in HttpMethod::ALL {
            for class in StatusClass::ALL {
                requests.push(registry.counter(
                    "http_server_requests_total",
                    "Requests answered by the main listener's router.",
                    &[
                        ("http_route", route.label()),
                        ("http_request_method", method.label()),
                        ("http_response_status_class", class.label()),
                    ],
                ));
            }
        }
    }
    HttpMetrics::with_handles(requests)
}

/// The read path's outcomes (sharded: a moka hit is counted on every cached redirect).
#[derive(Clone)]
pub struct ResolveMetrics {
    outcomes: Arc<CounterFamily<{ ResolveOutcome::COUNT }>>,
}

impl Default for ResolveMetrics {
    fn default() -> Self {
        ResolveMetrics {
            outcomes: Arc::new(CounterFamily::noop()),
        }
    }
}

impl ResolveMetrics {
    #[inline]
    pub fn count(&self, outcome: ResolveOutcome) {
        self.outcomes.increment(outcome.index());
    }
}

impl ResolveMetrics {
    pub(super) fn register(registry: &Registry) -> Self {
        ResolveMetrics {
            outcomes: Arc::new(CounterFamily::new(
                registry
                    .counters_by::<ResolveOutcome>(
                        "shortener_link_resolutions_total",
                        "Codes resolved, by where the answer came from.",
                        "outcome",
                    )
                    .to_vec(),
            )),
        }
    }

    pub(super) fn publish(&self) {
        self.outcomes.publish();
    }
}

/// Rate-limit decisions (sharded: every redirect is decided while its limit is on).
#[derive(Clone)]
pub struct LimitMetrics {
    /// `[route][allowed, limited]`.
    decisions: Arc<CounterFamily<{ LimitRoute::COUNT * 2 }>>,
}

impl Default for LimitMetrics {
    fn default() -> Self {
        LimitMetrics {
            decisions: Arc::new(CounterFamily::noop()),
        }
    }
}

impl LimitMetrics {
    #[inline]
    pub fn decided(&self, route: LimitRoute, allowed: bool) {
        self.decisions
            .increment(route.index() * 2 + usize::from(!allowed));
    }
}

impl LimitMetrics {
    pub(super) fn register(registry: &Registry) -> Self {
        let name = "shortener_rate_limit_decisions_total";
        let help = "Per-client rate-limit decisions, by route and decision.";
        LimitMetrics {
            decisions: Arc::new(CounterFamily::new(
                LimitRoute::ALL
                    .iter()
                    .flat_map(|route| {
                        ["allowed", "limited"].map(|decision| {
                            registry.counter(
                                name,
                                help,
                                &[("route", route.label()), ("decision", decision)],
                            )
                        })
                    })
                    .collect(),
            )),
        }
    }

    pub(super) fn publish(&self) {
        self.decisions.publish();
    }
}
