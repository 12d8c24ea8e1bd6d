//! Remote JWKS found by OpenID discovery, through the fake host: the document's GET, then the
//! JWKS's where it says; what a client sees and what is logged and counted when the document
//! is another issuer's or no use; refreshes that read it again.

use proxy_wasm::types::{Action, LogLevel, Status};
use serde_json::{json, Value};

use crate::filter::fake_host::Call;
use crate::filter::tests::{assert_unavailable, Vm};
use crate::keys::discovery::MAX_DISCOVERY_BYTES;
use crate::testkit::{self, good_claims, rs256, ISSUER, NOW};

const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

fn discovery_remote(jwks_cluster: Option<&str>) -> Value {
    let mut remote = json!({
        "cluster": "idp",
        "discovery_uri": format!("{ISSUER}{DISCOVERY_PATH}"),
        "refetch_min_interval_seconds": 0
    });
    if let Some(cluster) = jwks_cluster {
        remote["jwks_cluster"] = json!(cluster);
    }
    remote
}

fn config(jwks_cluster: Option<&str>) -> Value {
    json!({ "providers": { "corp": {
        "issuer": ISSUER,
        "audiences": ["orders-api"],
        "remote_jwks": discovery_remote(jwks_cluster)
    }}})
}

fn document(issuer: &str, jwks_uri: &str) -> String {
    json!({ "issuer": issuer, "jwks_uri": jwks_uri, "response_types_supported": ["code"] })
        .to_string()
}

/// The warnings about fetching keys (the fake host also warns that it has no host crypto).
fn jwks_warnings(vm: &Vm) -> Vec<String> {
    let warnings = vm.host.logs(LogLevel::Warn);
    warnings
        .into_iter()
        .filter(|l| l.contains("JWKS"))
        .collect()
}

/// The discovery GET the tick dispatched.
fn discovery_call(vm: &Vm) -> Call {
    let call = vm.last_call();
    assert_eq!(call.cluster, "idp");
    assert_eq!(call.header(":method"), Some("GET"));
    assert_eq!(call.header(":path"), Some(DISCOVERY_PATH));
    assert_eq!(call.header(":authority"), Some("idp.example.com"));
    call
}

/// The tick's discovery GET answered with a document of `issuer` naming `jwks_uri`.
fn answer_document(vm: &mut Vm, issuer: &str, jwks_uri: &str) {
    let call = discovery_call(vm);
    vm.answer_root(&call, Some(200), &document(issuer, jwks_uri));
}

/// The JWKS GET sent after the document, through `cluster` to `authority` and `path`.
fn jwks_call(vm: &Vm, cluster: &str, authority: &str, path: &str) -> Call {
    let call = vm.last_call();
    assert_eq!(call.cluster, cluster);
    assert_eq!(call.header(":method"), Some("GET"));
    assert_eq!(call.header(":authority"), Some(authority));
    assert_eq!(call.header(":path"), Some(path));
    call
}

/// Discovery and JWKS answered: the provider holds the test keys.
fn fetch_keys(vm: &mut Vm) {
    vm.tick();
    answer_document(vm, ISSUER, "https://idp.example.com/jwks");
    let call = jwks_call(vm, "idp", "idp.example.com", "/jwks");
    vm.answer_root(&call, Some(200), &testkit::jwks().to_string());
}

#[test]
fn the_document_then_the_jwks_it_names_then_the_request_continues() {
    let mut vm = Vm::new(&config(Some("keys")));
    let token = rs256(&good_claims());
    assert_eq!(vm.request(2, "/", &token), Action::Pause);
    vm.tick();
    assert_eq!(vm.host.calls().len(), 1);
    answer_document(
        &mut vm,
        ISSUER,
        "https://keys.example.com:8443/oauth/jwks?v=2",
    );
    assert_eq!(vm.host.resumed(2), 0, "still waiting for the JWKS");
    assert_eq!(vm.host.local_response(2), None);
    let call = jwks_call(&vm, "keys", "keys.example.com:8443", "/oauth/jwks?v=2");
    vm.answer_root(&call, Some(200), &testkit::jwks().to_string());
    assert_eq!(vm.host.resumed(2), 1);
    assert_eq!(vm.host.local_response(2), None);
    let located = "JWKS discovery for provider 0 (corp) at idp.example.com/.well-known/openid-configuration: the JWKS is at keys.example.com:8443/oauth/jwks?v=2";
    let fetched = "JWKS for provider 0 fetched: 5 key(s)";
    assert_eq!([located, fetched].map(|l| vm.host.logged(l).len()), [1, 1]);
    vm.tick();
    assert_eq!(vm.host.calls().len(), 2, "no third GET: the keys are held");
    assert_eq!(vm.host.metric("bearer_guard.jwks_fetch_success"), Some(1));
    assert_eq!(
        vm.host.metric("bearer_guard.jwks_discovery_failed"),
        Some(0)
    );
}

#[test]
fn attack_another_issuers_document_fetches_no_keys_and_the_request_gets_a_503() {
    for other in [
        format!("{ISSUER}/"),
        ISSUER.to_uppercase(),
        "https://evil.example".to_owned(),
    ] {
        let mut vm = Vm::new(&config(None));
        let token = rs256(&good_claims());
        vm.request(2, "/", &token);
        vm.tick();
        answer_document(&mut vm, &other, "https://idp.example.com/jwks");
        assert_eq!(vm.host.calls().len(), 1, "{other}: the JWKS is not fetched");
        assert_unavailable(&vm, 2);
        let warnings = jwks_warnings(&vm);
        let line = format!(
            "JWKS discovery for provider 0 (corp) at idp.example.com/.well-known/openid-configuration \
             failed: issuer mismatch: the discovery document's issuer is {other:?}, the provider's \
             is {ISSUER:?} (they must be identical, OpenID Connect Discovery 1.0 §4.3); keeping 0 \
             key(s) in use (logged once until a fetch works)"
        );
        assert_eq!(warnings, vec![line], "{other}");
        assert!(vm.host.logged(&token).is_empty(), "a token was logged");
        vm.tick();
        for name in ["jwks_fetch_failed", "jwks_discovery_failed"] {
            assert_eq!(
                vm.host.metric(&format!("bearer_guard.{name}")),
                Some(1),
                "{name}"
            );
            let per_provider = format!("bearer_guard.provider.corp.{name}");
            assert_eq!(vm.host.metric(&per_provider), Some(1), "{name}");
        }
        // Until the retry, requests are answered at once; the retry asks again, logs nothing new.
        vm.request(3, "/", &token);
        assert_unavailable(&vm, 3);
        vm.host.set_now(NOW + 5);
        vm.tick();
        answer_document(&mut vm, &other, "https://idp.example.com/jwks");
        assert_eq!(vm.host.calls().len(), 2, "still no JWKS fetch");
        assert_eq!(jwks_warnings(&vm).len(), 1, "one line per outage");
    }
}

#[test]
fn attack_a_second_provider_with_another_issuer_on_the_same_document_gets_no_keys() {
    let other = "https://tenant-b.example";
    let config = json!({ "providers": {
        "a": { "issuer": ISSUER, "remote_jwks": discovery_remote(None) },
        "b": { "issuer": other, "remote_jwks": discovery_remote(None) }
    }});
    let mut vm = Vm::new(&config);
    vm.tick();
    let calls = vm.host.calls();
    assert_eq!(calls.len(), 2, "one document GET per provider");
    let doc = document(ISSUER, "https://idp.example.com/jwks");
    vm.answer_root(&calls[0], Some(200), &doc);
    let call = jwks_call(&vm, "idp", "idp.example.com", "/jwks");
    vm.answer_root(&calls[1], Some(200), &doc);
    assert_eq!(vm.host.calls().len(), 3, "b fetches no JWKS");
    vm.answer_root(&call, Some(200), &testkit::jwks().to_string());
    assert_eq!(vm.request(2, "/", &rs256(&good_claims())), Action::Continue);
    // A token claiming b's issuer, signed with a key a's JWKS holds: b has no keys of its own
    // and does not borrow a's (not even from shared data, on this or another worker).
    let mut claims = good_claims();
    claims["iss"] = json!(other);
    claims.as_object_mut().map(|c| c.remove("aud"));
    let token = rs256(&claims);
    assert_eq!(vm.request(3, "/", &token), Action::Pause);
    assert_unavailable(&vm, 3);
    let mut second = vm.worker(&config);
    second.tick();
    assert_eq!(second.request(4, "/", &token), Action::Pause);
    second.host.set_now(NOW + 10);
    second.tick();
    assert_eq!(second.host.local_response(4).map(|r| r.status), Some(503));
    let line = "JWKS discovery for provider 1 (b) at idp.example.com/.well-known/openid-configuration failed: issuer mismatch";
    assert_eq!(vm.host.logged(line).len(), 1);
}

#[test]
fn attack_a_document_that_is_no_use_is_refused_like_a_bad_jwks() {
    let huge = format!(
        r#"{{"issuer":"{ISSUER}","jwks_uri":"https://idp.example.com/jwks","x":"{}"}}"#,
        "a".repeat(MAX_DISCOVERY_BYTES)
    );
    let cases = [
        (Some(302), "".to_owned(), "HTTP status 302"),
        (Some(404), "{}".to_owned(), "HTTP status 404"),
        (None, "".to_owned(), "no response"),
        (
            Some(200),
            "<html>".to_owned(),
            "not an OpenID Provider Configuration",
        ),
        (
            Some(200),
            json!({ "issuer": ISSUER }).to_string(),
            "missing field `jwks_uri`",
        ),
        (Some(200), huge, "exceeds 65536"),
        (
            Some(200),
            document(ISSUER, "file:///etc/jwks"),
            "jwks_uri must start with https:// or http://",
        ),
        (
            Some(200),
            document(ISSUER, "https://attacker@idp.example.com/jwks"),
            "jwks_uri has userinfo",
        ),
    ];
    for (status, body, why) in cases {
        let mut vm = Vm::new(&config(None));
        vm.request(2, "/", &rs256(&good_claims()));
        vm.tick();
        let call = discovery_call(&vm);
        vm.answer_root(&call, status, &body);
        assert_eq!(vm.host.calls().len(), 1, "{why}: no JWKS fetch");
        assert_unavailable(&vm, 2);
        let warnings = jwks_warnings(&vm);
        assert_eq!(warnings.len(), 1, "{why}");
        assert!(warnings[0].contains(why), "{why}: {}", warnings[0]);
        assert!(warnings[0].len() < 400, "a short line: {}", warnings[0]);
        vm.tick();
        assert_eq!(
            vm.host.metric("bearer_guard.jwks_discovery_failed"),
            Some(1)
        );
    }
}

#[test]
fn every_refresh_reads_the_document_again_follows_a_moved_jwks_and_keeps_keys_on_failure() {
    let mut vm = Vm::new(&config(None));
    let token = rs256(&good_claims());
    fetch_keys(&mut vm);
    assert_eq!(vm.request(2, "/", &token), Action::Continue);
    // Due at 90% of the cache duration: the document is read again, and it has moved the JWKS.
    vm.host.set_now(NOW + 540);
    vm.tick();
    answer_document(&mut vm, ISSUER, "https://idp.example.com/v2/jwks");
    let call = jwks_call(&vm, "idp", "idp.example.com", "/v2/jwks");
    vm.answer_root(&call, Some(200), &testkit::jwks().to_string());
    assert_eq!(
        vm.host
            .logged("the JWKS is at idp.example.com/v2/jwks")
            .len(),
        1
    );
    // The next refresh finds another issuer's document: the keys held stay in use.
    vm.host.set_now(NOW + 1080);
    vm.tick();
    answer_document(&mut vm, "https://evil.example", "https://evil.example/jwks");
    let calls = vm.host.calls().len();
    assert_eq!(vm.request(3, "/", &token), Action::Continue);
    assert_eq!(vm.host.logged("keeping 5 key(s) in use").len(), 1);
    // A token with an unknown kid asks for a refetch: the document is read first again.
    vm.host.set_now(NOW + 1090);
    let header = json!({ "alg": "RS256", "kid": "rotated" });
    let unknown = testkit::unsigned_with_header(&header, &good_claims());
    assert_eq!(vm.request(4, "/", &unknown), Action::Pause);
    vm.tick();
    assert_eq!(vm.host.calls().len(), calls + 1);
    discovery_call(&vm);
}

#[test]
fn a_jwks_cluster_that_is_not_defined_is_named_and_the_request_gets_a_503() {
    let mut vm = Vm::new(&config(Some("keys")));
    vm.request(2, "/", &rs256(&good_claims()));
    vm.tick();
    let call = discovery_call(&vm);
    vm.host.refuse_calls(Some(Status::BadArgument));
    vm.answer_root(
        &call,
        Some(200),
        &document(ISSUER, "https://keys.example.com/jwks"),
    );
    assert_unavailable(&vm, 2);
    let line = "JWKS fetch for provider 0 not sent (BadArgument): is cluster \"keys\" defined? (logged once until it works)";
    assert_eq!(vm.host.logged("not sent"), vec![line.to_owned()]);
    vm.tick();
    assert_eq!(vm.host.metric("bearer_guard.jwks_fetch_failed"), Some(1));
    assert_eq!(
        vm.host.metric("bearer_guard.jwks_discovery_failed"),
        Some(0)
    );
    // The lease was given back: the retry starts with the document again.
    vm.host.refuse_calls(None);
    vm.host.set_now(NOW + 5);
    vm.tick();
    discovery_call(&vm);
}
