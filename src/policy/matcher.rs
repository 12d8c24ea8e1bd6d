//! Plain string matchers for config (like Envoy's `StringMatcher`, without regex).

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
}

impl StringMatch {
    pub fn matches(&self, value: &str) -> bool {
        match self {
            StringMatch::Exact(s) => value == s,
            StringMatch::Prefix(s) => value.starts_with(s.as_str()),
            StringMatch::Suffix(s) => value.ends_with(s.as_str()),
        }
    }
}

/// The JSON form: an object with exactly one of `exact`, `prefix`, `suffix`.
#[derive(Debug, Deserialize)]
#[cfg_attr(
    feature = "cli",
    derive(schemars::JsonSchema),
    schemars(rename = "StringMatch")
)]
#[serde(deny_unknown_fields)]
pub struct RawStringMatch {
    #[serde(default)]
    exact: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    suffix: Option<String>,
}

impl RawStringMatch {
    pub fn compile(self) -> Result<StringMatch, &'static str> {
        match (self.exact, self.prefix, self.suffix) {
            (Some(s), None, None) => Ok(StringMatch::Exact(s)),
            (None, Some(s), None) => Ok(StringMatch::Prefix(s)),
            (None, None, Some(s)) => Ok(StringMatch::Suffix(s)),
            _ => Err("set exactly one of \"exact\", \"prefix\" or \"suffix\""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_matches() {
        assert!(StringMatch::Exact("a".into()).matches("a"));
        assert!(!StringMatch::Exact("a".into()).matches("ab"));
        assert!(StringMatch::Prefix("svc-".into()).matches("svc-orders"));
        assert!(!StringMatch::Prefix("svc-".into()).matches("user-svc-"));
        assert!(StringMatch::Suffix("@corp.example".into()).matches("a@corp.example"));
        assert!(!StringMatch::Suffix("@corp.example".into()).matches("a@corp.example.evil"));
    }

    #[test]
    fn exactly_one_kind() {
        let raw: RawStringMatch = serde_json::from_str(r#"{"exact":"a","prefix":"b"}"#).unwrap();
        assert!(raw.compile().is_err());
        let raw: RawStringMatch = serde_json::from_str(r#"{}"#).unwrap();
        assert!(raw.compile().is_err());
    }
}
