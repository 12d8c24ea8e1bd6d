//! What Envoy's `jwt_authn`, earlier in the filter chain, verified: the payloads it writes into
//! the request's dynamic metadata (`payload_in_metadata`), for companion providers
//! (`providers.<name>.jwt_authn`) that add revocation and the rest without verifying again.
//!
//! The host hands over the whole `envoy.config.core.v3.Metadata` message, serialized
//! (`get_property(["metadata"])`): one call, exact for every claim type. Leaf paths would give
//! bare strings, but numbers, arrays (`aud`, `scp`) and objects come back in the host's own
//! map encoding, and each claim would be another host call.

use std::collections::BTreeMap;

use prost::Message;
use serde_json::{Map, Number, Value};

/// The `filter_metadata` namespace jwt_authn writes under (Envoy's filter name).
pub const NAMESPACE: &str = "envoy.filters.http.jwt_authn";

/// The payloads jwt_authn verified for this request, by their `payload_in_metadata` key, as
/// JSON (what a token's payload segment decodes to, numbers that are whole as integers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifiedPayloads {
    by_key: BTreeMap<String, String>,
}

impl VerifiedPayloads {
    /// The payloads in a serialized `Metadata`; `Err` when it is not one.
    pub fn from_metadata(serialized: &[u8]) -> Result<Self, String> {
        let metadata = Metadata::decode(serialized).map_err(|e| e.to_string())?;
        let by_key = metadata
            .filter_metadata
            .get(NAMESPACE)
            .map(|namespace| {
                namespace
                    .fields
                    .iter()
                    .filter_map(|(key, value)| match &value.kind {
                        // A payload is an object; anything else under the namespace (a header
                        // jwt_authn copied with `header_in_metadata`) is not one.
                        Some(Kind::Object(payload)) => {
                            Some((key.clone(), Value::from(payload).to_string()))
                        }
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(VerifiedPayloads { by_key })
    }

    /// The payload jwt_authn wrote under `key`, as JSON.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.by_key.get(key).map(String::as_str)
    }

    /// Payloads from JSON texts, as the CLI and tests supply them.
    pub fn from_json<'a>(payloads: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        VerifiedPayloads {
            by_key: payloads
                .into_iter()
                .map(|(key, json)| (key.to_owned(), json.to_owned()))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// Whether a token's payload (its decoded segment) is the payload jwt_authn wrote: the same
/// claims with the same values, allowing for what jwt_authn's metadata changes: numbers become
/// doubles, and `normalize_payload_in_metadata` splits space-delimited strings into arrays.
pub fn same_payload(token_payload: &[u8], verified: &str) -> bool {
    let (Ok(token), Ok(verified)) = (
        serde_json::from_slice::<Value>(token_payload),
        serde_json::from_slice::<Value>(verified.as_bytes()),
    ) else {
        return false;
    };
    token.is_object() && same_value(&token, &verified)
}

fn same_value(token: &Value, verified: &Value) -> bool {
    match (token, verified) {
        (Value::Object(t), Value::Object(v)) => {
            t.len() == v.len()
                && t.iter()
                    .all(|(key, tv)| v.get(key).is_some_and(|vv| same_value(tv, vv)))
        }
        (Value::Array(t), Value::Array(v)) => {
            t.len() == v.len() && t.iter().zip(v).all(|(tv, vv)| same_value(tv, vv))
        }
        (Value::Number(t), Value::Number(v)) => t.as_f64() == v.as_f64(),
        (Value::String(t), Value::Array(v)) => {
            let words: Vec<&str> = t.split_whitespace().collect();
            words.len() == v.len() && words.iter().zip(v).all(|(w, vv)| vv.as_str() == Some(*w))
        }
        (t, v) => t == v,
    }
}

/// Serializes payloads as the host would hand them over (for tests of the shell).
#[cfg(test)]
pub fn metadata_bytes(payloads: &[(&str, &Value)]) -> Vec<u8> {
    let fields = payloads
        .iter()
        .map(|(key, payload)| {
            let value = ProtoValue::from_json(payload);
            ((*key).to_owned(), value)
        })
        .collect();
    let mut filter_metadata = BTreeMap::new();
    filter_metadata.insert(NAMESPACE.to_owned(), Struct { fields });
    Metadata { filter_metadata }.encode_to_vec()
}

// `envoy.config.core.v3.Metadata` and `google.protobuf.Struct`, only the fields read here
// (`typed_filter_metadata`, tag 2, is skipped as an unknown field).

#[derive(Clone, PartialEq, prost::Message)]
struct Metadata {
    #[prost(btree_map = "string, message", tag = "1")]
    filter_metadata: BTreeMap<String, Struct>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Struct {
    #[prost(btree_map = "string, message", tag = "1")]
    fields: BTreeMap<String, ProtoValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ProtoValue {
    #[prost(oneof = "Kind", tags = "1, 2, 3, 4, 5, 6")]
    kind: Option<Kind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
/// `google.protobuf.Value`'s `kind`: null, number, string, bool, struct, list.
enum Kind {
    #[prost(int32, tag = "1")]
    Null(i32),
    #[prost(double, tag = "2")]
    Number(f64),
    #[prost(string, tag = "3")]
    Text(String),
    #[prost(bool, tag = "4")]
    Bool(bool),
    #[prost(message, tag = "5")]
    Object(Struct),
    #[prost(message, tag = "6")]
    List(ListValue),
}

#[derive(Clone, PartialEq, prost::Message)]
struct ListValue {
    #[prost(message, repeated, tag = "1")]
    values: Vec<ProtoValue>,
}

/// Struct numbers are doubles: a whole one (every NumericDate jwt_authn copies) becomes an
/// integer again, so `exp` reads as it did in the token.
fn number(n: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53: every integer below is a double.
    if n.fract() == 0.0 && n.abs() < EXACT {
        #[allow(clippy::cast_possible_truncation)]
        return Value::Number(Number::from(n as i64));
    }
    Number::from_f64(n).map_or(Value::Null, Value::Number)
}

impl From<&Struct> for Value {
    fn from(s: &Struct) -> Self {
        let fields: Map<String, Value> = s
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v)))
            .collect();
        Value::Object(fields)
    }
}

impl From<&ProtoValue> for Value {
    fn from(v: &ProtoValue) -> Self {
        match &v.kind {
            None | Some(Kind::Null(_)) => Value::Null,
            Some(Kind::Number(n)) => number(*n),
            Some(Kind::Text(s)) => Value::String(s.clone()),
            Some(Kind::Bool(b)) => Value::Bool(*b),
            Some(Kind::Object(s)) => Value::from(s),
            Some(Kind::List(l)) => Value::Array(l.values.iter().map(Value::from).collect()),
        }
    }
}

#[cfg(test)]
impl ProtoValue {
    fn from_json(value: &Value) -> Self {
        let kind = match value {
            Value::Null => Kind::Null(0),
            Value::Bool(b) => Kind::Bool(*b),
            Value::Number(n) => Kind::Number(n.as_f64().unwrap_or_default()),
            Value::String(s) => Kind::Text(s.clone()),
            Value::Array(items) => Kind::List(ListValue {
                values: items.iter().map(ProtoValue::from_json).collect(),
            }),
            Value::Object(fields) => Kind::Object(Struct {
                fields: fields
                    .iter()
                    .map(|(k, v)| (k.clone(), ProtoValue::from_json(v)))
                    .collect(),
            }),
        };
        ProtoValue { kind: Some(kind) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payloads_come_back_with_their_claim_types() {
        let payload = json!({
            "iss": "https://idp", "sub": "alice", "aud": ["a", "b"], "exp": 1_900_000_000,
            "iat": 1_700_000_000, "scope": "read write", "ratio": 0.5, "admin": true,
            "org": {"id": 7}, "none": null
        });
        let bytes = metadata_bytes(&[("https://idp", &payload)]);
        let payloads = VerifiedPayloads::from_metadata(&bytes).expect("decodes");
        let got: Value =
            serde_json::from_str(payloads.get("https://idp").expect("present")).expect("JSON");
        assert_eq!(got, payload);
        assert_eq!(payloads.get("other"), None);
    }

    #[test]
    fn other_namespaces_and_values_that_are_not_objects_are_not_payloads() {
        let mut metadata = Metadata::default();
        let mut fields = BTreeMap::new();
        fields.insert(
            "header".to_owned(),
            ProtoValue::from_json(&json!("Bearer x")),
        );
        metadata
            .filter_metadata
            .insert(NAMESPACE.to_owned(), Struct { fields });
        let mut other = BTreeMap::new();
        other.insert("k".to_owned(), ProtoValue::from_json(&json!({"sub": "x"})));
        metadata
            .filter_metadata
            .insert("envoy.lb".to_owned(), Struct { fields: other });
        let payloads = VerifiedPayloads::from_metadata(&metadata.encode_to_vec()).expect("ok");
        assert!(payloads.is_empty());
        assert!(VerifiedPayloads::from_metadata(&[])
            .expect("empty")
            .is_empty());
    }

    #[test]
    fn bytes_that_are_not_metadata_are_an_error_not_a_panic() {
        assert!(VerifiedPayloads::from_metadata(&[0xff, 0xff, 0xff]).is_err());
        // Nesting deeper than the decoder's recursion limit.
        let mut value = json!("leaf");
        for _ in 0..200 {
            value = json!({ "a": value });
        }
        let bytes = metadata_bytes(&[("deep", &value)]);
        assert!(VerifiedPayloads::from_metadata(&bytes).is_err());
    }

    #[test]
    fn numbers_that_are_not_whole_stay_fractions() {
        assert_eq!(number(1.5), json!(1.5));
        assert_eq!(number(-3.0), json!(-3));
        assert_eq!(number(1e300), json!(1e300));
        assert_eq!(number(f64::NAN), Value::Null);
    }
}
