//! One file per endpoint. Each handler reads as a short list of named steps.

pub mod admin;
pub mod openapi;
pub mod redirect;
pub mod shorten;
pub mod stats;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, StatusCode};
use http_body_util::Full;

use super::{ApiError, Response};
use crate::app::App;
use crate::storage::LinkRecord;

fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response {
    let mut response = http::Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The link a path code names, or 404. Generated-shape codes are looked up by the id they
/// decode to (the primary key); any other code, or an alias that merely has that shape,
/// by the code itself.
async fn find_link(app: &App, code: &str) -> Result<LinkRecord, ApiError> {
    let code = crate::domain::Code::parse(code).ok_or(ApiError::NotFound)?;
    // `decode` answers None for anything not of the generated shape.
    let decoded = app.codec.decode(code.as_str().as_bytes());
    app.db
        .find_link(code.as_str(), decoded)
        .await?
        .ok_or(ApiError::NotFound)
}

fn rfc3339(instant: time::OffsetDateTime) -> String {
    instant
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
