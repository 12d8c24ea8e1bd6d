//! The ready-made Envoy configurations in `envoy/*.yaml` (every one, found by listing the
//! directory) pass `envoy --mode validate`, which also loads the filter and runs its
//! configuration parser: a wrong plugin key fails validation like a wrong Envoy field does.
//! TLS certificate paths under /etc/envoy/tls/ point at a certificate made by openssl at test
//! time; the wasm path points at the built filter.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::certificate::Certificate;
use support::{envoy_path, repo_path, wasm_path};

/// Where the shipped configurations expect their TLS certificate and key.
const TLS_DIR: &str = "/etc/envoy/tls/";
/// The relative wasm path the shipped configurations use (run from the repository root).
const WASM: &str = "dist/bearer_guard.wasm";
const VALIDATE_TIMEOUT: Duration = Duration::from_secs(180);

/// `envoy --mode validate` processes, killed by pid if the test ends before they do.
struct Validations {
    running: Vec<(String, Child, PathBuf)>,
}

impl Drop for Validations {
    fn drop(&mut self) {
        for (_, child, _) in &mut self.running {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Outcome {
    name: String,
    exit_code: Option<i32>,
    log: String,
}

impl Validations {
    /// Starts validating `yaml` (saved as `name` in `dir`); its log goes to a file beside it.
    fn start(&mut self, dir: &Path, name: &str, yaml: &str) {
        let config = dir.join(name);
        std::fs::write(&config, yaml).unwrap();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(envoy_path())
            .args(["--mode", "validate", "-c"])
            .arg(&config)
            .args(["--log-level", "info"])
            .current_dir(repo_path(""))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join(format!("{name}.err"))).unwrap())
            .process_group(0)
            .spawn()
            .unwrap();
        self.running.push((name.to_owned(), child, log));
    }

    /// Waits for every validation (at most `VALIDATE_TIMEOUT` in all).
    fn finish(mut self) -> Vec<Outcome> {
        let deadline = Instant::now() + VALIDATE_TIMEOUT;
        let mut outcomes = Vec::new();
        while let Some((name, mut child, log)) = self.running.pop() {
            let status = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break Some(status);
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            let err = log.with_extension("err");
            let text = format!(
                "{}{}",
                std::fs::read_to_string(&log).unwrap_or_default(),
                std::fs::read_to_string(err).unwrap_or_default()
            );
            outcomes.push(Outcome {
                name,
                exit_code: status.and_then(|s| s.code()),
                log: text,
            });
        }
        outcomes.reverse();
        outcomes
    }
}

/// Every `envoy/*.yaml`, sorted (templates are `.yaml.tmpl` and not listed).
fn shipped_configs() -> Vec<PathBuf> {
    let mut configs: Vec<PathBuf> = std::fs::read_dir(repo_path("envoy"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    configs.sort();
    configs
}

/// The config as the test runs it: certificates from `scratch`, the filter under test.
fn localized(yaml: &str, scratch: &Certificate) -> String {
    let tls_dir = format!("{}/", scratch.dir.display());
    yaml.replace(TLS_DIR, &tls_dir)
        .replace(WASM, &wasm_path().display().to_string())
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[test]
fn every_shipped_envoy_config_validates_with_the_filter_loaded() {
    let configs = shipped_configs();
    assert!(
        !configs.is_empty(),
        "no envoy/*.yaml found: the shipped configurations are missing"
    );
    let scratch = Certificate::generate("envoy-configs");
    let mut validations = Validations {
        running: Vec::new(),
    };
    let started = Instant::now();
    for path in &configs {
        let yaml = std::fs::read_to_string(path).unwrap();
        assert!(
            yaml.contains(WASM),
            "{} does not load the filter from {WASM}",
            path.display()
        );
        let policies: Vec<&str> = yaml
            .lines()
            .filter_map(|line| line.trim().strip_prefix("failure_policy:"))
            .map(str::trim)
            .collect();
        assert!(
            !policies.is_empty()
                && policies
                    .iter()
                    .all(|p| *p == "FAIL_CLOSED" || *p == "FAIL_RELOAD"),
            "{}: failure_policy must be FAIL_CLOSED or FAIL_RELOAD (never FAIL_OPEN), got {policies:?}",
            path.display()
        );
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        validations.start(&scratch.dir, &name, &localized(&yaml, &scratch));
    }
    // Control: validation does run the filter's configuration parser (an unknown plugin key
    // makes it fail), so a passing config above is a valid plugin configuration too.
    let sidecar = std::fs::read_to_string(repo_path("envoy/sidecar.yaml")).unwrap();
    let broken = sidecar.replacen("\"audiences\":", "\"audience\":", 1);
    assert_ne!(
        broken, sidecar,
        "the control needs `audiences` in sidecar.yaml"
    );
    validations.start(
        &scratch.dir,
        "control-broken.yaml",
        &localized(&broken, &scratch),
    );

    let outcomes = validations.finish();
    eprintln!(
        "validated {} configs (+1 control) in {:.1} s",
        configs.len(),
        started.elapsed().as_secs_f64()
    );
    for outcome in &outcomes {
        if outcome.name == "control-broken.yaml" {
            assert_ne!(
                outcome.exit_code,
                Some(0),
                "a plugin config with an unknown key passed validation:\n{}",
                tail(&outcome.log)
            );
            assert!(
                outcome.log.contains("unknown field `audience`"),
                "the control failed for another reason:\n{}",
                tail(&outcome.log)
            );
            continue;
        }
        assert_eq!(
            outcome.exit_code,
            Some(0),
            "envoy --mode validate failed for envoy/{}:\n{}",
            outcome.name,
            tail(&outcome.log)
        );
        assert!(
            outcome.log.contains("provider(s):"),
            "envoy/{}: the filter did not report its configuration:\n{}",
            outcome.name,
            tail(&outcome.log)
        );
    }
}
