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
    pub ec384: p384::ecdsa::SigningKey,
    pub ec521: p521::ecdsa::SigningKey,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        rsa: RsaPrivateKey::new(&mut OsRng, 2048).unwrap(),
        rsa_other: RsaPrivateKey::new(&mut OsRng, 2048).unwrap(),
        ec: p256::ecdsa::SigningKey::random(&mut OsRng),
        ec384: p384::ecdsa::SigningKey::random(&mut OsRng),
        ec521: p521::ecdsa::SigningKey::random(&mut OsRng),
    })
}

/// A public EC JWK from SEC1 uncompressed point bytes (`04 || x || y`).
pub fn ec_jwk(crv: &str, sec1_uncompressed: &[u8], kid: &str) -> Value {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    let coords = &sec1_uncompressed[1..];
    let (x, y) = coords.split_at(coords.len() / 2);
    json!({ "kty": "EC", "crv": crv, "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y), "kid": kid })
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

/// JWKS with the RSA key as `rsa-1` (pinned to RS256), `rsa-any` (any RS*), and the EC keys
/// as `ec-1` (P-256), `ec-384` and `ec-521`.
pub fn jwks() -> Value {
    let k = keys();
    json!({ "keys": [
        public_jwk(JsonWebKey::from(&k.rsa), "rsa-1", Some("RS256")),
        public_jwk(JsonWebKey::from(&k.rsa), "rsa-any", None),
        public_jwk(JsonWebKey::from(&k.ec), "ec-1", None),
        ec_jwk("P-384", k.ec384.verifying_key().to_encoded_point(false).as_bytes(), "ec-384"),
        ec_jwk("P-521", &p521::ecdsa::VerifyingKey::from(&k.ec521).to_encoded_point(false).to_bytes(), "ec-521"),
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
    Rs384(&'a RsaPrivateKey),
    Rs512(&'a RsaPrivateKey),
    Es256(&'a p256::ecdsa::SigningKey),
    Es384(&'a p384::ecdsa::SigningKey),
    Es512(&'a p521::ecdsa::SigningKey),
}

pub fn mint(signer: Signer<'_>, kid: Option<&str>, claims: &Value) -> String {
    use p256::ecdsa::signature::Signer as _;
    let mut header = Header::empty();
    if let Some(kid) = kid {
        header = header.with_key_id(kid);
    }
    let claims = Claims::new(claims.clone());
    match signer {
        Signer::Rs256(key) => Rsa::rs256().token(&header, &claims, key).unwrap(),
        Signer::Rs384(key) => Rsa::rs384().token(&header, &claims, key).unwrap(),
        Signer::Rs512(key) => Rsa::rs512().token(&header, &claims, key).unwrap(),
        Signer::Es256(key) => Es256.token(&header, &claims, key).unwrap(),
        // jwt-compact has no ES384/ES512: sign the JWS signing input directly.
        Signer::Es384(key) => sign_raw("ES384", kid, &claims, |m| {
            let sig: p384::ecdsa::Signature = key.sign(m);
            sig.to_bytes().to_vec()
        }),
        Signer::Es512(key) => sign_raw("ES512", kid, &claims, |m| {
            let sig: p521::ecdsa::Signature = key.sign(m);
            sig.to_bytes().to_vec()
        }),
    }
}

fn sign_raw(
    alg: &str,
    kid: Option<&str>,
    claims: &Claims<Value>,
    sign: impl Fn(&[u8]) -> Vec<u8>,
) -> String {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    let mut header = json!({ "alg": alg, "typ": "JWT" });
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(serde_json::to_string(claims).unwrap())
    );
    let signature = sign(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
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
