//! The pure side of the polled revocation list: the request to send, what a response turns
//! into, and when the list is too old to rely on.

use std::io::Read;

use crate::revocation::{RevocationSet, SetBuilder};
use crate::revocation_doc::{self, Source};

/// After a failed fetch the next attempt waits this long (or the refresh period, if shorter).
pub const RETRY_AFTER_FAILURE_SECONDS: u64 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListError {
    NoResponse,
    Status(String),
    /// A 304 although we sent no `If-None-Match` we could match (no list held).
    UnexpectedNotModified,
    NotADocument(String),
}

impl std::fmt::Display for ListError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListError::NoResponse => f.write_str("no response (timeout or connection failure)"),
            ListError::Status(status) => write!(f, "HTTP status {status}"),
            ListError::UnexpectedNotModified => f.write_str("304 but no list is held"),
            ListError::NotADocument(why) => write!(f, "not a revocation document: {why}"),
        }
    }
}

/// What a successful fetch did to the list.
#[derive(Debug)]
pub enum ListUpdate {
    NotModified,
    /// A whole new list, or a delta laid over the one held.
    Changed {
        set: RevocationSet,
        was_delta: bool,
        expired_dropped: usize,
    },
}

/// `:path` for the fetch: the configured path, plus `since=<version>` when a list is held,
/// so a service that keeps a change log can answer with just the changes. Services that
/// ignore the parameter answer with the whole list, which works the same.
pub fn request_path(path: &str, held: Option<&RevocationSet>) -> String {
    let Some(version) = held.map(|s| s.version.as_str()).filter(|v| !v.is_empty()) else {
        return path.to_owned();
    };
    let separator = if path.contains('?') { '&' } else { '?' };
    format!("{path}{separator}since={}", percent_encode(version))
}

/// `If-None-Match` for the fetch, when the held list came with an ETag.
pub fn if_none_match(held: Option<&RevocationSet>) -> Option<&str> {
    held.map(|s| s.etag.as_str()).filter(|e| !e.is_empty())
}

fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A response becomes a list update: 304 keeps the held list, 200 brings a document. A
/// document with `delta_since` equal to the held list's version is laid over it; any other
/// 200 replaces the list.
pub fn accept_response(
    status: Option<&str>,
    etag: Option<&str>,
    body: impl Read,
    held: Option<&RevocationSet>,
    now: i64,
) -> Result<ListUpdate, ListError> {
    match status {
        None => return Err(ListError::NoResponse),
        Some("304") if held.is_some() => return Ok(ListUpdate::NotModified),
        Some("304") => return Err(ListError::UnexpectedNotModified),
        Some("200") => {}
        Some(other) => return Err(ListError::Status(other.to_owned())),
    }
    let parsed =
        revocation_doc::parse_reader(body, Source::List, now).map_err(ListError::NotADocument)?;
    let version = parsed.version.clone().unwrap_or_default();
    let etag = etag.unwrap_or_default();
    let base = match (&parsed.delta_since, held) {
        (Some(since), Some(held)) if !since.is_empty() && *since == held.version => Some(held),
        (Some(since), _) => {
            return Err(ListError::NotADocument(format!(
                "a delta since {since:?}, but the list held is version {:?}",
                held.map(|h| h.version.as_str()).unwrap_or("(none)")
            )))
        }
        (None, _) => None,
    };
    let was_delta = base.is_some();
    let mut builder: SetBuilder = parsed.builder;
    if let Some(base) = base {
        builder.add_set(base);
    }
    Ok(ListUpdate::Changed {
        set: builder.build(&version, etag),
        was_delta,
        expired_dropped: parsed.expired,
    })
}

/// Whether a list last confirmed at `checked_at` (never: `None`) may no longer be relied on.
pub fn is_stale(checked_at: Option<i64>, now: i64, max_stale_seconds: u64) -> bool {
    let max = i64::try_from(max_stale_seconds).unwrap_or(i64::MAX);
    checked_at.is_none_or(|at| now.saturating_sub(at) > max)
}

/// Whether the list is due for a poll.
pub fn fetch_due(checked_at: Option<i64>, now: i64, refresh_seconds: u64) -> bool {
    let refresh = i64::try_from(refresh_seconds).unwrap_or(i64::MAX);
    checked_at.is_none_or(|at| now >= at.saturating_add(refresh))
}

/// The small shared value workers read each tick: when the list was last confirmed and the
/// serial of the (large) shared list value, which changes whenever the list does.
pub fn encode_checked(checked_at: i64, serial: u64) -> Vec<u8> {
    format!("{checked_at} {serial}").into_bytes()
}

pub fn decode_checked(value: &[u8]) -> Option<(i64, u64)> {
    let text = std::str::from_utf8(value).ok()?;
    let (at, cas) = text.split_once(' ')?;
    Some((at.parse().ok()?, cas.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::Probe;

    fn list(text: &str, held: Option<&RevocationSet>) -> Result<ListUpdate, ListError> {
        accept_response(Some("200"), Some("\"e\""), text.as_bytes(), held, 100)
    }

    fn changed(update: ListUpdate) -> (RevocationSet, bool) {
        match update {
            ListUpdate::Changed { set, was_delta, .. } => (set, was_delta),
            ListUpdate::NotModified => panic!("not modified"),
        }
    }

    fn jti(id: &str) -> Probe {
        Probe::new("p", Some(id), None, Some(1), None)
    }

    #[test]
    fn full_delta_and_not_modified() {
        let (v1, delta) = changed(list(r#"{"version":"v1","jti":["a"]}"#, None).unwrap());
        assert!(!delta);
        assert_eq!((v1.version.as_str(), v1.etag.as_str()), ("v1", "\"e\""));
        let (v2, delta) = changed(
            list(
                r#"{"version":"v2","delta_since":"v1","jti":["b"]}"#,
                Some(&v1),
            )
            .unwrap(),
        );
        assert!(delta);
        assert!(v2.revokes(&jti("a")) && v2.revokes(&jti("b")));
        let (v3, delta) = changed(list(r#"{"version":"v3","jti":["c"]}"#, Some(&v2)).unwrap());
        assert!(!delta, "a full list replaces");
        assert!(!v3.revokes(&jti("a")) && v3.revokes(&jti("c")));
        let stale_delta = list(r#"{"version":"v9","delta_since":"v7","jti":[]}"#, Some(&v3));
        assert!(matches!(stale_delta, Err(ListError::NotADocument(_))));
        assert!(matches!(
            accept_response(Some("304"), None, &b""[..], Some(&v3), 100),
            Ok(ListUpdate::NotModified)
        ));
        assert_eq!(
            accept_response(Some("304"), None, &b""[..], None, 100).unwrap_err(),
            ListError::UnexpectedNotModified
        );
        assert_eq!(
            accept_response(Some("503"), None, &b""[..], None, 100).unwrap_err(),
            ListError::Status("503".into())
        );
        assert_eq!(
            accept_response(None, None, &b""[..], None, 100).unwrap_err(),
            ListError::NoResponse
        );
        assert!(matches!(
            list("<html>", None),
            Err(ListError::NotADocument(_))
        ));
    }

    #[test]
    fn request_carries_since_and_etag_of_the_held_list() {
        let (held, _) = changed(list(r#"{"version":"a b/1"}"#, None).unwrap());
        assert_eq!(
            request_path("/v1/list", Some(&held)),
            "/v1/list?since=a%20b%2F1"
        );
        assert_eq!(
            request_path("/l?x=1", Some(&held)),
            "/l?x=1&since=a%20b%2F1"
        );
        assert_eq!(request_path("/v1/list", None), "/v1/list");
        assert_eq!(if_none_match(Some(&held)), Some("\"e\""));
        assert_eq!(if_none_match(None), None);
    }

    #[test]
    fn staleness_and_schedule() {
        assert!(is_stale(None, 100, 300));
        assert!(!is_stale(Some(100), 400, 300));
        assert!(is_stale(Some(100), 401, 300));
        assert!(fetch_due(None, 0, 30));
        assert!(!fetch_due(Some(100), 129, 30));
        assert!(fetch_due(Some(100), 130, 30));
        assert_eq!(decode_checked(&encode_checked(123, 7)), Some((123, 7)));
        assert_eq!(decode_checked(b"x"), None);
    }
}
