//! The idempotency protocol of `POST /shorten` (the IETF draft "The Idempotency-Key HTTP
//! Header Field"): what a create's key is, how long its answer is kept, and what a stored
//! answer means for a retry.
//!
//! The answer of a successful create is stored with its key in the same transaction as the
//! link (in its group-commit batch, `storage::Db::create_batch`), per client scope, for
//! [`KEY_LIFETIME`]. A retry with the same body gets that answer again; another body with the
//! same key is refused.

use std::time::Duration;

use time::OffsetDateTime;

use super::CreateError;
use crate::domain::{Fingerprint, IdempotencyKey, IdempotencyScope};
use crate::storage::StoredAnswer;

/// How long a stored answer is replayed; after it, the key may be used again.
pub const KEY_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The Idempotency-Key a create was sent with, whose it is, and what was asked.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub scope: IdempotencyScope,
    pub key: IdempotencyKey,
    /// Of the request body: a retry must send the same.
    pub fingerprint: Fingerprint,
}

impl Idempotency {
    /// Answers stored at or before this instant are stale at `now`.
    pub fn fresh_since(&self, now: OffsetDateTime) -> OffsetDateTime {
        now - KEY_LIFETIME
    }
}

/// A retry with the stored answer's body is answered with it; any other body is refused.
pub fn replay_or_refuse(
    stored: StoredAnswer,
    fingerprint: Option<&Fingerprint>,
) -> Result<StoredAnswer, CreateError> {
    match fingerprint {
        Some(fingerprint) if stored.fingerprint == fingerprint.as_bytes() => Ok(stored),
        _ => Err(CreateError::KeyReused),
    }
}
