//! The polled revocation list: an HTTP response body streamed into fingerprints
//! (`revocation::list::accept_response`, over `revocation::doc::parse_reader`), then the list
//! as held: laid over as a delta, encoded for shared data and decoded again.
#![no_main]

use bearer_guard::revocation::set::RevocationSet;
use bearer_guard::revocation::doc::{parse_reader, Source};
use bearer_guard::revocation::list::{
    accept_response, if_none_match, request_path, Held, Lifetimes, ListUpdate,
};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_800_000_000;

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
    let held = Held {
        base: &base,
        overlay: None,
    };
    let _ = request_path("/v1/list?x=1", Some(held));
    let _ = if_none_match(Some(held));
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
            let _ = request_path("/v1/list", Some(held));
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
