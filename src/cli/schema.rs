//! The plugin configuration's JSON Schema (`bearer-guard schema`, committed as
//! `schema/bearer-guard.config.schema.json`), generated from the config's serde types.

use schemars::generate::SchemaSettings;
use schemars::transform::RecursiveTransform;
use schemars::Schema;
use serde_json::{Map, Value};

/// Where the generated schema is committed (relative to the repository root).
pub const SCHEMA_PATH: &str = "schema/bearer-guard.config.schema.json";

pub fn config_schema() -> Value {
    let generator = SchemaSettings::draft2020_12()
        .with_transform(RecursiveTransform(tidy))
        .into_generator();
    crate::config::json_schema(generator).to_value()
}

/// The schema as committed: pretty JSON and a final newline.
pub fn config_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&config_schema()).unwrap_or_default();
    text.push('\n');
    text
}

/// Absent keys are how a config leaves a setting at its default; serde also takes `null` for
/// `Option` fields, but the schema documents absence. Descriptions are unwrapped doc comments.
fn tidy(schema: &mut Schema) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if object.get("default") == Some(&Value::Null) {
        object.remove("default");
    }
    if let Some(Value::Array(types)) = object.get_mut("type") {
        types.retain(|t| t != "null");
        if let [only] = types.as_slice() {
            let only = only.clone();
            object.insert("type".to_owned(), only);
        }
    }
    unwrap_nullable_any_of(object);
    if let Some(Value::String(description)) = object.get_mut("description") {
        *description = unwrap_lines(description);
    }
}

/// `anyOf: [X, {"type": "null"}]` (an `Option` of a named type) becomes X's keys.
fn unwrap_nullable_any_of(object: &mut Map<String, Value>) {
    let Some(Value::Array(options)) = object.get("anyOf") else {
        return;
    };
    let null = serde_json::json!({ "type": "null" });
    let rest: Vec<&Value> = options.iter().filter(|o| **o != null).collect();
    let [Value::Object(inner)] = rest.as_slice() else {
        return;
    };
    let inner = inner.clone();
    object.remove("anyOf");
    for (key, value) in inner {
        object.entry(key).or_insert(value);
    }
}

/// Joins the lines of each paragraph (doc comments wrap at 100 columns).
fn unwrap_lines(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| {
            paragraph
                .split('\n')
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// `schema`: prints it.
pub fn run(out: &mut dyn std::io::Write) -> Result<super::Outcome, super::CliError> {
    out.write_all(config_schema_text().as_bytes())?;
    Ok(super::Outcome::Success)
}
