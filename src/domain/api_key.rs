//! API keys: the `Authorization: Bearer shk_…` a request carries, the digest a key is stored
//! and looked up by (the key itself is never stored, logged or counted), and what a key may do.

use std::fmt;

use sha2::{Digest, Sha256};
use thiserror::Error;

/// Every key starts with this, so a leaked one is recognisable (secret scanners look for it).
pub const KEY_PREFIX: &str = "shk_";
/// Characters after the prefix in a key this service makes; a key must have at least this many.
pub const KEY_CHARS: usize = 32;
/// Longest key accepted (a longer header is not one of ours).
const MAX_KEY_LEN: usize = 256;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// An API key as a request presents it: `shk_` and at least 32 of `[A-Za-z0-9]`. Its `Debug`
/// and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

#[derive(Debug, Error, PartialEq, Eq)]
#[error("an API key is shk_ followed by at least 32 letters and digits")]
pub struct ApiKeyError;

impl ApiKey {
    pub fn parse(raw: &[u8]) -> Result<Self, ApiKeyError> {
        let rest = raw.strip_prefix(KEY_PREFIX.as_bytes()).ok_or(ApiKeyError)?;
        let valid = raw.len() <= MAX_KEY_LEN
            && rest.len() >= KEY_CHARS
            && rest.iter().all(u8::is_ascii_alphanumeric);
        if !valid {
            return Err(ApiKeyError);
        }
        Ok(ApiKey(String::from_utf8_lossy(raw).into_owned()))
    }

    /// A fresh key from 32 random bytes (each mapped onto the 62 characters; the slight bias
    /// of `byte % 62` leaves well over 180 bits of entropy).
    pub fn from_random(random: [u8; KEY_CHARS]) -> Self {
        let mut key = String::with_capacity(KEY_PREFIX.len() + KEY_CHARS);
        key.push_str(KEY_PREFIX);
        key.extend(
            random
                .iter()
                .map(|byte| char::from(ALPHABET[usize::from(*byte) % ALPHABET.len()])),
        );
        ApiKey(key)
    }

    /// What the key is stored and looked up by.
    pub fn digest(&self) -> KeyDigest {
        KeyDigest(Sha256::digest(self.0.as_bytes()).into())
    }

    /// The key itself: for the one place that shows it (the command that made it).
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// SHA-256 of a key. A key is 190 random bits, so a fast digest is as safe as a slow one and
/// is what the request path can afford.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest(pub [u8; 32]);

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyDigest(<redacted>)")
    }
}

/// A stored key's id: what listings, audits and idempotency scopes name (never the key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub i64);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyScope {
    /// Create, list, edit and delete its own links.
    Links,
    /// Every link.
    Admin,
}

impl KeyScope {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "links" => Some(KeyScope::Links),
            "admin" => Some(KeyScope::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyScope::Links => "links",
            KeyScope::Admin => "admin",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_prefix_and_enough_letters_and_digits() {
        let made = ApiKey::from_random([200; KEY_CHARS]);
        assert!(made.reveal().starts_with("shk_"));
        assert_eq!(made.reveal().len(), 4 + 32);
        assert_eq!(ApiKey::parse(made.reveal().as_bytes()), Ok(made.clone()));
        assert!(ApiKey::parse(format!("shk_{}", "a".repeat(40)).as_bytes()).is_ok());
        for bad in [
            "".to_owned(),
            "shk_".to_owned(),
            format!("shk_{}", "a".repeat(31)),
            format!("shk_{}-", "a".repeat(32)),
            format!("key_{}", "a".repeat(32)),
            format!("SHK_{}", "a".repeat(32)),
            format!("shk_{}", "a".repeat(300)),
        ] {
            assert_eq!(ApiKey::parse(bad.as_bytes()), Err(ApiKeyError), "{bad}");
        }
    }

    #[test]
    fn a_key_never_shows_in_debug_and_digests_differ() {
        let key = ApiKey::from_random([7; KEY_CHARS]);
        assert!(!format!("{key:?}").contains(key.reveal()));
        let other = ApiKey::from_random([8; KEY_CHARS]);
        assert_ne!(key.digest(), other.digest());
        assert_eq!(key.digest(), key.clone().digest());
    }
}
