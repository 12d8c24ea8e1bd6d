//! Decoded public key material: what a verifier needs of a key, apart from where it came from
//! (a JWKS, a local file) and what it may be used for.

use std::fmt;

use jwt_compact::alg::RsaPublicKey;

/// Decoded public key material.
#[derive(Clone)]
pub enum KeyMaterial {
    Rsa(RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
    /// Verified by the host only: the key is kept as its DER SubjectPublicKeyInfo.
    P384,
    /// Verified by the host only, like P-384.
    P521,
    Ed25519(ed25519_compact::PublicKey),
    /// An `oct` key: an HMAC secret, usable only by providers that allow HS* algorithms.
    Hmac(Vec<u8>),
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyMaterial::Rsa(_) => "Rsa",
            KeyMaterial::P256(_) => "P256",
            KeyMaterial::P384 => "P384",
            KeyMaterial::P521 => "P521",
            KeyMaterial::Ed25519(_) => "Ed25519",
            // Never the secret itself.
            KeyMaterial::Hmac(_) => "Hmac",
        })
    }
}
