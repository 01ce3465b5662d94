//! Reading request bodies with a size limit enforced before and while reading, and a time
//! limit: a body that trickles in holds a connection permit, so it gets `timeout` in all.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;

use super::ApiError;

/// Largest request body accepted (`POST /shorten`).
pub const MAX_BODY_BYTES: usize = 8 * 1024;

/// Reads the whole body, refusing with 413 as soon as it is known to be too large: from
/// `Content-Length` before reading anything, or while reading a chunked body; and with 408
/// when it has not all arrived within `timeout`.
pub async fn read_limited(
    request: http::Request<Incoming>,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    read_at_most(request, timeout, MAX_BODY_BYTES).await
}

/// As [`read_limited`], with `limit` bytes instead of [`MAX_BODY_BYTES`].
pub async fn read_at_most(
    request: http::Request<Incoming>,
    timeout: Duration,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let read = Limited::new(request.into_body(), limit).collect();
    let Ok(read) = tokio::time::timeout(timeout, read).await else {
        return Err(ApiError::RequestTimeout(timeout));
    };
    match read {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(ApiError::PayloadTooLarge(limit)),
        Err(_) => Err(ApiError::InvalidRequest(
            "the request body could not be read".into(),
        )),
    }
}
