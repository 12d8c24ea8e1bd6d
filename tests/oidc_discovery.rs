//! OpenID Connect discovery against a real OpenID provider (oidc-provider, tests/idp): a
//! provider configured only with the IdP's `discovery_uri` accepts its tokens; a provider
//! whose `issuer` is not the document's fetches no keys, and clients see why; the JWKS goes
//! through `jwks_cluster` when one is named.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;
use support::testkit;

use std::time::Duration;

use serde_json::{json, Value};

use support::envoy::{bootstrap, guarded_listener, test_config_with_idp, Envoy};
use support::http;
use support::idp::Idp;
use support::upstream::Upstream;
use testkit::{keys, mint, unix_now, Signer};

const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
const ORDERS: &str = "https%3A%2F%2Forders.example";

/// One provider, `idp`, with this `issuer` and `remote_jwks`, for the IdP's access tokens.
fn config(issuer: &str, remote_jwks: Value) -> Value {
    json!({
        "providers": { "idp": {
            "issuer": issuer,
            "audiences": ["https://orders.example"],
            "remote_jwks": remote_jwks,
            "token_types": ["at+jwt"]
        }}
    })
}

fn discovery(idp: &Idp, jwks_cluster: Option<&str>) -> Value {
    let mut remote = json!({
        "cluster": "idp",
        "discovery_uri": format!("{}{DISCOVERY_PATH}", idp.issuer()),
        "refetch_min_interval_seconds": 0
    });
    if let Some(cluster) = jwks_cluster {
        remote["jwks_cluster"] = json!(cluster);
    }
    remote
}

fn get(envoy: &Envoy, token: &str) -> http::Response {
    http::get(
        envoy.port,
        "/orders",
        &[("authorization", &format!("Bearer {token}"))],
    )
}

/// Envoy's log once it has a line with `text` (or after 10 s, for the assertion's message).
fn log_with(envoy: &Envoy, text: &str) -> String {
    support::within(Duration::from_secs(10), || envoy.log().contains(text));
    envoy.log()
}

#[test]
fn a_provider_with_only_a_discovery_uri_accepts_the_idps_token() {
    let idp = Idp::start();
    let upstream = Upstream::start();
    let config = config(&idp.issuer(), discovery(&idp, None));
    let envoy = Envoy::start(&test_config_with_idp(&config, upstream.port, idp.port))
        .unwrap_or_else(|f| panic!("envoy did not start: {f:?}"));

    let r = get(&envoy, &idp.token(ORDERS));
    assert_eq!(r.status, 200, "{}\n{}", r.body, envoy.log());
    let located = format!("the JWKS is at 127.0.0.1:{}/jwks", idp.port);
    assert!(log_with(&envoy, &located).contains(&located));
    assert!(envoy.counter_at_least("wasmcustom.bearer_guard.jwks_fetch_success", 1) >= 1);
    assert_eq!(
        envoy.counter("wasmcustom.bearer_guard.jwks_discovery_failed"),
        0
    );

    // Every GET through the `idp` cluster is the filter's: a document, then a JWKS.
    assert_eq!(
        envoy.counter_eventually("cluster.idp.upstream_rq_200", 2),
        2
    );

    // Key rotation: the unknown kid's refetch reads the document again, then the new JWKS.
    idp.rotate_key();
    let r = get(&envoy, &idp.token(ORDERS));
    assert_eq!(r.status, 200, "{}\n{}", r.body, envoy.log());
    assert_eq!(
        envoy.counter_eventually("cluster.idp.upstream_rq_200", 4),
        4
    );
}

#[test]
fn a_provider_whose_issuer_is_not_the_documents_never_fetches_keys() {
    let idp = Idp::start();
    let upstream = Upstream::start();
    // A trailing slash: the same IdP to a human eye, another issuer to OpenID Connect §4.3.
    let configured = format!("{}/", idp.issuer());
    let config = config(&configured, discovery(&idp, None));
    // One worker: every request meets the worker whose discovery failed.
    let yaml = test_config_with_idp(&config, upstream.port, idp.port);
    let envoy = Envoy::start_with(&yaml, "guarded", 1)
        .unwrap_or_else(|f| panic!("envoy did not start: {f:?}"));

    let mismatch = format!(
        "JWKS discovery for provider 0 (idp) at 127.0.0.1:{}{DISCOVERY_PATH} failed: issuer \
         mismatch: the discovery document's issuer is \"{}\", the provider's is \"{configured}\"",
        idp.port,
        idp.issuer()
    );
    let log = log_with(&envoy, &mismatch);
    assert!(log.contains(&mismatch), "{log}");

    // The IdP's own token names the IdP's issuer, which no provider here has: 401.
    let token = idp.token(ORDERS);
    let r = get(&envoy, &token);
    assert_eq!(r.status, 401, "{}", r.body);
    let challenge = r.header("www-authenticate").expect("a challenge");
    assert!(
        challenge.starts_with("Bearer realm=\"bearer-guard\", error=\"invalid_token\""),
        "{challenge}"
    );
    assert_eq!(r.json()["error_description"], "issuer not accepted");

    // A token claiming the configured issuer finds no keys: 503 (the keys cannot be had), no
    // challenge (a new token would not help).
    let claims = json!({ "iss": configured, "aud": "https://orders.example",
                         "sub": "mallory", "exp": unix_now() + 600 });
    let claimed = mint(Signer::Rs256(&keys().rsa), Some("any"), &claims);
    let r = get(&envoy, &claimed);
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("5"));
    assert_eq!(r.header("www-authenticate"), None);
    assert_eq!(r.json()["error"], "temporarily_unavailable");

    assert!(envoy.counter_at_least("wasmcustom.bearer_guard.jwks_discovery_failed", 1) >= 1);
    assert!(
        envoy.counter_at_least(
            "wasmcustom.bearer_guard.provider.idp.jwks_discovery_failed",
            1
        ) >= 1
    );
    assert_eq!(
        envoy.counter("wasmcustom.bearer_guard.jwks_fetch_success"),
        0
    );
    let log = envoy.log();
    assert!(!log.contains("JWKS for provider 0 fetched"), "{log}");
    assert!(
        !log.contains(&token) && !log.contains(&claimed),
        "a token was logged"
    );
}

#[test]
fn the_jwks_goes_through_jwks_cluster() {
    let idp = Idp::start();
    let upstream = Upstream::start();
    let start = |jwks_cluster: &str, clusters: &[(&str, u16)]| {
        let config = config(&idp.issuer(), discovery(&idp, Some(jwks_cluster)));
        let listener = guarded_listener("guarded", "bearer_guard", &config);
        Envoy::start(&bootstrap(&[listener], clusters, None))
            .unwrap_or_else(|f| panic!("envoy did not start: {f:?}"))
    };

    // The same IdP behind a second cluster name: the document through `idp`, the JWKS
    // through `idp-keys`.
    let envoy = start(
        "idp-keys",
        &[
            ("upstream", upstream.port),
            ("idp", idp.port),
            ("idp-keys", idp.port),
        ],
    );
    let r = get(&envoy, &idp.token(ORDERS));
    assert_eq!(r.status, 200, "{}\n{}", r.body, envoy.log());
    assert!(envoy.counter_at_least("cluster.idp-keys.upstream_rq_200", 1) >= 1);
    assert!(envoy.counter_at_least("cluster.idp.upstream_rq_200", 1) >= 1);
    drop(envoy);

    // A JWKS cluster that leads elsewhere (the recording upstream): the GET goes there with
    // the document's authority and path, and what it brings is no JWKS.
    let envoy = start(
        "upstream",
        &[("upstream", upstream.port), ("idp", idp.port)],
    );
    let r = get(&envoy, &idp.token(ORDERS));
    assert_eq!(r.status, 503, "{}\n{}", r.body, envoy.log());
    let jwks_get = upstream
        .requests()
        .into_iter()
        .find(|seen| seen.path == "/jwks")
        .unwrap_or_else(|| panic!("no JWKS GET at the upstream\n{}", envoy.log()));
    let authority = format!("127.0.0.1:{}", idp.port);
    assert_eq!(jwks_get.header("host"), Some(authority.as_str()));
    assert!(log_with(&envoy, "not a JWKS").contains("JWKS fetch for provider 0 failed: not a JWKS"));
}
