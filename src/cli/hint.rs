//! Hints for configuration errors: "did you mean" for unknown keys and values, and what the
//! JSON Schema says the key at fault takes (type, range, default, description). The schema is
//! generated from the same serde types the parser uses, so the hints cannot drift from it.

use serde_json::Value;

use crate::config::error::ConfigError;

/// The closest candidate to `wrong`, if one is close enough to be what was meant.
pub fn suggest<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let wrong_lower = wrong.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&wrong_lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len().max(wrong.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance over characters, a swap of two neighbours counting as one edit (optimal
/// string alignment): `crop` is one edit from `corp`.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // rows[i][j]: the distance between the first i chars of a and the first j of b.
    let mut rows: Vec<Vec<usize>> = Vec::with_capacity(a.len() + 1);
    rows.push((0..=b.len()).collect());
    for (i, ca) in a.iter().enumerate() {
        let mut row = Vec::with_capacity(b.len() + 1);
        row.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let at = |r: &Vec<usize>, k: usize| r.get(k).copied().unwrap_or(usize::MAX - 1);
            let previous = rows.last().map_or(usize::MAX - 1, |r| at(r, j));
            let mut best = (previous + usize::from(ca != cb))
                .min(rows.last().map_or(usize::MAX - 1, |r| at(r, j + 1)) + 1)
                .min(at(&row, j) + 1);
            let swapped = i > 0 && j > 0 && a.get(i - 1) == Some(cb) && b.get(j - 1) == Some(ca);
            if swapped {
                if let Some(before) = rows.len().checked_sub(2).and_then(|k| rows.get(k)) {
                    best = best.min(at(before, j - 1) + 1);
                }
            }
            row.push(best);
        }
        rows.push(row);
    }
    rows.last().and_then(|r| r.last()).copied().unwrap_or(0)
}

/// One step of a key path: `providers`, `corp`, `[0]`.
#[derive(Debug, PartialEq)]
enum Step<'k> {
    Key(&'k str),
    Index,
}

/// `rules[0].match.prefix` -> `rules`, `[0]`, `match`, `prefix`.
fn steps(key: &str) -> Vec<Step<'_>> {
    let mut steps = Vec::new();
    for part in key.split('.').filter(|p| !p.is_empty()) {
        let (name, indexes) = part.split_once('[').map_or((part, ""), |(n, _)| {
            (n, part.get(n.len()..).unwrap_or_default())
        });
        if !name.is_empty() {
            steps.push(Step::Key(name));
        }
        steps.extend(indexes.matches('[').map(|_| Step::Index));
    }
    steps
}

/// Follows `$ref`s into `$defs`.
fn resolve<'s>(root: &'s Value, mut node: &'s Value) -> &'s Value {
    for _ in 0..8 {
        let Some(name) = node
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/$defs/"))
        else {
            break;
        };
        match root.get("$defs").and_then(|defs| defs.get(name)) {
            Some(target) => node = target,
            None => break,
        }
    }
    node
}

/// The schema of `step` inside `node`: a property, a map's values or an array's items,
/// looked for in `anyOf`/`oneOf`/`allOf` branches too.
fn child<'s>(root: &'s Value, node: &'s Value, step: &Step<'_>) -> Option<&'s Value> {
    let node = resolve(root, node);
    let direct = match step {
        Step::Key(key) => node
            .get("properties")
            .and_then(|p| p.get(*key))
            .or_else(|| node.get("additionalProperties").filter(|a| a.is_object())),
        Step::Index => node.get("items"),
    };
    direct.or_else(|| {
        ["anyOf", "oneOf", "allOf"]
            .iter()
            .filter_map(|k| node.get(*k).and_then(Value::as_array))
            .flatten()
            .find_map(|branch| child(root, branch, step))
    })
}

/// The schema at a key path, as its parent states it (its `$ref` not followed, so the
/// property's own description and default stay in view).
fn at<'s>(root: &'s Value, steps: &[Step<'_>]) -> Option<&'s Value> {
    steps
        .iter()
        .try_fold(root, |node, step| child(root, node, step))
}

/// The keys an object schema allows.
fn keys(root: &Value, node: &Value) -> Vec<String> {
    let node = resolve(root, node);
    let mut keys: Vec<String> = node
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    for branch in ["anyOf", "oneOf", "allOf"]
        .iter()
        .filter_map(|k| node.get(*k).and_then(Value::as_array))
        .flatten()
    {
        keys.extend(self::keys(root, branch));
    }
    keys.sort();
    keys.dedup();
    keys
}

/// The name between the backticks after `marker`, e.g. `audience` in "unknown field `audience`".
fn quoted_after<'r>(reason: &'r str, marker: &str) -> Option<&'r str> {
    let rest = reason.get(reason.find(marker)? + marker.len()..)?;
    rest.split('`').next()
}

/// The JSON string after `marker`, e.g. `crop` in `no provider named "crop"`.
fn quoted_name<'r>(reason: &'r str, marker: &str) -> Option<&'r str> {
    let rest = reason.get(reason.find(marker)? + marker.len()..)?;
    rest.strip_prefix('"')?.split('"').next()
}

/// Every backticked word after "expected" (serde lists the allowed variants there).
fn expected_words(reason: &str) -> Vec<&str> {
    let Some(at) = reason.find("expected") else {
        return Vec::new();
    };
    reason
        .get(at..)
        .unwrap_or_default()
        .split('`')
        .skip(1)
        .step_by(2)
        .collect()
}

/// Hint lines for a configuration error (none when there is nothing useful to add). `config`
/// is the configuration as JSON, when it is JSON: it has the provider names a reference to an
/// unknown provider may have meant.
pub fn hints(schema: &Value, error: &ConfigError, config: Option<&Value>) -> Vec<String> {
    let mut steps = steps(&error.key);
    let mut hints = Vec::new();
    let named = quoted_name(&error.reason, "no provider named ").or_else(|| {
        error
            .key
            .strip_prefix("revocation.providers.")
            .filter(|_| error.reason.contains("names no configured provider"))
    });
    if let Some(name) = named {
        let providers = config
            .and_then(|c| c.get("providers"))
            .and_then(Value::as_object);
        let names = providers
            .into_iter()
            .flat_map(|p| p.keys().map(String::as_str));
        if let Some(near) = suggest(name, names) {
            hints.push(format!("did you mean provider `{near}`?"));
        }
    }
    if let Some(field) = quoted_after(&error.reason, "unknown field `") {
        // serde names the unknown key in the path; the streamed revocation parser names its
        // parent.
        if steps.last() == Some(&Step::Key(field)) {
            steps.pop();
        }
        let Some(parent) = at(schema, &steps) else {
            return hints;
        };
        let allowed = keys(schema, parent);
        match suggest(field, allowed.iter().map(String::as_str)) {
            Some(near) => {
                hints.push(format!("did you mean `{near}`?"));
                steps.push(Step::Key(near));
                hints.extend(describe_at(schema, &steps, near));
            }
            None if !allowed.is_empty() => {
                hints.push(format!("keys allowed here: {}", allowed.join(", ")));
            }
            None => {}
        }
        return hints;
    }
    if let Some(value) = quoted_after(&error.reason, "unknown variant `") {
        if let Some(near) = suggest(value, expected_words(&error.reason)) {
            hints.push(format!("did you mean `{near}`?"));
        }
    }
    // The whole config (an empty key) has nothing more specific to say.
    let name = match steps.last() {
        None => return hints,
        Some(Step::Key(name)) => (*name).to_owned(),
        Some(Step::Index) => error.key.clone(),
    };
    hints.extend(describe_at(schema, &steps, &name));
    hints
}

fn describe_at(schema: &Value, steps: &[Step<'_>], name: &str) -> Option<String> {
    let node = at(schema, steps)?;
    // The property's own words first, then its type's.
    let said = |key: &str| node.get(key).or_else(|| resolve(schema, node).get(key));
    let mut parts = Vec::new();
    if let Some(kind) = kind(schema, node) {
        parts.push(kind);
    }
    if let Some(default) = said("default") {
        parts.push(format!("default {default}"));
    }
    let description = said("description")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if parts.is_empty() && description.is_empty() {
        return None;
    }
    let summary = if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    };
    Some(
        format!("`{name}`{summary}: {description}")
            .trim_end_matches(": ")
            .to_owned(),
    )
}

/// `integer 1..=86400`, `"deny" or "allow"`, `array of strings, at least 1`, ...
fn kind(root: &Value, node: &Value) -> Option<String> {
    let node = resolve(root, node);
    if let Some(values) = node.get("enum").and_then(Value::as_array) {
        return Some(one_of(values.iter().cloned()));
    }
    if let Some(branches) = node.get("oneOf").and_then(Value::as_array) {
        let consts: Option<Vec<Value>> = branches.iter().map(|b| b.get("const").cloned()).collect();
        if let Some(consts) = consts {
            return Some(one_of(consts.into_iter()));
        }
    }
    let base = match node.get("type") {
        Some(Value::String(t)) if t == "array" => {
            let items = node
                .get("items")
                .and_then(|items| kind(root, items))
                .unwrap_or_else(|| "values".to_owned());
            format!("array of {items}")
        }
        Some(Value::String(t)) => t.clone(),
        _ if node.get("properties").is_some() => "object".to_owned(),
        _ => return None,
    };
    let bound = |key: &str| node.get(key).and_then(Value::as_u64);
    let range = match (bound("minimum"), bound("maximum")) {
        (Some(min), Some(max)) => format!(" {min}..={max}"),
        (Some(0), None) => " >= 0".to_owned(),
        (Some(min), None) => format!(" >= {min}"),
        (None, Some(max)) => format!(" <= {max}"),
        (None, None) => String::new(),
    };
    let items = bound("minItems").map_or(String::new(), |n| format!(", at least {n}"));
    Some(format!("{base}{range}{items}"))
}

fn one_of(values: impl Iterator<Item = Value>) -> String {
    let values: Vec<String> = values.map(|v| v.to_string()).collect();
    match values.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => values.join(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::schema::config_schema;

    fn hints_for(key: &str, reason: &str) -> Vec<String> {
        hints(&config_schema(), &ConfigError::new(key, reason), None)
    }

    #[test]
    fn suggestions_are_close_or_none() {
        let keys = ["audiences", "issuer", "algorithms"];
        assert_eq!(suggest("audience", keys), Some("audiences"));
        assert_eq!(suggest("ISSUER", keys), Some("issuer"));
        assert_eq!(suggest("algorithm", keys), Some("algorithms"));
        assert_eq!(suggest("colour", keys), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("crop", "corp"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn unknown_keys_get_the_nearest_key_and_what_it_takes() {
        let hints = hints_for(
            "providers.corp.audience",
            "unknown field `audience`, expected one of `issuer`, `audiences`",
        );
        assert_eq!(hints[0], "did you mean `audiences`?");
        assert!(
            hints[1].starts_with("`audiences` (array of string, default []): When non-empty"),
            "{hints:?}"
        );
        // The revocation parser names the parent key.
        let hints = hints_for("revocation", "unknown field `jtis`");
        assert_eq!(hints[0], "did you mean `jti`?", "{hints:?}");
        let hints = hints_for(
            "rules[0].match.prefx",
            "unknown field `prefx`, expected ...",
        );
        assert_eq!(hints[0], "did you mean `prefix`?");
        let hints = hints_for("log.zzz", "unknown field `zzz`");
        assert_eq!(
            hints,
            ["keys allowed here: decisions, filter_state, max_lines_per_second"]
        );
    }

    #[test]
    fn other_errors_say_what_the_key_takes() {
        let hints = hints_for("anomaly.window_seconds", "must be 1..=86400");
        assert_eq!(
            hints,
            ["`window_seconds` (integer 1..=86400, default 60): Misuse detection window per token."]
        );
        let hints = hints_for(
            "crypto",
            "unknown variant `wasn`, expected `auto` or `wasm`",
        );
        assert_eq!(hints[0], "did you mean `wasm`?");
        assert!(
            hints[1].starts_with("`crypto` (\"auto\" or \"wasm\", default \"auto\")"),
            "{hints:?}"
        );
        let hints = hints_for("revocation.list.on_stale", "unknown variant `maybe`");
        assert!(
            hints[0].starts_with("`on_stale` (\"deny\" or \"allow\", default \"deny\")"),
            "{hints:?}"
        );
        let hints = hints_for(
            "providers.corp.from_headers[0].name",
            "must be a valid HTTP header name",
        );
        assert_eq!(hints, ["`name` (string): Header name, case-insensitive."]);
        assert!(hints_for("", "not UTF-8").is_empty());
        let config = serde_json::json!({ "providers": { "corp": {}, "partner": {} } });
        let error = ConfigError::new(
            "rules[0].requires.provider_name",
            "no provider named \"crop\"",
        );
        assert_eq!(
            super::hints(&config_schema(), &error, Some(&config))[0],
            "did you mean provider `corp`?"
        );
        let error = ConfigError::new(
            "revocation.providers.partnr",
            "names no configured provider",
        );
        assert_eq!(
            super::hints(&config_schema(), &error, Some(&config))[0],
            "did you mean provider `partner`?"
        );
    }
}
