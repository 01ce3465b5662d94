//! Request ids: the `X-Request-Id` a trusted proxy sent, or one made here, carried through a
//! request in a task-local so that its log lines, its problem+json `instance` and its answer's
//! header all name it.
//!
//! A cached redirect makes no span: creating one costs about a microsecond with the JSON
//! subscriber, a tenth of a redirect's whole budget. The paths that can log (a cache miss,
//! creates, stats) enter [`request_span`], built from the task-local when they start.

use std::fmt;
use std::sync::Arc;

tokio::task_local! {
    static REQUEST_ID: RequestId;
}

/// Longest id accepted from a proxy.
const MAX_GIVEN_LEN: usize = 128;

/// One request's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestId {
    /// Made here: 128 random bits, written as a UUID (version 4 layout); two halves, not a
    /// `u128`, whose 16-byte alignment would pad every request's future.
    Made([u64; 2]),
    /// Sent by a trusted proxy.
    Given(Arc<str>),
}

impl RequestId {
    /// A fresh random id.
    pub fn make() -> RequestId {
        // Version 4, variant 1: the bits a UUID parser expects.
        let random = fastrand::u128(..);
        let uuid = (random & !(0xF << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
        RequestId::Made([(uuid >> 64) as u64, uuid as u64])
    }

    /// An id a trusted proxy sent, if it is usable: 1 to 128 characters, each a letter, a
    /// digit or one of `-._~:` (so it can stand in a URI and a log line as it is).
    pub fn given(raw: &[u8]) -> Option<RequestId> {
        let usable = !raw.is_empty()
            && raw.len() <= MAX_GIVEN_LEN
            && raw
                .iter()
                .all(|byte| byte.is_ascii_alphanumeric() || b"-._~:".contains(byte));
        usable.then(|| {
            RequestId::Given(Arc::from(
                std::str::from_utf8(raw).expect("checked to be ASCII"),
            ))
        })
    }
}

impl RequestId {
    /// The id as text, without allocating for a made one: what the `X-Request-Id` header
    /// carries.
    pub fn with_text<T>(&self, use_text: impl FnOnce(&str) -> T) -> T {
        match self {
            RequestId::Made([high, low]) => {
                let text = uuid_text(u128::from(*high) << 64 | u128::from(*low));
                use_text(std::str::from_utf8(&text).expect("hex digits and dashes"))
            }
            RequestId::Given(id) => use_text(id),
        }
    }
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lower-case hex: a byte at a time, through a
/// table of every byte's two digits (it runs on every request).
fn uuid_text(uuid: u128) -> [u8; 36] {
    const DIGITS: [[u8; 2]; 256] = {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut table = [[0; 2]; 256];
        let mut byte = 0;
        while byte < 256 {
            table[byte] = [HEX[byte >> 4], HEX[byte & 0xF]];
            byte += 1;
        }
        table
    };
    /// Where each of the 16 bytes' two digits go.
    const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    let mut text = [b'-'; 36];
    for (byte, at) in uuid.to_be_bytes().into_iter().zip(AT) {
        text[at..at + 2].copy_from_slice(&DIGITS[usize::from(byte)]);
    }
    text
}

impl fmt::Display for RequestId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_text(|text| formatter.write_str(text))
    }
}

/// Runs `request` with `id` as the current request's id. (A plain function, not an async
/// one: an async wrapper would hold `request` twice in its state, and the redirect's future
/// is moved in memory on every request.)
pub fn with_request_id<F: Future>(id: RequestId, request: F) -> impl Future<Output = F::Output> {
    REQUEST_ID.scope(id, request)
}

/// The id of the request being served on this task, if any.
pub fn current_request_id() -> Option<RequestId> {
    REQUEST_ID.try_with(RequestId::clone).ok()
}

/// A span that gives every line logged in it the current request's id (an empty span outside
/// a request).
pub fn request_span() -> tracing::Span {
    match current_request_id() {
        Some(id) => tracing::info_span!("request", request_id = %id),
        None => tracing::Span::none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_ids_are_version_4_uuids() {
        let text = RequestId::make().to_string();
        assert_eq!(text.len(), 36, "{text}");
        let groups: Vec<&str> = text.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(groups[2].starts_with('4'), "{text}");
        assert!("89ab".contains(&groups[3][..1]), "{text}");
        assert_ne!(RequestId::make(), RequestId::make());
        assert_eq!(
            RequestId::Made([0x0123_4567_89ab_4def, 0x8123_4567_89ab_cdef]).to_string(),
            "01234567-89ab-4def-8123-456789abcdef"
        );
    }

    #[test]
    fn given_ids_must_be_short_plain_tokens() {
        assert_eq!(
            RequestId::given(b"lb-7f3a:19.2~x").map(|id| id.to_string()),
            Some("lb-7f3a:19.2~x".to_owned())
        );
        for refused in [
            &b""[..],
            b"has space",
            b"quote\"",
            b"new\nline",
            &[b'a'; 129],
        ] {
            assert_eq!(RequestId::given(refused), None, "{refused:?}");
        }
    }

    #[tokio::test]
    async fn the_current_id_is_the_one_of_the_request_running() {
        assert_eq!(current_request_id(), None);
        let id = RequestId::given(b"abc").unwrap();
        let seen = with_request_id(id.clone(), async { current_request_id() }).await;
        assert_eq!(seen, Some(id));
    }
}
