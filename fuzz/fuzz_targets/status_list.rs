//! Token Status List: the Status List Token payload checks (`from_token_payload`), a token's
//! `status` reference (`reference_of`), and the compressed list itself (`StatusList::from_claim`:
//! base64url, zlib inflate with a size limit, bit-packed lookups).
//!
//! The first input byte picks the entry point:
//! - 0: the rest is a Status List Token payload (JSON);
//! - 1: the rest is a referenced token's payload (JSON) with a `status` claim;
//! - 2: the rest is a `status_list` claim object (JSON);
//! - 3: the next byte is `bits` and the rest the raw zlib stream (base64url-encoded here, so
//!   the fuzzer works on the compressed bytes directly rather than through base64 in JSON).
#![no_main]

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use bearer_guard::idp::status_list::{from_token_payload, reference_of, StatusList};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

const NOW: i64 = 1_800_000_000;
const URI: &str = "https://status.example/lists/1";

/// Every index in range answers; the first out of range does not.
fn probe(list: &StatusList) {
    assert!(matches!(list.bits(), 1 | 2 | 4 | 8));
    let len = list.len();
    assert_eq!(len, list.byte_len() as u64 * 8 / u64::from(list.bits()));
    assert_eq!(list.is_empty(), list.byte_len() == 0);
    for idx in [0, 1, 7, 8, len / 2, len.saturating_sub(1)] {
        if idx < len {
            let status = list.status(idx).expect("an index in range has a status");
            assert!(status.value() < (1u16 << list.bits()) as u8 || list.bits() == 8);
            let _ = status.is_application_specific();
        }
    }
    assert_eq!(list.status(len), None, "the first index past the end");
    assert_eq!(list.status(u64::MAX), None);
}

fn json(data: &[u8]) -> Option<Value> {
    serde_json::from_slice(data).ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            let Some(payload) = json(rest) else { return };
            if let Ok(token) = from_token_payload(&payload, URI, NOW, 300) {
                probe(&token.list);
                assert!(token.expires_at.is_none_or(|exp| exp > NOW));
                assert!(token.fresh_until > NOW, "a list fetched now is due at once");
            }
        }
        1 => {
            let Some(payload) = json(rest) else { return };
            if let Ok(Some(reference)) = reference_of(&payload) {
                assert!(!reference.uri.is_empty());
            }
        }
        2 => {
            let Some(claim) = json(rest) else { return };
            if let Ok(list) = StatusList::from_claim(&claim) {
                probe(&list);
            }
        }
        _ => {
            let Some((&bits, compressed)) = rest.split_first() else {
                return;
            };
            let claim = json!({ "bits": bits, "lst": URL_SAFE_NO_PAD.encode(compressed) });
            if let Ok(list) = StatusList::from_claim(&claim) {
                probe(&list);
            }
        }
    }
});
