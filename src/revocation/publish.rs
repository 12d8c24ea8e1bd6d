//! The outgoing queues of revocations learned from response headers: entries POSTed to the
//! list service (so every other proxy sees them at its next poll), and tokens sent to the
//! identity provider's RFC 7009 endpoint. Bounded, batched, retried with backoff.

use crate::observe::episode::Episode;
use std::collections::VecDeque;

/// List entries per POST.
pub const BATCH_SIZE: usize = 100;
const MAX_BACKOFF_SECONDS: i64 = 30;
/// The list service answers a publish POST with `{"version": "..."}`: a body larger than this
/// is not its answer (and is not read further).
pub const MAX_PUBLISH_RESPONSE_BYTES: usize = 64 * 1024;

/// Whether the list service took a publish POST (`body_size` as the host reported it, `body`
/// what was read of it): a 2xx whose body is empty or JSON. A 2xx with anything else (an HTML
/// page from a proxy or captive portal, garbage, megabytes) did not come from the list service,
/// so the entries are not known to be stored: a failed attempt, retried like a 5xx. `Err` says
/// why, for the log.
pub fn publish_accepted(status: Option<&str>, body_size: usize, body: &[u8]) -> Result<(), String> {
    let status = status.ok_or("no response (timeout or connection failure)")?;
    if !status.starts_with('2') {
        return Err(format!("HTTP status {status}"));
    }
    if body_size > MAX_PUBLISH_RESPONSE_BYTES || body.len() > MAX_PUBLISH_RESPONSE_BYTES {
        return Err(format!(
            "HTTP status {status} with a body of {} bytes, not an answer of the list service",
            body_size.max(body.len())
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(body)
        .map(|_| ())
        .map_err(|_| format!("HTTP status {status} with a body that is not JSON"))
}

#[derive(Debug)]
pub struct PublishQueue<T> {
    entries: VecDeque<T>,
    batch_size: usize,
    capacity: usize,
    max_attempts: u32,
    /// Failed attempts of the batch at the head of the queue.
    attempts: u32,
    next_at: i64,
    /// Entries in the POST on the wire.
    in_flight: Option<usize>,
    /// Failed attempts since the last success, for logging an outage once.
    episode: Episode,
}

/// What a finished POST did to the queue, for counters and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settled {
    pub published: usize,
    pub failed_attempt: bool,
    /// This failure starts an outage (log it; later ones in the same outage are not).
    pub starts_episode: bool,
    /// This success ends an outage of that many failed attempts.
    pub recovered_after: Option<u64>,
    /// Given up after `max_attempts`.
    pub dropped: usize,
}

impl<T: Clone> PublishQueue<T> {
    pub fn new(batch_size: usize, capacity: usize, max_attempts: u32) -> Self {
        PublishQueue {
            entries: VecDeque::new(),
            batch_size: batch_size.max(1),
            capacity: capacity.max(1),
            max_attempts: max_attempts.max(1),
            attempts: 0,
            next_at: 0,
            in_flight: None,
            episode: Episode::default(),
        }
    }

    /// Returns how many of the oldest entries were dropped to make room.
    pub fn push(&mut self, entries: impl IntoIterator<Item = T>) -> usize {
        let mut dropped = 0;
        for entry in entries {
            if self.entries.len() >= self.capacity {
                // Never the batch on the wire: its result would settle the wrong entries.
                let keep = self.in_flight.unwrap_or(0);
                if self.entries.len() > keep {
                    self.entries.remove(keep);
                    dropped += 1;
                } else {
                    dropped += 1;
                    continue;
                }
            }
            self.entries.push_back(entry);
        }
        dropped
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `next_batch` would hand out a batch now.
    pub fn is_due(&self, now: i64) -> bool {
        self.in_flight.is_none() && !self.entries.is_empty() && now >= self.next_at
    }

    /// The next batch to send, if one is due; the caller must report its result with `settle`.
    pub fn next_batch(&mut self, now: i64) -> Option<Vec<T>> {
        if !self.is_due(now) {
            return None;
        }
        let n = self.entries.len().min(self.batch_size);
        self.in_flight = Some(n);
        Some(self.entries.iter().take(n).cloned().collect())
    }

    /// The dispatch itself failed: nothing is on the wire.
    pub fn not_sent(&mut self, now: i64) -> Settled {
        self.settle(false, now)
    }

    pub fn settle(&mut self, ok: bool, now: i64) -> Settled {
        let Some(n) = self.in_flight.take() else {
            return Settled::default();
        };
        if ok {
            self.entries.drain(..n.min(self.entries.len()));
            self.attempts = 0;
            self.next_at = now;
            return Settled {
                published: n,
                recovered_after: self.episode.recovered(),
                ..Settled::default()
            };
        }
        let starts_episode = self.episode.failed();
        self.attempts += 1;
        if self.attempts >= self.max_attempts {
            self.entries.drain(..n.min(self.entries.len()));
            self.attempts = 0;
            self.next_at = now;
            return Settled {
                failed_attempt: true,
                starts_episode,
                dropped: n,
                ..Settled::default()
            };
        }
        // 1, 2, 4, ... 30 s.
        let backoff = 1i64 << self.attempts.saturating_sub(1).min(5);
        self.next_at = now + backoff.min(MAX_BACKOFF_SECONDS);
        Settled {
            failed_attempt: true,
            starts_episode,
            ..Settled::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::doc::{render, PublishEntry};

    #[test]
    fn a_publish_is_delivered_only_on_a_2xx_with_an_answer_of_the_list_service() {
        let ok = |status: Option<&str>, body: &[u8]| publish_accepted(status, body.len(), body);
        assert_eq!(ok(Some("200"), br#"{"version": "3f2a9c01-18"}"#), Ok(()));
        assert_eq!(ok(Some("204"), b""), Ok(()));
        assert_eq!(ok(Some("200"), b"\r\n"), Ok(()));
        // What tests/faults.rs stages: none of these stored the entries.
        let failed = [
            (None, &b""[..], "no response"),
            (Some("500"), b"down", "HTTP status 500"),
            (Some("400"), br#"{"error": "bad"}"#, "HTTP status 400"),
            (Some("200"), b"\x00\xff{{not json", "not JSON"),
            (
                Some("200"),
                b"<html><body>Please log in to the network</body></html>",
                "not JSON",
            ),
        ];
        for (status, body, why) in failed {
            let err = ok(status, body).unwrap_err();
            assert!(err.contains(why), "{status:?} {body:?}: {err}");
        }
        // 10 MB announced, only the first 64 KiB + 1 read: refused on its size, not parsed.
        let read = vec![b'['; MAX_PUBLISH_RESPONSE_BYTES + 1];
        let err = publish_accepted(Some("200"), 10 * 1024 * 1024, &read).unwrap_err();
        assert!(err.contains("10485760 bytes"), "{err}");
    }

    fn jti(i: usize) -> PublishEntry {
        PublishEntry::Jti {
            provider: None,
            jti: format!("j{i}"),
            exp: None,
        }
    }

    #[test]
    fn an_outage_is_reported_once_and_its_end_with_its_length() {
        let mut q = PublishQueue::new(100, 1000, 20);
        q.push((0..3).map(jti));
        let mut now = 0;
        let mut starts = 0;
        for _ in 0..4 {
            now += 60;
            assert!(q.next_batch(now).is_some());
            let settled = q.settle(false, now);
            starts += usize::from(settled.starts_episode);
            assert_eq!(settled.recovered_after, None);
        }
        assert_eq!(starts, 1);
        now += 60;
        assert!(q.next_batch(now).is_some());
        assert_eq!(q.settle(true, now).recovered_after, Some(4));
        q.push((3..4).map(jti));
        now += 60;
        assert!(q.next_batch(now).is_some());
        assert_eq!(q.settle(true, now).recovered_after, None);
    }

    #[test]
    fn batches_retries_with_backoff_then_gives_up() {
        let mut q = PublishQueue::new(BATCH_SIZE, 1000, 3);
        q.push((0..150).map(jti));
        let body = render(&q.next_batch(10).unwrap());
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(doc["jti"].as_array().unwrap().len(), 100);
        assert!(q.next_batch(10).is_none(), "one POST at a time");
        assert_eq!(q.settle(true, 10).published, 100);
        assert!(render(&q.next_batch(10).unwrap()).contains("j149"));
        assert!(q.settle(false, 10).failed_attempt);
        assert!(q.next_batch(10).is_none(), "backing off");
        assert!(q.next_batch(11).is_some());
        q.settle(false, 11);
        assert!(q.next_batch(12).is_none());
        assert!(q.next_batch(13).is_some());
        let settled = q.settle(false, 13);
        assert_eq!(settled.dropped, 50);
        assert!(q.is_empty());
    }

    #[test]
    fn bounded_dropping_the_oldest_but_not_what_is_on_the_wire() {
        let mut q = PublishQueue::new(BATCH_SIZE, 3, 5);
        assert_eq!(q.push((0..3).map(jti)), 0);
        let body = render(&q.next_batch(0).unwrap());
        assert!(body.contains("j0") && body.contains("j2"));
        assert_eq!(q.push([jti(3)]), 1);
        assert_eq!(q.len(), 3);
        q.settle(true, 0);
        assert!(q.is_empty(), "the batch on the wire was what remained");
        let mut q = PublishQueue::new(BATCH_SIZE, 2, 5);
        q.push((0..2).map(jti));
        assert!(q.next_batch(0).is_some());
        q.settle(true, 0);
        q.push((2..5).map(jti));
        assert!(render(&q.next_batch(0).unwrap()).contains("j4"));
        assert_eq!(q.not_sent(0).published, 0);
    }
}
