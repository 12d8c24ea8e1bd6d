//! JWKS parsing: turns a JSON Web Key Set into decoded verification keys, once, at configure time.

use std::fmt;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jwt_compact::alg::RsaPublicKey;
use p256::pkcs8::{AssociatedOid, EncodePublicKey};
use rsa::BigUint;
use serde_json::Value;
use spki::der::{asn1::AnyRef, asn1::BitStringRef, Encode};
use spki::{AlgorithmIdentifierRef, ObjectIdentifier, SubjectPublicKeyInfoRef};

use crate::keys::material::{KeyMaterial, RsaKey};
use crate::token::algorithm::Algorithm;

/// id-ecPublicKey (RFC 5480 §2.1.1).
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

/// RFC 7518 §3.3: RSA keys of fewer bits must not be used.
const MIN_RSA_BITS: usize = 2048;

/// One usable key: material plus what the JWKS said about it.
#[derive(Debug, Clone)]
pub struct VerificationKey {
    /// `None` matches any `kid` in a token.
    pub kid: Option<String>,
    /// The key's `alg` pins it to one algorithm; `None`: any algorithm the material fits.
    pub algorithm: Option<Algorithm>,
    pub material: KeyMaterial,
    /// DER SubjectPublicKeyInfo, encoded once here for the host's verifier.
    pub spki_der: Vec<u8>,
}

impl VerificationKey {
    pub fn serves(&self, algorithm: Algorithm) -> bool {
        self.algorithm.map_or_else(
            || algorithm.fits(&self.material),
            |pinned| pinned == algorithm,
        )
    }
}

/// The keys of one provider.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    pub keys: Vec<VerificationKey>,
}

impl KeySet {
    /// The same keys, in the same order, with the same `kid`s and `alg`s: a token that
    /// verified with one set verifies with the other (a refetch that brought nothing new).
    pub fn same_keys(&self, other: &KeySet) -> bool {
        self.keys.len() == other.keys.len()
            && self.keys.iter().zip(&other.keys).all(|(a, b)| {
                a.kid == b.kid
                    && a.algorithm == b.algorithm
                    && a.spki_der == b.spki_der
                    && a.material.same_as(&b.material)
            })
    }
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
    let value: Value =
        serde_json::from_slice(text.as_bytes()).map_err(|e| JwksError::NotJson(e.to_string()))?;
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
    let (material, spki_der) = decode_material(object)?;
    if let Some(alg) = declared {
        if !alg.fits(&material) {
            return Err(KeySkip::AlgorithmDoesNotFitKey {
                alg: alg.name().to_owned(),
                kty: text("kty").unwrap_or_default().to_owned(),
            });
        }
    }
    Ok(VerificationKey {
        kid: text("kid").map(str::to_owned),
        algorithm: declared,
        material,
        spki_der,
    })
}

/// Decodes the public part of a JWK (RFC 7518 §6) and its DER SubjectPublicKeyInfo.
fn decode_material(
    object: &serde_json::Map<String, Value>,
) -> Result<(KeyMaterial, Vec<u8>), KeySkip> {
    let invalid = |e: &dyn fmt::Display| KeySkip::InvalidKey(e.to_string());
    let text = |name: &str| object.get(name).and_then(Value::as_str);
    match text("kty") {
        Some("RSA") => {
            let n = BigUint::from_bytes_be(&member(object, "n")?);
            let e = BigUint::from_bytes_be(&member(object, "e")?);
            let key = RsaPublicKey::new(n, e).map_err(|e| invalid(&e))?;
            let bits = rsa::traits::PublicKeyParts::size(&key) * 8;
            if bits < MIN_RSA_BITS {
                return Err(KeySkip::WeakRsaKey(bits));
            }
            let der = key.to_public_key_der().map_err(|e| invalid(&e))?;
            Ok((KeyMaterial::Rsa(RsaKey::new(key)), der.into_vec()))
        }
        Some("EC") => {
            let point = |size: usize| uncompressed_point(object, size);
            match text("crv").unwrap_or_default() {
                "P-256" => {
                    let key =
                        p256::PublicKey::from_sec1_bytes(&point(32)?).map_err(|e| invalid(&e))?;
                    let der = key.to_public_key_der().map_err(|e| invalid(&e))?;
                    Ok((KeyMaterial::P256(key.into()), der.into_vec()))
                }
                "P-384" => Ok((KeyMaterial::P384, ec_spki::<p384::NistP384>(&point(48)?)?)),
                "P-521" => Ok((KeyMaterial::P521, ec_spki::<p521::NistP521>(&point(66)?)?)),
                other => Err(KeySkip::UnsupportedCurve(other.to_owned())),
            }
        }
        Some("OKP") => match text("crv").unwrap_or_default() {
            "Ed25519" => {
                let key = ed25519_compact::PublicKey::from_slice(&member(object, "x")?)
                    .map_err(|e| invalid(&e))?;
                Ok((KeyMaterial::Ed25519(key), Vec::new()))
            }
            other => Err(KeySkip::UnsupportedCurve(other.to_owned())),
        },
        Some("oct") => Ok((KeyMaterial::Hmac(member(object, "k")?), Vec::new())),
        Some(other) => Err(KeySkip::UnsupportedKeyType(other.to_owned())),
        None => Err(KeySkip::InvalidKey("missing \"kty\"".to_owned())),
    }
}

/// A base64url member of a JWK, decoded (trailing `=` padding tolerated).
fn member(object: &serde_json::Map<String, Value>, name: &str) -> Result<Vec<u8>, KeySkip> {
    let text = object
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| KeySkip::InvalidKey(format!("missing \"{name}\"")))?;
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|e| KeySkip::InvalidKey(format!("\"{name}\": {e}")))
}

/// RFC 5480 SubjectPublicKeyInfo for an EC point, for curves verified only by the host (which
/// also checks that the point is on the curve when it imports the key).
fn ec_spki<C: AssociatedOid>(sec1_uncompressed: &[u8]) -> Result<Vec<u8>, KeySkip> {
    let curve = AnyRef::from(&C::OID);
    SubjectPublicKeyInfoRef {
        algorithm: AlgorithmIdentifierRef {
            oid: ID_EC_PUBLIC_KEY,
            parameters: Some(curve),
        },
        subject_public_key: BitStringRef::from_bytes(sec1_uncompressed)
            .map_err(|e| KeySkip::InvalidKey(e.to_string()))?,
    }
    .to_der()
    .map_err(|e| KeySkip::InvalidKey(e.to_string()))
}

/// SEC1 `0x04 || x || y` from a JWK's coordinates, which RFC 7518 §6.2.1.2 requires at full
/// field width.
fn uncompressed_point(
    object: &serde_json::Map<String, Value>,
    size: usize,
) -> Result<Vec<u8>, KeySkip> {
    let coordinate = |name: &str| -> Result<Vec<u8>, KeySkip> {
        let bytes = member(object, name)?;
        if bytes.len() == size {
            Ok(bytes)
        } else {
            Err(KeySkip::InvalidKey(format!(
                "\"{name}\" is {} bytes, expected {size}",
                bytes.len()
            )))
        }
    };
    let mut point = Vec::with_capacity(1 + 2 * size);
    point.push(0x04);
    point.extend(coordinate("x")?);
    point.extend(coordinate("y")?);
    Ok(point)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{keys, public_jwk};
    use jwt_compact::jwk::JsonWebKey;
    use serde_json::json;

    fn skip_of(key: Value) -> KeySkip {
        let parsed = parse_keys(&[key]);
        assert!(parsed.key_set.keys.is_empty());
        parsed.skipped.into_iter().next().unwrap().1
    }

    /// A refetch that brought the same JWKS keeps the verified-token cache; any change to a
    /// key of any kind, its `kid` or its `alg` is "changed", so a removed key stops working.
    #[test]
    fn same_keys_tells_a_repeat_fetch_from_a_change() {
        let set = |jwks: &Value| parse_keys(jwks["keys"].as_array().unwrap()).key_set;
        let all = crate::testkit::jwks_all_algorithms();
        assert!(set(&all).same_keys(&set(&all)));
        let k = keys();
        let count = all["keys"].as_array().unwrap().len();
        for index in 0..count {
            let mut changed = all.clone();
            let key = &mut changed["keys"][index];
            let kty = key["kty"].as_str().unwrap().to_owned();
            *key = match kty.as_str() {
                "RSA" => public_jwk(JsonWebKey::from(&k.rsa_other), "x", None),
                "EC" => {
                    let other = p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
                    public_jwk(JsonWebKey::from(&other), "x", None)
                }
                "OKP" => {
                    let other = ed25519_compact::KeyPair::from_seed([7; 32].into());
                    public_jwk(JsonWebKey::from(&other.pk), "x", None)
                }
                _ => json!({ "kty": "oct", "k": crate::testkit::b64(b"another secret") }),
            };
            key["kid"] = all["keys"][index]["kid"].clone();
            assert!(
                !set(&all).same_keys(&set(&changed)),
                "{kty} key {index} changed"
            );
        }
        let mut renamed = all.clone();
        renamed["keys"][0]["kid"] = json!("renamed");
        assert!(!set(&all).same_keys(&set(&renamed)));
        let mut pinned = all.clone();
        pinned["keys"][0]["alg"] = json!("RS512");
        assert!(!set(&all).same_keys(&set(&pinned)));
        let mut fewer = all.clone();
        fewer["keys"].as_array_mut().unwrap().pop();
        assert!(!set(&all).same_keys(&set(&fewer)));
    }

    #[test]
    fn algorithm_comes_from_alg_or_key_type() {
        let k = keys();
        let parsed = parse_keys(&[
            public_jwk(JsonWebKey::from(&k.rsa), "a", None),
            public_jwk(JsonWebKey::from(&k.ec), "b", Some("ES256")),
        ]);
        assert!(parsed.skipped.is_empty());
        let rsa = &parsed.key_set.keys[0];
        assert_eq!(rsa.algorithm, None);
        assert_eq!(rsa.kid.as_deref(), Some("a"));
        for alg in [Algorithm::Rs256, Algorithm::Rs384, Algorithm::Rs512] {
            assert!(rsa.serves(alg));
        }
        assert!(!rsa.serves(Algorithm::Es256));
        let ec = &parsed.key_set.keys[1];
        assert_eq!(ec.algorithm, Some(Algorithm::Es256));
        assert!(ec.serves(Algorithm::Es256) && !ec.serves(Algorithm::Es384));
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
            skip_of(json!({ "kty": "OKP", "crv": "X25519", "x": "AAAA" })),
            KeySkip::UnsupportedCurve("X25519".into())
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

    /// Known answers: openssl's DER SubjectPublicKeyInfo for keys whose JWK we build.
    #[test]
    fn spki_der_matches_openssl() {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        use p256::pkcs8::DecodePrivateKey;
        let fixture = |name: &str| {
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/").to_owned() + name)
                .unwrap()
        };
        let pem = |name: &str| String::from_utf8(fixture(name)).unwrap();
        let rsa = jwt_compact::alg::RsaPrivateKey::from_pkcs8_pem(&pem("rsa-3072.pem")).unwrap();
        let p256 = p256::SecretKey::from_pkcs8_pem(&pem("ec-p256.pem"))
            .unwrap()
            .public_key();
        let p384 = p384::SecretKey::from_pkcs8_pem(&pem("ec-p384.pem"))
            .unwrap()
            .public_key();
        let p521 = p521::SecretKey::from_pkcs8_pem(&pem("ec-p521.pem"))
            .unwrap()
            .public_key();
        let cases = [
            (
                public_jwk(JsonWebKey::from(&rsa), "r", None),
                "rsa-3072-spki.der",
            ),
            (
                crate::testkit::ec_jwk("P-256", p256.to_encoded_point(false).as_bytes(), "a"),
                "ec-p256-spki.der",
            ),
            (
                crate::testkit::ec_jwk("P-384", p384.to_encoded_point(false).as_bytes(), "b"),
                "ec-p384-spki.der",
            ),
            (
                crate::testkit::ec_jwk("P-521", p521.to_encoded_point(false).as_bytes(), "c"),
                "ec-p521-spki.der",
            ),
        ];
        for (jwk, expected) in cases {
            let parsed = parse_keys(&[jwk]);
            assert!(
                parsed.skipped.is_empty(),
                "{expected}: {:?}",
                parsed.skipped
            );
            assert_eq!(
                parsed.key_set.keys[0].spki_der,
                fixture(expected),
                "{expected}"
            );
        }
    }

    #[test]
    fn ec_coordinates_must_be_full_width_and_on_the_curve() {
        let mut jwk = crate::testkit::ec_jwk(
            "P-256",
            keys().ec.verifying_key().to_encoded_point(false).as_bytes(),
            "a",
        );
        let good = jwk.clone();
        jwk["x"] = json!("AAAA");
        assert!(matches!(skip_of(jwk), KeySkip::InvalidKey(m) if m.contains("expected 32")));
        let mut off_curve = good;
        off_curve["y"] = off_curve["x"].clone();
        assert!(matches!(skip_of(off_curve), KeySkip::InvalidKey(_)));
    }
}
