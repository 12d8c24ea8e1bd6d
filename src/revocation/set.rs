//! Revoked tokens as a compact, sorted set of 64-bit fingerprints, and the lookup a request
//! makes against it. One representation serves the static config, the polled list and what
//! was learned at run time; the list's encoding is what workers share (a 1M-entry list is
//! 8 MB, searched in place, never copied into another structure).

use std::collections::BTreeMap;

/// What an entry identifies. Part of every fingerprint, so a `jti` never matches a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Jti = 1,
    TokenSha256 = 2,
    Subject = 3,
}

/// The scope of entries that apply to every provider.
pub const ANY_PROVIDER: &str = "";

/// A stable 64-bit fingerprint of (kind, provider scope, value): FNV-1a and a final mix.
/// Stable across builds (shared data outlives a plugin upgrade in the same process); not a
/// defence against chosen collisions, which could only get the chooser's own token refused.
pub fn fingerprint(kind: Kind, scope: &str, value: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    let mut eat = |byte: u8| {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    };
    eat(kind as u8);
    scope.bytes().for_each(&mut eat);
    eat(0xff);
    value.iter().copied().for_each(&mut eat);
    // FNV's low bits are weak; sorted search does not care, collisions do.
    crate::mix::fmix64(hash)
}

/// What a request's token is looked up by: its fingerprints, computed once per request and
/// checked against every set (static, list, learned).
///
/// Scopes: `jti` and `sub` are unique per issuer (RFC 7519 §4.1.2, §4.1.7), so an entry made
/// for one provider applies to every provider of the same issuer: the probe carries the names
/// of all of them (`Provider::revocation_scopes`), and entries keep being written under a
/// provider name, as lists and shared data have always had them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    pub(super) scopes: Vec<String>,
    pub(super) exact: Vec<u64>,
    pub(super) subjects: Vec<u64>,
    /// `iat`; a token without one counts as issued before any cutoff.
    pub issued_at: Option<i64>,
}

/// The token's identities for exact entries: what `token_sha256` entries are matched against.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenHashes<'a> {
    /// The token identity (SHA-256 of the JWS signing input; of the whole token otherwise).
    pub id: Option<&'a [u8; 32]>,
    /// SHA-256 of the whole token as sent: entries made that way before the identity existed
    /// keep matching the exact token they were made from.
    pub whole: Option<&'a [u8; 32]>,
}

impl Probe {
    /// One provider scope (and the any-provider one); `token_sha256` is matched as given.
    pub fn new(
        provider: &str,
        jti: Option<&str>,
        sub: Option<&str>,
        issued_at: Option<i64>,
        token_sha256: Option<&[u8; 32]>,
    ) -> Self {
        let hashes = TokenHashes {
            id: token_sha256,
            whole: None,
        };
        Probe::scoped(&[provider], jti, sub, issued_at, hashes)
    }

    /// Every provider scope of the token's issuer (and the any-provider one).
    pub fn scoped<S: AsRef<str>>(
        scopes: &[S],
        jti: Option<&str>,
        sub: Option<&str>,
        issued_at: Option<i64>,
        hashes: TokenHashes<'_>,
    ) -> Self {
        let mut probe = Probe {
            scopes: scopes.iter().map(|s| s.as_ref().to_owned()).collect(),
            exact: Vec::with_capacity(4 * (scopes.len() + 1)),
            subjects: Vec::with_capacity(scopes.len() + 1),
            issued_at,
        };
        let all = std::iter::once(ANY_PROVIDER).chain(scopes.iter().map(AsRef::as_ref));
        for scope in all {
            if let Some(jti) = jti {
                probe
                    .exact
                    .push(fingerprint(Kind::Jti, scope, jti.as_bytes()));
            }
            for digest in [hashes.id, hashes.whole].into_iter().flatten() {
                probe
                    .exact
                    .push(fingerprint(Kind::TokenSha256, scope, digest));
            }
            if let Some(sub) = sub {
                probe
                    .subjects
                    .push(fingerprint(Kind::Subject, scope, sub.as_bytes()));
            }
        }
        probe
    }

    /// Issued at or before the cutoff (RFC 7519 `iat` has second precision: "at" counts).
    pub(super) fn issued_by(&self, cutoff: i64) -> bool {
        self.issued_at.is_none_or(|iat| iat <= cutoff)
    }

    /// Whether a scope cutoff (`scope` -> tokens issued at or before `cutoff`) revokes this
    /// token.
    pub(super) fn cut_off_by(&self, cutoffs: &[(String, i64)]) -> bool {
        cutoffs.iter().any(|(scope, cutoff)| {
            (scope == ANY_PROVIDER || self.scopes.contains(scope)) && self.issued_by(*cutoff)
        })
    }
}

const MAGIC: &[u8; 4] = b"BGRS";
const FORMAT: u8 = 1;
const EXACT_AT: usize = MAGIC.len() + 1 + 4;

/// An immutable revocation set. `bytes` is the shared encoding itself: lookups binary-search
/// the exact and subject sections in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationSet {
    bytes: Vec<u8>,
    exact_count: usize,
    subjects_at: usize,
    subject_count: usize,
    /// Scope -> cutoff: tokens issued at or before it are revoked.
    cutoffs: Vec<(String, i64)>,
    /// The list's version and ETag (a list source's own words; empty for other sets).
    pub version: String,
    pub etag: String,
}

/// Entries are collected here, then sorted and encoded once.
#[derive(Debug, Default)]
pub struct SetBuilder {
    exact: Vec<u64>,
    subjects: Vec<(u64, i64)>,
    cutoffs: BTreeMap<String, i64>,
}

impl SetBuilder {
    pub fn add_exact(&mut self, kind: Kind, scope: &str, value: &[u8]) {
        self.exact.push(fingerprint(kind, scope, value));
    }

    pub fn add_exact_fingerprint(&mut self, fingerprint: u64) {
        self.exact.push(fingerprint);
    }

    pub fn add_subject(&mut self, scope: &str, sub: &str, cutoff: i64) {
        self.add_subject_fingerprint(fingerprint(Kind::Subject, scope, sub.as_bytes()), cutoff);
    }

    pub fn add_subject_fingerprint(&mut self, fingerprint: u64, cutoff: i64) {
        self.subjects.push((fingerprint, cutoff));
    }

    pub fn add_cutoff(&mut self, scope: &str, cutoff: i64) {
        let slot = self.cutoffs.entry(scope.to_owned()).or_insert(cutoff);
        *slot = (*slot).max(cutoff);
    }

    /// Everything `set` holds, so a delta can be laid over it.
    pub fn add_set(&mut self, set: &RevocationSet) {
        self.exact.extend(set.exact_iter());
        self.subjects.extend(set.subject_iter());
        for (scope, cutoff) in &set.cutoffs {
            self.add_cutoff(scope, *cutoff);
        }
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.subjects.len() + self.cutoffs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn build(mut self, version: &str, etag: &str) -> RevocationSet {
        self.exact.sort_unstable();
        self.exact.dedup();
        // Per subject, the latest cutoff wins.
        self.subjects
            .sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        self.subjects.dedup_by_key(|s| s.0);
        let mut bytes =
            Vec::with_capacity(EXACT_AT + self.exact.len() * 8 + 4 + self.subjects.len() * 16 + 64);
        bytes.extend_from_slice(MAGIC);
        bytes.push(FORMAT);
        bytes.extend_from_slice(&count(self.exact.len()).to_le_bytes());
        for fp in &self.exact {
            bytes.extend_from_slice(&fp.to_le_bytes());
        }
        // Freed before the subject section grows the buffer: a big list must not be held twice.
        let exact_count = self.exact.len();
        drop(self.exact);
        bytes.extend_from_slice(&count(self.subjects.len()).to_le_bytes());
        let subjects_at = bytes.len();
        for (fp, cutoff) in &self.subjects {
            bytes.extend_from_slice(&fp.to_le_bytes());
            bytes.extend_from_slice(&cutoff.to_le_bytes());
        }
        let cutoffs: Vec<(String, i64)> = self.cutoffs.into_iter().collect();
        put_tail(&mut bytes, &cutoffs, version, etag);
        RevocationSet {
            bytes,
            exact_count,
            subjects_at,
            subject_count: self.subjects.len(),
            cutoffs,
            version: version.to_owned(),
            etag: etag.to_owned(),
        }
    }
}

pub(super) fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// What both shared encodings (a set, a list's head) end with: the scope cutoffs, the list's
/// version and ETag.
pub(super) fn put_tail(bytes: &mut Vec<u8>, cutoffs: &[(String, i64)], version: &str, etag: &str) {
    bytes.extend_from_slice(&count(cutoffs.len()).to_le_bytes());
    for (scope, cutoff) in cutoffs {
        put_str(bytes, scope);
        bytes.extend_from_slice(&cutoff.to_le_bytes());
    }
    put_str(bytes, version);
    put_str(bytes, etag);
}

/// The cutoffs, version and ETag `put_tail` wrote.
pub(super) type Tail = (Vec<(String, i64)>, String, String);

fn put_str(bytes: &mut Vec<u8>, s: &str) {
    let s = s
        .get(..s.len().min(usize::from(u16::MAX)))
        .unwrap_or_default();
    bytes.extend_from_slice(&u16::try_from(s.len()).unwrap_or(0).to_le_bytes());
    bytes.extend_from_slice(s.as_bytes());
}

/// Reads the encoding front to back; every read is bounds-checked (shared data is input).
pub(super) struct Reader<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) at: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(slice)
    }
    pub(super) fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    pub(super) fn u32(&mut self) -> Option<usize> {
        usize::try_from(u32::from_le_bytes(self.take(4)?.try_into().ok()?)).ok()
    }
    pub(super) fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    pub(super) fn tail(&mut self) -> Option<Tail> {
        let cutoff_count = self.u32()?;
        let mut cutoffs = Vec::with_capacity(cutoff_count.min(1024));
        for _ in 0..cutoff_count {
            cutoffs.push((self.str()?, self.i64()?));
        }
        Some((cutoffs, self.str()?, self.str()?))
    }
    fn str(&mut self) -> Option<String> {
        let len = usize::from(self.u16()?);
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

impl RevocationSet {
    pub fn empty() -> Self {
        SetBuilder::default().build("", "")
    }

    /// Takes the shared encoding as is (no copy). `None` if it is not one.
    pub fn decode(bytes: Vec<u8>) -> Option<Self> {
        let mut reader = Reader {
            bytes: &bytes,
            at: 0,
        };
        if reader.take(MAGIC.len())? != MAGIC || reader.take(1)? != [FORMAT] {
            return None;
        }
        let exact_count = reader.u32()?;
        reader.take(exact_count.checked_mul(8)?)?;
        let subject_count = reader.u32()?;
        let subjects_at = reader.at;
        reader.take(subject_count.checked_mul(16)?)?;
        let (cutoffs, version, etag) = reader.tail()?;
        Some(RevocationSet {
            exact_count,
            subjects_at,
            subject_count,
            cutoffs,
            version,
            etag,
            bytes,
        })
    }

    /// The shared encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Entries of every kind (cutoffs count one each).
    pub fn len(&self) -> usize {
        self.exact_count + self.subject_count + self.cutoffs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Exact and subject entries (what an index of the set holds).
    pub fn fingerprint_count(&self) -> usize {
        self.exact_count + self.subject_count
    }

    fn exact_iter(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.exact_count).map(|i| u64_at(&self.bytes, EXACT_AT + i * 8))
    }

    fn subject_iter(&self) -> impl Iterator<Item = (u64, i64)> + '_ {
        (0..self.subject_count).map(|i| {
            let at = self.subjects_at + i * 16;
            (u64_at(&self.bytes, at), u64_at(&self.bytes, at + 8) as i64)
        })
    }

    fn contains_exact(&self, fp: u64) -> bool {
        sorted_search(
            self.exact_count,
            |i| u64_at(&self.bytes, EXACT_AT + i * 8),
            fp,
        )
        .is_some()
    }

    fn subject_cutoff(&self, fp: u64) -> Option<i64> {
        let key = |i: usize| u64_at(&self.bytes, self.subjects_at + i * 16);
        let i = sorted_search(self.subject_count, key, fp)?;
        Some(u64_at(&self.bytes, self.subjects_at + i * 16 + 8) as i64)
    }

    pub fn revokes(&self, probe: &Probe) -> bool {
        if probe.exact.iter().any(|fp| self.contains_exact(*fp)) {
            return true;
        }
        if probe
            .subjects
            .iter()
            .filter_map(|fp| self.subject_cutoff(*fp))
            .any(|cutoff| probe.issued_by(cutoff))
        {
            return true;
        }
        probe.cut_off_by(&self.cutoffs)
    }

    /// Provider scopes this set names (config checks them against the providers).
    pub fn cutoff_scopes(&self) -> impl Iterator<Item = &str> {
        self.cutoffs.iter().map(|(s, _)| s.as_str())
    }
}

/// What the list's rollback guard (`revocation::list`) reads of a held set and a builder.
impl RevocationSet {
    /// Whether an exact or subject entry with this fingerprint is held.
    pub fn holds(&self, fp: u64) -> bool {
        self.contains_exact(fp) || self.subject_cutoff(fp).is_some()
    }

    pub fn exact_fingerprints(&self) -> impl Iterator<Item = u64> + '_ {
        self.exact_iter()
    }

    pub fn subject_entries(&self) -> impl Iterator<Item = (u64, i64)> + '_ {
        self.subject_iter()
    }

    pub fn cutoffs(&self) -> &[(String, i64)] {
        &self.cutoffs
    }

    pub fn cutoff_entries(&self) -> impl Iterator<Item = (&str, i64)> {
        self.cutoffs.iter().map(|(s, c)| (s.as_str(), *c))
    }

    pub fn has_exact(&self, fp: u64) -> bool {
        self.contains_exact(fp)
    }

    pub fn cutoff_of_subject(&self, fp: u64) -> Option<i64> {
        self.subject_cutoff(fp)
    }

    pub fn cutoff_of_scope(&self, scope: &str) -> Option<i64> {
        self.cutoffs
            .iter()
            .find(|(s, _)| s == scope)
            .map(|(_, cutoff)| *cutoff)
    }
}

impl SetBuilder {
    /// The fingerprint the last `add_exact*` pushed (the parser records its `exp` with it).
    pub fn last_exact(&self) -> Option<u64> {
        self.exact.last().copied()
    }

    /// The fingerprint the last `add_subject*` pushed.
    pub fn last_subject(&self) -> Option<u64> {
        self.subjects.last().map(|(fp, _)| *fp)
    }
}

/// Binary search over `n` sorted keys read by `key`.
pub(super) fn sorted_search(n: usize, key: impl Fn(usize) -> u64, wanted: u64) -> Option<usize> {
    let (mut low, mut high) = (0, n);
    while low < high {
        let mid = low + (high - low) / 2;
        match key(mid).cmp(&wanted) {
            std::cmp::Ordering::Equal => return Some(mid),
            std::cmp::Ordering::Less => low = mid + 1,
            std::cmp::Ordering::Greater => high = mid,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(jti: Option<&str>, sub: Option<&str>, iat: Option<i64>) -> Probe {
        Probe::new("corp", jti, sub, iat, Some(&[7; 32]))
    }

    #[test]
    fn fingerprints_separate_kind_scope_and_value() {
        let a = fingerprint(Kind::Jti, "", b"x");
        assert_ne!(a, fingerprint(Kind::Subject, "", b"x"));
        assert_ne!(a, fingerprint(Kind::Jti, "corp", b"x"));
        assert_ne!(a, fingerprint(Kind::Jti, "", b"y"));
        // A scope cannot bleed into the value: "co"+"rpx" differs from "corp"+"x".
        assert_ne!(
            fingerprint(Kind::Jti, "co", b"rpx"),
            fingerprint(Kind::Jti, "corp", b"x")
        );
        // Stable across builds: shared data may outlive the module that wrote it.
        assert_eq!(a, fingerprint(Kind::Jti, "", b"x"));
        assert_eq!(fingerprint(Kind::Jti, "", b"abc"), 0x579d_4e41_7184_1985);
    }

    #[test]
    fn exact_subject_and_cutoff_lookups() {
        let mut b = SetBuilder::default();
        b.add_exact(Kind::Jti, ANY_PROVIDER, b"j1");
        b.add_exact(Kind::Jti, "corp", b"j2");
        b.add_exact(Kind::Jti, "other", b"j3");
        b.add_exact(Kind::TokenSha256, ANY_PROVIDER, &[9; 32]);
        b.add_subject(ANY_PROVIDER, "alice", 100);
        b.add_subject("corp", "bob", 100);
        b.add_subject("corp", "bob", 50);
        let set = b.build("v1", "\"v1\"");
        assert!(set.revokes(&probe(Some("j1"), None, None)));
        assert!(set.revokes(&probe(Some("j2"), None, None)));
        assert!(
            !set.revokes(&probe(Some("j3"), None, None)),
            "other provider's jti"
        );
        assert!(!set.revokes(&probe(Some("j4"), None, None)));
        assert!(set.revokes(&Probe::new("corp", None, None, None, Some(&[9; 32]))));
        assert!(!set.revokes(&Probe::new("corp", None, None, None, Some(&[8; 32]))));
        assert!(
            set.revokes(&probe(None, Some("alice"), Some(100))),
            "at the cutoff"
        );
        assert!(!set.revokes(&probe(None, Some("alice"), Some(101))));
        assert!(set.revokes(&probe(None, Some("alice"), None)), "no iat");
        assert!(
            set.revokes(&probe(None, Some("bob"), Some(99))),
            "latest cutoff wins"
        );
        assert!(!set.revokes(&Probe::new("other", None, Some("bob"), Some(1), None)));
        assert_eq!(set.len(), 6);

        let mut b = SetBuilder::default();
        b.add_cutoff("corp", 10);
        b.add_cutoff("corp", 20);
        let set = b.build("", "");
        assert!(set.revokes(&probe(None, None, Some(20))));
        assert!(!set.revokes(&probe(None, None, Some(21))));
        assert!(!set.revokes(&Probe::new("other", None, None, Some(1), None)));
        assert!(!RevocationSet::empty().revokes(&probe(Some("j1"), Some("alice"), None)));
    }

    #[test]
    fn encoding_round_trips_and_rejects_garbage() {
        let mut b = SetBuilder::default();
        for i in 0..1000u32 {
            b.add_exact(Kind::Jti, ANY_PROVIDER, &i.to_le_bytes());
        }
        b.add_subject("corp", "bob", 5);
        b.add_cutoff(ANY_PROVIDER, 42);
        let set = b.build("v9", "\"v9\"");
        let again = RevocationSet::decode(set.as_bytes().to_vec()).unwrap();
        assert_eq!(again, set);
        assert_eq!(again.version, "v9");
        assert!(again.revokes(&Probe::new("x", Some("junk"), None, Some(42), None)));
        for cut in [0, 3, 9, 100, set.as_bytes().len() - 1] {
            assert!(
                RevocationSet::decode(set.as_bytes()[..cut].to_vec()).is_none(),
                "{cut}"
            );
        }
        assert!(RevocationSet::decode(b"BGRS\x02".to_vec()).is_none());
    }

    #[test]
    fn a_delta_laid_over_a_set_keeps_both() {
        let mut b = SetBuilder::default();
        b.add_exact(Kind::Jti, ANY_PROVIDER, b"old");
        b.add_subject(ANY_PROVIDER, "alice", 10);
        let base = b.build("v1", "");
        let mut b = SetBuilder::default();
        b.add_set(&base);
        b.add_exact(Kind::Jti, ANY_PROVIDER, b"new");
        b.add_subject(ANY_PROVIDER, "alice", 20);
        let merged = b.build("v2", "");
        assert!(merged.revokes(&probe(Some("old"), None, None)));
        assert!(merged.revokes(&probe(Some("new"), None, None)));
        assert!(merged.revokes(&probe(None, Some("alice"), Some(20))));
        assert_eq!(merged.len(), 3);
    }
}
