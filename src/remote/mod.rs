//! One remote source (a provider's JWKS, the revocation list, a status list) as one worker
//! drives it, sans I/O: whether a fetch is wanted, the call in flight, when a failed fetch may
//! be retried, and the outage episode its log lines belong to. The shell asks it what to do
//! and tells it what happened; what a fetch lease means is decided in `lease`, while reading
//! and writing it, dispatching and shared data stay in the shell (`filter::remote_io`).

use crate::observe::episode::Episode;

pub mod lease;
pub mod waiters;
pub mod watch;

/// After a failed fetch (not sent, an error status, a body that is no use), the next attempt
/// waits this long: every source has the same rhythm during an outage.
pub const RETRY_AFTER_FAILURE_SECONDS: i64 = 5;

/// What one worker knows of one source's fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    /// A request needs a fetch (nothing held yet, an unknown `kid`, a list never fetched).
    wanted: bool,
    in_flight: Option<u32>,
    /// No new attempt before this (after a failure).
    retry_at: i64,
    episode: Episode,
    /// Retry delay after a failure (at most `RETRY_AFTER_FAILURE_SECONDS`).
    retry_after: i64,
}

impl Default for Fetch {
    fn default() -> Self {
        Fetch::new()
    }
}

impl Fetch {
    /// A source retried after `retry_after` seconds (capped at the common delay).
    pub fn retrying_after(retry_after: i64) -> Self {
        Fetch {
            wanted: false,
            in_flight: None,
            retry_at: 0,
            episode: Episode::default(),
            retry_after: retry_after.clamp(0, RETRY_AFTER_FAILURE_SECONDS),
        }
    }

    pub fn new() -> Self {
        Fetch::retrying_after(RETRY_AFTER_FAILURE_SECONDS)
    }

    /// A request needs this source fetched.
    pub fn want(&mut self) {
        self.wanted = true;
    }

    pub fn wanted(&self) -> bool {
        self.wanted
    }

    /// Nothing to fetch after all (the source is not configured any more, say).
    pub fn satisfied(&mut self) {
        self.wanted = false;
    }

    /// Another worker's fetch arrived and was adopted: what this worker wanted has come, and
    /// an outage it logged is over too (`Some(n)`: log "recovered after n"), so every "failed"
    /// line has its "recovered" line whichever worker's fetch worked first.
    pub fn adopted(&mut self) -> Option<u64> {
        self.wanted = false;
        self.episode.recovered()
    }

    /// Whether to start a fetch now (the shell then takes the process-wide lease): wanted or
    /// `due`, none in flight, and not while a failed one's retry is ahead.
    pub fn should_start(&self, due: bool, now: i64) -> bool {
        (self.wanted || due) && self.in_flight.is_none() && now >= self.retry_at
    }

    /// The call was dispatched.
    pub fn started(&mut self, call: u32) {
        self.in_flight = Some(call);
        self.wanted = false;
    }

    /// Whether a call of this source's fetch is in flight (the fetch lease is this worker's).
    pub fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Whether this call is this source's fetch.
    pub fn is_call(&self, call: u32) -> bool {
        self.in_flight == Some(call)
    }

    /// The fetch worked: `Some(n)` when it ends an outage of `n` failed attempts (log
    /// "recovered after n").
    pub fn succeeded(&mut self) -> Option<u64> {
        self.in_flight = None;
        self.episode.recovered()
    }

    /// The fetch failed, or could not even be dispatched (an unknown cluster, say): the next
    /// attempt waits for the retry delay. `true` when this starts an outage (log it once,
    /// until it works again).
    pub fn failed(&mut self, now: i64) -> bool {
        self.in_flight = None;
        self.retry_at = now.saturating_add(self.retry_after);
        self.episode.failed()
    }

    /// Whether a request waiting for this source may still get it: a fetch is in flight, or
    /// one may start at the next tick (not while a failed fetch's retry is still ahead).
    pub fn coming(&self, now: i64) -> bool {
        self.in_flight.is_some() || now >= self.retry_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wanted_or_due_starts_one_fetch_at_a_time() {
        let mut fetch = Fetch::new();
        assert!(!fetch.should_start(false, 0));
        assert!(fetch.should_start(true, 0));
        fetch.want();
        assert!(fetch.should_start(false, 0));
        assert!(!fetch.in_flight());
        fetch.started(7);
        assert!(fetch.in_flight());
        assert!(!fetch.wanted() && !fetch.should_start(true, 0));
        assert!(fetch.is_call(7) && !fetch.is_call(8));
        assert!(fetch.coming(0));
        assert_eq!(fetch.succeeded(), None);
        assert!(!fetch.is_call(7));
    }

    #[test]
    fn failures_back_off_and_are_logged_once_per_outage() {
        let mut fetch = Fetch::new();
        fetch.started(1);
        assert!(fetch.failed(100));
        assert!(!fetch.should_start(true, 104), "retry is 5 s away");
        assert!(
            !fetch.coming(104),
            "a waiting request is answered now, not at its deadline"
        );
        assert!(fetch.should_start(true, 105));
        assert!(!fetch.failed(105), "one line per outage");
        fetch.started(2);
        assert_eq!(fetch.succeeded(), Some(2));
        fetch.started(3);
        assert!(fetch.failed(200), "the next outage is logged again");
    }

    #[test]
    fn an_adopted_fetch_ends_this_workers_outage_too() {
        let mut fetch = Fetch::new();
        fetch.want();
        fetch.started(1);
        assert!(fetch.failed(10));
        assert!(!fetch.failed(16));
        fetch.want();
        assert_eq!(fetch.adopted(), Some(2));
        assert!(!fetch.wanted());
        assert_eq!(fetch.adopted(), None);
        assert!(fetch.failed(30), "a new outage");
    }

    #[test]
    fn a_source_may_retry_sooner_but_never_later() {
        let mut fetch = Fetch::retrying_after(2);
        assert!(fetch.failed(10));
        assert!(fetch.should_start(true, 12));
        let mut fetch = Fetch::retrying_after(60);
        fetch.failed(10);
        assert!(fetch.should_start(true, 15));
    }
}
