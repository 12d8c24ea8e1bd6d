//! Token Status List (draft-ietf-oauth-status-list-18, JWT form): the `status.status_list`
//! reference a token carries, the compressed list of statuses, and the checks on a Status List
//! Token's payload. The Status List Token's signature and `typ` header are checked by the
//! caller, with the issuer's keys; this module only reads JSON that has already been verified.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use miniz_oxide::inflate::{decompress_to_vec_zlib_with_limit, TINFLStatus};
use serde::Deserialize;
use serde_json::Value;

use crate::token::claims::NumericDate;

/// A list that inflates past this is refused: a few KB of zlib can claim gigabytes. 16 MiB is
/// 134M entries at 1 bit, far past the "millions" the draft is sized for.
pub const MAX_DECOMPRESSED_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusListError {
    /// The token's `status` claim is not an object.
    StatusNotAnObject,
    /// `status.status_list` is not an object.
    ReferenceNotAnObject,
    /// `idx` is missing or not a non-negative integer.
    InvalidIndex,
    /// `uri` is missing or not a non-empty string.
    InvalidUri,
    /// The Status List Token payload is not an object.
    PayloadNotAnObject,
    /// The payload has no `sub`, or it is not a string.
    MissingSubject,
    /// `sub` is not the `uri` the token referenced.
    SubjectMismatch,
    MissingIssuedAt,
    InvalidIssuedAt,
    InvalidExpiry,
    /// `now` is at or past `exp`.
    Expired,
    /// `ttl` is not a positive number.
    InvalidTtl,
    MissingStatusList,
    /// The `status_list` claim is not an object.
    ClaimNotAnObject,
    /// `bits` is missing or not one of 1, 2, 4, 8.
    InvalidBits,
    LstNotAString,
    InvalidBase64,
    /// `lst` decodes, but not to a ZLIB stream (bad header, bad data or bad checksum).
    InvalidZlib,
    /// `lst` inflates past [`MAX_DECOMPRESSED_BYTES`].
    TooLarge,
    /// Encoding only: a status value needs more than `bits` bits.
    StatusTooWide,
}

impl std::fmt::Display for StatusListError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::StatusNotAnObject => f.write_str("\"status\" is not an object"),
            Self::ReferenceNotAnObject => f.write_str("\"status.status_list\" is not an object"),
            Self::InvalidIndex => f.write_str("\"idx\" is not a non-negative integer"),
            Self::InvalidUri => f.write_str("\"uri\" is not a non-empty string"),
            Self::PayloadNotAnObject => f.write_str("status list token payload is not an object"),
            Self::MissingSubject => f.write_str("\"sub\" is missing"),
            Self::SubjectMismatch => f.write_str("\"sub\" is not the referenced uri"),
            Self::MissingIssuedAt => f.write_str("\"iat\" is missing"),
            Self::InvalidIssuedAt => f.write_str("\"iat\" is not a NumericDate"),
            Self::InvalidExpiry => f.write_str("\"exp\" is not a NumericDate"),
            Self::Expired => f.write_str("status list token expired"),
            Self::InvalidTtl => f.write_str("\"ttl\" is not a positive number"),
            Self::MissingStatusList => f.write_str("\"status_list\" is missing"),
            Self::ClaimNotAnObject => f.write_str("\"status_list\" is not an object"),
            Self::InvalidBits => f.write_str("\"bits\" is not 1, 2, 4 or 8"),
            Self::LstNotAString => f.write_str("\"lst\" is not a string"),
            Self::InvalidBase64 => f.write_str("\"lst\" is not base64url"),
            Self::InvalidZlib => f.write_str("\"lst\" is not zlib data"),
            Self::TooLarge => write!(
                f,
                "status list inflates past {MAX_DECOMPRESSED_BYTES} bytes"
            ),
            Self::StatusTooWide => f.write_str("a status does not fit in \"bits\""),
        }
    }
}

impl std::error::Error for StatusListError {}

/// The `status.status_list` reference of a token (§6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReference {
    pub idx: u64,
    pub uri: String,
}

/// The token's `status.status_list` reference, from its payload. `None` when there is no
/// `status` claim or it names no `status_list` (other status mechanisms may be registered).
pub fn reference_of(payload: &Value) -> Result<Option<StatusReference>, StatusListError> {
    let Some(status) = payload.get("status") else {
        return Ok(None);
    };
    let status = status
        .as_object()
        .ok_or(StatusListError::StatusNotAnObject)?;
    let Some(reference) = status.get("status_list") else {
        return Ok(None);
    };
    let reference = reference
        .as_object()
        .ok_or(StatusListError::ReferenceNotAnObject)?;
    let idx = reference
        .get("idx")
        .and_then(Value::as_u64)
        .ok_or(StatusListError::InvalidIndex)?;
    let uri = reference
        .get("uri")
        .and_then(Value::as_str)
        .filter(|uri| !uri.is_empty())
        .ok_or(StatusListError::InvalidUri)?;
    Ok(Some(StatusReference {
        idx,
        uri: uri.to_owned(),
    }))
}

/// A status value (§7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Valid,
    Invalid,
    Suspended,
    /// 0x03 and 0x0C-0x0F are application specific; the others are reserved.
    Other(u8),
}

impl From<u8> for Status {
    fn from(value: u8) -> Self {
        match value {
            0x00 => Status::Valid,
            0x01 => Status::Invalid,
            0x02 => Status::Suspended,
            other => Status::Other(other),
        }
    }
}

impl Status {
    pub fn value(self) -> u8 {
        match self {
            Status::Valid => 0x00,
            Status::Invalid => 0x01,
            Status::Suspended => 0x02,
            Status::Other(value) => value,
        }
    }

    /// The values §7.1 leaves to the application (the rest of `Other` is reserved).
    pub fn is_application_specific(self) -> bool {
        matches!(self.value(), 0x03 | 0x0C..=0x0F)
    }
}

/// A decoded status list: bits per entry and the inflated bytes, entries packed from the least
/// significant bit of each byte (§4.1).
#[derive(Clone, PartialEq, Eq)]
pub struct StatusList {
    bits: u8,
    bytes: Vec<u8>,
}

/// Not derived: the bytes can run to megabytes.
impl std::fmt::Debug for StatusList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusList")
            .field("bits", &self.bits)
            .field("byte_len", &self.bytes.len())
            .finish()
    }
}

impl StatusList {
    /// From the `status_list` claim object (§4.2). Members other than `bits` and `lst` (such
    /// as `aggregation_uri`) are ignored. `lst` is base64url without padding; trailing `=` is
    /// tolerated.
    pub fn from_claim(claim: &Value) -> Result<Self, StatusListError> {
        let claim = claim.as_object().ok_or(StatusListError::ClaimNotAnObject)?;
        let bits = claim
            .get("bits")
            .and_then(Value::as_u64)
            .and_then(|bits| u8::try_from(bits).ok())
            .filter(|bits| valid_bits(*bits))
            .ok_or(StatusListError::InvalidBits)?;
        let lst = claim
            .get("lst")
            .and_then(Value::as_str)
            .ok_or(StatusListError::LstNotAString)?;
        let compressed = URL_SAFE_NO_PAD
            .decode(lst.trim_end_matches('='))
            .map_err(|_| StatusListError::InvalidBase64)?;
        let bytes = decompress_to_vec_zlib_with_limit(&compressed, MAX_DECOMPRESSED_BYTES)
            .map_err(|e| match e.status {
                TINFLStatus::HasMoreOutput => StatusListError::TooLarge,
                _ => StatusListError::InvalidZlib,
            })?;
        Ok(Self { bits, bytes })
    }

    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// The number of entries: every bit of the array counts, so a list whose size is not a
    /// multiple of 8 entries (§13.4) reads its padding as VALID entries.
    pub fn len(&self) -> u64 {
        u64::try_from(self.bytes.len())
            .unwrap_or(u64::MAX)
            .saturating_mul(8)
            / u64::from(self.bits)
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// The status at `idx`; `None` out of range, where §8.3 says the token MUST be rejected.
    pub fn status(&self, idx: u64) -> Option<Status> {
        let per_byte = 8u8.checked_div(self.bits)?;
        let byte = usize::try_from(idx / u64::from(per_byte)).ok()?;
        let slot = u32::try_from(idx % u64::from(per_byte)).ok()?;
        let shift = slot.checked_mul(u32::from(self.bits))?;
        let value = self.bytes.get(byte)?.checked_shr(shift)? & mask(self.bits);
        Some(Status::from(value))
    }
}

fn valid_bits(bits: u8) -> bool {
    matches!(bits, 1 | 2 | 4 | 8)
}

/// The low `bits` bits set.
fn mask(bits: u8) -> u8 {
    u8::MAX
        .checked_shr(8u32.saturating_sub(u32::from(bits)))
        .unwrap_or(0)
}

/// A checked Status List Token payload and how long it may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusListToken {
    pub list: StatusList,
    pub issued_at: i64,
    /// `exp`: past it the list MUST NOT be relied upon (§13.7), even when a refetch fails.
    pub expires_at: Option<i64>,
    /// When to fetch a fresh copy: `now + ttl` (ttl counts from the fetch, §13.7 and §8.3
    /// step 4d), `default_ttl_seconds` standing in for a missing `ttl`, and never past `exp`.
    pub fresh_until: i64,
}

/// The checks on a Status List Token's payload (§5.1, §8.3 step 4), fetched at `now`: `sub`
/// must be `expected_uri` (the Referenced Token's `uri`), `iat` is required, and a token at or
/// past its `exp` is refused. `ttl` is taken as sent; bounding it is the caller's (§11.5).
pub fn from_token_payload(
    payload: &Value,
    expected_uri: &str,
    now: i64,
    default_ttl_seconds: u64,
) -> Result<StatusListToken, StatusListError> {
    let claims = payload
        .as_object()
        .ok_or(StatusListError::PayloadNotAnObject)?;
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .ok_or(StatusListError::MissingSubject)?;
    if sub != expected_uri {
        return Err(StatusListError::SubjectMismatch);
    }
    let issued_at = numeric_date(claims.get("iat").ok_or(StatusListError::MissingIssuedAt)?)
        .ok_or(StatusListError::InvalidIssuedAt)?;
    let expires_at = claims
        .get("exp")
        .map(|exp| numeric_date(exp).ok_or(StatusListError::InvalidExpiry))
        .transpose()?;
    if expires_at.is_some_and(|exp| now >= exp) {
        return Err(StatusListError::Expired);
    }
    let ttl = match claims.get("ttl") {
        Some(ttl) => ttl_seconds(ttl).ok_or(StatusListError::InvalidTtl)?,
        None => default_ttl_seconds,
    };
    // Inflating is the costly step: only once every cheap check has passed.
    let list = StatusList::from_claim(
        claims
            .get("status_list")
            .ok_or(StatusListError::MissingStatusList)?,
    )?;
    let refetch_at = now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
    let fresh_until = expires_at.map_or(refetch_at, |exp| refetch_at.min(exp));
    Ok(StatusListToken {
        list,
        issued_at,
        expires_at,
        fresh_until,
    })
}

/// Read as token claims are (see `claims::NumericDate`).
fn numeric_date(value: &Value) -> Option<i64> {
    NumericDate::deserialize(value).ok().map(|date| date.0)
}

/// "A positive number" (§5.1): a fraction is rounded up, so it stays positive.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // range-checked just before
fn ttl_seconds(value: &Value) -> Option<u64> {
    if let Some(seconds) = value.as_u64() {
        return (seconds > 0).then_some(seconds);
    }
    let seconds = value.as_f64().filter(|s| s.is_finite() && *s > 0.0)?;
    Some(if seconds >= u64::MAX as f64 {
        u64::MAX
    } else {
        seconds.ceil() as u64
    })
}

/// Packs and compresses `statuses` (one per entry, in index order) into a `status_list` claim
/// object, as an issuer does (ZLIB, level 9). Not in the wasm build, which never encodes: it
/// keeps deflate out of the filter.
#[cfg(not(target_arch = "wasm32"))]
pub fn encode_claim(bits: u8, statuses: &[u8]) -> Result<Value, StatusListError> {
    let compressed = compress(bits, statuses)?;
    Ok(serde_json::json!({ "bits": bits, "lst": URL_SAFE_NO_PAD.encode(compressed) }))
}

#[cfg(not(target_arch = "wasm32"))]
fn compress(bits: u8, statuses: &[u8]) -> Result<Vec<u8>, StatusListError> {
    if !valid_bits(bits) {
        return Err(StatusListError::InvalidBits);
    }
    let per_byte = usize::from(8 / bits);
    let mut bytes = vec![0u8; statuses.len().div_ceil(per_byte)];
    for (byte, entries) in bytes.iter_mut().zip(statuses.chunks(per_byte)) {
        for (slot, &status) in (0u32..).zip(entries) {
            if status & !mask(bits) != 0 {
                return Err(StatusListError::StatusTooWide);
            }
            *byte |= status.checked_shl(slot * u32::from(bits)).unwrap_or(0);
        }
    }
    Ok(miniz_oxide::deflate::compress_to_vec_zlib(&bytes, 9))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    // Test vectors from draft-ietf-oauth-status-list-18 (18 February 2026): §4.1/§4.2 and
    // Appendix C. Every Appendix C list has 2^20 entries, 0 (VALID) where not listed.

    /// Appendix C.1 (bits 1).
    const C1_LST: &str = concat!(
        "eNrt3AENwCAMAEGogklACtKQPg9LugC9k_ACvreiogE",
        "AAKkeCQAAAAAAAAAAAAAAAAAAAIBylgQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "AAAAAAAAAAAAAAAAAAAXG9IAAAAAAAAAPwsJAAAAAAAAAAAAAAAvhsSAAAAAAAAAAA",
        "A7KpLAAAAAAAAAAAAAAAAAAAAAJsLCQAAAAAAAAAAADjelAAAAAAAAAAAKjDMAQAAA",
        "ACAZC8L2AEb",
    );

    /// Appendix C.2 (bits 2).
    const C2_LST: &str = concat!(
        "eNrt2zENACEQAEEuoaBABP5VIO01fCjIHTMStt9ovGV",
        "IAAAAAABAbiEBAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAEB5WwIAAAAAA",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAID0ugQAAAAAAAAAAAAAAAAAQG12SgAAA",
        "AAAAAAAAAAAAAAAAAAAAAAAAOCSIQEAAAAAAAAAAAAAAAAAAAAAAAD8ExIAAAAAAAA",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAwJEuAQAAAAAAAAAAAAAAAAAAAAAAAMB9S",
        "wIAAAAAAAAAAAAAAAAAAACoYUoAAAAAAAAAAAAAAEBqH81gAQw",
    );

    /// Appendix C.3 (bits 4).
    const C3_LST: &str = concat!(
        "eNrt0EENgDAQADAIHwImkIIEJEwCUpCEBBQRHOy35Li",
        "1EjoOQGabAgAAAAAAAAAAAAAAAAAAACC1SQEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABADrsCAAAAAAAAAAAAAAAAA",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "AAADoxaEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAIIoCgAAAAAAAAAAAAAAAAA",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAACArpwKAAAAAAAAAAAAAAAAAAAAA",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAGhqVkAzlwIAAAAAiGVRAAAAAAAAAAAAAAAAAAA",
        "AAAAAAAAAAAAAAAAAAAAAAABx3AoAgLpVAQAAAAAAAAAAAAAAwM89rwMAAAAAAAAAA",
        "AjsA9xMBMA",
    );

    /// Appendix C.4 (bits 8).
    const C4_LST: &str = concat!(
        "eNrt0WOQM2kYhtGsbdu2bdu2bdu2bdu2bdu2jVnU1my",
        "-SWYm6U5enFPVf7ue97orFYAo7CQBAACQuuckAABStqUEAAAAAAAAtN6wEgAE71QJA",
        "AAAAIrwhwQAAAAAAdtAAgAAAAAAACLwkAQAAAAAAAAAAACUaFcJAACAeJwkAQAAAAA",
        "AAABQvL4kAAAAWmJwCQAAAAAAAAjAwBIAAAB06ywJoDKQBARpfgkAAAAAAAAAAAAAA",
        "AAAAACo50sJAAAAAAAAAOiRcSQAAAAAgAJNKgEAAG23mgQAAAAAAECw3pUAQvegBAA",
        "AAAAAAADduE4CAAAAyjSvBAAQiw8koHjvSABAb-wlARCONyVoxtMSZOd0CQAAAOjWD",
        "RKQmLckAAAAAACysLYEQGcnSAAAAAAQooUlAABI15kSAIH5RAIgLB9LABC4_SUgGZN",
        "IAABAmM6RoLbTJIASzCIBAEAhfpcAAAAAAABquk8CAAAAAAAAaJl9SvvzBOICAFWmk",
        "IBgfSgBAAAANOgrCQAAAAAAAADStK8EAAC03gASAAAAAAAAAADFWFUCAAAAMjOaBEA",
        "DHpYAQjCIBADduFwCAAAAAGitMSSI3BUSAECOHpAA6IHrJQAAAAAAsjeVBAAAKRpVA",
        "orWvwQAAAAAAAAAkKRtJAAAAAAAgCbcLAF0bXUJAAAAoF02kYDg7CYBAAAAAEB6NpQ",
        "AAAAAAAAAAAAAAEr1uQQAAF06VgIAAAAAAAAAqDaeBAAQqgMkAAAAAABogQMlAAAAA",
        "AAa87MEAAAQiwslAAAAAAAAAAAAAAAAMrOyBAAAiekv-hcsY0Sgne6QAAAAAAAgaUt",
        "JAAAAAAAAAAAAAAAAAAAAAAAAAADwt-07vjVkAAAAgDy8KgFAUEaSAAAAAJL3vgQAW",
        "dhcAgAAoBHDSUDo1pQAAACI2o4SAABZm14CALoyuwQAAPznGQkgZwdLAAAQukclAAA",
        "AAAAAAAAAgKbMKgEAAAAAAAAAAAAAAAAAAECftpYAAAAAAAAAAAAACnaXBAAAAADk7",
        "iMJAAAAAAAAAABqe00CAnGbBBG4TAIAgFDdKgFAXCaWAAAAAAAAAAAAAAAAAKAJQwR",
        "72XbGAQAAAKAhh0sAAAAAAABQgO8kAAAAAAAAAAAAACAaM0kAAAC5W0QCAIJ3mAQAx",
        "GwxCQAA6nhSAsjZBRIAANEbWQIAAAAAaJE3JACAwA0qAUBIVpKAlphbAiAPp0iQnKE",
        "kAAAAAAAgBP1KAAAAdOl4CQAAAAAAAPjLZBIAAG10RtrPm8_CAEBMTpYAAAAAAIjQY",
        "BL8z5QSAAAAAEDYPpUAACAsj0gAAADQkHMlAAjHDxIA0Lg9JQAAgHDsLQEAAABAQS6",
        "WAAAAgLjNFs2l_RgLAIAEfCEBlGZZCQAAaIHjJACgtlskAAAozb0SAAAAVFtfAgAAA",
        "AAAAAAAAAAAAAAAAAAAAKDDtxIAAAAAVZaTAKB5W0kAANCAsSUgJ0tL0GqHSNBbL0g",
        "AZflRAgCARG0kQXNmlgCABiwkAQAAAEB25pIAAAAAAAAAAAAAoFh9SwAAAAAAADWNm",
        "OSrpjFsEoaRgDKcF9Q1dxsEAAAAAAAAAAAAAAAAgPZ6SQIAAAAAAAAAgChMLgEAAAA",
        "AAAAAqZlQAsK2qQQAAAAAAAD06XUJAAAAqG9bCQAAgLD9IgEAAAAAAAAAAAAAAAAAA",
        "EBNe0gAAAAAAAAAAEBPHSEBAAAAlOZtCYA4fS8B0GFRCQAo0gISAOTgNwmC840EAAA",
        "AAAAAAAAAAAAAAAAAUJydJfjXPBIAAAAAAAAAAAAAAABk6WwJAAAAAAAAAAAAAAAAq",
        "G8UCQAAgPpOlAAAIA83SQAANWwc9HUjGAgAAAAAAACAusaSAAAAAAAAAAAAAAAAAAA",
        "AAAAAAAAAqHKVBACQjxklAAAAAAAAAKBHxpQAAAAAACBME0lAdlaUAACyt7sEAAAA0",
        "Nl0EgAAAAAAAAAAAABA-8wgAQAAAAAAAKU4SgKgUtlBAgAAAAAAAAAAgMCMLwEE51k",
        "JICdzSgCJGl2CsE0tAQAA0L11JQAAAAAAAAjUOhIAAAAAAAAAAAAAAGTqeQkAAAAAA",
        "AAAAAAAKM8SEjTrJwkAAAAAAACocqQEULgVJAAAACjDUxJUKgtKAAAAqbpRAgCA0n0",
        "mAQAAAABAGzwmAUCTLpUAAAAAAAAAAEjZNRIAAAAAAAAAAAAAAAAAAAAA8I-vJaAlh",
        "pQAAAAAAHrvzjJ-OqCuuVlLAojP8BJAr70sQZVDJYAgXS0BAAAAAAAAAAAAtMnyEgA",
        "AAAAAFONKCQAAAAAAAADorc0kAAAAAAAAgDqOlgAAAAAAAAAAAADIwv0SAAAAAAAAA",
        "AAAAADBuV0CIFVDSwAAAABAAI6RAAAAAGIwrQSEZAsJAABouRclAAAAAKDDrxIAAAA",
        "0bkkJgFiMKwEAAAAAAHQyhwRk7h4JAAAAAAAAAAAgatdKAACUYj0JAAAAAAAAAAAAQ",
        "nORBLTFJRIAAAAAkIaDJAAAAJryngQAAAAAAAAAAAA98oQEAAAAAAAAAEC2zpcgWY9",
        "LQKL2kwAgGK9IAAAAAPHaRQIAAAAAAAAAAADIxyoSAAAAAAAAAAAAAADQFotLAECz_",
        "gQ1PX-B",
    );

    /// Appendix C.4: `status[C4_INDEXES[v]] = v` for every v in 0..=255.
    const C4_INDEXES: [u64; 256] = [
        233478, 52451, 576778, 513575, 468106, 292632, 214947, 182323, 884834, 66653, 62489,
        196493, 458517, 487925, 55649, 416992, 879796, 462297, 942059, 583408, 13628, 334829,
        886286, 713557, 582738, 326064, 451545, 705889, 214350, 194502, 796765, 202828, 752834,
        721327, 554740, 91122, 963483, 261779, 793844, 165255, 614839, 758403, 403258, 145867,
        96100, 477937, 606890, 167335, 488197, 211815, 797182, 582952, 950870, 765108, 341110,
        776325, 745056, 439368, 559893, 149741, 358903, 513405, 342679, 969429, 795775, 566121,
        460566, 680070, 117310, 480348, 67319, 661552, 841303, 561493, 138807, 442463, 659927,
        445910, 1046963, 829700, 962282, 299623, 555493, 292826, 517215, 551009, 898490, 837603,
        759161, 459948, 290102, 1034977, 190650, 98810, 229950, 320531, 335506, 885333, 133227,
        806915, 800313, 981571, 527253, 24077, 240232, 559572, 713399, 233941, 615514, 911768,
        331680, 951527, 6805, 552366, 374660, 223159, 625884, 417146, 320527, 784154, 338792, 1199,
        679804, 1024680, 40845, 234603, 761225, 644903, 502167, 121477, 505144, 165165, 179628,
        1019195, 145149, 263738, 269256, 996739, 346296, 555864, 887384, 444173, 421844, 653716,
        836747, 783119, 918762, 946835, 253764, 519895, 471224, 134272, 709016, 44112, 482585,
        461829, 15080, 148883, 123467, 480125, 141348, 65877, 692958, 148598, 499131, 584009,
        1017987, 449287, 277478, 991262, 509602, 991896, 853666, 399318, 197815, 203278, 903979,
        743015, 888308, 862143, 979421, 113605, 206397, 127113, 844358, 711569, 229153, 521470,
        401793, 398896, 940810, 293983, 884749, 384802, 584151, 970201, 523882, 158093, 929312,
        205329, 106091, 30949, 195586, 495723, 348779, 852312, 1018463, 1009481, 448260, 841042,
        122967, 345269, 794764, 4520, 818773, 556171, 954221, 598210, 887110, 1020623, 324632,
        398244, 622241, 456551, 122648, 127837, 657676, 119884, 105156, 999897, 330160, 119285,
        168005, 389703, 143699, 142524, 493258, 846778, 251420, 516351, 83344, 171931, 879178,
        663475, 546865, 428362, 658891, 500560, 557034, 830023, 274471, 629139, 958869, 663071,
        152133, 19535,
    ];

    const APPENDIX_C_ENTRIES: u64 = 1 << 20;

    fn list(bits: u8, lst: &str) -> StatusList {
        StatusList::from_claim(&json!({ "bits": bits, "lst": lst })).unwrap()
    }

    /// Every non-VALID entry, by index: checks the listed entries and that nothing else is set.
    fn non_valid(list: &StatusList) -> Vec<(u64, u8)> {
        (0..list.len())
            .filter_map(|idx| {
                let value = list.status(idx).unwrap().value();
                (value != 0).then_some((idx, value))
            })
            .collect()
    }

    fn sorted(mut entries: Vec<(u64, u8)>) -> Vec<(u64, u8)> {
        entries.sort_unstable();
        entries
    }

    #[test]
    fn draft_section_4_1_one_bit_example() {
        let list = list(1, "eNrbuRgAAhcBXQ");
        assert_eq!(list.bytes, [0xB9, 0xA3]);
        assert_eq!((list.bits(), list.len(), list.byte_len()), (1, 16, 2));
        let expected = [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1];
        for (idx, want) in (0u64..).zip(expected) {
            assert_eq!(list.status(idx), Some(Status::from(want)), "status[{idx}]");
        }
        assert_eq!(list.status(16), None);
    }

    #[test]
    fn draft_section_4_1_two_bit_example() {
        let list = list(2, "eNo76fITAAPfAgc");
        assert_eq!(list.bytes, [0xC9, 0x44, 0xF9]);
        assert_eq!(list.len(), 12);
        let expected = [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3];
        for (idx, want) in (0u64..).zip(expected) {
            assert_eq!(list.status(idx), Some(Status::from(want)), "status[{idx}]");
        }
        assert_eq!(list.status(1), Some(Status::Suspended));
        assert_eq!(list.status(12), None);
    }

    #[test]
    fn draft_appendix_c1_one_bit() {
        let list = list(1, C1_LST);
        assert_eq!(list.len(), APPENDIX_C_ENTRIES);
        let set = [
            0, 1993, 25460, 159495, 495669, 554353, 645645, 723232, 854545, 934534, 1000345,
        ];
        assert_eq!(non_valid(&list), set.map(|idx| (idx, 1)));
        assert_eq!(list.status(1993), Some(Status::Invalid));
        assert_eq!(list.status(1994), Some(Status::Valid));
        assert_eq!(list.status(APPENDIX_C_ENTRIES), None);
    }

    #[test]
    fn draft_appendix_c2_two_bit() {
        let list = list(2, C2_LST);
        assert_eq!(list.len(), APPENDIX_C_ENTRIES);
        let expected = vec![
            (0, 1),
            (1993, 2),
            (25460, 1),
            (159495, 3),
            (495669, 1),
            (554353, 1),
            (645645, 2),
            (723232, 1),
            (854545, 1),
            (934534, 2),
            (1000345, 3),
        ];
        assert_eq!(non_valid(&list), expected);
    }

    #[test]
    fn draft_appendix_c3_four_bit() {
        let list = list(4, C3_LST);
        assert_eq!(list.len(), APPENDIX_C_ENTRIES);
        let expected = vec![
            (0, 1),
            (1993, 2),
            (35460, 3),
            (459495, 4),
            (595669, 5),
            (754353, 6),
            (845645, 7),
            (923232, 8),
            (924445, 9),
            (934534, 10),
            (1004534, 11),
            (1000345, 12),
            (1030203, 13),
            (1030204, 14),
            (1030205, 15),
        ];
        assert_eq!(non_valid(&list), sorted(expected));
    }

    #[test]
    fn draft_appendix_c4_eight_bit() {
        let list = list(8, C4_LST);
        assert_eq!(list.len(), APPENDIX_C_ENTRIES);
        for (value, idx) in (0u8..=255).zip(C4_INDEXES) {
            assert_eq!(list.status(idx), Some(Status::from(value)), "status[{idx}]");
        }
        // Value 0 is the default, so 255 entries are set.
        let expected = (1u8..=255).zip(&C4_INDEXES[1..]).map(|(v, &idx)| (idx, v));
        assert_eq!(non_valid(&list), sorted(expected.collect()));
    }

    /// For the short examples miniz_oxide writes the very bytes the draft shows; for the long
    /// ones its deflate stream differs from the draft's (zlib's), so only the content is compared.
    #[test]
    fn encoder_reproduces_the_draft_examples() {
        let one_bit = [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1];
        let claim = json!({ "bits": 1, "lst": "eNrbuRgAAhcBXQ" });
        assert_eq!(encode_claim(1, &one_bit), Ok(claim));
        let two_bit = [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3];
        let claim = json!({ "bits": 2, "lst": "eNo76fITAAPfAgc" });
        assert_eq!(encode_claim(2, &two_bit), Ok(claim));

        let mut statuses = vec![0u8; 1 << 20];
        for (value, idx) in (0u8..=255).zip(C4_INDEXES) {
            statuses[idx as usize] = value;
        }
        let claim = encode_claim(8, &statuses).unwrap();
        assert_eq!(StatusList::from_claim(&claim).unwrap(), list(8, C4_LST));
    }

    #[test]
    fn encoder_pads_a_partial_last_byte_with_valid() {
        let claim = encode_claim(2, &[3, 1, 2, 3, 2]).unwrap();
        let list = StatusList::from_claim(&claim).unwrap();
        assert_eq!(list.len(), 8);
        let read: Vec<u8> = (0..8).map(|i| list.status(i).unwrap().value()).collect();
        assert_eq!(read, [3, 1, 2, 3, 2, 0, 0, 0]);
    }

    #[test]
    fn encoder_rejects_bad_bits_and_wide_statuses() {
        assert_eq!(encode_claim(3, &[1]), Err(StatusListError::InvalidBits));
        assert_eq!(encode_claim(0, &[]), Err(StatusListError::InvalidBits));
        assert_eq!(
            encode_claim(1, &[0, 2]),
            Err(StatusListError::StatusTooWide)
        );
        assert_eq!(encode_claim(4, &[16]), Err(StatusListError::StatusTooWide));
        assert!(encode_claim(8, &[255]).is_ok());
    }

    /// A million 1-bit entries are 125,000 bytes raw; compressed, the size follows the share
    /// revoked (the draft's Appendix B: 442 B at 0.01 %, 13.7 KB at 1 %).
    #[test]
    fn million_entry_list_compresses_and_round_trips() {
        const ENTRIES: usize = 1_000_000;
        let mut statuses = vec![0u8; ENTRIES];
        let few = [0, 7, 8, 123_456, 500_000, 999_999];
        for idx in few {
            statuses[idx] = 1;
        }
        let compressed = compress(1, &statuses).unwrap();
        println!(
            "1M entries, {} set: {} bytes compressed",
            few.len(),
            compressed.len()
        );
        assert!(compressed.len() < 1_000, "{} bytes", compressed.len());
        let list = StatusList::from_claim(&encode_claim(1, &statuses).unwrap()).unwrap();
        assert_eq!(list.byte_len(), ENTRIES / 8);
        assert_eq!(list.len(), ENTRIES as u64);
        let few = few.map(|idx| (idx as u64, 1));
        assert_eq!(non_valid(&list), few);
        assert_eq!(list.status(ENTRIES as u64), None);

        // 1 % revoked at pseudo-random places (a fixed LCG, so the size is stable).
        let mut statuses = vec![0u8; ENTRIES];
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        let mut revoked = std::collections::BTreeSet::new();
        while revoked.len() < ENTRIES / 100 {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let idx = (seed >> 33) as usize % ENTRIES;
            statuses[idx] = 1;
            revoked.insert(idx as u64);
        }
        let compressed = compress(1, &statuses).unwrap();
        println!("1M entries, 1% set: {} bytes compressed", compressed.len());
        assert!(compressed.len() < 16_000, "{} bytes", compressed.len());
        let list = StatusList::from_claim(&encode_claim(1, &statuses).unwrap()).unwrap();
        let set: Vec<u64> = non_valid(&list).into_iter().map(|(idx, _)| idx).collect();
        assert_eq!(set, revoked.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn bits_must_be_1_2_4_or_8() {
        let lst = "eNrbuRgAAhcBXQ";
        for bits in [
            json!(0),
            json!(3),
            json!(16),
            json!(256),
            json!(-1),
            json!(1.5),
        ] {
            let claim = json!({ "bits": bits, "lst": lst });
            assert_eq!(
                StatusList::from_claim(&claim),
                Err(StatusListError::InvalidBits),
                "{bits}"
            );
        }
        let claim = json!({ "bits": "1", "lst": lst });
        assert_eq!(
            StatusList::from_claim(&claim),
            Err(StatusListError::InvalidBits)
        );
        let claim = json!({ "lst": lst });
        assert_eq!(
            StatusList::from_claim(&claim),
            Err(StatusListError::InvalidBits)
        );
        for bits in [1u8, 2, 4, 8] {
            let list = StatusList::from_claim(&json!({ "bits": bits, "lst": lst })).unwrap();
            assert_eq!(list.len(), 16 / u64::from(bits));
        }
    }

    #[test]
    fn claim_must_be_an_object_with_a_string_lst() {
        assert_eq!(
            StatusList::from_claim(&json!("x")),
            Err(StatusListError::ClaimNotAnObject)
        );
        assert_eq!(
            StatusList::from_claim(&json!({ "bits": 1 })),
            Err(StatusListError::LstNotAString)
        );
        assert_eq!(
            StatusList::from_claim(&json!({ "bits": 1, "lst": 5 })),
            Err(StatusListError::LstNotAString)
        );
        // Other members, such as aggregation_uri, do not matter.
        let claim = json!({ "bits": 1, "lst": "eNrbuRgAAhcBXQ", "aggregation_uri": "https://e/a" });
        assert_eq!(StatusList::from_claim(&claim).unwrap().len(), 16);
    }

    #[test]
    fn lst_must_be_base64url() {
        for lst in [
            "eNrbuRgAAhcB!Q",
            "eNrb+RgAAhcBXQ",
            "eNrbuRgAAhcBX",
            "eNrb uRgAAhcBXQ",
        ] {
            let claim = json!({ "bits": 1, "lst": lst });
            assert_eq!(
                StatusList::from_claim(&claim),
                Err(StatusListError::InvalidBase64),
                "{lst}"
            );
        }
        // Padding is not sent (RFC 7515 §2) but is tolerated.
        let padded = StatusList::from_claim(&json!({ "bits": 1, "lst": "eNrbuRgAAhcBXQ==" }));
        assert_eq!(padded.unwrap(), list(1, "eNrbuRgAAhcBXQ"));
    }

    #[test]
    fn lst_must_be_zlib() {
        let encode = |bytes: &[u8]| json!({ "bits": 1, "lst": URL_SAFE_NO_PAD.encode(bytes) });
        let zlib = miniz_oxide::deflate::compress_to_vec_zlib(&[0xB9, 0xA3], 9);
        let raw_deflate = miniz_oxide::deflate::compress_to_vec(&[0xB9, 0xA3], 9);
        let mut bad_checksum = zlib.clone();
        *bad_checksum.last_mut().unwrap() ^= 1;
        let truncated = &zlib[..zlib.len() - 3];
        for bytes in [
            &b"not zlib"[..],
            &raw_deflate,
            &bad_checksum,
            truncated,
            &[],
        ] {
            let claim = encode(bytes);
            assert_eq!(
                StatusList::from_claim(&claim),
                Err(StatusListError::InvalidZlib),
                "{claim}"
            );
        }
        assert_eq!(
            StatusList::from_claim(&encode(&zlib)).unwrap().bytes,
            [0xB9, 0xA3]
        );
    }

    #[test]
    fn an_empty_list_has_no_entries() {
        let list = StatusList::from_claim(&encode_claim(1, &[]).unwrap()).unwrap();
        assert!(list.is_empty());
        assert_eq!((list.len(), list.status(0)), (0, None));
    }

    #[test]
    fn inflating_past_the_limit_is_refused() {
        // 17 MiB of zeros deflate to about 17 KB: a small zip bomb.
        let bomb = miniz_oxide::deflate::compress_to_vec_zlib(&vec![0u8; 17 << 20], 1);
        assert!(bomb.len() < 100_000, "{} bytes", bomb.len());
        let claim = json!({ "bits": 1, "lst": URL_SAFE_NO_PAD.encode(&bomb) });
        assert_eq!(
            StatusList::from_claim(&claim),
            Err(StatusListError::TooLarge)
        );

        let over = vec![0u8; MAX_DECOMPRESSED_BYTES + 1];
        let claim = json!({ "bits": 8, "lst": URL_SAFE_NO_PAD.encode(miniz_oxide::deflate::compress_to_vec_zlib(&over, 1)) });
        assert_eq!(
            StatusList::from_claim(&claim),
            Err(StatusListError::TooLarge)
        );

        // Exactly at the limit is accepted.
        let at = &over[..MAX_DECOMPRESSED_BYTES];
        let claim = json!({ "bits": 8, "lst": URL_SAFE_NO_PAD.encode(miniz_oxide::deflate::compress_to_vec_zlib(at, 1)) });
        let list = StatusList::from_claim(&claim).unwrap();
        assert_eq!(list.len(), MAX_DECOMPRESSED_BYTES as u64);
    }

    #[test]
    fn out_of_range_index_is_none() {
        let list = list(2, "eNo76fITAAPfAgc");
        assert_eq!(list.status(11), Some(Status::from(3)));
        for idx in [12, 13, 1 << 32, u64::MAX] {
            assert_eq!(list.status(idx), None, "{idx}");
        }
    }

    #[test]
    fn status_values() {
        for value in 0..=255u8 {
            assert_eq!(Status::from(value).value(), value);
        }
        assert_eq!(Status::from(0), Status::Valid);
        assert_eq!(Status::from(1), Status::Invalid);
        assert_eq!(Status::from(2), Status::Suspended);
        assert_eq!(Status::from(3), Status::Other(3));
        let specific: Vec<u8> = (0..=255u8)
            .filter(|&v| Status::from(v).is_application_specific())
            .collect();
        assert_eq!(specific, [0x03, 0x0C, 0x0D, 0x0E, 0x0F]);
    }

    #[test]
    fn debug_does_not_dump_the_bytes() {
        let shown = format!("{:?}", list(1, C1_LST));
        assert_eq!(shown, "StatusList { bits: 1, byte_len: 131072 }");
    }

    #[test]
    fn reference_of_reads_the_status_list_member() {
        let payload = json!({
            "iss": "https://example.com/issuer",
            "status": { "status_list": { "idx": 0, "uri": "https://example.com/statuslists/1" } }
        });
        let expected = StatusReference {
            idx: 0,
            uri: "https://example.com/statuslists/1".to_owned(),
        };
        assert_eq!(reference_of(&payload), Ok(Some(expected)));
        let big = json!({ "status": { "status_list": { "idx": u64::MAX, "uri": "u:x", "x": 1 } } });
        assert_eq!(reference_of(&big).unwrap().unwrap().idx, u64::MAX);
    }

    #[test]
    fn reference_of_is_none_without_a_status_list() {
        assert_eq!(reference_of(&json!({ "sub": "alice" })), Ok(None));
        assert_eq!(reference_of(&json!({ "status": {} })), Ok(None));
        let other = json!({ "status": { "other_mechanism": { "id": 1 } } });
        assert_eq!(reference_of(&other), Ok(None));
        assert_eq!(reference_of(&json!("not an object")), Ok(None));
    }

    #[test]
    fn reference_of_rejects_malformed_references() {
        let cases = [
            (
                json!({ "status": "revoked" }),
                StatusListError::StatusNotAnObject,
            ),
            (
                json!({ "status": null }),
                StatusListError::StatusNotAnObject,
            ),
            (
                json!({ "status": { "status_list": [0] } }),
                StatusListError::ReferenceNotAnObject,
            ),
            (
                json!({ "status": { "status_list": { "uri": "u:x" } } }),
                StatusListError::InvalidIndex,
            ),
            (
                json!({ "status": { "status_list": { "idx": -1, "uri": "u:x" } } }),
                StatusListError::InvalidIndex,
            ),
            (
                json!({ "status": { "status_list": { "idx": 1.5, "uri": "u:x" } } }),
                StatusListError::InvalidIndex,
            ),
            (
                json!({ "status": { "status_list": { "idx": 1.0, "uri": "u:x" } } }),
                StatusListError::InvalidIndex,
            ),
            (
                json!({ "status": { "status_list": { "idx": "3", "uri": "u:x" } } }),
                StatusListError::InvalidIndex,
            ),
            (
                json!({ "status": { "status_list": { "idx": 3 } } }),
                StatusListError::InvalidUri,
            ),
            (
                json!({ "status": { "status_list": { "idx": 3, "uri": 7 } } }),
                StatusListError::InvalidUri,
            ),
            (
                json!({ "status": { "status_list": { "idx": 3, "uri": "" } } }),
                StatusListError::InvalidUri,
            ),
        ];
        for (payload, error) in cases {
            assert_eq!(reference_of(&payload), Err(error), "{payload}");
        }
    }

    const URI: &str = "https://example.com/statuslists/1";
    const NOW: i64 = 1_700_000_000;

    /// The draft's §5.1 example payload, its times moved around `NOW`.
    fn token(changes: Value) -> Value {
        let mut payload = json!({
            "sub": URI,
            "iat": NOW - 60,
            "exp": NOW + 86_400,
            "ttl": 43_200,
            "status_list": { "bits": 1, "lst": "eNrbuRgAAhcBXQ" },
        });
        for (name, value) in changes.as_object().unwrap() {
            if value.is_null() {
                payload.as_object_mut().unwrap().remove(name);
            } else {
                payload[name] = value.clone();
            }
        }
        payload
    }

    #[test]
    fn token_payload_gives_the_list_and_its_times() {
        let checked = from_token_payload(&token(json!({})), URI, NOW, 300).unwrap();
        assert_eq!(checked.list, list(1, "eNrbuRgAAhcBXQ"));
        assert_eq!(checked.list.status(0), Some(Status::Invalid));
        assert_eq!(checked.issued_at, NOW - 60);
        assert_eq!(checked.expires_at, Some(NOW + 86_400));
        assert_eq!(checked.fresh_until, NOW + 43_200);
    }

    #[test]
    fn fresh_until_is_ttl_from_now_but_never_past_exp() {
        let fresh = |changes| {
            from_token_payload(&token(changes), URI, NOW, 300)
                .unwrap()
                .fresh_until
        };
        // ttl counts from the fetch, not from iat.
        assert_eq!(fresh(json!({ "iat": NOW - 40_000 })), NOW + 43_200);
        assert_eq!(fresh(json!({ "exp": NOW + 100 })), NOW + 100);
        assert_eq!(fresh(json!({ "ttl": null })), NOW + 300);
        assert_eq!(fresh(json!({ "ttl": null, "exp": NOW + 10 })), NOW + 10);
        assert_eq!(fresh(json!({ "ttl": null, "exp": null })), NOW + 300);
        assert_eq!(fresh(json!({ "exp": null })), NOW + 43_200);
        assert_eq!(fresh(json!({ "ttl": 0.25 })), NOW + 1);
        assert_eq!(fresh(json!({ "ttl": 59.5 })), NOW + 60);
        assert_eq!(fresh(json!({ "ttl": u64::MAX, "exp": null })), i64::MAX);
        assert_eq!(fresh(json!({ "ttl": 1e300, "exp": null })), i64::MAX);
        // Fractional times are read as token claims are: the fraction is dropped.
        assert_eq!(fresh(json!({ "exp": NOW as f64 + 5.9 })), NOW + 5);
    }

    #[test]
    fn token_subject_must_be_the_referenced_uri() {
        let check = |payload: Value| from_token_payload(&payload, URI, NOW, 300).map(|_| ());
        let other = "https://example.com/statuslists/2";
        assert_eq!(
            check(token(json!({ "sub": other }))),
            Err(StatusListError::SubjectMismatch)
        );
        // Simple string comparison: no normalisation.
        let slash = format!("{URI}/");
        assert_eq!(
            check(token(json!({ "sub": slash }))),
            Err(StatusListError::SubjectMismatch)
        );
        assert_eq!(
            check(token(json!({ "sub": null }))),
            Err(StatusListError::MissingSubject)
        );
        assert_eq!(
            check(token(json!({ "sub": 1 }))),
            Err(StatusListError::MissingSubject)
        );
        assert_eq!(check(json!([])), Err(StatusListError::PayloadNotAnObject));
    }

    #[test]
    fn token_needs_iat_and_an_unexpired_exp() {
        let check = |changes| from_token_payload(&token(changes), URI, NOW, 300).map(|_| ());
        assert_eq!(
            check(json!({ "iat": null })),
            Err(StatusListError::MissingIssuedAt)
        );
        assert_eq!(
            check(json!({ "iat": "yesterday" })),
            Err(StatusListError::InvalidIssuedAt)
        );
        assert_eq!(
            check(json!({ "exp": "soon" })),
            Err(StatusListError::InvalidExpiry)
        );
        assert_eq!(check(json!({ "exp": NOW })), Err(StatusListError::Expired));
        assert_eq!(
            check(json!({ "exp": NOW - 1 })),
            Err(StatusListError::Expired)
        );
        assert_eq!(check(json!({ "exp": NOW + 1 })), Ok(()));
    }

    #[test]
    fn token_ttl_must_be_a_positive_number() {
        let check =
            |ttl| from_token_payload(&token(json!({ "ttl": ttl })), URI, NOW, 300).map(|_| ());
        for ttl in [
            json!(0),
            json!(-5),
            json!(0.0),
            json!(-0.5),
            json!("60"),
            json!([60]),
        ] {
            assert_eq!(
                check(ttl.clone()),
                Err(StatusListError::InvalidTtl),
                "{ttl}"
            );
        }
    }

    #[test]
    fn token_needs_a_valid_status_list() {
        let check = |changes| from_token_payload(&token(changes), URI, NOW, 300).map(|_| ());
        assert_eq!(
            check(json!({ "status_list": null })),
            Err(StatusListError::MissingStatusList)
        );
        assert_eq!(
            check(json!({ "status_list": "x" })),
            Err(StatusListError::ClaimNotAnObject)
        );
        let bad_bits = json!({ "status_list": { "bits": 3, "lst": "eNrbuRgAAhcBXQ" } });
        assert_eq!(check(bad_bits), Err(StatusListError::InvalidBits));
    }

    #[test]
    fn errors_display_short_lower_case_messages() {
        let all = [
            StatusListError::StatusNotAnObject,
            StatusListError::ReferenceNotAnObject,
            StatusListError::InvalidIndex,
            StatusListError::InvalidUri,
            StatusListError::PayloadNotAnObject,
            StatusListError::MissingSubject,
            StatusListError::SubjectMismatch,
            StatusListError::MissingIssuedAt,
            StatusListError::InvalidIssuedAt,
            StatusListError::InvalidExpiry,
            StatusListError::Expired,
            StatusListError::InvalidTtl,
            StatusListError::MissingStatusList,
            StatusListError::ClaimNotAnObject,
            StatusListError::InvalidBits,
            StatusListError::LstNotAString,
            StatusListError::InvalidBase64,
            StatusListError::InvalidZlib,
            StatusListError::TooLarge,
            StatusListError::StatusTooWide,
        ];
        for error in all {
            let message = error.to_string();
            assert!(!message.is_empty() && message.len() < 60, "{message}");
            assert!(
                !message.starts_with(|c: char| c.is_ascii_uppercase()),
                "{message}"
            );
        }
        assert_eq!(
            StatusListError::TooLarge.to_string(),
            "status list inflates past 16777216 bytes"
        );
    }
}
