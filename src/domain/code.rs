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

    /// The code copied out of the request it came from, without allocating.
    pub fn to_buf(self) -> CodeBuf {
        let mut bytes = [0; MAX_LEN];
        bytes[..self.0.len()].copy_from_slice(self.0.as_bytes());
        CodeBuf {
            bytes,
            len: self.0.len() as u8,
        }
    }
}

/// An owned [`Code`], held inline. The HTTP layer copies the code out of the request so it
/// can drop the request before the lookup: the request's path and headers point into the
/// connection's read buffer, and while they live hyper must allocate a new buffer to read
/// the next request.
#[derive(Clone, Copy)]
pub struct CodeBuf {
    bytes: [u8; MAX_LEN],
    len: u8,
}

impl CodeBuf {
    pub fn as_str(&self) -> &str {
        // Only ever built from a `Code`, which is ASCII.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl std::fmt::Debug for CodeBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CodeBuf").field(&self.as_str()).finish()
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

    #[test]
    fn a_buffered_code_reads_back_the_same() {
        for code in ["a", "abc_-09", &"Z".repeat(64)] {
            assert_eq!(Code::parse(code).unwrap().to_buf().as_str(), code);
        }
    }
}
