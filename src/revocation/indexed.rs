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
use std::iter::Peekable;
use std::rc::Rc;

use super::set::{count, put_tail, sorted_search, Probe, Reader, RevocationSet, SetBuilder};

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
const FORMAT: u8 = 3;
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
    table_bits: u32,
    part_bits: u32,
    bucket_bits: u32,
    /// The layout of the list shared before, whose buckets stay until the next share: a
    /// worker may still hold that list's head.
    previous_bucket_bits: u32,
    len: usize,
    fingerprints: usize,
    /// Each part's stamp, a hash of its content: a part that did not change keeps it, and a
    /// worker keeps its copy.
    part_stamps: Vec<u64>,
    cutoffs: Vec<(String, i64)>,
    version: String,
    etag: String,
}

impl Head {
    fn parts(&self) -> usize {
        1 << self.part_bits
    }

    fn slots_per_part(&self) -> usize {
        1 << (self.table_bits - self.part_bits)
    }

    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(64 + self.part_stamps.len() * 8);
        bytes.extend_from_slice(HEAD_MAGIC);
        bytes.push(FORMAT);
        let bits = [
            self.table_bits,
            self.part_bits,
            self.bucket_bits,
            self.previous_bucket_bits,
        ];
        bytes.extend(bits.map(|b| b as u8));
        bytes.extend_from_slice(&count(self.len).to_le_bytes());
        bytes.extend_from_slice(&count(self.fingerprints).to_le_bytes());
        for stamp in &self.part_stamps {
            bytes.extend_from_slice(&stamp.to_le_bytes());
        }
        put_tail(&mut bytes, &self.cutoffs, &self.version, &self.etag);
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Head> {
        let mut reader = Reader { bytes, at: 0 };
        if reader.take(HEAD_MAGIC.len())? != HEAD_MAGIC || reader.take(1)? != [FORMAT] {
            return None;
        }
        let &[table_bits, part_bits, bucket_bits, previous_bucket_bits] = reader.take(4)? else {
            return None;
        };
        let [table_bits, part_bits, bucket_bits, previous_bucket_bits] =
            [table_bits, part_bits, bucket_bits, previous_bucket_bits].map(u32::from);
        if table_bits > MAX_TABLE_BITS
            || part_bits > table_bits
            || table_bits - part_bits > PART_SLOT_BITS
            || bucket_bits > MAX_BUCKET_BITS
            || previous_bucket_bits > MAX_BUCKET_BITS
        {
            return None;
        }
        let len = reader.u32()?;
        let fingerprints = reader.u32()?;
        let part_stamps = (0..1usize << part_bits)
            .map(|_| reader.take(8).and_then(u64_of))
            .collect::<Option<Vec<u64>>>()?;
        let (cutoffs, version, etag) = reader.tail()?;
        (reader.at == bytes.len()).then_some(Head {
            table_bits,
            part_bits,
            bucket_bits,
            previous_bucket_bits,
            len,
            fingerprints,
            part_stamps,
            cutoffs,
            version,
            etag,
        })
    }
}

fn u64_of(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// Part header: magic, format, the part's stamp, its fingerprint count.
const PART_TABLE_AT: usize = 4 + 1 + 8 + 4;

/// One part of an index: where each of its slots' residues start (relative to the part, one
/// more than its slots), then the residues, stamped with a hash of all that. `fingerprints`
/// is the set's, in order; the part's are taken from it.
fn part_of(
    fingerprints: &mut Peekable<impl Iterator<Item = u64>>,
    part: usize,
    table_bits: u32,
    slots: usize,
) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(PART_TABLE_AT + (slots + 1) * 4 + slots * 32);
    bytes.extend_from_slice(PART_MAGIC);
    bytes.push(FORMAT);
    bytes.resize(PART_TABLE_AT + (slots + 1) * 4, 0);
    let mut residues = Vec::new();
    for local in 0..slots {
        let slot = part * slots + local;
        put_u32(&mut bytes, PART_TABLE_AT + local * 4, count(residues.len()));
        while let Some(fp) = fingerprints.next_if(|fp| top(*fp, table_bits) == slot) {
            residues.push(residue(fp, table_bits));
        }
    }
    put_u32(&mut bytes, PART_TABLE_AT + slots * 4, count(residues.len()));
    put_u32(&mut bytes, PART_TABLE_AT - 4, count(residues.len()));
    for r in residues {
        bytes.extend_from_slice(&r.to_le_bytes());
    }
    let stamp = content_hash(bytes.get(PART_STAMP_END..).unwrap_or_default());
    if let Some(at) = bytes.get_mut(PART_STAMP_END - 8..PART_STAMP_END) {
        at.copy_from_slice(&stamp.to_le_bytes());
    }
    bytes
}

/// Where a part's stamp ends (after magic and format).
const PART_STAMP_END: usize = 4 + 1 + 8;

/// A part's stamp: the same content has the same stamp whoever wrote it, and another content
/// another stamp (a 64-bit hash: a collision is 2^-64 likely, and needs the same layout too).
fn content_hash(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64 ^ (bytes.len() as u64);
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        word.get_mut(..chunk.len())
            .unwrap_or_default()
            .copy_from_slice(chunk);
        hash ^= u64::from_le_bytes(word);
        hash = hash.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        hash ^= hash >> 29;
    }
    crate::mix::fmix64(hash)
}

fn stamp_of(part: &[u8]) -> u64 {
    part.get(PART_STAMP_END - 8..PART_STAMP_END)
        .and_then(u64_of)
        .unwrap_or(0)
}

/// A part as read back: its stamp must be the one the head names, and every offset is
/// checked here, so lookups need not trust it.
fn part_checked(bytes: &[u8], head: &Head, part: usize) -> bool {
    let slots = head.slots_per_part();
    let mut reader = Reader { bytes, at: 0 };
    let (Some(magic), Some(format), Some(stamp)) = (reader.take(4), reader.take(1), reader.take(8))
    else {
        return false;
    };
    // The stamp is the one the head names, and the hash of what follows it.
    if magic != PART_MAGIC
        || format != [FORMAT]
        || u64_of(stamp).as_ref() != head.part_stamps.get(part)
        || u64_of(stamp)
            != Some(content_hash(
                bytes.get(PART_STAMP_END..).unwrap_or_default(),
            ))
    {
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

/// The bucket layout for `set`: the last one's while the list is within a factor of two of
/// its size, so a list that hovers at a boundary does not change layout at every fetch.
fn chosen_bucket_bits(set: &RevocationSet, last: Option<&Head>) -> u32 {
    let ideal = bucket_bits(set.len());
    match last {
        Some(last) if last.bucket_bits.abs_diff(ideal) <= 1 => last.bucket_bits,
        _ => ideal,
    }
}

/// Shares `set` as workers read it: its buckets, its index parts, then the head that names
/// them (a worker that adopts the head finds this set's parts and buckets). `false` if a
/// value could not be written.
///
/// Only what differs from what is shared is written, whoever wrote that: a bucket or a part
/// the same as the one in shared data is left as it is, and a part keeps its stamp, so a
/// worker keeps its copy. Comparing with what is shared, not with what this VM shared last,
/// means two writers at once (a lease that moved) leave nothing that the next share does not
/// mend.
///
/// Then clears what no head names any more: the buckets of the layout before the last one,
/// parts past the new count.
pub fn share(set: &RevocationSet, shared: &dyn SharedValues) -> bool {
    let last = shared
        .get(Value::Head)
        .and_then(|bytes| Head::decode(&bytes));
    let fingerprint_count = set.fingerprint_count();
    let table_bits = table_bits(fingerprint_count);
    let part_bits = table_bits.saturating_sub(PART_SLOT_BITS);
    let bucket_bits = chosen_bucket_bits(set, last.as_ref());
    let put_if_changed = |value: Value, bytes: &[u8]| {
        shared.get(value).as_deref() == Some(bytes) || shared.put(value, bytes)
    };
    let mut buckets = bucket_entries(set, bucket_bits);
    for index in 0..1usize << bucket_bits {
        let value = Value::Bucket {
            bits: bucket_bits,
            index,
        };
        if !put_if_changed(value, buckets(index).encoded().as_bytes()) {
            return false;
        }
    }
    let slots = 1 << (table_bits - part_bits);
    let mut fingerprints = fingerprints(set).peekable();
    let mut part_stamps = Vec::with_capacity(1 << part_bits);
    for part in 0..1usize << part_bits {
        let bytes = part_of(&mut fingerprints, part, table_bits, slots);
        part_stamps.push(stamp_of(&bytes));
        if !put_if_changed(Value::Part(part), &bytes) {
            return false;
        }
    }
    let head = Head {
        table_bits,
        part_bits,
        bucket_bits,
        previous_bucket_bits: last.as_ref().map_or(bucket_bits, |l| l.bucket_bits),
        len: set.len(),
        fingerprints: fingerprint_count,
        part_stamps,
        cutoffs: set.cutoffs().to_vec(),
        version: set.version.clone(),
        etag: set.etag.clone(),
    };
    if !shared.put(Value::Head, &head.encode()) {
        return false;
    }
    if let Some(last) = last {
        let older = last.previous_bucket_bits;
        if older != bucket_bits && older != last.bucket_bits {
            for index in 0..1usize << older {
                shared.put(Value::Bucket { bits: older, index }, b"");
            }
        }
        for part in head.parts()..last.parts() {
            shared.put(Value::Part(part), b"");
        }
    }
    true
}

/// The entries of one bucket.
#[derive(Debug, Default, PartialEq, Eq)]
struct Entries {
    exact: Vec<u64>,
    subjects: Vec<(u64, i64)>,
}

impl Entries {
    /// A `RevocationSet` encoding of them (no cutoffs, no version: the head has them).
    fn encoded(&self) -> RevocationSet {
        let mut builder = SetBuilder::default();
        for fp in &self.exact {
            builder.add_exact_fingerprint(*fp);
        }
        for (fp, cutoff) in &self.subjects {
            builder.add_subject_fingerprint(*fp, *cutoff);
        }
        builder.build("", "")
    }
}

/// A set's exact and subject entries, bucket by bucket: call it with 0, 1, 2, ... in order.
fn bucket_entries(set: &RevocationSet, bits: u32) -> impl FnMut(usize) -> Entries + '_ {
    let mut exact = set.exact_fingerprints().peekable();
    let mut subjects = set.subject_entries().peekable();
    move |index| {
        let mut entries = Entries::default();
        while let Some(fp) = exact.next_if(|fp| top(*fp, bits) == index) {
            entries.exact.push(fp);
        }
        while let Some(entry) = subjects.next_if(|(fp, _)| top(*fp, bits) == index) {
            entries.subjects.push(entry);
        }
        entries
    }
}

/// A list as a worker holds it: the index, and where to read its buckets.
#[derive(Clone)]
pub struct IndexedSet {
    /// Boxed: an `IndexedSet` is handed back and forth whole.
    head: Box<Head>,
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
    /// The set shared now: its head, then its parts. `held`: the one this VM holds, whose parts
    /// are kept where the head names the same stamp (a set that changed a little is read a
    /// little). A part of another set (one shared meanwhile) means reading again.
    ///
    /// `Err` gives `held` back when no readable set is shared. When less than half of it can
    /// be kept, it is dropped before anything is read (a VM never holds two indexes; `Err(None)`
    /// then), unless `keep_held` (a caller that must go on enforcing what it holds).
    pub fn adopt(
        shared: Rc<dyn SharedValues>,
        held: Option<IndexedSet>,
        keep_held: bool,
    ) -> Result<Self, Option<IndexedSet>> {
        let mut held = held;
        for _ in 0..ADOPT_ATTEMPTS {
            let Some(head) = shared
                .get(Value::Head)
                .and_then(|bytes| Head::decode(&bytes))
            else {
                return Err(held);
            };
            let kept = |held: &IndexedSet, part: usize| {
                held.head.table_bits == head.table_bits
                    && held.head.part_bits == head.part_bits
                    && held.head.part_stamps.get(part) == head.part_stamps.get(part)
                    && held.parts.get(part).is_some_and(|bytes| !bytes.is_empty())
            };
            let keepable = held.as_ref().map_or(0, |h| {
                (0..head.parts()).filter(|part| kept(h, *part)).count()
            });
            if !keep_held && keepable * 2 < head.parts() {
                held = None;
            }
            // What is not kept is read first; `held` is touched only once all of it is.
            let mut read = Vec::with_capacity(head.parts());
            for part in 0..head.parts() {
                if held.as_ref().is_some_and(|h| kept(h, part)) {
                    read.push(None);
                    continue;
                }
                match shared
                    .get(Value::Part(part))
                    .filter(|bytes| part_checked(bytes, &head, part))
                {
                    Some(bytes) => read.push(Some(bytes)),
                    None => break,
                }
            }
            if read.len() < head.parts() {
                continue;
            }
            let parts = read
                .into_iter()
                .enumerate()
                .map(|(part, bytes)| {
                    bytes.unwrap_or_else(|| {
                        held.as_mut()
                            .and_then(|h| h.parts.get_mut(part))
                            .map(std::mem::take)
                            .unwrap_or_default()
                    })
                })
                .collect();
            return Ok(IndexedSet {
                head: Box::new(head),
                parts,
                shared,
            });
        }
        Err(held)
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
        let wanted = u64::from(residue(fp, self.head.table_bits));
        let residue_at = |i: usize| u64::from(u16_at(part, residues_at + (start + i) * 2));
        sorted_search(end.saturating_sub(start), residue_at, wanted).is_some()
    }

    fn bucket(&self, index: usize) -> Option<RevocationSet> {
        let bits = self.head.bucket_bits;
        RevocationSet::decode(self.shared.get(Value::Bucket { bits, index })?)
    }

    /// As `RevocationSet::cutoff_of_subject` on the whole set; `None` when the bucket it
    /// needed could not be read.
    pub fn cutoff_of_subject(&self, fp: u64) -> Option<Option<i64>> {
        if !self.may_hold(fp) {
            return Some(None);
        }
        let bucket = self.bucket(top(fp, self.head.bucket_bits))?;
        Some(bucket.cutoff_of_subject(fp))
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
