//! The polled list as a worker holds it: an index of its fingerprints, with the entries
//! themselves left in shared data, split into buckets that a worker reads only when the
//! index says a token may be listed.
//!
//! Why: shared data hands every VM its own copy of a value, so each worker held the whole
//! list (8 bytes per entry: 8 MB for 1,000,000 entries, per worker). The index keeps 16 bits
//! of each fingerprint and a table of where each slot's bits start: about 2.3 MB for the same
//! list. The VM that polls (Envoy's main thread) still holds the whole set: applying deltas
//! and the rollback guard read it.
//!
//! Exactness: the index answers "maybe" for every listed fingerprint and for about 1 in 4,000
//! of the others (16 bits after the table's, about 16 fingerprints per slot); "maybe" reads
//! one bucket (about 2 KB for 1M entries), which decides exactly. A bucket that cannot be read
//! leaves the answer unknown: the list's stale policy decides (`on_stale`, deny by default),
//! as when the list itself could not be fetched.
//!
//! Shared values (`Value`): a small head (what a lookup needs besides the fingerprints), the
//! index in parts of at most 1,024 slots (about 36 KB each: Envoy copies a value on every read,
//! and one 2 MB copy per worker stayed with its allocator), and the buckets, named by their
//! layout (a worker still holding the last list's head never reads another layout's bucket as
//! its own). The head is written last and stamps its parts: a worker that reads parts of two
//! lists (one being shared meanwhile) sees it and reads again.

use std::fmt;
use std::rc::Rc;

use super::set::{count, put_tail, Probe, Reader, RevocationSet, SetBuilder};

/// One value of a shared list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Value {
    Head,
    Part(usize),
    /// Bucket `index` of the layout with `bits` bucket bits.
    Bucket {
        bits: u32,
        index: usize,
    },
}

/// Shared data as the filter reaches it. `get`: `None` if missing or empty; `put` with empty
/// bytes clears a value; `false` if it could not be written.
pub trait SharedValues {
    fn get(&self, value: Value) -> Option<Vec<u8>>;
    fn put(&self, value: Value, bytes: &[u8]) -> bool;
}

const HEAD_MAGIC: &[u8; 4] = b"BGRI";
const PART_MAGIC: &[u8; 4] = b"BGRP";
const FORMAT: u8 = 1;
/// At most 65,536 slots in the index table (256 KB of offsets).
const MAX_TABLE_BITS: u32 = 16;
/// At most 1,024 slots per part.
const PART_SLOT_BITS: u32 = 10;
/// At most 4,096 buckets (shared values; 2 KB each for 1M entries).
const MAX_BUCKET_BITS: u32 = 12;
/// Reads of a list being shared meanwhile before adoption gives up until the next tick.
const ADOPT_ATTEMPTS: usize = 3;

fn ceil_log2(n: usize) -> u32 {
    usize::BITS - n.saturating_sub(1).leading_zeros()
}

/// About 16 fingerprints per slot: the table is an eighth of the residues.
fn table_bits(fingerprints: usize) -> u32 {
    ceil_log2(fingerprints)
        .saturating_sub(4)
        .min(MAX_TABLE_BITS)
}

/// About 256 entries per bucket: a small list is one bucket, one shared value.
fn bucket_bits(entries: usize) -> u32 {
    ceil_log2(entries).saturating_sub(8).min(MAX_BUCKET_BITS)
}

/// How many buckets a list of `entries` is split into.
pub fn bucket_count(entries: usize) -> usize {
    1 << bucket_bits(entries)
}

/// The top `bits` bits (fingerprints are mixed, so their top bits spread evenly).
fn top(fp: u64, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        usize::try_from(fp >> (64 - bits)).unwrap_or(0)
    }
}

/// The 16 bits after the table's.
fn residue(fp: u64, table_bits: u32) -> u16 {
    ((fp << table_bits) >> 48) as u16
}

/// Every exact and subject fingerprint of `set`, in order (both sections are sorted).
fn fingerprints(set: &RevocationSet) -> impl Iterator<Item = u64> + '_ {
    let mut exact = set.exact_fingerprints().peekable();
    let mut subjects = set.subject_entries().map(|(fp, _)| fp).peekable();
    std::iter::from_fn(move || match (exact.peek(), subjects.peek()) {
        (Some(e), Some(s)) if s < e => subjects.next(),
        (Some(_), _) => exact.next(),
        (None, _) => subjects.next(),
    })
}

fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    if let Some(slot) = bytes.get_mut(at..at + 4) {
        slot.copy_from_slice(&value.to_le_bytes());
    }
}

fn u32_at(bytes: &[u8], at: usize) -> usize {
    bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, |b| u32::from_le_bytes(b) as usize)
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    bytes
        .get(at..at + 2)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u16::from_le_bytes)
}

/// What a lookup needs besides the fingerprints; the value written last.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    stamp: u64,
    table_bits: u32,
    part_bits: u32,
    bucket_bits: u32,
    len: usize,
    fingerprints: usize,
    cutoffs: Vec<(String, i64)>,
    version: String,
    etag: String,
}

impl Head {
    fn of(set: &RevocationSet, stamp: u64) -> Head {
        let fingerprints = set.fingerprint_count();
        let table_bits = table_bits(fingerprints);
        Head {
            stamp,
            table_bits,
            part_bits: table_bits.saturating_sub(PART_SLOT_BITS),
            bucket_bits: bucket_bits(set.len()),
            len: set.len(),
            fingerprints,
            cutoffs: set.cutoffs().to_vec(),
            version: set.version.clone(),
            etag: set.etag.clone(),
        }
    }

    fn parts(&self) -> usize {
        1 << self.part_bits
    }

    fn slots_per_part(&self) -> usize {
        1 << (self.table_bits - self.part_bits)
    }

    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(HEAD_MAGIC);
        bytes.push(FORMAT);
        bytes.extend_from_slice(&self.stamp.to_le_bytes());
        for bits in [self.table_bits, self.part_bits, self.bucket_bits] {
            bytes.push(bits as u8);
        }
        bytes.extend_from_slice(&count(self.len).to_le_bytes());
        bytes.extend_from_slice(&count(self.fingerprints).to_le_bytes());
        put_tail(&mut bytes, &self.cutoffs, &self.version, &self.etag);
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Head> {
        let mut reader = Reader { bytes, at: 0 };
        if reader.take(HEAD_MAGIC.len())? != HEAD_MAGIC || reader.take(1)? != [FORMAT] {
            return None;
        }
        let stamp = u64::from_le_bytes(reader.take(8)?.try_into().ok()?);
        let &[table_bits, part_bits, bucket_bits] = reader.take(3)? else {
            return None;
        };
        let [table_bits, part_bits, bucket_bits] =
            [table_bits, part_bits, bucket_bits].map(u32::from);
        if table_bits > MAX_TABLE_BITS
            || part_bits > table_bits
            || table_bits - part_bits > PART_SLOT_BITS
            || bucket_bits > MAX_BUCKET_BITS
        {
            return None;
        }
        let len = reader.u32()?;
        let fingerprints = reader.u32()?;
        let (cutoffs, version, etag) = reader.tail()?;
        (reader.at == bytes.len()).then_some(Head {
            stamp,
            table_bits,
            part_bits,
            bucket_bits,
            len,
            fingerprints,
            cutoffs,
            version,
            etag,
        })
    }
}

/// Part header: magic, format, the head's stamp, the part's fingerprint count.
const PART_TABLE_AT: usize = 4 + 1 + 8 + 4;

/// The parts of `set`'s index, in order: each the start of its slots' residues (relative to
/// the part, one more than its slots) and the residues.
fn for_each_part(
    set: &RevocationSet,
    head: &Head,
    mut put: impl FnMut(usize, &[u8]) -> bool,
) -> bool {
    let slots = head.slots_per_part();
    let mut fingerprints = fingerprints(set).peekable();
    for part in 0..head.parts() {
        let mut bytes = Vec::with_capacity(PART_TABLE_AT + (slots + 1) * 4 + slots * 32);
        bytes.extend_from_slice(PART_MAGIC);
        bytes.push(FORMAT);
        bytes.extend_from_slice(&head.stamp.to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
        bytes.resize(PART_TABLE_AT + (slots + 1) * 4, 0);
        let mut residues = Vec::new();
        for local in 0..slots {
            let slot = part * slots + local;
            put_u32(&mut bytes, PART_TABLE_AT + local * 4, count(residues.len()));
            while let Some(fp) = fingerprints.next_if(|fp| top(*fp, head.table_bits) == slot) {
                residues.push(residue(fp, head.table_bits));
            }
        }
        put_u32(&mut bytes, PART_TABLE_AT + slots * 4, count(residues.len()));
        put_u32(&mut bytes, PART_TABLE_AT - 4, count(residues.len()));
        for r in residues {
            bytes.extend_from_slice(&r.to_le_bytes());
        }
        if !put(part, &bytes) {
            return false;
        }
    }
    true
}

/// A part as read back: its stamp must be the head's, and every offset is checked here, so
/// lookups need not trust it.
fn part_checked(bytes: &[u8], head: &Head) -> bool {
    let slots = head.slots_per_part();
    let mut reader = Reader { bytes, at: 0 };
    let (Some(magic), Some(format), Some(stamp)) = (reader.take(4), reader.take(1), reader.take(8))
    else {
        return false;
    };
    if magic != PART_MAGIC || format != [FORMAT] || stamp != head.stamp.to_le_bytes() {
        return false;
    }
    let Some(n) = reader.u32() else {
        return false;
    };
    let residues_at = PART_TABLE_AT + (slots + 1) * 4;
    if Some(bytes.len()) != n.checked_mul(2).and_then(|r| r.checked_add(residues_at)) {
        return false;
    }
    let mut previous = 0;
    for local in 0..=slots {
        let start = u32_at(bytes, PART_TABLE_AT + local * 4);
        if start < previous || start > n {
            return false;
        }
        previous = start;
    }
    u32_at(bytes, PART_TABLE_AT) == 0 && previous == n
}

/// Shares `set` as workers read it: its buckets, its index parts, then the head that names
/// them (a worker that adopts the head finds this list's parts and buckets). Then clears what
/// the last list shared had beyond this one (another layout's buckets, parts past the new
/// count): nothing is left holding a stale copy. `false` if a value could not be written.
pub fn share(set: &RevocationSet, shared: &dyn SharedValues) -> bool {
    let last = shared
        .get(Value::Head)
        .and_then(|bytes| Head::decode(&bytes));
    let head = Head::of(set, last.as_ref().map_or(1, |l| l.stamp.wrapping_add(1)));
    let bits = head.bucket_bits;
    let written = for_each_bucket(set, bits, |index, bytes| {
        shared.put(Value::Bucket { bits, index }, bytes)
    }) && for_each_part(set, &head, |part, bytes| {
        shared.put(Value::Part(part), bytes)
    }) && shared.put(Value::Head, &head.encode());
    if let Some(last) = last.filter(|_| written) {
        if last.bucket_bits != bits {
            clear_buckets(&last, shared);
        }
        for part in head.parts()..last.parts() {
            shared.put(Value::Part(part), b"");
        }
    }
    written
}

/// Clears every value of the list shared (a new `learned_generation` drops the old one).
pub fn clear(shared: &dyn SharedValues) {
    let Some(head) = shared
        .get(Value::Head)
        .and_then(|bytes| Head::decode(&bytes))
    else {
        return;
    };
    clear_buckets(&head, shared);
    for part in 0..head.parts() {
        shared.put(Value::Part(part), b"");
    }
    shared.put(Value::Head, b"");
}

fn clear_buckets(head: &Head, shared: &dyn SharedValues) {
    let bits = head.bucket_bits;
    for index in 0..1usize << bits {
        shared.put(Value::Bucket { bits, index }, b"");
    }
}

/// `set`'s buckets in order, each a `RevocationSet` encoding of the exact and subject entries
/// whose fingerprints start with its number (no cutoffs, no version: the head has them).
/// `put` shares one; `false` stops (and is returned). One bucket is built at a time.
fn for_each_bucket(
    set: &RevocationSet,
    bits: u32,
    mut put: impl FnMut(usize, &[u8]) -> bool,
) -> bool {
    let mut exact = set.exact_fingerprints().peekable();
    let mut subjects = set.subject_entries().peekable();
    for bucket in 0..1usize << bits {
        let mut builder = SetBuilder::default();
        while let Some(fp) = exact.next_if(|fp| top(*fp, bits) == bucket) {
            builder.add_exact_fingerprint(fp);
        }
        while let Some((fp, cutoff)) = subjects.next_if(|(fp, _)| top(*fp, bits) == bucket) {
            builder.add_subject_fingerprint(fp, cutoff);
        }
        if !put(bucket, builder.build("", "").as_bytes()) {
            return false;
        }
    }
    true
}

/// A list as a worker holds it: the index, and where to read its buckets.
#[derive(Clone)]
pub struct IndexedSet {
    head: Head,
    parts: Vec<Vec<u8>>,
    shared: Rc<dyn SharedValues>,
}

impl fmt::Debug for IndexedSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexedSet")
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

impl IndexedSet {
    /// The list shared now: its head, then its parts. A part of another list (one shared
    /// meanwhile) means reading again; `None` if there is no readable list.
    pub fn adopt(shared: Rc<dyn SharedValues>) -> Option<Self> {
        for _ in 0..ADOPT_ATTEMPTS {
            let head = Head::decode(&shared.get(Value::Head)?)?;
            let parts: Option<Vec<Vec<u8>>> = (0..head.parts())
                .map(|part| {
                    shared
                        .get(Value::Part(part))
                        .filter(|bytes| part_checked(bytes, &head))
                })
                .collect();
            if let Some(parts) = parts {
                return Some(IndexedSet {
                    head,
                    parts,
                    shared,
                });
            }
        }
        None
    }

    pub fn version(&self) -> &str {
        &self.head.version
    }

    pub fn etag(&self) -> &str {
        &self.head.etag
    }

    /// Entries of every kind (cutoffs count one each), as `RevocationSet::len`.
    pub fn len(&self) -> usize {
        self.head.len
    }

    pub fn is_empty(&self) -> bool {
        self.head.len == 0
    }

    /// Bytes held: the index parts.
    pub fn held_bytes(&self) -> usize {
        self.parts.iter().map(Vec::len).sum()
    }

    /// Whether `fp` may be listed: its residue is among its slot's (sorted) residues.
    fn may_hold(&self, fp: u64) -> bool {
        let slot = top(fp, self.head.table_bits);
        let slots = self.head.slots_per_part();
        let Some(part) = self.parts.get(slot / slots) else {
            return true;
        };
        let local = slot % slots;
        let start = u32_at(part, PART_TABLE_AT + local * 4);
        let end = u32_at(part, PART_TABLE_AT + (local + 1) * 4);
        let residues_at = PART_TABLE_AT + (slots + 1) * 4;
        let wanted = residue(fp, self.head.table_bits);
        let (mut low, mut high) = (start, end);
        while low < high {
            let mid = low + (high - low) / 2;
            match u16_at(part, residues_at + mid * 2).cmp(&wanted) {
                std::cmp::Ordering::Equal => return true,
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
            }
        }
        false
    }

    fn bucket(&self, index: usize) -> Option<RevocationSet> {
        let bits = self.head.bucket_bits;
        RevocationSet::decode(self.shared.get(Value::Bucket { bits, index })?)
    }

    /// As `RevocationSet::revokes` on the whole list; `None` when a bucket it needed could not
    /// be read (the list's stale policy decides then). Reads a bucket only for a fingerprint
    /// the index may hold, the same bucket once per call.
    pub fn revokes(&self, probe: &Probe) -> Option<bool> {
        if probe.cut_off_by(&self.head.cutoffs) {
            return Some(true);
        }
        let exact = probe.exact.iter().map(|fp| (*fp, false));
        let subjects = probe.subjects.iter().map(|fp| (*fp, true));
        let mut read: Option<(usize, Option<RevocationSet>)> = None;
        let mut unreadable = false;
        for (fp, subject) in exact.chain(subjects) {
            if !self.may_hold(fp) {
                continue;
            }
            let bucket = top(fp, self.head.bucket_bits);
            if read.as_ref().map(|(at, _)| *at) != Some(bucket) {
                read = Some((bucket, self.bucket(bucket)));
            }
            // Another fingerprint may still be found listed in a bucket that can be read.
            let Some(set) = read.as_ref().and_then(|(_, set)| set.as_ref()) else {
                unreadable = true;
                continue;
            };
            let listed = if subject {
                set.cutoff_of_subject(fp)
                    .is_some_and(|cutoff| probe.issued_by(cutoff))
            } else {
                set.has_exact(fp)
            };
            if listed {
                return Some(true);
            }
        }
        (!unreadable).then_some(false)
    }

    /// The whole list again, from every bucket (a worker that has to apply a fetched list
    /// itself). `None` if a bucket is missing or unreadable, or the buckets do not add up to
    /// the head (another list's, shared meanwhile).
    pub fn assemble(&self) -> Option<RevocationSet> {
        let mut builder = SetBuilder::default();
        for index in 0..1usize << self.head.bucket_bits {
            let set = self.bucket(index)?;
            if !set.cutoffs().is_empty() {
                return None;
            }
            builder.add_set(&set);
        }
        for (scope, cutoff) in &self.head.cutoffs {
            builder.add_cutoff(scope, *cutoff);
        }
        let set = builder.build(&self.head.version, &self.head.etag);
        (set.fingerprint_count() == self.head.fingerprints && set.len() == self.head.len)
            .then_some(set)
    }
}

#[cfg(test)]
#[path = "indexed_tests.rs"]
mod tests;
