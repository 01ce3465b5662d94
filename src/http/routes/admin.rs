//! The admin listener's probes.

use std::time::Duration;

use http::StatusCode;

use super::json_response;
use crate::app::App;
use crate::http::{ApiError, Response};

/// How long `/readyz` waits for a database to answer.
const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// 200 while the process is alive.
pub fn healthz() -> Response {
    json_response(StatusCode::OK, r#"{"status":"ok"}"#)
}

/// 200 when the service can serve: started, not draining, and a database reachable.
pub async fn readyz(app: &App) -> Response {
    if let Some(reason) = app.not_ready_reason() {
        return ApiError::NotReady(reason).into_response();
    }
    match tokio::time::timeout(READY_CHECK_TIMEOUT, app.db.is_reachable()).await {
        Ok(true) => json_response(StatusCode::OK, r#"{"status":"ready"}"#),
        _ => ApiError::NotReady("no database is reachable").into_response(),
    }
}
