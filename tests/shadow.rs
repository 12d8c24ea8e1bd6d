//! Shadow mode in a real Envoy: a shadowed denial reaches the upstream as the client sent it
//! (minus the headers bearer-guard writes) and the client gets the upstream's answer; it is
//! counted under `shadow_denied` (in `/stats` and Prometheus, with the dashboard's labels),
//! logged with `"shadow": true` and marked in the access log; an enforced rule next to it
//! still refuses; and a revocation the upstream announces still applies to later requests.
//! The attacks first: forged claim headers, path tricks toward an enforced route, and a
//! forged token's `self` revocation.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;
use support::testkit;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use support::envoy::{fill_template, Envoy};
use support::http;
use support::upstream::{Upstream, UPSTREAM_BODY};
use support::within;
use testkit::{keys, mint, unix_now, Signer, ISSUER};

const STAT: &str = "wasmcustom.bearer_guard.";

fn token(jti: &str, changes: Value) -> String {
    let now = unix_now();
    let mut claims = json!({
        "iss": ISSUER, "aud": "orders-api", "sub": "alice", "jti": jti,
        "iat": now - 5, "exp": now + 600
    });
    claims
        .as_object_mut()
        .unwrap()
        .extend(changes.as_object().unwrap().clone());
    mint(Signer::Rs256(&keys().rsa), Some("rsa-1"), &claims)
}

fn expired(jti: &str) -> String {
    let now = unix_now();
    token(jti, json!({ "iat": now - 7_200, "exp": now - 3_600 }))
}

/// The test provider writing `x-jwt-sub` and `x-jwt-payload`, the revocation header on, every
/// decision logged and in filter state, `mode` at the top, these rules.
fn config(mode: &str, rules: Value) -> Value {
    let mut config = testkit::config_json(
        json!({
            "claim_to_headers": [{ "claim_name": "sub", "header_name": "x-jwt-sub" }],
            "forward_payload_header": "x-jwt-payload",
        }),
        Some(rules),
    );
    config["mode"] = json!(mode);
    config["revocation"] = json!({});
    config["log"] = json!({ "decisions": "all", "filter_state": true });
    config
}

fn rule(prefix: &str, mode: Option<&str>) -> Value {
    let mut rule =
        json!({ "match": { "prefix": prefix }, "requires": { "provider_name": "corp" } });
    if let Some(mode) = mode {
        rule["mode"] = json!(mode);
    }
    rule
}

fn start(config: &Value, upstream: &Upstream, access_log: &Path) -> Envoy {
    let path = access_log.display().to_string();
    let yaml = fill_template(
        "envoy/test.yaml.tmpl",
        config,
        upstream.port,
        &[("ACCESS_LOG", &path), ("IDP_PORT", "1")],
    );
    Envoy::start(&yaml).unwrap()
}

fn access_log(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "bearer-guard-shadow-{name}-{}.log",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

/// A GET with `token` (if any), a case name for the upstream, and extra headers.
fn get(
    envoy: &Envoy,
    path: &str,
    token: Option<&str>,
    case: &str,
    extra: &[(&str, &str)],
) -> http::Response {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("x-test-case", case)];
    if let Some(b) = &bearer {
        headers.push(("authorization", b.as_str()));
    }
    headers.extend_from_slice(extra);
    http::get(envoy.port, path, &headers)
}

fn assert_counters(envoy: &Envoy, expected: &[(&str, u64)]) {
    for (name, value) in expected {
        let full = format!("{STAT}{name}");
        assert_eq!(envoy.counter_eventually(&full, *value), *value, "{full}");
    }
}

#[test]
fn a_shadowed_config_lets_denials_through_and_still_enforces_its_enforced_rule() {
    let upstream = Upstream::start();
    upstream.add_response_headers("/logout", &[("x-revoke-token", "self")]);
    let rules = json!([rule("/admin", Some("enforce")), rule("/", None)]);
    let log_path = access_log("top");
    let envoy = start(&config("shadow", rules), &upstream, &log_path);
    let bad = expired("j-expired");

    // The attack: forged claim, payload and revocation headers on a shadowed denial.
    let forged = [
        ("x-jwt-sub", "admin"),
        ("x-jwt-payload", "eyJzdWIiOiJhZG1pbiJ9"),
        ("x-revoke-token", "self"),
    ];
    let response = get(&envoy, "/orders", Some(&bad), "expired", &forged);
    assert_eq!(
        (response.status, response.body.as_str()),
        (200, UPSTREAM_BODY)
    );
    let seen = upstream.seen_case("expired");
    assert_eq!(seen.len(), 1, "the upstream saw the request");
    let bearer = format!("Bearer {bad}");
    assert_eq!(
        seen[0].header("authorization"),
        Some(bearer.as_str()),
        "as sent"
    );
    for (name, _) in forged {
        assert_eq!(seen[0].header(name), None, "{name} reached the upstream");
    }
    // No token at all, shadowed too.
    assert_eq!(get(&envoy, "/orders", None, "none", &[]).status, 200);

    // The enforced rule, and paths that try to reach it through the shadowed one (Envoy
    // normalises the path before the filter sees it).
    for (path, case) in [
        ("/admin/users", "admin"),
        ("/orders/../admin/users", "dotdot"),
        ("//admin/users", "slashes"),
        ("/orders/%2e%2e/admin", "encoded"),
    ] {
        let response = get(&envoy, path, Some(&bad), case, &forged);
        assert_eq!(response.status, 401, "{path}");
        assert!(
            upstream.seen_case(case).is_empty(),
            "{path} reached the upstream"
        );
    }

    // A shadow-allowed request is an enforced one: claims set, credential taken out.
    let good = token("j-out", json!({}));
    assert_eq!(
        get(&envoy, "/orders", Some(&good), "good", &forged).status,
        200
    );
    let seen = upstream.seen_case("good");
    assert_eq!(seen[0].header("x-jwt-sub"), Some("alice"));
    assert_eq!(seen[0].header("authorization"), None);

    // The upstream's revocation still applies: logout revokes the token, later requests
    // with it are shadow-denied as revoked (and refused where enforced).
    let logout = get(&envoy, "/logout", Some(&good), "logout", &[]);
    assert_eq!(logout.status, 200);
    assert_eq!(
        logout.header("x-revoke-token"),
        None,
        "not passed to the client"
    );
    let after = within(Duration::from_secs(5), || {
        get(&envoy, "/admin/x", Some(&good), "probe", &[]).status == 401
    });
    assert!(after.is_some(), "the revocation did not apply");
    assert_eq!(
        get(&envoy, "/orders", Some(&good), "revoked", &[]).status,
        200
    );
    assert_eq!(upstream.seen_case("revoked")[0].header("x-jwt-sub"), None);

    // A forged token with the victim's jti at a `self` endpoint revokes nothing.
    let victim = token("j-victim", json!({}));
    let mut forged_token = victim.clone();
    forged_token.replace_range(forged_token.len() - 6.., "AAAAAA");
    assert_eq!(
        get(&envoy, "/logout", Some(&forged_token), "forged", &[]).status,
        200
    );
    assert_eq!(
        get(&envoy, "/admin/x", Some(&victim), "victim", &[]).status,
        200
    );

    assert_counters(
        &envoy,
        &[
            ("shadow_denied.expired", 1),
            ("provider.corp.shadow_denied.expired", 1),
            ("shadow_denied.missing", 1),
            ("shadow_denied.signature", 1),
            ("shadow_denied.revoked", 1),
            ("provider.corp.shadow_denied.revoked", 1),
            ("denied.expired", 4),
            ("denied.revoked", 1),
            ("denied.missing", 0),
            ("revocation.header_revoked", 1),
        ],
    );
    let prometheus = envoy.admin("/stats/prometheus");
    for series in [
        "bearer_guard_shadow_denied{bearer_guard_reason=\"expired\"} 1",
        "bearer_guard_provider_shadow_denied{bearer_guard_provider=\"corp\",bearer_guard_reason=\"revoked\"} 1",
        "bearer_guard_denied{bearer_guard_reason=\"expired\"} 4",
    ] {
        assert!(prometheus.contains(series), "{series} not in /stats/prometheus");
    }
    let mut names = support::dashboard::names();
    names.retain(|name| support::dashboard::is_shadow(name));
    assert!(names.len() >= 2, "{names:?}");
    support::dashboard::assert_exported(&prometheus, &names);

    // The decision log: a shadowed denial is a denial that says so.
    let lines = envoy.decision_lines();
    let line = lines
        .iter()
        .find(|l| l["jti"] == "j-expired" && l["path"] == "/orders")
        .unwrap();
    assert_eq!(
        (
            &line["decision"],
            &line["reason"],
            &line["status"],
            &line["shadow"]
        ),
        (&json!("deny"), &json!("expired"), &json!(401), &json!(true))
    );
    let enforced = lines.iter().find(|l| l["path"] == "/admin/users").unwrap();
    assert_eq!(enforced["shadow"], false);
    let revoked = lines
        .iter()
        .find(|l| l["reason"] == "revoked" && l["shadow"] == true)
        .unwrap();
    assert_eq!(revoked["revoked_by"], "header");
    assert!(!envoy.log().contains(&bad));

    // The access log reads it from filter state.
    let read = || std::fs::read_to_string(&log_path).unwrap_or_default();
    within(Duration::from_secs(10), || read().contains("shadow=true"));
    let access = read();
    assert!(
        access.lines().any(
            |l| l.contains("\"GET /orders\" 200 decision=deny reason=expired")
                && l.ends_with("shadow=true")
        ),
        "{access}"
    );
    let _ = std::fs::remove_file(&log_path);
}

#[test]
fn a_shadowed_rule_next_to_an_enforced_one() {
    let upstream = Upstream::start();
    let rules = json!([rule("/beta", Some("shadow")), rule("/", None)]);
    let log_path = access_log("rule");
    let envoy = start(&config("enforce", rules), &upstream, &log_path);
    let bad = expired("j-1");
    assert_eq!(
        get(&envoy, "/beta/orders", Some(&bad), "beta", &[]).status,
        200
    );
    assert_eq!(upstream.seen_case("beta").len(), 1);
    // Not a way into the enforced routes: the query and the path's normal form decide.
    for (path, case) in [
        ("/orders?next=/beta", "query"),
        ("/beta/../orders", "dotdot"),
        ("/orders", "plain"),
    ] {
        assert_eq!(
            get(&envoy, path, Some(&bad), case, &[]).status,
            401,
            "{path}"
        );
        assert!(upstream.seen_case(case).is_empty(), "{path}");
    }
    assert_counters(
        &envoy,
        &[("shadow_denied.expired", 1), ("denied.expired", 3)],
    );
    let _ = std::fs::remove_file(&log_path);
}
