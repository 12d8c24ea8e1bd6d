//! JWKS parsing: turns a JSON Web Key Set into decoded verification keys, once, at configure time.

use std::fmt;

use jwt_compact::{alg::RsaPublicKey, jwk::JsonWebKey};
use serde_json::Value;

use crate::algorithm::Algorithm;

/// RFC 7518 §3.3: RSA keys of fewer bits must not be used.
const MIN_RSA_BITS: usize = 2048;

/// Decoded public key material.
#[derive(Debug, Clone)]
pub enum KeyMaterial {
    Rsa(RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
}

/// One usable key: material plus what the JWKS said about it.
#[derive(Debug, Clone)]
pub struct VerificationKey {
    /// `None` matches any `kid` in a token.
    pub kid: Option<String>,
    /// The algorithm this key is pinned to (its `alg`, else derived from `kty`/`crv`).
    pub algorithm: Algorithm,
    pub material: KeyMaterial,
}

/// The keys of one provider.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    pub keys: Vec<VerificationKey>,
}

/// Why one key of a JWKS was skipped. Skipping is not fatal: the other keys still serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySkip {
    NotAnObject,
    EncryptionKey,
    UnsupportedAlgorithm(String),
    UnsupportedKeyType(String),
    UnsupportedCurve(String),
    InvalidKey(String),
    WeakRsaKey(usize),
    AlgorithmDoesNotFitKey { alg: String, kty: String },
}

impl fmt::Display for KeySkip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySkip::NotAnObject => f.write_str("not a JSON object"),
            KeySkip::EncryptionKey => f.write_str("\"use\" is \"enc\", not a signing key"),
            KeySkip::UnsupportedAlgorithm(alg) => write!(f, "algorithm {alg:?} is not supported"),
            KeySkip::UnsupportedKeyType(kty) => write!(f, "key type {kty:?} is not supported"),
            KeySkip::UnsupportedCurve(crv) => write!(f, "curve {crv:?} is not supported"),
            KeySkip::InvalidKey(why) => write!(f, "invalid key: {why}"),
            KeySkip::WeakRsaKey(bits) => {
                write!(
                    f,
                    "RSA key of {bits} bits (at least {MIN_RSA_BITS} required)"
                )
            }
            KeySkip::AlgorithmDoesNotFitKey { alg, kty } => {
                write!(f, "algorithm {alg} cannot be used with a {kty} key")
            }
        }
    }
}

/// A JWKS document that could not be used at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksError {
    NotJson(String),
    NoKeysArray,
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksError::NotJson(why) => write!(f, "not valid JSON: {why}"),
            JwksError::NoKeysArray => f.write_str("expected an object with a \"keys\" array"),
        }
    }
}

/// The parsed set plus one entry per skipped key (its index and why).
#[derive(Debug)]
pub struct ParsedJwks {
    pub key_set: KeySet,
    pub skipped: Vec<(usize, KeySkip)>,
}

pub fn parse_jwks_str(text: &str) -> Result<ParsedJwks, JwksError> {
    let value: Value = serde_json::from_str(text).map_err(|e| JwksError::NotJson(e.to_string()))?;
    match value.get("keys").and_then(Value::as_array) {
        Some(keys) => Ok(parse_keys(keys)),
        None => Err(JwksError::NoKeysArray),
    }
}

pub fn parse_keys(keys: &[Value]) -> ParsedJwks {
    let mut key_set = KeySet::default();
    let mut skipped = Vec::new();
    for (index, key) in keys.iter().enumerate() {
        match parse_key(key) {
            Ok(key) => key_set.keys.push(key),
            Err(skip) => skipped.push((index, skip)),
        }
    }
    ParsedJwks { key_set, skipped }
}

fn parse_key(value: &Value) -> Result<VerificationKey, KeySkip> {
    let object = value.as_object().ok_or(KeySkip::NotAnObject)?;
    let text = |name: &str| object.get(name).and_then(Value::as_str);
    if text("use") == Some("enc") {
        return Err(KeySkip::EncryptionKey);
    }
    let declared = match text("alg") {
        Some(name) => Some(
            Algorithm::from_name(name)
                .ok_or_else(|| KeySkip::UnsupportedAlgorithm(name.to_owned()))?,
        ),
        None => None,
    };
    let jwk: JsonWebKey<'_> =
        serde_json::from_value(value.clone()).map_err(|e| match text("kty") {
            Some("RSA" | "EC") | None => KeySkip::InvalidKey(e.to_string()),
            Some(kty) => KeySkip::UnsupportedKeyType(kty.to_owned()),
        })?;
    let (material, natural) = decode_material(&jwk)?;
    let algorithm = match declared {
        Some(alg) if alg.fits(&material) => alg,
        Some(alg) => {
            return Err(KeySkip::AlgorithmDoesNotFitKey {
                alg: alg.name().to_owned(),
                kty: text("kty").unwrap_or_default().to_owned(),
            })
        }
        None => natural,
    };
    Ok(VerificationKey {
        kid: text("kid").map(str::to_owned),
        algorithm,
        material,
    })
}

/// Decodes the public part of a JWK, with the algorithm a key of that type implies.
fn decode_material(jwk: &JsonWebKey<'_>) -> Result<(KeyMaterial, Algorithm), KeySkip> {
    match jwk {
        JsonWebKey::Rsa { .. } => {
            let key =
                RsaPublicKey::try_from(jwk).map_err(|e| KeySkip::InvalidKey(e.to_string()))?;
            let bits = rsa::traits::PublicKeyParts::size(&key) * 8;
            if bits < MIN_RSA_BITS {
                return Err(KeySkip::WeakRsaKey(bits));
            }
            Ok((KeyMaterial::Rsa(key), Algorithm::Rs256))
        }
        JsonWebKey::EllipticCurve { curve, .. } if curve == "P-256" => {
            let key = p256::ecdsa::VerifyingKey::try_from(jwk)
                .map_err(|e| KeySkip::InvalidKey(e.to_string()))?;
            Ok((KeyMaterial::P256(key), Algorithm::Es256))
        }
        JsonWebKey::EllipticCurve { curve, .. } => {
            Err(KeySkip::UnsupportedCurve(curve.to_string()))
        }
        JsonWebKey::Symmetric { .. } => Err(KeySkip::UnsupportedKeyType("oct".to_owned())),
        JsonWebKey::KeyPair { curve, .. } => Err(KeySkip::UnsupportedCurve(curve.to_string())),
        _ => Err(KeySkip::UnsupportedKeyType("unknown".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{keys, public_jwk};
    use serde_json::json;

    fn skip_of(key: Value) -> KeySkip {
        let parsed = parse_keys(&[key]);
        assert!(parsed.key_set.keys.is_empty());
        parsed.skipped.into_iter().next().unwrap().1
    }

    #[test]
    fn algorithm_comes_from_alg_or_key_type() {
        let k = keys();
        let parsed = parse_keys(&[
            public_jwk(JsonWebKey::from(&k.rsa), "a", None),
            public_jwk(JsonWebKey::from(&k.ec), "b", Some("ES256")),
        ]);
        assert!(parsed.skipped.is_empty());
        assert_eq!(parsed.key_set.keys[0].algorithm, Algorithm::Rs256);
        assert_eq!(parsed.key_set.keys[0].kid.as_deref(), Some("a"));
        assert_eq!(parsed.key_set.keys[1].algorithm, Algorithm::Es256);
    }

    #[test]
    fn keys_that_cannot_serve_are_skipped_with_a_reason() {
        let k = keys();
        let mut enc = public_jwk(JsonWebKey::from(&k.rsa), "a", None);
        enc["use"] = json!("enc");
        assert_eq!(skip_of(enc), KeySkip::EncryptionKey);
        assert_eq!(
            skip_of(public_jwk(JsonWebKey::from(&k.ec), "b", Some("RS256"))),
            KeySkip::AlgorithmDoesNotFitKey {
                alg: "RS256".into(),
                kty: "EC".into()
            }
        );
        assert_eq!(
            skip_of(public_jwk(JsonWebKey::from(&k.rsa), "a", Some("XX1"))),
            KeySkip::UnsupportedAlgorithm("XX1".into())
        );
        assert_eq!(
            skip_of(json!({ "kty": "oct", "k": "c2VjcmV0" })),
            KeySkip::UnsupportedKeyType("oct".into())
        );
        assert_eq!(
            skip_of(json!({ "kty": "XYZ" })),
            KeySkip::UnsupportedKeyType("XYZ".into())
        );
        assert_eq!(skip_of(json!("key")), KeySkip::NotAnObject);
        assert!(matches!(
            skip_of(json!({ "kty": "RSA", "n": "AQAB" })),
            KeySkip::InvalidKey(_)
        ));
    }

    #[test]
    fn weak_rsa_keys_are_refused() {
        let small = jwt_compact::alg::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
        assert_eq!(
            skip_of(public_jwk(JsonWebKey::from(&small), "s", None)),
            KeySkip::WeakRsaKey(1024)
        );
    }

    #[test]
    fn document_level_errors() {
        assert!(matches!(parse_jwks_str("nope"), Err(JwksError::NotJson(_))));
        assert_eq!(parse_jwks_str("{}").unwrap_err(), JwksError::NoKeysArray);
        assert_eq!(parse_jwks_str("[]").unwrap_err(), JwksError::NoKeysArray);
    }
}
