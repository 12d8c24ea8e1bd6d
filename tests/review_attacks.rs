//! Attacks found in review, each against a real Envoy: a revoked token revived under a
//! signature twin, an RSA signature spelled `s + n`, a logout through one provider of an
//! issuer that another provider of the same issuer ignored, and an upstream revoking users it
//! was never allowed to (or the wrong one, through a comma in a value).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;
use support::testkit;

use serde_json::{json, Value};

use support::envoy::Envoy;
use support::http;
use support::upstream::Upstream;
use testkit::{keys, mint, unix_now, Signer, ISSUER};

const REVOKED: &str = "error_description=\"token revoked\"";

fn claims(sub: &str, jti: Option<&str>) -> Value {
    let now = unix_now();
    let mut claims =
        json!({ "iss": ISSUER, "aud": "orders-api", "sub": sub, "iat": now - 5, "exp": now + 600 });
    if let Some(jti) = jti {
        claims["jti"] = json!(jti);
    }
    claims
}

fn start(config: &Value, upstream: &Upstream) -> Envoy {
    let port = upstream.port.to_string();
    let yaml = support::envoy::fill_template(
        "envoy/test.yaml.tmpl",
        config,
        upstream.port,
        &[("IDP_PORT", &port), ("REVOCATION_PORT", &port)],
    );
    Envoy::start_with(&yaml, "guarded", 2).unwrap()
}

fn with_revocation(revocation: Value) -> Value {
    let mut config = testkit::config_json(json!({}), None);
    config["revocation"] = revocation;
    config
}

fn bearer(envoy: &Envoy, path: &str, token: &str) -> http::Response {
    http::get(
        envoy.port,
        path,
        &[("authorization", &format!("Bearer {token}"))],
    )
}

fn assert_revoked(response: &http::Response) {
    assert_eq!(response.status, 401, "{}", response.body);
    let challenge = response.header("www-authenticate").unwrap_or_default();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(challenge.contains(REVOKED), "{challenge}");
}

/// Every worker answers the same: 20 new connections.
fn everywhere(envoy: &Envoy, path: &str, token: &str) -> Vec<u16> {
    (0..20).map(|_| bearer(envoy, path, token).status).collect()
}

#[test]
fn a_signature_twin_of_a_revoked_token_stays_revoked() {
    let upstream = Upstream::start();
    upstream.add_response_headers("/logout", &[("x-revoke-token", "self")]);
    let envoy = start(&with_revocation(json!({})), &upstream);
    // ES256 without `jti`: `self` revokes it by its identity.
    let token = mint(
        Signer::Es256(&keys().ec),
        Some("ec-1"),
        &claims("alice", None),
    );
    let twin = testkit::es256_twin(&token);
    assert_ne!(token, twin);
    assert_eq!(bearer(&envoy, "/api", &twin).status, 200, "twins verify");
    assert_eq!(bearer(&envoy, "/logout", &token).status, 200);
    for t in [&token, &twin] {
        assert!(everywhere(&envoy, "/api", t).iter().all(|s| *s == 401));
        assert_revoked(&bearer(&envoy, "/api", t));
    }
    // An entry an operator writes with `bearer-guard token-id` (the signing input's SHA-256)
    // revokes the token and every twin; the whole-token hash (older entries) keeps working
    // for the token it was made from.
    let other = mint(
        Signer::Es256(&keys().ec),
        Some("ec-1"),
        &claims("bob", None),
    );
    let (signed, _) = other.rsplit_once('.').unwrap();
    let id: String = <sha2::Sha256 as sha2::Digest>::digest(signed.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    drop(envoy);
    let envoy = start(&with_revocation(json!({ "token_sha256": [id] })), &upstream);
    assert_revoked(&bearer(&envoy, "/api", &other));
    assert_revoked(&bearer(&envoy, "/api", &testkit::es256_twin(&other)));
}

#[test]
fn rsa_signatures_above_the_modulus_and_respelled_signatures_are_refused() {
    let upstream = Upstream::start();
    let envoy = start(&testkit::config_json(json!({}), None), &upstream);
    let public = rsa::RsaPublicKey::from(&keys().rsa);
    let mut tried = 0;
    // `s + n` fits the modulus length for a few percent of signatures only: look for some.
    for i in 0..3000 {
        // PS* verifies in wasm (the host cannot do PSS), RS* in the host.
        let signer = if i % 2 == 0 {
            Signer::Ps256(&keys().rsa)
        } else {
            Signer::Rs256(&keys().rsa)
        };
        let token = mint(
            signer,
            Some("rsa-any"),
            &claims("alice", Some(&i.to_string())),
        );
        let Some(bigger) = testkit::rsa_plus_modulus(&token, &public) else {
            continue;
        };
        tried += 1;
        assert_eq!(bearer(&envoy, "/api", &token).status, 200);
        let refused = bearer(&envoy, "/api", &bigger);
        assert_eq!(refused.status, 401, "{}", refused.body);
        let challenge = refused.header("www-authenticate").unwrap_or_default();
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        if tried >= 4 {
            break;
        }
    }
    assert!(tried >= 2, "only {tried} signatures had room for s + n");
    let token = mint(
        Signer::Es256(&keys().ec),
        Some("ec-1"),
        &claims("alice", None),
    );
    let respelled = testkit::with_noncanonical_signature_encoding(&token).unwrap();
    let seen = upstream.requests().len();
    assert_eq!(bearer(&envoy, "/api", &respelled).status, 401);
    assert_eq!(upstream.requests().len(), seen, "the upstream saw it");
}

/// `web` reads a cookie, `api` the Authorization header; one issuer. A logout on a `web`
/// route ends the token everywhere, `api` routes included.
#[test]
fn a_logout_through_one_provider_revokes_for_every_provider_of_the_issuer() {
    let upstream = Upstream::start();
    upstream.add_response_headers("/web/logout", &[("x-revoke-token", "self")]);
    let config = testkit::same_issuer_config(json!({ "revocation": {} }));
    let envoy = start(&config, &upstream);
    for jti in [Some("s-1"), None] {
        let token = mint(
            Signer::Rs256(&keys().rsa),
            Some("rsa-1"),
            &claims("alice", jti),
        );
        assert_eq!(bearer(&envoy, "/api", &token).status, 200);
        let cookie = format!("session={token}");
        let logout = http::get(envoy.port, "/web/logout", &[("cookie", &cookie)]);
        assert_eq!(logout.status, 200, "{}", logout.body);
        assert_revoked(&bearer(&envoy, "/api", &token));
        assert!(everywhere(&envoy, "/api", &token).iter().all(|s| *s == 401));
        let web = http::get(envoy.port, "/web/home", &[("cookie", &cookie)]);
        assert_eq!(web.status, 401);
    }
}

/// By default an upstream may only end the session it served: `sub=` and `jti=` are refused
/// (logged), and a subject with a comma is revoked only when quoted.
#[test]
fn upstreams_revoke_only_what_the_directive_allow_list_allows() {
    let upstream = Upstream::start();
    upstream.add_response_headers("/evil-sub", &[("x-revoke-token", "sub=alice")]);
    upstream.add_response_headers("/evil-jti", &[("x-revoke-token", "jti=a-1")]);
    let envoy = start(&with_revocation(json!({})), &upstream);
    let alice = mint(
        Signer::Rs256(&keys().rsa),
        Some("rsa-1"),
        &claims("alice", Some("a-1")),
    );
    let mallory = mint(
        Signer::Rs256(&keys().rsa),
        Some("rsa-1"),
        &claims("mallory", Some("m-1")),
    );
    for path in ["/evil-sub", "/evil-jti"] {
        let response = bearer(&envoy, path, &mallory);
        assert_eq!(response.status, 200);
        assert!(response.header("x-revoke-token").is_none());
    }
    assert!(everywhere(&envoy, "/api", &alice).iter().all(|s| *s == 200));
    assert!(everywhere(&envoy, "/api", &mallory)
        .iter()
        .all(|s| *s == 200));
    let log = envoy.log();
    assert!(
        log.contains("`sub` is not in revocation.response_header_directives"),
        "{log}"
    );
    assert!(log.contains("`jti` is not in revocation.response_header_directives"));
    drop(envoy);

    // Allowed: a quoted subject with a comma revokes exactly that subject; unquoted, the
    // value does not parse and nothing is revoked.
    upstream.add_response_headers("/quoted", &[("x-revoke-token", "sub=\"CN=alice,OU=eng\"")]);
    upstream.add_response_headers("/unquoted", &[("x-revoke-token", "sub=CN=bob,OU=eng")]);
    let envoy = start(
        &with_revocation(json!({ "response_header_directives": ["self", "sub"] })),
        &upstream,
    );
    let dn = |sub: &str| {
        mint(
            Signer::Rs256(&keys().rsa),
            Some("rsa-1"),
            &claims(sub, None),
        )
    };
    let (alice_dn, alice_cn, bob_cn) = (dn("CN=alice,OU=eng"), dn("CN=alice"), dn("CN=bob"));
    assert_eq!(bearer(&envoy, "/quoted", &mallory).status, 200);
    assert_eq!(bearer(&envoy, "/unquoted", &mallory).status, 200);
    assert_revoked(&bearer(&envoy, "/api", &alice_dn));
    assert_eq!(bearer(&envoy, "/api", &alice_cn).status, 200);
    assert_eq!(bearer(&envoy, "/api", &bob_cn).status, 200);
    assert_eq!(bearer(&envoy, "/api", &mallory).status, 200);
    let log = envoy.log();
    assert!(log.contains("unknown directive \"OU\""), "{log}");
    assert!(log.contains("value refused as a whole"), "{log}");
}
