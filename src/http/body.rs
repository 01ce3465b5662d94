//! Reading request bodies with a size limit enforced before and while reading.

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;

use super::ApiError;

/// Largest request body accepted (`POST /shorten`).
pub const MAX_BODY_BYTES: usize = 8 * 1024;

/// Reads the whole body, refusing with 413 as soon as it is known to be too large: from
/// `Content-Length` before reading anything, or while reading a chunked body.
pub async fn read_limited(request: http::Request<Incoming>) -> Result<Bytes, ApiError> {
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(ApiError::PayloadTooLarge),
        Err(_) => Err(ApiError::InvalidRequest(
            "the request body could not be read".into(),
        )),
    }
}
