//! Keys fetched from an identity provider through an Envoy cluster: fetched once per Envoy
//! process and shared with every worker, a rotation picked up by one rate-limited refetch,
//! a failed first fetch answered with 503 (the token may be fine), a removed key refused.

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
use serde_json::{json, Value};

use support::envoy::{test_config_with_idp, Envoy};
use support::http;
use support::upstream::Upstream;
use testkit::{keys, mint, public_jwk, unix_now, Signer, ISSUER};

fn config(refetch_min_interval_seconds: u64) -> Value {
    json!({
        "providers": { "corp": {
            "issuer": ISSUER,
            "remote_jwks": {
                "cluster": "idp",
                "uri": "http://idp.example.com/.well-known/jwks.json",
                "timeout_ms": 1000,
                "refetch_min_interval_seconds": refetch_min_interval_seconds
            }
        }}
    })
}

fn jwks(key: &jwt_compact::alg::RsaPrivateKey, kid: &str) -> String {
    json!({ "keys": [public_jwk(JsonWebKey::from(key), kid, None)] }).to_string()
}

fn token(key: &jwt_compact::alg::RsaPrivateKey, kid: &str) -> String {
    let claims = json!({ "iss": ISSUER, "sub": "alice", "exp": unix_now() + 600 });
    mint(Signer::Rs256(key), Some(kid), &claims)
}

fn get(envoy: &Envoy, token: &str) -> http::Response {
    http::get(
        envoy.port,
        "/api",
        &[("authorization", &format!("Bearer {token}"))],
    )
}

#[test]
fn keys_are_fetched_once_and_a_rotation_is_picked_up() {
    let k = keys();
    let idp = Upstream::serving(200, &jwks(&k.rsa, "key-1"));
    let upstream = Upstream::start();
    let envoy = Envoy::start(&test_config_with_idp(&config(2), upstream.port, idp.port))
        .unwrap_or_else(|f| panic!("envoy did not start: {f:?}"));

    for _ in 0..6 {
        let r = get(&envoy, &token(&k.rsa, "key-1"));
        assert_eq!(r.status, 200, "{}\n{}", r.body, envoy.log());
    }
    // One fetch for the whole process: the other worker took the keys from shared data.
    assert_eq!(idp.requests().len(), 1, "JWKS fetches");
    assert_eq!(idp.requests()[0].path, "/.well-known/jwks.json");
    assert!(envoy.counter_at_least("wasmcustom.bearer_guard.jwks_fetch_success", 1) >= 1);

    // The IdP rotates to a new key; past the refetch interval, its first token triggers one
    // refetch while the request waits, and is accepted.
    std::thread::sleep(Duration::from_millis(2500));
    idp.set_response(200, &jwks(&k.rsa_other, "key-2"));
    let r = get(&envoy, &token(&k.rsa_other, "key-2"));
    assert_eq!(r.status, 200, "{}\n{}", r.body, envoy.log());
    assert_eq!(idp.requests().len(), 2);

    // Right after, an unknown kid is refused without another fetch (rate limit)...
    let r = get(&envoy, &token(&k.rsa, "key-9"));
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error_description"], "signing key not found");
    // ...and the key the IdP removed no longer works, on any worker (each adopts the shared
    // JWKS on its next tick, every 250 ms).
    std::thread::sleep(Duration::from_millis(600));
    for _ in 0..4 {
        assert_eq!(get(&envoy, &token(&k.rsa, "key-1")).status, 401);
    }
    assert_eq!(idp.requests().len(), 2);
}

#[test]
fn a_failed_first_fetch_is_a_503_until_the_idp_answers() {
    let k = keys();
    let idp = Upstream::serving(500, "down for maintenance");
    let upstream = Upstream::start();
    // One worker: every request meets the worker whose fetch failed.
    let yaml = test_config_with_idp(&config(2), upstream.port, idp.port);
    let envoy = Envoy::start_with(&yaml, "guarded", 1)
        .unwrap_or_else(|f| panic!("envoy did not start: {f:?}"));
    let r = get(&envoy, &token(&k.rsa, "key-1"));
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("5"));
    assert!(envoy.counter_at_least("wasmcustom.bearer_guard.jwks_fetch_failed", 1) >= 1);
    assert!(envoy
        .log()
        .contains("JWKS fetch for provider 0 failed: HTTP status 500"));
    // Until the retry (5 s after the failure), requests are answered at once, not held until
    // their deadline.
    let asked = std::time::Instant::now();
    let r = get(&envoy, &token(&k.rsa, "key-1"));
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "held for {:?} while the fetch waits for its retry",
        asked.elapsed()
    );

    // The IdP recovers; within the retry interval the keys arrive and tokens pass.
    idp.set_response(200, &jwks(&k.rsa, "key-1"));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = get(&envoy, &token(&k.rsa, "key-1"));
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(std::time::Instant::now() < deadline, "keys never arrived");
        std::thread::sleep(Duration::from_millis(500));
    }
}
