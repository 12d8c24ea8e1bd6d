//! Token parsing and signature verification against a provider's keys.

use jwt_compact::Thumbprint;
use serde::Deserialize;

use crate::token::algorithm::{Algorithm, AlgorithmClass};

use crate::decide::decision::DenyReason;
use crate::idp::introspection::{claims_of, Answer};
use crate::keys::host_crypto::HostCrypto;
use crate::keys::jwks::KeySet;
use crate::token::base64url;
use crate::token::claims::{PayloadClaims, StringClaims, TimeClaims};
use crate::token::scan::find_byte;

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
        let claims: PayloadClaims = serde_json::from_slice(payload_json.as_bytes())
            .map_err(|_| DenyReason::MalformedToken)?;
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

/// The JWS protected header: the parameters jwt-compact's `UntrustedToken` reads, with the
/// same types, so a header it would refuse is refused here. `jku`, `x5u` and the thumbprints
/// are typed but never used: keys come from configuration only (RFC 8725 §3.10).
#[derive(Debug, Deserialize)]
struct JwsHeader {
    alg: String,
    #[serde(default)]
    cty: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default, rename = "jku")]
    _jku: Option<String>,
    #[serde(default, rename = "x5u")]
    _x5u: Option<String>,
    #[serde(default, rename = "x5t")]
    _x5t: Option<Thumbprint<20>>,
    #[serde(default, rename = "x5t#S256")]
    _x5t_s256: Option<Thumbprint<32>>,
    /// Present at all (even `null`): refused, since no extension is implemented.
    #[serde(default, deserialize_with = "present")]
    crit: Option<serde_json::Value>,
    /// Every other member, read as jwt-compact's flattened header reads it: a number out of
    /// range or a string that is not UTF-8 is refused anywhere in the header (both found by
    /// the fuzz target; serde would skip an ignored member unchecked).
    #[serde(flatten)]
    _others: serde_json::Map<String, serde_json::Value>,
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

/// A compact JWS split and decoded: what jwt-compact's `UntrustedToken` accepts (three
/// segments, each strict base64url, a JSON header with `alg`, `cty` absent or JSON, one
/// `crit` at most, as the filter read it with its `crit` extension), each
/// segment decoded once. `UntrustedToken` would decode the payload into a buffer of its own
/// (parsed again into our claims type) with a constant-time decoder, which cost more than the
/// host's signature check; `fuzz/fuzz_targets/jws_parts.rs` holds the two to the same answers.
#[derive(Debug)]
pub struct JwsParts<'t> {
    header: JwsHeader,
    /// The payload segment as sent (base64url), and decoded.
    pub payload_b64: &'t str,
    pub payload_json: Vec<u8>,
    /// The signing input: the header and payload segments as sent, with their dot.
    pub signed_data: &'t str,
    pub signature: Vec<u8>,
}

impl JwsParts<'_> {
    pub fn alg(&self) -> &str {
        &self.header.alg
    }

    pub fn kid(&self) -> Option<&str> {
        self.header.kid.as_deref()
    }

    pub fn typ(&self) -> Option<&str> {
        self.header.typ.as_deref()
    }
}

/// Splits and decodes a compact JWS (strictly: no padding, no stray bits, so one signature
/// has one spelling); `None` for anything jwt-compact would not parse.
pub fn jws_parts(token: &str) -> Option<JwsParts<'_>> {
    let parts = segments(token)?;
    let [header_b64, payload_b64, signature_b64] = parts;
    let header_json = base64url::decode(header_b64)?;
    let payload_json = base64url::decode(payload_b64)?;
    let signature = base64url::decode(signature_b64)?;
    // An object: a derived struct would also read a JSON array, field by field in order
    // (`["RS256"]`), which jwt-compact's flattened header refuses.
    if header_json.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    // Not UTF-8 is refused by the parser (inside a string) or is not JSON (outside one).
    let header = serde_json::from_slice::<JwsHeader>(&header_json).ok()?;
    if header
        .cty
        .as_deref()
        .is_some_and(|cty| !cty.eq_ignore_ascii_case("json"))
    {
        return None;
    }
    Some(JwsParts {
        header,
        payload_b64,
        payload_json,
        signed_data: signed_part(token, parts)?,
        signature,
    })
}

/// Parses a compact JWS once, into a supported algorithm and our own claims type.
pub fn parse(token: &str) -> Result<ParsedToken<'_>, DenyReason> {
    let parts = jws_parts(token).ok_or(DenyReason::MalformedToken)?;
    let algorithm = match Algorithm::classify(&parts.header.alg) {
        AlgorithmClass::Supported(alg) => alg,
        AlgorithmClass::Unsigned => return Err(DenyReason::UnsignedToken),
        AlgorithmClass::Unsupported => return Err(DenyReason::UnsupportedAlgorithm),
    };
    // No JWS extension is implemented, so any critical one is unknown (RFC 7515 §4.1.11);
    // `crit` must be an array of names, anything else (`null` too) is malformed.
    match &parts.header.crit {
        None => {}
        Some(serde_json::Value::Array(names)) if names.iter().all(|n| n.is_string()) => {
            return Err(DenyReason::UnknownCriticalHeader)
        }
        Some(_) => return Err(DenyReason::MalformedToken),
    }
    // RFC 7519 §7.2: the claims set is a JSON object (serde would also take an array).
    if parts.payload_json.trim_ascii_start().first() != Some(&b'{') {
        return Err(DenyReason::MalformedToken);
    }
    let payload = serde_json::from_slice::<PayloadClaims>(&parts.payload_json)
        .map_err(|_| DenyReason::MalformedToken)?;
    let not_an_access_token = payload.is_not_an_access_token(parts.header.typ.as_deref());
    let (claims, times) = payload.split();
    Ok(ParsedToken {
        algorithm,
        typ: parts.header.typ,
        not_an_access_token,
        payload_b64: parts.payload_b64,
        payload_json: parts.payload_json,
        kid: parts.header.kid,
        times,
        claims,
        signed_data: parts.signed_data,
        signature: parts.signature,
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
    segments(token).is_some()
}

/// `header.payload` of something shaped like a compact JWS (three segments): what its
/// signature signs, found in the one scan for its dots.
pub fn signing_input(token: &str) -> Option<&str> {
    signed_part(token, segments(token)?)
}

/// The first two of a JWS's `segments`, with their dot, as `token` spells them.
fn signed_part<'t>(token: &'t str, [header, payload, _]: [&str; 3]) -> Option<&'t str> {
    token.get(..header.len() + 1 + payload.len())
}

/// A compact JWS's three segments: exactly two dots (found eight bytes at a time, not byte by
/// byte), segments possibly empty.
fn segments(token: &str) -> Option<[&str; 3]> {
    let bytes = token.as_bytes();
    let first = find_byte(bytes, b'.')?;
    let second = first + 1 + find_byte(bytes.get(first + 1..)?, b'.')?;
    if find_byte(bytes.get(second + 1..)?, b'.').is_some() {
        return None;
    }
    Some([
        token.get(..first)?,
        token.get(first + 1..second)?,
        token.get(second + 1..)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    use jwt_compact::UntrustedToken;

    /// The header extension `parse` read through `UntrustedToken` before (see the fuzz target).
    #[derive(Deserialize)]
    struct ExtraHeader {
        #[serde(default, rename = "crit", deserialize_with = "present")]
        _crit: Option<serde_json::Value>,
    }

    fn b64(text: &str) -> String {
        URL_SAFE_NO_PAD.encode(text)
    }

    #[test]
    fn a_jws_has_exactly_two_dots() {
        for token in [
            "", ".", "..", "...", "a.b.c", "a.b.c.d", "a..", ".b.", "..c", "abc", "a.b", "a.b.c.",
        ] {
            let dots = token.bytes().filter(|b| *b == b'.').count();
            assert_eq!(looks_like_jws(token), dots == 2, "{token:?}");
            let signed = token.rsplit_once('.').map(|(signed, _)| signed);
            assert_eq!(
                signing_input(token),
                signed.filter(|_| dots == 2),
                "{token:?}"
            );
        }
    }

    /// `jws_parts` and jwt-compact's `UntrustedToken` agree on tokens at the edges of the
    /// format (the fuzz target `jws_parts` runs the same comparison on arbitrary input).
    #[test]
    fn splits_tokens_as_jwt_compact_does() {
        let payload = b64(r#"{"sub":"a"}"#);
        let signature = URL_SAFE_NO_PAD.encode([7u8; 64]);
        let token = |header: &str| format!("{}.{payload}.{signature}", b64(header));
        let mut cases = vec![
            token(r#"{"alg":"RS256"}"#),
            token(r#"{"alg":"RS256","kid":"k","typ":"at+jwt"}"#),
            token(r#"{"alg":"RS256","cty":"JSON"}"#),
            token(r#"{"alg":"RS256","cty":"cbor"}"#),
            token(r#"{"alg":"RS256","kid":1}"#),
            token(r#"{"alg":"RS256","kid":"a","kid":"b"}"#),
            token(r#"{"alg":"RS256","alg":"RS256"}"#),
            token(r#"{"kid":"k"}"#),
            token(r#"["RS256"]"#),
            token(r#"{"alg":"RS256","x5t":"c2hvcnQ"}"#),
            token(&format!(
                r#"{{"alg":"RS256","x5t":"{}"}}"#,
                URL_SAFE_NO_PAD.encode([1u8; 20])
            )),
            token(&format!(
                r#"{{"alg":"RS256","x5t#S256":"{}"}}"#,
                URL_SAFE_NO_PAD.encode([1u8; 31])
            )),
            token(r#"{"alg":"RS256","jku":5}"#),
            token(r#"{"alg":"RS256","x5u":"https://x"}"#),
            token(r#"{"alg":"RS256","crit":null,"other":[1,{}]}"#),
            token(r#"{"alg":"RS256","crit":null,"crit":null}"#),
            token(r#"{"alg":"RS256"} "#),
            format!(
                "{}.{payload}.{signature}",
                URL_SAFE_NO_PAD.encode(b"{\"alg\":\"RS256\",\"x\":\"\xc3\"}")
            ),
            token(r#"{"alg":"RS256","iat":17999E9990}"#),
            token(r#"{"alg":"RS256","x":{"y":[1,2.5,-3,"z"]}}"#),
            token(r#"{"alg":"RS256"}x"#),
            format!("{}.{payload}.", b64(r#"{"alg":"none"}"#)),
            format!("{}..{signature}", b64(r#"{"alg":"RS256"}"#)),
            format!("{}.{payload}", b64(r#"{"alg":"RS256"}"#)),
            format!("{}.{payload}.{signature}.x", b64(r#"{"alg":"RS256"}"#)),
            format!("{}.{payload}.{signature}=", b64(r#"{"alg":"RS256"}"#)),
            format!("{}.{payload}.{signature}A", b64(r#"{"alg":"RS256"}"#)),
            format!("{}.{payload}x.{signature}", b64(r#"{"alg":"RS256"}"#)),
            format!(
                "{}.{payload}.{}",
                b64(r#"{"alg":"RS256"}"#),
                signature.replace('_', "/")
            ),
            format!("{}.{payload}.{}", b64(r#"{"alg":"RS256"}"#), " ".repeat(4)),
            String::new(),
            "..".to_owned(),
        ];
        // A last base64 character with bits set beyond the data: the same bytes, spelt twice.
        let one_byte = URL_SAFE_NO_PAD.encode([0xffu8]);
        cases.push(format!(
            "{}.{payload}.{one_byte}",
            b64(r#"{"alg":"RS256"}"#)
        ));
        cases.push(format!(
            "{}.{payload}.{}",
            b64(r#"{"alg":"RS256"}"#),
            one_byte.replace('w', "x")
        ));
        for case in &cases {
            let ours = jws_parts(case);
            let theirs = UntrustedToken::<ExtraHeader>::try_from(case.as_str());
            assert_eq!(ours.is_some(), theirs.is_ok(), "{case}");
            if let (Some(ours), Ok(theirs)) = (ours, theirs) {
                assert_eq!(ours.alg(), theirs.algorithm(), "{case}");
                assert_eq!(ours.kid(), theirs.header().key_id.as_deref(), "{case}");
                assert_eq!(ours.typ(), theirs.header().token_type.as_deref(), "{case}");
                assert_eq!(ours.signature, theirs.signature_bytes(), "{case}");
                assert_eq!(
                    Some(ours.signed_data),
                    case.rsplit_once('.').map(|(signed, _)| signed)
                );
            }
        }
        // The cases reach both answers.
        assert!(cases.iter().any(|case| jws_parts(case).is_some()));
        assert!(cases.iter().any(|case| jws_parts(case).is_none()));
    }
}
