//! Validated newtypes: input is parsed into these at the HTTP edge, and inner code takes only them.
//!
//! Nothing here does I/O; every rule is a pure function of its input and the configuration.

mod alias;
mod api_key;
mod client_ip;
mod code;
mod expiry;
mod idempotency_key;
mod target_url;

pub use alias::{Alias, AliasError, RESERVED_WORDS};
pub use api_key::{ApiKey, ApiKeyError, KEY_CHARS, KEY_PREFIX, KeyDigest, KeyId, KeyScope};
pub use client_ip::{ClientIp, IpNet, TrustedProxies, canonical};
pub use code::Code;
pub use expiry::{ExpiresAt, ExpiryError, truncate_to_micros};
pub use idempotency_key::{Fingerprint, IdempotencyKey, IdempotencyKeyError, IdempotencyScope};
pub use target_url::{Blocklist, MAX_URL_LEN, TargetUrl, UrlError, UrlPolicy};
