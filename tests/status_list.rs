//! Token Status List (draft-ietf-oauth-status-list) in a real Envoy: a test issuer serves a
//! signed status list; flipping a token's bit revokes it once the cached list is due again;
//! a 1,000,000-entry list; lists on unmapped authorities are never fetched; an unreachable
//! list becomes stale and the stale policy applies.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;
use support::testkit;

use std::time::{Duration, Instant};

use bearer_guard::idp::status_list::encode_claim;
use serde_json::{json, Value};

use support::envoy::{test_config_with_idp, Envoy};
use support::http;
use support::upstream::Upstream;
use testkit::{keys, mint, mint_with_header, unix_now, Signer, ISSUER};

const URI: &str = "http://status.test/lists/1";
const TTL: u64 = 2;
const MAX_STALE: u64 = 3;

/// The issuer's Status List Token for `statuses` (1 bit per token).
fn list_token(statuses: &[u8]) -> String {
    let now = unix_now();
    mint_with_header(
        Signer::Rs256(&keys().rsa),
        json!({ "kid": "rsa-1", "typ": "statuslist+jwt" }),
        &json!({
            "sub": URI, "iat": now, "exp": now + 3600, "ttl": TTL,
            "status_list": encode_claim(1, statuses).unwrap()
        }),
    )
}

fn token(idx: u64, uri: &str) -> String {
    let claims = json!({
        "iss": ISSUER, "aud": "orders-api", "sub": "alice", "exp": unix_now() + 600,
        "jti": format!("t-{idx}-{uri}"),
        "status": { "status_list": { "idx": idx, "uri": uri } }
    });
    mint(Signer::Rs256(&keys().rsa), Some("rsa-1"), &claims)
}

fn config() -> Value {
    let mut config = testkit::config_json(json!({}), None);
    config["revocation"] = json!({ "status_list": {
        "clusters": { "status.test": "idp" },
        "timeout_ms": 1000,
        "max_stale_seconds": MAX_STALE
    }});
    config
}

fn status(envoy: &Envoy, token: &str) -> http::Response {
    http::get(
        envoy.port,
        "/api",
        &[("authorization", &format!("Bearer {token}"))],
    )
}

#[test]
fn a_flipped_status_bit_revokes_the_token_once_the_list_is_due() {
    let mut statuses = vec![0u8; 1_000_000];
    statuses[999_999] = 1;
    let issuer = Upstream::serving(200, &list_token(&statuses));
    let upstream = Upstream::start();
    let envoy = Envoy::start(&test_config_with_idp(&config(), upstream.port, issuer.port))
        .unwrap_or_else(|f| panic!("envoy did not start: {f:?}"));

    // The first request waits for the list, then is decided with it.
    let valid = token(5, URI);
    let r = status(&envoy, &valid);
    assert_eq!(r.status, 200, "{}\n{}", r.body, envoy.log());
    let fetched = Instant::now();
    let r = status(&envoy, &token(999_999, URI));
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error_description"], "token revoked");
    assert_eq!(
        envoy.counter_eventually("wasmcustom.bearer_guard.revoked_by.status_list", 1),
        1
    );
    assert_eq!(status(&envoy, &token(500_000, URI)).status, 200);
    assert_eq!(
        status(&envoy, &token(1_000_000, URI)).status,
        401,
        "outside the list"
    );
    // On an authority no cluster is mapped for: refused, never fetched.
    let r = status(&envoy, &token(5, "http://elsewhere.test/lists/1"));
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json()["error_description"],
        "token status list not accepted"
    );

    // The issuer flips token 5's bit: refused once the cached list is due again (ttl).
    statuses[5] = 1;
    issuer.set_response(200, &list_token(&statuses));
    let changed = Instant::now();
    let deadline = changed + Duration::from_secs(TTL + 5);
    // Refused on every worker (new connections land on both).
    while (0..10).any(|_| status(&envoy, &valid).status == 200) {
        assert!(
            Instant::now() < deadline,
            "the flipped bit was never enforced"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = fetched.elapsed();
    assert!(
        took >= Duration::from_secs(TTL - 1),
        "refused after {took:?}: the list was not cached for its ttl"
    );
    assert!(
        took <= Duration::from_secs(TTL + 2),
        "refused after {took:?}, long after the list's ttl"
    );
    let r = status(&envoy, &valid);
    assert_eq!(r.json()["error_description"], "token revoked");
    assert!(envoy.counter_at_least("wasmcustom.bearer_guard.status_list.fetch_success", 2) >= 2);

    // The issuer fails: the list serves until max_stale_seconds past due, then 503.
    issuer.set_response(500, "down");
    let other = token(7, URI);
    assert_eq!(status(&envoy, &other).status, 200);
    let down = Instant::now();
    let deadline = down + Duration::from_secs(TTL + MAX_STALE + 5);
    loop {
        let r = status(&envoy, &other);
        if r.status == 503 {
            assert!(r.header("retry-after").is_some());
            break;
        }
        assert_eq!(r.status, 200);
        assert!(Instant::now() < deadline, "a stale list never led to 503");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        down.elapsed() >= Duration::from_secs(MAX_STALE - 1),
        "503 after {:?}, before the list was stale",
        down.elapsed()
    );
}

/// A fresh Envoy with remote keys: the first request waits for the JWKS, then for the status
/// list its token names, then is decided (two waits in a row, not a 503).
#[test]
fn the_first_request_waits_for_the_keys_then_for_the_status_list() {
    let statuses = vec![0u8, 1, 0, 0];
    let issuer = Upstream::serving(200, &list_token(&statuses));
    let jwks = Upstream::serving(200, &testkit::jwks().to_string());
    let upstream = Upstream::start();
    let mut config = config();
    config["providers"]["corp"]["local_jwks"] = Value::Null;
    config["providers"]["corp"]
        .as_object_mut()
        .unwrap()
        .remove("local_jwks");
    config["providers"]["corp"]["remote_jwks"] = json!({
        "cluster": "revocations", "uri": "http://jwks.test/jwks.json", "timeout_ms": 1000
    });
    let yaml = support::envoy::fill_template(
        "envoy/test.yaml.tmpl",
        &config,
        upstream.port,
        &[
            ("IDP_PORT", &issuer.port.to_string()),
            ("REVOCATION_PORT", &jwks.port.to_string()),
        ],
    );
    let envoy = Envoy::start(&yaml).unwrap_or_else(|f| panic!("envoy did not start: {f:?}"));
    let r = status(&envoy, &token(0, URI));
    assert_eq!(r.status, 200, "{}\n{}", r.body, envoy.log());
    let r = status(&envoy, &token(1, URI));
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error_description"], "token revoked");
}
