//! The pure side of remote JWKS fetching: when to fetch, what a response must look like,
//! and how a fetched JWKS is stored in proxy-wasm shared data for the other workers.

use crate::keys::jwks::{parse_jwks_str, KeySet};

/// RFC 7517 sets no limit; a JWKS larger than this is refused, not parsed.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Why a fetch brought no keys (the JWKS's GET, or with discovery, the discovery document's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// No response in time, or the cluster could not connect.
    NoResponse,
    /// Anything but a 200 (a redirect is not followed: the cluster decides where fetches go).
    Status(String),
    TooLarge {
        size: usize,
        limit: usize,
    },
    NotAJwks(String),
    NoUsableKey,
    /// Not a JSON object with a string `issuer` and `jwks_uri` (OpenID Connect Discovery §3).
    NotADiscoveryDocument(String),
    /// The discovery document is another issuer's (OpenID Connect Discovery §4.3): `found`
    /// is its `issuer`, shown escaped and cut (it is the remote document's text).
    IssuerMismatch {
        configured: String,
        found: String,
    },
    /// `jwks_uri` is not an `http(s)://` URL this filter can fetch through a cluster.
    BadJwksUri(&'static str),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::NoResponse => f.write_str("no response (timeout or connection failure)"),
            FetchError::Status(status) => write!(f, "HTTP status {status}"),
            FetchError::TooLarge { size, limit } => {
                write!(f, "body of {size} bytes exceeds {limit}")
            }
            FetchError::NotAJwks(why) => write!(f, "not a JWKS: {why}"),
            FetchError::NoUsableKey => f.write_str("no usable key"),
            FetchError::NotADiscoveryDocument(why) => {
                write!(f, "not an OpenID Provider Configuration: {why}")
            }
            FetchError::IssuerMismatch { configured, found } => write!(
                f,
                "issuer mismatch: the discovery document's issuer is {found}, the provider's \
                 is {configured:?} (they must be identical, OpenID Connect Discovery 1.0 §4.3)"
            ),
            FetchError::BadJwksUri(why) => write!(f, "jwks_uri {why}"),
        }
    }
}

/// Keys from a fetch, and a description of each key that was skipped (for the log).
#[derive(Debug)]
pub struct FetchedKeys {
    pub keys: KeySet,
    pub skipped: Vec<String>,
}

/// A fetch response becomes keys only if it is a 200 with a JWKS that has a usable key.
pub fn accept_response(status: Option<&str>, body: &[u8]) -> Result<FetchedKeys, FetchError> {
    accept_status(status)?;
    parse_body(body)
}

/// Only a 200 is an answer (for every GET of a fetch).
pub fn accept_status(status: Option<&str>) -> Result<(), FetchError> {
    match status {
        None => Err(FetchError::NoResponse),
        Some("200") => Ok(()),
        Some(other) => Err(FetchError::Status(other.to_owned())),
    }
}

/// A body larger than `limit` is refused, not parsed.
pub fn within_limit(body: &[u8], limit: usize) -> Result<(), FetchError> {
    if body.len() > limit {
        return Err(FetchError::TooLarge {
            size: body.len(),
            limit,
        });
    }
    Ok(())
}

fn parse_body(body: &[u8]) -> Result<FetchedKeys, FetchError> {
    within_limit(body, MAX_JWKS_BYTES)?;
    let text = std::str::from_utf8(body).map_err(|e| FetchError::NotAJwks(e.to_string()))?;
    let parsed = parse_jwks_str(text).map_err(|e| FetchError::NotAJwks(e.to_string()))?;
    if parsed.key_set.keys.is_empty() {
        return Err(FetchError::NoUsableKey);
    }
    Ok(FetchedKeys {
        keys: parsed.key_set,
        skipped: parsed
            .skipped
            .iter()
            .map(|(i, why)| format!("key {i} skipped: {why}"))
            .collect(),
    })
}

/// Shared-data value: `<fetched_at>\n<jwks body>`.
pub fn encode_shared(fetched_at: i64, body: &[u8]) -> Vec<u8> {
    let mut value = format!("{fetched_at}\n").into_bytes();
    value.extend_from_slice(body);
    value
}

/// The fetch time and keys of a shared-data value written by `encode_shared`.
pub fn decode_shared(value: &[u8]) -> Option<(i64, KeySet)> {
    let newline = value.iter().position(|&b| b == b'\n')?;
    let fetched_at = std::str::from_utf8(value.get(..newline)?)
        .ok()?
        .parse()
        .ok()?;
    let fetched = parse_body(value.get(newline + 1..)?).ok()?;
    Some((fetched_at, fetched.keys))
}

/// Whether keys fetched at `fetched_at` (never: `None`) should be fetched again: at 90% of
/// the cache duration, so fresh keys are in before the old ones are due.
pub fn fetch_due(fetched_at: Option<i64>, now: i64, cache_duration_seconds: u64) -> bool {
    let duration = i64::try_from(cache_duration_seconds.saturating_mul(9) / 10).unwrap_or(i64::MAX);
    fetched_at.is_none_or(|at| now >= at.saturating_add(duration.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;

    #[test]
    fn only_a_200_with_usable_keys_is_accepted() {
        let body = testkit::jwks().to_string();
        let fetched = accept_response(Some("200"), body.as_bytes()).unwrap();
        assert_eq!(fetched.keys.keys.len(), 5);
        let mut with_bad_key = testkit::jwks();
        with_bad_key["keys"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({ "kty": "RSA", "n": "!" }));
        let fetched = accept_response(Some("200"), with_bad_key.to_string().as_bytes()).unwrap();
        assert_eq!(fetched.keys.keys.len(), 5);
        assert_eq!(fetched.skipped.len(), 1);
        assert!(
            fetched.skipped[0].starts_with("key 5 skipped: invalid key"),
            "{:?}",
            fetched.skipped
        );
        let error = |status: Option<&str>, body: &[u8]| accept_response(status, body).unwrap_err();
        assert_eq!(error(None, b""), FetchError::NoResponse);
        assert_eq!(
            error(Some("503"), body.as_bytes()),
            FetchError::Status("503".into())
        );
        assert!(matches!(
            error(Some("200"), b"<html>"),
            FetchError::NotAJwks(_)
        ));
        assert_eq!(
            error(Some("200"), br#"{"keys":[]}"#),
            FetchError::NoUsableKey
        );
        let huge = vec![b' '; MAX_JWKS_BYTES + 1];
        assert_eq!(
            error(Some("200"), &huge),
            FetchError::TooLarge {
                size: MAX_JWKS_BYTES + 1,
                limit: MAX_JWKS_BYTES
            }
        );
    }

    #[test]
    fn shared_value_round_trips() {
        let body = testkit::jwks().to_string();
        let (at, keys) = decode_shared(&encode_shared(1234, body.as_bytes())).unwrap();
        assert_eq!(at, 1234);
        assert_eq!(keys.keys.len(), 5);
        assert!(decode_shared(b"garbage").is_none());
    }

    #[test]
    fn schedule() {
        assert!(fetch_due(None, 100, 600));
        assert!(!fetch_due(Some(100), 639, 600));
        assert!(fetch_due(Some(100), 640, 600));
        assert!(fetch_due(Some(100), 101, 1));
    }
}
