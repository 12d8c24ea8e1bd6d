//! Signing tokens and writing public JWKs: for the tests (through `testkit`), the demo and
//! benchmark token printers (examples, which include this file by path) and the CLI's `mint`
//! and `jwks`. Never part of the filter: compiled only for tests and the `cli` feature.
//! Self-contained (no `crate::` paths), so it can be included by path.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jwt_compact::{
    alg::{Es256, Rsa, RsaPrivateKey},
    jwk::JsonWebKey,
};
use serde_json::{json, Map, Value};

/// The demo keys (`envoy/demo-keys/`, public, for the demo and tests only) and their `kid`s,
/// as `envoy/demo.yaml` embeds them.
pub const DEMO_KEY_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/envoy/demo-keys");
/// The demo keys' PEMs, built in (they are public), so a copied binary needs no source tree.
pub const DEMO_RSA_PEM: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/envoy/demo-keys/rsa-demo.pem"
));
pub const DEMO_EC_PEM: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/envoy/demo-keys/ec-demo.pem"
));
pub const DEMO_RSA_KID: &str = "demo-rsa";
pub const DEMO_EC_KID: &str = "demo-ec";
/// The issuer and audience `envoy/demo.yaml`'s provider accepts.
pub const DEMO_ISSUER: &str = "https://demo-idp.bearer-guard.local";
pub const DEMO_AUDIENCE: &str = "demo-api";

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub enum Signer<'a> {
    Rs256(&'a RsaPrivateKey),
    Rs384(&'a RsaPrivateKey),
    Rs512(&'a RsaPrivateKey),
    Ps256(&'a RsaPrivateKey),
    Ps384(&'a RsaPrivateKey),
    Ps512(&'a RsaPrivateKey),
    Es256(&'a p256::ecdsa::SigningKey),
    Es384(&'a p384::ecdsa::SigningKey),
    Es512(&'a p521::ecdsa::SigningKey),
    EdDsa(&'a ed25519_compact::SecretKey),
    Hs256(&'a [u8]),
    Hs512(&'a [u8]),
}

impl Signer<'_> {
    pub fn alg(&self) -> &'static str {
        match self {
            Signer::Rs256(_) => "RS256",
            Signer::Rs384(_) => "RS384",
            Signer::Rs512(_) => "RS512",
            Signer::Ps256(_) => "PS256",
            Signer::Ps384(_) => "PS384",
            Signer::Ps512(_) => "PS512",
            Signer::Es256(_) => "ES256",
            Signer::Es384(_) => "ES384",
            Signer::Es512(_) => "ES512",
            Signer::EdDsa(_) => "EdDSA",
            Signer::Hs256(_) => "HS256",
            Signer::Hs512(_) => "HS512",
        }
    }

    /// The JWS signature over `message`, in its JWS form (ECDSA as `r || s`).
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        use jwt_compact::alg::{Ed25519, Hs256, Hs256Key, Hs512, Hs512Key};
        use jwt_compact::{Algorithm, AlgorithmSignature};
        use p256::ecdsa::signature::Signer as _;
        fn bytes(sig: &impl AlgorithmSignature) -> Vec<u8> {
            sig.as_bytes().into_owned()
        }
        match self {
            Signer::Rs256(k) => bytes(&Rsa::rs256().sign(k, message)),
            Signer::Rs384(k) => bytes(&Rsa::rs384().sign(k, message)),
            Signer::Rs512(k) => bytes(&Rsa::rs512().sign(k, message)),
            Signer::Ps256(k) => bytes(&Rsa::ps256().sign(k, message)),
            Signer::Ps384(k) => bytes(&Rsa::ps384().sign(k, message)),
            Signer::Ps512(k) => bytes(&Rsa::ps512().sign(k, message)),
            Signer::Es256(k) => bytes(&Es256.sign(k, message)),
            Signer::Es384(k) => {
                let sig: p384::ecdsa::Signature = k.sign(message);
                sig.to_bytes().to_vec()
            }
            Signer::Es512(k) => {
                let sig: p521::ecdsa::Signature = k.sign(message);
                sig.to_bytes().to_vec()
            }
            Signer::EdDsa(k) => bytes(&Ed25519.sign(k, message)),
            Signer::Hs256(secret) => bytes(&Hs256.sign(&Hs256Key::new(secret), message)),
            Signer::Hs512(secret) => bytes(&Hs512.sign(&Hs512Key::new(secret), message)),
        }
    }
}

pub fn mint(signer: Signer<'_>, kid: Option<&str>, claims: &Value) -> String {
    let header = match kid {
        Some(kid) => json!({ "kid": kid }),
        None => json!({}),
    };
    mint_with_header(signer, header, claims)
}

/// A signed token whose header is `fields` (an object) plus the signer's `alg`.
pub fn mint_with_header(signer: Signer<'_>, fields: Value, claims: &Value) -> String {
    let mut header = match fields {
        Value::Object(fields) => fields,
        _ => Map::new(),
    };
    header.insert("alg".to_owned(), json!(signer.alg()));
    let input = format!(
        "{}.{}",
        b64(Value::Object(header).to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = signer.sign(input.as_bytes());
    format!("{input}.{}", b64(&signature))
}

/// A public JWK with `kid` (and `alg` when given).
pub fn public_jwk(key: JsonWebKey<'_>, kid: &str, alg: Option<&str>) -> Value {
    // A JWK of public key fields always serialises; an empty object would fail loudly later.
    let mut jwk = match serde_json::to_value(key.to_verifying_key()) {
        Ok(Value::Object(jwk)) => jwk,
        _ => Map::new(),
    };
    jwk.insert("kid".to_owned(), json!(kid));
    if let Some(alg) = alg {
        jwk.insert("alg".to_owned(), json!(alg));
    }
    Value::Object(jwk)
}

/// The demo's signing keys: RSA 2048 (`demo-rsa`, RS256) and P-256 (`demo-ec`, ES256).
pub struct DevKeys {
    pub rsa: RsaPrivateKey,
    pub ec: p256::ecdsa::SigningKey,
}

#[derive(Debug)]
pub enum DevKeyError {
    Read(PathBuf, std::io::Error),
    NotAKey(PathBuf, String),
}

impl fmt::Display for DevKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DevKeyError::Read(path, e) => write!(f, "cannot read {}: {e}", path.display()),
            DevKeyError::NotAKey(path, why) => {
                write!(f, "{}: not a PKCS#8 PEM private key: {why}", path.display())
            }
        }
    }
}

impl std::error::Error for DevKeyError {}

impl DevKeys {
    /// `rsa-demo.pem` and `ec-demo.pem` from `dir` (PKCS#8 PEM).
    pub fn load(dir: &Path) -> Result<Self, DevKeyError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path)
                .map(|pem| (pem, path.clone()))
                .map_err(|e| DevKeyError::Read(path, e))
        };
        let (rsa_pem, rsa_path) = read("rsa-demo.pem")?;
        let (ec_pem, ec_path) = read("ec-demo.pem")?;
        Self::from_pems((&rsa_pem, rsa_path), (&ec_pem, ec_path))
    }

    /// The built-in demo keys (`DEMO_RSA_PEM`, `DEMO_EC_PEM`).
    pub fn demo() -> Result<Self, DevKeyError> {
        let dir = Path::new(DEMO_KEY_DIR);
        Self::from_pems(
            (DEMO_RSA_PEM, dir.join("rsa-demo.pem")),
            (DEMO_EC_PEM, dir.join("ec-demo.pem")),
        )
    }

    /// PKCS#8 PEMs, each with the path its errors name.
    fn from_pems(rsa: (&str, PathBuf), ec: (&str, PathBuf)) -> Result<Self, DevKeyError> {
        use p256::pkcs8::DecodePrivateKey;
        let (pem, path) = rsa;
        let rsa = RsaPrivateKey::from_pkcs8_pem(pem)
            .map_err(|e| DevKeyError::NotAKey(path, e.to_string()))?;
        let (pem, path) = ec;
        let ec = p256::ecdsa::SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| DevKeyError::NotAKey(path, e.to_string()))?;
        Ok(DevKeys { rsa, ec })
    }

    /// The public JWKS `envoy/demo.yaml` embeds.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [
            public_jwk(JsonWebKey::from(&self.rsa), DEMO_RSA_KID, Some("RS256")),
            public_jwk(JsonWebKey::from(&self.ec), DEMO_EC_KID, Some("ES256")),
        ]})
    }
}
