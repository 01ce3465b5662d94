//! The `Idempotency-Key` request header.

use thiserror::Error;

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
}
