//! Opaque tokens of a real identity provider (oidc-provider) decided by RFC 7662
//! introspection through Envoy: accepted while active, refused within `cache_seconds` of a
//! revocation at the IdP (and not before the cached answer expires), a logout revokes the
//! token at the IdP too (RFC 7009), and an IdP outage is served from the cache until its TTL,
//! then answered with 503.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::{Duration, Instant};

use serde_json::json;

use support::envoy::{test_config_with_idp, Envoy};
use support::http;
use support::idp::Idp;
use support::upstream::Upstream;
use support::within;

const OPAQUE: &str = "https%3A%2F%2Fopaque.example";
const CACHE_SECONDS: u64 = 3;

fn get(envoy: &Envoy, token: &str, case: &str) -> http::Response {
    http::get(
        envoy.port,
        "/orders",
        &[
            ("authorization", &format!("Bearer {token}")),
            ("x-test-case", case),
        ],
    )
}

#[test]
fn opaque_tokens_through_introspection_and_revocation_at_the_idp() {
    let mut idp = Idp::start();
    let client = |path: &str| {
        json!({
            "cluster": "idp",
            "uri": format!("{}{path}", idp.issuer()),
            "client_id": "proxy",
            "client_secret": "proxy-secret",
            "timeout_ms": 1000
        })
    };
    let mut introspection = client("/token/introspection");
    introspection["cache_seconds"] = json!(CACHE_SECONDS);
    introspection["negative_cache_seconds"] = json!(1);
    let config = json!({
        "providers": { "idp": {
            "issuer": idp.issuer(),
            "audiences": ["https://opaque.example"],
            "introspection": introspection,
            "claim_to_headers": [{ "claim_name": "client_id", "header_name": "x-client-id" }]
        }},
        "rules": [{ "match": { "prefix": "/" }, "requires": { "provider_name": "idp" },
                    "scopes": ["orders:read"] }],
        "revocation": { "idp": client("/token/revocation") }
    });
    let upstream = Upstream::start();
    upstream.add_response_headers("/orders/logout", &[("x-revoke-token", "self")]);
    let envoy = Envoy::start(&test_config_with_idp(&config, upstream.port, idp.port))
        .unwrap_or_else(|f| panic!("envoy did not start: {f:?}"));

    // Accepted through introspection; the answer's claims reach the upstream.
    let token = idp.token(OPAQUE);
    assert!(!token.contains('.'), "an opaque token: {token}");
    let r = get(&envoy, &token, "opaque");
    assert_eq!(r.status, 200, "{}\n{}", r.body, envoy.log());
    let cached_at = Instant::now();
    assert_eq!(
        upstream.seen_case("opaque")[0].header("x-client-id"),
        Some("orders-client")
    );
    // Many requests, one introspection call: the answer is cached for the process.
    for _ in 0..10 {
        assert_eq!(get(&envoy, &token, "again").status, 200);
    }
    assert_eq!(
        envoy.counter_eventually("wasmcustom.bearer_guard.introspection.success", 1),
        1
    );

    // Revoked at the IdP: the cached answer serves until it expires, never beyond
    // cache_seconds (both sides of that bound).
    idp.revoke(&token);
    assert!(!idp.introspect(&token));
    let still = get(&envoy, &token, "cached");
    assert_eq!(still.status, 200, "the cached answer should still serve");
    within(Duration::from_secs(CACHE_SECONDS + 5), || {
        get(&envoy, &token, "poll").status == 401
    })
    .expect("a token revoked at the IdP was never refused");
    let refused_after = cached_at.elapsed();
    assert!(
        refused_after >= Duration::from_secs(CACHE_SECONDS - 1),
        "refused after {refused_after:?}: the cached answer did not serve"
    );
    assert!(
        refused_after <= Duration::from_secs(CACHE_SECONDS + 1),
        "refused only after {refused_after:?}, more than cache_seconds"
    );
    let r = get(&envoy, &token, "inactive");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error_description"], "token is not active");
    // The poll's first refusal and this one: counted as revocations by the IdP.
    for name in ["denied.inactive", "revoked_by.introspection"] {
        let full = format!("wasmcustom.bearer_guard.{name}");
        assert_eq!(envoy.counter_eventually(&full, 2), 2, "{full}");
    }

    // A logout on the proxy revokes the token at the proxy at once and at the IdP (RFC 7009).
    let session = idp.token(OPAQUE);
    assert_eq!(get(&envoy, &session, "session").status, 200);
    let logout = http::get(
        envoy.port,
        "/orders/logout",
        &[("authorization", &format!("Bearer {session}"))],
    );
    assert_eq!(logout.status, 200);
    assert!(logout.header("x-revoke-token").is_none());
    assert_eq!(get(&envoy, &session, "after-logout").status, 401);
    within(Duration::from_secs(5), || !idp.introspect(&session))
        .expect("the IdP still reports the logged-out token active");
    assert!(envoy.counter_at_least("wasmcustom.bearer_guard.revocation.idp_success", 1) >= 1);

    // The IdP goes down: a cached answer keeps serving until its TTL; an unknown token gets 503.
    let cached = idp.token(OPAQUE);
    let fresh = idp.token(OPAQUE);
    assert_eq!(get(&envoy, &cached, "cached-before-outage").status, 200);
    let cached_at = Instant::now();
    idp.stop();
    assert_eq!(get(&envoy, &cached, "outage-cached").status, 200);
    let r = get(&envoy, &fresh, "outage-fresh");
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    within(Duration::from_secs(CACHE_SECONDS + 5), || {
        get(&envoy, &cached, "outage-poll").status == 503
    })
    .expect("a cached answer outlived its TTL during the outage");
    assert!(cached_at.elapsed() <= Duration::from_secs(CACHE_SECONDS + 1));
}

/// Two listeners, each with its own filter config and its own IdP, in one VM (`vm_id`): an
/// answer one IdP gave must never decide a request on the other listener. Both providers
/// name the same issuer (two clusters of one IdP, or an IdP whose answers carry no `iss`), so
/// only the cache key can tell the answers apart.
#[test]
fn an_answer_cached_for_one_listener_never_decides_on_another() {
    let exp = support::testkit::unix_now() + 600;
    let active = json!({ "active": true, "exp": exp, "aud": "orders-api", "scope": "orders:read" });
    let idp_1 = Upstream::serving(200, &active.to_string());
    let idp_2 = Upstream::serving(200, r#"{"active":false}"#);
    let config = |cluster: &str| {
        json!({
            "providers": { "idp": {
                "issuer": "https://idp.example",
                "audiences": ["orders-api"],
                "introspection": {
                    "cluster": cluster, "uri": "https://idp.example/introspect",
                    "client_id": "proxy", "client_secret": "proxy-secret", "cache_seconds": 60
                }
            }},
            "rules": [{ "match": { "prefix": "/" }, "requires": { "provider_name": "idp" } }]
        })
    };
    let upstream = Upstream::start();
    let listeners = [
        support::envoy::guarded_listener("guarded", "bearer_guard", &config("idp1")),
        support::envoy::guarded_listener("guarded_2", "bearer_guard", &config("idp2")),
    ];
    let clusters = [
        ("upstream", upstream.port),
        ("idp1", idp_1.port),
        ("idp2", idp_2.port),
    ];
    let yaml = support::envoy::bootstrap(&listeners, &clusters, None);
    let envoy = Envoy::start(&yaml).unwrap_or_else(|f| panic!("envoy did not start: {f:?}"));
    let port_2 = within(Duration::from_secs(10), || {
        envoy.listener_port("guarded_2").is_some()
    })
    .and_then(|_| envoy.listener_port("guarded_2"))
    .expect("the second listener never came up");

    let token = "opaque-token-known-to-idp-1-only";
    let on = |port: u16| {
        http::get(
            port,
            "/orders",
            &[("authorization", &format!("Bearer {token}"))],
        )
    };
    let first = on(envoy.port);
    assert_eq!(first.status, 200, "IdP 1 says active: {}", first.body);
    assert_eq!(idp_1.requests().len(), 1);
    let second = on(port_2);
    assert_eq!(
        second.status, 401,
        "listener 2 was answered from listener 1's cached answer: {}",
        second.body
    );
    assert!(
        second
            .header("www-authenticate")
            .is_some_and(|h| h.contains("not active")),
        "{:?}",
        second.headers
    );
    assert_eq!(idp_2.requests().len(), 1, "listener 2 asked its own IdP");
    // And listener 1 is still answered from its own IdP's (cached) answer.
    assert_eq!(on(envoy.port).status, 200);
    assert_eq!(idp_1.requests().len(), 1, "served from listener 1's cache");
}
