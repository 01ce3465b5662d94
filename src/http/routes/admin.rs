//! The admin listener's probes and metrics.

use http::StatusCode;
use http::header::RETRY_AFTER;
use serde::Serialize;

use super::json_response;
use crate::http::problem::RETRY_AFTER_SECONDS;
use crate::http::{Response, State};
use crate::limits::LimitMode;
use crate::status::{CreatesState, Tiers};

/// 200 while the process is alive: the admin listener answers (on its own runtime) and the
/// main runtime has beaten within `HEARTBEAT_STALE`; 503 when the main runtime is wedged, so
/// that a liveness probe restarts an instance that can no longer serve.
pub fn healthz(state: &State) -> Response {
    match state.status.stalled_for() {
        None => json_response(StatusCode::OK, r#"{"status":"ok"}"#),
        Some(stalled) => {
            let body = serde_json::json!({
                "type": "urn:shortener:problem:wedged",
                "title": "The main runtime is not running",
                "status": 503,
                "detail": format!(
                    "the main runtime has not run for {} ms: its threads are held",
                    stalled.as_millis()
                ),
            });
            let mut response = json_response(StatusCode::SERVICE_UNAVAILABLE, body.to_string());
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/problem+json"),
            );
            response
        }
    }
}

/// The readiness body: on 503 a problem (RFC 9457) with the same extension members.
#[derive(Serialize)]
struct ReadyBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    r#type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'static str>,
    status: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    tiers: Tiers,
    creates: CreatesState,
    /// Where the create limit is kept: `shared` (Redis), `per_instance`, or `off`.
    create_limit: LimitMode,
    /// `current`, `behind`, `ahead`, `ahead_expand_only` or `unknown`.
    schema: &'static str,
}

/// 200 when the service can serve redirects (started, not draining, and a database answers
/// or memory holds links), from the prober's cached results: it never waits on a database.
pub fn readyz(state: &State) -> Response {
    let report = state.status.report();
    let body = match report.not_ready {
        None => ReadyBody {
            r#type: None,
            title: None,
            status: "ready".into(),
            detail: None,
            tiers: report.tiers,
            creates: report.creates,
            create_limit: report.create_limit,
            schema: report.schema.label(),
        },
        Some(reason) => ReadyBody {
            r#type: Some("urn:shortener:problem:not-ready"),
            title: Some("Not ready"),
            status: StatusCode::SERVICE_UNAVAILABLE.as_u16().into(),
            detail: Some(format!("not ready: {reason}")),
            tiers: report.tiers,
            creates: report.creates,
            create_limit: report.create_limit,
            schema: report.schema.label(),
        },
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    match report.not_ready {
        None => json_response(StatusCode::OK, json),
        Some(_) => {
            let mut response = json_response(StatusCode::SERVICE_UNAVAILABLE, json);
            let headers = response.headers_mut();
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/problem+json"),
            );
            headers.insert(
                RETRY_AFTER,
                http::HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
            response
        }
    }
}

/// The Prometheus text exposition of this server's metrics, the sampled ones read now.
pub fn metrics(state: &State) -> Response {
    state.status.sample_metrics();
    let mut response = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(
        state.metrics.render(),
    )));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
