//! Where an operator's files keep the plugin configuration: a JSON file of its own, the
//! `configuration` of an `envoy.filters.http.wasm` filter in an Envoy config (YAML or JSON),
//! or `spec.pluginConfig` of an Istio `WasmPlugin` (YAML, several documents per file).

use serde::Deserialize;
use serde_json::Value;

const WASM_FILTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const STRING_VALUE_TYPE: &str = "type.googleapis.com/google.protobuf.StringValue";

/// One plugin configuration found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Where in the file (empty for a file that is the configuration itself).
    pub location: String,
    pub content: Content,
    /// What may differ where the file is used (YAML 1.1 booleans in a WasmPlugin).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// The JSON text the filter would be given.
    Json(String),
    /// A bearer-guard filter whose configuration cannot be handed to the filter at all.
    Unusable(String),
    /// Another wasm filter or WasmPlugin, left alone.
    Skipped(String),
}

/// Every plugin configuration in `text`; `Err` when the file is neither JSON nor YAML.
pub fn plugin_configs(text: &str) -> Result<Vec<Found>, String> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') {
        // A JSON file: a plugin config is handed to the filter's parser as it is (so a syntax
        // error gets the parser's own key path); an Envoy config in JSON is searched.
        let (found, config) = match serde_json::from_str::<Value>(trimmed) {
            Ok(value) => (search(&value, ""), looks_like_plugin_config(&value)),
            Err(_) => (Vec::new(), true),
        };
        if found.is_empty() && config {
            return Ok(vec![Found {
                location: String::new(),
                content: Content::Json(trimmed.to_owned()),
                warnings: Vec::new(),
            }]);
        }
        return Ok(found);
    }
    let mut found = Vec::new();
    let documents: Vec<Value> = serde_norway::Deserializer::from_str(text)
        .map(Value::deserialize)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("neither JSON nor YAML: {e}"))?;
    let several = documents.len() > 1;
    for (i, document) in documents.iter().enumerate() {
        let prefix = if several {
            format!("document {}: ", i + 1)
        } else {
            String::new()
        };
        let mut here = search(document, "");
        if here.is_empty() && looks_like_plugin_config(document) {
            // A plugin configuration written as YAML.
            here.push(Found {
                location: String::new(),
                content: Content::Json(pretty(document)),
                warnings: Vec::new(),
            });
        }
        found.extend(here.into_iter().map(|f| Found {
            location: format!("{prefix}{}", f.location).trim_end().to_owned(),
            content: f.content,
            warnings: f.warnings,
        }));
    }
    Ok(found)
}

/// A plugin configuration rather than another JSON or YAML file (a dashboard, a manifest):
/// it has `providers`, or a key close enough to be a typo of it, or nothing at all.
fn looks_like_plugin_config(value: &Value) -> bool {
    value.as_object().is_some_and(|object| {
        object.is_empty()
            || object
                .keys()
                .any(|key| super::hint::suggest(key, ["providers"]).is_some())
    })
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// WasmPlugins and wasm filters anywhere in `value`, `path` being where `value` is.
fn search(value: &Value, path: &str) -> Vec<Found> {
    match value {
        Value::Object(object) => {
            if object.get("kind").and_then(Value::as_str) == Some("WasmPlugin") {
                return vec![wasm_plugin(value, path)];
            }
            if object.get("@type").and_then(Value::as_str) == Some(WASM_FILTER_TYPE) {
                return vec![wasm_filter(value, path)];
            }
            object
                .iter()
                .flat_map(|(key, v)| search(v, &join(path, key)))
                .collect()
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .flat_map(|(i, v)| {
                // A listener by its name: shorter than its index path, and stable.
                let here = match v.get("name").and_then(Value::as_str) {
                    Some(name) if path.ends_with("listeners") => format!("listener {name}"),
                    _ => format!("{path}[{i}]"),
                };
                search(v, &here)
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Whether a filter or plugin is this one: its names or its module mention bearer-guard.
fn mentions_bearer_guard(values: &[Option<&Value>]) -> bool {
    values
        .iter()
        .filter_map(|v| v.and_then(Value::as_str))
        .any(|s| {
            let s = s.to_ascii_lowercase();
            s.contains("bearer_guard") || s.contains("bearer-guard")
        })
}

fn wasm_plugin(value: &Value, path: &str) -> Found {
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)");
    let location = format!("{path} WasmPlugin {name}").trim().to_owned();
    let ours = mentions_bearer_guard(&[
        value.pointer("/metadata/name"),
        value.pointer("/spec/url"),
        value.pointer("/spec/pluginName"),
    ]);
    let mut warnings = Vec::new();
    let content = if !ours {
        Content::Skipped("not bearer-guard (no bearer-guard in its name or url)".to_owned())
    } else {
        match value.pointer("/spec/pluginConfig") {
            Some(config @ Value::Object(_)) => {
                yaml11_booleans(config, "spec.pluginConfig", &mut warnings);
                Content::Json(pretty(config))
            }
            Some(_) => Content::Unusable("spec.pluginConfig is not a mapping".to_owned()),
            None => Content::Unusable(
                "no spec.pluginConfig: the filter needs a configuration".to_owned(),
            ),
        }
    };
    Found {
        location,
        content,
        warnings,
    }
}

/// Strings this parser reads as YAML 1.2 does, but Kubernetes (YAML 1.1) reads as booleans
/// when unquoted. The YAML reader does not say whether a scalar was quoted, so every such
/// string is named.
const YAML11_BOOLEANS: [&str; 16] = [
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
    "OFF",
];

fn yaml11_booleans(value: &Value, path: &str, warnings: &mut Vec<String>) {
    match value {
        Value::String(s) if YAML11_BOOLEANS.contains(&s.as_str()) => warnings.push(format!(
            "{path}: Kubernetes reads unquoted `{s}` as a boolean; quote it (\"{s}\")"
        )),
        Value::Object(object) => {
            for (key, v) in object {
                yaml11_booleans(v, &join(path, key), warnings);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                yaml11_booleans(v, &format!("{path}[{i}]"), warnings);
            }
        }
        _ => {}
    }
}

/// `listener guarded, http_filters[0]` when the filter is in a named listener's chain, else
/// the path to it.
fn filter_location(path: &str) -> String {
    let listener = path
        .strip_prefix("listener ")
        .and_then(|rest| rest.split('.').next());
    let filter = path
        .rfind("http_filters[")
        .and_then(|at| path.get(at..))
        .and_then(|rest| rest.split('.').next());
    match (listener, filter) {
        (Some(listener), Some(filter)) => format!("listener {listener}, {filter}"),
        _ => path.to_owned(),
    }
}

fn wasm_filter(value: &Value, path: &str) -> Found {
    let location = filter_location(path);
    let ours = mentions_bearer_guard(&[
        value.pointer("/config/name"),
        value.pointer("/config/root_id"),
        value.pointer("/config/vm_config/vm_id"),
        value.pointer("/config/vm_config/code/local/filename"),
        value.pointer("/config/vm_config/code/remote/http_uri/uri"),
    ]);
    if !ours {
        return Found {
            location,
            content: Content::Skipped(
                "another wasm filter (no bearer-guard in its names or module)".to_owned(),
            ),
            warnings: Vec::new(),
        };
    }
    let content = match value.pointer("/config/configuration") {
        None => Content::Unusable("no configuration: the filter needs one".to_owned()),
        Some(configuration) => match configuration.get("@type").and_then(Value::as_str) {
            Some(STRING_VALUE_TYPE) => match configuration.get("value") {
                Some(Value::String(json)) => Content::Json(json.clone()),
                _ => Content::Unusable("configuration.value is not a string".to_owned()),
            },
            other => Content::Unusable(format!(
                "configuration is {}, not google.protobuf.StringValue",
                other.unwrap_or("untyped")
            )),
        },
    };
    Found {
        location,
        content,
        warnings: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_file_is_the_configuration_as_it_is() {
        let text = "{\"providers\": {}, }";
        assert_eq!(
            plugin_configs(text).unwrap(),
            [Found {
                location: String::new(),
                content: Content::Json(text.to_owned()),
                warnings: Vec::new(),
            }]
        );
    }

    #[test]
    fn envoy_filters_and_wasm_plugins() {
        let envoy = r#"
static_resources:
  listeners:
  - filter_chains:
    - filters:
      - typed_config:
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                root_id: bearer_guard
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: '{"providers": {}}'
          - name: other
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config: { root_id: rate_limit }
"#;
        let found = plugin_configs(envoy).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(
            found[0].location,
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config"
        );
        let named = envoy.replace("  - filter_chains:", "  - name: edge\n    filter_chains:");
        assert_eq!(
            plugin_configs(&named).unwrap()[0].location,
            "listener edge, http_filters[0]"
        );
        assert_eq!(
            found[0].content,
            Content::Json(r#"{"providers": {}}"#.to_owned())
        );
        assert!(matches!(found[1].content, Content::Skipped(_)));

        let istio = "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: { name: bearer-guard }\nspec:\n  url: oci://x/bearer-guard:1\n  pluginConfig:\n    providers: { corp: { issuer: i } }\n---\nkind: WasmPlugin\nmetadata: { name: bearer-guard-2 }\nspec: {}\n";
        let found = plugin_configs(istio).unwrap();
        assert_eq!(found[0].location, "document 1: WasmPlugin bearer-guard");
        let Content::Json(json) = &found[0].content else {
            panic!("{found:?}")
        };
        assert_eq!(
            serde_json::from_str::<Value>(json).unwrap(),
            serde_json::json!({ "providers": { "corp": { "issuer": "i" } } })
        );
        assert!(matches!(found[1].content, Content::Unusable(_)));
        assert!(found[0].warnings.is_empty());
        // YAML 1.1 (Kubernetes) reads unquoted `no` as false: named, with where it is.
        let yes = istio.replace("issuer: i", "issuer: i, subjects: { exact: no }");
        assert_eq!(
            plugin_configs(&yes).unwrap()[0].warnings,
            [
                "spec.pluginConfig.providers.corp.subjects.exact: Kubernetes reads unquoted \
              `no` as a boolean; quote it (\"no\")"
            ]
        );
        assert!(plugin_configs("a: [").is_err());
        assert!(plugin_configs("just: yaml").unwrap().is_empty());
        assert!(plugin_configs(r#"{"title": "a dashboard"}"#)
            .unwrap()
            .is_empty());
        assert_eq!(plugin_configs(r#"{"provider": {}}"#).unwrap().len(), 1);
        assert_eq!(plugin_configs("provider: {}").unwrap().len(), 1);
    }
}
