//! Differential test: the same tokens against bearer-guard and Envoy's native jwt_authn,
//! configured alike (same JWKS, issuer, audience, 60 s skew, expiration required) in one
//! Envoy. Both must allow and deny the same tokens, except the documented, intentional
//! differences listed in `INTENTIONAL`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;
use support::testkit;

use serde_json::{json, Value};

use support::envoy::{fill_template, Envoy};
use support::http;
use support::upstream::Upstream;
use testkit::{keys, mint, mint_with_header, Signer, ISSUER};

const AUDIENCE: &str = "orders-api";
const SKEW: i64 = 60;

/// Tokens bearer-guard refuses on purpose while jwt_authn accepts them (docs/migrating-from-jwt-authn.md: "Migrating
/// from jwt_authn").
const INTENTIONAL: [&str; 3] = ["iat-in-future", "typ-secevent", "id-token-nonce"];

#[test]
fn bearer_guard_and_jwt_authn_agree() {
    let k = keys();
    let mut jwks = testkit::jwks_all_algorithms();
    // jwt_authn wants `alg` on an oct key.
    for key in jwks["keys"].as_array_mut().unwrap() {
        if key["kty"] == "oct" {
            key["alg"] = json!("HS256");
        }
    }
    let plugin = json!({
        "providers": { "corp": {
            "issuer": ISSUER, "audiences": [AUDIENCE], "local_jwks": jwks,
            "clock_skew_seconds": SKEW,
            "algorithms": ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                           "ES256", "ES384", "ES512", "EdDSA", "HS256"]
        }}
    });
    let jwks_yaml = serde_json::to_string(&jwks.to_string()).unwrap();
    let upstream = Upstream::start();
    let config = fill_template(
        "envoy/differential.yaml.tmpl",
        &plugin,
        upstream.port,
        &[
            ("ISSUER", ISSUER),
            ("AUDIENCE", AUDIENCE),
            ("JWKS", &jwks_yaml),
        ],
    );
    let envoy = Envoy::start(&config).unwrap_or_else(|f| panic!("envoy did not start: {f:?}"));
    let native = envoy.listener_port("native").unwrap();

    let now = testkit::unix_now();
    let claims = |changes: Value| {
        let mut c = json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now - 10, "exp": now + 600 });
        for (key, value) in changes.as_object().unwrap() {
            if value.is_null() {
                c.as_object_mut().unwrap().remove(key);
            } else {
                c[key] = value.clone();
            }
        }
        c
    };
    let other_rsa = &k.rsa_other;
    let other_ec = p256::ecdsa::SigningKey::random(&mut rsa::rand_core::OsRng);
    let other_ed = jwt_compact::alg::Ed25519::generate(&mut rsa::rand_core::OsRng);
    // (algorithm, signer with the right key, signer with a wrong key, kid)
    type Make<'a> = Box<dyn Fn(bool, &Value) -> String + 'a>;
    let algorithms: Vec<(&str, Make<'_>)> = vec![
        (
            "rs256",
            Box::new(|ok, c| {
                mint(
                    Signer::Rs256(if ok { &k.rsa } else { other_rsa }),
                    Some("rsa-1"),
                    c,
                )
            }),
        ),
        (
            "rs384",
            Box::new(|ok, c| {
                mint(
                    Signer::Rs384(if ok { &k.rsa } else { other_rsa }),
                    Some("rsa-any"),
                    c,
                )
            }),
        ),
        (
            "rs512",
            Box::new(|ok, c| {
                mint(
                    Signer::Rs512(if ok { &k.rsa } else { other_rsa }),
                    Some("rsa-any"),
                    c,
                )
            }),
        ),
        (
            "ps256",
            Box::new(|ok, c| {
                mint(
                    Signer::Ps256(if ok { &k.rsa } else { other_rsa }),
                    Some("rsa-any"),
                    c,
                )
            }),
        ),
        (
            "ps384",
            Box::new(|ok, c| {
                mint(
                    Signer::Ps384(if ok { &k.rsa } else { other_rsa }),
                    Some("rsa-any"),
                    c,
                )
            }),
        ),
        (
            "ps512",
            Box::new(|ok, c| {
                mint(
                    Signer::Ps512(if ok { &k.rsa } else { other_rsa }),
                    Some("rsa-any"),
                    c,
                )
            }),
        ),
        (
            "es256",
            Box::new(|ok, c| {
                mint(
                    Signer::Es256(if ok { &k.ec } else { &other_ec }),
                    Some("ec-1"),
                    c,
                )
            }),
        ),
        (
            "es384",
            Box::new(|ok, c| {
                let other = p384::ecdsa::SigningKey::random(&mut rsa::rand_core::OsRng);
                mint(
                    Signer::Es384(if ok { &k.ec384 } else { &other }),
                    Some("ec-384"),
                    c,
                )
            }),
        ),
        (
            "es512",
            Box::new(|ok, c| {
                let other = p521::ecdsa::SigningKey::random(&mut rsa::rand_core::OsRng);
                mint(
                    Signer::Es512(if ok { &k.ec521 } else { &other }),
                    Some("ec-521"),
                    c,
                )
            }),
        ),
        (
            "eddsa",
            Box::new(|ok, c| {
                mint(
                    Signer::EdDsa(if ok { &k.ed25519.0 } else { &other_ed.0 }),
                    Some("ed-1"),
                    c,
                )
            }),
        ),
        (
            "hs256",
            Box::new(|ok, c| {
                let wrong = [7u8; 64];
                mint(
                    Signer::Hs256(if ok { &k.hmac_secret } else { &wrong }),
                    Some("hmac-1"),
                    c,
                )
            }),
        ),
    ];
    let mut corpus: Vec<(String, String)> = Vec::new();
    for (alg, make) in &algorithms {
        let mut add = |case: &str, token: String| corpus.push((format!("{alg}-{case}"), token));
        add("valid", make(true, &claims(json!({}))));
        add("bad-signature", make(false, &claims(json!({}))));
        add(
            "wrong-aud",
            make(true, &claims(json!({ "aud": "billing-api" }))),
        );
        add(
            "wrong-iss",
            make(true, &claims(json!({ "iss": "https://evil.example" }))),
        );
        // 20 s from the skew edge either way: the test's own run time cannot carry a token
        // across the edge (where the two differ by design: `>=` here, `>` in jwt_authn).
        add(
            "expired-within-skew",
            make(true, &claims(json!({ "exp": now - (SKEW - 20) }))),
        );
        add(
            "expired-beyond-skew",
            make(true, &claims(json!({ "exp": now - (SKEW + 20) }))),
        );
        add(
            "nbf-future",
            make(true, &claims(json!({ "nbf": now + SKEW + 100 }))),
        );
        add("no-exp", make(true, &claims(json!({ "exp": null }))));
    }
    let rsa_pem = testkit::rsa_public_pem();
    let unsigned = testkit::unsigned_with_header(
        &json!({ "alg": "none", "kid": "rsa-1" }),
        &claims(json!({})),
    );
    corpus.extend([
        (
            "alg-none".into(),
            format!("{}.", unsigned.rsplit_once('.').unwrap().0),
        ),
        (
            "hs256-with-rsa-public-key".into(),
            mint(
                Signer::Hs256(rsa_pem.as_bytes()),
                Some("rsa-1"),
                &claims(json!({})),
            ),
        ),
        (
            "unknown-kid".into(),
            mint(Signer::Rs256(&k.rsa), Some("gone"), &claims(json!({}))),
        ),
        (
            "ps256-on-rs256-pinned-key".into(),
            mint(Signer::Ps256(&k.rsa), Some("rsa-1"), &claims(json!({}))),
        ),
        ("garbage".into(), "not.a.token".into()),
        ("two-segments".into(), "eyJhbGciOiJSUzI1NiJ9.e30".into()),
        (
            "iat-in-future".into(),
            mint(
                Signer::Rs256(&k.rsa),
                Some("rsa-1"),
                &claims(json!({ "iat": now + 3600 })),
            ),
        ),
        (
            "typ-secevent".into(),
            mint_with_header(
                Signer::Rs256(&k.rsa),
                json!({ "kid": "rsa-1", "typ": "secevent+jwt" }),
                &claims(json!({})),
            ),
        ),
        (
            "id-token-nonce".into(),
            mint(
                Signer::Rs256(&k.rsa),
                Some("rsa-1"),
                &claims(json!({ "nonce": "n-0S6" })),
            ),
        ),
    ]);
    assert!(corpus.len() >= 60, "corpus has {} tokens", corpus.len());

    let mut disagreements = Vec::new();
    let mut allowed = 0;
    for (name, token) in &corpus {
        let auth = format!("Bearer {token}");
        let ours = http::get(envoy.port, "/diff", &[("authorization", &auth)]).status == 200;
        let theirs = http::get(native, "/diff", &[("authorization", &auth)]).status == 200;
        allowed += usize::from(ours);
        let intentional = INTENTIONAL.contains(&name.as_str());
        match (ours == theirs, intentional) {
            (true, false) => {}
            (false, true) => assert!(!ours && theirs, "{name}: only ever stricter than jwt_authn"),
            (true, true) => disagreements.push(format!(
                "{name}: listed as intentional but both {}",
                if ours { "allow" } else { "deny" }
            )),
            (false, false) => disagreements.push(format!(
                "{name}: bearer-guard {} / jwt_authn {}",
                allow(ours),
                allow(theirs)
            )),
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {} tokens:\n{}",
        disagreements.len(),
        corpus.len(),
        disagreements.join("\n")
    );
    // Each algorithm's valid and within-skew tokens pass: the agreement is not all-deny.
    assert_eq!(allowed, 2 * algorithms.len());
}

fn allow(allowed: bool) -> &'static str {
    if allowed {
        "allows"
    } else {
        "denies"
    }
}
