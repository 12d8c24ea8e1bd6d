//! Decoded public key material: what a verifier needs of a key, apart from where it came from
//! (a JWKS, a local file) and what it may be used for.

use std::fmt;

use jwt_compact::alg::RsaPublicKey;

/// Decoded public key material.
#[derive(Clone)]
pub enum KeyMaterial {
    Rsa(RsaKey),
    P256(p256::ecdsa::VerifyingKey),
    /// Verified by the host only: the key is kept as its DER SubjectPublicKeyInfo.
    P384,
    /// Verified by the host only, like P-384.
    P521,
    Ed25519(ed25519_compact::PublicKey),
    /// An `oct` key: an HMAC secret, usable only by providers that allow HS* algorithms.
    Hmac(Vec<u8>),
}

impl KeyMaterial {
    /// Same kind and same key. RSA and EC keys are also compared through their DER
    /// SubjectPublicKeyInfo by `KeySet::same_keys`; Ed25519 and HMAC keys have none, so their
    /// bytes are compared here.
    pub fn same_as(&self, other: &KeyMaterial) -> bool {
        match (self, other) {
            (KeyMaterial::Rsa(a), KeyMaterial::Rsa(b)) => a.modulus == b.modulus,
            (KeyMaterial::P256(a), KeyMaterial::P256(b)) => a == b,
            (KeyMaterial::P384, KeyMaterial::P384) | (KeyMaterial::P521, KeyMaterial::P521) => true,
            (KeyMaterial::Ed25519(a), KeyMaterial::Ed25519(b)) => a.as_ref() == b.as_ref(),
            (KeyMaterial::Hmac(a), KeyMaterial::Hmac(b)) => a == b,
            _ => false,
        }
    }
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

/// An RSA public key and its modulus as big-endian bytes, kept so that a signature's form can
/// be checked with a byte comparison on every request rather than a bignum built from it.
#[derive(Clone)]
pub struct RsaKey {
    key: RsaPublicKey,
    modulus: Box<[u8]>,
}

impl RsaKey {
    pub fn new(key: RsaPublicKey) -> Self {
        use rsa::traits::PublicKeyParts as _;
        let modulus = key.n().to_bytes_be().into_boxed_slice();
        RsaKey { key, modulus }
    }

    pub fn key(&self) -> &RsaPublicKey {
        &self.key
    }

    /// RFC 8017 §5.2.2 / §8.1.2: a signature is exactly the modulus length and below the
    /// modulus. Big-endian byte strings of equal length compare as the numbers they spell.
    pub fn takes_signature_of_form(&self, signature: &[u8]) -> bool {
        signature.len() == self.modulus.len() && signature < &*self.modulus
    }
}
