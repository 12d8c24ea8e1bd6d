//! Test keys and token minting, shared by the unit tests, the integration tests and the demo
//! token printer (the latter two include this file by path). Keys are generated once per run.
//! Never part of the filter, so a failure here may panic.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::OnceLock;

use jwt_compact::{
    alg::{Es256, Rsa, RsaPrivateKey},
    jwk::JsonWebKey,
    AlgorithmExt, Claims, Header,
};
use rsa::rand_core::OsRng;
use serde_json::{json, Value};

pub const NOW: i64 = 1_800_000_000;
pub const ISSUER: &str = "https://idp.example.com";

pub struct Keys {
    pub rsa: RsaPrivateKey,
    pub rsa_other: RsaPrivateKey,
    pub ec: p256::ecdsa::SigningKey,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        rsa: RsaPrivateKey::new(&mut OsRng, 2048).unwrap(),
        rsa_other: RsaPrivateKey::new(&mut OsRng, 2048).unwrap(),
        ec: p256::ecdsa::SigningKey::random(&mut OsRng),
    })
}

/// A public JWK with `kid` (and `alg` when given).
pub fn public_jwk(key: JsonWebKey<'_>, kid: &str, alg: Option<&str>) -> Value {
    let mut jwk = serde_json::to_value(key.to_verifying_key()).unwrap();
    jwk["kid"] = json!(kid);
    if let Some(alg) = alg {
        jwk["alg"] = json!(alg);
    }
    jwk
}

/// JWKS with the RSA key as `rsa-1` and the EC key as `ec-1`.
pub fn jwks() -> Value {
    let k = keys();
    json!({ "keys": [
        public_jwk(JsonWebKey::from(&k.rsa), "rsa-1", Some("RS256")),
        public_jwk(JsonWebKey::from(&k.ec), "ec-1", None),
    ]})
}

pub fn config_json(extra_provider: Value, rules: Option<Value>) -> Value {
    let mut provider = json!({
        "issuer": ISSUER,
        "audiences": ["orders-api"],
        "local_jwks": jwks(),
    });
    if let (Some(p), Some(extra)) = (provider.as_object_mut(), extra_provider.as_object()) {
        p.extend(extra.clone());
    }
    let mut config = json!({ "providers": { "corp": provider } });
    if let Some(rules) = rules {
        config["rules"] = rules;
    }
    config
}

/// Claims valid at `NOW` for the test provider, to be modified per test.
pub fn good_claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": "orders-api",
        "sub": "alice",
        "iat": NOW - 10,
        "exp": NOW + 3600,
    })
}

pub enum Signer<'a> {
    Rs256(&'a RsaPrivateKey),
    Es256(&'a p256::ecdsa::SigningKey),
}

pub fn mint(signer: Signer<'_>, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::empty();
    if let Some(kid) = kid {
        header = header.with_key_id(kid);
    }
    let claims = Claims::new(claims.clone());
    match signer {
        Signer::Rs256(key) => Rsa::rs256().token(&header, &claims, key).unwrap(),
        Signer::Es256(key) => Es256.token(&header, &claims, key).unwrap(),
    }
}

pub fn rs256(claims: &Value) -> String {
    mint(Signer::Rs256(&keys().rsa), Some("rsa-1"), claims)
}

/// A token from raw header and payload JSON with a junk signature, for malformed-input tests.
pub fn unsigned_with_header(header: &Value, claims: &Value) -> String {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(b"not-a-signature")
    )
}
