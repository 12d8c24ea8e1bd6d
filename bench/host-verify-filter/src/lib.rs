//! The least a JWT filter that verifies through the host does per request, to measure the
//! floor such a filter sits on beside native `jwt_authn` (issue 18: "a prototype that only
//! parsed the token and called the host's `verify_signature`"): read `authorization`, split the
//! bearer token, read its header's `alg` (RS256 or ES256) and its signature, and ask Envoy's
//! `verify_signature` foreign function with the key's DER, converted once at configuration.
//! No cache, no key selection by `kid`. Not part of bearer-guard.
//!
//! The configuration is a JWKS (an RSA and a P-256 key). Alone, the filter checks no claim and
//! accepts tokens bearer-guard and jwt_authn refuse (expired ones, any issuer). With `issuer`
//! and `audience` members beside `keys` it also does what every conforming filter must:
//! decodes the payload and checks `exp` (required), `nbf`, `iss` and `aud` against the clock
//! and those two values, with no allowance for clock skew.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use serde::Deserialize;
use std::borrow::Cow;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(FloorRoot { setup: None }) });
}}

/// SubjectPublicKeyInfo DER of the JWKS's first RS256 and ES256 keys, and the claims to
/// check, if configured.
struct Setup {
    rs256: Vec<u8>,
    es256: Vec<u8>,
    expected: Option<Expected>,
}

struct Expected {
    issuer: String,
    audience: String,
}

struct FloorRoot {
    setup: Option<Rc<Setup>>,
}

impl Context for FloorRoot {}

impl RootContext for FloorRoot {
    fn on_configure(&mut self, _: usize) -> bool {
        self.setup = self
            .get_plugin_configuration()
            .and_then(|bytes| setup_from(&bytes))
            .map(Rc::new);
        self.setup.is_some()
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Floor {
            setup: self.setup.clone()?,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Floor {
    setup: Rc<Setup>,
}

impl Context for Floor {}

impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let verified = self
            .get_http_request_header("authorization")
            .is_some_and(|value| self.verify(&value));
        if verified {
            return Action::Continue;
        }
        self.send_http_response(
            401,
            vec![("www-authenticate", "Bearer error=\"invalid_token\"")],
            None,
        );
        Action::Pause
    }
}

impl Floor {
    fn verify(&self, authorization: &str) -> bool {
        let Some(token) = authorization.strip_prefix("Bearer ") else {
            return false;
        };
        let mut parts = token.splitn(3, '.');
        let (Some(header), Some(payload), Some(signature)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let (Ok(header_json), Ok(signature)) = (
            URL_SAFE_NO_PAD.decode(header),
            URL_SAFE_NO_PAD.decode(signature),
        ) else {
            return false;
        };
        let (key, signature) = if contains(&header_json, b"\"RS256\"") {
            (&self.setup.rs256, signature)
        } else if contains(&header_json, b"\"ES256\"") && signature.len() == 64 {
            (&self.setup.es256, ecdsa_der(&signature))
        } else {
            return false;
        };
        let signed = &token.as_bytes()[..header.len() + 1 + payload.len()];
        let mut arguments = Vec::with_capacity(key.len() + signature.len() + signed.len() + 24);
        field(&mut arguments, 1, b"sha256");
        field(&mut arguments, 2, key);
        field(&mut arguments, 3, &signature);
        field(&mut arguments, 4, signed);
        // VerifySignatureResult { result: true } is the varint field 1 set to 1.
        let verified = matches!(
            hostcalls::call_foreign_function("verify_signature", Some(&arguments)),
            Ok(Some(result)) if result.starts_with(&[0x08, 0x01])
        );
        verified
            && self.setup.expected.as_ref().is_none_or(|expected| {
                URL_SAFE_NO_PAD
                    .decode(payload)
                    .is_ok_and(|json| self.claims_hold(&json, expected))
            })
    }

    fn claims_hold(&self, json: &[u8], expected: &Expected) -> bool {
        let Ok(claims) = serde_json::from_slice::<Claims>(json) else {
            return false;
        };
        let Some(now) = self
            .get_current_time()
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|since| i64::try_from(since.as_secs()).ok())
        else {
            return false;
        };
        let audience = match &claims.aud {
            Some(Audience::One(aud)) => aud == &expected.audience,
            Some(Audience::Many(auds)) => auds.iter().any(|aud| aud == &expected.audience),
            None => false,
        };
        claims.exp.is_some_and(|exp| now < exp)
            && claims.nbf.is_none_or(|nbf| nbf <= now)
            && claims.iss.as_deref() == Some(expected.issuer.as_str())
            && audience
    }
}

#[derive(Deserialize)]
struct Claims<'a> {
    #[serde(borrow, default)]
    iss: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    aud: Option<Audience<'a>>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience<'a> {
    One(#[serde(borrow)] Cow<'a, str>),
    Many(#[serde(borrow)] Vec<Cow<'a, str>>),
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// A length-delimited protobuf field.
fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
    out.push(number << 3 | 2);
    let mut length = bytes.len();
    while length >= 0x80 {
        out.push((length as u8) | 0x80);
        length >>= 7;
    }
    out.push(length as u8);
    out.extend_from_slice(bytes);
}

fn setup_from(bytes: &[u8]) -> Option<Setup> {
    let jwks: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let text = |name: &str| Some(jwks.get(name)?.as_str()?.to_owned());
    let expected = match (text("issuer"), text("audience")) {
        (Some(issuer), Some(audience)) => Some(Expected { issuer, audience }),
        _ => None,
    };
    let member =
        |key: &serde_json::Value, name: &str| URL_SAFE_NO_PAD.decode(key.get(name)?.as_str()?).ok();
    let mut rs256 = None;
    let mut es256 = None;
    for key in jwks.get("keys")?.as_array()? {
        match key.get("kty")?.as_str()? {
            "RSA" if rs256.is_none() => {
                let rsa_public_key = der(
                    0x30,
                    &[integer(&member(key, "n")?), integer(&member(key, "e")?)].concat(),
                );
                let algorithm = der(0x30, &[RSA_ENCRYPTION, &[0x05, 0x00]].concat());
                rs256 = Some(der(
                    0x30,
                    &[algorithm, bit_string(&rsa_public_key)].concat(),
                ));
            }
            "EC" if es256.is_none() => {
                let point = [&[0x04][..], &member(key, "x")?, &member(key, "y")?].concat();
                let algorithm = der(0x30, &[EC_PUBLIC_KEY, PRIME256V1].concat());
                es256 = Some(der(0x30, &[algorithm, bit_string(&point)].concat()));
            }
            _ => {}
        }
    }
    Some(Setup {
        rs256: rs256?,
        es256: es256?,
        expected,
    })
}

const RSA_ENCRYPTION: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
const EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const PRIME256V1: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// A JWS ECDSA signature (`r || s`) as the DER `ECDSA-Sig-Value` BoringSSL reads.
fn ecdsa_der(signature: &[u8]) -> Vec<u8> {
    let (r, s) = signature.split_at(signature.len() / 2);
    der(0x30, &[integer(r), integer(s)].concat())
}

/// A DER INTEGER of an unsigned big-endian number.
fn integer(unsigned: &[u8]) -> Vec<u8> {
    let first = unsigned
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(unsigned.len().saturating_sub(1));
    let digits = &unsigned[first..];
    let sign = if digits.first().is_some_and(|&b| b & 0x80 != 0) {
        &[0u8][..]
    } else {
        &[]
    };
    der(0x02, &[sign, digits].concat())
}

fn bit_string(bytes: &[u8]) -> Vec<u8> {
    der(0x03, &[&[0u8][..], bytes].concat())
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let length = content.len();
    if length < 0x80 {
        out.push(length as u8);
    } else if length < 0x100 {
        out.extend_from_slice(&[0x81, length as u8]);
    } else {
        out.extend_from_slice(&[0x82, (length >> 8) as u8, length as u8]);
    }
    out.extend_from_slice(content);
    out
}
