//! Token parsing and signature verification against a provider's keys.

use jwt_compact::UntrustedToken;

use crate::algorithm::{Algorithm, AlgorithmClass};
use crate::claims::{StringClaims, TimeClaims};
use crate::decision::DenyReason;
use crate::host_crypto::HostCrypto;
use crate::jwks::KeySet;

/// A syntactically valid JWS with a supported algorithm; nothing about it is trusted yet.
#[derive(Debug)]
pub struct ParsedToken<'t> {
    pub algorithm: Algorithm,
    pub kid: Option<String>,
    pub claims: StringClaims,
    pub times: TimeClaims,
    signed_data: &'t str,
    signature: Vec<u8>,
}

pub fn parse(token: &str) -> Result<ParsedToken<'_>, DenyReason> {
    let untrusted = UntrustedToken::new(token).map_err(|_| DenyReason::MalformedToken)?;
    let algorithm = match Algorithm::classify(untrusted.algorithm()) {
        AlgorithmClass::Supported(alg) => alg,
        AlgorithmClass::Unsigned => return Err(DenyReason::UnsignedToken),
        AlgorithmClass::Symmetric => return Err(DenyReason::SymmetricAlgorithm),
        AlgorithmClass::Unsupported => return Err(DenyReason::UnsupportedAlgorithm),
    };
    let claims = untrusted
        .deserialize_claims_unchecked::<StringClaims>()
        .map_err(|_| DenyReason::MalformedToken)?;
    // UntrustedToken accepted exactly three segments, so the signing input is all before the last dot.
    let (signed_data, _) = token.rsplit_once('.').ok_or(DenyReason::MalformedToken)?;
    Ok(ParsedToken {
        algorithm,
        kid: untrusted.header().key_id.clone(),
        times: TimeClaims {
            exp: claims.expiration.map(|t| t.timestamp()),
            nbf: claims.not_before.map(|t| t.timestamp()),
            iat: claims.issued_at.map(|t| t.timestamp()),
        },
        claims: claims.custom,
        signed_data,
        signature: untrusted.signature_bytes().to_vec(),
    })
}

/// Checks the signature with the key the token names (`kid`), or with every key of the
/// token's algorithm when it names none. A key without `kid` matches any `kid`.
pub fn verify_signature(
    token: &ParsedToken<'_>,
    keys: &KeySet,
    host: Option<&dyn HostCrypto>,
) -> Result<(), DenyReason> {
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
    let mut usable = named
        .filter(|key| key.serves(token.algorithm))
        .peekable();
    if usable.peek().is_none() {
        return Err(DenyReason::KeyAlgorithmMismatch);
    }
    let signed = token.signed_data.as_bytes();
    if usable.any(|key| {
        token
            .algorithm
            .verify(&key.material, &key.spki_der, signed, &token.signature, host)
    }) {
        Ok(())
    } else {
        Err(DenyReason::BadSignature)
    }
}
