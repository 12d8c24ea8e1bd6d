//! Shadow mode through the fake host: a shadowed denial continues the request (now, or after
//! a wait), is counted and logged as shadowed, and goes upstream with the client's credential
//! and without any header bearer-guard writes; the upstream's revocation header still applies.

use proxy_wasm::types::{Action, LogLevel};
use serde_json::{json, Value};

use super::tests::{header, remote_config, respond_with_revocation, Vm};
use crate::testkit::{self, good_claims, rs256, NOW};

fn config(mode: &str) -> Value {
    testkit::writing_config(mode)
}

/// Asserts the counters (`bearer_guard.` + name) after a tick flushed them; `None`: not defined.
fn assert_counters(vm: &mut Vm, expected: &[(&str, Option<i64>)]) {
    vm.tick();
    for (name, value) in expected {
        let full = format!("bearer_guard.{name}");
        assert_eq!(vm.host.metric(&full), *value, "{full}");
    }
}

/// The upstream request `context` carries `token` exactly as the client sent it.
fn assert_credential_kept(vm: &Vm, context: u32, token: &str) {
    let bearer = format!("Bearer {token}");
    let upstream = vm.host.request_headers(context);
    assert_eq!(header(&upstream, "authorization"), Some(bearer.as_str()));
}

fn expired() -> String {
    let mut claims = good_claims();
    claims["exp"] = json!(NOW - 3600);
    rs256(&claims)
}

/// A GET with `token` and every header bearer-guard writes, forged by the client.
fn forged(vm: &mut Vm, context: u32, token: &str) -> Action {
    let authorization = format!("Bearer {token}");
    vm.send(
        context,
        &[
            (":method", "GET"),
            (":path", "/orders"),
            (":authority", "orders.example"),
            ("authorization", &authorization),
            ("x-user", "admin"),
            ("x-payload", "eyJzdWIiOiJhZG1pbiJ9"),
            ("x-revoke-token", "jti=victim"),
        ],
    )
}

#[test]
fn a_shadowed_denial_continues_with_the_credential_and_without_forged_headers() {
    let mut vm = Vm::new(&config("shadow"));
    let token = expired();
    assert_eq!(forged(&mut vm, 2, &token), Action::Continue);
    assert_eq!(vm.host.local_response(2), None, "not answered");
    let upstream = vm.host.request_headers(2);
    assert_credential_kept(&vm, 2, &token);
    for written in ["x-user", "x-payload", "x-revoke-token"] {
        assert_eq!(
            header(&upstream, written),
            None,
            "{written} reached the upstream"
        );
    }
    // Enforced denials' counters (and the alerts on them) do not move.
    let counters = [
        ("shadow_denied.expired", Some(1)),
        ("provider.corp.shadow_denied.expired", Some(1)),
        ("denied.expired", Some(0)),
        ("provider.corp.denied.expired", Some(0)),
        ("allowed", Some(0)),
    ];
    assert_counters(&mut vm, &counters);
    let lines = vm.host.logged("\"shadow\":true");
    assert_eq!(lines.len(), 1, "{:?}", vm.host.logs(LogLevel::Info));
    let line: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(line["decision"], "deny");
    assert_eq!(line["reason"], "expired");
    assert_eq!(line["status"], 401);
    assert_eq!(line["sub"], "alice");
    assert!(!vm
        .host
        .logs(LogLevel::Info)
        .iter()
        .any(|l| l.contains(&token)));
}

#[test]
fn a_shadow_allowed_request_goes_upstream_as_in_enforce() {
    let token = rs256(&good_claims());
    let upstream = |mode: &str| {
        let mut vm = Vm::new(&config(mode));
        assert_eq!(forged(&mut vm, 2, &token), Action::Continue);
        vm.tick();
        assert_eq!(vm.host.metric("bearer_guard.allowed"), Some(1));
        let mut headers = vm.host.request_headers(2);
        headers.sort();
        headers
    };
    let shadowed = upstream("shadow");
    assert_eq!(shadowed, upstream("enforce"));
    assert_eq!(
        header(&shadowed, "x-user"),
        Some("alice"),
        "the token's, not the forged"
    );
    assert_eq!(
        header(&shadowed, "authorization"),
        None,
        "taken out as in enforce"
    );
    assert_eq!(header(&shadowed, "x-revoke-token"), None);
}

#[test]
fn an_enforce_config_defines_no_shadow_counters() {
    let mut vm = Vm::new(&config("enforce"));
    assert_eq!(vm.request(2, "/orders", &expired()), Action::Pause);
    assert_eq!(vm.host.local_response(2).map(|r| r.status), Some(401));
    let counters = [("denied.expired", Some(1)), ("shadow_denied.expired", None)];
    assert_counters(&mut vm, &counters);
    assert!(vm.host.logged("\"shadow\":false").len() == 1);
}

#[test]
fn a_rule_in_shadow_next_to_an_enforced_rule() {
    let mut config = config("enforce");
    config["rules"] = json!([
        { "match": { "prefix": "/beta" }, "requires": { "provider_name": "corp" }, "mode": "shadow" },
        { "match": { "prefix": "/" }, "requires": { "provider_name": "corp" } },
    ]);
    let mut vm = Vm::new(&config);
    assert_eq!(vm.request(2, "/beta/orders", &expired()), Action::Continue);
    assert_eq!(vm.request(3, "/orders", &expired()), Action::Pause);
    assert_eq!(vm.host.local_response(3).map(|r| r.status), Some(401));
    let counters = [
        ("shadow_denied.expired", Some(1)),
        ("denied.expired", Some(1)),
    ];
    assert_counters(&mut vm, &counters);
}

#[test]
fn a_shadowed_request_waits_for_keys_then_continues_when_they_cannot_be_had() {
    let mut config = remote_config();
    config["mode"] = json!("shadow");
    let mut vm = Vm::new(&config);
    let token = rs256(&good_claims());
    assert_eq!(vm.request(2, "/", &token), Action::Pause, "waits as usual");
    vm.tick();
    let call = vm.last_call();
    vm.answer_root(&call, Some(500), "down");
    assert_eq!(vm.host.resumed(2), 1, "let through after the wait");
    assert_eq!(vm.host.local_response(2), None);
    assert_credential_kept(&vm, 2, &token);
    let counters = [
        ("shadow_denied.unavailable", Some(1)),
        ("denied.unavailable", Some(0)),
    ];
    assert_counters(&mut vm, &counters);
}

#[test]
fn the_upstreams_revocation_header_still_applies_under_shadow() {
    let mut vm = Vm::new(&config("shadow"));
    let mut claims = good_claims();
    claims["jti"] = json!("j-1");
    let token = rs256(&claims);
    assert_eq!(vm.request(2, "/orders", &token), Action::Continue);
    respond_with_revocation(&mut vm, 2, "self");
    assert_eq!(header(&vm.host.response_headers(2), "x-revoke-token"), None);
    vm.delete(2);
    // Revoked: shadow-denied from now on, with the token still going upstream.
    assert_eq!(vm.request(3, "/orders", &token), Action::Continue);
    assert_eq!(header(&vm.host.request_headers(3), "x-user"), None);
    // `revoked_by.<source>` counts refusals: the log line says where it came from.
    let counters = [
        ("revocation.header_revoked", Some(1)),
        ("shadow_denied.revoked", Some(1)),
        ("denied.revoked", Some(0)),
        ("revoked_by.header", Some(0)),
    ];
    assert_counters(&mut vm, &counters);
    let line = vm.host.logged("\"shadow\":true");
    assert!(line[0].contains("\"revoked_by\":\"header\""), "{line:?}");
}

#[test]
fn self_on_a_shadowed_denial_revokes_nothing() {
    // An attacker's token with a victim's jti and a broken signature is shadow-denied and
    // reaches the upstream; an upstream answering `self` (a logout) must not revoke the jti.
    let mut vm = Vm::new(&config("shadow"));
    let mut claims = good_claims();
    claims["jti"] = json!("victim");
    let victim = rs256(&claims);
    let mut forged = victim.clone();
    forged.replace_range(forged.len() - 6.., "AAAAAA");
    assert_eq!(vm.request(2, "/logout", &forged), Action::Continue);
    respond_with_revocation(&mut vm, 2, "self");
    vm.delete(2);
    assert_eq!(vm.request(3, "/orders", &victim), Action::Continue);
    // The victim's token is still allowed: nothing was revoked.
    let counters = [
        ("revocation.header_revoked", Some(0)),
        ("allowed", Some(1)),
        ("shadow_denied.signature", Some(1)),
    ];
    assert_counters(&mut vm, &counters);
}
