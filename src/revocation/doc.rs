//! The revocation document: the JSON of the static `revocation` config, of the polled list and
//! of a publish POST. Parsed as a stream straight into fingerprints, so a 1M-entry list never
//! exists as a million strings in wasm memory.
//!
//! ```json
//! { "jti": ["id", {"jti": "id2", "exp": 1764400000}],
//!   "token_sha256": ["<hex>", {"token_sha256": "<hex>", "exp": 1764400000}],
//!   "subjects": {"alice": 1764400000, "bob": {"issued_before": 1764400000, "exp": 1764403600}},
//!   "issued_before": 1764400000,
//!   "providers": {"corp": { ...the same fields... }},
//!   "version": "...", "delta_since": "..." }
//! ```

use std::fmt;
use std::io::Read;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{json, Map, Value};

use crate::observe::fingerprint::hex_to_digest;
use crate::revocation::set::{Kind, SetBuilder, ANY_PROVIDER};
use crate::token::claims::{NumericDate, NumericDateVisitor};

/// What a document held besides its entries.
#[derive(Debug, Default)]
pub struct Parsed {
    pub builder: SetBuilder,
    /// Provider names under `providers`.
    pub scopes: Vec<String>,
    pub version: Option<String>,
    /// Set when the document is a delta over that version of the list.
    pub delta_since: Option<String>,
    /// Entries left out because their `exp` had passed.
    pub expired: usize,
    /// `(fingerprint, exp)` of the entries that came with an `exp`: a held list keeps what a
    /// later whole list leaves out until then (`revocation::list`).
    pub lifetimes: Vec<(u64, i64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The static `revocation` config: no `version` / `delta_since`.
    Config,
    /// A list response.
    List,
}

/// Parses a document from a reader (the list body is read from the host in chunks).
/// Entries whose `exp` is at or before `now` are dropped: their token is dead anyway.
pub fn parse_reader(reader: impl Read, source: Source, now: i64) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    let mut de = serde_json::Deserializer::from_reader(reader);
    DocSeed {
        parsed: &mut parsed,
        scope: None,
        source,
        now,
    }
    .deserialize(&mut de)
    .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(parsed)
}

/// Parses a document already held as a JSON value (the static config).
pub fn parse_value(value: &Value, source: Source, now: i64) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    DocSeed {
        parsed: &mut parsed,
        scope: None,
        source,
        now,
    }
    .deserialize(value)
    .map_err(|e| e.to_string())?;
    Ok(parsed)
}

/// One revocation learned at run time, as it is published to the list service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishEntry {
    Jti {
        provider: Option<String>,
        jti: String,
        exp: Option<i64>,
    },
    TokenSha256 {
        provider: Option<String>,
        hex: String,
        exp: Option<i64>,
    },
    Subject {
        provider: Option<String>,
        sub: String,
        issued_before: i64,
    },
}

/// Entries as one document, grouped by provider, for a publish POST.
pub fn render(entries: &[PublishEntry]) -> String {
    let mut top = Map::new();
    for entry in entries {
        let provider = match entry {
            PublishEntry::Jti { provider, .. }
            | PublishEntry::TokenSha256 { provider, .. }
            | PublishEntry::Subject { provider, .. } => provider,
        };
        let doc = match provider {
            None => &mut top,
            Some(name) => {
                let providers = top
                    .entry("providers")
                    .or_insert_with(|| json!({}))
                    .as_object_mut();
                match providers.map(|p| p.entry(name.clone()).or_insert_with(|| json!({}))) {
                    Some(Value::Object(doc)) => doc,
                    _ => continue,
                }
            }
        };
        let push = |doc: &mut Map<String, Value>, key: &str, item: Value| {
            if let Some(list) = doc.entry(key).or_insert_with(|| json!([])).as_array_mut() {
                list.push(item);
            }
        };
        match entry {
            PublishEntry::Jti { jti, exp, .. } => push(doc, "jti", with_exp("jti", jti, *exp)),
            PublishEntry::TokenSha256 { hex, exp, .. } => {
                push(doc, "token_sha256", with_exp("token_sha256", hex, *exp))
            }
            PublishEntry::Subject {
                sub, issued_before, ..
            } => {
                if let Some(subjects) = doc
                    .entry("subjects")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                {
                    let cutoff = subjects
                        .get(sub)
                        .and_then(Value::as_i64)
                        .unwrap_or(i64::MIN);
                    subjects.insert(sub.clone(), json!(cutoff.max(*issued_before)));
                }
            }
        }
    }
    Value::Object(top).to_string()
}

/// A list entry: the bare value, or with an `exp` the object form.
pub(crate) fn with_exp(key: &str, value: &str, exp: Option<i64>) -> Value {
    match exp {
        Some(exp) => json!({ key: value, "exp": exp }),
        None => json!(value),
    }
}

/// The document's shape for JSON Schemas (the config's `revocation` entries, a list file):
/// the parser below streams it, so these types only describe it.
#[cfg(feature = "cli")]
pub mod schema {
    use std::collections::BTreeMap;

    use serde_json::Number;

    /// Revoked tokens: every key optional.
    #[derive(schemars::JsonSchema)]
    #[schemars(rename = "RevocationEntries", deny_unknown_fields)]
    pub struct Entries {
        /// Revoked token ids: a string, or `{"jti": ..., "exp": ...}` (`exp`: when the
        /// token expires anyway; the entry is dropped after it).
        pub jti: Option<Vec<JtiEntry>>,
        /// SHA-256 of the whole compact token (64 hex), for tokens without `jti`.
        pub token_sha256: Option<Vec<Sha256Entry>>,
        /// Subject -> cutoff: tokens of that subject issued at or before it (Unix seconds)
        /// are revoked; a token without `iat` counts as issued before.
        pub subjects: Option<BTreeMap<String, SubjectEntry>>,
        /// Global cutoff: every token issued at or before it (Unix seconds) is revoked.
        pub issued_before: Option<Number>,
    }

    #[derive(schemars::JsonSchema)]
    #[schemars(untagged)]
    pub enum JtiEntry {
        Jti(#[schemars(length(min = 1))] String),
        WithExp(JtiWithExp),
    }

    #[derive(schemars::JsonSchema)]
    #[schemars(deny_unknown_fields)]
    pub struct JtiWithExp {
        #[schemars(length(min = 1))]
        pub jti: String,
        pub exp: Option<Number>,
    }

    #[derive(schemars::JsonSchema)]
    #[schemars(untagged)]
    pub enum Sha256Entry {
        Sha256(#[schemars(regex(pattern = r"^[0-9a-fA-F]{64}$"))] String),
        WithExp(Sha256WithExp),
    }

    #[derive(schemars::JsonSchema)]
    #[schemars(deny_unknown_fields)]
    pub struct Sha256WithExp {
        #[schemars(regex(pattern = r"^[0-9a-fA-F]{64}$"))]
        pub token_sha256: String,
        pub exp: Option<Number>,
    }

    #[derive(schemars::JsonSchema)]
    #[schemars(untagged)]
    pub enum SubjectEntry {
        IssuedBefore(Number),
        WithExp(SubjectWithExp),
    }

    #[derive(schemars::JsonSchema)]
    #[schemars(deny_unknown_fields)]
    pub struct SubjectWithExp {
        pub issued_before: Number,
        pub exp: Option<Number>,
    }
}

/// A document, at the top (`scope: None`) or under `providers.<name>`.
struct DocSeed<'p> {
    parsed: &'p mut Parsed,
    scope: Option<&'p str>,
    source: Source,
    now: i64,
}

impl<'de> DeserializeSeed<'de> for DocSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DocSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a revocation document (an object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let scope = self.scope.unwrap_or(ANY_PROVIDER);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "jti" => map.next_value_seed(EntriesSeed {
                    parsed: self.parsed,
                    kind: Kind::Jti,
                    scope,
                    now: self.now,
                })?,
                "token_sha256" => map.next_value_seed(EntriesSeed {
                    parsed: self.parsed,
                    kind: Kind::TokenSha256,
                    scope,
                    now: self.now,
                })?,
                "subjects" => map.next_value_seed(SubjectsSeed {
                    parsed: self.parsed,
                    scope,
                    now: self.now,
                })?,
                "issued_before" => {
                    let cutoff = map.next_value::<NumericDate>()?.0;
                    self.parsed.builder.add_cutoff(scope, cutoff);
                }
                "providers" if self.scope.is_none() => map.next_value_seed(ProvidersSeed {
                    parsed: self.parsed,
                    source: self.source,
                    now: self.now,
                })?,
                "version" if self.scope.is_none() && self.source == Source::List => {
                    self.parsed.version = Some(map.next_value()?);
                }
                "delta_since" if self.scope.is_none() && self.source == Source::List => {
                    self.parsed.delta_since = Some(map.next_value()?);
                }
                other => {
                    return Err(de::Error::custom(format!(
                        "unknown field `{other}`{}",
                        self.scope
                            .map(|s| format!(" in providers.{s}"))
                            .unwrap_or_default()
                    )))
                }
            }
        }
        Ok(())
    }
}

struct ProvidersSeed<'p> {
    parsed: &'p mut Parsed,
    source: Source,
    now: i64,
}

impl<'de> DeserializeSeed<'de> for ProvidersSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ProvidersSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of provider name -> revocation document")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(name) = map.next_key::<String>()? {
            if name.is_empty() {
                return Err(de::Error::custom("provider names must not be empty"));
            }
            map.next_value_seed(DocSeed {
                parsed: self.parsed,
                scope: Some(&name),
                source: self.source,
                now: self.now,
            })?;
            self.parsed.scopes.push(name);
        }
        Ok(())
    }
}

/// `jti` or `token_sha256`: an array of values or `{ <kind>: value, exp }` objects.
struct EntriesSeed<'p> {
    parsed: &'p mut Parsed,
    kind: Kind,
    scope: &'p str,
    now: i64,
}

impl EntriesSeed<'_> {
    fn key(&self) -> &'static str {
        match self.kind {
            Kind::Jti => "jti",
            Kind::TokenSha256 => "token_sha256",
            Kind::Subject => "sub",
        }
    }

    fn add<E: de::Error>(&mut self, value: &str, exp: Option<i64>) -> Result<(), E> {
        if exp.is_some_and(|exp| exp <= self.now) {
            self.parsed.expired += 1;
            return Ok(());
        }
        match self.kind {
            Kind::TokenSha256 => {
                let digest = hex_to_digest(value).ok_or_else(|| {
                    E::custom(format!(
                        "token_sha256 entries must be 64 hex characters, got {:?}",
                        value.chars().take(80).collect::<String>()
                    ))
                })?;
                self.parsed
                    .builder
                    .add_exact(Kind::TokenSha256, self.scope, &digest);
            }
            kind => {
                if value.is_empty() {
                    return Err(E::custom(format!(
                        "{} entries must not be empty",
                        self.key()
                    )));
                }
                self.parsed
                    .builder
                    .add_exact(kind, self.scope, value.as_bytes());
            }
        }
        if let (Some(exp), Some(fp)) = (exp, self.parsed.builder.last_exact()) {
            self.parsed.lifetimes.push((fp, exp));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for EntriesSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an array of {} entries", self.key())
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(EntrySeed(&mut self))?.is_some() {}
        Ok(())
    }
}

struct EntrySeed<'s, 'p>(&'s mut EntriesSeed<'p>);

impl<'de> DeserializeSeed<'de> for EntrySeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a string or {{\"{}\": ..., \"exp\": ...}}", self.0.key())
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        self.0.add(value, None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (mut value, mut exp) = (None::<String>, None);
        while let Some(key) = map.next_key::<String>()? {
            if key == self.0.key() {
                value = Some(map.next_value()?);
            } else if key == "exp" {
                exp = Some(map.next_value::<NumericDate>()?.0);
            } else {
                return Err(de::Error::custom(format!(
                    "unknown field `{key}` in an entry"
                )));
            }
        }
        let value = value.ok_or_else(|| de::Error::missing_field("entry value"))?;
        self.0.add(&value, exp)
    }
}

/// `subjects`: subject -> cutoff, or subject -> `{issued_before, exp}`.
struct SubjectsSeed<'p> {
    parsed: &'p mut Parsed,
    scope: &'p str,
    now: i64,
}

impl<'de> DeserializeSeed<'de> for SubjectsSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for SubjectsSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of subject -> issued-before time")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(sub) = map.next_key::<String>()? {
            let cutoff: SubjectCutoff = map.next_value()?;
            if sub.is_empty() {
                return Err(de::Error::custom("subjects must not be empty strings"));
            }
            if cutoff.exp.is_some_and(|exp| exp <= self.now) {
                self.parsed.expired += 1;
                continue;
            }
            self.parsed
                .builder
                .add_subject(self.scope, &sub, cutoff.issued_before);
            if let (Some(exp), Some(fp)) = (cutoff.exp, self.parsed.builder.last_subject()) {
                self.parsed.lifetimes.push((fp, exp));
            }
        }
        Ok(())
    }
}

struct SubjectCutoff {
    issued_before: i64,
    exp: Option<i64>,
}

impl<'de> de::Deserialize<'de> for SubjectCutoff {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CutoffVisitor;
        impl<'de> Visitor<'de> for CutoffVisitor {
            type Value = SubjectCutoff;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a subject maps to a time or {\"issued_before\": ..., \"exp\": ...}")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SubjectCutoff, E> {
                Ok(SubjectCutoff {
                    issued_before: v,
                    exp: None,
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SubjectCutoff, E> {
                NumericDateVisitor
                    .visit_u64(v)
                    .and_then(|n| self.visit_i64(n.0))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<SubjectCutoff, E> {
                NumericDateVisitor
                    .visit_f64(v)
                    .and_then(|n| self.visit_i64(n.0))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SubjectCutoff, A::Error> {
                let (mut issued_before, mut exp) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "issued_before" => issued_before = Some(map.next_value::<NumericDate>()?.0),
                        "exp" => exp = Some(map.next_value::<NumericDate>()?.0),
                        other => {
                            return Err(de::Error::custom(format!(
                                "unknown field `{other}` in a subject entry"
                            )))
                        }
                    }
                }
                Ok(SubjectCutoff {
                    issued_before: issued_before
                        .ok_or_else(|| de::Error::missing_field("issued_before"))?,
                    exp,
                })
            }
        }
        deserializer.deserialize_any(CutoffVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::fingerprint::digest_to_hex;
    use crate::revocation::set::Probe;

    const NOW: i64 = 1_000;

    fn parse(text: &str) -> Result<Parsed, String> {
        parse_reader(text.as_bytes(), Source::List, NOW)
    }

    #[test]
    fn every_field_and_both_entry_forms() {
        let hex = "07".repeat(32);
        let doc = format!(
            r#"{{"version":"v2","delta_since":"v1",
               "jti":["a",{{"jti":"b","exp":2000}},{{"jti":"dead","exp":1000}}],
               "token_sha256":["{hex}"],
               "subjects":{{"alice":500,"bob":{{"issued_before":600,"exp":5000}},"gone":{{"issued_before":5000,"exp":10}}}},
               "issued_before":100,
               "providers":{{"corp":{{"jti":["c"],"issued_before":300.5}}}}}}"#
        );
        let parsed = parse(&doc).unwrap();
        assert_eq!(parsed.version.as_deref(), Some("v2"));
        assert_eq!(parsed.delta_since.as_deref(), Some("v1"));
        assert_eq!(parsed.scopes, vec!["corp"]);
        assert_eq!(parsed.expired, 2);
        let set = parsed.builder.build("v2", "");
        let p = |provider, jti, sub, iat| Probe::new(provider, jti, sub, iat, Some(&[7; 32]));
        assert!(set.revokes(&Probe::new("x", Some("a"), None, Some(999), None)));
        assert!(set.revokes(&Probe::new("x", Some("b"), None, Some(999), None)));
        assert!(!set.revokes(&Probe::new("x", Some("dead"), None, Some(999), None)));
        assert!(set.revokes(&p("x", None, None, Some(999))), "sha");
        assert!(set.revokes(&Probe::new("x", None, Some("bob"), Some(600), None)));
        assert!(!set.revokes(&Probe::new("x", None, Some("gone"), Some(200), None)));
        assert!(
            set.revokes(&Probe::new("x", None, None, Some(100), None)),
            "global cutoff"
        );
        assert!(set.revokes(&Probe::new("corp", None, None, Some(300), None)));
        assert!(!set.revokes(&Probe::new("other", None, None, Some(300), None)));
        assert!(set.revokes(&Probe::new("corp", Some("c"), None, Some(999), None)));
        assert!(!set.revokes(&Probe::new("other", Some("c"), None, Some(999), None)));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let error = |text: &str| parse(text).unwrap_err();
        assert!(error(r#"{"jtis":[]}"#).contains("unknown field `jtis`"));
        assert!(error(r#"{"token_sha256":["abc"]}"#).contains("64 hex"));
        assert!(error(r#"{"jti":[""]}"#).contains("must not be empty"));
        assert!(error(r#"{"jti":[1]}"#).contains("a string or"));
        assert!(error(r#"{"subjects":{"a":"x"}}"#).contains("a subject maps to"));
        assert!(error(r#"{"providers":{"c":{"providers":{}}}}"#).contains("in providers.c"));
        assert!(error(r#"{"jti":["a"]} trailing"#).contains("trailing"));
        let config = parse_value(&json!({"version": "v1"}), Source::Config, NOW).unwrap_err();
        assert!(config.contains("unknown field `version`"), "{config}");
    }

    #[test]
    fn rendered_entries_parse_back() {
        let entries = vec![
            PublishEntry::Jti {
                provider: Some("corp".into()),
                jti: "j1".into(),
                exp: Some(5000),
            },
            PublishEntry::TokenSha256 {
                provider: None,
                hex: "ab".repeat(32),
                exp: None,
            },
            PublishEntry::Subject {
                provider: Some("corp".into()),
                sub: "alice".into(),
                issued_before: 900,
            },
        ];
        let text = render(&entries);
        let set = parse(&text).unwrap().builder.build("", "");
        assert!(set.revokes(&Probe::new("corp", Some("j1"), None, Some(999), None)));
        assert!(!set.revokes(&Probe::new("other", Some("j1"), None, Some(999), None)));
        assert!(set.revokes(&Probe::new("x", None, None, None, Some(&[0xab; 32]))));
        assert!(set.revokes(&Probe::new("corp", None, Some("alice"), Some(900), None)));
        assert_eq!(
            digest_to_hex(&hex_to_digest(&"0f".repeat(32)).unwrap()),
            "0f".repeat(32)
        );
        assert!(hex_to_digest("zz").is_none());
    }
}
