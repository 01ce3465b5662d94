//! Custom aliases chosen by clients.

use thiserror::Error;

/// Words that are, or may become, paths of this service; refused as aliases in any letter case.
pub const RESERVED_WORDS: &[&str] = &[
    "shorten",
    "links",
    "healthz",
    "readyz",
    "metrics",
    "openapi.json",
    "api",
    "admin",
    "static",
    "v1",
];

const MIN_LEN: usize = 3;
const MAX_LEN: usize = 64;

/// A client-chosen code: 3–64 characters of `[A-Za-z0-9_-]`, not a reserved word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias(String);

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AliasError {
    #[error("alias must be {MIN_LEN} to {MAX_LEN} characters long")]
    Length,
    #[error("alias may contain only letters, digits, '_' and '-'")]
    Characters,
    #[error("alias '{0}' is a reserved word")]
    Reserved(String),
}

impl Alias {
    pub fn parse(raw: &str) -> Result<Self, AliasError> {
        if RESERVED_WORDS
            .iter()
            .any(|word| word.eq_ignore_ascii_case(raw))
        {
            return Err(AliasError::Reserved(raw.to_owned()));
        }
        if !(MIN_LEN..=MAX_LEN).contains(&raw.len()) {
            return Err(AliasError::Length);
        }
        if !raw.bytes().all(is_code_byte) {
            return Err(AliasError::Characters);
        }
        Ok(Alias(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The bytes a code may be made of, generated or chosen.
pub(crate) fn is_code_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_allowed_shape() {
        for ok in ["abc", "my-link", "Under_score", &"x".repeat(64)] {
            assert_eq!(Alias::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_bad_lengths_characters_and_reserved_words() {
        assert_eq!(Alias::parse("ab"), Err(AliasError::Length));
        assert_eq!(Alias::parse(&"x".repeat(65)), Err(AliasError::Length));
        for bad in ["a b c", "a/bc", "abc.d", "ünï", "abc%20", "abc?x"] {
            assert_eq!(Alias::parse(bad), Err(AliasError::Characters), "{bad}");
        }
        for word in [
            "shorten", "HEALTHZ", "Metrics", "api", "v1", "admin", "static", "readyz",
        ] {
            assert!(
                matches!(Alias::parse(word), Err(AliasError::Reserved(_))),
                "{word}"
            );
        }
    }
}
