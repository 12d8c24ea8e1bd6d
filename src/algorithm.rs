//! The JWS algorithms bearer-guard verifies, and the one place each is verified.

use jwt_compact::{
    alg::{Es256, Rsa, RsaSignature},
    Algorithm as _, AlgorithmSignature,
};

use crate::jwks::KeyMaterial;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Rs256,
    Es256,
}

/// How a token's `alg` header is classified before any key is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlgorithmClass {
    Supported(Algorithm),
    /// `none` in any letter case (RFC 8725 §3.1).
    Unsigned,
    /// HS256/384/512: refused because every configured key is asymmetric (RFC 8725 §3.1).
    Symmetric,
    Unsupported,
}

impl Algorithm {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "RS256" => Some(Algorithm::Rs256),
            "ES256" => Some(Algorithm::Es256),
            _ => None,
        }
    }

    pub fn classify(name: &str) -> AlgorithmClass {
        if let Some(alg) = Algorithm::from_name(name) {
            AlgorithmClass::Supported(alg)
        } else if name.eq_ignore_ascii_case("none") {
            AlgorithmClass::Unsigned
        } else if name.len() >= 2 && name.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("HS")) {
            AlgorithmClass::Symmetric
        } else {
            AlgorithmClass::Unsupported
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
        }
    }

    /// Whether a key of this material may be used with this algorithm.
    pub fn fits(self, material: &KeyMaterial) -> bool {
        matches!(
            (self, material),
            (Algorithm::Rs256, KeyMaterial::Rsa(_)) | (Algorithm::Es256, KeyMaterial::P256(_))
        )
    }

    /// Verifies `signature` over `signed_data` (the JWS signing input). A signature that cannot
    /// even be decoded for this algorithm is simply not valid.
    pub fn verify(self, material: &KeyMaterial, signed_data: &[u8], signature: &[u8]) -> bool {
        match (self, material) {
            (Algorithm::Rs256, KeyMaterial::Rsa(key)) => RsaSignature::try_from_slice(signature)
                .is_ok_and(|sig| Rsa::rs256().verify_signature(&sig, key, signed_data)),
            (Algorithm::Es256, KeyMaterial::P256(key)) => {
                signature.len() == 64
                    && p256::ecdsa::Signature::try_from_slice(signature)
                        .is_ok_and(|sig| Es256.verify_signature(&sig, key, signed_data))
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_algorithm_names() {
        assert_eq!(
            Algorithm::classify("RS256"),
            AlgorithmClass::Supported(Algorithm::Rs256)
        );
        assert_eq!(
            Algorithm::classify("ES256"),
            AlgorithmClass::Supported(Algorithm::Es256)
        );
        for none in ["none", "None", "NONE", "nOnE"] {
            assert_eq!(Algorithm::classify(none), AlgorithmClass::Unsigned);
        }
        for hs in ["HS256", "HS384", "HS512", "hs256"] {
            assert_eq!(Algorithm::classify(hs), AlgorithmClass::Symmetric);
        }
        for other in ["rs256", "PS256", "EdDSA", "", "H", "ES256K"] {
            assert_eq!(Algorithm::classify(other), AlgorithmClass::Unsupported);
        }
    }
}
