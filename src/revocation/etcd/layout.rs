//! The key layout of the etcd revocation store: one key per revocation under the configured
//! `prefix` (e.g. `/bearer-guard/revoked/`), its value JSON. Pure: keys and values in, entries
//! out; the watch that reads them and the set they fill live elsewhere.
//!
//! | key after `prefix`          | value                                 | revokes                 |
//! | --------------------------- | ------------------------------------- | ----------------------- |
//! | `jti/<jti>`                 | `{}` or `{"exp": N}`                  | that `jti`              |
//! | `token/<64 lowercase hex>`  | `{}` or `{"exp": N}`                  | that token identity     |
//! | `sub/<sub>`                 | `{"issued_before": N}` (+ `"exp": N`) | that `sub`, `iat <= N`  |
//! | `issued_before`             | `N`                                   | every token, `iat <= N` |
//! | `iss/<issuer>/` + the above | the same                              | the same, one issuer's  |
//!
//! `<jti>`, `<sub>` and `<issuer>` are percent-encoded (RFC 3986 `%XX`; `+` is a plus: this is
//! not form encoding); the token identity is `revocation::doc`'s `token_sha256` (`token::id`).
//! `N` is Unix seconds, an integer from 0 to [`MAX_SECONDS`]; cutoffs mean what `doc`'s mean
//! (`iat` at the cutoff counts, a token without `iat` counts as before). Writers attach a
//! lease of [`lease_seconds`], so etcd itself deletes entries whose token is dead.
//!
//! Anything under the prefix that does not parse is a [`Skipped`]: counted and logged by the
//! caller (with [`skipped_line`], which never shows the key), never fatal. Where the layout
//! leaves room, reading leans towards revoking, since a skipped entry is a revoked token let
//! in: unknown value fields are ignored, an empty `jti/`/`token/` value is `{}`, and a name
//! may hold any character but `/` unencoded (a hand-typed `jti/urn:uuid:…` is read as meant).

use std::fmt;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::observe::fingerprint::{digest_to_hex, fingerprint, hex_to_digest};
use crate::percent;
use crate::revocation::doc::PublishEntry;
use crate::token::id::TokenDigest;

/// Keys longer than this are skipped (a 1 KiB `jti` percent-encodes to at most 3 KiB).
pub const MAX_KEY_BYTES: usize = 4096;
/// Values longer than this are skipped: the largest valid one is well under 100 bytes.
pub const MAX_VALUE_BYTES: usize = 4096;
/// The largest time accepted, 9999-12-31T23:59:59Z: larger is a writer's bug (milliseconds,
/// say), and it keeps `exp + skew` far from overflowing.
pub const MAX_SECONDS: i64 = 253_402_300_799;

/// One key and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreEntry {
    /// `iss/<issuer>/`: the entry applies to that issuer's providers only.
    pub issuer: Option<String>,
    pub revoked: Revoked,
}

/// What an entry revokes (the four kinds of `revocation::doc`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    Jti {
        jti: String,
        exp: Option<i64>,
    },
    Token {
        id: TokenDigest,
        exp: Option<i64>,
    },
    /// Tokens of `sub` issued at or before `issued_before`. `exp`, as in `doc`'s subjects:
    /// when the last such token expires anyway (then the entry may go).
    Subject {
        sub: String,
        issued_before: i64,
        exp: Option<i64>,
    },
    /// Every token issued at or before it.
    IssuedBefore(i64),
}

impl Revoked {
    /// When the entry stops mattering; `None`: never by itself (no lease).
    pub fn exp(&self) -> Option<i64> {
        match self {
            Revoked::Jti { exp, .. }
            | Revoked::Token { exp, .. }
            | Revoked::Subject { exp, .. } => *exp,
            Revoked::IssuedBefore(_) => None,
        }
    }
}

/// Why a key under the prefix was not read as an entry. Carries nothing of the key: a key
/// may hold a token someone pasted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// Not under the prefix (a watch on the prefix never sends one; a caller bug).
    OutsidePrefix,
    KeyTooLarge,
    KeyNotUtf8,
    /// Not `jti`, `token`, `sub`, `issued_before` (or `iss` at the top).
    UnknownKind,
    /// `jti` without a `/<jti>`, `iss/<issuer>` without what follows.
    MissingSegment,
    /// A `/` after the value (a `/` inside one is `%2F`).
    ExtraSegment,
    /// `%` not followed by two hex digits.
    BadPercentEncoding,
    /// Percent-decodes to bytes that are not UTF-8.
    DecodedNotUtf8,
    EmptyJti,
    EmptySubject,
    EmptyIssuer,
    TokenIdLength,
    /// The token identity must be lowercase hex: one spelling per key, so deletes find it.
    TokenIdNotLowercaseHex,
    ValueTooLarge,
    ValueNotJson,
    /// `jti/`, `token/` and `sub/` take an object.
    ValueNotObject,
    /// `sub/` without `issued_before`.
    MissingIssuedBefore,
    /// A time (`exp`, `issued_before`) that is not a number.
    TimeNotNumber,
    TimeNotInteger,
    TimeNegative,
    /// Over [`MAX_SECONDS`].
    TimeTooLarge,
}

impl Skipped {
    pub fn as_str(self) -> &'static str {
        match self {
            Skipped::OutsidePrefix => "key outside the prefix",
            Skipped::KeyTooLarge => "key too large",
            Skipped::KeyNotUtf8 => "key not UTF-8",
            Skipped::UnknownKind => "unknown kind (not jti/, token/, sub/, issued_before, iss/)",
            Skipped::MissingSegment => "key ends too early",
            Skipped::ExtraSegment => "extra / in the key",
            Skipped::BadPercentEncoding => "% not followed by two hex digits",
            Skipped::DecodedNotUtf8 => "percent-decodes to non-UTF-8",
            Skipped::EmptyJti => "empty jti",
            Skipped::EmptySubject => "empty sub",
            Skipped::EmptyIssuer => "empty issuer",
            Skipped::TokenIdLength => "token identity not 64 hex characters",
            Skipped::TokenIdNotLowercaseHex => "token identity not lowercase hex",
            Skipped::ValueTooLarge => "value too large",
            Skipped::ValueNotJson => "value not JSON",
            Skipped::ValueNotObject => "value not a JSON object",
            Skipped::MissingIssuedBefore => "sub value without issued_before",
            Skipped::TimeNotNumber => "time not a number",
            Skipped::TimeNotInteger => "time not an integer",
            Skipped::TimeNegative => "time negative",
            Skipped::TimeTooLarge => "time too large",
        }
    }
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A log line for a skipped key: the cause and the key's fingerprint (first 16 hex of its
/// SHA-256; `printf %s "$KEY" | sha256sum` finds it), never the key itself.
pub fn skipped_line(skipped: Skipped, key: &[u8]) -> String {
    let digest: TokenDigest = Sha256::digest(key).into();
    format!(
        "etcd revocation key {} skipped: {skipped}",
        fingerprint(&digest)
    )
}

/// Reads one key and its value. `prefix` is used as given (the config makes it end in `/`).
/// The key is judged before the value: its cause is the one an operator fixes first.
pub fn parse_entry(prefix: &str, key: &[u8], value: &[u8]) -> Result<StoreEntry, Skipped> {
    let rest = key
        .strip_prefix(prefix.as_bytes())
        .ok_or(Skipped::OutsidePrefix)?;
    if key.len() > MAX_KEY_BYTES {
        return Err(Skipped::KeyTooLarge);
    }
    let rest = std::str::from_utf8(rest).map_err(|_| Skipped::KeyNotUtf8)?;
    let (issuer, name) = parse_key(rest)?;
    if value.len() > MAX_VALUE_BYTES {
        return Err(Skipped::ValueTooLarge);
    }
    let revoked = match name {
        Name::Jti(jti) => Revoked::Jti {
            jti,
            exp: exp_only(value)?,
        },
        Name::Token(id) => Revoked::Token {
            id,
            exp: exp_only(value)?,
        },
        Name::Sub(sub) => {
            let object = object(value)?;
            let issued_before = object
                .get("issued_before")
                .ok_or(Skipped::MissingIssuedBefore)
                .and_then(seconds)?;
            Revoked::Subject {
                sub,
                issued_before,
                exp: object.get("exp").map(seconds).transpose()?,
            }
        }
        Name::IssuedBefore => Revoked::IssuedBefore(seconds(&json(value)?)?),
    };
    Ok(StoreEntry { issuer, revoked })
}

/// What a key names, decoded.
enum Name {
    Jti(String),
    Token(TokenDigest),
    Sub(String),
    IssuedBefore,
}

/// The key after the prefix: `[iss/<issuer>/]<kind>[/<name>]`, nothing more.
fn parse_key(rest: &str) -> Result<(Option<String>, Name), Skipped> {
    let mut segments = rest.split('/');
    let mut next = || segments.next().ok_or(Skipped::MissingSegment);
    let mut kind = next()?;
    let issuer = if kind == "iss" {
        let issuer = decode(next()?)?;
        if issuer.is_empty() {
            return Err(Skipped::EmptyIssuer);
        }
        kind = next()?;
        Some(issuer)
    } else {
        None
    };
    let name = match kind {
        "jti" => Name::Jti(non_empty(decode(next()?)?, Skipped::EmptyJti)?),
        "token" => Name::Token(token_id(next()?)?),
        "sub" => Name::Sub(non_empty(decode(next()?)?, Skipped::EmptySubject)?),
        "issued_before" => Name::IssuedBefore,
        _ => return Err(Skipped::UnknownKind),
    };
    if segments.next().is_some() {
        return Err(Skipped::ExtraSegment);
    }
    Ok((issuer, name))
}

fn non_empty(name: String, empty: Skipped) -> Result<String, Skipped> {
    if name.is_empty() {
        Err(empty)
    } else {
        Ok(name)
    }
}

/// The key an entry is written under: names percent-encoded but for RFC 3986's unreserved
/// characters, so `parse_entry` reads it back whatever they hold.
pub fn key_for(prefix: &str, entry: &StoreEntry) -> String {
    let mut key = String::from(prefix);
    if let Some(issuer) = &entry.issuer {
        key.push_str("iss/");
        percent::encode_into(&mut key, issuer);
        key.push('/');
    }
    match &entry.revoked {
        Revoked::Jti { jti, .. } => {
            key.push_str("jti/");
            percent::encode_into(&mut key, jti);
        }
        Revoked::Token { id, .. } => {
            key.push_str("token/");
            key.push_str(&digest_to_hex(id));
        }
        Revoked::Subject { sub, .. } => {
            key.push_str("sub/");
            percent::encode_into(&mut key, sub);
        }
        Revoked::IssuedBefore(_) => key.push_str("issued_before"),
    }
    key
}

/// The value an entry is written with.
pub fn value_for(entry: &StoreEntry) -> String {
    let mut object = Map::new();
    match &entry.revoked {
        Revoked::IssuedBefore(cutoff) => return cutoff.to_string(),
        Revoked::Subject { issued_before, .. } => {
            object.insert("issued_before".into(), json!(issued_before));
        }
        Revoked::Jti { .. } | Revoked::Token { .. } => {}
    }
    if let Some(exp) = entry.revoked.exp() {
        object.insert("exp".into(), json!(exp));
    }
    Value::Object(object).to_string()
}

/// The lease a writer attaches: until the token is dead on every proxy (`exp` plus the
/// largest clock skew a provider allows), at least 1 second (etcd's minimum TTL; a token
/// already dead still gets a brief entry rather than none). A negative skew counts as 0.
/// `None`: no `exp`, no lease (the entry stays until it is deleted).
pub fn lease_seconds(exp: Option<i64>, max_clock_skew_seconds: i64, now: i64) -> Option<i64> {
    let end = exp?.saturating_add(max_clock_skew_seconds.max(0));
    Some(end.saturating_sub(now).clamp(1, MAX_LEASE_TTL_SECONDS))
}

/// etcd's largest lease TTL (`MaxLeaseTTL`, 9e9 s): a grant above it is refused.
pub const MAX_LEASE_TTL_SECONDS: i64 = 9_000_000_000;

/// Why a learned revocation is not written to etcd (it still holds on this proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotWritten {
    /// Its provider's `iss` is not its own alone (`issuer_of` said none): an entry for that
    /// issuer would apply to another key holder's tokens.
    Issuer,
    /// The key or value would be one readers skip (a `jti` too long for a key, say).
    Unreadable(Skipped),
}

/// A revocation learned at run time (a response header, misuse detection) as the etcd entry
/// it is written as under `prefix`. A provider-scoped one goes under its provider's issuer
/// (`issuer_of`; `jti` and `sub` are unique per issuer). Only what every reader reads back
/// as the same entry is written; an `exp` past [`MAX_SECONDS`] is written as that.
pub fn from_learned(
    prefix: &str,
    entry: &PublishEntry,
    issuer_of: &dyn Fn(&str) -> Option<String>,
) -> Result<StoreEntry, NotWritten> {
    let exp = |exp: &Option<i64>| exp.map(|e| e.clamp(0, MAX_SECONDS));
    let (provider, revoked) = match entry {
        PublishEntry::Jti {
            provider,
            jti,
            exp: e,
        } => (
            provider,
            Revoked::Jti {
                jti: jti.clone(),
                exp: exp(e),
            },
        ),
        PublishEntry::TokenSha256 {
            provider,
            hex,
            exp: e,
        } => (
            provider,
            Revoked::Token {
                id: hex_to_digest(hex)
                    .ok_or(NotWritten::Unreadable(Skipped::TokenIdNotLowercaseHex))?,
                exp: exp(e),
            },
        ),
        PublishEntry::Subject {
            provider,
            sub,
            issued_before,
        } => (
            provider,
            Revoked::Subject {
                sub: sub.clone(),
                issued_before: *issued_before,
                exp: None,
            },
        ),
    };
    let issuer = match provider {
        Some(name) => Some(issuer_of(name).ok_or(NotWritten::Issuer)?),
        None => None,
    };
    let entry = StoreEntry { issuer, revoked };
    let key = key_for(prefix, &entry);
    match parse_entry(prefix, key.as_bytes(), value_for(&entry).as_bytes()) {
        Ok(read) if read == entry => Ok(entry),
        Ok(_) => Err(NotWritten::Unreadable(Skipped::UnknownKind)),
        Err(skipped) => Err(NotWritten::Unreadable(skipped)),
    }
}

/// RFC 3986 percent-decoding of one key segment. `%XX` (either case) is a byte; anything else,
/// `+` included, is itself (a hand-written `jti/urn:uuid:…` reads as meant).
fn decode(segment: &str) -> Result<String, Skipped> {
    let mut bytes = Vec::with_capacity(segment.len());
    let mut rest = segment.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        if byte != b'%' {
            bytes.push(byte);
            continue;
        }
        let (high, low, tail) = match rest {
            [high, low, tail @ ..] => (hex_digit(*high), hex_digit(*low), tail),
            _ => (None, None, rest),
        };
        let (Some(high), Some(low)) = (high, low) else {
            return Err(Skipped::BadPercentEncoding);
        };
        bytes.push((high << 4) | low);
        rest = tail;
    }
    String::from_utf8(bytes).map_err(|_| Skipped::DecodedNotUtf8)
}

fn hex_digit(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// `token/`'s name: exactly 64 lowercase hex characters.
fn token_id(hex: &str) -> Result<TokenDigest, Skipped> {
    if hex.len() != 64 {
        return Err(Skipped::TokenIdLength);
    }
    // hex_to_digest alone would also take uppercase (and a `+` per byte pair).
    if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(Skipped::TokenIdNotLowercaseHex);
    }
    hex_to_digest(hex).ok_or(Skipped::TokenIdNotLowercaseHex)
}

fn json(value: &[u8]) -> Result<Value, Skipped> {
    serde_json::from_slice(value).map_err(|_| Skipped::ValueNotJson)
}

/// An object value. Fields it does not know are ignored: a writer may add its own (who,
/// why), and refusing them would let the token in.
fn object(value: &[u8]) -> Result<Map<String, Value>, Skipped> {
    match json(value)? {
        Value::Object(object) => Ok(object),
        _ => Err(Skipped::ValueNotObject),
    }
}

/// `jti/` and `token/`: `{}` or `{"exp": N}`; an empty value is `{}` (the key says what is
/// revoked; `etcdctl put <key> ''` is how one is written by hand).
fn exp_only(value: &[u8]) -> Result<Option<i64>, Skipped> {
    if value.is_empty() {
        return Ok(None);
    }
    object(value)?.get("exp").map(seconds).transpose()
}

/// Unix seconds: a JSON integer from 0 to [`MAX_SECONDS`]. Stricter than `doc`'s
/// NumericDate (which floors fractions): the store has its own writers, and a fraction or a
/// negative is their bug to see.
fn seconds(value: &Value) -> Result<i64, Skipped> {
    let Value::Number(number) = value else {
        return Err(Skipped::TimeNotNumber);
    };
    if let Some(n) = number.as_u64() {
        return i64::try_from(n)
            .ok()
            .filter(|n| *n <= MAX_SECONDS)
            .ok_or(Skipped::TimeTooLarge);
    }
    if number.is_i64() {
        return Err(Skipped::TimeNegative);
    }
    // A float: written with a fraction or an exponent, or an integer past u64.
    match number.as_f64() {
        Some(f) if f < 0.0 => Err(Skipped::TimeNegative),
        Some(f) if f > MAX_SECONDS as f64 => Err(Skipped::TimeTooLarge),
        _ => Err(Skipped::TimeNotInteger),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::watch::Changes;
    use crate::revocation::etcd::held::{Applied, HeldStore};
    use crate::revocation::etcd::proto::KeyValue;
    use crate::revocation::set::{Probe, TokenHashes};

    const PREFIX: &str = "/bearer-guard/revoked/";
    const NOW: i64 = 1_000;

    fn entry(issuer: Option<&str>, revoked: Revoked) -> StoreEntry {
        StoreEntry {
            issuer: issuer.map(str::to_owned),
            revoked,
        }
    }

    fn jti(jti: &str, exp: Option<i64>) -> Revoked {
        Revoked::Jti {
            jti: jti.to_owned(),
            exp,
        }
    }

    fn sub(sub: &str, issued_before: i64, exp: Option<i64>) -> Revoked {
        Revoked::Subject {
            sub: sub.to_owned(),
            issued_before,
            exp,
        }
    }

    fn parse(key: &str, value: &str) -> Result<StoreEntry, Skipped> {
        parse_entry(PREFIX, key.as_bytes(), value.as_bytes())
    }

    #[test]
    fn the_documented_keys_parse() {
        let hex = "0a".repeat(32);
        let cases: Vec<(String, &str, StoreEntry)> = vec![
            ("jti/abc".into(), "{}", entry(None, jti("abc", None))),
            ("jti/abc".into(), "", entry(None, jti("abc", None))),
            (
                "jti/abc".into(),
                r#"{"exp": 5000, "by": "alice"}"#,
                entry(None, jti("abc", Some(5000))),
            ),
            (
                format!("token/{hex}"),
                r#"{"exp":7}"#,
                entry(
                    None,
                    Revoked::Token {
                        id: [0x0a; 32],
                        exp: Some(7),
                    },
                ),
            ),
            (
                "sub/alice".into(),
                r#"{"issued_before": 900}"#,
                entry(None, sub("alice", 900, None)),
            ),
            (
                "issued_before".into(),
                " 1764400000\n",
                entry(None, Revoked::IssuedBefore(1_764_400_000)),
            ),
            (
                "iss/https%3A%2F%2Fidp.example/jti/abc".into(),
                "{}",
                entry(Some("https://idp.example"), jti("abc", None)),
            ),
            (
                "iss/https:%2F%2Fidp.example/issued_before".into(),
                "0",
                entry(Some("https://idp.example"), Revoked::IssuedBefore(0)),
            ),
            (
                "jti/urn:uuid:1+2%2b3%2B".into(),
                "{}",
                entry(None, jti("urn:uuid:1+2+3+", None)),
            ),
        ];
        for (key, value, want) in cases {
            assert_eq!(parse(&format!("{PREFIX}{key}"), value), Ok(want), "{key}");
        }
    }

    /// Entries with every kind, scope and awkward character (unicode, `/`, `%`, space, `+`).
    fn awkward_entries() -> Vec<StoreEntry> {
        vec![
            entry(None, jti("abc", None)),
            entry(None, jti("a b+c/d%e?f#g&h=i", Some(5000))),
            entry(None, jti("ünïcødé ✓ 日本", Some(0))),
            entry(None, jti("%2F", None)),
            // Commas, semicolons and quotes: nothing a header-list reader would split on.
            entry(None, jti("a,b; c=\"d\"", None)),
            entry(
                None,
                Revoked::Token {
                    id: [0xfe; 32],
                    exp: None,
                },
            ),
            entry(
                Some("https://idp.example/realms/a b"),
                Revoked::Token {
                    id: [1; 32],
                    exp: Some(MAX_SECONDS),
                },
            ),
            entry(None, sub("alice@example.com", 900, None)),
            entry(Some("iss+/%"), sub("ß/ +%41", 0, Some(2000))),
            entry(None, Revoked::IssuedBefore(1_764_400_000)),
            entry(Some("https://idp.example"), Revoked::IssuedBefore(5)),
            entry(Some("~-._"), jti("iss/x/jti/y", None)),
            entry(Some("https://idp.例え.jp/ä"), sub("日本 +", 1, None)),
        ]
    }

    #[test]
    fn written_entries_read_back() {
        for want in awkward_entries() {
            let key = key_for(PREFIX, &want);
            let value = value_for(&want);
            assert!(key.is_ascii(), "{key}");
            // Only the layout's own `/`s: the names' are encoded.
            let slashes = usize::from(!matches!(want.revoked, Revoked::IssuedBefore(_)))
                + if want.issuer.is_some() { 2 } else { 0 };
            assert_eq!(
                key.strip_prefix(PREFIX).unwrap().matches('/').count(),
                slashes,
                "{key}"
            );
            assert_eq!(parse(&key, &value), Ok(want), "{key} {value}");
        }
        let e = entry(Some("https://idp.example"), jti("a b", Some(5)));
        assert_eq!(
            key_for(PREFIX, &e),
            format!("{PREFIX}iss/https%3A%2F%2Fidp.example/jti/a%20b")
        );
        assert_eq!(value_for(&e), r#"{"exp":5}"#);
        assert_eq!(value_for(&entry(None, jti("a", None))), "{}");
        assert_eq!(
            value_for(&entry(None, sub("a", 9, None))),
            r#"{"issued_before":9}"#
        );
        assert_eq!(value_for(&entry(None, Revoked::IssuedBefore(9))), "9");
    }

    /// Every truncation and many one-byte changes of written keys and values: no panic, and
    /// whatever still parses is written back to a key and value that read as the same entry.
    #[test]
    fn damaged_keys_and_values_never_panic() {
        let mut parsed = 0;
        for entry in awkward_entries() {
            let (key, value) = (key_for(PREFIX, &entry), value_for(&entry));
            let (key, value) = (key.as_bytes(), value.as_bytes());
            let mut variants: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            for cut in 0..key.len() {
                variants.push((key[..cut].to_vec(), value.to_vec()));
            }
            for cut in 0..value.len() {
                variants.push((key.to_vec(), value[..cut].to_vec()));
            }
            for at in 0..key.len().max(value.len()) {
                for byte in [
                    b'%', b'/', b'0', b'f', b'A', b'-', b'"', b'{', 0x00, 0xc3, 0xff,
                ] {
                    let mut k = key.to_vec();
                    let mut v = value.to_vec();
                    if let Some(slot) = k.get_mut(at) {
                        *slot = byte;
                        variants.push((k, value.to_vec()));
                    }
                    if let Some(slot) = v.get_mut(at) {
                        *slot = byte;
                        variants.push((key.to_vec(), v));
                    }
                }
            }
            for (key, value) in variants {
                if let Ok(got) = parse_entry(PREFIX, &key, &value) {
                    parsed += 1;
                    let again = parse(&key_for(PREFIX, &got), &value_for(&got));
                    assert_eq!(again, Ok(got));
                }
            }
        }
        assert!(parsed > 100, "{parsed}");
    }

    #[test]
    fn leases_outlive_the_token_by_the_skew() {
        assert_eq!(lease_seconds(None, 60, NOW), None);
        assert_eq!(lease_seconds(Some(NOW + 100), 60, NOW), Some(160));
        assert_eq!(lease_seconds(Some(NOW + 100), 0, NOW), Some(100));
        assert_eq!(lease_seconds(Some(NOW - 60), 60, NOW), Some(1), "dead now");
        assert_eq!(lease_seconds(Some(0), 0, NOW), Some(1));
        assert_eq!(lease_seconds(Some(NOW + 10), -50, NOW), Some(10));
        assert_eq!(
            lease_seconds(Some(i64::MAX), i64::MAX, i64::MIN),
            Some(MAX_LEASE_TTL_SECONDS),
            "etcd's largest"
        );
        assert_eq!(
            lease_seconds(
                entry(None, sub("a", 1, Some(NOW + 5))).revoked.exp(),
                5,
                NOW
            ),
            Some(10)
        );
        assert_eq!(Revoked::IssuedBefore(NOW).exp(), None);
    }

    /// Providers `corp` and `corp-admin` of one issuer, `other` of another.
    fn scopes_of_issuer(issuer: &str) -> Vec<String> {
        match issuer {
            "https://corp.example" => vec!["corp".into(), "corp-admin".into()],
            "https://other.example" => vec!["other".into()],
            _ => vec![],
        }
    }

    /// A token of `provider` as the guard probes it (scopes: its issuer's providers).
    fn token(provider: &str, jti: Option<&str>, sub: Option<&str>, iat: Option<i64>) -> Probe {
        let scopes = match provider {
            "corp" | "corp-admin" => vec!["corp", "corp-admin"],
            other => vec![other],
        };
        Probe::scoped(&scopes, jti, sub, iat, TokenHashes::default())
    }

    /// A token known by its identity only.
    fn token_with_id(provider: &str, id: &TokenDigest) -> Probe {
        let hashes = TokenHashes {
            id: Some(id),
            whole: None,
        };
        Probe::scoped(&[provider], None, None, Some(999), hashes)
    }

    /// The entries written under their keys and read back by a reader, as the workers' set.
    fn set_of(entries: &[StoreEntry]) -> (crate::revocation::set::RevocationSet, Applied) {
        let changes = Changes {
            puts: entries
                .iter()
                .map(|e| KeyValue {
                    key: key_for(PREFIX, e).into_bytes(),
                    value: value_for(e).into_bytes(),
                    ..KeyValue::default()
                })
                .collect(),
            ..Changes::default()
        };
        let mut store = HeldStore::new(PREFIX);
        let applied = store.apply(&changes, &scopes_of_issuer);
        (store.build(NOW, ""), applied)
    }

    #[test]
    fn entries_revoke_what_they_name_and_nothing_else() {
        let corp = Some("https://corp.example");
        let (set, added) = set_of(&[
            entry(None, jti("j-any", Some(NOW + 1))),
            entry(corp, jti("j-corp", None)),
            entry(
                None,
                Revoked::Token {
                    id: [5; 32],
                    exp: None,
                },
            ),
            entry(None, sub("alice", 500, None)),
            entry(corp, sub("bob", 600, Some(NOW + 1))),
            entry(corp, Revoked::IssuedBefore(100)),
        ]);
        assert_eq!((added.put, added.skipped, added.no_such_issuer), (6, 0, 0));
        let revoked = |p: Probe| set.revokes(&p);
        assert!(revoked(token("other", Some("j-any"), None, Some(999))));
        assert!(revoked(token("corp", Some("j-corp"), None, Some(999))));
        assert!(revoked(token(
            "corp-admin",
            Some("j-corp"),
            None,
            Some(999)
        )));
        assert!(
            !revoked(token("other", Some("j-corp"), None, Some(999))),
            "another issuer's jti"
        );
        assert!(!revoked(token("corp", Some("j-other"), None, Some(999))));
        assert!(revoked(token_with_id("other", &[5; 32])), "token id");
        assert!(!revoked(token_with_id("other", &[6; 32])));
        // Subject cutoffs as doc.rs: `iat` at the cutoff counts, no `iat` counts.
        assert!(revoked(token("other", None, Some("alice"), Some(500))));
        assert!(!revoked(token("other", None, Some("alice"), Some(501))));
        assert!(revoked(token("other", None, Some("alice"), None)));
        assert!(revoked(token("corp-admin", None, Some("bob"), Some(600))));
        assert!(!revoked(token("other", None, Some("bob"), Some(600))));
        assert!(
            revoked(token("corp", None, None, Some(100))),
            "issuer cutoff"
        );
        assert!(!revoked(token("corp", None, None, Some(101))));
        assert!(!revoked(token("other", None, None, Some(100))));
        assert!(revoked(token("corp", None, None, None)));
    }

    #[test]
    fn dead_entries_and_unknown_issuers_are_counted_not_added() {
        let (set, added) = set_of(&[
            entry(None, jti("dead", Some(NOW))),
            entry(None, sub("alice", 500, Some(NOW - 1))),
            entry(Some("https://nobody.example"), jti("j", None)),
            entry(Some("https://nobody.example"), Revoked::IssuedBefore(NOW)),
            entry(None, Revoked::IssuedBefore(0)),
        ]);
        // The dead ones are held (until etcd's lease deletes them) but in no set.
        assert_eq!((added.put, added.no_such_issuer), (3, 2));
        assert!(!set.revokes(&token("corp", Some("dead"), None, Some(1))));
        assert!(!set.revokes(&token("corp", None, Some("alice"), Some(1))));
        assert!(!set.revokes(&token("corp", Some("j"), None, Some(1))));
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn learned_entries_are_written_under_their_providers_issuer_and_read_back_as_such() {
        let issuer_of = |name: &str| (name == "corp").then(|| "https://corp.example".to_owned());
        let learned = [
            PublishEntry::Jti {
                provider: Some("corp".into()),
                jti: "j/1".into(),
                exp: Some(NOW + 60),
            },
            PublishEntry::TokenSha256 {
                provider: None,
                hex: "ab".repeat(32),
                exp: None,
            },
            PublishEntry::Subject {
                provider: Some("corp".into()),
                sub: "alice".into(),
                issued_before: NOW,
            },
        ];
        for entry in &learned {
            let stored = from_learned(PREFIX, entry, &issuer_of).unwrap();
            let key = key_for(PREFIX, &stored);
            let value = value_for(&stored);
            assert_eq!(
                parse_entry(PREFIX, key.as_bytes(), value.as_bytes()),
                Ok(stored)
            );
        }
        let stored = from_learned(PREFIX, &learned[0], &issuer_of).unwrap();
        assert_eq!(
            key_for(PREFIX, &stored),
            format!("{PREFIX}iss/https%3A%2F%2Fcorp.example/jti/j%2F1")
        );
        let unknown = PublishEntry::Jti {
            provider: Some("gone".into()),
            jti: "j".into(),
            exp: None,
        };
        assert_eq!(
            from_learned(PREFIX, &unknown, &issuer_of),
            Err(NotWritten::Issuer)
        );
        let long = PublishEntry::Jti {
            provider: None,
            jti: "j".repeat(MAX_KEY_BYTES),
            exp: Some(i64::MAX),
        };
        assert_eq!(
            from_learned(PREFIX, &long, &issuer_of),
            Err(NotWritten::Unreadable(Skipped::KeyTooLarge))
        );
        let far = PublishEntry::Jti {
            provider: None,
            jti: "far".into(),
            exp: Some(i64::MAX),
        };
        let far = from_learned(PREFIX, &far, &issuer_of).unwrap();
        assert_eq!(far.revoked.exp(), Some(MAX_SECONDS));
        assert_eq!(
            lease_seconds(far.revoked.exp(), 600, NOW),
            Some(MAX_LEASE_TTL_SECONDS)
        );
    }

    #[test]
    fn hostile_keys_and_values_are_skipped_with_their_cause() {
        use Skipped::*;
        let hex = "ab".repeat(32);
        let long = "j".repeat(MAX_KEY_BYTES);
        let big = format!(r#"{{"exp":1,"pad":"{}"}}"#, " ".repeat(MAX_VALUE_BYTES));
        let cases: Vec<(Vec<u8>, Vec<u8>, Skipped)> = [
            ("/other/jti/a", "{}", OutsidePrefix),
            ("/bearer-guard/revoked", "{}", OutsidePrefix),
            ("bearer-guard/revoked/jti/a", "{}", OutsidePrefix),
            (&format!("{PREFIX}jti/{long}"), "{}", KeyTooLarge),
            (PREFIX, "{}", UnknownKind),
            (&format!("{PREFIX}jtis/a"), "{}", UnknownKind),
            (&format!("{PREFIX}JTI/a"), "{}", UnknownKind),
            (&format!("{PREFIX}/jti/a"), "{}", UnknownKind),
            (&format!("{PREFIX}iss/x/iss/y/jti/a"), "{}", UnknownKind),
            (&format!("{PREFIX}iss/x/"), "{}", UnknownKind),
            (&format!("{PREFIX}jti"), "{}", MissingSegment),
            (&format!("{PREFIX}iss"), "{}", MissingSegment),
            (&format!("{PREFIX}iss/x"), "{}", MissingSegment),
            (&format!("{PREFIX}iss/x/sub"), "{}", MissingSegment),
            (&format!("{PREFIX}jti/a/b"), "{}", ExtraSegment),
            (&format!("{PREFIX}jti/a/"), "{}", ExtraSegment),
            (&format!("{PREFIX}issued_before/1"), "1", ExtraSegment),
            (&format!("{PREFIX}token/{hex}/x"), "{}", ExtraSegment),
            (&format!("{PREFIX}jti/a%"), "{}", BadPercentEncoding),
            (&format!("{PREFIX}jti/a%2"), "{}", BadPercentEncoding),
            (&format!("{PREFIX}jti/%zz"), "{}", BadPercentEncoding),
            (&format!("{PREFIX}jti/%%41"), "{}", BadPercentEncoding),
            (&format!("{PREFIX}jti/%+1"), "{}", BadPercentEncoding),
            (&format!("{PREFIX}iss/%G1/jti/a"), "{}", BadPercentEncoding),
            (&format!("{PREFIX}jti/%FF"), "{}", DecodedNotUtf8),
            (&format!("{PREFIX}sub/%C3"), "{}", DecodedNotUtf8),
            (&format!("{PREFIX}jti/"), "{}", EmptyJti),
            (
                &format!("{PREFIX}sub/"),
                r#"{"issued_before":1}"#,
                EmptySubject,
            ),
            (&format!("{PREFIX}iss//jti/a"), "{}", EmptyIssuer),
            (&format!("{PREFIX}token/abc"), "{}", TokenIdLength),
            (&format!("{PREFIX}token/{hex}0"), "{}", TokenIdLength),
            (&format!("{PREFIX}token/"), "{}", TokenIdLength),
            (
                &format!("{PREFIX}token/{}", "AB".repeat(32)),
                "{}",
                TokenIdNotLowercaseHex,
            ),
            (
                &format!("{PREFIX}token/{}", "+f".repeat(32)),
                "{}",
                TokenIdNotLowercaseHex,
            ),
            (
                &format!("{PREFIX}token/{}", "g0".repeat(32)),
                "{}",
                TokenIdNotLowercaseHex,
            ),
            (
                &format!("{PREFIX}token/{}", "%41".repeat(21) + "a"),
                "{}",
                TokenIdNotLowercaseHex,
            ),
            (&format!("{PREFIX}jti/a"), big.as_str(), ValueTooLarge),
            (&format!("{PREFIX}jti/a"), "exp=5", ValueNotJson),
            (&format!("{PREFIX}jti/a"), "{", ValueNotJson),
            (&format!("{PREFIX}jti/a"), "{} {}", ValueNotJson),
            (&format!("{PREFIX}sub/a"), "", ValueNotJson),
            (&format!("{PREFIX}issued_before"), "", ValueNotJson),
            (&format!("{PREFIX}issued_before"), "1e999", ValueNotJson),
            (&format!("{PREFIX}jti/a"), "[]", ValueNotObject),
            (&format!("{PREFIX}jti/a"), "5", ValueNotObject),
            (&format!("{PREFIX}sub/a"), "900", ValueNotObject),
            (
                &format!("{PREFIX}sub/a"),
                r#"{"exp":5}"#,
                MissingIssuedBefore,
            ),
            (
                &format!("{PREFIX}sub/a"),
                r#"{"issuedbefore":5}"#,
                MissingIssuedBefore,
            ),
            (&format!("{PREFIX}jti/a"), r#"{"exp":"5"}"#, TimeNotNumber),
            (&format!("{PREFIX}jti/a"), r#"{"exp":null}"#, TimeNotNumber),
            (
                &format!("{PREFIX}issued_before"),
                r#"{"issued_before":5}"#,
                TimeNotNumber,
            ),
            (&format!("{PREFIX}issued_before"), r#""5""#, TimeNotNumber),
            (&format!("{PREFIX}issued_before"), "5.5", TimeNotInteger),
            (&format!("{PREFIX}issued_before"), "5.0", TimeNotInteger),
            (
                &format!("{PREFIX}sub/a"),
                r#"{"issued_before":1e3}"#,
                TimeNotInteger,
            ),
            (&format!("{PREFIX}issued_before"), "-1", TimeNegative),
            (
                &format!("{PREFIX}jti/a"),
                r#"{"exp":-9223372036854775808}"#,
                TimeNegative,
            ),
            (&format!("{PREFIX}jti/a"), r#"{"exp":-1e30}"#, TimeNegative),
            (
                &format!("{PREFIX}issued_before"),
                "253402300800",
                TimeTooLarge,
            ),
            (
                &format!("{PREFIX}issued_before"),
                "1764400000000",
                TimeTooLarge,
            ),
            (
                &format!("{PREFIX}issued_before"),
                "18446744073709551615",
                TimeTooLarge,
            ),
            (
                &format!("{PREFIX}issued_before"),
                "18446744073709551616",
                TimeTooLarge,
            ),
            (
                &format!("{PREFIX}token/{hex}"),
                r#"{"exp":1e30}"#,
                TimeTooLarge,
            ),
        ]
        .into_iter()
        .map(|(k, v, why)| (k.as_bytes().to_vec(), v.as_bytes().to_vec(), why))
        .chain([
            (b"\xff\xfe".to_vec(), b"{}".to_vec(), OutsidePrefix),
            (
                [PREFIX.as_bytes(), b"jti/\xff"].concat(),
                b"{}".to_vec(),
                KeyNotUtf8,
            ),
            (
                [PREFIX.as_bytes(), b"jti/a"].concat(),
                b"{\"exp\":\xff}".to_vec(),
                ValueNotJson,
            ),
            (
                [PREFIX.as_bytes(), b"jti/a"].concat(),
                b"\xef\xbb\xbf{}".to_vec(),
                ValueNotJson,
            ),
        ])
        .collect();
        assert!(cases.len() >= 30);
        for (key, value, why) in cases {
            let shown = String::from_utf8_lossy(&key)
                .chars()
                .take(80)
                .collect::<String>();
            assert_eq!(
                parse_entry(PREFIX, &key, &value),
                Err(why),
                "{shown} {}",
                String::from_utf8_lossy(&value)
            );
        }
    }

    #[test]
    fn a_skipped_key_is_never_shown() {
        let pasted = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ"; // 40 characters
        assert_eq!(pasted.len(), 40);
        for key in [
            format!("{PREFIX}{pasted}"),
            format!("{PREFIX}jti/{pasted}/x"),
            format!("{PREFIX}token/{pasted}"),
            format!("{PREFIX}iss/{pasted}"),
        ] {
            let why = parse(&key, "{}").unwrap_err();
            let line = skipped_line(why, key.as_bytes());
            for shown in [why.to_string(), why.as_str().to_owned(), line.clone()] {
                assert!(!shown.contains(pasted), "{shown}");
                assert!(!shown.contains(&pasted[..12]), "{shown}");
            }
            assert!(line.contains(why.as_str()), "{line}");
        }
        let line = skipped_line(Skipped::UnknownKind, b"abc");
        // The fingerprint is SHA-256("abc")'s first 8 bytes, as `observe::fingerprint` shows.
        assert_eq!(
            line,
            "etcd revocation key ba7816bf8f01cfea skipped: unknown kind (not jti/, token/, sub/, \
             issued_before, iss/)"
        );
    }
}
