//! Header maps as the host hands them over: bytes. The proxy-wasm SDK decodes them with
//! `String::from_utf8(..).unwrap()` and trusts the sizes it is given, so one header value that
//! is not UTF-8 (Envoy passes obs-text through, from a client or an upstream) panics the VM.
//! Here the serialized map is read without trusting it, and values that are not UTF-8 are set
//! apart by name, for the guard to refuse or ignore deliberately.

use crate::token::extract::TokenSource;

/// `(name, value)` pairs, as bytes, borrowed from the host's serialized map: reading a
/// request's headers allocates one list, not two buffers per header (issue 18: the pairs were
/// copied out one by one on every request).
pub type RawHeaders<'a> = Vec<(&'a [u8], &'a [u8])>;

/// The pairs of a serialized header map (proxy-wasm ABI 0.2.1): a little-endian `u32` count,
/// then a `u32` name size and a `u32` value size per pair, then each name and each value
/// followed by a NUL. `None` when the bytes do not hold what the sizes say. Empty bytes are an
/// empty map (what the host hands over for one).
pub fn deserialize(bytes: &[u8]) -> Option<RawHeaders<'_>> {
    let mut pairs = Vec::with_capacity(capacity(bytes));
    each_pair(bytes, |name, value| pairs.push((name, value)))?;
    Some(pairs)
}

/// A request's serialized headers read and split by `split_utf8` in one pass, into one list:
/// what `split_utf8(deserialize(bytes)?)` gives, without the intermediate list (one
/// allocation and one pass less on every request).
pub fn read(bytes: &[u8]) -> Option<Headers<'_>> {
    let mut headers = Headers::with_room(capacity(bytes));
    each_pair(bytes, |name, value| headers.add(name, value))?;
    Some(headers)
}

/// Room for the pairs the map says it holds, bounded by what its bytes can hold.
fn capacity(bytes: &[u8]) -> usize {
    read_u32(bytes, 0).unwrap_or(0).min(bytes.len() / 10)
}

/// Calls `pair` with each (name, value) of a serialized map, in order; `None` when the bytes
/// do not hold what the sizes say (some pairs may have been seen by then). Empty bytes are an
/// empty map.
fn each_pair<'a>(bytes: &'a [u8], mut pair: impl FnMut(&'a [u8], &'a [u8])) -> Option<()> {
    if bytes.is_empty() {
        return Some(());
    }
    let count = read_u32(bytes, 0)?;
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    for n in 0..count {
        let sizes = n.checked_mul(8)?.checked_add(4)?;
        let name_size = read_u32(bytes, sizes)?;
        let value_size = read_u32(bytes, sizes.checked_add(4)?)?;
        let (name, after_name) = take(bytes, data, name_size)?;
        let (value, after_value) = take(bytes, after_name, value_size)?;
        pair(name, value);
        data = after_value;
    }
    Some(())
}

/// The host's serialization of `pairs` (for a local response's headers). A field longer than
/// 4 GiB cannot be said; the filter's own headers are a few bytes.
pub fn serialize(pairs: &[(&str, &str)]) -> Vec<u8> {
    let size = |field: &str| u32::try_from(field.len()).unwrap_or(u32::MAX).to_le_bytes();
    let count = u32::try_from(pairs.len()).unwrap_or(u32::MAX);
    let mut bytes = count.to_le_bytes().to_vec();
    for (name, value) in pairs {
        bytes.extend_from_slice(&size(name));
        bytes.extend_from_slice(&size(value));
    }
    for (name, value) in pairs {
        for field in [name, value] {
            bytes.extend_from_slice(field.as_bytes());
            bytes.push(0);
        }
    }
    bytes
}

/// Owned pairs as the borrowed ones the guard reads and the host calls take.
pub fn as_str_pairs(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

fn read_u32(bytes: &[u8], at: usize) -> Option<usize> {
    let four: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(four)).ok()
}

/// `size` bytes at `at`, and where the next field starts (after the NUL).
fn take(bytes: &[u8], at: usize, size: usize) -> Option<(&[u8], usize)> {
    let end = at.checked_add(size)?;
    let field = bytes.get(at..end)?;
    Some((field, end.checked_add(1)?))
}

/// A request's headers, split by whether they can be read as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers<'a> {
    /// Every header whose name and value are UTF-8, in the host's order.
    pub text: Vec<(&'a str, &'a str)>,
    /// Names (as the host gave them, lower case in Envoy) of headers whose value is not UTF-8.
    pub not_utf8: Vec<&'a str>,
}

/// Sets apart what is not UTF-8. A header whose name is not UTF-8 is dropped: every name the
/// configuration can mention is text, so none could match it.
pub fn split_utf8(raw: RawHeaders<'_>) -> Headers<'_> {
    let mut headers = Headers::with_room(raw.len());
    for (name, value) in raw {
        headers.add(name, value);
    }
    headers
}

impl<'a> Headers<'a> {
    /// Room for `pairs` text headers (nearly every header is text).
    fn with_room(pairs: usize) -> Self {
        Headers {
            text: Vec::with_capacity(pairs),
            not_utf8: Vec::new(),
        }
    }

    /// One header, as `split_utf8` sorts it.
    fn add(&mut self, name: &'a [u8], value: &'a [u8]) {
        let Some(name) = text(name) else {
            return;
        };
        match text(value) {
            Some(value) => self.text.push((name, value)),
            None => {
                if !self.not_utf8.contains(&name) {
                    self.not_utf8.push(name);
                }
            }
        }
    }
}

/// The field as text, `None` when it is not UTF-8. Nearly every header is ASCII, which is
/// checked a word at a time: UTF-8 validation byte by byte was the largest part of a cache hit
/// (1,560 of 7,040 instructions, most of it the token).
fn text(field: &[u8]) -> Option<&str> {
    // The fuzz targets run with debug assertions: what the fast path takes, the full check takes.
    debug_assert!(!all_ascii(field) || std::str::from_utf8(field).is_ok());
    if all_ascii(field) {
        // SAFETY: ASCII bytes are valid UTF-8.
        return Some(unsafe { std::str::from_utf8_unchecked(field) });
    }
    std::str::from_utf8(field).ok()
}

/// `<[u8]>::is_ascii`, 8 bytes at a time: on wasm32 `is_ascii` goes a `usize` (4 bytes) at
/// a time, and the header map holds the token (0.6-1.2 KB) on every request.
fn all_ascii(bytes: &[u8]) -> bool {
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let (words, tail) = bytes.as_chunks::<8>();
    let high = words
        .iter()
        .fold(0, |seen, word| seen | u64::from_ne_bytes(*word));
    high & HIGH_BITS == 0 && tail.is_ascii()
}

/// A response header's values as text, and the sizes of those that are not UTF-8: such a value
/// is refused as a whole (a lossy reading would act on text the upstream never sent, e.g.
/// `sub=\xff\xfe` would revoke the subject "\u{FFFD}\u{FFFD}").
pub fn text_values(values: Vec<&[u8]>) -> (Vec<&str>, Vec<usize>) {
    let mut text = Vec::new();
    let mut refused = Vec::new();
    for value in values {
        match std::str::from_utf8(value) {
            Ok(value) => text.push(value),
            Err(_) => refused.push(value.len()),
        }
    }
    (text, refused)
}

/// Whether one of these sources reads a header whose value is not UTF-8: such a credential is
/// malformed (it cannot be a token), whatever else the request carries. The query is not
/// checked here: a `:path` that is not UTF-8 matches no rule.
pub fn credential_unreadable(sources: &[TokenSource], not_utf8: &[&str]) -> bool {
    not_utf8.iter().any(|bad| {
        sources.iter().any(|source| match source {
            TokenSource::Header { name, .. } => name.eq_ignore_ascii_case(bad),
            TokenSource::Cookie { .. } => bad.eq_ignore_ascii_case("cookie"),
            TokenSource::Param { .. } => false,
        })
    })
}

/// Whether the request line's pseudo-headers can be matched against rules at all.
pub fn request_line_unreadable(not_utf8: &[&str]) -> bool {
    not_utf8
        .iter()
        .any(|name| *name == ":path" || *name == ":method")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length around the 8-byte words, a high byte at every place: as `is_ascii`.
    #[test]
    fn ascii_is_told_as_is_ascii_tells_it() {
        for len in 0..40 {
            let clean = vec![b'a'; len];
            assert!(all_ascii(&clean));
            for at in 0..len {
                for high in [0x80u8, 0xc3, 0xff] {
                    let mut bytes = clean.clone();
                    bytes[at] = high;
                    assert_eq!(all_ascii(&bytes), bytes.is_ascii(), "{len} {at}");
                    assert!(!all_ascii(&bytes));
                }
            }
        }
    }

    /// The host's serialization (the SDK's `serialize_map_bytes`).
    fn host_serialize(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut bytes = (pairs.len() as u32).to_le_bytes().to_vec();
        for (name, value) in pairs {
            bytes.extend_from_slice(&(name.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
        }
        for (name, value) in pairs {
            bytes.extend_from_slice(name);
            bytes.push(0);
            bytes.extend_from_slice(value);
            bytes.push(0);
        }
        bytes
    }

    #[test]
    fn reads_what_the_host_serializes_bytes_and_all() {
        let pairs: [(&[u8], &[u8]); 3] = [
            (b":path", b"/api"),
            (b"authorization", b"Bearer \xff\xfe"),
            (b"empty", b""),
        ];
        let serialized = host_serialize(&pairs);
        assert_eq!(deserialize(&serialized).unwrap(), pairs);
        assert_eq!(deserialize(b""), Some(Vec::new()));
        assert_eq!(deserialize(&host_serialize(&[])), Some(Vec::new()));
    }

    #[test]
    fn what_the_filter_serializes_reads_back() {
        let pairs = [
            ("www-authenticate", "Bearer realm=\"x\""),
            ("content-type", ""),
        ];
        let serialized = serialize(&pairs);
        let raw = deserialize(&serialized).unwrap();
        let text: Vec<(&str, &str)> = raw
            .iter()
            .map(|(n, v)| {
                (
                    std::str::from_utf8(n).unwrap(),
                    std::str::from_utf8(v).unwrap(),
                )
            })
            .collect();
        assert_eq!(text, pairs);
        let as_bytes: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect();
        assert_eq!(serialize(&pairs), host_serialize(&as_bytes));
    }

    /// `read` is `split_utf8` of `deserialize`, for whole maps and for every cut of one (a map
    /// whose sizes say more than its bytes hold).
    #[test]
    fn read_is_deserialize_then_split_utf8() {
        let pairs: [(&[u8], &[u8]); 6] = [
            (b":path", b"/api?x=1"),
            (b"authorization", b"Bearer a.b.c"),
            (b"x-bad", b"\xff\xfe"),
            (b"\xc3", b"value of a name that is not UTF-8"),
            (b"x-bad", b"again \x80"),
            (b"empty", b""),
        ];
        let serialized = host_serialize(&pairs);
        for end in 0..=serialized.len() {
            let bytes = &serialized[..end];
            assert_eq!(
                read(bytes),
                deserialize(bytes).map(split_utf8),
                "cut at {end}"
            );
        }
        assert_eq!(read(&serialized).unwrap().not_utf8, vec!["x-bad"]);
        assert_eq!(read(&serialized).unwrap().text.len(), 3);
    }

    #[test]
    fn sizes_that_lie_are_refused_not_trusted() {
        let good = host_serialize(&[(b"a", b"bc")]);
        for cut in 1..good.len() - 1 {
            assert_eq!(deserialize(&good[..cut]), None, "cut at {cut}");
        }
        let mut huge_count = good.clone();
        huge_count[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(deserialize(&huge_count), None);
        let mut huge_value = good;
        huge_value[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(deserialize(&huge_value), None);
    }

    #[test]
    fn values_that_are_not_utf8_are_set_apart_by_name() {
        let raw: RawHeaders = vec![
            (b"x-tenant", b"blue"),
            (b"x-name", "caf\u{e9}".as_bytes()),
            (b"cookie", b"a=\xe9"),
            (b"cookie", b"b=\xff"),
            (b"x-\xff", b"dropped"),
            (b"authorization", b"Bearer \xed\xa0\x80"),
        ];
        let headers = split_utf8(raw);
        assert_eq!(
            headers.text,
            vec![("x-tenant", "blue"), ("x-name", "caf\u{e9}")]
        );
        assert_eq!(headers.not_utf8, vec!["cookie", "authorization"]);
    }

    #[test]
    fn a_response_value_that_is_not_utf8_is_refused_whole() {
        let (text, refused) = text_values(vec![b"sub=\xff\xfe", b"jti=ok", b"self, sub=caf\xc3"]);
        assert_eq!(text, vec!["jti=ok"]);
        assert_eq!(refused, vec![6, 14]);
    }

    #[test]
    fn only_sources_the_route_reads_make_a_credential_unreadable() {
        let bearer = TokenSource::authorization_bearer();
        let cookie = TokenSource::Cookie {
            name: "session".into(),
        };
        let param = TokenSource::Param {
            name: "access_token".into(),
        };
        let not_utf8 = |names: &'static [&'static str]| names.to_vec();
        assert!(credential_unreadable(
            std::slice::from_ref(&bearer),
            &not_utf8(&["authorization"])
        ));
        assert!(credential_unreadable(
            &[param.clone(), cookie.clone()],
            &not_utf8(&["cookie"])
        ));
        assert!(!credential_unreadable(
            std::slice::from_ref(&bearer),
            &not_utf8(&["cookie"])
        ));
        assert!(!credential_unreadable(
            std::slice::from_ref(&cookie),
            &not_utf8(&["x-forwarded-for"])
        ));
        assert!(!credential_unreadable(
            std::slice::from_ref(&param),
            &not_utf8(&[":path"])
        ));
        assert!(request_line_unreadable(&not_utf8(&[":path"])));
        assert!(!request_line_unreadable(&not_utf8(&[":authority"])));
    }
}
