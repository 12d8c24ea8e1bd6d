//! The JWS algorithms bearer-guard verifies, and the one place each is verified: through the
//! host's crypto when it has one, else in wasm.

use jwt_compact::{
    alg::{Ed25519, Hs256, Hs256Key, Hs384, Hs384Key, Hs512, Hs512Key, Rsa, RsaSignature},
    Algorithm as _, AlgorithmSignature,
};
use p256::ecdsa::signature::Verifier as _;

use crate::keys::host_crypto::{HashName, HostCheck, HostCrypto};
use crate::keys::material::KeyMaterial;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    Es512,
    EdDsa,
    Hs256,
    Hs384,
    Hs512,
}

/// How a token's `alg` header is classified before any key is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlgorithmClass {
    Supported(Algorithm),
    /// `none` in any letter case (RFC 8725 §3.1).
    Unsigned,
    Unsupported,
}

impl Algorithm {
    pub const ALL: [Algorithm; 13] = [
        Algorithm::Rs256,
        Algorithm::Rs384,
        Algorithm::Rs512,
        Algorithm::Ps256,
        Algorithm::Ps384,
        Algorithm::Ps512,
        Algorithm::Es256,
        Algorithm::Es384,
        Algorithm::Es512,
        Algorithm::EdDsa,
        Algorithm::Hs256,
        Algorithm::Hs384,
        Algorithm::Hs512,
    ];

    pub fn from_name(name: &str) -> Option<Self> {
        Algorithm::ALL.into_iter().find(|alg| alg.name() == name)
    }

    pub fn classify(name: &str) -> AlgorithmClass {
        if let Some(alg) = Algorithm::from_name(name) {
            AlgorithmClass::Supported(alg)
        } else if name.eq_ignore_ascii_case("none") {
            AlgorithmClass::Unsigned
        } else {
            AlgorithmClass::Unsupported
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Rs384 => "RS384",
            Algorithm::Rs512 => "RS512",
            Algorithm::Ps256 => "PS256",
            Algorithm::Ps384 => "PS384",
            Algorithm::Ps512 => "PS512",
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
            Algorithm::Es512 => "ES512",
            Algorithm::EdDsa => "EdDSA",
            Algorithm::Hs256 => "HS256",
            Algorithm::Hs384 => "HS384",
            Algorithm::Hs512 => "HS512",
        }
    }

    /// HMAC: the key is a shared secret. Never the default (RFC 8725 §3.1, §3.2).
    pub fn is_symmetric(self) -> bool {
        matches!(self, Algorithm::Hs256 | Algorithm::Hs384 | Algorithm::Hs512)
    }

    /// Which digest the host is asked for; `None`: the host cannot verify this algorithm
    /// (PSS padding cannot be requested, EdDSA has no pre-hash, HMAC is cheap in wasm).
    fn host_hash(self) -> Option<HashName> {
        match self {
            Algorithm::Rs256 | Algorithm::Es256 => Some(HashName::Sha256),
            Algorithm::Rs384 | Algorithm::Es384 => Some(HashName::Sha384),
            Algorithm::Rs512 | Algorithm::Es512 => Some(HashName::Sha512),
            _ => None,
        }
    }

    /// Whether a key of this material may be used with this algorithm.
    pub fn fits(self, material: &KeyMaterial) -> bool {
        use Algorithm::*;
        match material {
            KeyMaterial::Rsa(_) => matches!(self, Rs256 | Rs384 | Rs512 | Ps256 | Ps384 | Ps512),
            KeyMaterial::P256(_) => self == Es256,
            KeyMaterial::P384 => self == Es384,
            KeyMaterial::P521 => self == Es512,
            KeyMaterial::Ed25519(_) => self == EdDsa,
            // RFC 7518 §3.2: the secret is at least as long as the hash output.
            KeyMaterial::Hmac(secret) => match self {
                Hs256 => secret.len() >= 32,
                Hs384 => secret.len() >= 48,
                Hs512 => secret.len() >= 64,
                _ => false,
            },
        }
    }

    /// Verifies `signature` over `signed_data` (the JWS signing input). Through `host` when
    /// given and the host can; if the host cannot run the check, in wasm. A signature that
    /// cannot even be decoded for this algorithm is simply not valid.
    pub fn verify(
        self,
        material: &KeyMaterial,
        spki_der: &[u8],
        signed_data: &[u8],
        signature: &[u8],
        host: Option<&dyn HostCrypto>,
    ) -> bool {
        if !canonical_rsa_signature(material, signature) {
            return false;
        }
        if let (Some(host), Some(hash)) = (host, self.host_hash()) {
            let Some(host_signature) = self.host_signature(signature) else {
                return false;
            };
            let check = HostCheck {
                hash,
                public_key_der: spki_der,
                signature: &host_signature,
                text: signed_data,
            };
            if let Ok(valid) = host.verify(&check) {
                return valid;
            }
        }
        self.verify_in_wasm(material, signed_data, signature)
    }

    /// The signature as BoringSSL's `EVP_DigestVerify` takes it: RSA as is, ECDSA's JWS
    /// `r || s` (RFC 7518 §3.4) as an ASN.1 DER `ECDSA-Sig-Value`.
    fn host_signature(self, signature: &[u8]) -> Option<Vec<u8>> {
        match self {
            Algorithm::Es256 => p256::ecdsa::Signature::from_slice(signature)
                .ok()
                .map(|s| s.to_der().as_bytes().to_vec()),
            Algorithm::Es384 => ecdsa::Signature::<p384::NistP384>::from_slice(signature)
                .ok()
                .map(|s| s.to_der().as_bytes().to_vec()),
            Algorithm::Es512 => ecdsa::Signature::<p521::NistP521>::from_slice(signature)
                .ok()
                .map(|s| s.to_der().as_bytes().to_vec()),
            _ => Some(signature.to_vec()),
        }
    }

    /// ES384/ES512 need the host: jwt-compact has no P-384/P-521, and carrying their
    /// arithmetic would double the filter's size for a path Envoy never takes.
    pub fn verifies_in_wasm(self) -> bool {
        !matches!(self, Algorithm::Es384 | Algorithm::Es512)
    }

    /// Fixed signature lengths. jwt-compact 0.8's `try_from_slice` for Ed25519 and HMAC
    /// signatures panics on any other length (found by `make fuzz`): checked first.
    fn fixed_signature_len(self) -> Option<usize> {
        match self {
            Algorithm::EdDsa | Algorithm::Hs512 => Some(64),
            Algorithm::Hs256 => Some(32),
            Algorithm::Hs384 => Some(48),
            _ => None,
        }
    }

    fn verify_in_wasm(self, material: &KeyMaterial, signed_data: &[u8], signature: &[u8]) -> bool {
        if self
            .fixed_signature_len()
            .is_some_and(|len| signature.len() != len)
        {
            return false;
        }
        let rsa = |alg: Rsa, key| {
            RsaSignature::try_from_slice(signature)
                .is_ok_and(|sig| alg.verify_signature(&sig, key, signed_data))
        };
        match (self, material) {
            (Algorithm::Rs256, KeyMaterial::Rsa(key)) => rsa(Rsa::rs256(), key.key()),
            (Algorithm::Rs384, KeyMaterial::Rsa(key)) => rsa(Rsa::rs384(), key.key()),
            (Algorithm::Rs512, KeyMaterial::Rsa(key)) => rsa(Rsa::rs512(), key.key()),
            (Algorithm::Ps256, KeyMaterial::Rsa(key)) => rsa(Rsa::ps256(), key.key()),
            (Algorithm::Ps384, KeyMaterial::Rsa(key)) => rsa(Rsa::ps384(), key.key()),
            (Algorithm::Ps512, KeyMaterial::Rsa(key)) => rsa(Rsa::ps512(), key.key()),
            (Algorithm::Es256, KeyMaterial::P256(key)) => {
                p256::ecdsa::Signature::from_slice(signature)
                    .is_ok_and(|sig| key.verify(signed_data, &sig).is_ok())
            }
            (Algorithm::EdDsa, KeyMaterial::Ed25519(key)) => {
                ed25519_compact::Signature::try_from_slice(signature)
                    .is_ok_and(|sig| Ed25519.verify_signature(&sig, key, signed_data))
            }
            (Algorithm::Hs256, KeyMaterial::Hmac(secret)) => {
                AlgorithmSignature::try_from_slice(signature).is_ok_and(|sig| {
                    Hs256.verify_signature(&sig, &Hs256Key::new(secret), signed_data)
                })
            }
            (Algorithm::Hs384, KeyMaterial::Hmac(secret)) => {
                AlgorithmSignature::try_from_slice(signature).is_ok_and(|sig| {
                    Hs384.verify_signature(&sig, &Hs384Key::new(secret), signed_data)
                })
            }
            (Algorithm::Hs512, KeyMaterial::Hmac(secret)) => {
                AlgorithmSignature::try_from_slice(signature).is_ok_and(|sig| {
                    Hs512.verify_signature(&sig, &Hs512Key::new(secret), signed_data)
                })
            }
            _ => false,
        }
    }
}

/// RFC 8017 §5.2.2 / §8.1.2: an RSA signature is exactly the modulus length and below the
/// modulus. Checked before any verifier sees it: `s + n` is `s` modulo `n`, and the `rsa`
/// crate's PSS path accepts it, which would give a token a second spelling (a new whole-token
/// hash) from the issuer's one signature. Other key types have no such check to make here.
fn canonical_rsa_signature(material: &KeyMaterial, signature: &[u8]) -> bool {
    match material {
        KeyMaterial::Rsa(key) => key.takes_signature_of_form(signature),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_algorithm_names() {
        for alg in Algorithm::ALL {
            assert_eq!(
                Algorithm::classify(alg.name()),
                AlgorithmClass::Supported(alg)
            );
        }
        for none in ["none", "None", "NONE", "nOnE"] {
            assert_eq!(Algorithm::classify(none), AlgorithmClass::Unsigned);
        }
        for other in ["rs256", "hs256", "Ed25519", "", "H", "ES256K", "RSA-OAEP"] {
            assert_eq!(Algorithm::classify(other), AlgorithmClass::Unsupported);
        }
    }

    /// JWS ECDSA signatures are fixed-width `r || s`; DER integers are minimal and signed.
    #[test]
    fn ecdsa_signatures_become_minimal_der() {
        // r = 1 (31 leading zero bytes), s = 0x80 followed by zeros (high bit set).
        let mut raw = [0u8; 64];
        raw[31] = 1;
        raw[32] = 0x80;
        let der = Algorithm::Es256.host_signature(&raw).unwrap();
        let mut expected = vec![0x30, 3 + 35, 0x02, 0x01, 0x01, 0x02, 0x21, 0x00, 0x80];
        expected.extend_from_slice(&[0u8; 31]);
        assert_eq!(der, expected);

        // Both high bits clear and no leading zeros: plain 32-byte integers.
        let raw = [0x11u8; 64];
        let der = Algorithm::Es256.host_signature(&raw).unwrap();
        assert_eq!(&der[..4], &[0x30, 68, 0x02, 32]);
        assert_eq!(der.len(), 70);
    }

    #[test]
    fn invalid_ecdsa_signatures_have_no_der_form() {
        assert_eq!(
            Algorithm::Es256.host_signature(&[0u8; 64]),
            None,
            "r = s = 0"
        );
        assert_eq!(
            Algorithm::Es256.host_signature(&[1u8; 63]),
            None,
            "wrong length"
        );
        assert_eq!(
            Algorithm::Es384.host_signature(&[1u8; 64]),
            None,
            "P-256 length for ES384"
        );
        assert_eq!(
            Algorithm::Es512.host_signature(&[0xffu8; 132]),
            None,
            "scalars >= n"
        );
    }

    #[test]
    fn p521_signatures_use_66_byte_scalars() {
        let mut raw = [0u8; 132];
        raw[65] = 7;
        raw[131] = 9;
        assert_eq!(
            Algorithm::Es512.host_signature(&raw).unwrap(),
            vec![0x30, 6, 0x02, 1, 7, 0x02, 1, 9]
        );
    }
}
