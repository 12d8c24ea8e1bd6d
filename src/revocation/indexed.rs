//! The polled list as a worker holds it: an index of its fingerprints, with the entries
//! themselves left in shared data, split into buckets that a worker reads only when the
//! index says a token may be listed.
//!
//! Why: shared data hands every VM its own copy of a value, so each worker held the whole
//! list (8 bytes per entry: 8 MB for 1,000,000 entries, per worker). The index keeps 14 bits
//! of each fingerprint after its slot's, Elias-Fano coded: about 1.5 MB for the same list
//! (format 4, 16 bits Elias-Fano coded: 1.8 MB; before it, the 16 bits as they are and a
//! 32-bit offset per slot: 2.26 MB). The VM
//! that polls (Envoy's main thread) still holds the whole set: applying deltas and the
//! rollback guard read it.
//!
//! Exactness: the index answers "maybe" for every listed fingerprint and for about 1 in
//! 1,000-2,000 of the others up to 2^20 of them (14 bits after the table's, 8-16 fingerprints
//! per slot; more often above, see `RESIDUE_BITS`); "maybe" reads
//! one bucket (about 2 KB for 1M entries), which decides exactly. A bucket that cannot be read
//! leaves the answer unknown: the list's stale policy decides (`on_stale`, deny by default),
//! as when the list itself could not be fetched.
//!
//! Shared values (`Value`): a small head (what a lookup needs besides the fingerprints), the
//! index in parts of at most 1,024 slots (about 24 KB each: Envoy copies a value on every read,
//! and one 2 MB copy per worker stayed with its allocator), and the buckets, named by their
//! layout (a worker still holding the last list's head never reads another layout's bucket as
//! its own). The head is written last and stamps its parts: a worker that reads parts of two
//! lists (one being shared meanwhile) sees it and reads again.

use std::fmt;
use std::iter::Peekable;
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
/// Part of the shared values' keys too (the filter names them with it): module versions
/// of another format neither read nor overwrite these values during an upgrade.
pub const FORMAT: u8 = 5;
/// At most 65,536 slots in the index table (256 KB of offsets).
const MAX_TABLE_BITS: u32 = 16;
/// At most 1,024 slots per part.
const PART_SLOT_BITS: u32 = 10;
/// At most 4,096 buckets (shared values; 2 KB each for 1M entries).
const MAX_BUCKET_BITS: u32 = 12;
/// Reads of a list being shared meanwhile before adoption gives up until the next tick.
const ADOPT_ATTEMPTS: usize = 3;
/// Bits of each fingerprint kept after its slot's: a lookup of a fingerprint that is not
/// listed answers "maybe" (and reads a bucket) about once in 2^14 / (fingerprints per slot):
/// 1 in 1,024-2,048 while the table grows with the list (8-16 per slot, up to 2^20
/// fingerprints), then more often (the table stops at 2^16 slots: 1 in 537 at 2M, 1 in 268 at
/// 4M). Format 4's 16 bits took a quarter of that, at 2 more bits per entry. A bucket read is
/// one shared-data copy of about 2 KB, and a request makes about 8 lookups (`jti`, `sub` and
/// two token hashes, in the any-provider scope and its provider's; etcd's set as many again):
/// at 1M entries about 1 request in 130 reads a bucket it did not need (1 in 540 before).
const RESIDUE_BITS: u32 = 14;
/// Of a residue's 14 bits, the low 10 are kept as they are, packed; the top 4 with the slot
/// make the entry's high value, coded in unary (Elias-Fano: about 12 bits per entry, where
/// the 16-bit residues took 14 and, as they were with a 32-bit offset per slot, 18).
const LOW_BITS: u32 = 10;
const LOW_MASK: u16 = (1 << LOW_BITS) - 1;
/// High values per slot (the residue's top 4 bits).
const HIGHS_PER_SLOT: usize = 1 << (RESIDUE_BITS - LOW_BITS);
// A packed low is read as the little-endian u16 at its first byte: it must fit there at
// every bit offset its position gives it.
const _: () = assert!(largest_low_end() <= 16 && LOW_BITS < RESIDUE_BITS && RESIDUE_BITS <= 16);

const fn largest_low_end() -> u32 {
    let (mut i, mut end) = (0, 0);
    while i < 8 {
        let shift = (i * LOW_BITS) % 8;
        if shift + LOW_BITS > end {
            end = shift + LOW_BITS;
        }
        i += 1;
    }
    end
}
/// A worker notes where every 64th high value's entries start in the unary code (a lookup
/// scans from there: at most 63 ends of high values and the entries between, about two
/// 56-bit windows).
const SAMPLE_EVERY: usize = 64;
/// Bits of the unary code one read looks at (a u64 read at any bit offset has 57 or more).
const WINDOW: usize = 56;
const WINDOW_MASK: u64 = (1 << WINDOW) - 1;

fn ceil_log2(n: usize) -> u32 {
    usize::BITS - n.saturating_sub(1).leading_zeros()
}

/// 8-16 fingerprints per slot (up to 2^20 of them): the table is an eighth to a sixteenth of the residues.
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

/// The `RESIDUE_BITS` bits after the table's.
fn residue(fp: u64, table_bits: u32) -> u16 {
    ((fp << table_bits) >> (64 - RESIDUE_BITS)) as u16
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
        // The only layout a writer makes: parts of 1,024 slots, or one part. A head of many
        // small parts would make a worker hold a part, its samples and a stamp for each.
        if table_bits > MAX_TABLE_BITS
            || part_bits != table_bits.saturating_sub(PART_SLOT_BITS)
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
const PART_BODY_AT: usize = 4 + 1 + 8 + 4;

/// The unary code's length in bytes, then the packed low bits': `None` past what a u32
/// count can mean.
fn part_lengths(entries: usize, highs: usize) -> Option<(usize, usize)> {
    let unary = entries.checked_add(highs)?.div_ceil(8);
    let lows = entries.checked_mul(LOW_BITS as usize)?.div_ceil(8);
    Some((unary, lows))
}

/// One part of an index: its fingerprints' residues, Elias-Fano coded. Entry `i` (in order)
/// of high value `h` (slot within the part times 16, plus the residue's top 4 bits) is a one
/// at bit `h + i` of the unary code, and every high value ends with a zero; its low 10 bits
/// are the `i`th of the packed lows. Stamped with a hash of all that. `fingerprints` is the
/// set's, in order; the part's are taken from it.
fn part_of(
    fingerprints: &mut Peekable<impl Iterator<Item = u64>>,
    part: usize,
    table_bits: u32,
    slots: usize,
) -> Vec<u8> {
    let mut entries: Vec<(usize, u16)> = Vec::new();
    for local in 0..slots {
        let slot = part * slots + local;
        while let Some(fp) = fingerprints.next_if(|fp| top(*fp, table_bits) == slot) {
            let r = residue(fp, table_bits);
            let high = local * HIGHS_PER_SLOT + usize::from(r >> LOW_BITS);
            entries.push((high, r & LOW_MASK));
        }
    }
    let (unary_len, lows_len) =
        part_lengths(entries.len(), slots * HIGHS_PER_SLOT).unwrap_or_default();
    let mut unary = vec![0u8; unary_len];
    // One byte more while packing: the last entry's u16 may reach past the lows.
    let mut lows = vec![0u8; lows_len + 1];
    for (i, (high, low)) in entries.iter().enumerate() {
        if let Some(byte) = unary.get_mut((high + i) / 8) {
            *byte |= 1 << ((high + i) % 8);
        }
        let (at, shift) = low_at(i);
        for (to, from) in lows.iter_mut().skip(at).zip((low << shift).to_le_bytes()) {
            *to |= from;
        }
    }
    lows.truncate(lows_len);
    let mut bytes = Vec::with_capacity(PART_BODY_AT + unary_len + lows_len);
    bytes.extend_from_slice(PART_MAGIC);
    bytes.push(FORMAT);
    bytes.extend_from_slice(&[0; 8]); // the stamp, below
    bytes.extend_from_slice(&count(entries.len()).to_le_bytes());
    bytes.extend_from_slice(&unary);
    bytes.extend_from_slice(&lows);
    let stamp = content_hash(bytes.get(PART_STAMP_END..).unwrap_or_default());
    if let Some(at) = bytes.get_mut(PART_STAMP_END - 8..PART_STAMP_END) {
        at.copy_from_slice(&stamp.to_le_bytes());
    }
    bytes
}

/// Where entry `i`'s 10 low bits are: the byte they start in, and the shift within the
/// little-endian u16 read there.
fn low_at(i: usize) -> (usize, u32) {
    let bit = i * LOW_BITS as usize;
    (bit / 8, (bit % 8) as u32)
}

/// Where the `n`th (from 1) set bit of `word` is; `word` has at least `n`. A byte at a time,
/// then a bit at a time: at most 7 + 7 steps where clearing the lowest bit `n - 1` times took
/// up to 55.
fn nth_set_bit(word: u64, n: usize) -> usize {
    let (mut shift, mut left) = (0, n);
    while shift < 56 {
        let in_byte = ((word >> shift) & 0xff).count_ones() as usize;
        if in_byte >= left {
            break;
        }
        left -= in_byte;
        shift += 8;
    }
    let mut byte = (word >> shift) & 0xff;
    for _ in 1..left {
        byte &= byte.wrapping_sub(1);
    }
    shift + byte.trailing_zeros() as usize
}

/// Whether the lows of each high value are in order, as a lookup needs (it stops at the first
/// larger one). Two entries are of the same high value exactly when their ones are next to
/// each other (no end between them).
fn lows_in_order(unary: &[u8], lows: &[u8]) -> bool {
    let (mut entry, mut previous_at, mut previous_low) = (0, usize::MAX - 1, 0);
    let mut out_of_order = false;
    for word_at in 0..unary.len().div_ceil(8) {
        let mut ones = word_at_byte(unary, word_at * 8);
        while ones != 0 {
            let at = word_at * 64 + ones.trailing_zeros() as usize;
            ones &= ones - 1;
            let low = low_of(lows, entry);
            // Without branching on it (which way it goes is random).
            out_of_order |= (at == previous_at + 1) & (low < previous_low);
            (entry, previous_at, previous_low) = (entry + 1, at, low);
        }
    }
    !out_of_order
}

/// Entry `i`'s 10 low bits (zeros past the end).
fn low_of(lows: &[u8], i: usize) -> u16 {
    let (byte, shift) = low_at(i);
    let packed = u16::from_le_bytes([
        lows.get(byte).copied().unwrap_or(0),
        lows.get(byte + 1).copied().unwrap_or(0),
    ]);
    (packed >> shift) & LOW_MASK
}

/// The 56 bits of `bits` from bit `at` on (zeros past the end).
fn window(bits: &[u8], at: usize) -> u64 {
    (word_at_byte(bits, at / 8) >> (at % 8)) & WINDOW_MASK
}

/// The 8 bytes of `bytes` from byte `from` on, little-endian (zeros past the end).
fn word_at_byte(bytes: &[u8], from: usize) -> u64 {
    let word = match bytes.get(from..from + 8) {
        Some(eight) => eight.try_into().unwrap_or([0; 8]),
        None => {
            let mut word = [0u8; 8];
            for (to, from) in word.iter_mut().zip(bytes.iter().skip(from)) {
                *to = *from;
            }
            word
        }
    };
    u64::from_le_bytes(word)
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

/// One part of the index as a worker holds it.
#[derive(Clone, Default)]
struct Part {
    bytes: Vec<u8>,
    entries: usize,
    unary_len: usize,
    /// Where high value `64k`'s entries start in the unary code, for every `k`: worked out on
    /// reading, from the checked code, not taken from shared data.
    samples: Vec<u32>,
}

impl Part {
    /// A part as read back: its stamp must be the one the head names, and the hash of its
    /// content; its unary code must hold exactly its entries, one end per high value. Checked
    /// here, so lookups need not trust it.
    fn read(bytes: Vec<u8>, head: &Head, part: usize) -> Option<Part> {
        let mut reader = Reader {
            bytes: &bytes,
            at: 0,
        };
        let (magic, format, stamp) = (reader.take(4)?, reader.take(1)?, reader.take(8)?);
        if magic != PART_MAGIC
            || format != [FORMAT]
            || u64_of(stamp).as_ref() != head.part_stamps.get(part)
            || u64_of(stamp) != Some(content_hash(bytes.get(PART_STAMP_END..)?))
        {
            return None;
        }
        let entries = reader.u32()?;
        let highs = head.slots_per_part() * HIGHS_PER_SLOT;
        let (unary_len, lows_len) = part_lengths(entries, highs)?;
        if bytes.len() != PART_BODY_AT.checked_add(unary_len)?.checked_add(lows_len)? {
            return None;
        }
        let (unary, lows) = bytes.get(PART_BODY_AT..)?.split_at_checked(unary_len)?;
        let bits = entries + highs;
        if unary
            .last()
            .is_some_and(|last| !bits.is_multiple_of(8) && last >> (bits % 8) != 0)
        {
            return None; // bits past the code: not as a writer writes them
        }
        // High value 0's entries start at bit 0; high value 64k's after the 64k-th end.
        let mut samples = vec![0u32];
        let (mut ones, mut ends) = (0, 0);
        for (at, byte) in unary.iter().enumerate() {
            let valid = bits.checked_sub(at * 8)?.min(8);
            let byte_ends = valid.checked_sub(byte.count_ones() as usize)?;
            if (ends + byte_ends) / SAMPLE_EVERY == ends / SAMPLE_EVERY {
                ends += byte_ends;
            } else {
                for bit in 0..valid {
                    if byte >> bit & 1 == 0 {
                        ends += 1;
                        if ends % SAMPLE_EVERY == 0 && ends < highs {
                            samples.push(u32::try_from(at * 8 + bit + 1).ok()?);
                        }
                    }
                }
            }
            ones += byte.count_ones() as usize;
        }
        if !lows_in_order(unary, lows) {
            return None;
        }
        (ones == entries && ends == highs).then_some(Part {
            bytes,
            entries,
            unary_len,
            samples,
        })
    }

    /// Bytes held for it.
    fn held_bytes(&self) -> usize {
        self.bytes.len() + self.samples.len() * 4
    }

    /// Whether an entry of `high` has the low bits `low` (the entries of a high value are in
    /// order of their low bits).
    fn holds(&self, high: usize, low: u16) -> bool {
        let unary = self
            .bytes
            .get(PART_BODY_AT..PART_BODY_AT + self.unary_len)
            .unwrap_or_default();
        let lows = self
            .bytes
            .get(PART_BODY_AT + self.unary_len..)
            .unwrap_or_default();
        let Some(&sample) = self.samples.get(high / SAMPLE_EVERY) else {
            return true; // not a high value of this part: "maybe", so a bucket decides
        };
        // Past the ends of the high values before `high` from the sample on...
        let mut at = sample as usize;
        let mut ends_to_pass = high % SAMPLE_EVERY;
        while ends_to_pass > 0 {
            let ends = !window(unary, at) & WINDOW_MASK;
            let found = ends.count_ones() as usize;
            if found < ends_to_pass {
                ends_to_pass -= found;
                at += WINDOW;
                continue;
            }
            at += nth_set_bit(ends, ends_to_pass) + 1;
            ends_to_pass = 0;
        }
        // ...the ones from `at` on are its entries; entry `i` is the one at `high + i`.
        let Some(mut i) = at.checked_sub(high) else {
            return true;
        };
        loop {
            let run = (window(unary, at).trailing_ones() as usize).min(WINDOW);
            for entry in i..(i + run).min(self.entries) {
                let found = low_of(lows, entry);
                if found >= low {
                    return found == low;
                }
            }
            if run < WINDOW {
                return false;
            }
            at += run;
            i += run;
        }
    }
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
    parts: Vec<Part>,
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
                    && held.parts.get(part).is_some_and(|p| !p.bytes.is_empty())
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
                    .and_then(|bytes| Part::read(bytes, &head, part))
                {
                    Some(read_part) => read.push(Some(read_part)),
                    None => break,
                }
            }
            if read.len() < head.parts() {
                continue;
            }
            let parts = read
                .into_iter()
                .enumerate()
                .map(|(part, read_part)| {
                    read_part.unwrap_or_else(|| {
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
        self.parts.iter().map(Part::held_bytes).sum()
    }

    /// Whether `fp` may be listed: its residue is among its slot's.
    fn may_hold(&self, fp: u64) -> bool {
        let slot = top(fp, self.head.table_bits);
        let slots = self.head.slots_per_part();
        let Some(part) = self.parts.get(slot / slots) else {
            return true;
        };
        let r = residue(fp, self.head.table_bits);
        let high = slot % slots * HIGHS_PER_SLOT + usize::from(r >> LOW_BITS);
        part.holds(high, r & LOW_MASK)
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
