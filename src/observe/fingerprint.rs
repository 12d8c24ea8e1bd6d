//! Tokens never reach a log; this short digest identifies one instead.

/// First 16 hex characters of the token's SHA-256 (computed once per request by the guard).
pub fn fingerprint(token_sha256: &[u8; 32]) -> String {
    hex(token_sha256.get(..8).unwrap_or_default())
}

/// Lowercase hex, without `format!` (on the request path of every logged decision).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        for nibble in [byte >> 4, byte & 0x0f] {
            out.push(char::from(
                DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
    out
}

pub fn hex_to_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(digest)
}

pub fn digest_to_hex(digest: &[u8; 32]) -> String {
    hex(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn is_a_sha256_prefix() {
        // SHA-256("abc") = ba7816bf8f01cfea...
        assert_eq!(
            fingerprint(&Sha256::digest(b"abc").into()),
            "ba7816bf8f01cfea"
        );
    }
}
