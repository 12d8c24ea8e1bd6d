//! One prefix of etcd kept in sync, sans I/O: a paged read (`KV/Range`) at one revision, then
//! a watch from the next revision; a compacted revision reads the prefix again, a broken
//! stream backs off and watches again from the last revision seen. The shell asks what to do
//! (`next_action`), tells what happened (`range_response`, `watch_response`, ...) and applies
//! the `Changes` that come back; the stream, framing and sharing with the other workers stay
//! in the shell, like `Fetch`'s calls do.

use std::collections::BTreeMap;

use crate::observe::episode::Episode;
use crate::revocation::etcd::proto::{
    prefix_range_end, EventType, KeyValue, RangeRequest, RangeResponse, WatchCreateRequest,
    WatchResponse,
};

/// Keys asked for per `Range` page. etcd counts every key left in the range for each page
/// (`count`), so a read costs (keys / page)^2 / 2 of that: 10,000 keeps a 1M-key read to 100
/// pages, and a page of the layout's usual entries (under 100 bytes) to about 1 MiB; pages of
/// large values come back over the shell's cap and are asked for again with fewer keys.
pub const PAGE_LIMIT: i64 = 10_000;

/// The most keys one read collects before it is refused: far above a revocation prefix, it
/// bounds the memory a server answering `more` forever could make a read take.
pub const MAX_READ_KEYS: usize = 2_000_000;

/// The first wait after a failure; each further failure doubles it, up to the cap.
pub const BACKOFF_FIRST_SECONDS: i64 = 1;
pub const BACKOFF_MAX_SECONDS: i64 = 30;

/// The watch id of etcd's answers to a progress request (not any one watch's).
pub const PROGRESS_WATCH_ID: i64 = -1;

/// After this long without a word on a live watch, a progress request is sent; without an
/// answer within as long again, the stream is taken as dead (`check_alive`). The shell sets
/// it from the staleness limit (`with_liveness`).
pub const DEFAULT_QUIET_SECONDS: i64 = 10;

/// A read collects at most this many bytes of keys and values (values are cut to what the
/// layout reads, `with_value_limit`): a server answering `more` forever, or with huge values,
/// cannot grow a read without bound.
pub const MAX_READ_BYTES: usize = 256 * 1024 * 1024;

/// A watch that was live this long before it broke was healthy: the next backoff starts again
/// from the first delay, so one break after a good hour is not punished like a flapping link.
pub const HEALTHY_SECONDS: i64 = 60;

/// Where the machine is.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Nothing asked yet.
    Idle,
    /// A paged read: the first page fixes `revision` (its header's), the next page starts at
    /// `next_key`; `sent` while that page's request is out; `keys` read so far. Each page is
    /// handed over as it comes (`Changes::page`), for the caller to collect apart from what
    /// it enforces until the read is whole (`reset`): it never enforces half a prefix.
    Reading {
        revision: Option<i64>,
        next_key: Vec<u8>,
        sent: bool,
        keys: usize,
    },
    /// A watch from `from_revision`: `opened` once its request is out, `created_at` once etcd
    /// confirmed it (it is live from then until it breaks), under etcd's `watch_id`.
    /// `heard_at`: when etcd last said anything on it (opened, created, events, progress);
    /// `progress_asked`: a progress request is out since then, unanswered.
    Watching {
        from_revision: i64,
        opened: bool,
        created_at: Option<i64>,
        watch_id: i64,
        heard_at: i64,
        progress_asked: Option<i64>,
    },
    /// After a failure, nothing before `until`; then a watch from the last revision seen, or a
    /// new read when there is none to resume from.
    Backoff { until: i64 },
}

/// What the shell should do now.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Nothing,
    /// Call `etcdserverpb.KV/Range` with this request.
    SendRange(RangeRequest),
    /// Open a `etcdserverpb.Watch/Watch` stream and send this as its `WatchRequest`.
    OpenWatch(WatchCreateRequest),
    /// Close the watch stream: the machine is done with it (its watch was canceled, or etcd
    /// broke the protocol) though etcd has not closed it.
    CloseWatch,
    /// Send a `WatchProgressRequest` on the stream: etcd has been quiet for a while, and a
    /// stream that cannot answer (a frozen member, a black-holed link) must not pass for live.
    RequestProgress,
}

/// What an answer changed in the prefix.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// `puts` are a page of a read (`first`: its first page: drop any pages collected
    /// before), to collect apart from what is enforced; `None`: watch events.
    pub page: Option<Page>,
    /// The read is whole: what the caller enforces becomes exactly its pages, this one
    /// included (`deletes` is empty).
    pub reset: bool,
    /// Keys written (with their values and `mod_revision`).
    pub puts: Vec<KeyValue>,
    /// Keys deleted. A key is in `puts` or `deletes`, never both: within one answer only its
    /// last event counts, so the order of the two lists does not matter.
    pub deletes: Vec<Vec<u8>>,
    /// `Some(n)`: this ends an outage of `n` failures (log "recovered after n").
    pub recovered: Option<u64>,
}

/// Which page of a read an answer is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Page {
    pub first: bool,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.page.is_none() && !self.reset && self.puts.is_empty() && self.deletes.is_empty()
    }
}

/// An answer that was no use (or a watch etcd ended): the machine backs off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub why: &'static str,
    /// This starts an outage: log it (once, until it recovers).
    pub starts_outage: bool,
}

/// One worker's view of one watched prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct PrefixWatch {
    prefix: Vec<u8>,
    range_end: Vec<u8>,
    state: State,
    /// The caller's set is complete through this revision (the read's, then the watch's
    /// events). `None`: no read yet, or it cannot be resumed (compacted): read again.
    revision: Option<i64>,
    /// When the set was last known to be in sync: a read completed, or a live watch ended.
    synced_at: Option<i64>,
    /// The next backoff's delay.
    backoff: i64,
    /// The shell still has a stream the machine is done with (see `Action::CloseWatch`).
    stream_open: bool,
    episode: Episode,
    /// `MAX_READ_KEYS` (smaller in tests).
    max_read_keys: usize,
    /// Keys asked for per page: `PAGE_LIMIT`, halved while pages come back too large (for
    /// the rest of that read).
    page_limit: i64,
    /// Bytes of keys and values collected by the read in progress.
    read_bytes: usize,
    /// Values longer are cut to this many bytes while a read collects them.
    keep_value_bytes: usize,
    /// See `DEFAULT_QUIET_SECONDS`.
    quiet_seconds: i64,
}

impl PrefixWatch {
    pub fn new(prefix: &[u8]) -> Self {
        PrefixWatch {
            prefix: prefix.to_vec(),
            range_end: prefix_range_end(prefix),
            state: State::Idle,
            revision: None,
            synced_at: None,
            backoff: BACKOFF_FIRST_SECONDS,
            stream_open: false,
            episode: Episode::default(),
            max_read_keys: MAX_READ_KEYS,
            page_limit: PAGE_LIMIT,
            read_bytes: 0,
            keep_value_bytes: usize::MAX,
            quiet_seconds: DEFAULT_QUIET_SECONDS,
        }
    }

    /// Values longer than `bytes` are held cut to `bytes + 1` while a read collects pages
    /// (still too long for a reader that refuses values over `bytes`).
    pub fn with_value_limit(mut self, bytes: usize) -> Self {
        self.keep_value_bytes = bytes.saturating_add(1);
        self
    }

    /// How long a live watch may be quiet before it is asked for progress (at least 1 s).
    pub fn with_liveness(mut self, quiet_seconds: i64) -> Self {
        self.quiet_seconds = quiet_seconds.max(1);
        self
    }

    /// A live watch that did not answer its progress request in time (or was never created)
    /// is dead: the machine backs off and resumes. Call on every tick, before `next_action`.
    pub fn check_alive(&mut self, now: i64) -> Option<Refused> {
        let State::Watching {
            opened: true,
            created_at,
            heard_at,
            progress_asked,
            ..
        } = self.state
        else {
            return None;
        };
        let quiet = self.quiet_seconds;
        let why = match (created_at, progress_asked) {
            (Some(_), Some(asked)) if now.saturating_sub(asked) >= quiet => {
                "no answer to a progress request (a silent stream or member)"
            }
            (None, _) if now.saturating_sub(heard_at) >= quiet.saturating_mul(2) => {
                "the watch was never confirmed"
            }
            _ => return None,
        };
        Some(self.refuse(now, why))
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// The revision the caller's set is complete through, if any.
    pub fn revision(&self) -> Option<i64> {
        self.revision
    }

    /// What to do now. An action is handed out once: the machine counts it as done, and the
    /// shell reports how it ended (a failed dispatch too, as `range_failed`/`watch_closed`).
    pub fn next_action(&mut self, now: i64) -> Action {
        let watching = matches!(self.state, State::Watching { .. });
        if self.stream_open && !watching {
            self.stream_open = false;
            return Action::CloseWatch;
        }
        match self.state {
            State::Idle => self.state = self.resume(),
            State::Backoff { until } if now >= until => self.state = self.resume(),
            _ => {}
        }
        match &mut self.state {
            State::Reading {
                revision,
                next_key,
                sent,
                ..
            } if !*sent => {
                *sent = true;
                Action::SendRange(RangeRequest {
                    key: next_key.clone(),
                    range_end: self.range_end.clone(),
                    limit: self.page_limit,
                    // 0 is "the latest": the first page fixes the revision of the rest.
                    revision: revision.unwrap_or(0),
                    ..RangeRequest::default()
                })
            }
            State::Watching {
                from_revision,
                opened,
                heard_at,
                ..
            } if !*opened => {
                *opened = true;
                *heard_at = now;
                self.stream_open = true;
                Action::OpenWatch(WatchCreateRequest {
                    key: self.prefix.clone(),
                    range_end: self.range_end.clone(),
                    start_revision: *from_revision,
                    // A revision larger than etcd's request limit comes in pieces, each
                    // answer bounded, instead of one answer too large to take.
                    fragment: true,
                    ..WatchCreateRequest::default()
                })
            }
            State::Watching {
                created_at: Some(_),
                heard_at,
                progress_asked,
                ..
            } if progress_asked.is_none()
                && now.saturating_sub(*heard_at) >= self.quiet_seconds =>
            {
                *progress_asked = Some(now);
                Action::RequestProgress
            }
            _ => Action::Nothing,
        }
    }

    /// A `Range` page came back. An answer nobody waits for is ignored; a page that is no use
    /// (no revision, keys outside the prefix or out of order, `more` without keys, which
    /// would ask for the same page forever) fails the read.
    pub fn range_response(&mut self, now: i64, resp: RangeResponse) -> Result<Changes, Refused> {
        let State::Reading {
            revision,
            next_key,
            sent,
            keys,
        } = &mut self.state
        else {
            return Ok(Changes::default());
        };
        if !*sent {
            return Ok(Changes::default());
        }
        let at = match *revision {
            Some(at) => at,
            None => match resp.header.as_ref().map(|h| h.revision) {
                Some(at) if at > 0 => at,
                _ => return Err(self.refuse(now, "a Range answer without a revision")),
            },
        };
        let mut after: &[u8] = next_key;
        for kv in &resp.kvs {
            if kv.key.as_slice() < after || !kv.key.starts_with(&self.prefix) {
                return Err(self.refuse(now, "a Range page out of order or outside the prefix"));
            }
            after = &kv.key;
        }
        if keys.saturating_add(resp.kvs.len()) > self.max_read_keys {
            return Err(self.refuse(now, "a Range read over MAX_READ_KEYS keys"));
        }
        let last_key = resp.kvs.last().map(|kv| kv.key.clone());
        let mut kvs = resp.kvs;
        for kv in &mut kvs {
            // A value the reader refuses anyway is held only as far as it takes to refuse it.
            kv.value.truncate(self.keep_value_bytes);
            kv.value.shrink_to_fit();
            self.read_bytes = self
                .read_bytes
                .saturating_add(kv.key.len() + kv.value.len());
        }
        if self.read_bytes > MAX_READ_BYTES {
            return Err(self.refuse(now, "a Range read over MAX_READ_BYTES"));
        }
        *keys += kvs.len();
        let page = Some(Page {
            first: revision.is_none(),
        });
        *revision = Some(at);
        if resp.more {
            let Some(mut key) = last_key else {
                return Err(self.refuse(now, "a Range page with more to come but no keys"));
            };
            // The smallest key after the last one read.
            key.push(0);
            *next_key = key;
            *sent = false;
            return Ok(Changes {
                page,
                puts: kvs,
                ..Changes::default()
            });
        }
        let puts = kvs;
        // The next read starts with full pages again, and counts its own bytes.
        self.page_limit = PAGE_LIMIT;
        self.read_bytes = 0;
        self.revision = Some(at);
        self.synced_at = Some(now);
        self.state = self.watch_from(at);
        Ok(Changes {
            page,
            reset: true,
            puts,
            deletes: Vec::new(),
            recovered: self.episode.recovered(),
        })
    }

    /// The page asked for came back larger than the shell takes: the same page is asked for
    /// again at once with half as many keys. `false` when a page is already one key (that
    /// key is too large to read: the caller fails the read with `range_failed`).
    pub fn range_too_large(&mut self) -> bool {
        match &mut self.state {
            State::Reading { sent, .. } if *sent && self.page_limit > 1 => {
                self.page_limit = (self.page_limit / 2).max(1);
                *sent = false;
                true
            }
            _ => false,
        }
    }

    /// The `Range` call failed (not sent, an error status, a body that does not decode): the
    /// read starts again after the backoff. `true` when this starts an outage.
    pub fn range_failed(&mut self, now: i64) -> bool {
        match self.state {
            State::Reading { sent: true, .. } => self.fail(now),
            _ => false,
        }
    }

    /// A message came on the watch stream.
    pub fn watch_response(&mut self, now: i64, resp: WatchResponse) -> Result<Changes, Refused> {
        let State::Watching {
            from_revision,
            opened: true,
            created_at,
            watch_id,
            heard_at,
            progress_asked,
        } = &mut self.state
        else {
            return Ok(Changes::default());
        };
        let from_revision = *from_revision;
        // Anything from etcd shows the stream and its member are alive.
        *heard_at = now;
        *progress_asked = None;
        if resp.compact_revision > 0 {
            // What is held is still right, but the events since cannot be had: read it all.
            self.watch_ended(now);
            self.revision = None;
            self.state = self.resume();
            return Ok(Changes::default());
        }
        if resp.canceled {
            // Not for compaction (no leader, say): read again, after a backoff so that a
            // cancel on every watch does not spin.
            self.revision = None;
            return Err(self.refuse(now, "etcd canceled the watch"));
        }
        let mut recovered = None;
        if resp.created {
            if created_at.is_none() {
                *created_at = Some(now);
                *watch_id = resp.watch_id;
                recovered = self.episode.recovered();
            }
        } else if created_at.is_none() {
            // Resuming from the last revision seen loses nothing, whatever this was.
            return Err(self.refuse(now, "a watch answer before the watch was created"));
        }
        if resp.watch_id != *watch_id {
            if !resp.events.is_empty() {
                // Events for a watch this stream never made: etcd's or a proxy's bug. Resuming
                // from the last revision seen gets them again, under this watch.
                return Err(self.refuse(now, "events for a watch this stream did not create"));
            }
            // A progress answer (`PROGRESS_WATCH_ID`), or the end of an old watch.
            return Ok(Changes {
                recovered,
                ..Changes::default()
            });
        }
        let mut last: BTreeMap<Vec<u8>, Option<KeyValue>> = BTreeMap::new();
        let mut top = self.revision.unwrap_or(0);
        for event in resp.events {
            let Some(kv) = event.kv else { continue };
            if kv.mod_revision < from_revision || !kv.key.starts_with(&self.prefix) {
                continue;
            }
            top = top.max(kv.mod_revision);
            match EventType::try_from(event.r#type) {
                Ok(EventType::Put) => last.insert(kv.key.clone(), Some(kv)),
                Ok(EventType::Delete) => last.insert(kv.key, None),
                Err(_) => continue,
            };
        }
        // A fragment's revision may continue in the next answer: resume from it only once
        // it is whole (replaying a revision's events is harmless, skipping some is not).
        if !resp.fragment {
            self.revision = Some(top);
        }
        let mut changes = Changes {
            recovered,
            ..Changes::default()
        };
        for (key, kv) in last {
            match kv {
                Some(kv) => changes.puts.push(kv),
                None => changes.deletes.push(key),
            }
        }
        Ok(changes)
    }

    /// The watch stream closed or broke (or could not be opened): back off, then watch again
    /// from the last revision seen. `true` when this starts an outage. Only the current
    /// stream's close counts: the shell drops those of streams it closed itself.
    pub fn watch_closed(&mut self, now: i64) -> bool {
        self.stream_open = false;
        match self.state {
            State::Watching { opened: true, .. } => self.fail(now),
            _ => false,
        }
    }

    /// When what is held was last known to be in sync: while a watch is live, when etcd last
    /// said anything on it (a quiet one is asked for progress, so this trails by at most the
    /// quiet time); else when the last read completed or the last live watch ended (`None`:
    /// never read).
    pub fn in_sync_at(&self) -> Option<i64> {
        match self.state {
            State::Watching {
                created_at: Some(_),
                heard_at,
                ..
            } => Some(self.synced_at.map_or(heard_at, |at| at.max(heard_at))),
            _ => self.synced_at,
        }
    }

    /// A read when nothing can be resumed, else a watch from the revision after the last seen.
    fn resume(&mut self) -> State {
        self.read_bytes = 0;
        match self.revision {
            Some(at) => self.watch_from(at),
            None => State::Reading {
                revision: None,
                next_key: self.prefix.clone(),
                sent: false,
                keys: 0,
            },
        }
    }

    fn watch_from(&self, revision: i64) -> State {
        State::Watching {
            from_revision: revision.saturating_add(1),
            opened: false,
            created_at: None,
            watch_id: 0,
            heard_at: 0,
            progress_asked: None,
        }
    }

    /// A live watch is over: it kept the set in sync until now, and a healthy one resets the
    /// backoff.
    fn watch_ended(&mut self, now: i64) {
        if let State::Watching {
            created_at: Some(since),
            heard_at,
            ..
        } = self.state
        {
            // In sync until etcd last said something, not until the break was noticed.
            self.synced_at = Some(self.synced_at.map_or(heard_at, |at| at.max(heard_at)));
            if now.saturating_sub(since) >= HEALTHY_SECONDS {
                self.backoff = BACKOFF_FIRST_SECONDS;
            }
        }
    }

    fn fail(&mut self, now: i64) -> bool {
        self.watch_ended(now);
        self.state = State::Backoff {
            until: now.saturating_add(self.backoff),
        };
        self.backoff = self.backoff.saturating_mul(2).min(BACKOFF_MAX_SECONDS);
        self.episode.failed()
    }

    fn refuse(&mut self, now: i64, why: &'static str) -> Refused {
        Refused {
            why,
            starts_outage: self.fail(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Staleness as the decision judges it (`revocation::list::is_stale` on the in-sync
    /// time); a negative limit is zero.
    fn stale(w: &PrefixWatch, now: i64, max_stale_seconds: i64) -> bool {
        let max = u64::try_from(max_stale_seconds).unwrap_or(0);
        crate::revocation::list::is_stale(w.in_sync_at(), now, max)
    }
    use crate::revocation::etcd::proto::{Event, ResponseHeader};

    fn kv(key: &str, rev: i64) -> KeyValue {
        KeyValue {
            key: key.as_bytes().to_vec(),
            value: b"{}".to_vec(),
            mod_revision: rev,
            create_revision: rev,
            version: 1,
            lease: 0,
        }
    }

    fn page(revision: i64, kvs: Vec<KeyValue>, more: bool) -> RangeResponse {
        RangeResponse {
            header: Some(ResponseHeader {
                revision,
                ..Default::default()
            }),
            count: i64::try_from(kvs.len()).unwrap(),
            kvs,
            more,
        }
    }

    fn created(watch_id: i64) -> WatchResponse {
        WatchResponse {
            watch_id,
            created: true,
            ..Default::default()
        }
    }

    fn events(watch_id: i64, events: Vec<(EventType, KeyValue)>) -> WatchResponse {
        WatchResponse {
            watch_id,
            events: events
                .into_iter()
                .map(|(t, kv)| Event {
                    r#type: t as i32,
                    kv: Some(kv),
                    prev_kv: None,
                })
                .collect(),
            ..Default::default()
        }
    }

    fn compacted(watch_id: i64) -> WatchResponse {
        WatchResponse {
            watch_id,
            canceled: true,
            compact_revision: 50,
            ..Default::default()
        }
    }

    fn keys(kvs: &[KeyValue]) -> Vec<&[u8]> {
        kvs.iter().map(|kv| kv.key.as_slice()).collect()
    }

    fn expect_range(action: Action) -> RangeRequest {
        match action {
            Action::SendRange(req) => req,
            other => panic!("expected a Range, got {other:?}"),
        }
    }

    fn expect_watch(action: Action) -> WatchCreateRequest {
        match action {
            Action::OpenWatch(req) => req,
            other => panic!("expected a watch, got {other:?}"),
        }
    }

    /// A watcher that has read `/bg/` at revision 10 and holds a live watch from 11.
    fn live_at(now: i64) -> PrefixWatch {
        let mut w = PrefixWatch::new(b"/bg/");
        expect_range(w.next_action(now));
        w.range_response(now, page(10, vec![kv("/bg/a", 3)], false))
            .unwrap();
        expect_watch(w.next_action(now));
        w.watch_response(now, created(1)).unwrap();
        w
    }

    #[test]
    fn a_page_too_large_is_asked_for_again_at_once_with_half_the_keys() {
        let mut w = PrefixWatch::new(b"/bg/");
        expect_range(w.next_action(0));
        w.range_response(0, page(10, vec![kv("/bg/a", 3)], true))
            .unwrap();
        let second = expect_range(w.next_action(0));
        assert!(w.range_too_large(), "a smaller page can be asked for");
        let again = expect_range(w.next_action(0));
        assert_eq!(
            (again.key.clone(), again.revision),
            (second.key, 10),
            "the same page, same revision"
        );
        assert_eq!(again.limit, PAGE_LIMIT / 2);
        let mut last = again;
        while w.range_too_large() {
            last = expect_range(w.next_action(0));
        }
        assert_eq!(last.limit, 1);
        assert!(
            !w.range_too_large(),
            "one key too large: nothing smaller to ask for"
        );
        assert!(w.range_failed(0), "the read fails (an outage) instead");
        assert!(!w.range_too_large(), "nothing in flight");
        // The watch asks etcd to split revisions larger than its request limit.
        let w = live_at(0);
        assert!(!stale(&w, 0, 30));
        let mut fresh = PrefixWatch::new(b"/bg/");
        expect_range(fresh.next_action(0));
        fresh
            .range_response(0, page(10, Vec::new(), false))
            .unwrap();
        assert!(expect_watch(fresh.next_action(0)).fragment);
    }

    #[test]
    fn full_life_read_watch_compact_reread_break_resume() {
        let mut w = PrefixWatch::new(b"/bg/");
        assert!(stale(&w, 0, 30), "nothing read yet");
        let first = expect_range(w.next_action(0));
        assert_eq!(first.key, b"/bg/");
        assert_eq!(first.range_end, b"/bg0");
        assert_eq!((first.revision, first.limit), (0, PAGE_LIMIT));
        assert_eq!(w.next_action(0), Action::Nothing, "one page at a time");

        // Two pages: the first fixes the revision, the second starts after its last key.
        let changes = w
            .range_response(0, page(10, vec![kv("/bg/a", 3), kv("/bg/b", 4)], true))
            .unwrap();
        assert_eq!(changes.page, Some(Page { first: true }));
        assert!(!changes.reset, "not whole yet: collected apart");
        assert_eq!(keys(&changes.puts), vec![&b"/bg/a"[..], b"/bg/b"]);
        let second = expect_range(w.next_action(1));
        assert_eq!(second.key, b"/bg/b\0");
        assert_eq!(second.revision, 10);
        let changes = w
            .range_response(1, page(12, vec![kv("/bg/c", 9)], false))
            .unwrap();
        assert!(changes.reset && changes.deletes.is_empty());
        assert_eq!(changes.page, Some(Page { first: false }));
        assert_eq!(keys(&changes.puts), vec![&b"/bg/c"[..]]);
        assert_eq!(w.revision(), Some(10), "the revision of the first page");

        // Watch from the next revision; events come as puts and deletes, last one per key.
        let watch = expect_watch(w.next_action(1));
        assert_eq!(
            (watch.key.as_slice(), watch.start_revision),
            (&b"/bg/"[..], 11)
        );
        assert_eq!(watch.range_end, b"/bg0");
        assert_eq!(w.next_action(1), Action::Nothing);
        assert!(w.watch_response(2, created(7)).unwrap().is_empty());
        let changes = w
            .watch_response(
                3,
                events(
                    7,
                    vec![
                        (EventType::Put, kv("/bg/d", 13)),
                        (EventType::Delete, kv("/bg/a", 14)),
                        (EventType::Put, kv("/bg/e", 15)),
                        (EventType::Delete, kv("/bg/e", 16)),
                    ],
                ),
            )
            .unwrap();
        assert!(!changes.reset);
        assert_eq!(keys(&changes.puts), vec![&b"/bg/d"[..]]);
        assert_eq!(changes.puts[0].mod_revision, 13);
        assert_eq!(changes.deletes, vec![b"/bg/a".to_vec(), b"/bg/e".to_vec()]);
        assert_eq!(w.revision(), Some(16));

        // Compaction: the stream is closed and the prefix read again from scratch.
        assert!(w.watch_response(4, compacted(7)).unwrap().is_empty());
        assert_eq!(w.revision(), None);
        assert_eq!(w.next_action(4), Action::CloseWatch);
        assert!(!w.watch_closed(4), "closing it is not a failure");
        let reread = expect_range(w.next_action(4));
        assert_eq!((reread.key.as_slice(), reread.revision), (&b"/bg/"[..], 0));
        let changes = w
            .range_response(5, page(60, vec![kv("/bg/d", 13)], false))
            .unwrap();
        assert!(changes.reset);
        assert_eq!(expect_watch(w.next_action(5)).start_revision, 61);
        w.watch_response(100, created(8)).unwrap();
        w.watch_response(101, events(8, vec![(EventType::Put, kv("/bg/f", 62))]))
            .unwrap();

        // A broken stream: back off 1 s, then watch again from the last revision + 1.
        assert!(w.watch_closed(110), "an outage starts");
        assert_eq!(w.state(), &State::Backoff { until: 111 });
        assert_eq!(w.next_action(110), Action::Nothing);
        assert_eq!(expect_watch(w.next_action(111)).start_revision, 63);
        assert!(!w.watch_closed(111), "the same outage");
        assert_eq!(w.next_action(112), Action::Nothing, "2 s this time");
        assert_eq!(expect_watch(w.next_action(113)).start_revision, 63);
        let changes = w.watch_response(113, created(9)).unwrap();
        assert_eq!(changes.recovered, Some(2));
        // Live for a healthy minute: the next break waits 1 s again.
        assert!(w.watch_closed(173));
        assert_eq!(w.state(), &State::Backoff { until: 174 });
    }

    #[test]
    fn backoff_doubles_to_the_cap() {
        let mut w = PrefixWatch::new(b"/bg/");
        let mut now = 0;
        let mut failed_at = None;
        let mut waits = Vec::new();
        for _ in 0..8 {
            while w.next_action(now) == Action::Nothing {
                now += 1;
            }
            waits.extend(failed_at.map(|at| now - at));
            w.range_failed(now);
            failed_at = Some(now);
        }
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn a_broken_read_starts_over_and_a_broken_watch_resumes() {
        let mut w = PrefixWatch::new(b"/bg/");
        expect_range(w.next_action(0));
        w.range_response(0, page(10, vec![kv("/bg/a", 3)], true))
            .unwrap();
        expect_range(w.next_action(0));
        assert!(w.range_failed(0));
        assert!(!w.range_failed(0), "no read in flight any more");
        let again = expect_range(w.next_action(1));
        assert_eq!((again.key.as_slice(), again.revision), (&b"/bg/"[..], 0));

        // A cancel that is not a compaction reads again, after a backoff.
        let mut w = live_at(0);
        let canceled = WatchResponse {
            watch_id: 1,
            canceled: true,
            cancel_reason: "etcdserver: no leader".into(),
            ..Default::default()
        };
        let refused = w.watch_response(5, canceled).unwrap_err();
        assert!(refused.starts_outage);
        assert_eq!(w.next_action(5), Action::CloseWatch);
        assert_eq!(w.next_action(5), Action::Nothing);
        expect_range(w.next_action(6));
    }

    #[test]
    fn staleness_follows_reads_and_live_watches() {
        let mut w = PrefixWatch::new(b"/bg/");
        expect_range(w.next_action(10));
        assert!(stale(&w, 10, 30));
        w.range_response(10, page(10, vec![], false)).unwrap();
        assert!(!stale(&w, 40, 30));
        assert!(stale(&w, 41, 30), "read 31 s ago, no watch live");
        expect_watch(w.next_action(41));
        w.watch_response(41, created(1)).unwrap();
        assert!(!stale(&w, 71, 30), "in sync as of the watch's creation");
        assert!(
            stale(&w, 72, 30),
            "nothing heard since: not taken on its word"
        );
        // A quiet watch is asked for progress; its answer keeps it fresh.
        assert_eq!(w.next_action(51), Action::RequestProgress);
        assert_eq!(w.next_action(52), Action::Nothing, "one request at a time");
        let progress = WatchResponse {
            watch_id: PROGRESS_WATCH_ID,
            header: Some(ResponseHeader {
                revision: 10,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(w.watch_response(55, progress).unwrap().is_empty());
        assert!(!stale(&w, 85, 30));
        assert_eq!(w.check_alive(64), None, "answered");
        // Unanswered: the stream is dead (a frozen member, a black-holed link).
        assert_eq!(w.next_action(65), Action::RequestProgress);
        assert_eq!(w.check_alive(74), None);
        let dead = w.check_alive(75).expect("no answer within the quiet time");
        assert!(dead.starts_outage);
        assert_eq!(w.next_action(75), Action::CloseWatch);
        assert!(!stale(&w, 85, 30), "in sync until it was last heard (55)");
        assert!(stale(&w, 86, 30));
        // A watch opened but never created does not count as live.
        expect_watch(w.next_action(1031));
        assert!(stale(&w, 1031, 30));
        assert!(stale(&w, 1031, -5), "a negative limit is zero");
    }

    #[test]
    fn hostile_answers_neither_panic_nor_corrupt() {
        let mut w = PrefixWatch::new(b"/bg/");
        // Answers nobody asked for are ignored.
        assert!(w
            .range_response(0, page(5, vec![kv("/bg/x", 1)], false))
            .unwrap()
            .is_empty());
        assert!(w.watch_response(0, created(1)).unwrap().is_empty());
        assert!(!w.watch_closed(0) && !w.range_failed(0));
        assert_eq!(w.state(), &State::Idle);

        // No revision, a negative one, no header.
        for bad in [page(0, vec![], false), page(-3, vec![], false), {
            let mut p = page(1, vec![], false);
            p.header = None;
            p
        }] {
            let mut w = PrefixWatch::new(b"/bg/");
            expect_range(w.next_action(0));
            assert!(w.range_response(0, bad).is_err());
            assert!(matches!(w.state(), State::Backoff { .. }));
        }
        // Keys out of order, outside the prefix, or `more` with no keys.
        for bad in [
            page(5, vec![kv("/bg/b", 1), kv("/bg/a", 1)], false),
            page(5, vec![kv("/other", 1)], false),
            page(5, vec![], true),
        ] {
            let mut w = PrefixWatch::new(b"/bg/");
            expect_range(w.next_action(0));
            assert!(w.range_response(0, bad).is_err());
        }
        // A read that would not end is refused once it holds too many keys.
        let mut w = PrefixWatch::new(b"/bg/");
        w.max_read_keys = 25;
        let mut n = 0;
        let refused = loop {
            expect_range(w.next_action(0));
            let kvs: Vec<KeyValue> = (n..n + 10).map(|i| kv(&format!("/bg/{i:04}"), 1)).collect();
            n += 10;
            match w.range_response(0, page(5, kvs, true)) {
                Ok(changes) => assert!(!changes.reset && changes.page.is_some()),
                Err(refused) => break refused,
            }
        };
        assert_eq!(n, 30, "the page that goes over is refused");
        assert!(refused.starts_outage);
        assert_eq!(w.state(), &State::Backoff { until: 1 });
        // A later page may not go back before the key it was asked from.
        let mut w = PrefixWatch::new(b"/bg/");
        expect_range(w.next_action(0));
        w.range_response(0, page(5, vec![kv("/bg/m", 1)], true))
            .unwrap();
        expect_range(w.next_action(0));
        assert!(w
            .range_response(0, page(5, vec![kv("/bg/a", 1)], false))
            .is_err());

        // A watch answer before `created` breaks the stream; the watch resumes, nothing lost.
        let mut w = PrefixWatch::new(b"/bg/");
        expect_range(w.next_action(0));
        w.range_response(0, page(10, vec![], false)).unwrap();
        expect_watch(w.next_action(0));
        assert!(w
            .watch_response(0, events(0, vec![(EventType::Put, kv("/bg/a", 11))]))
            .is_err());
        assert_eq!(w.next_action(0), Action::CloseWatch);
        assert_eq!(expect_watch(w.next_action(1)).start_revision, 11);

        // Events before the watch's start, with negative revisions, outside the prefix, of
        // an unknown type or without a kv are dropped.
        let mut w = live_at(0);
        let mut odd = events(
            1,
            vec![
                (EventType::Put, kv("/bg/old", 5)),
                (EventType::Put, kv("/bg/neg", -1)),
                (EventType::Put, kv("/elsewhere", 12)),
                (EventType::Put, kv("/bg/ok", 12)),
            ],
        );
        odd.events.push(Event {
            r#type: 7,
            kv: Some(kv("/bg/odd", 13)),
            prev_kv: None,
        });
        odd.events.push(Event {
            r#type: 0,
            kv: None,
            prev_kv: None,
        });
        let changes = w.watch_response(1, odd).unwrap();
        assert_eq!(keys(&changes.puts), vec![&b"/bg/ok"[..]]);
        assert!(changes.deletes.is_empty());
        // A duplicate `created` changes nothing; a range answer while watching is ignored.
        assert!(w.watch_response(1, created(3)).unwrap().is_empty());
        assert!(w
            .range_response(1, page(99, vec![], false))
            .unwrap()
            .is_empty());
        assert_eq!(
            w.revision(),
            Some(13),
            "the unknown event's revision still counts"
        );
        // Events for another watch id break the stream (never dropped in silence); the watch
        // resumes after the last revision seen, and gets them under its own id.
        let other = events(2, vec![(EventType::Delete, kv("/bg/ok", 14))]);
        assert!(w.watch_response(1, other).is_err());
        assert_eq!(w.next_action(1), Action::CloseWatch);
        assert_eq!(expect_watch(w.next_action(3)).start_revision, 14);
        // Extreme revisions saturate instead of overflowing.
        let mut w = PrefixWatch::new(b"/bg/");
        expect_range(w.next_action(i64::MAX));
        w.range_response(i64::MAX, page(i64::MAX, vec![], false))
            .unwrap();
        assert_eq!(
            expect_watch(w.next_action(i64::MAX)).start_revision,
            i64::MAX
        );
        assert!(w.watch_closed(i64::MAX));
        assert!(!stale(&w, i64::MAX, 0));
        assert!(
            !stale(&w, i64::MIN, 0),
            "a clock going back is not staleness"
        );
    }
}
