use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use super::*;
use crate::revocation::set::{fingerprint, Kind, ANY_PROVIDER};
use crate::testkit::xorshift;

/// Shared data as the filter keeps it, counting bucket reads.
#[derive(Default)]
struct Shared {
    values: RefCell<HashMap<Value, Vec<u8>>>,
    bucket_reads: Cell<usize>,
    /// Buckets and parts written (cleared ones not counted).
    writes: Cell<(usize, usize)>,
}

impl SharedValues for Shared {
    fn get(&self, value: Value) -> Option<Vec<u8>> {
        if matches!(value, Value::Bucket { .. }) {
            self.bucket_reads.set(self.bucket_reads.get() + 1);
        }
        self.values
            .borrow()
            .get(&value)
            .filter(|v| !v.is_empty())
            .cloned()
    }

    fn put(&self, value: Value, bytes: &[u8]) -> bool {
        let (buckets, parts) = self.writes.get();
        match value {
            Value::Bucket { .. } if !bytes.is_empty() => self.writes.set((buckets + 1, parts)),
            Value::Part(_) if !bytes.is_empty() => self.writes.set((buckets, parts + 1)),
            _ => {}
        }
        self.values.borrow_mut().insert(value, bytes.to_vec());
        true
    }
}

impl Shared {
    fn buckets(&self) -> Vec<Value> {
        let values = self.values.borrow();
        let mut found: Vec<Value> = values
            .iter()
            .filter(|(k, v)| matches!(k, Value::Bucket { .. }) && !v.is_empty())
            .map(|(k, _)| *k)
            .collect();
        found.sort_by_key(|v| format!("{v:?}"));
        found
    }

    fn set_buckets(&self, bytes: Option<&[u8]>) {
        for value in self.buckets() {
            self.values
                .borrow_mut()
                .insert(value, bytes.unwrap_or_default().to_vec());
        }
    }
}

/// `set` shared as the polling VM shares it, and held as a worker holds it.
fn shared(set: &RevocationSet) -> (IndexedSet, Rc<Shared>) {
    let source = Rc::new(Shared::default());
    assert!(share(set, &*source));
    let indexed = IndexedSet::adopt(source.clone(), None, false).unwrap();
    (indexed, source)
}

fn list(n: u32) -> RevocationSet {
    let mut b = SetBuilder::default();
    for i in 0..n {
        b.add_exact(
            Kind::Jti,
            if i % 3 == 0 { ANY_PROVIDER } else { "corp" },
            format!("j{i}").as_bytes(),
        );
        if i % 7 == 0 {
            // Never the probes' token hash ([3; 32]).
            let mut hash = [1; 32];
            hash[..4].copy_from_slice(&i.to_le_bytes());
            b.add_exact(Kind::TokenSha256, "corp", &hash);
        }
        if i % 5 == 0 {
            b.add_subject("corp", &format!("s{i}"), i64::from(i));
        }
    }
    b.build(&format!("v{n}"), "\"e\"")
}

fn probe(jti: &str, sub: &str, iat: i64) -> Probe {
    Probe::new("corp", Some(jti), Some(sub), Some(iat), Some(&[3; 32]))
}

#[test]
fn a_worker_decides_as_the_whole_list_would_and_rarely_reads_a_bucket() {
    for n in [0, 1, 10, 300, 5_000, 70_000] {
        let set = list(n);
        let (indexed, source) = shared(&set);
        assert_eq!(indexed.len(), set.len());
        assert_eq!(indexed.version(), set.version);
        assert_eq!(indexed.etag(), "\"e\"");
        // Every listed entry: revoked, as the whole list says.
        for i in (0..n).step_by(97) {
            let listed = probe(&format!("j{i}"), "nobody", 0);
            assert_eq!(indexed.revokes(&listed), Some(true), "n={n} j{i}");
            let by_subject = probe("unlisted", &format!("s{}", i - i % 5), i64::from(i - i % 5));
            assert_eq!(
                indexed.revokes(&by_subject),
                Some(set.revokes(&by_subject)),
                "n={n} s{i}"
            );
            let after_cutoff = probe("unlisted", &format!("s{}", i - i % 5), i64::from(i) + 1);
            assert_eq!(
                indexed.revokes(&after_cutoff),
                Some(false),
                "issued after its subject's cutoff"
            );
        }
        // Unlisted tokens: allowed, and almost none reads a bucket.
        source.bucket_reads.set(0);
        for i in 0..20_000 {
            let unlisted = probe(&format!("other-{i}"), &format!("user-{i}"), 1);
            assert_eq!(indexed.revokes(&unlisted), Some(false));
        }
        // Each probe has 6 fingerprints (jti, sub and the token hash, in two scopes): 120,000
        // lookups, about 1 in 1,000-2,000 a "maybe" (8-16 fingerprints per slot, 14 bits
        // after it; 55-67 reads here, 14-22 with format 4's 16 bits).
        assert!(
            source.bucket_reads.get() < 100,
            "n={n}: {} bucket reads",
            source.bucket_reads.get()
        );
    }
}

#[test]
fn scope_cutoffs_and_token_hashes_are_decided_as_by_the_whole_list() {
    let mut b = SetBuilder::default();
    b.add_cutoff("corp", 100);
    b.add_exact(Kind::TokenSha256, "corp", &[9; 32]);
    b.add_subject(ANY_PROVIDER, "alice", 50);
    let set = b.build("v", "");
    let (indexed, _) = shared(&set);
    for probe in [
        Probe::new("corp", None, None, Some(100), None),
        Probe::new("corp", None, None, Some(101), None),
        Probe::new("other", None, None, Some(1), None),
        Probe::new("other", None, None, Some(1), Some(&[9; 32])),
        Probe::new("corp", None, None, Some(101), Some(&[9; 32])),
        Probe::new("other", None, Some("alice"), Some(50), None),
        Probe::new("other", None, Some("alice"), Some(51), None),
        Probe::new("other", None, Some("alice"), None, None),
    ] {
        assert_eq!(
            indexed.revokes(&probe),
            Some(set.revokes(&probe)),
            "{probe:?}"
        );
    }
}

#[test]
fn a_bucket_that_cannot_be_read_leaves_what_the_index_may_hold_unknown() {
    let set = list(5_000);
    let (indexed, source) = shared(&set);
    let listed = probe("j42", "nobody", 0);
    let unlisted = probe("other", "nobody", 0);
    for broken in [None, Some(&b"garbage"[..])] {
        source.set_buckets(broken);
        assert_eq!(indexed.revokes(&listed), None, "{broken:?}");
        source.bucket_reads.set(0);
        assert_eq!(
            indexed.revokes(&unlisted),
            Some(false),
            "the index alone says no"
        );
        assert_eq!(source.bucket_reads.get(), 0);
    }
}

fn with(set: &RevocationSet, jti: &str) -> RevocationSet {
    let mut b = SetBuilder::default();
    b.add_set(set);
    b.add_exact(Kind::Jti, "corp", jti.as_bytes());
    b.build("next", "")
}

#[test]
fn a_bucket_shared_after_the_head_decides_by_the_newer_list() {
    // The polling VM writes the buckets first: a worker may read a bucket of the next list
    // before it adopts that list's head.
    let old = list(300);
    let (indexed, source) = shared(&old);
    let newer = with(&old, "newly-listed");
    let newer_source = Shared::default();
    share(&newer, &newer_source);
    for value in newer_source.buckets() {
        let bytes = newer_source.values.borrow()[&value].clone();
        source.put(value, &bytes);
    }
    assert_eq!(
        indexed.revokes(&probe("j1", "nobody", 0)),
        Some(true),
        "still listed"
    );
    // Not in this worker's index yet: decided at its next adoption, as before.
    assert_eq!(
        indexed.revokes(&probe("newly-listed", "nobody", 0)),
        Some(false)
    );
    assert_eq!(
        IndexedSet::adopt(source.clone(), None, false)
            .unwrap()
            .revokes(&probe("j1", "nobody", 0)),
        Some(true)
    );
    // A list that dropped every entry but one (allow_removal): its buckets say so.
    let mut b = SetBuilder::default();
    b.add_exact(Kind::Jti, ANY_PROVIDER, b"j0");
    let (indexed, source) = shared(&old);
    let dropped = Shared::default();
    share(&b.build("v3", ""), &dropped);
    let bucket = dropped.values.borrow()[&dropped.buckets()[0]].clone();
    source.set_buckets(Some(&bucket));
    assert_eq!(indexed.revokes(&probe("j1", "nobody", 0)), Some(false));
}

#[test]
fn a_worker_holding_the_last_layout_reads_its_buckets_until_the_next_share() {
    // 300 entries are 2 buckets; 5,000 are 32: the same bucket number holds other entries.
    let small = list(300);
    let (indexed, source) = shared(&small);
    assert_eq!(source.buckets().len(), bucket_count(small.len()));
    let large = list(5_000);
    assert!(share(&large, &*source));
    // The worker still holding the small list's head decides by its own layout's buckets.
    assert_eq!(indexed.revokes(&probe("j1", "nobody", 0)), Some(true));
    assert_eq!(indexed.revokes(&probe("j4999", "nobody", 0)), Some(false));
    let adopted = IndexedSet::adopt(source.clone(), None, false).unwrap();
    assert_eq!(adopted.revokes(&probe("j4999", "nobody", 0)), Some(true));
    assert_eq!(adopted.len(), large.len());
    // The next share clears the small layout: no head names it any more, and a worker that
    // somehow still held it finds its buckets gone (unknown, the stale policy) rather than
    // another layout's.
    assert!(share(&with(&large, "more"), &*source));
    assert_eq!(source.buckets().len(), bucket_count(large.len()));
    assert_eq!(indexed.revokes(&probe("j1", "nobody", 0)), None);
}

#[test]
fn a_list_near_a_layout_boundary_keeps_its_layout() {
    // 4,000 entries would be 16 buckets, 4,200 32: the layout stays while the list is within
    // a factor of two of it.
    let (_, source) = shared(&list(4_000));
    let before = source.buckets();
    for n in [4_200, 3_900, 8_000, 2_100] {
        assert!(share(&list(n), &*source));
        assert_eq!(source.buckets(), before, "{n} entries");
    }
    assert!(share(&list(20_000), &*source));
    assert_ne!(source.buckets().len(), before.len());
}

/// The buckets and parts `work` writes.
fn writes(shared: &Shared, work: impl FnOnce()) -> (usize, usize) {
    shared.writes.set((0, 0));
    work();
    shared.writes.get()
}

#[test]
fn a_list_that_changed_a_little_is_written_and_read_a_little() {
    let old = list(70_000);
    let source = Rc::new(Shared::default());
    assert!(share(&old, &*source));
    let held = IndexedSet::adopt(source.clone(), None, false).unwrap();
    let parts = held.parts.len();
    assert!(parts > 4, "{parts}");
    // One entry more: one bucket and one part change; the rest stays as written.
    let newer = with(&old, "newly-listed");
    assert_eq!(writes(&source, || assert!(share(&newer, &*source))), (1, 1));
    // A worker keeps its copy of every other part.
    let counting = Rc::new(Counting {
        inner: source.clone(),
        part_reads: Cell::new(0),
    });
    let adopted = IndexedSet::adopt(counting.clone(), Some(held), false).unwrap();
    assert_eq!(counting.part_reads.get(), 1);
    assert_eq!(
        adopted.revokes(&probe("newly-listed", "nobody", 0)),
        Some(true)
    );
    assert_eq!(adopted.revokes(&probe("j69999", "nobody", 0)), Some(true));
    // The same list again: nothing is written.
    assert_eq!(writes(&source, || assert!(share(&newer, &*source))), (0, 0));
}

/// Shared data whose parts are counted as they are read; the first read of part 0 can be
/// another list's (one being shared meanwhile).
struct Counting {
    inner: Rc<Shared>,
    part_reads: Cell<usize>,
}

impl SharedValues for Counting {
    fn get(&self, value: Value) -> Option<Vec<u8>> {
        if matches!(value, Value::Part(_)) {
            self.part_reads.set(self.part_reads.get() + 1);
        }
        self.inner.get(value)
    }
    fn put(&self, value: Value, bytes: &[u8]) -> bool {
        self.inner.put(value, bytes)
    }
}

/// The first read of `part` is another list's: a writer was sharing it meanwhile.
struct Racing {
    inner: Rc<Shared>,
    part: usize,
    theirs: RefCell<Option<Vec<u8>>>,
}

impl SharedValues for Racing {
    fn get(&self, value: Value) -> Option<Vec<u8>> {
        if value == Value::Part(self.part) {
            if let Some(theirs) = self.theirs.borrow_mut().take() {
                return Some(theirs);
            }
        }
        self.inner.get(value)
    }
    fn put(&self, value: Value, bytes: &[u8]) -> bool {
        self.inner.put(value, bytes)
    }
}

/// The first part of `next` that differs from `source`'s, and its number.
fn differing_part(source: &Shared, next: &Shared) -> (usize, Vec<u8>) {
    (0..)
        .map_while(|part| Some((part, next.get(Value::Part(part))?)))
        .find(|(part, bytes)| source.get(Value::Part(*part)).as_ref() != Some(bytes))
        .expect("a part differs")
}

#[test]
fn a_part_read_while_another_list_was_shared_is_read_again() {
    let set = list(70_000);
    let (_, source) = shared(&set);
    let next = Shared::default();
    share(&with(&set, "x"), &next);
    let (part, theirs) = differing_part(&source, &next);
    let racing = Rc::new(Racing {
        inner: source.clone(),
        part,
        theirs: RefCell::new(Some(theirs)),
    });
    let adopted = IndexedSet::adopt(racing.clone(), None, false).expect("read again");
    assert!(
        racing.theirs.borrow().is_none(),
        "the other list's part was read"
    );
    assert_eq!(adopted.revokes(&probe("j7", "nobody", 0)), Some(true));
}

#[test]
fn a_probe_whose_maybes_fall_in_two_buckets_reads_both() {
    // The same subject under two scopes: "" cut off at 100, "corp" at 200; issued at 150, so
    // only the second entry revokes.
    let mut found = 0;
    for k in 0..200 {
        let mut b = SetBuilder::default();
        for i in 0..5_000 {
            b.add_exact(Kind::Jti, ANY_PROVIDER, format!("x{i}").as_bytes());
        }
        let sub = format!("alice{k}");
        b.add_subject(ANY_PROVIDER, &sub, 100);
        b.add_subject("corp", &sub, 200);
        let set = b.build("v", "");
        let p = Probe::new("corp", None, Some(&sub), Some(150), None);
        assert!(set.revokes(&p));
        let (indexed, _) = shared(&set);
        let bits = indexed.head.bucket_bits;
        if top(p.subjects[0], bits) != top(p.subjects[1], bits) {
            found += 1;
            assert_eq!(indexed.revokes(&p), Some(true), "{sub}");
        }
    }
    assert!(found > 50, "{found}");
}

#[test]
fn parts_of_two_lists_are_never_adopted_as_one() {
    let old = list(70_000);
    let (_, source) = shared(&old);
    let parts = |shared: &Shared| {
        let values = shared.values.borrow();
        let mut parts: Vec<(usize, Vec<u8>)> = values
            .iter()
            .filter_map(|(k, v)| match k {
                Value::Part(i) if !v.is_empty() => Some((*i, v.clone())),
                _ => None,
            })
            .collect();
        parts.sort();
        parts
    };
    let old_parts = parts(&source);
    assert!(old_parts.len() > 1, "{}", old_parts.len());
    assert!(old_parts.iter().all(|(_, p)| p.len() < 40 * 1024));
    // The next list is being shared: a part of it is written, the head is not yet.
    let newer = with(&old, "newly-listed");
    let next = Shared::default();
    share(&newer, &next);
    let (part, theirs) = differing_part(&source, &next);
    source.put(Value::Part(part), &theirs);
    assert!(
        IndexedSet::adopt(source.clone(), None, false).is_err(),
        "stamps differ"
    );
    // Once its head is written too (and the other parts), the new list is adopted.
    for (i, part) in parts(&next) {
        source.put(Value::Part(i), &part);
    }
    source.put(Value::Head, &next.get(Value::Head).unwrap());
    let adopted = IndexedSet::adopt(source.clone(), None, false).unwrap();
    assert_eq!(adopted.version(), "next");
}

#[test]
fn the_whole_list_assembles_from_its_buckets_or_not_at_all() {
    for n in [0, 10, 5_000] {
        let set = list(n);
        let (indexed, source) = shared(&set);
        assert_eq!(indexed.assemble().as_ref(), Some(&set), "n={n}");
        let last = *source.buckets().last().unwrap();
        let first = source.buckets()[0];
        let kept = source.values.borrow()[&last].clone();
        source.put(last, b"");
        assert!(indexed.assemble().is_none(), "a bucket missing");
        // A bucket that is not this one (of another list, or of another number).
        if first != last {
            let other = source.values.borrow()[&first].clone();
            source.put(last, &other);
            assert!(
                indexed.assemble().is_none(),
                "n={n}: not the buckets of this list"
            );
        }
        source.put(last, &kept);
        assert!(indexed.assemble().is_some());
    }
}

#[test]
fn a_shared_list_is_checked_before_it_is_trusted() {
    let set = list(3_000);
    let (_, source) = shared(&set);
    let head = source.get(Value::Head).unwrap();
    let part = source.get(Value::Part(0)).unwrap();
    let adopt_with = |value: Value, bytes: &[u8]| {
        let copy = Rc::new(Shared::default());
        for (k, v) in source.values.borrow().iter() {
            copy.put(*k, v);
        }
        copy.put(value, bytes);
        IndexedSet::adopt(copy, None, false).is_ok()
    };
    assert!(adopt_with(Value::Head, &head));
    for cut in [0, 4, 6, 12, 20, head.len() - 1] {
        assert!(!adopt_with(Value::Head, &head[..cut]), "head cut at {cut}");
    }
    for cut in [0, 4, 16, 40, part.len() / 2, part.len() - 1] {
        assert!(
            !adopt_with(Value::Part(0), &part[..cut]),
            "part cut at {cut}"
        );
    }
    let mut longer = part.clone();
    longer.push(0);
    assert!(!adopt_with(Value::Part(0), &longer));
    // A residue changed under the same stamp: not the content the stamp names.
    let mut changed = part.clone();
    let last = changed.len() - 1;
    changed[last] ^= 1;
    assert!(!adopt_with(Value::Part(0), &changed));
    // Table bits past the maximum, part bits past the table's or other than a writer's
    // (3,000 entries: 8 table bits, one part; many small parts would cost a worker more than
    // their bytes), bucket bits past the maximum, the previous layout's too (the bits follow
    // magic and format).
    for (at, value) in [(5, 17), (6, 9), (6, 1), (6, 8), (7, 13), (8, 13)] {
        let mut bad = head.clone();
        bad[at] = value;
        assert!(!adopt_with(Value::Head, &bad), "head byte {at} = {value}");
    }
    // Unary codes that do not hold the part's entries, in parts stamped as a writer would
    // stamp them (and named so by the head): the code itself is checked.
    let stamped_as_written = |mut bad: Vec<u8>| {
        let stamp = content_hash(&bad[PART_STAMP_END..]);
        bad[PART_STAMP_END - 8..PART_STAMP_END].copy_from_slice(&stamp.to_le_bytes());
        let mut named = Head::decode(&head).unwrap();
        named.part_stamps[0] = stamp;
        let copy = Rc::new(Shared::default());
        for (k, v) in source.values.borrow().iter() {
            copy.put(*k, v);
        }
        copy.put(Value::Head, &named.encode());
        copy.put(Value::Part(0), &bad);
        IndexedSet::adopt(copy, None, false).is_ok()
    };
    assert!(
        stamped_as_written(part.clone()),
        "the part itself, restamped"
    );
    let entries = u32::from_le_bytes(part[PART_BODY_AT - 4..PART_BODY_AT].try_into().unwrap());
    let highs = Head::decode(&head).unwrap().slots_per_part() * HIGHS_PER_SLOT;
    let bits = entries as usize + highs;
    let bit = |bytes: &[u8], at: usize| bytes[PART_BODY_AT + at / 8] >> (at % 8) & 1;
    let flipped = |at: usize| {
        let mut bad = part.clone();
        bad[PART_BODY_AT + at / 8] ^= 1 << (at % 8);
        bad
    };
    let first_one = (0..bits).find(|at| bit(&part, *at) == 1).unwrap();
    let first_end = (0..bits).find(|at| bit(&part, *at) == 0).unwrap();
    assert!(
        !stamped_as_written(flipped(first_one)),
        "an entry made an end"
    );
    assert!(
        !stamped_as_written(flipped(first_end)),
        "an end made an entry"
    );
    assert!(
        !stamped_as_written(flipped(bits - 1)),
        "the last high value's end"
    );
    assert_ne!(bits % 8, 0, "3,000 entries leave bits past the code");
    assert!(!stamped_as_written(flipped(bits)), "a bit past the code");
    // One entry fewer and one more, as a count: the lengths no longer fit it.
    for count in [entries - 1, entries + 1, u32::MAX] {
        let mut bad = part.clone();
        bad[PART_BODY_AT - 4..PART_BODY_AT].copy_from_slice(&count.to_le_bytes());
        assert!(!stamped_as_written(bad), "count {count}");
    }
    assert!(
        IndexedSet::adopt(Rc::new(Shared::default()), None, false).is_err(),
        "none shared"
    );
}

#[test]
fn a_worker_holds_at_most_1_8_bytes_per_entry() {
    let set = list(200_000);
    let whole = set.as_bytes().len();
    let (indexed, source) = shared(&set);
    let held = indexed.held_bytes();
    let entries = set.fingerprint_count();
    assert!(
        // 1,743 per 1,000 (format 4's 16-bit residues: 1,993).
        held * 1000 / entries < 1_800,
        "{held} bytes for {entries} entries"
    );
    assert!(held * 3 < whole, "{held} against {whole}");
    // Every value stays small: a worker copies none larger than about 40 KB.
    let largest = source.values.borrow().values().map(Vec::len).max().unwrap();
    assert!(largest < 40 * 1024, "{largest}");
}

/// Runs `hook` once, right after the first read of the head (another writer sharing
/// meanwhile).
struct Interleaved {
    inner: Rc<Shared>,
    hook: RefCell<Option<Box<dyn FnOnce()>>>,
}

impl SharedValues for Interleaved {
    fn get(&self, value: Value) -> Option<Vec<u8>> {
        let got = self.inner.get(value);
        if value == Value::Head {
            if let Some(hook) = self.hook.borrow_mut().take() {
                hook();
            }
        }
        got
    }
    fn put(&self, value: Value, bytes: &[u8]) -> bool {
        self.inner.put(value, bytes)
    }
}

#[test]
fn two_writers_at_once_leave_nothing_the_next_share_does_not_mend() {
    // A (a reader whose lease moved) shares X while B (the new reader) shares Y = X + b: their
    // values interleave. B goes on sharing: its next share compares with what is in shared
    // data, not with what it wrote, so what A overwrote is written again.
    let p = list(70_000);
    let source = Rc::new(Shared::default());
    assert!(share(&p, &*source));
    let x = with(&p, "a-only");
    let y = with(&x, "b-new");
    let hook = {
        let (source, y) = (source.clone(), y.clone());
        Box::new(move || assert!(share(&y, &*source))) as Box<dyn FnOnce()>
    };
    let a_view = Interleaved {
        inner: source.clone(),
        hook: RefCell::new(Some(hook)),
    };
    assert!(share(&x, &a_view));
    let y2 = with(&y, "late");
    assert!(share(&y2, &*source));
    let worker = IndexedSet::adopt(source.clone(), None, false).expect("adopted");
    for jti in ["late", "b-new", "a-only", "j1"] {
        assert_eq!(
            worker.revokes(&probe(jti, "nobody", 0)),
            Some(true),
            "{jti}"
        );
    }
    assert_eq!(worker.assemble().map(|s| s.len()), Some(y2.len()));
}

#[test]
fn an_entry_replaced_by_another_in_the_same_part_and_bucket_is_shared() {
    // allow_removal (or an etcd delete and a put): one entry leaves, another comes, and the
    // count and the part's length stay the same.
    let old = list(70_000);
    let (held, source) = shared(&old);
    let fp_of = |jti: &str| {
        let mut b = SetBuilder::default();
        b.add_exact(Kind::Jti, "corp", jti.as_bytes());
        b.build("", "").exact_fingerprints().next().unwrap()
    };
    let gone = fp_of("j1");
    let (table, parts, buckets) = (
        held.head.table_bits,
        held.head.part_bits,
        held.head.bucket_bits,
    );
    let new_jti = (0..1_000_000)
        .map(|k| format!("new-{k}"))
        .find(|jti| {
            let fp = fp_of(jti);
            top(fp, parts) == top(gone, parts)
                && top(fp, buckets) == top(gone, buckets)
                && top(fp, table) != top(gone, table)
        })
        .unwrap();
    let mut b = SetBuilder::default();
    for fp in old.exact_fingerprints().filter(|fp| *fp != gone) {
        b.add_exact_fingerprint(fp);
    }
    for (fp, cutoff) in old.subject_entries() {
        b.add_subject_fingerprint(fp, cutoff);
    }
    b.add_exact(Kind::Jti, "corp", new_jti.as_bytes());
    let newer = b.build("v2", "");
    assert_eq!(newer.len(), old.len());
    assert_eq!(writes(&source, || assert!(share(&newer, &*source))), (1, 1));
    let adopted = IndexedSet::adopt(source.clone(), Some(held), false).unwrap();
    assert_eq!(adopted.revokes(&probe(&new_jti, "nobody", 0)), Some(true));
    assert_eq!(adopted.revokes(&probe("j1", "nobody", 0)), Some(false));
}

#[test]
fn a_subject_cutoff_is_read_from_its_bucket_or_unknown() {
    let mut b = SetBuilder::default();
    for i in 0..5_000 {
        b.add_exact(Kind::Jti, ANY_PROVIDER, format!("x{i}").as_bytes());
    }
    b.add_subject("corp", "alice", 100);
    let set = b.build("v", "");
    let alice = fingerprint(Kind::Subject, "corp", b"alice");
    let bob = fingerprint(Kind::Subject, "corp", b"bob");
    let (indexed, source) = shared(&set);
    assert_eq!(indexed.cutoff_of_subject(alice), Some(Some(100)));
    assert_eq!(indexed.cutoff_of_subject(bob), Some(None));
    source.set_buckets(None);
    assert_eq!(
        indexed.cutoff_of_subject(alice),
        None,
        "unknown, not 'none held'"
    );
    assert_eq!(
        indexed.cutoff_of_subject(bob),
        Some(None),
        "the index alone says no"
    );
}

/// Every high value and low bits of a part are held exactly when an entry has them, however
/// the entries crowd: none, one, more in one high value than a window holds, every high value
/// taken, entries either side of a sample, the same residue twice.
#[test]
fn a_part_holds_exactly_its_entries() {
    let (table_bits, part_bits) = (8, 2);
    let slots = 1 << (table_bits - part_bits);
    let highs = slots * HIGHS_PER_SLOT;
    // A residue is RESIDUE_BITS wide: its top 4 bits pick the high value within the slot,
    // the low LOW_BITS are the low.
    let rest_bits = 64 - RESIDUE_BITS - table_bits;
    let fp = |slot: u64, residue: u64, rest: u64| {
        (slot << (64 - table_bits)) | (residue << rest_bits) | (rest & 0xff)
    };
    let lows = u64::from(LOW_MASK) + 1;
    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    let crowded: Vec<u64> = (0..300)
        .map(|i| fp(70, 9 << LOW_BITS | (i * 13 % lows), i))
        .collect();
    let every_high: Vec<u64> = (0..(slots * 4) as u64 * 16)
        .map(|h| fp(h / 16, (h % 16) << LOW_BITS | (h * 7 % lows), 0))
        .collect();
    let at_samples: Vec<u64> = [63u64, 64, 65, 127, 128]
        .iter()
        .map(|h| fp(h / 16, (h % 16) << LOW_BITS | 5, 0))
        .collect();
    let cases = [
        vec![],
        vec![fp(3, 0x1234, 0)],
        crowded,
        every_high,
        at_samples,
        vec![
            fp(9, 0x0042, 1),
            fp(9, 0x0042, 2),
            fp(9, (1 << RESIDUE_BITS) - 1, 0),
        ],
        (0..3_000).map(|_| next()).collect(),
    ];
    for mut fingerprints in cases {
        fingerprints.sort_unstable();
        let mut taken = fingerprints.iter().copied().peekable();
        for part in 0..1 << part_bits {
            let bytes = part_of(&mut taken, part, table_bits, slots);
            let mut head = part_head(table_bits, part_bits);
            head.part_stamps[part] = stamp_of(&bytes);
            let read = Part::read(bytes, &head, part).expect("as written");
            let held = written(&fingerprints, table_bits, slots, part);
            for high in 0..highs {
                let near = held
                    .iter()
                    .filter(|(h, _)| *h == high)
                    .flat_map(|(_, low)| [low.saturating_sub(1), *low, (low + 1) & LOW_MASK]);
                for low in (0..=LOW_MASK).step_by(61).chain(near) {
                    assert_eq!(
                        read.holds(high, low),
                        held.contains(&(high, low)),
                        "part {part}, high {high}, low {low}"
                    );
                }
            }
        }
    }
}

/// The high values and low bits of the fingerprints of `part`, as a lookup asks for them.
fn written(
    fingerprints: &[u64],
    table_bits: u32,
    slots: usize,
    part: usize,
) -> std::collections::HashSet<(usize, u16)> {
    fingerprints
        .iter()
        .filter(|fp| top(**fp, table_bits) / slots == part)
        .map(|fp| {
            let r = residue(*fp, table_bits);
            let local = top(*fp, table_bits) % slots;
            (
                local * HIGHS_PER_SLOT + usize::from(r >> LOW_BITS),
                r & LOW_MASK,
            )
        })
        .collect()
}

fn part_head(table_bits: u32, part_bits: u32) -> Head {
    Head {
        table_bits,
        part_bits,
        bucket_bits: 0,
        previous_bucket_bits: 0,
        len: 0,
        fingerprints: 0,
        part_stamps: vec![0; 1 << part_bits],
        cutoffs: Vec::new(),
        version: String::new(),
        etag: String::new(),
    }
}

/// `bytes` stamped as a writer stamps a part, with a head that names it.
fn restamped(mut bytes: Vec<u8>, table_bits: u32, part_bits: u32) -> (Vec<u8>, Head) {
    let stamp = content_hash(&bytes[PART_STAMP_END..]);
    bytes[PART_STAMP_END - 8..PART_STAMP_END].copy_from_slice(&stamp.to_le_bytes());
    let mut head = part_head(table_bits, part_bits);
    head.part_stamps[0] = stamp;
    (bytes, head)
}

/// A head of another layout than a writer makes (many small parts: 65,536 parts of one slot
/// for 16 table bits) is refused: a worker would hold a part, its samples and a stamp for each,
/// several times the bytes shared (found by the attacker review).
#[test]
fn a_head_of_many_small_parts_is_refused() {
    for (table_bits, part_bits, writer_makes) in [
        (16, 6, true),
        (16, 16, false),
        (16, 7, false),
        (8, 0, true),
        (8, 1, false),
    ] {
        let head = part_head(table_bits, part_bits);
        assert_eq!(
            Head::decode(&head.encode()).is_some(),
            writer_makes,
            "{table_bits} table bits, {part_bits} part bits"
        );
    }
}

/// A hostile writer's part, consistent in every other way (stamped, named by the head, one
/// end per high value, the right count), whose lows are out of order within a high value:
/// a lookup stops at the first larger low, so it would answer "no" for an entry the part
/// holds. Refused on reading (found by the attacker review).
#[test]
fn a_part_whose_lows_are_out_of_order_is_refused() {
    let fp = |low: u64| low << (64 - RESIDUE_BITS);
    let written = |lows: [u64; 2]| {
        let mut taken = lows.map(fp).into_iter().peekable();
        part_of(&mut taken, 0, 0, 1)
    };
    let in_order = written([3, 5]);
    let (bytes, head) = restamped(in_order.clone(), 0, 0);
    let read = Part::read(bytes, &head, 0).expect("as written");
    assert!(read.holds(0, 3) && read.holds(0, 5));
    // The same entries, lows swapped: 5 then 3.
    let mut swapped = in_order;
    let lows_at = swapped.len() - 3;
    let packed = (5u32 | (3 << LOW_BITS)).to_le_bytes();
    swapped[lows_at..].copy_from_slice(&packed[..3]);
    let (bytes, head) = restamped(swapped, 0, 0);
    assert!(Part::read(bytes, &head, 0).is_none());
}

/// Every layout a writer makes, crowded and sparse: every written entry is "maybe", and any
/// other high value and low bits are exactly what the entries say (from the attacker review).
#[test]
fn every_layout_holds_exactly_what_was_written() {
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    for table_bits in [0u32, 1, 2, 4, 8, 10, 11, 16] {
        let part_bits = table_bits.saturating_sub(PART_SLOT_BITS);
        let slots = 1usize << (table_bits - part_bits);
        let highs = slots * HIGHS_PER_SLOT;
        for trial in 0..12 {
            let part = (next() % (1 << part_bits)) as usize;
            let crowd = [0, 63, 64, 65, 127, 128, highs - 1, highs / 2];
            let n = [0, 5, 200, 3_000][trial % 4];
            let mut fps: Vec<u64> = (0..n)
                .map(|k| {
                    let high = if k % 3 == 0 {
                        crowd[(next() as usize) % crowd.len()] % highs
                    } else {
                        (next() as usize) % highs
                    };
                    let low = if trial % 5 == 0 {
                        next() % 4
                    } else {
                        next() & u64::from(LOW_MASK)
                    };
                    let slot = (part * slots + high / HIGHS_PER_SLOT) as u64;
                    let residue = ((high % HIGHS_PER_SLOT) as u64) << LOW_BITS | low;
                    let top = if table_bits == 0 {
                        0
                    } else {
                        slot << (64 - table_bits)
                    };
                    let rest_bits = 64 - RESIDUE_BITS - table_bits;
                    top | residue << rest_bits | (next() & ((1 << rest_bits) - 1))
                })
                .collect();
            fps.sort_unstable();
            let mut taken = fps.iter().copied().peekable();
            let mut bytes = Vec::new();
            for p in 0..=part {
                bytes = part_of(&mut taken, p, table_bits, slots);
            }
            let mut head = part_head(table_bits, part_bits);
            head.part_stamps[part] = stamp_of(&bytes);
            let read = Part::read(bytes, &head, part).expect("as written");
            let held = written(&fps, table_bits, slots, part);
            for &(high, low) in &held {
                assert!(read.holds(high, low), "{table_bits} bits, trial {trial}");
            }
            for _ in 0..5_000 {
                let (high, low) = ((next() as usize) % highs, (next() as u16) & LOW_MASK);
                assert_eq!(
                    read.holds(high, low),
                    held.contains(&(high, low)),
                    "{table_bits} bits, trial {trial}: ({high}, {low})"
                );
            }
        }
    }
}

/// Hostile but consistent parts (mutated, then stamped and named as a writer would): reading
/// never panics, and what it accepts is looked up without a panic or a hang (from the
/// attacker review).
#[test]
fn hostile_parts_stamped_as_written_never_panic_or_hang() {
    let mut next = xorshift(0x1234_5678_9abc_def1);
    let (table_bits, part_bits) = (8u32, 0u32);
    let highs = (1usize << table_bits) * HIGHS_PER_SLOT;
    let mut fps: Vec<u64> = (0..600).map(|_| next()).collect();
    fps.sort_unstable();
    let good = part_of(
        &mut fps.iter().copied().peekable(),
        0,
        table_bits,
        1 << table_bits,
    );
    let mut accepted = 0;
    for round in 0..2_000 {
        let mut bad = good.clone();
        match round % 4 {
            0 => {
                // Two unary bits of different value swapped: the counts still fit.
                let bits = (bad.len() - PART_BODY_AT) * 8;
                for _ in 0..1 + next() % 4 {
                    let (a, b) = ((next() as usize) % bits, (next() as usize) % bits);
                    let (at_a, at_b) = (PART_BODY_AT + a / 8, PART_BODY_AT + b / 8);
                    if bad[at_a] >> (a % 8) & 1 != bad[at_b] >> (b % 8) & 1 {
                        bad[at_a] ^= 1 << (a % 8);
                        bad[at_b] ^= 1 << (b % 8);
                    }
                }
            }
            1 => {
                let at = PART_BODY_AT + (next() as usize) % (bad.len() - PART_BODY_AT);
                bad[at] ^= 1 << (next() % 8);
            }
            2 => {
                let n = (next() % 5_000) as u32;
                bad[PART_BODY_AT - 4..PART_BODY_AT].copy_from_slice(&n.to_le_bytes());
                let (unary, lows) = part_lengths(n as usize, highs).unwrap();
                bad.resize(PART_BODY_AT + unary + lows, 0);
                for byte in &mut bad[PART_BODY_AT..] {
                    *byte = next() as u8;
                }
            }
            _ => {
                bad.truncate(PART_STAMP_END);
                let len = (next() % 200) as usize;
                bad.extend((0..len).map(|_| next() as u8));
            }
        }
        let (bad, head) = restamped(bad, table_bits, part_bits);
        if let Some(read) = Part::read(bad, &head, 0) {
            accepted += 1;
            for high in 0..highs + 70 {
                for low in [0, 1, 2047, 4095] {
                    let _ = read.holds(high, low);
                }
            }
        }
    }
    assert!(
        accepted > 100,
        "{accepted} accepted: the lookups were tried"
    );
}

/// A writer of another format (format 4 kept 16-bit residues: read as 14-bit ones, its lows
/// would answer "no" for entries it holds) is never read, even where keys would collide: the
/// head and every part carry the format, and a value of another one is refused.
#[test]
fn a_value_of_another_format_is_refused() {
    let fp = |low: u64| low << (64 - RESIDUE_BITS);
    let mut taken = [3u64, 5].map(fp).into_iter().peekable();
    let (part, head) = restamped(part_of(&mut taken, 0, 0, 1), 0, 0);
    assert!(Part::read(part.clone(), &head, 0).is_some(), "as written");
    assert!(Head::decode(&head.encode()).is_some(), "as written");
    for other in [FORMAT - 1, FORMAT + 1] {
        let mut old_part = part.clone();
        old_part[HEAD_MAGIC.len()] = other;
        assert!(
            Part::read(old_part, &head, 0).is_none(),
            "part of format {other}"
        );
        let mut old_head = head.encode();
        old_head[HEAD_MAGIC.len()] = other;
        assert!(Head::decode(&old_head).is_none(), "head of format {other}");
    }
}
