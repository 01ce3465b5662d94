//! Short codes: a keyed permutation of the id, written in base62 at one fixed length.
//!
//! The permutation is the Speck64/128 block cipher (27 rounds of add-rotate-xor on two 32-bit
//! words), keyed from `SHORTENER_CODE_KEY`. It is a bijection on `u64`, so every id has exactly
//! one code and the code decodes back to the id, while consecutive ids give unrelated codes that
//! reveal neither creation order nor volume. 62^11 > 2^64, so 11 characters hold every `u64`.

use sha2::{Digest, Sha256};

/// Length of every generated code.
pub const CODE_LEN: usize = 11;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const ROUNDS: usize = 27;

/// The 128-bit secret key of the code permutation.
#[derive(Clone)]
pub struct CodeKey([u32; 4]);

impl CodeKey {
    /// Derives the key from secret material of any length (SHA-256, first 16 bytes).
    pub fn derive(secret: &[u8]) -> Self {
        let digest = Sha256::digest(secret);
        let word = |i: usize| u32::from_le_bytes(digest[i * 4..i * 4 + 4].try_into().unwrap());
        CodeKey([word(0), word(1), word(2), word(3)])
    }
}

impl std::fmt::Debug for CodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeKey(<redacted>)")
    }
}

/// Encodes ids to codes and decodes codes to ids. Cheap to share: the round keys are expanded once.
#[derive(Clone)]
pub struct CodeCodec {
    round_keys: [u32; ROUNDS],
}

impl std::fmt::Debug for CodeCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeCodec(<redacted>)")
    }
}

impl CodeCodec {
    pub fn new(key: &CodeKey) -> Self {
        // Speck key schedule with m = 4 key words: (l2, l1, l0, k0) = key.
        let [k0, l0, l1, l2] = key.0;
        let mut l = [0u32; ROUNDS + 2];
        l[0] = l0;
        l[1] = l1;
        l[2] = l2;
        let mut round_keys = [0u32; ROUNDS];
        round_keys[0] = k0;
        for i in 0..ROUNDS - 1 {
            l[i + 3] = round_keys[i].wrapping_add(l[i].rotate_right(8)) ^ i as u32;
            round_keys[i + 1] = round_keys[i].rotate_left(3) ^ l[i + 3];
        }
        CodeCodec { round_keys }
    }

    /// The code of `id`: always [`CODE_LEN`] characters of `[0-9A-Za-z]`.
    pub fn encode(&self, id: i64) -> [u8; CODE_LEN] {
        to_base62(self.encrypt(id as u64))
    }

    /// The id behind a generated code, or `None` when `code` is not of the generated shape or
    /// decodes to a value no generator issues (negative).
    pub fn decode(&self, code: &[u8]) -> Option<i64> {
        let id = self.decrypt(from_base62(code)?) as i64;
        (id >= 0).then_some(id)
    }

    fn encrypt(&self, block: u64) -> u64 {
        let (mut x, mut y) = ((block >> 32) as u32, block as u32);
        for &k in &self.round_keys {
            x = x.rotate_right(8).wrapping_add(y) ^ k;
            y = y.rotate_left(3) ^ x;
        }
        (u64::from(x) << 32) | u64::from(y)
    }

    fn decrypt(&self, block: u64) -> u64 {
        let (mut x, mut y) = ((block >> 32) as u32, block as u32);
        for &k in self.round_keys.iter().rev() {
            y = (y ^ x).rotate_right(3);
            x = (x ^ k).wrapping_sub(y).rotate_left(8);
        }
        (u64::from(x) << 32) | u64::from(y)
    }
}

/// 62^5: five base62 digits fit a `u32`, so the digits are produced in three independent
/// groups (1 + 5 + 5) with 32-bit arithmetic instead of one 11-step 64-bit chain.
const GROUP: u64 = 62 * 62 * 62 * 62 * 62;

fn to_base62(value: u64) -> [u8; CODE_LEN] {
    let low = (value % GROUP) as u32;
    let rest = value / GROUP;
    let middle = (rest % GROUP) as u32;
    let high = (rest / GROUP) as usize;
    let mut out = [0u8; CODE_LEN];
    out[0] = ALPHABET[high];
    write_group(&mut out[1..6], middle);
    write_group(&mut out[6..11], low);
    out
}

fn write_group(out: &mut [u8], mut value: u32) {
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
}

fn from_base62(code: &[u8]) -> Option<u64> {
    let code: &[u8; CODE_LEN] = code.try_into().ok()?;
    let high = u64::from(digit(code[0])?);
    let middle = u64::from(read_group(&code[1..6])?);
    let low = u64::from(read_group(&code[6..11])?);
    // Only the top group can overflow: 62^11 > 2^64.
    high.checked_mul(GROUP * GROUP)?
        .checked_add(middle * GROUP + low)
}

fn read_group(digits: &[u8]) -> Option<u32> {
    digits
        .iter()
        .try_fold(0u32, |acc, &c| Some(acc * 62 + u32::from(digit(c)?)))
}

fn digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'Z' => Some(c - b'A' + 10),
        b'a'..=b'z' => Some(c - b'a' + 36),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn codec() -> CodeCodec {
        CodeCodec::new(&CodeKey::derive(b"unit-test key"))
    }

    #[test]
    fn speck64_128_matches_the_published_test_vector() {
        // From "The SIMON and SPECK Families of Lightweight Block Ciphers", appendix C.
        let codec = CodeCodec::new(&CodeKey([
            0x0302_0100,
            0x0b0a_0908,
            0x1312_1110,
            0x1b1a_1918,
        ]));
        let plaintext = 0x3b72_6574_7475_432d;
        let ciphertext = 0x8c6f_a548_454e_028b;
        assert_eq!(codec.encrypt(plaintext), ciphertext);
        assert_eq!(codec.decrypt(ciphertext), plaintext);
    }

    #[test]
    fn base62_covers_the_whole_u64_range() {
        assert_eq!(&to_base62(0), b"00000000000");
        assert_eq!(from_base62(&to_base62(u64::MAX)), Some(u64::MAX));
        assert_eq!(from_base62(b"zzzzzzzzzzz"), None, "62^11 - 1 overflows u64");
        assert_eq!(from_base62(b"0000000000"), None, "too short");
        assert_eq!(from_base62(b"0000000000-"), None, "not base62");
        assert_eq!(from_base62(b"LygHa16AHYF"), Some(u64::MAX));
        assert_eq!(from_base62(b"LygHa16AHYG"), None, "u64::MAX + 1");
        for value in [1, 61, 62, GROUP - 1, GROUP, GROUP * GROUP + 7, u64::MAX / 3] {
            assert_eq!(from_base62(&to_base62(value)), Some(value), "{value}");
        }
    }

    #[test]
    fn decode_inverts_encode_for_a_million_random_ids_and_no_two_share_a_code() {
        let codec = codec();
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        let mut codes = HashSet::with_capacity(1_000_000);
        for _ in 0..1_000_000 {
            let id = rng.i64(0..);
            let code = codec.encode(id);
            assert!(code.iter().all(u8::is_ascii_alphanumeric));
            assert_eq!(codec.decode(&code), Some(id));
            assert!(codes.insert(code), "two ids share the code of {id}");
        }
    }

    #[test]
    fn consecutive_ids_give_unrelated_codes() {
        let codec = codec();
        let a = codec.encode(1_000_000);
        let b = codec.encode(1_000_001);
        let shared_prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
        assert!(shared_prefix < 4, "{a:?} and {b:?} look like neighbours");
    }

    #[test]
    fn another_key_gives_other_codes() {
        let other = CodeCodec::new(&CodeKey::derive(b"another key"));
        assert_ne!(codec().encode(42), other.encode(42));
    }

    #[test]
    fn codes_that_decode_to_negative_values_are_refused() {
        let codec = codec();
        let negative = to_base62(codec.encrypt(u64::MAX));
        assert_eq!(codec.decode(&negative), None);
    }
}
