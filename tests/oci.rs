//! The OCI image for Istio (`make oci`, `make oci-push`): deploy/oci.py builds the image layout
//! from the built filter with oras-py, pushes it to a real registry (Debian's docker-registry
//! on a free loopback port, stopped by pid on drop) and pulls it back. The registry must serve
//! the layout's manifest unchanged, in the format Istio's agent accepts (the *oci* variant: a
//! wasm config, exactly two layers, one of them the wasm module, uncompressed), and the pulled
//! module must be the built one, byte for byte.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use support::{http, repo_path, wasm_path, within};

const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.module.wasm.config.v1+json";
const WASM_MEDIA_TYPE: &str = "application/vnd.module.wasm.content.layer.v1+wasm";

/// oras-py in the repository's venv, installed by `make oci-setup` (part of `make test`).
fn python() -> PathBuf {
    let python = repo_path(".venv/bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import oras.provider, oras.layout"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "oras-py is missing from {}: run `make oci-setup` (or `make test`)",
        python.display()
    );
    python
}

/// Debian's docker-registry, installed by `make oci-setup`; `DOCKER_REGISTRY_BIN` overrides.
fn registry_bin() -> PathBuf {
    let path = std::env::var_os("DOCKER_REGISTRY_BIN")
        .map_or_else(|| PathBuf::from("/usr/bin/docker-registry"), PathBuf::from);
    assert!(
        path.exists(),
        "{} is missing: run `make oci-setup` (apt package docker-registry)",
        path.display()
    );
    path
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("bearer-guard-oci-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// docker-registry serving 127.0.0.1:<free port> from a storage directory; killed by pid on drop.
struct Registry {
    child: Child,
    port: u16,
}

impl Registry {
    fn start(dir: &Path) -> Registry {
        let binary = registry_bin();
        for _ in 0..3 {
            let port = support::ports::free_port();
            let config = dir.join("registry.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog: {{level: warn, accesslog: {{disabled: true}}}}\n\
                     storage: {{filesystem: {{rootdirectory: {}}}}}\n\
                     http: {{addr: 127.0.0.1:{port}}}\n",
                    dir.join("storage").display()
                ),
            )
            .unwrap();
            let child = Command::new(&binary)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join("registry.log")).unwrap())
                .process_group(0)
                .spawn()
                .unwrap();
            let mut registry = Registry { child, port };
            let ready = within(Duration::from_secs(20), || {
                registry.child.try_wait().unwrap().is_none()
                    && http::try_request(port, "GET", "/v2/", &[]).is_ok_and(|r| r.status == 200)
            });
            if ready.is_some() {
                return registry;
            }
            drop(registry); // the port may have been taken meanwhile: try another
        }
        panic!(
            "docker-registry did not start:\n{}",
            std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// deploy/oci.py with these arguments, as the Makefile runs it; panics with its output on failure.
fn oci_py(args: &[&str]) -> Output {
    let output = Command::new(python())
        .arg(repo_path("deploy/oci.py"))
        .args(args)
        .current_dir(repo_path(""))
        .env("DOCKER_REGISTRY_BIN", registry_bin())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "deploy/oci.py {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The manifest digest the layout's index.json tags with `tag`, and the manifest blob.
fn layout_manifest(layout: &Path, tag: &str) -> (String, Vec<u8>) {
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(layout.join("index.json")).unwrap()).unwrap();
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "one image in the layout: {index}");
    assert_eq!(manifests[0]["mediaType"], MANIFEST_MEDIA_TYPE);
    assert_eq!(
        manifests[0]["annotations"]["org.opencontainers.image.ref.name"],
        tag
    );
    let digest = manifests[0]["digest"].as_str().unwrap().to_owned();
    let hex = digest.strip_prefix("sha256:").unwrap();
    let blob = std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
    assert_eq!(
        sha256_hex(&blob),
        hex,
        "the manifest blob matches its digest"
    );
    (digest, blob)
}

/// The manifest is the *oci* variant Istio's agent accepts (istio/istio pkg/wasm/imagefetcher.go
/// extractOCIArtifactImage: exactly two layers, the wasm one found by its media type and read
/// as is), and its wasm layer is `wasm`.
fn assert_istio_wasm_manifest(manifest: &Value, wasm: &[u8]) {
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], MANIFEST_MEDIA_TYPE);
    assert_eq!(manifest["config"]["mediaType"], CONFIG_MEDIA_TYPE);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(
        layers.len(),
        2,
        "Istio wants exactly two layers: {manifest}"
    );
    let wasm_layers: Vec<&Value> = layers
        .iter()
        .filter(|l| l["mediaType"] == WASM_MEDIA_TYPE)
        .collect();
    assert_eq!(wasm_layers.len(), 1, "exactly one wasm layer: {manifest}");
    let layer = wasm_layers[0];
    assert_eq!(
        layer["digest"],
        format!("sha256:{}", sha256_hex(wasm)),
        "the wasm layer is the built filter, uncompressed"
    );
    assert_eq!(layer["size"].as_u64(), Some(wasm.len() as u64));
    assert_eq!(
        layer["annotations"]["org.opencontainers.image.title"],
        "plugin.wasm"
    );
    let other: Vec<&Value> = layers
        .iter()
        .filter(|l| l["mediaType"] != WASM_MEDIA_TYPE)
        .collect();
    assert_eq!(other[0]["mediaType"], CONFIG_MEDIA_TYPE);
    assert_eq!(
        other[0]["digest"], manifest["config"]["digest"],
        "the second layer is the runtime config"
    );
}

#[test]
fn image_is_pushed_to_a_registry_and_pulled_back_unchanged() {
    let wasm_file = wasm_path();
    let wasm = std::fs::read(&wasm_file).unwrap();
    let scratch = Scratch::new();
    let tag = "0.0.0-test";

    // `make oci`: the layout, twice: the same module gives the same manifest digest.
    let layout = scratch.0.join("layout");
    let layout_again = scratch.0.join("layout-again");
    for out in [&layout, &layout_again] {
        oci_py(&[
            "layout",
            "--wasm",
            &wasm_file.display().to_string(),
            "--out",
            &out.display().to_string(),
            "--tag",
            tag,
        ]);
    }
    let (digest, manifest_bytes) = layout_manifest(&layout, tag);
    assert_eq!(
        layout_manifest(&layout_again, tag).0,
        digest,
        "the image is reproducible"
    );
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_istio_wasm_manifest(&manifest, &wasm);
    let config_hex = manifest["config"]["digest"]
        .as_str()
        .unwrap()
        .strip_prefix("sha256:")
        .unwrap();
    let config: Value = serde_json::from_slice(
        &std::fs::read(layout.join("blobs/sha256").join(config_hex)).unwrap(),
    )
    .unwrap();
    assert_eq!(config["type"], "envoy_proxy");
    assert_eq!(config["config"]["root_ids"][0], "bearer_guard");

    // `make oci-push` to a real registry.
    let registry_dir = scratch.0.join("registry");
    std::fs::create_dir_all(&registry_dir).unwrap();
    let registry = Registry::start(&registry_dir);
    let reference = format!("127.0.0.1:{}/bearer-guard:{tag}", registry.port);
    oci_py(&[
        "push",
        "--layout",
        &layout.display().to_string(),
        "--tag",
        tag,
        "--to",
        &reference,
        "--plain-http",
    ]);

    // What a client such as Istio's agent gets from the registry's API.
    let served = http::get(
        registry.port,
        &format!("/v2/bearer-guard/manifests/{tag}"),
        &[("accept", MANIFEST_MEDIA_TYPE)],
    );
    assert_eq!(served.status, 200, "{}", served.body);
    assert_eq!(
        served.header("docker-content-digest"),
        Some(digest.as_str())
    );
    assert_eq!(served.header("content-type"), Some(MANIFEST_MEDIA_TYPE));
    assert_eq!(
        format!("sha256:{}", sha256_hex(served.body.as_bytes())),
        digest,
        "the registry serves the layout's manifest byte for byte"
    );
    assert_istio_wasm_manifest(&served.json(), &wasm);

    // Pulled back with the same tool: the module is the built one.
    let pulled = scratch.0.join("pulled");
    oci_py(&[
        "pull",
        "--from",
        &reference,
        "--out",
        &pulled.display().to_string(),
        "--plain-http",
    ]);
    let pulled_wasm = std::fs::read(pulled.join("plugin.wasm")).unwrap();
    assert_eq!(
        sha256_hex(&pulled_wasm),
        sha256_hex(&wasm),
        "the pulled module differs from {}",
        wasm_file.display()
    );
    let pulled_config: Value =
        serde_json::from_slice(&std::fs::read(pulled.join("runtime-config.json")).unwrap())
            .unwrap();
    assert_eq!(pulled_config, config);
    drop(registry);
}
