//! `check-config FILE...`: every plugin configuration in the files, through the filter's own
//! parser (`Config::from_json`, exactly what `on_configure` runs).

use std::io::Write;

use super::sources::{plugin_configs, Content};
use super::{hint, read_input, schema, CliError, Outcome};
use crate::config::error::ConfigError;
use crate::config::{Config, Configured, JwksLocation};
use crate::signing::DevKeys;
use serde_json::Value;

/// `files`: one at least (clap sees to it).
pub fn run(
    files: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let schema = schema::config_schema();
    let demo_keys = demo_public_keys();
    let mut outcome = Outcome::Success;
    for path in files {
        if check_file(path, &schema, &demo_keys, out, err)? == Outcome::Failure {
            outcome = Outcome::Failure;
        }
    }
    Ok(outcome)
}

/// Every plugin configuration in one file; a file with none fails (a typo'd path or the
/// wrong file should not pass as "nothing wrong").
fn check_file(
    path: &str,
    schema: &Value,
    demo_keys: &[Value],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let text = read_input(path)?;
    let found = match plugin_configs(&text) {
        Ok(found) => found,
        Err(why) => {
            writeln!(err, "{path}: {why}")?;
            return Ok(Outcome::Failure);
        }
    };
    let mut outcome = Outcome::Success;
    let mut checked = 0;
    for config in found {
        let at = if config.location.is_empty() {
            path.to_owned()
        } else {
            format!("{path}: {}", config.location)
        };
        for warning in &config.warnings {
            writeln!(err, "{at}: warning: {warning}")?;
        }
        match config.content {
            Content::Skipped(why) => writeln!(out, "{at}: skipped: {why}")?,
            Content::Unusable(why) => {
                checked += 1;
                outcome = Outcome::Failure;
                writeln!(err, "{at}: {why}")?;
            }
            Content::Json(json) => {
                checked += 1;
                if check_json(&at, &json, schema, demo_keys, out, err)? == Outcome::Failure {
                    outcome = Outcome::Failure;
                }
            }
        }
    }
    if checked == 0 {
        outcome = Outcome::Failure;
        writeln!(
            err,
            "{path}: no bearer-guard plugin configuration found (a JSON config, an \
             envoy.filters.http.wasm filter or an Istio WasmPlugin)"
        )?;
    }
    Ok(outcome)
}

/// One configuration through the filter's parser: a summary and warnings when it is
/// accepted, the error (with a hint from the schema) when not.
fn check_json(
    at: &str,
    json: &str,
    schema: &Value,
    demo_keys: &[Value],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome, CliError> {
    match Config::from_json(json.as_bytes()) {
        Ok(configured) => {
            writeln!(out, "{at}: ok: {}", summary(&configured.config))?;
            for warning in &configured.warnings {
                writeln!(out, "  warning: {warning}")?;
            }
            for warning in demo_key_warnings(json, demo_keys) {
                writeln!(err, "{at}: warning: {warning}")?;
            }
            Ok(Outcome::Success)
        }
        Err(error) => {
            report_error(err, at, &error, schema, json)?;
            Ok(Outcome::Failure)
        }
    }
}

/// The demo keys' public JWKs (their private halves are committed in `envoy/demo-keys`).
fn demo_public_keys() -> Vec<Value> {
    DevKeys::demo()
        .ok()
        .and_then(|keys| match keys.jwks().get("keys") {
            Some(Value::Array(keys)) => Some(keys.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The same public key: the key type and its public parameters.
fn same_key(a: &Value, b: &Value) -> bool {
    let field = |v: &Value, name: &str| v.get(name).and_then(Value::as_str).map(str::to_owned);
    let params: &[&str] = match field(a, "kty").as_deref() {
        Some("RSA") => &["n", "e"],
        Some("EC") => &["crv", "x", "y"],
        _ => return false,
    };
    field(a, "kty") == field(b, "kty")
        && params.iter().all(|p| {
            let value = field(a, p);
            value.is_some() && value == field(b, p)
        })
}

/// A provider whose local JWKS holds a demo key accepts tokens anyone can sign.
fn demo_key_warnings(json: &str, demo: &[Value]) -> Vec<String> {
    let Ok(config) = serde_json::from_str::<Value>(json) else {
        return Vec::new();
    };
    let Some(providers) = config.get("providers").and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut warnings = Vec::new();
    for (name, provider) in providers {
        let Some(local) = provider.get("local_jwks") else {
            continue;
        };
        let inline = local
            .get("inline_string")
            .and_then(Value::as_str)
            .and_then(|text| serde_json::from_str::<Value>(text).ok());
        let keys = local
            .get("keys")
            .into_iter()
            .chain(inline.as_ref().and_then(|jwks| jwks.get("keys")))
            .filter_map(Value::as_array)
            .flatten();
        for key in keys {
            for known in demo.iter().filter(|known| same_key(known, key)) {
                let kid = known.get("kid").and_then(Value::as_str).unwrap_or("?");
                let warning = format!(
                    "provider {name} trusts the public demo key {kid}: anyone can sign tokens \
                     for it; replace it before deploying"
                );
                if !warnings.contains(&warning) {
                    warnings.push(warning);
                }
            }
        }
    }
    warnings
}

/// The error with the key path, then the hints.
fn report_error(
    err: &mut dyn Write,
    at: &str,
    error: &ConfigError,
    schema: &serde_json::Value,
    json: &str,
) -> Result<(), CliError> {
    writeln!(err, "{at}: {error}")?;
    let config = serde_json::from_str(json).ok();
    for line in hint::hints(schema, error, config.as_ref()) {
        writeln!(err, "  hint: {line}")?;
    }
    Ok(())
}

/// The one plugin configuration in `path` (for `explain`), parsed by the filter's parser;
/// errors are reported as `check-config` reports them. Returns where it was found and the
/// configuration as written, too.
pub fn load_one(
    path: &str,
    err: &mut dyn Write,
) -> Result<(String, Configured, serde_json::Value), CliError> {
    let text = read_input(path)?;
    let found = plugin_configs(&text).map_err(|why| CliError::Input(format!("{path}: {why}")))?;
    let mut usable = found.into_iter().filter_map(|f| match f.content {
        Content::Json(json) => Some((f.location, json)),
        _ => None,
    });
    let (location, json) = match (usable.next(), usable.next()) {
        (Some(one), None) => one,
        (None, _) => {
            return Err(CliError::Input(format!(
                "{path}: no bearer-guard plugin configuration found"
            )))
        }
        (Some(_), Some(_)) => {
            return Err(CliError::Input(format!(
                "{path} holds several plugin configurations: put the one to explain in a file"
            )))
        }
    };
    let at = if location.is_empty() {
        path.to_owned()
    } else {
        format!("{path}: {location}")
    };
    match Config::from_json(json.as_bytes()) {
        Ok(configured) => {
            let written = serde_json::from_str(&json).unwrap_or(serde_json::Value::Null);
            Ok((at, configured, written))
        }
        Err(error) => {
            report_error(err, &at, &error, &schema::config_schema(), &json)?;
            Err(CliError::Input("the configuration is invalid".to_owned()))
        }
    }
}

/// One line: providers and their keys, rules, and the optional parts that are on.
pub fn summary(config: &Config) -> String {
    let providers: Vec<String> = config
        .providers
        .iter()
        .map(|p| {
            let keys = match (&p.jwt_authn, &p.remote_jwks, &p.introspection) {
                (Some(companion), _, _) => {
                    format!("jwt_authn's payload {:?}", companion.payload_in_metadata)
                }
                (None, Some(remote), _) => match &remote.location {
                    JwksLocation::Direct => format!("remote JWKS via cluster {}", remote.cluster),
                    JwksLocation::Discovery { jwks_cluster, .. } => format!(
                        "remote JWKS by OpenID discovery at {}{} via cluster {}; JWKS via \
                         cluster {jwks_cluster}",
                        remote.authority, remote.path, remote.cluster
                    ),
                },
                (None, None, Some(_)) if p.keys.keys.is_empty() => "introspection only".to_owned(),
                (None, None, _) => format!(
                    "{} local key{}",
                    p.keys.keys.len(),
                    plural(p.keys.keys.len())
                ),
            };
            format!("{} ({keys})", p.name)
        })
        .collect();
    let mut parts = vec![format!(
        "{} provider{}: {}",
        providers.len(),
        plural(providers.len()),
        providers.join(", ")
    )];
    if let Some(revocation) = &config.revocation {
        let mut on = Vec::new();
        if !revocation.static_set.is_empty() {
            on.push(format!("{} static entries", revocation.static_set.len()));
        }
        if let Some(header) = &revocation.response_header {
            on.push(format!("header {header}"));
        }
        if let Some(list) = &revocation.list {
            on.push(format!("list via cluster {}", list.endpoint.cluster));
        }
        if let Some(etcd) = &revocation.etcd {
            on.push(format!("etcd {} via cluster {}", etcd.prefix, etcd.cluster));
        }
        if revocation.publish.is_some() {
            on.push("publish".to_owned());
        }
        if revocation.idp.is_some() {
            on.push("RFC 7009".to_owned());
        }
        if revocation.status_list.is_some() {
            on.push("status lists".to_owned());
        }
        parts.push(format!("revocation ({})", on.join(", ")));
    }
    if let Some(anomaly) = &config.anomaly {
        parts.push(format!("misuse detection ({})", anomaly.action.as_str()));
    }
    if config.shadows() {
        parts.push(shadow_summary(config));
    }
    parts.join("; ")
}

/// Which requests are only shadowed: the top level, and the rules that differ from it.
fn shadow_summary(config: &Config) -> String {
    let differing: Vec<String> = config
        .rules
        .modes()
        .enumerate()
        .filter_map(|(i, mode)| mode.filter(|m| *m != config.mode).map(|m| (i, m)))
        .map(|(i, mode)| format!("rules[{i}]: {}", mode.as_str()))
        .collect();
    let mut text = format!(
        "mode {} (top level{}{})",
        config.mode.as_str(),
        if differing.is_empty() { "" } else { "; " },
        differing.join(", ")
    );
    text.push_str(
        ": shadowed denials are let through, counted as shadow_denied.<reason> and logged \
         with \"shadow\": true",
    );
    text
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
