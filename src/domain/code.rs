//! The code in a request path (`/{code}`), before anyone knows whether it exists.

use super::alias::is_code_byte;

const MAX_LEN: usize = 64;

/// A path segment that could name a link: 1–64 characters of `[A-Za-z0-9_-]`. Anything else
/// can never name a link and is answered 404 without a lookup.
///
/// Held inline, copied out of the request it came from: the request's path and headers point
/// into the connection's read buffer, and while they live hyper must allocate a new buffer to
/// read the next request, so the HTTP layer parses the code and drops the request before the
/// lookup.
#[derive(Clone, Copy)]
pub struct Code {
    bytes: [u8; MAX_LEN],
    len: u8,
}

impl Code {
    pub fn parse(segment: &str) -> Option<Self> {
        let valid =
            !segment.is_empty() && segment.len() <= MAX_LEN && segment.bytes().all(is_code_byte);
        if !valid {
            return None;
        }
        let mut bytes = [0; MAX_LEN];
        bytes[..segment.len()].copy_from_slice(segment.as_bytes());
        Some(Code {
            bytes,
            len: segment.len() as u8,
        })
    }

    pub fn as_str(&self) -> &str {
        // Only ever built from code characters, which are ASCII.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl PartialEq for Code {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Code {}

impl std::fmt::Debug for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Code").field(&self.as_str()).finish()
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
    fn a_code_reads_back_as_it_was_given() {
        for code in ["a", "abc_-09", &"Z".repeat(64)] {
            assert_eq!(Code::parse(code).unwrap().as_str(), code);
        }
    }
}
