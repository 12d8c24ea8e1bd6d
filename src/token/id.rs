//! The token identity: what revocation, misuse detection and `self` revocations know a token
//! by. For a compact JWS it is the SHA-256 of the signing input (`header.payload`), which
//! nobody can change without the issuer's key; the signature is left out because it is not
//! unique: an ECDSA signature `(r, s)` has a twin `(r, n - s)` that verifies as well (RFC 7518
//! does not ask signers for low `s`, and OpenSSL-based issuers produce a high `s` for about
//! half of their tokens, so twins cannot simply be refused). For anything else (an opaque
//! token) it is the SHA-256 of the whole token. Operators compute it with
//! `bearer-guard token-id` (or by hand: `printf %s "${TOKEN%.*}" | sha256sum`).

use sha2::{Digest, Sha256};

/// A SHA-256 of a token: the token identity, or the whole token as sent.
pub type TokenDigest = [u8; 32];

/// See the module documentation.
pub fn token_id(token: &str) -> TokenDigest {
    Sha256::digest(signing_input(token).as_bytes()).into()
}

/// `header.payload` of something shaped like a compact JWS (three segments), else the whole
/// token.
fn signing_input(token: &str) -> &str {
    crate::token::verify::signing_input(token).unwrap_or(token)
}

/// SHA-256 of the token exactly as sent: the log fingerprint and, for entries made before the
/// identity existed, a second `token_sha256` to match.
pub fn whole_token_sha256(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// Both hashes of a token: the whole token as sent and its identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digests {
    pub sha256: TokenDigest,
    pub id: TokenDigest,
}

impl Digests {
    /// Both in one pass over the token: the identity hashes a prefix of the whole token, so
    /// the hasher's state at the end of that prefix finishes one and goes on to the other.
    pub fn of(token: &str) -> Self {
        let signed = signing_input(token);
        let mut hash = Sha256::new();
        hash.update(signed.as_bytes());
        if signed.len() == token.len() {
            let digest: TokenDigest = hash.finalize().into();
            return Digests {
                sha256: digest,
                id: digest,
            };
        }
        let id: TokenDigest = hash.clone().finalize().into();
        hash.update(token.as_bytes().get(signed.len()..).unwrap_or_default());
        Digests {
            sha256: hash.finalize().into(),
            id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jws_is_known_by_its_signing_input_and_anything_else_by_itself() {
        let jws = "aGVhZA.cGF5bG9hZA.c2ln";
        let twin = "aGVhZA.cGF5bG9hZA.b3RoZXI";
        assert_eq!(token_id(jws), token_id(twin));
        assert_eq!(
            token_id(jws),
            <[u8; 32]>::from(Sha256::digest(b"aGVhZA.cGF5bG9hZA"))
        );
        assert_ne!(token_id(jws), whole_token_sha256(jws));
        assert_ne!(token_id(jws), token_id("aGVhZA.cGF5bG9hZB.c2ln"));
        for opaque in ["opaque-token", "a.b", "a.b.c.d"] {
            assert_eq!(token_id(opaque), whole_token_sha256(opaque));
        }
    }

    #[test]
    fn one_pass_gives_both_hashes() {
        for token in [
            "aGVhZA.cGF5bG9hZA.c2ln",
            "aGVhZA.cGF5bG9hZA.",
            "opaque",
            "a.b",
            "",
        ] {
            let both = Digests::of(token);
            assert_eq!(both.sha256, whole_token_sha256(token), "{token}");
            assert_eq!(both.id, token_id(token), "{token}");
        }
    }
}
