//! The code in a request path (`/{code}`), before anyone knows whether it exists.

use super::alias::is_code_byte;

const MAX_LEN: usize = 64;

/// A path segment that could name a link: 1–64 characters of `[A-Za-z0-9_-]`.
/// Anything else can never name a link and is answered 404 without a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code<'a>(&'a str);

impl<'a> Code<'a> {
    pub fn parse(segment: &'a str) -> Option<Self> {
        let valid =
            !segment.is_empty() && segment.len() <= MAX_LEN && segment.bytes().all(is_code_byte);
        valid.then_some(Code(segment))
    }

    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Code;

    #[test]
    fn accepts_code_characters_only() {
        assert!(Code::parse("abc_-09").is_some());
        assert!(Code::parse("").is_none());
        assert!(Code::parse(&"a".repeat(65)).is_none());
        assert!(Code::parse("a.b").is_none());
        assert!(Code::parse("%41bc").is_none());
    }
}
