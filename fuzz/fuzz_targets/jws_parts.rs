//! bearer-guard splits and decodes a compact JWS itself (`verify::jws_parts`: each segment
//! decoded once) instead of through jwt-compact's `UntrustedToken` with its `crit` extension,
//! as it did before. The two must agree on
//! every input: what one accepts the other accepts, with the same `alg`, `kid`, `typ`,
//! signing input, payload and signature bytes. A difference is a token that verifies here and
//! not in the library the design names (or a second spelling of one signature).
#![no_main]

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use bearer_guard::token::verify::jws_parts;
use jwt_compact::UntrustedToken;
use libfuzzer_sys::fuzz_target;

/// The header extension the filter read with `UntrustedToken` before: `crit`, present at all
/// (even `null`). A second `crit` is then a duplicate field for both parsers (with
/// jwt-compact's `Empty` it would be an ignored member).
#[derive(serde::Deserialize)]
struct ExtraHeader {
    #[serde(default, rename = "crit", deserialize_with = "present")]
    _crit: Option<serde_json::Value>,
}

fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde::Deserialize::deserialize(deserializer).map(Some)
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let ours = jws_parts(token);
    let theirs = UntrustedToken::<ExtraHeader>::try_from(token);
    match (ours, theirs) {
        (None, Err(_)) => {}
        (Some(ours), Ok(theirs)) => {
            assert_eq!(ours.alg(), theirs.algorithm());
            assert_eq!(ours.kid(), theirs.header().key_id.as_deref());
            assert_eq!(ours.typ(), theirs.header().token_type.as_deref());
            assert_eq!(ours.signature, theirs.signature_bytes());
            let signed = token.rsplit_once('.').map(|(signed, _)| signed);
            assert_eq!(Some(ours.signed_data), signed);
            let (_, payload) = ours.signed_data.split_once('.').unwrap_or_default();
            assert_eq!(ours.payload_b64, payload);
            // The decoded payload and signature are the one byte string their segments spell
            // (jwt-compact keeps its decoded payload to itself): re-encoded, they are what was
            // sent.
            assert_eq!(URL_SAFE_NO_PAD.encode(&ours.payload_json), ours.payload_b64);
            let (_, signature) = token.rsplit_once('.').unwrap_or_default();
            assert_eq!(URL_SAFE_NO_PAD.encode(&ours.signature), signature);
        }
        (ours, theirs) => panic!(
            "jws_parts {} but UntrustedToken {}",
            if ours.is_some() { "accepts" } else { "refuses" },
            if theirs.is_ok() { "accepts" } else { "refuses" },
        ),
    }
});
