//! The idempotency protocol of `POST /shorten` (the IETF draft "The Idempotency-Key HTTP
//! Header Field"): a request's fingerprint, and what a stored answer means for a retry.
//!
//! The answer of a successful create is stored with its key in the same transaction as the
//! link (in its group-commit batch, `storage::Db::create_batch`), per client scope, for 24
//! hours. A retry with the same body gets that answer again; another body with the same key
//! is refused.

use sha2::{Digest, Sha256};

use super::CreateError;
use crate::storage::StoredAnswer;

/// SHA-256 of the body's canonical JSON form: serde_json's maps are ordered by key, and it
/// writes no white space, so bodies that differ only in layout or key order match.
pub fn fingerprint(json: &serde_json::Value) -> Result<[u8; 32], CreateError> {
    let canonical =
        serde_json::to_vec(json).map_err(|_| CreateError::Internal("canonical JSON"))?;
    Ok(Sha256::digest(&canonical).into())
}

/// A retry with the stored answer's body is answered with it; any other body is refused.
pub fn replay_or_refuse(
    stored: StoredAnswer,
    fingerprint: &[u8; 32],
) -> Result<StoredAnswer, CreateError> {
    if stored.fingerprint != fingerprint {
        return Err(CreateError::KeyReused);
    }
    Ok(stored)
}
