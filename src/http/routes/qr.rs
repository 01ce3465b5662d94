//! `GET|HEAD /{code}/qr?format=svg|png&size=N`: the QR code of a link's short URL.

use http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::Full;

use super::entity_tags;
use crate::domain::Code;
use crate::http::{ApiError, Response, State};
use crate::links::{
    IfMatch, QR_DEFAULT_SIZE, QR_MAX_SIZE, QR_MIN_SIZE, QrAnswer, QrFormat, QrRequest,
};

/// The image depends on the short URL only, which never changes: caches may keep it a day.
const CACHE_FOR: &str = "public, max-age=86400";
/// An image, never a document: nothing in it may run or load anything.
const POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'";

pub async fn handle(
    state: &State,
    code: Code,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Response {
    let request = match read(code, query, headers) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    let format = request.format;
    match state.qr.image(request).await {
        Ok(QrAnswer::Image { bytes, etag }) => {
            let mut response = http::Response::new(Full::new(bytes));
            let headers = response.headers_mut();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static(match format {
                    QrFormat::Svg => "image/svg+xml",
                    QrFormat::Png => "image/png",
                }),
            );
            headers.insert(
                "x-content-type-options",
                HeaderValue::from_static("nosniff"),
            );
            headers.insert("content-security-policy", HeaderValue::from_static(POLICY));
            cache_headers(headers, &etag);
            response
        }
        Ok(QrAnswer::Unchanged { etag }) => {
            let mut response = http::Response::new(Full::default());
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            cache_headers(response.headers_mut(), &etag);
            response
        }
        Err(error) => ApiError::from(error).into_response(),
    }
}

fn cache_headers(headers: &mut HeaderMap, etag: &str) {
    if let Ok(etag) = HeaderValue::from_str(etag) {
        headers.insert(ETAG, etag);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(CACHE_FOR));
}

/// `format` (`svg` when absent) and `size` (64–2048, 256 when absent); other parameters are
/// left alone. `If-None-Match` compares weakly, as RFC 9110 says.
fn read(code: Code, query: Option<&str>, headers: &HeaderMap) -> Result<QrRequest, ApiError> {
    let (mut format, mut size) = (QrFormat::Svg, QR_DEFAULT_SIZE);
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*name {
            "format" => {
                format = match &*value {
                    "svg" => QrFormat::Svg,
                    "png" => QrFormat::Png,
                    _ => return Err(invalid("format must be svg or png")),
                }
            }
            "size" => {
                size = value
                    .parse::<u32>()
                    .ok()
                    .filter(|size| (QR_MIN_SIZE..=QR_MAX_SIZE).contains(size))
                    .ok_or_else(|| {
                        invalid(&format!(
                            "size must be {QR_MIN_SIZE} to {QR_MAX_SIZE} (pixels)"
                        ))
                    })?;
            }
            _ => {}
        }
    }
    let if_none_match = entity_tags(headers, &IF_NONE_MATCH)?.map(|tags| match tags {
        IfMatch::Any => IfMatch::Any,
        IfMatch::Tags(tags) => IfMatch::Tags(
            tags.into_iter()
                .map(|tag| tag.strip_prefix("W/").map(str::to_owned).unwrap_or(tag))
                .collect(),
        ),
    });
    Ok(QrRequest {
        code,
        format,
        size,
        if_none_match,
    })
}

fn invalid(detail: &str) -> ApiError {
    ApiError::InvalidRequest(detail.into())
}
