//! One file per endpoint. Each handler reads as a short list of named steps.

pub mod admin;
pub mod batch;
pub mod manage;
pub mod openapi;
pub mod qr;
pub mod redirect;
pub mod shorten;
pub mod stats;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, StatusCode};
use http_body_util::Full;

use super::{ApiError, Response};
use crate::links::IfMatch;

fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response {
    let mut response = http::Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn rfc3339(instant: time::OffsetDateTime) -> String {
    instant
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `If-Match` or `If-None-Match` (`name`): `*`, or the entity tags listed, as sent (a weak tag
/// keeps its `W/`: `If-Match` compares strongly, so it never matches); `None` when absent.
fn entity_tags(
    headers: &http::HeaderMap,
    name: &http::HeaderName,
) -> Result<Option<IfMatch>, ApiError> {
    let mut tags = Vec::new();
    let mut any = false;
    let mut present = false;
    for value in headers.get_all(name) {
        present = true;
        let value = value
            .to_str()
            .map_err(|_| ApiError::InvalidRequest(format!("{name} is not text")))?;
        for tag in value
            .split(',')
            .map(str::trim)
            .filter(|tag| !tag.is_empty())
        {
            if tag == "*" {
                any = true;
            } else {
                tags.push(tag.to_owned());
            }
        }
    }
    Ok(match (present, any) {
        (false, _) => None,
        (true, true) => Some(IfMatch::Any),
        (true, false) => Some(IfMatch::Tags(tags)),
    })
}
