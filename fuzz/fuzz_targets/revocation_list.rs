//! The polled revocation list: an HTTP response body streamed into fingerprints
//! (`revocation::list::accept_response`, over `revocation::doc::parse_reader`), then the list
//! as held: laid over as a delta, encoded for shared data and decoded again, and shared as
//! workers hold it (`revocation::indexed`), deciding as the whole list does.
#![no_main]

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use bearer_guard::revocation::indexed::{self, IndexedSet, SharedValues, Value};
use bearer_guard::revocation::set::{Probe, RevocationSet};
use bearer_guard::revocation::doc::{parse_reader, Source};
use bearer_guard::revocation::list::{
    accept_response, if_none_match, request_path, Held, Lifetimes, ListUpdate,
};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_800_000_000;

/// Shared data, as the filter keeps it.
#[derive(Default)]
struct Shared(RefCell<HashMap<Value, Vec<u8>>>);

impl SharedValues for Shared {
    fn get(&self, value: Value) -> Option<Vec<u8>> {
        self.0.borrow().get(&value).filter(|v| !v.is_empty()).cloned()
    }
    fn put(&self, value: Value, bytes: &[u8]) -> bool {
        self.0.borrow_mut().insert(value, bytes.to_vec());
        true
    }
}

/// Shared as workers hold it, the list decides every probe as the whole list does, and reads
/// back whole.
fn indexed_agrees(set: &RevocationSet, data: &[u8]) {
    let shared = Rc::new(Shared::default());
    assert!(indexed::share(set, &*shared), "written");
    let held = IndexedSet::adopt(shared.clone(), None, false).expect("a shared list is adopted");
    assert_eq!(held.len(), set.len());
    for chunk in data.chunks(7).take(64) {
        let value = String::from_utf8_lossy(chunk);
        let iat = chunk.first().map(|b| i64::from(*b) * 1_000_000);
        let probe = Probe::new("p", Some(&value), Some(&value), iat, None);
        assert_eq!(held.revokes(&probe), Some(set.revokes(&probe)), "{value:?}");
    }
    let again = held.assemble().expect("the buckets read back");
    assert_eq!(again.as_bytes(), set.as_bytes());
    // Shared again over itself (nothing changed): what a worker keeps still decides the same.
    assert!(indexed::share(set, &*shared), "written");
    let kept = IndexedSet::adopt(shared.clone(), Some(held), true).expect("adopted again");
    assert_eq!(kept.assemble().map(|s| s.len()), Some(set.len()));
    hostile_values(&shared, data);
}

/// Any bytes in the head, a part or a bucket of a shared list are safe to adopt, to look up
/// in and to read back.
fn hostile_values(list: &Shared, data: &[u8]) {
    for value in [Value::Head, Value::Part(0), Value::Bucket { bits: 0, index: 0 }] {
        let shared = Rc::new(Shared::default());
        for (key, bytes) in list.0.borrow().iter() {
            shared.put(*key, bytes);
        }
        shared.put(value, data);
        if let Ok(held) = IndexedSet::adopt(shared.clone(), None, false) {
            for chunk in data.chunks(5).take(16) {
                let value = String::from_utf8_lossy(chunk);
                let _ = held.revokes(&Probe::new("p", Some(&value), Some(&value), None, None));
            }
            let _ = held.assemble();
        }
        let _ = indexed::share(&RevocationSet::empty(), &*shared);
    }
}

/// The shared-data encoding reads back as the same set.
fn round_trip(set: &RevocationSet) {
    let decoded =
        RevocationSet::decode(set.as_bytes().to_vec()).expect("a set's own encoding decodes");
    assert_eq!(
        decoded.len(),
        set.len(),
        "entries lost in the shared encoding"
    );
    assert_eq!(decoded.as_bytes(), set.as_bytes());
}

fuzz_target!(|data: &[u8]| {
    // The same document as the static `revocation` config (no version / delta_since there).
    let _ = parse_reader(data, Source::Config, NOW);
    // Nothing held yet: a whole list (a delta is refused).
    let Ok(update) = accept_response(Some("200"), Some("\"etag-1\""), data, None, None, NOW) else {
        return;
    };
    let ListUpdate::Replaced { base, .. } = update else {
        panic!("without a held list, a 200 can only replace: {update:?}");
    };
    round_trip(&base);
    indexed_agrees(&base, data);
    let held = Held {
        base: &base,
        overlay: None,
    };
    let _ = request_path("/v1/list?x=1", Some(held.tag()));
    let _ = if_none_match(Some(held.tag()));
    // The same body again, over the list it made: a delta since its own version is laid
    // over it; anything else replaces it (or is refused).
    // With the rollback guard on: the same whole list again leaves nothing out.
    let known = Lifetimes::default();
    match accept_response(Some("200"), None, data, Some(held), Some(&known), NOW) {
        Ok(ListUpdate::Replaced { base, .. }) => round_trip(&base),
        Ok(ListUpdate::Extended { overlay, .. }) => {
            round_trip(&overlay);
            let held = Held {
                base: &base,
                overlay: Some(&overlay),
            };
            let _ = request_path("/v1/list", Some(held.tag()));
        }
        Ok(ListUpdate::NotModified) => panic!("a 200 is never NotModified"),
        Err(_) => {}
    }
    // The shared encoding itself is read from shared data: any bytes must be safe to decode.
    if let Some(set) = RevocationSet::decode(data.to_vec()) {
        let _ = set.len();
        let _ = set.cutoff_scopes().count();
    }
});
