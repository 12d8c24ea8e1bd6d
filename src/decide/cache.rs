//! Verified-token cache, per worker VM: a token whose signature verified once for a provider
//! need not be verified again. Only the signature work is skipped; every check that depends
//! on the request or the time runs on each hit.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use crate::idp::status_list::{StatusListError, StatusReference};
use crate::token::verify::TrustedClaims;

use crate::token::id::TokenDigest;

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
}

/// A token's Token Status List reference: none, one, or a malformed claim.
pub type StatusClaim = Result<Option<StatusReference>, StatusListError>;

/// Bounded by entry count; when full, the oldest insertion is evicted first (FIFO), which is
/// O(1) and needs no bookkeeping on hits.
#[derive(Debug)]
pub struct TokenCache {
    capacity: usize,
    /// Shared with the decision that hit it: a hit copies no claims.
    entries: HashMap<TokenDigest, Rc<CachedToken>>,
    order: VecDeque<TokenDigest>,
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

    pub fn get(&self, digest: &TokenDigest) -> Option<Rc<CachedToken>> {
        self.entries.get(digest).cloned()
    }

    pub fn insert(&mut self, digest: TokenDigest, token: CachedToken) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.insert(digest, Rc::new(token)).is_some() {
            return;
        }
        self.order.push_back(digest);
        while self.entries.len() > self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
    }

    /// Drops a token that can no longer be valid (e.g. it expired).
    pub fn remove(&mut self, digest: &TokenDigest) {
        if self.entries.remove(digest).is_some() {
            self.order.retain(|d| d != digest);
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
        }
    }

    #[test]
    fn bounded_with_oldest_evicted_first() {
        let mut cache = TokenCache::new(2);
        cache.insert([1; 32], entry(1));
        cache.insert([2; 32], entry(2));
        cache.insert([3; 32], entry(3));
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&[1; 32]).is_none());
        assert_eq!(cache.get(&[3; 32]).as_deref(), Some(&entry(3)));
    }

    #[test]
    fn reinserting_does_not_grow_the_order() {
        let mut cache = TokenCache::new(2);
        for _ in 0..10 {
            cache.insert([1; 32], entry(1));
        }
        cache.insert([2; 32], entry(2));
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&[1; 32]).is_some());
    }

    #[test]
    fn zero_capacity_disables() {
        let mut cache = TokenCache::new(0);
        cache.insert([1; 32], entry(1));
        assert!(cache.is_empty());
    }

    #[test]
    fn remove_and_clear() {
        let mut cache = TokenCache::new(4);
        cache.insert([1; 32], entry(1));
        cache.insert([2; 32], entry(2));
        cache.remove(&[1; 32]);
        assert!(cache.get(&[1; 32]).is_none());
        cache.insert([3; 32], entry(3));
        cache.insert([4; 32], entry(4));
        cache.insert([5; 32], entry(5));
        assert_eq!(cache.len(), 4);
        cache.clear();
        assert!(cache.is_empty());
    }
}
