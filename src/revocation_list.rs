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

/// The list as held: a base (the last whole list) and an overlay of the deltas since. Deltas
/// only ever touch the small overlay, so applying one costs what the delta and the overlay
/// cost, not what the (possibly million-entry) base costs.
#[derive(Debug, Clone, Copy)]
pub struct Held<'a> {
    pub base: &'a RevocationSet,
    pub overlay: Option<&'a RevocationSet>,
}

impl<'a> Held<'a> {
    /// The version and ETag of the latest response applied.
    fn latest(self) -> &'a RevocationSet {
        self.overlay.unwrap_or(self.base)
    }
}

/// An overlay larger than this (or than 1/16 of the base) is merged into the base: rare, and
/// keeps lookups at two binary searches.
pub const MAX_OVERLAY_ENTRIES: usize = 65_536;

/// What a successful fetch did to the list.
#[derive(Debug)]
pub enum ListUpdate {
    NotModified,
    /// A new base (a whole list, or base and overlay merged): the overlay is empty again.
    Replaced {
        base: RevocationSet,
        expired_dropped: usize,
    },
    /// A delta, laid over the held overlay.
    Extended {
        overlay: RevocationSet,
        expired_dropped: usize,
    },
}

/// `:path` for the fetch: the configured path, plus `since=<version>` when a list is held,
/// so a service that keeps a change log can answer with just the changes. Services that
/// ignore the parameter answer with the whole list, which works the same.
pub fn request_path(path: &str, held: Option<Held<'_>>) -> String {
    let Some(version) = held
        .map(|h| h.latest().version.as_str())
        .filter(|v| !v.is_empty())
    else {
        return path.to_owned();
    };
    let separator = if path.contains('?') { '&' } else { '?' };
    format!(
        "{path}{separator}since={}",
        crate::introspection::form_encode(version)
    )
}

/// `If-None-Match` for the fetch, when the held list came with an ETag.
pub fn if_none_match<'a>(held: Option<Held<'a>>) -> Option<&'a str> {
    Some(held?.latest().etag.as_str()).filter(|e| !e.is_empty())
}

/// A response becomes a list update: 304 keeps the held list, 200 brings a document. A
/// document with `delta_since` equal to the held list's version is laid over it; any other
/// 200 replaces the list.
pub fn accept_response(
    status: Option<&str>,
    etag: Option<&str>,
    body: impl Read,
    held: Option<Held<'_>>,
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
    let expired_dropped = parsed.expired;
    let mut builder: SetBuilder = parsed.builder;
    let held = match (&parsed.delta_since, held) {
        (None, _) => {
            return Ok(ListUpdate::Replaced {
                base: builder.build(&version, etag),
                expired_dropped,
            })
        }
        (Some(since), Some(held)) if !since.is_empty() && *since == held.latest().version => held,
        (Some(since), held) => {
            return Err(ListError::NotADocument(format!(
                "a delta since {since:?}, but the list held is version {:?}",
                held.map(|h| h.latest().version.as_str())
                    .unwrap_or("(none)")
            )))
        }
    };
    if let Some(overlay) = held.overlay {
        builder.add_set(overlay);
    }
    if builder.len() > MAX_OVERLAY_ENTRIES.max(held.base.len() / 16) {
        builder.add_set(held.base);
        return Ok(ListUpdate::Replaced {
            base: builder.build(&version, etag),
            expired_dropped,
        });
    }
    Ok(ListUpdate::Extended {
        overlay: builder.build(&version, etag),
        expired_dropped,
    })
}

/// Whether a list last confirmed at `checked_at` (never: `None`) may no longer be relied on.
pub fn is_stale(checked_at: Option<i64>, now: i64, max_stale_seconds: u64) -> bool {
    let max = i64::try_from(max_stale_seconds).unwrap_or(i64::MAX);
    checked_at.is_none_or(|at| now.saturating_sub(at) > max)
}

/// Whether this VM should poll now. A VM that serves requests waits a little longer than
/// one that does not (Envoy's main-thread VM), so parsing a large list happens off the
/// request path when there is such a VM, and on a worker only if there is none.
pub fn fetch_due(
    checked_at: Option<i64>,
    now: i64,
    refresh_seconds: u64,
    serves_requests: bool,
) -> bool {
    let refresh = i64::try_from(refresh_seconds).unwrap_or(i64::MAX);
    let defer = if serves_requests { refresh.min(2) } else { 0 };
    checked_at.is_none_or(|at| now >= at.saturating_add(refresh).saturating_add(defer))
}

/// The small shared value workers read each tick: when the list was last confirmed, and the
/// serials of the (large) shared base and of the overlay, which change with them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checked {
    pub at: i64,
    pub base_serial: u64,
    pub overlay_serial: u64,
}

pub fn encode_checked(checked: Checked) -> Vec<u8> {
    format!(
        "{} {} {}",
        checked.at, checked.base_serial, checked.overlay_serial
    )
    .into_bytes()
}

pub fn decode_checked(value: &[u8]) -> Option<Checked> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.split(' ').map(str::parse::<i64>);
    let (Some(Ok(at)), Some(Ok(base)), Some(Ok(overlay)), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    Some(Checked {
        at,
        base_serial: u64::try_from(base).ok()?,
        overlay_serial: u64::try_from(overlay).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::Probe;

    fn list(text: &str, held: Option<Held<'_>>) -> Result<ListUpdate, ListError> {
        accept_response(Some("200"), Some("\"e\""), text.as_bytes(), held, 100)
    }

    fn base(update: ListUpdate) -> RevocationSet {
        match update {
            ListUpdate::Replaced { base, .. } => base,
            other => panic!("{other:?}"),
        }
    }

    fn overlay(update: ListUpdate) -> RevocationSet {
        match update {
            ListUpdate::Extended { overlay, .. } => overlay,
            other => panic!("{other:?}"),
        }
    }

    fn jti(id: &str) -> Probe {
        Probe::new("p", Some(id), None, Some(1), None)
    }

    fn held<'a>(base: &'a RevocationSet, overlay: Option<&'a RevocationSet>) -> Option<Held<'a>> {
        Some(Held { base, overlay })
    }

    #[test]
    fn full_delta_and_not_modified() {
        let v1 = base(list(r#"{"version":"v1","jti":["a"]}"#, None).unwrap());
        assert_eq!((v1.version.as_str(), v1.etag.as_str()), ("v1", "\"e\""));
        let v2 = overlay(
            list(
                r#"{"version":"v2","delta_since":"v1","jti":["b"]}"#,
                held(&v1, None),
            )
            .unwrap(),
        );
        assert!(
            !v2.revokes(&jti("a")) && v2.revokes(&jti("b")),
            "the overlay holds the delta"
        );
        let v3 = overlay(
            list(
                r#"{"version":"v3","delta_since":"v2","jti":["c"]}"#,
                held(&v1, Some(&v2)),
            )
            .unwrap(),
        );
        assert!(
            v3.revokes(&jti("b")) && v3.revokes(&jti("c")),
            "deltas accumulate"
        );
        assert_eq!(v3.version, "v3");
        let v4 = base(list(r#"{"version":"v4","jti":["d"]}"#, held(&v1, Some(&v3))).unwrap());
        assert!(
            !v4.revokes(&jti("a")) && v4.revokes(&jti("d")),
            "a full list replaces"
        );
        let stale_delta = list(
            r#"{"version":"v9","delta_since":"v1","jti":[]}"#,
            held(&v1, Some(&v3)),
        );
        assert!(
            matches!(stale_delta, Err(ListError::NotADocument(_))),
            "v3 is held, not v1"
        );
        assert!(matches!(
            accept_response(Some("304"), None, &b""[..], held(&v1, None), 100),
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
    fn a_large_overlay_is_merged_into_the_base() {
        let v1 = base(list(r#"{"version":"v1","jti":["a"]}"#, None).unwrap());
        let ids: Vec<String> = (0..=MAX_OVERLAY_ENTRIES)
            .map(|i| format!("\"n{i}\""))
            .collect();
        let delta = format!(
            r#"{{"version":"v2","delta_since":"v1","jti":[{}]}}"#,
            ids.join(",")
        );
        let merged = base(list(&delta, held(&v1, None)).unwrap());
        assert!(merged.revokes(&jti("a")) && merged.revokes(&jti("n0")));
        assert_eq!(merged.version, "v2");
    }

    #[test]
    fn request_carries_since_and_etag_of_the_latest_response() {
        let v1 = base(list(r#"{"version":"a b/1"}"#, None).unwrap());
        assert_eq!(
            request_path("/v1/list", held(&v1, None)),
            "/v1/list?since=a%20b%2F1"
        );
        assert_eq!(
            request_path("/l?x=1", held(&v1, None)),
            "/l?x=1&since=a%20b%2F1"
        );
        assert_eq!(request_path("/v1/list", None), "/v1/list");
        assert_eq!(if_none_match(held(&v1, None)), Some("\"e\""));
        let v2 = accept_response(
            Some("200"),
            Some("\"f\""),
            &br#"{"version":"v2","delta_since":"a b/1"}"#[..],
            held(&v1, None),
            100,
        )
        .map(overlay)
        .unwrap();
        assert_eq!(
            request_path("/v1/list", held(&v1, Some(&v2))),
            "/v1/list?since=v2"
        );
        assert_eq!(if_none_match(held(&v1, Some(&v2))), Some("\"f\""));
        assert_eq!(if_none_match(None), None);
    }

    #[test]
    fn staleness_and_schedule() {
        assert!(is_stale(None, 100, 300));
        assert!(!is_stale(Some(100), 400, 300));
        assert!(is_stale(Some(100), 401, 300));
        assert!(fetch_due(None, 0, 30, true));
        assert!(!fetch_due(Some(100), 129, 30, false));
        assert!(fetch_due(Some(100), 130, 30, false));
        // A VM that serves requests leaves the poll to one that does not, for 2 s.
        assert!(!fetch_due(Some(100), 131, 30, true));
        assert!(fetch_due(Some(100), 132, 30, true));
        assert!(fetch_due(Some(100), 102, 1, true));
        let checked = Checked {
            at: 123,
            base_serial: 7,
            overlay_serial: 9,
        };
        assert_eq!(decode_checked(&encode_checked(checked)), Some(checked));
        assert_eq!(decode_checked(b"1 2"), None);
        assert_eq!(decode_checked(b"x"), None);
    }
}
