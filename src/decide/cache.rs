//! Verified-token cache, per worker VM: a token whose signature verified once for a provider
//! need not be verified again. Only the signature work is skipped; every check that depends
//! on the request or the time runs on each hit.
//!
//! Keyed by the token itself: a hit is the very bytes that verified, found with the map's
//! keyed SipHash and a byte comparison. A SHA-256 of the token as the key cost more than all
//! the rest of a hit (31,700 of a hit's 36,100 instructions for a 563-byte RS256 token, `make
//! cost`); an entry now holds the token's bytes instead (its length, about 0.6-1.2 KB).

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use crate::idp::status_list::{StatusListError, StatusReference};
use crate::token::id::Digests;
use crate::token::verify::TrustedClaims;

/// What a hit needs to decide again without the signature check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedToken {
    /// Index into `Config::providers` of the provider whose keys verified it.
    pub provider: usize,
    /// Only a verified token's claims can be cached (`Verified::to_trusted`).
    pub trusted: TrustedClaims,
    /// Payload and claim headers for upstream, derived once from the verified payload.
    pub upstream_headers: Vec<(String, String)>,
    /// The `status.status_list` claim (read only when status lists are configured).
    pub status: StatusClaim,
    /// The token's hashes, once a request through this entry needed them (revocation, misuse
    /// detection, a log line): later hits hash nothing.
    pub digests: Cell<Option<Digests>>,
}

/// A token's Token Status List reference: none, one, or a malformed claim.
pub type StatusClaim = Result<Option<StatusReference>, StatusListError>;

/// Bounded by entry count; when full, the oldest insertion is evicted first (FIFO), which is
/// O(1) and needs no bookkeeping on hits.
#[derive(Debug)]
pub struct TokenCache {
    capacity: usize,
    /// Shared with the decision that hit it: a hit copies no claims. The token is shared with
    /// `order`.
    entries: HashMap<Rc<str>, Rc<CachedToken>>,
    order: VecDeque<Rc<str>>,
}

impl TokenCache {
    /// `capacity` 0 disables the cache.
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            capacity,
            entries: HashMap::with_capacity(capacity.min(4096)),
            order: VecDeque::with_capacity(capacity.min(4096)),
        }
    }

    pub fn get(&self, token: &str) -> Option<Rc<CachedToken>> {
        self.entries.get(token).cloned()
    }

    /// The entry as cached (`None`: the cache is disabled).
    pub fn insert(&mut self, token: &str, entry: CachedToken) -> Option<Rc<CachedToken>> {
        if self.capacity == 0 {
            return None;
        }
        let entry = Rc::new(entry);
        if let Some(slot) = self.entries.get_mut(token) {
            *slot = entry.clone();
            return Some(entry);
        }
        let token: Rc<str> = Rc::from(token);
        self.entries.insert(token.clone(), entry.clone());
        self.order.push_back(token);
        while self.entries.len() > self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
        Some(entry)
    }

    /// Drops a token that can no longer be valid (e.g. it expired).
    pub fn remove(&mut self, token: &str) {
        if self.entries.remove(token).is_some() {
            self.order.retain(|t| &**t != token);
        }
    }

    /// For when the keys change: every entry was verified with keys that may be gone.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(provider: usize) -> CachedToken {
        CachedToken {
            provider,
            trusted: TrustedClaims::default(),
            upstream_headers: Vec::new(),
            status: Ok(None),
            digests: Cell::new(None),
        }
    }

    #[test]
    fn bounded_with_oldest_evicted_first() {
        let mut cache = TokenCache::new(2);
        cache.insert("t1", entry(1));
        cache.insert("t2", entry(2));
        cache.insert("t3", entry(3));
        assert_eq!(cache.len(), 2);
        assert!(cache.get("t1").is_none());
        assert_eq!(cache.get("t3").as_deref(), Some(&entry(3)));
    }

    #[test]
    fn reinserting_does_not_grow_the_order() {
        let mut cache = TokenCache::new(2);
        for _ in 0..10 {
            cache.insert("t1", entry(1));
        }
        cache.insert("t2", entry(2));
        assert_eq!(cache.len(), 2);
        assert!(cache.get("t1").is_some());
    }

    #[test]
    fn zero_capacity_disables() {
        let mut cache = TokenCache::new(0);
        cache.insert("t1", entry(1));
        assert!(cache.is_empty());
    }

    #[test]
    fn remove_and_clear() {
        let mut cache = TokenCache::new(4);
        cache.insert("t1", entry(1));
        cache.insert("t2", entry(2));
        cache.remove("t1");
        assert!(cache.get("t1").is_none());
        cache.insert("t3", entry(3));
        cache.insert("t4", entry(4));
        cache.insert("t5", entry(5));
        assert_eq!(cache.len(), 4);
        cache.clear();
        assert!(cache.is_empty());
    }

    /// Only the very bytes that verified hit: a prefix, an extension or one changed character
    /// (a signature twin spelt differently) of a cached token is a miss.
    #[test]
    fn only_the_same_bytes_hit() {
        let mut cache = TokenCache::new(4);
        cache.insert("aGVhZA.cGF5bG9hZA.c2ln", entry(1));
        for other in [
            "aGVhZA.cGF5bG9hZA.c2l",
            "aGVhZA.cGF5bG9hZA.c2lnA",
            "aGVhZA.cGF5bG9hZA.c2lo",
        ] {
            assert!(cache.get(other).is_none(), "{other}");
        }
        assert!(cache.get("aGVhZA.cGF5bG9hZA.c2ln").is_some());
    }
}
