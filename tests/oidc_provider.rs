//! Against a real OpenID provider (oidc-provider, OpenID certified): its RFC 9068 `at+jwt`
//! access tokens are accepted with keys Envoy fetches from its JWKS endpoint; a tampered one,
//! an expired one and one for another resource are refused; after the IdP rotates its key,
//! new tokens are accepted (one refetch) and tokens of the removed key are refused.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;

use serde_json::json;

use support::envoy::{test_config_with_idp, Envoy};
use support::http;
use support::idp::Idp;
use support::upstream::Upstream;

#[test]
fn tokens_of_a_real_openid_provider() {
    let idp = Idp::start();
    let config = json!({
        "providers": { "idp": {
            "issuer": idp.issuer(),
            "audiences": ["https://orders.example"],
            "remote_jwks": {
                "cluster": "idp",
                "uri": format!("{}/jwks", idp.issuer()),
                "refetch_min_interval_seconds": 0
            },
            "token_types": ["at+jwt"],
            "require_token_type": true,
            "clock_skew_seconds": 0,
            "claim_to_headers": [{ "claim_name": "client_id", "header_name": "x-client-id" }]
        }},
        "rules": [{ "match": { "prefix": "/" }, "requires": { "provider_name": "idp" },
                    "scopes": ["orders:read"] }]
    });
    let upstream = Upstream::start();
    let envoy = Envoy::start(&test_config_with_idp(&config, upstream.port, idp.port))
        .unwrap_or_else(|f| panic!("envoy did not start: {f:?}"));
    let get = |token: &str, case: &str| {
        let auth = format!("Bearer {token}");
        http::get(
            envoy.port,
            "/orders",
            &[("authorization", &auth), ("x-test-case", case)],
        )
    };

    let token = idp.token("https%3A%2F%2Forders.example");
    let r = get(&token, "idp-token");
    assert_eq!(r.status, 200, "{}\n{}", r.body, envoy.log());
    assert_eq!(
        upstream.seen_case("idp-token")[0].header("x-client-id"),
        Some("orders-client")
    );

    // Tampered: the payload's scope widened, the signature kept.
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, parts[1])
            .unwrap(),
    )
    .unwrap();
    claims["scope"] = json!("orders:read orders:admin");
    let forged_payload = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        claims.to_string(),
    );
    let tampered = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    let r = get(&tampered, "tampered");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json()["error_description"],
        "signature verification failed"
    );

    // For another resource: its audience is not ours.
    let r = get(
        &idp.token("https%3A%2F%2Fbilling.example"),
        "other-resource",
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error_description"], "audience not accepted");

    // Expired: a 1-second token, no clock skew.
    let short = idp.token("https%3A%2F%2Fshort.example");
    std::thread::sleep(Duration::from_millis(2100));
    // (Its audience is short.example, but expiry is checked, and reported, first.)
    let r = get(&short, "expired");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error_description"], "token expired");

    // Key rotation at the IdP: the next token has a new kid; one refetch picks it up.
    idp.rotate_key();
    let rotated = idp.token("https%3A%2F%2Forders.example");
    let r = get(&rotated, "after-rotation");
    assert_eq!(r.status, 200, "{}\n{}", r.body, envoy.log());
    std::thread::sleep(Duration::from_millis(600));
    for _ in 0..4 {
        let r = get(&token, "removed-key");
        assert_eq!(r.status, 401);
        assert_eq!(r.json()["error_description"], "signing key not found");
    }
}
