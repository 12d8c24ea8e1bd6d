//! Tokens never reach a log; this short digest identifies one instead.

/// First 16 hex characters of the token's SHA-256 (computed once per request by the guard).
pub fn fingerprint(token_sha256: &[u8; 32]) -> String {
    token_sha256
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
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
