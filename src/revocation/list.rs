//! The pure side of the polled revocation list: the request to send, what a response turns
//! into, and when the list is too old to rely on.

use std::io::Read;

use crate::revocation::doc::{self, Source};
use crate::revocation::set::{RevocationSet, SetBuilder};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListError {
    NoResponse,
    Status(String),
    /// A 304 although we sent no `If-None-Match` we could match (no list held).
    UnexpectedNotModified,
    NotADocument(String),
    /// A worker applying a fetched list could not read back the list it holds (`indexed`).
    HeldUnreadable,
}

impl std::fmt::Display for ListError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListError::NoResponse => f.write_str("no response (timeout or connection failure)"),
            ListError::Status(status) => write!(f, "HTTP status {status}"),
            ListError::UnexpectedNotModified => f.write_str("304 but no list is held"),
            ListError::NotADocument(why) => write!(f, "not a revocation document: {why}"),
            ListError::HeldUnreadable => f.write_str(
                "the list held cannot be read back from shared data (its buckets are missing or belong to another list)",
            ),
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
    fn holds(&self, fp: u64) -> bool {
        self.base.holds(fp) || self.overlay.is_some_and(|o| o.holds(fp))
    }

    /// The version and ETag of the latest response applied.
    fn latest(self) -> &'a RevocationSet {
        self.overlay.unwrap_or(self.base)
    }

    pub fn tag(self) -> Tag<'a> {
        let latest = self.latest();
        Tag {
            version: &latest.version,
            etag: &latest.etag,
        }
    }
}

/// The version and ETag of the latest response applied: what the next poll sends.
#[derive(Debug, Clone, Copy)]
pub struct Tag<'a> {
    pub version: &'a str,
    pub etag: &'a str,
}

/// An overlay larger than this (or than 1/16 of the base) is merged into the base: rare, and
/// keeps lookups at two binary searches.
pub const MAX_OVERLAY_ENTRIES: usize = 65_536;

/// What a successful fetch did to the list. `lifetimes`: the known `exp` of the entries
/// now held, when the rollback guard is on and they changed (`None`: keep what is stored).
#[derive(Debug)]
pub enum ListUpdate {
    NotModified,
    /// A new base (a whole list, or base and overlay merged): the overlay is empty again.
    /// `kept`: held entries the whole list left out although their token may still be valid
    /// (a rolled-back or stale list service), kept in the new base.
    Replaced {
        base: RevocationSet,
        expired_dropped: usize,
        kept: usize,
        lifetimes: Option<Lifetimes>,
    },
    /// A delta, laid over the held overlay.
    Extended {
        overlay: RevocationSet,
        expired_dropped: usize,
        lifetimes: Option<Lifetimes>,
    },
}

/// The known `exp` of held list entries, by fingerprint (sorted, one per fingerprint).
/// Only entries that came with an `exp` are here: one without is kept until the operator
/// allows removal, since nothing says when its token stops working.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lifetimes(Vec<(u64, i64)>);

impl Lifetimes {
    pub fn new(mut entries: Vec<(u64, i64)>) -> Self {
        // The latest exp of a fingerprint wins: the entry lives as long as any of its tokens.
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        entries.dedup_by_key(|e| e.0);
        Lifetimes(entries)
    }

    pub fn exp(&self, fp: u64) -> Option<i64> {
        let i = self.0.binary_search_by_key(&fp, |e| e.0).ok()?;
        self.0.get(i).map(|e| e.1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn union(&self, more: Vec<(u64, i64)>) -> Self {
        let mut all = self.0.clone();
        all.extend(more);
        Lifetimes::new(all)
    }

    /// 16 bytes per entry (fingerprint, exp; little-endian), for shared data.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.0.len() * 16);
        for (fp, exp) in &self.0 {
            bytes.extend_from_slice(&fp.to_le_bytes());
            bytes.extend_from_slice(&exp.to_le_bytes());
        }
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if !bytes.len().is_multiple_of(16) {
            return None;
        }
        let entries = bytes
            .chunks_exact(16)
            .map(|c| {
                let (fp, exp) = c.split_at(8);
                Some((
                    u64::from_le_bytes(fp.try_into().ok()?),
                    i64::from_le_bytes(exp.try_into().ok()?),
                ))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Lifetimes::new(entries))
    }
}

/// `:path` for the fetch: the configured path, plus `since=<version>` when a list is held,
/// so a service that keeps a change log can answer with just the changes. Services that
/// ignore the parameter answer with the whole list, which works the same.
pub fn request_path(path: &str, held: Option<Tag<'_>>) -> String {
    let Some(version) = held.map(|h| h.version).filter(|v| !v.is_empty()) else {
        return path.to_owned();
    };
    let separator = if path.contains('?') { '&' } else { '?' };
    format!("{path}{separator}since={}", crate::percent::encode(version))
}

/// `If-None-Match` for the fetch, when the held list came with an ETag.
pub fn if_none_match<'a>(held: Option<Tag<'a>>) -> Option<&'a str> {
    Some(held?.etag).filter(|e| !e.is_empty())
}

/// A response becomes a list update: 304 keeps the held list, 200 brings a document. A
/// document with `delta_since` equal to the held list's version is laid over it; any other
/// 200 is a whole list. `known`: the rollback guard is on (`revocation.list.allow_removal`
/// false) and these are the held entries' known `exp`: a whole list then does not drop held
/// entries that are still live (versions are opaque strings, so content decides, not order).
pub fn accept_response(
    status: Option<&str>,
    etag: Option<&str>,
    body: impl Read,
    held: Option<Held<'_>>,
    known: Option<&Lifetimes>,
    now: i64,
) -> Result<ListUpdate, ListError> {
    match status {
        None => return Err(ListError::NoResponse),
        Some("304") if held.is_some() => return Ok(ListUpdate::NotModified),
        Some("304") => return Err(ListError::UnexpectedNotModified),
        Some("200") => {}
        Some(other) => return Err(ListError::Status(other.to_owned())),
    }
    let parsed = doc::parse_reader(body, Source::List, now).map_err(ListError::NotADocument)?;
    let version = parsed.version.clone().unwrap_or_default();
    let etag = etag.unwrap_or_default();
    let expired_dropped = parsed.expired;
    let found = parsed.lifetimes;
    let mut builder: SetBuilder = parsed.builder;
    let held = match (&parsed.delta_since, held) {
        (None, held) => {
            let whole = builder.build(&version, etag);
            return Ok(whole_list(whole, held, known, found, now, expired_dropped));
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
    // A delta only adds: the known lifetimes grow by its entries' (if it brought any).
    let lifetimes = known.filter(|_| !found.is_empty()).map(|k| k.union(found));
    if let Some(overlay) = held.overlay {
        builder.add_set(overlay);
    }
    if builder.len() > MAX_OVERLAY_ENTRIES.max(held.base.len() / 16) {
        builder.add_set(held.base);
        return Ok(ListUpdate::Replaced {
            base: builder.build(&version, etag),
            expired_dropped,
            kept: 0,
            lifetimes,
        });
    }
    Ok(ListUpdate::Extended {
        overlay: builder.build(&version, etag),
        expired_dropped,
        lifetimes,
    })
}

/// The `exp` a list gives entries already held never shortens what is known of them: a list
/// service that re-lists an entry with an `exp` just ahead, then leaves it out once that has
/// passed, must not un-revoke it. Held without a known `exp` (live for ever): stays so.
fn never_shortened(found: Vec<(u64, i64)>, held: Held<'_>, known: &Lifetimes) -> Vec<(u64, i64)> {
    found
        .into_iter()
        .filter_map(|(fp, exp)| {
            if !held.holds(fp) {
                return Some((fp, exp));
            }
            known.exp(fp).map(|was| (fp, was.max(exp)))
        })
        .collect()
}

/// A whole list replaces the held one, except (with `known`) for held entries it leaves out
/// that are still live: their known `exp` is after `now` (the caller's "dropped before"
/// time), or unknown.
fn whole_list(
    whole: RevocationSet,
    held: Option<Held<'_>>,
    known: Option<&Lifetimes>,
    found: Vec<(u64, i64)>,
    now: i64,
    expired_dropped: usize,
) -> ListUpdate {
    let (Some(held), Some(known)) = (held, known) else {
        return ListUpdate::Replaced {
            base: whole,
            expired_dropped,
            kept: 0,
            lifetimes: known.map(|_| Lifetimes::new(found)),
        };
    };
    let found = never_shortened(found, held, known);
    let left_out = left_out_live(&whole, held, known, now);
    if left_out.is_empty() {
        return ListUpdate::Replaced {
            base: whole,
            expired_dropped,
            kept: 0,
            lifetimes: Some(Lifetimes::new(found)),
        };
    }
    let mut found = found;
    found.extend(
        left_out
            .exact_fingerprints()
            .chain(left_out.subject_entries().map(|(fp, _)| fp))
            .filter_map(|fp| known.exp(fp).map(|exp| (fp, exp))),
    );
    let mut merged = SetBuilder::default();
    merged.add_set(&left_out);
    merged.add_set(&whole);
    ListUpdate::Replaced {
        base: merged.build(&whole.version, &whole.etag),
        expired_dropped,
        kept: left_out.len(),
        lifetimes: Some(Lifetimes::new(found)),
    }
}

/// Held entries (base and overlay) that `whole` does not revoke as far as they do, and
/// that are still live: exact entries it lacks, subject and global cutoffs it lacks or
/// lowers.
fn left_out_live(
    whole: &RevocationSet,
    held: Held<'_>,
    known: &Lifetimes,
    now: i64,
) -> RevocationSet {
    let live = |fp: u64| known.exp(fp).is_none_or(|exp| exp > now);
    let mut left_out = SetBuilder::default();
    for set in [Some(held.base), held.overlay].into_iter().flatten() {
        for fp in set.exact_fingerprints() {
            if !whole.has_exact(fp) && live(fp) {
                left_out.add_exact_fingerprint(fp);
            }
        }
        for (fp, cutoff) in set.subject_entries() {
            if whole.cutoff_of_subject(fp).is_none_or(|c| c < cutoff) && live(fp) {
                left_out.add_subject_fingerprint(fp, cutoff);
            }
        }
        for (scope, cutoff) in set.cutoff_entries() {
            if whole.cutoff_of_scope(scope).is_none_or(|c| c < cutoff) {
                left_out.add_cutoff(scope, cutoff);
            }
        }
    }
    left_out.build("", "")
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
    use crate::revocation::set::Probe;

    fn list(text: &str, held: Option<Held<'_>>) -> Result<ListUpdate, ListError> {
        accept_response(Some("200"), Some("\"e\""), text.as_bytes(), held, None, 100)
    }

    /// As `list`, with the rollback guard on (`allow_removal: false`).
    fn guarded(
        text: &str,
        held: Option<Held<'_>>,
        known: &Lifetimes,
        now: i64,
    ) -> (RevocationSet, usize, Lifetimes) {
        match accept_response(Some("200"), None, text.as_bytes(), held, Some(known), now) {
            Ok(ListUpdate::Replaced {
                base,
                kept,
                lifetimes: Some(lifetimes),
                ..
            }) => (base, kept, lifetimes),
            other => panic!("{other:?}"),
        }
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
            accept_response(Some("304"), None, &b""[..], held(&v1, None), None, 100),
            Ok(ListUpdate::NotModified)
        ));
        assert_eq!(
            accept_response(Some("304"), None, &b""[..], None, None, 100).unwrap_err(),
            ListError::UnexpectedNotModified
        );
        assert_eq!(
            accept_response(Some("503"), None, &b""[..], None, None, 100).unwrap_err(),
            ListError::Status("503".into())
        );
        assert_eq!(
            accept_response(None, None, &b""[..], None, None, 100).unwrap_err(),
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
            request_path("/v1/list", held(&v1, None).map(Held::tag)),
            "/v1/list?since=a%20b%2F1"
        );
        assert_eq!(
            request_path("/l?x=1", held(&v1, None).map(Held::tag)),
            "/l?x=1&since=a%20b%2F1"
        );
        assert_eq!(request_path("/v1/list", None), "/v1/list");
        assert_eq!(if_none_match(held(&v1, None).map(Held::tag)), Some("\"e\""));
        let v2 = accept_response(
            Some("200"),
            Some("\"f\""),
            &br#"{"version":"v2","delta_since":"a b/1"}"#[..],
            held(&v1, None),
            None,
            100,
        )
        .map(overlay)
        .unwrap();
        assert_eq!(
            request_path("/v1/list", held(&v1, Some(&v2)).map(Held::tag)),
            "/v1/list?since=v2"
        );
        assert_eq!(
            if_none_match(held(&v1, Some(&v2)).map(Held::tag)),
            Some("\"f\"")
        );
        assert_eq!(if_none_match(None), None);
    }

    /// Issued after every global cutoff of these tests: only the `jti` can revoke it.
    fn id(id: &str) -> Probe {
        Probe::new("p", Some(id), None, Some(1000), None)
    }

    fn sub(name: &str, iat: i64) -> Probe {
        Probe::new("p", None, Some(name), Some(iat), None)
    }

    #[test]
    fn a_whole_list_cannot_drop_live_entries_unless_removal_is_allowed() {
        let none = Lifetimes::default();
        let (v2, kept, known) = guarded(
            r#"{"version":"v2","jti":["plain",{"jti":"t","exp":500},{"jti":"short","exp":150}],
                "subjects":{"alice":{"issued_before":90,"exp":400},"bob":80},"issued_before":10}"#,
            None,
            &none,
            100,
        );
        assert_eq!(kept, 0, "nothing held: nothing left out");
        assert_eq!(known.len(), 3, "t, short and alice came with an exp");
        // A rolled-back service: an older, smaller whole list.
        let (v1, kept, after) = guarded(
            r#"{"version":"v1","jti":["other"],"subjects":{"bob":20},"issued_before":5}"#,
            held(&v2, None),
            &known,
            200,
        );
        assert!(v1.revokes(&id("other")), "what the list says holds");
        assert!(
            v1.revokes(&id("plain")) && v1.revokes(&id("t")),
            "live entries stay: no exp, and exp 500 > 200"
        );
        assert!(!v1.revokes(&id("short")), "exp 150 has passed: dropped");
        assert!(v1.revokes(&sub("alice", 90)), "a subject cutoff stays");
        assert!(
            v1.revokes(&sub("bob", 80)),
            "a lowered cutoff keeps the higher"
        );
        assert!(v1.revokes(&Probe::new("p", None, None, Some(10), None)));
        assert_eq!(kept, 5, "plain, t, alice, bob, the global cutoff");
        assert_eq!(v1.version, "v1", "the service's version is sent back");
        assert_eq!(
            (after.exp(fp_of("t")), after.exp(fp_of("short"))),
            (Some(500), None)
        );
        // Still kept at the next whole list, until exp passes.
        let (v0, kept, _) = guarded(r#"{"version":"v0"}"#, held(&v1, None), &after, 600);
        assert!(v0.revokes(&id("plain")) && !v0.revokes(&id("t")));
        assert!(!v0.revokes(&sub("alice", 90)), "alice's exp 400 has passed");
        assert_eq!(kept, 4, "plain, other, bob, the global cutoff");
        // The operator allows removal: the whole list is the list.
        let replaced = base(list(r#"{"version":"v0"}"#, held(&v1, None)).unwrap());
        assert!(replaced.is_empty());
    }

    #[test]
    fn the_rollback_guard_covers_the_overlay_and_deltas_bring_their_lifetimes() {
        let none = Lifetimes::default();
        let (v1, _, known) = guarded(r#"{"version":"v1","jti":["a"]}"#, None, &none, 100);
        let update = accept_response(
            Some("200"),
            None,
            &br#"{"version":"v2","delta_since":"v1","jti":[{"jti":"d","exp":300}]}"#[..],
            held(&v1, None),
            Some(&known),
            100,
        );
        let Ok(ListUpdate::Extended {
            overlay: v2,
            lifetimes: Some(known),
            ..
        }) = update
        else {
            panic!("{update:?}")
        };
        assert_eq!(known.exp(fp_of("d")), Some(300));
        let (v3, kept, _) = guarded(r#"{"version":"v3"}"#, held(&v1, Some(&v2)), &known, 200);
        assert!(v3.revokes(&id("a")) && v3.revokes(&id("d")));
        assert_eq!(kept, 2);
        let (v4, kept, _) = guarded(r#"{"version":"v4"}"#, held(&v1, Some(&v2)), &known, 300);
        assert!(
            v4.revokes(&id("a")) && !v4.revokes(&id("d")),
            "d's exp passed"
        );
        assert_eq!(kept, 1);
        // A whole list that has everything still held is no rollback.
        let (_, kept, _) = guarded(
            r#"{"version":"v5","jti":["a","d"]}"#,
            held(&v1, Some(&v2)),
            &known,
            200,
        );
        assert_eq!(kept, 0);
    }

    #[test]
    fn lifetimes_round_trip_and_keep_the_latest_exp() {
        let lifetimes = Lifetimes::new(vec![(7, 10), (3, 5), (7, 20)]);
        assert_eq!(
            (lifetimes.exp(7), lifetimes.exp(3), lifetimes.exp(4)),
            (Some(20), Some(5), None)
        );
        assert_eq!(Lifetimes::decode(&lifetimes.encode()), Some(lifetimes));
        assert_eq!(Lifetimes::decode(&[1, 2, 3]), None);
        assert_eq!(Lifetimes::decode(&[]), Some(Lifetimes::default()));
    }

    fn fp_of(id: &str) -> u64 {
        crate::revocation::set::fingerprint(crate::revocation::set::Kind::Jti, "", id.as_bytes())
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

    /// With `allow_removal: false`, a list service cannot un-revoke a live entry in two steps:
    /// first re-listing it with an `exp` just ahead, then leaving it out once that passed.
    #[test]
    fn a_list_cannot_shorten_the_exp_of_what_it_holds() {
        let none = Lifetimes::default();
        let (v1, _, known) = guarded(
            r#"{"version":"v1","jti":[{"jti":"t","exp":10000}, "forever"]}"#,
            None,
            &none,
            100,
        );
        let (v2, _, known) = guarded(
            r#"{"version":"v2","jti":[{"jti":"t","exp":101}, {"jti":"forever","exp":101}]}"#,
            held(&v1, None),
            &known,
            100,
        );
        let (v3, _, _) = guarded(r#"{"version":"v3"}"#, held(&v2, None), &known, 200);
        assert!(v3.revokes(&id("t")), "t (exp 10000) un-revoked at 200");
        assert!(
            v3.revokes(&id("forever")),
            "an entry without exp un-revoked"
        );
    }
}
