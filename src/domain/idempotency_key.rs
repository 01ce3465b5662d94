//! The `Idempotency-Key` request header, whose it is (its scope), and the fingerprint of the
//! request it was sent with.

use sha2::{Digest, Sha256};
use thiserror::Error;

use super::{ClientIp, KeyId};

const MAX_LEN: usize = 255;

/// 1–255 visible ASCII characters (0x21–0x7E).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

#[derive(Debug, Error, PartialEq, Eq)]
#[error("Idempotency-Key must be 1 to 255 visible ASCII characters")]
pub struct IdempotencyKeyError;

impl IdempotencyKey {
    pub fn parse(raw: &[u8]) -> Result<Self, IdempotencyKeyError> {
        let valid = !raw.is_empty() && raw.len() <= MAX_LEN && raw.iter().all(u8::is_ascii_graphic);
        if !valid {
            return Err(IdempotencyKeyError);
        }
        // Visible ASCII is valid UTF-8.
        Ok(IdempotencyKey(String::from_utf8_lossy(raw).into_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whose Idempotency-Keys a key is looked up among: one client cannot read another's stored
/// answers. Never the raw credential of a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdempotencyScope {
    /// An anonymous client, by address.
    Client(ClientIp),
    /// A client with an API key, by the key's id (never the key itself).
    Key(KeyId),
}

impl IdempotencyScope {
    /// The scope as stored with the key: an anonymous client's address (as it always was), or
    /// `key:<id>` (which no address can read as).
    pub fn stored(&self) -> String {
        match self {
            IdempotencyScope::Client(client) => client.get().to_string(),
            IdempotencyScope::Key(id) => format!("key:{id}"),
        }
    }
}

/// SHA-256 of a request body's canonical JSON form: serde_json's maps are ordered by key and it
/// writes no white space, so bodies that differ only in layout or key order match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub fn of_json(json: &serde_json::Value) -> Fingerprint {
        // Writing a `Value` into a `Vec` cannot fail: its keys are strings, its numbers finite.
        let canonical = serde_json::to_vec(json).unwrap_or_default();
        Fingerprint(Sha256::digest(&canonical).into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_visible_ascii_up_to_255() {
        assert!(IdempotencyKey::parse(b"a").is_ok());
        assert!(IdempotencyKey::parse(b"\"8e0f-44c1\"").is_ok());
        assert!(IdempotencyKey::parse("k".repeat(255).as_bytes()).is_ok());
    }

    #[test]
    fn refuses_empty_long_spaces_controls_and_non_ascii() {
        for bad in [
            &b""[..],
            b"has space",
            b"tab\there",
            b"\x7f",
            "é".as_bytes(),
        ] {
            assert_eq!(
                IdempotencyKey::parse(bad),
                Err(IdempotencyKeyError),
                "{bad:?}"
            );
        }
        assert!(IdempotencyKey::parse("k".repeat(256).as_bytes()).is_err());
    }

    #[test]
    fn fingerprints_ignore_layout_and_key_order_only() {
        let json = |raw: &str| serde_json::from_str::<serde_json::Value>(raw).unwrap();
        let a = Fingerprint::of_json(&json(r#"{"url": "https://a/", "alias": "x"}"#));
        let b = Fingerprint::of_json(&json(r#"{ "alias":"x","url":"https://a/" }"#));
        let c = Fingerprint::of_json(&json(r#"{"url": "https://a/", "alias": "y"}"#));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
