//! Companion mode in a real Envoy: jwt_authn configured as Istio's RequestAuthentication
//! configures it verifies the token and writes its payload into dynamic metadata; bearer-guard,
//! after it in the chain, judges that payload: revocation, scopes, claim headers.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;
use support::testkit;

use bearer_guard::observe::fingerprint::digest_to_hex;
use bearer_guard::token::id::token_id;
use serde_json::{json, Value};

use support::envoy::{fill_template, Envoy};
use support::http;
use support::upstream::Upstream;
use support::wasm_health::wasm_failures;
use testkit::{keys, mint, unix_now, Signer, ISSUER};

fn token(changes: Value) -> String {
    let now = unix_now();
    let mut claims = json!({
        "iss": ISSUER, "aud": "orders-api", "sub": "alice", "iat": now - 10, "exp": now + 600,
        "jti": "j-ok", "scope": "orders.read",
    });
    if let (Some(c), Some(changes)) = (claims.as_object_mut(), changes.as_object()) {
        c.extend(changes.clone());
    }
    mint(Signer::Rs256(&keys().rsa), Some("rsa-1"), &claims)
}

/// bearer-guard with one companion provider of jwt_authn's `origins-0` (its payload under
/// `payload`, as Istio writes it), revocation by the upstream's response header and by config.
fn plugin_config(revoked_token: &str) -> Value {
    let hash = digest_to_hex(&token_id(revoked_token));
    json!({
        "providers": { "mesh": {
            "issuer": ISSUER,
            "audiences": ["orders-api"],
            "jwt_authn": { "payload_in_metadata": "payload" },
            "claim_to_headers": [{ "claim_name": "sub", "header_name": "x-user" }],
        }},
        "rules": [
            { "match": { "prefix": "/healthz" } },
            { "match": { "prefix": "/orders" }, "requires": { "provider_name": "mesh" },
              "scopes": ["orders.read"] },
        ],
        "revocation": {
            "jti": ["j-revoked"],
            "token_sha256": [hash],
            "response_header": "x-revoke-token",
        },
    })
}

fn start(forward: bool, revoked_token: &str, upstream: &Upstream) -> Envoy {
    let jwks = testkit::jwks().to_string();
    let as_yaml_string = serde_json::to_string(&jwks).unwrap();
    let yaml = fill_template(
        "envoy/companion.yaml.tmpl",
        &plugin_config(revoked_token),
        upstream.port,
        &[
            ("ISSUER", ISSUER),
            ("JWKS_INLINE", &as_yaml_string),
            ("FORWARD", if forward { "true" } else { "false" }),
        ],
    );
    Envoy::start(&yaml).unwrap_or_else(|f| panic!("envoy did not start: {f:?}"))
}

fn get(envoy: &Envoy, path: &str, token: Option<&str>) -> http::Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a), ("x-user", "mallory")])
        .unwrap_or_default();
    http::get(envoy.port, path, &headers)
}

fn challenge(response: &http::Response) -> String {
    response
        .header("www-authenticate")
        .unwrap_or_default()
        .to_owned()
}

/// Istio's `forwardOriginalToken: true`: every revocation applies, hash entries included.
#[test]
fn revocation_beside_jwt_authn_with_the_token_forwarded() {
    let upstream = Upstream::start();
    upstream.add_response_headers("/orders/logout", &[("x-revoke-token", "self")]);
    let by_hash = token(json!({ "jti": "j-hashed" }));
    let envoy = start(true, &by_hash, &upstream);
    let good = token(json!({}));

    let ok = get(&envoy, "/orders/1", Some(&good));
    assert_eq!(ok.status, 200, "{}", envoy.log());
    let seen = upstream.requests().pop().expect("upstream reached");
    assert_eq!(
        seen.header("x-user"),
        Some("alice"),
        "the verified sub, never the client's"
    );
    assert!(
        seen.header("authorization").is_some(),
        "jwt_authn forwards it"
    );

    // Refused by jwt_authn itself (bad signature): bearer-guard never sees it.
    let mut forged = good.clone();
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    assert_eq!(get(&envoy, "/orders/1", Some(&forged)).status, 401);
    // No token: jwt_authn lets it through (Istio's allow_missing); bearer-guard's rule needs one.
    let missing = get(&envoy, "/orders/1", None);
    assert_eq!(missing.status, 401);
    assert!(
        !challenge(&missing).contains("error="),
        "{}",
        challenge(&missing)
    );
    assert_eq!(get(&envoy, "/healthz", None).status, 200);

    for (revoked, why) in [
        (token(json!({ "jti": "j-revoked" })), "by jti"),
        (by_hash, "by token hash (the token is forwarded)"),
    ] {
        let response = get(&envoy, "/orders/1", Some(&revoked));
        assert_eq!(response.status, 401, "{why}");
        assert!(challenge(&response).contains("token revoked"), "{why}");
    }
    let narrow = get(
        &envoy,
        "/orders/1",
        Some(&token(json!({ "scope": "other" }))),
    );
    assert_eq!(narrow.status, 403);
    assert!(challenge(&narrow).contains("insufficient_scope"));

    // The upstream logs the user out: the next request with that token is refused.
    assert_eq!(get(&envoy, "/orders/logout", Some(&good)).status, 200);
    let after = get(&envoy, "/orders/1", Some(&good));
    assert_eq!(after.status, 401);
    assert!(challenge(&after).contains("token revoked"));

    assert_eq!(
        envoy.counter_eventually("wasmcustom.bearer_guard.provider.mesh.allowed", 2),
        2
    );
    assert_eq!(
        envoy.counter_eventually("wasmcustom.bearer_guard.denied.revoked", 3),
        3
    );
    assert!(wasm_failures(&envoy.log()).is_empty(), "{}", envoy.log());
}

/// Istio's default (`forwardOriginalToken: false`): the token is gone from the request; jti,
/// subject and cutoff revocations still apply, hash entries cannot.
#[test]
fn revocation_beside_jwt_authn_without_the_token() {
    let upstream = Upstream::start();
    let by_hash = token(json!({ "jti": "j-hashed" }));
    let envoy = start(false, &by_hash, &upstream);
    let ok = get(&envoy, "/orders/1", Some(&token(json!({}))));
    assert_eq!(ok.status, 200, "{}", envoy.log());
    let seen = upstream.requests().pop().expect("upstream reached");
    assert_eq!(seen.header("authorization"), None, "jwt_authn removed it");
    assert_eq!(seen.header("x-user"), Some("alice"));
    let revoked = get(
        &envoy,
        "/orders/1",
        Some(&token(json!({ "jti": "j-revoked" }))),
    );
    assert_eq!(revoked.status, 401);
    assert!(challenge(&revoked).contains("token revoked"));
    // What the README says: without the token, its hash is not known here.
    assert_eq!(get(&envoy, "/orders/1", Some(&by_hash)).status, 200);
    assert!(wasm_failures(&envoy.log()).is_empty(), "{}", envoy.log());
}

/// Attack: jwt_authn reads `?access_token=` by default and cannot take it out of the URL. A
/// token revoked by its hash, sent there instead of `Authorization`, was judged by the
/// companion as a payload alone (hash revocations skipped) and went upstream in the URL.
#[test]
fn a_token_in_the_query_is_refused_beside_jwt_authn() {
    // (With `forward: false` Envoy 1.40's jwt_authn takes it out of the query: payload only.)
    {
        let forward = true;
        let upstream = Upstream::start();
        let by_hash = token(json!({ "jti": "j-hashed" }));
        let envoy = start(forward, &by_hash, &upstream);
        let response = http::get(
            envoy.port,
            &format!("/orders/1?access_token={by_hash}"),
            &[],
        );
        // `query_token`: 400 invalid_request, as on the verifying path.
        assert_eq!(response.status, 400, "forward {forward}: {}", envoy.log());
        assert!(
            upstream.requests().is_empty(),
            "forward {forward}: the token reached the upstream in the URL"
        );
        assert!(wasm_failures(&envoy.log()).is_empty(), "{}", envoy.log());
    }
}
