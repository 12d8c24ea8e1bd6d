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
    pub ed25519: (ed25519_compact::SecretKey, ed25519_compact::PublicKey),
    pub hmac_secret: Vec<u8>,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        rsa: RsaPrivateKey::new(&mut OsRng, 2048).unwrap(),
        rsa_other: RsaPrivateKey::new(&mut OsRng, 2048).unwrap(),
        ec: p256::ecdsa::SigningKey::random(&mut OsRng),
        ec384: p384::ecdsa::SigningKey::random(&mut OsRng),
        ec521: p521::ecdsa::SigningKey::random(&mut OsRng),
        ed25519: jwt_compact::alg::Ed25519::generate(&mut OsRng),
        hmac_secret: (0..64u8)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect(),
    })
}

/// The real clock, for tests against a running Envoy.
pub fn unix_now() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_secs()).unwrap()
}

/// `jwks()` plus an Ed25519 key (`ed-1`) and an HMAC secret (`hmac-1`), for providers that
/// allow every algorithm.
pub fn jwks_all_algorithms() -> Value {
    let k = keys();
    let mut jwks = jwks();
    let list = jwks["keys"].as_array_mut().unwrap();
    list.push(public_jwk(JsonWebKey::from(&k.ed25519.1), "ed-1", None));
    list.push(json!({ "kty": "oct", "kid": "hmac-1", "k": b64(&k.hmac_secret) }));
    jwks
}

/// The RSA test key's public half as PEM: the secret of an algorithm-confusion attack.
pub fn rsa_public_pem() -> String {
    use rsa::pkcs8::EncodePublicKey;
    rsa::RsaPublicKey::from(&keys().rsa)
        .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
        .unwrap()
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    URL_SAFE_NO_PAD.encode(bytes)
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
    fn alg(&self) -> &'static str {
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

/// A signed token whose header is `fields` plus the signer's `alg`.
pub fn mint_with_header(signer: Signer<'_>, fields: Value, claims: &Value) -> String {
    let mut header = fields;
    header["alg"] = json!(signer.alg());
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = signer.sign(input.as_bytes());
    format!("{input}.{}", b64(&signature))
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
