//! Test keys and token minting, shared by the unit tests and the integration tests (which
//! include this file by path, beside `signing.rs`). Keys are generated once per run. Never
//! part of the filter, so a failure here may panic.

#![allow(
    dead_code,
    unused_imports, // re-exports of `signing` that a test crate may not use
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::OnceLock;

use jwt_compact::{alg::RsaPrivateKey, jwk::JsonWebKey};
use rsa::rand_core::OsRng;
use serde_json::{json, Value};

pub use super::signing::{b64, mint, mint_with_header, public_jwk, Signer};

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

/// A xorshift64 generator: reproducible pseudo-random numbers for tests, no crate needed.
pub fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
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

/// A public EC JWK from SEC1 uncompressed point bytes (`04 || x || y`).
pub fn ec_jwk(crv: &str, sec1_uncompressed: &[u8], kid: &str) -> Value {
    let coords = &sec1_uncompressed[1..];
    let (x, y) = coords.split_at(coords.len() / 2);
    json!({ "kty": "EC", "crv": crv, "x": b64(x), "y": b64(y), "kid": kid })
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

/// The test provider writing every header bearer-guard can write (`x-user` from `sub`, the
/// payload in `x-payload`, the revocation header with `self` and `jti`), under top-level `mode`.
pub fn writing_config(mode: &str) -> Value {
    let mut config = config_json(
        json!({
            "claim_to_headers": [{ "claim_name": "sub", "header_name": "x-user" }],
            "forward_payload_header": "x-payload",
        }),
        None,
    );
    config["mode"] = json!(mode);
    config["revocation"] = json!({ "response_header_directives": ["self", "jti"] });
    config
}

/// Two providers of one issuer and one set of keys: `web` reads the `session` cookie, `api`
/// the Authorization header, each on its own routes (`/web`, `/api`); `extra` top-level keys.
pub fn same_issuer_config(extra: Value) -> Value {
    let provider = |sources: Value| {
        let mut p = config_json(json!({}), None)["providers"]["corp"].clone();
        if let (Some(p), Some(sources)) = (p.as_object_mut(), sources.as_object()) {
            p.extend(sources.clone());
        }
        p
    };
    let mut config = json!({
        "providers": {
            "web": provider(json!({ "from_cookies": ["session"] })),
            "api": provider(json!({})),
        },
        "rules": [
            { "match": { "prefix": "/web" }, "requires": { "provider_name": "web" } },
            { "match": { "prefix": "/api" }, "requires": { "provider_name": "api" } },
        ],
    });
    if let (Some(c), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(extra.clone());
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

pub fn rs256(claims: &Value) -> String {
    mint(Signer::Rs256(&keys().rsa), Some("rsa-1"), claims)
}

/// A token from raw header and payload JSON with a junk signature, for malformed-input tests.
pub fn unsigned_with_header(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(b"not-a-signature")
    )
}

/// The signature segment of a compact JWS, decoded.
fn signature_of(token: &str) -> (&str, Vec<u8>) {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
    let (signed, signature) = token.rsplit_once('.').unwrap();
    (signed, URL_SAFE_NO_PAD.decode(signature).unwrap())
}

/// A signature twin of an ES256 token: `s` replaced by `n - s` (n: the P-256 group order),
/// which verifies as well (ECDSA signatures are malleable) and changes the token's bytes.
pub fn es256_twin(token: &str) -> String {
    let (signed, signature) = signature_of(token);
    let sig = p256::ecdsa::Signature::from_slice(&signature).unwrap();
    let (r, s) = sig.split_scalars();
    let twin = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
    format!("{signed}.{}", b64(&twin.to_bytes()))
}

/// An RSA-signed token with its signature `s` replaced by `s + n`, when that still fits the
/// modulus length (`s + n` and `s` are the same number modulo `n`, so a verifier that does not
/// check `signature < n` (RFC 8017 §5.2.2) accepts it).
pub fn rsa_plus_modulus(token: &str, key: &rsa::RsaPublicKey) -> Option<String> {
    use rsa::traits::PublicKeyParts;
    let (signed, signature) = signature_of(token);
    let bigger = rsa::BigUint::from_bytes_be(&signature) + key.n();
    let bytes = bigger.to_bytes_be();
    (bytes.len() == key.size()).then(|| format!("{signed}.{}", b64(&bytes)))
}

/// The token with the last character of its signature changed so that only the unused
/// trailing bits of the base64url differ: the same signature bytes under another spelling
/// (RFC 4648 §3.5: such an encoding is not canonical).
pub fn with_noncanonical_signature_encoding(token: &str) -> Option<String> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let (signed, signature) = token.rsplit_once('.')?;
    let unused_bits = match signature.len() % 4 {
        2 => 4,
        3 => 2,
        _ => return None,
    };
    let last = *signature.as_bytes().last()?;
    let value = ALPHABET.iter().position(|c| *c == last)?;
    let changed = ALPHABET[value | 1];
    let mask = (1 << unused_bits) - 1;
    debug_assert!(value & mask == 0);
    let mut spelled = signature.as_bytes()[..signature.len() - 1].to_vec();
    spelled.push(changed);
    Some(format!("{signed}.{}", String::from_utf8(spelled).unwrap()))
}
