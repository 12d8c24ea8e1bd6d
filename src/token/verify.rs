//! Token parsing and signature verification against a provider's keys.

use jwt_compact::UntrustedToken;
use serde::Deserialize;

use crate::token::algorithm::{Algorithm, AlgorithmClass};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};

use crate::decide::decision::DenyReason;
use crate::idp::introspection::{claims_of, Answer};
use crate::keys::host_crypto::HostCrypto;
use crate::keys::jwks::KeySet;
use crate::token::claims::{PayloadClaims, StringClaims, TimeClaims};

/// A token whose signature verified with a key of the provider: its claims are the issuer's.
/// Made only by `verify_signature` (jwt-compact's `UntrustedToken` -> `Token` is the model),
/// so what reaches an upstream header, a log line or the decision's tail was signed.
#[derive(Debug, Clone, Copy)]
pub struct Verified<'p, 't> {
    token: &'p ParsedToken<'t>,
}

impl<'p, 't> Verified<'p, 't> {
    pub fn token(&self) -> &'p ParsedToken<'t> {
        self.token
    }

    pub fn claims(&self) -> &'p StringClaims {
        &self.token.claims
    }

    pub fn times(&self) -> TimeClaims {
        self.token.times
    }

    /// The payload segment as sent (base64url).
    pub fn payload_b64(&self) -> &'t str {
        self.token.payload_b64
    }

    /// The payload, decoded.
    pub fn payload_json(&self) -> &'p [u8] {
        &self.token.payload_json
    }

    /// The claims, owned (for the verified-token cache).
    pub fn to_trusted(&self) -> TrustedClaims {
        TrustedClaims {
            claims: self.token.claims.clone(),
            times: self.token.times,
        }
    }
}

/// Claims something vouched for: a verified signature (`Verified::to_trusted`), the IdP's
/// active introspection answer (`from_active_answer`) or a payload Envoy's jwt_authn verified
/// (`from_jwt_authn`); nothing else makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(Default))]
pub struct TrustedClaims {
    claims: StringClaims,
    times: TimeClaims,
}

impl TrustedClaims {
    /// RFC 7662: an active answer's claims are the IdP's word about the token.
    pub fn from_active_answer(answer: &Answer) -> Result<Self, DenyReason> {
        if !answer.active {
            return Err(DenyReason::InactiveToken);
        }
        let (claims, times) =
            claims_of(&answer.claims_json).map_err(|_| DenyReason::MalformedToken)?;
        Ok(TrustedClaims { claims, times })
    }

    /// A payload jwt_authn verified (its dynamic metadata): the issuer's claims, as a verified
    /// signature's are; an ID or refresh token by its claims is still not an access token.
    pub fn from_jwt_authn(payload_json: &str) -> Result<Self, DenyReason> {
        let claims: PayloadClaims =
            serde_json::from_str(payload_json).map_err(|_| DenyReason::MalformedToken)?;
        if claims.is_not_an_access_token(None) {
            return Err(DenyReason::NotAnAccessToken);
        }
        let (claims, times) = claims.split();
        Ok(TrustedClaims { claims, times })
    }

    pub fn claims(&self) -> &StringClaims {
        &self.claims
    }

    pub fn times(&self) -> TimeClaims {
        self.times
    }
}

/// Header parameters beyond jwt-compact's own. `jku`, `x5u` and `jwk` are never read:
/// keys come from configuration only (RFC 8725 §3.10).
#[derive(Debug, Clone, Deserialize)]
struct ExtraHeader {
    /// Present at all (even `null`): refused, since no extension is implemented.
    #[serde(default, deserialize_with = "present")]
    crit: Option<serde_json::Value>,
}

/// `Some` for any value, `null` included (a plain `Option` reads `null` as absent).
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde::Deserialize::deserialize(deserializer).map(Some)
}

/// A syntactically valid JWS with a supported algorithm; nothing about it is trusted yet.
#[derive(Debug)]
pub struct ParsedToken<'t> {
    pub algorithm: Algorithm,
    pub kid: Option<String>,
    pub typ: Option<String>,
    /// An ID token or refresh token by its claims (see `PayloadClaims`).
    pub not_an_access_token: bool,
    /// What the token says of itself: read through `Verified` once the signature is checked,
    /// or as `unverified_claims` (to pick the provider by `iss`, to describe a token).
    claims: StringClaims,
    pub times: TimeClaims,
    /// The payload segment as sent (base64url), and decoded: read through `Verified` only,
    /// so what goes upstream was signed.
    payload_b64: &'t str,
    payload_json: Vec<u8>,
    signed_data: &'t str,
    signature: Vec<u8>,
}

pub fn parse(token: &str) -> Result<ParsedToken<'_>, DenyReason> {
    let untrusted =
        UntrustedToken::<ExtraHeader>::try_from(token).map_err(|_| DenyReason::MalformedToken)?;
    let algorithm = match Algorithm::classify(untrusted.algorithm()) {
        AlgorithmClass::Supported(alg) => alg,
        AlgorithmClass::Unsigned => return Err(DenyReason::UnsignedToken),
        AlgorithmClass::Unsupported => return Err(DenyReason::UnsupportedAlgorithm),
    };
    // No JWS extension is implemented, so any critical one is unknown (RFC 7515 §4.1.11);
    // `crit` must be an array of names, anything else (`null` too) is malformed.
    match &untrusted.header().other_fields.crit {
        None => {}
        Some(serde_json::Value::Array(names)) if names.iter().all(|n| n.is_string()) => {
            return Err(DenyReason::UnknownCriticalHeader)
        }
        Some(_) => return Err(DenyReason::MalformedToken),
    }
    let typ = untrusted.header().token_type.clone();
    // UntrustedToken accepted exactly three segments: the signing input is all before the
    // last dot, the payload between the two dots.
    let (signed_data, _) = token.rsplit_once('.').ok_or(DenyReason::MalformedToken)?;
    let (_, payload_b64) = signed_data
        .split_once('.')
        .ok_or(DenyReason::MalformedToken)?;
    // Our own claims type, not jwt-compact's `Claims<T>`: its flattened fields are buffered
    // value by value, which costs time on every request.
    let payload_json = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| DenyReason::MalformedToken)?;
    // RFC 7519 §7.2: the claims set is a JSON object (serde would also take an array).
    if payload_json.trim_ascii_start().first() != Some(&b'{') {
        return Err(DenyReason::MalformedToken);
    }
    let payload = serde_json::from_slice::<PayloadClaims>(&payload_json)
        .map_err(|_| DenyReason::MalformedToken)?;
    let not_an_access_token = payload.is_not_an_access_token(typ.as_deref());
    let (claims, times) = payload.split();
    Ok(ParsedToken {
        algorithm,
        typ,
        not_an_access_token,
        payload_b64,
        payload_json,
        kid: untrusted.header().key_id.clone(),
        times,
        claims,
        signed_data,
        signature: untrusted.signature_bytes().to_vec(),
    })
}

impl ParsedToken<'_> {
    /// The claims as the token states them, before (or without) its signature: never for a
    /// decision's tail, a log line or an upstream header (`Verified::claims` is for those).
    pub fn unverified_claims(&self) -> &StringClaims {
        &self.claims
    }

    /// The decoded payload segment, unverified: only to compare it with a payload vouched for
    /// elsewhere (a jwt_authn companion's), never to forward or to read claims from.
    pub fn unverified_payload_json(&self) -> &[u8] {
        &self.payload_json
    }
}

/// Whether the token names a `kid` that no key of the set has (and no key lacks a `kid`).
pub fn names_unknown_key(token: &ParsedToken<'_>, keys: &KeySet) -> bool {
    token.kid.as_ref().is_some_and(|wanted| {
        keys.keys
            .iter()
            .all(|key| key.kid.as_ref().is_some_and(|kid| kid != wanted))
    })
}

/// Checks the signature with the key the token names (`kid`), or with every key of the
/// token's algorithm when it names none. A key without `kid` matches any `kid`.
/// The only way to a `Verified` token.
pub fn verify_signature<'p, 't>(
    token: &'p ParsedToken<'t>,
    keys: &KeySet,
    host: Option<&dyn HostCrypto>,
) -> Result<Verified<'p, 't>, DenyReason> {
    if host.is_none() && !token.algorithm.verifies_in_wasm() {
        return Err(DenyReason::UnsupportedAlgorithm);
    }
    let mut named = keys
        .keys
        .iter()
        .filter(|key| match (&token.kid, &key.kid) {
            (Some(wanted), Some(kid)) => wanted == kid,
            _ => true,
        })
        .peekable();
    if named.peek().is_none() {
        return Err(DenyReason::UnknownKeyId);
    }
    let mut usable = named.filter(|key| key.serves(token.algorithm)).peekable();
    if usable.peek().is_none() {
        return Err(DenyReason::KeyAlgorithmMismatch);
    }
    let signed = token.signed_data.as_bytes();
    if usable.any(|key| {
        token
            .algorithm
            .verify(&key.material, &key.spki_der, signed, &token.signature, host)
    }) {
        Ok(Verified { token })
    } else {
        Err(DenyReason::BadSignature)
    }
}

/// A compact JWS has three dot-separated parts; anything else (an opaque token) can only be
/// judged by introspection.
pub fn looks_like_jws(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}
