//! Every plugin configuration in the repository's example configs is valid by the committed
//! JSON Schema and by `bearer-guard check-config` (run as a process): the JSON strings of
//! bearer-guard's `envoy.filters.http.wasm` filters in Envoy configs under `envoy/`, and
//! `spec.pluginConfig` of Istio WasmPlugins under `deploy/`. Files are found by walking those
//! trees, so new examples are checked without changes here. The committed schema must be the
//! one the config types generate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use bearer_guard::cli::schema::{config_schema, config_schema_text, SCHEMA_PATH};
use bearer_guard::cli::sources::{plugin_configs, Content};

const BIN: &str = env!("CARGO_BIN_EXE_bearer-guard");
const EXAMPLE_DIRS: [&str; 2] = ["envoy", "deploy"];

fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

#[test]
fn committed_schema_is_the_generated_one() {
    let committed = fs::read_to_string(repo(SCHEMA_PATH))
        .unwrap_or_else(|e| panic!("{SCHEMA_PATH}: {e} (run `make schema`)"));
    assert!(
        committed == config_schema_text(),
        "{SCHEMA_PATH} is out of date with the config types: run `make schema` and commit it"
    );
}

/// Example config files: YAML and JSON, and their `.tmpl` templates.
fn example_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let name = name.strip_suffix(".tmpl").unwrap_or(&name);
        if path.is_dir() {
            example_files(&path, files);
        } else if [".yaml", ".yml", ".json"]
            .iter()
            .any(|ext| name.ends_with(ext))
        {
            files.push(path);
        }
    }
}

/// A template with its `{{PLACEHOLDER}}`s filled with `0` (ports, paths): whatever the test
/// harness fills in, this is a value of the right place. A plugin configuration that is
/// itself a placeholder cannot be checked here; the tests that fill it run it in Envoy.
fn filled(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push('0');
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

#[test]
fn every_example_config_passes_the_schema_and_check_config() {
    let schema = config_schema();
    let validator = jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema");
    let mut files = Vec::new();
    for dir in EXAMPLE_DIRS {
        example_files(&repo(dir), &mut files);
    }
    files.sort();
    let scratch = std::env::temp_dir().join(format!("bearer-guard-configs-{}", std::process::id()));
    fs::create_dir_all(&scratch).unwrap();
    let (mut checked, mut report) = (0, Vec::new());
    for path in &files {
        let shown = path.strip_prefix(repo("")).unwrap().display().to_string();
        let text = fs::read_to_string(path).unwrap();
        let template = shown.ends_with(".tmpl");
        let (text, file_for_cli) = if template {
            let copy = scratch.join(path.file_name().unwrap());
            fs::write(&copy, filled(&text)).unwrap();
            (filled(&text), copy)
        } else {
            (text, path.clone())
        };
        let found = plugin_configs(&text).unwrap_or_else(|e| panic!("{shown}: {e}"));
        let mut here = 0;
        for config in &found {
            let at = format!("{shown}: {}", config.location);
            match &config.content {
                Content::Json(json) => {
                    let instance: serde_json::Value = serde_json::from_str(json)
                        .unwrap_or_else(|e| panic!("{at}: not JSON: {e}"));
                    let errors: Vec<String> = validator
                        .iter_errors(&instance)
                        .map(|e| format!("{} at {}", e, e.instance_path()))
                        .collect();
                    assert!(
                        errors.is_empty(),
                        "{at}: not valid by the schema: {errors:#?}"
                    );
                    here += 1;
                }
                Content::Unusable(why) if template => {
                    report.push(format!("{at}: skipped: a template placeholder ({why})"));
                }
                Content::Unusable(why) => panic!("{at}: {why}"),
                Content::Skipped(why) => report.push(format!("{at}: skipped: {why}")),
            }
        }
        if here > 0 {
            let output = Command::new(BIN)
                .arg("check-config")
                .arg(&file_for_cli)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{shown}: check-config failed:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            let stdout = String::from_utf8(output.stdout).unwrap();
            assert_eq!(stdout.matches(": ok: ").count(), here, "{shown}: {stdout}");
            report.push(format!("{shown}: {here} plugin configuration(s) checked"));
        } else if found.is_empty() {
            report.push(format!("{shown}: no plugin configuration"));
        }
        checked += here;
    }
    let _ = fs::remove_dir_all(&scratch);
    println!("{}", report.join("\n"));
    assert!(
        checked > 0,
        "no plugin configuration found under {EXAMPLE_DIRS:?}: {files:?}"
    );
    // The demo's config is the one anchor known to exist: the search must find it.
    assert!(
        report
            .iter()
            .any(|line| line == "envoy/demo.yaml: 1 plugin configuration(s) checked"),
        "{report:#?}"
    );
}

#[test]
fn the_schema_rejects_what_the_parser_rejects_by_shape() {
    let schema = config_schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let jwks = serde_json::json!({ "keys": [{ "kty": "oct", "k": "AA" }] });
    let valid = serde_json::json!({
        "providers": { "corp": { "issuer": "i", "local_jwks": jwks } },
        "revocation": { "jti": ["a", { "jti": "b", "exp": 1 }], "response_header": null,
                        "providers": { "corp": { "subjects": { "alice": 5 } } } },
    });
    assert!(validator.is_valid(&valid));
    // The filter's own parser (what `on_configure` runs) is the reference: it takes the valid
    // config and refuses each bad one, so the schema agrees with it, not just with itself.
    let parse = |config: &serde_json::Value| {
        bearer_guard::config::Config::from_json(config.to_string().as_bytes())
    };
    if let Err(e) = parse(&valid) {
        panic!("the parser refuses the valid config: {e}");
    }
    for (key, bad) in [
        ("/providers/corp/audience", serde_json::json!(["x"])),
        (
            "/providers/corp/clock_skew_seconds",
            serde_json::json!("60"),
        ),
        ("/crypto", serde_json::json!("gpu")),
        ("/anomaly", serde_json::json!({ "window_seconds": 0 })),
        ("/revocation/jtis", serde_json::json!([])),
        ("/revocation/token_sha256", serde_json::json!(["abc"])),
        (
            "/rules",
            serde_json::json!([{ "match": { "prefix": "api" } }]),
        ),
    ] {
        let mut config = valid.clone();
        let (parent, name) = key.rsplit_once('/').unwrap();
        config.pointer_mut(parent).unwrap()[name] = bad;
        assert!(!validator.is_valid(&config), "{key}");
        assert!(parse(&config).is_err(), "the parser accepts {key}");
    }
}

#[test]
fn the_schema_and_the_parser_agree_on_where_a_remote_jwks_is() {
    let schema = config_schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let with = |remote_jwks: serde_json::Value| {
        serde_json::json!({ "providers": { "idp": {
            "issuer": "https://idp.example.com", "remote_jwks": remote_jwks
        }}})
    };
    let parses = |config: &serde_json::Value| {
        bearer_guard::config::Config::from_json(config.to_string().as_bytes()).is_ok()
    };
    let uri = "https://idp.example.com/jwks";
    let discovery = "https://idp.example.com/.well-known/openid-configuration";
    for (remote_jwks, valid) in [
        (serde_json::json!({ "cluster": "idp", "uri": uri }), true),
        (
            serde_json::json!({ "cluster": "idp", "discovery_uri": discovery }),
            true,
        ),
        (
            serde_json::json!({ "cluster": "idp", "discovery_uri": discovery, "jwks_cluster": "keys" }),
            true,
        ),
        (serde_json::json!({ "cluster": "idp" }), false),
        (
            serde_json::json!({ "cluster": "idp", "uri": uri, "discovery_uri": discovery }),
            false,
        ),
        (
            serde_json::json!({ "cluster": "idp", "uri": uri, "jwks_cluster": "keys" }),
            false,
        ),
    ] {
        let config = with(remote_jwks.clone());
        assert_eq!(validator.is_valid(&config), valid, "schema: {remote_jwks}");
        assert_eq!(parses(&config), valid, "parser: {remote_jwks}");
    }
}
