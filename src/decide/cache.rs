//! Verified-token cache, per worker VM: a token whose signature verified once for a provider
//! need not be verified again. Only the signature work is skipped; every check that depends
//! on the request or the time runs on each hit.
//!
//! Keyed by the token itself: a hit is the very bytes that verified, found with a seeded hash
//! and a byte comparison. A SHA-256 of the token as the key cost more than all the rest of a
//! hit (31,700 of a hit's 36,100 instructions for a 563-byte RS256 token, `make cost`); an
//! entry now holds the token's bytes instead (its length, about 0.6-1.2 KB).
//!
//! The byte comparison is a word at a time (`same_bytes`): `str`'s `==` calls wasi-libc's
//! `memcmp`, a byte loop, which took 0.26-0.53 us of a hit's 1.8-2.8 us in V8 in the profiles
//! of `make wasm-cost`.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash, Hasher};
use std::rc::Rc;

use hashbrown::{Equivalent, HashMap};

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
    entries: HashMap<Key, Rc<CachedToken>, TokenHash>,
    order: VecDeque<Key>,
}

/// A cached token's bytes, compared a word at a time.
#[derive(Debug, Clone)]
struct Key(Rc<str>);

/// A presented token, looked up without copying it into a `Key`.
struct Presented<'a>(&'a str);

/// The map finds a presented token only if it hashes and compares as its cached copy does:
/// a `Key` is hashed and compared as the `Presented` token it was made from.
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Presented(&self.0).hash(state);
    }
}

/// How much of a token's end is hashed, with its length. A cached token verified, so it ends
/// in its signature, and two signatures that verified are equal only for the same signing
/// input, i.e. the same token: the last 32 characters (192 bits of signature at least) set
/// cached tokens apart as well as all their bytes would, at a constant cost per lookup (the
/// whole token was 71 words for a 563-byte RS256 token). A presented token that shares an
/// end with a cached one is told apart by the byte comparison, as any collision is.
const HASHED_TAIL: usize = 32;

impl Hash for Presented<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let bytes = self.0.as_bytes();
        let tail = bytes
            .get(bytes.len().saturating_sub(HASHED_TAIL)..)
            .unwrap_or(bytes);
        state.write_u64(bytes.len() as u64);
        state.write(tail);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        Presented(&self.0).equivalent(other)
    }
}

impl Eq for Key {}

impl Equivalent<Key> for Presented<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        same_bytes(self.0.as_bytes(), key.0.as_bytes())
    }
}

/// Equal bytes, compared 8 at a time (each word one `i64.load` in wasm). The lengths are
/// compared first: the words are paired from the start, so without it a token would equal
/// a longer one that repeats it.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let ((left, left_tail), (right, right_tail)) = (a.as_chunks::<8>(), b.as_chunks::<8>());
    left.iter()
        .zip(right)
        .all(|(x, y)| u64::from_ne_bytes(*x) == u64::from_ne_bytes(*y))
        && left_tail == right_tail
}

/// The map's hash: a word at a time, seeded per VM. std's SipHash took 1,575 of a hit's 8,300
/// instructions for a 563-byte token (`make cost`); a token is hashed once per request. This
/// hash does not resist crafted collisions (FxHash's step lets a change in one word's top bit
/// be cancelled by the next word, whatever the seed), and the map does not rely on it: only
/// tokens whose signature verified are inserted, so a client cannot fill a bucket, and a
/// lookup that lands on another token's bucket is told apart by the byte comparison. The seed
/// only varies where entries land from one VM to the next.
#[derive(Debug, Clone, Copy)]
struct TokenHash {
    seed: u64,
}

impl TokenHash {
    fn new() -> Self {
        TokenHash {
            seed: RandomState::new().hash_one(0x6265_6172_6572_u64),
        }
    }
}

impl BuildHasher for TokenHash {
    type Hasher = WordHasher;
    fn build_hasher(&self) -> WordHasher {
        WordHasher(self.seed)
    }
}

/// FxHash's step (rotate, xor, multiply) over 8-byte words, then a 64-bit finalizer so that
/// the low bits (the bucket) and the top bits (hashbrown's tag) both depend on every word.
struct WordHasher(u64);

const MULTIPLIER: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl WordHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(MULTIPLIER);
    }
}

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        let (words, rest) = bytes.as_chunks::<8>();
        for word in words {
            self.add(u64::from_le_bytes(*word));
        }
        if !rest.is_empty() {
            let mut eight = [0u8; 8];
            for (to, from) in eight.iter_mut().zip(rest) {
                *to = *from;
            }
            // The length tells `ab` from `ab\0`.
            self.add(u64::from_le_bytes(eight) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn write_u64(&mut self, word: u64) {
        self.add(word);
    }

    fn finish(&self) -> u64 {
        crate::mix::fmix64(self.0)
    }
}

impl TokenCache {
    /// `capacity` 0 disables the cache.
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            capacity,
            entries: HashMap::with_capacity_and_hasher(capacity.min(4096), TokenHash::new()),
            order: VecDeque::with_capacity(capacity.min(4096)),
        }
    }

    pub fn get(&self, token: &str) -> Option<Rc<CachedToken>> {
        self.entries.get(&Presented(token)).cloned()
    }

    /// The entry as cached (`None`: the cache is disabled).
    pub fn insert(&mut self, token: &str, entry: CachedToken) -> Option<Rc<CachedToken>> {
        if self.capacity == 0 {
            return None;
        }
        let entry = Rc::new(entry);
        if let Some(slot) = self.entries.get_mut(&Presented(token)) {
            *slot = entry.clone();
            return Some(entry);
        }
        let token = Key(Rc::from(token));
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
        if self.entries.remove(&Presented(token)).is_some() {
            self.order.retain(|key| !Presented(token).equivalent(key));
        }
    }

    /// For when a provider's keys change: its entries were verified with keys that may be
    /// gone. The other providers' entries stay.
    pub fn drop_provider(&mut self, provider: usize) {
        let before = self.entries.len();
        self.entries.retain(|_, entry| entry.provider != provider);
        if self.entries.len() != before {
            let entries = &self.entries;
            self.order.retain(|token| entries.contains_key(token));
        }
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
    fn remove() {
        let mut cache = TokenCache::new(4);
        cache.insert("t1", entry(1));
        cache.insert("t2", entry(2));
        cache.remove("t1");
        assert!(cache.get("t1").is_none());
        cache.insert("t3", entry(3));
        cache.insert("t4", entry(4));
        cache.insert("t5", entry(5));
        assert_eq!(cache.len(), 4);
    }

    #[test]
    fn dropping_a_provider_keeps_the_others_and_their_order() {
        let mut cache = TokenCache::new(3);
        cache.insert("t1", entry(0));
        cache.insert("t2", entry(1));
        cache.insert("t3", entry(0));
        cache.drop_provider(0);
        assert_eq!(cache.len(), 1);
        assert!(cache.get("t1").is_none() && cache.get("t3").is_none());
        assert!(cache.get("t2").is_some());
        // The order forgot the dropped tokens: t2 is still the oldest, evicted first.
        cache.insert("t4", entry(0));
        cache.insert("t5", entry(0));
        cache.insert("t6", entry(0));
        assert!(cache.get("t2").is_none());
        assert_eq!(cache.len(), 3);
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

    /// A small generator for the tests below (no dependency, the same sequence every run).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }
    }

    /// The word-at-a-time comparison answers as `==` does: on every pair of byte strings of up
    /// to 3 bytes over bytes that probe each bit's end, for every single-bit change of lengths
    /// 0-79 (whole words and every tail), and for a string against itself extended by 1-24
    /// bytes (zeros, or its own bytes again: the words are paired from the start).
    #[test]
    fn same_bytes_answers_as_eq() {
        let alphabet = [0u8, 1, 0x20, 0x7f, 0x80, 0xff];
        let mut all: Vec<Vec<u8>> = vec![Vec::new()];
        let mut layer = all.clone();
        for _ in 0..3 {
            layer = layer
                .iter()
                .flat_map(|s| alphabet.iter().map(move |&c| [s.as_slice(), &[c]].concat()))
                .collect();
            all.extend(layer.iter().cloned());
        }
        for a in &all {
            for b in &all {
                assert_eq!(same_bytes(a, b), a == b, "{a:?} {b:?}");
            }
        }
        let mut rng = Lcg(7);
        for len in 0..80usize {
            let base: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            assert!(same_bytes(&base, &base.clone()));
            for at in 0..len {
                for bit in 0..8 {
                    let mut other = base.clone();
                    other[at] ^= 1 << bit;
                    assert!(
                        !same_bytes(&base, &other),
                        "len {len}, byte {at}, bit {bit}"
                    );
                    assert!(!same_bytes(&other, &base));
                }
            }
            for extra in 1..=24usize {
                let zeros = [base.as_slice(), &vec![0; extra]].concat();
                assert!(!same_bytes(&base, &zeros), "len {len} + {extra} zeros");
                assert!(!same_bytes(&zeros, &base));
                let again: Vec<u8> = base
                    .iter()
                    .chain(base.iter().cycle().take(extra))
                    .copied()
                    .collect();
                assert!(
                    !same_bytes(&base, &again) || base == again,
                    "len {len} + {extra} again"
                );
            }
        }
    }

    /// A token and its cached copy hash alike (the map finds the slot), and with every token in
    /// one bucket only the very same bytes hit: the comparison alone tells them apart.
    #[test]
    fn only_the_same_bytes_hit_when_every_hash_collides() {
        let hash = TokenHash::new();
        let mut rng = Lcg(3);
        for len in 0..200usize {
            let token: String = (0..len)
                .map(|_| char::from(b'!' + (rng.next() % 90) as u8))
                .collect();
            let key = Key(Rc::from(token.as_str()));
            assert_eq!(
                hash.hash_one(&key),
                hash.hash_one(Presented(&token)),
                "len {len}"
            );
            assert!(Presented(&token).equivalent(&key));
        }

        struct OneBucket;
        struct OneHash;
        impl Hasher for OneHash {
            fn write(&mut self, _: &[u8]) {}
            fn finish(&self) -> u64 {
                42
            }
        }
        impl BuildHasher for OneBucket {
            type Hasher = OneHash;
            fn build_hasher(&self) -> OneHash {
                OneHash
            }
        }
        let mut map: HashMap<Key, usize, OneBucket> = HashMap::with_hasher(OneBucket);
        let tokens = [
            "",
            "a",
            "abcdefg",
            "abcdefgh",
            "abcdefgh\0",
            "abcdefgi",
            "bbcdefgh",
            "abcdefghabcdefgh",
            "abcdefghabcdefgH",
            "abcdefgh\0\0\0\0\0\0\0\0",
        ];
        for (n, token) in tokens.iter().enumerate() {
            map.insert(Key(Rc::from(*token)), n);
        }
        assert_eq!(map.len(), tokens.len());
        for (n, token) in tokens.iter().enumerate() {
            assert_eq!(map.get(&Presented(token)), Some(&n), "{token:?}");
        }
        for token in [
            "abcdefghabcdefgx",
            "abcdefgh\0\0\0\0\0\0\0",
            "Abcdefgh",
            "b",
        ] {
            assert!(map.get(&Presented(token)).is_none(), "{token:?}");
        }
    }

    /// 20,000 random inserts, re-inserts, removals and provider drops per capacity 0-5 against
    /// a plain FIFO list: the same entries, the same order, never more than the capacity.
    /// Tokens repeat a word (`abcdefgh` one to three times), so a comparison that ignored the
    /// length would remove or find the wrong one.
    #[test]
    fn the_cache_behaves_as_a_fifo_list_of_tokens() {
        let mut rng = Lcg(11);
        let token = |n: u64| format!("{}{}", "abcdefgh".repeat((n % 3) as usize + 1), n % 5);
        for capacity in 0..6usize {
            let mut cache = TokenCache::new(capacity);
            let mut model: Vec<(String, usize)> = Vec::new();
            for _ in 0..20_000 {
                let n = rng.next();
                let (t, provider) = (token(n >> 4), (n % 3) as usize);
                match n % 4 {
                    0 | 1 => {
                        cache.insert(&t, entry(provider));
                        if capacity > 0 {
                            match model.iter_mut().find(|(k, _)| *k == t) {
                                Some(slot) => slot.1 = provider,
                                None => {
                                    model.push((t.clone(), provider));
                                    if model.len() > capacity {
                                        model.remove(0);
                                    }
                                }
                            }
                        }
                    }
                    2 => {
                        cache.remove(&t);
                        model.retain(|(k, _)| *k != t);
                    }
                    _ => {
                        cache.drop_provider(provider);
                        model.retain(|(_, p)| *p != provider);
                    }
                }
                let order: Vec<&str> = cache.order.iter().map(|k| &*k.0).collect();
                let expected: Vec<&str> = model.iter().map(|(k, _)| k.as_str()).collect();
                assert_eq!(order, expected);
                assert_eq!(cache.len(), model.len());
                for m in 0..15 {
                    let t = token(m);
                    let held = model.iter().find(|(k, _)| *k == t).map(|(_, p)| *p);
                    assert_eq!(cache.get(&t).map(|e| e.provider), held, "{t}");
                }
            }
        }
    }

    /// Tokens that differ in one byte of their end, or only in length, hash apart; tokens that
    /// differ only before it hash alike and are still told apart (a full cache still finds each
    /// of its own, and only its own).
    #[test]
    fn the_end_and_the_length_move_the_hash() {
        let hash = TokenHash::new();
        let base =
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlIG9mIHRoZSB0b2tlbiBpdHNlbGY";
        let mut seen = std::collections::HashSet::new();
        assert!(seen.insert(hash.hash_one(Presented(base))));
        let twin = |at: usize| {
            let mut bytes = base.as_bytes().to_vec();
            bytes[at] ^= 1;
            String::from_utf8(bytes).unwrap()
        };
        for at in base.len() - HASHED_TAIL..base.len() {
            assert!(
                seen.insert(hash.hash_one(Presented(&twin(at)))),
                "byte {at}"
            );
        }
        for end in 1..base.len() {
            assert!(
                seen.insert(hash.hash_one(Presented(&base[..end]))),
                "length {end}"
            );
        }
        let mut cache = TokenCache::new(64);
        cache.insert(base, entry(1));
        for at in 0..base.len() - HASHED_TAIL {
            let twin = twin(at);
            assert_eq!(
                hash.hash_one(Presented(&twin)),
                hash.hash_one(Presented(base))
            );
            assert!(cache.get(&twin).is_none(), "byte {at}");
        }
        let write = |bytes: &[u8]| {
            let mut hasher = hash.build_hasher();
            hasher.write(bytes);
            hasher.finish()
        };
        assert_ne!(write(b"ab"), write(b"ab\0"));
        assert_ne!(write(b"12345678"), write(b"12345678\0"));

        let mut cache = TokenCache::new(64);
        let tokens: Vec<String> = (0..64).map(|n| format!("{base}{n}")).collect();
        for token in &tokens {
            cache.insert(token, entry(1));
        }
        assert!(tokens.iter().all(|token| cache.get(token).is_some()));
    }
}
