//! Remote sources failing in every way a test can stage (500, garbage, 10 MB, an HTML page,
//! past the timeout, a reset mid-body, a peer that closes at once), against a real Envoy: the
//! last good keys and revocation list stay in use, every failure is counted, the log says it
//! once per episode (per VM) and again when the source recovers, and nothing crashes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;
use support::testkit;

use std::time::Duration;

use jwt_compact::jwk::JsonWebKey;
use serde_json::json;

use support::envoy::Envoy;
use support::fault::{Fault, FaultServer};
use support::http;
use support::upstream::Upstream;
use support::within;
use testkit::{keys, mint, public_jwk, unix_now, Signer};

const PARTNER: &str = "https://partner.example.com";
const STAT: &str = "wasmcustom.bearer_guard.";

fn counter(envoy: &Envoy, name: &str) -> u64 {
    envoy.counter(&format!("{STAT}{name}"))
}

#[test]
fn keys_and_revocation_list_survive_every_fault_of_their_sources() {
    let upstream = Upstream::start();
    let jwks = json!({ "keys": [public_jwk(JsonWebKey::from(&keys().rsa), "rsa-1", None)] });
    let jwks_server = FaultServer::start(&jwks.to_string());
    let list_server = FaultServer::start(r#"{"jti": ["j-revoked"]}"#);
    let config = json!({
        "providers": { "partner": {
            "issuer": PARTNER,
            "remote_jwks": {
                "cluster": "idp",
                "uri": "http://idp.example.com/jwks.json",
                "cache_duration_seconds": 1,
                "timeout_ms": 500
            }
        }},
        "revocation": { "list": {
            "cluster": "revocations",
            "uri": "http://revocations.local/v1/list",
            "refresh_seconds": 1,
            "max_stale_seconds": 600,
            "timeout_ms": 500
        }}
    });
    let yaml = support::envoy::fill_template(
        "envoy/test.yaml.tmpl",
        &config,
        upstream.port,
        &[
            ("IDP_PORT", &jwks_server.port.to_string()),
            ("REVOCATION_PORT", &list_server.port.to_string()),
        ],
    );
    let envoy = Envoy::start_with(&yaml, "guarded", 1).unwrap();
    let token = |jti: &str| {
        let claims = json!({ "iss": PARTNER, "sub": "alice", "jti": jti, "exp": unix_now() + 600 });
        format!(
            "Bearer {}",
            mint(Signer::Rs256(&keys().rsa), Some("rsa-1"), &claims)
        )
    };
    let (good, revoked) = (token("j-good"), token("j-revoked"));
    let status = |auth: &str| http::get(envoy.port, "/api", &[("authorization", auth)]).status;
    within(Duration::from_secs(10), || {
        status(&good) == 200 && status(&revoked) == 401
    })
    .expect("keys and list were never fetched");

    let faults = [
        Fault::Status500,
        Fault::Garbage,
        Fault::Huge,
        Fault::WrongContentType,
        Fault::Slow(Duration::from_millis(1_500)),
        Fault::ResetMidBody,
        Fault::Down,
    ];
    for fault in &faults {
        let jwks_failed = counter(&envoy, "jwks_fetch_failed");
        let list_failed = counter(&envoy, "revocation.list_fetch_failed");
        jwks_server.set(fault.clone());
        list_server.set(fault.clone());
        within(Duration::from_secs(15), || {
            counter(&envoy, "jwks_fetch_failed") > jwks_failed
                && counter(&envoy, "revocation.list_fetch_failed") > list_failed
        })
        .unwrap_or_else(|| {
            let stats = envoy.admin("/stats?filter=bearer_guard.(jwks|revocation.list)");
            let log = envoy.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!("{fault:?}: no failed fetch was counted ({jwks_failed}, {list_failed} before)\n{stats}\n{tail:#?}")
        });
        // The last good keys and list stay in use.
        assert_eq!(status(&good), 200, "{fault:?}");
        assert_eq!(status(&revoked), 401, "{fault:?}");

        let jwks_ok = counter(&envoy, "jwks_fetch_success");
        let list_ok = counter(&envoy, "revocation.list_fetch_success")
            + counter(&envoy, "revocation.list_not_modified");
        jwks_server.set(Fault::Healthy(jwks.to_string()));
        list_server.set(Fault::Healthy(r#"{"jti": ["j-revoked"]}"#.to_owned()));
        within(Duration::from_secs(15), || {
            counter(&envoy, "jwks_fetch_success") > jwks_ok
                && counter(&envoy, "revocation.list_fetch_success")
                    + counter(&envoy, "revocation.list_not_modified")
                    > list_ok
        })
        .unwrap_or_else(|| panic!("{fault:?}: never recovered"));
    }

    let log = envoy.log();
    for marker in ["panicked at", "Wasm VM failed", "failed: Uncaught"] {
        assert!(!log.contains(marker), "{marker}");
    }
    // Once per episode and VM (Envoy's main-thread VM and the worker both poll), not once per
    // failed fetch; and a line when it works again.
    let episodes = faults.len();
    for (what, failed_counter, recovered) in [
        (
            "JWKS fetch for provider 0",
            "jwks_fetch_failed",
            "JWKS for provider 0 recovered after",
        ),
        (
            "revocation list fetch",
            "revocation.list_fetch_failed",
            "revocation list fetch recovered after",
        ),
    ] {
        let lines = log
            .lines()
            .filter(|l| l.contains(what) && l.contains("logged once"))
            .count();
        let failures = usize::try_from(counter(&envoy, failed_counter)).unwrap();
        assert!(
            (episodes..=2 * episodes).contains(&lines),
            "{what}: {lines} lines for {episodes} episodes ({failures} failures)"
        );
        assert!(
            log.matches(recovered).count() >= episodes,
            "{what}: recoveries not logged"
        );
    }
}
