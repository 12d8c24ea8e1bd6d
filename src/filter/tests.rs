//! The request flow through a fake host: what a client, an upstream and an operator would see
//! (the status, the headers, a paused request resumed, the log lines), with the real flow
//! code and no Envoy.

use std::rc::Rc;

use proxy_wasm::types::{Action, LogLevel, Status};
use serde_json::{json, Value};

use super::fake_host::{Call, FakeHost};
use super::{GuardHttp, GuardRoot};
use crate::testkit::{self, good_claims, rs256, NOW};

/// One VM: the fake host and the filter's root context on it.
pub(super) struct Vm {
    pub(super) host: Rc<FakeHost>,
    pub(super) root: GuardRoot,
    streams: Vec<(u32, GuardHttp)>,
}

impl Vm {
    pub(super) fn new(config: &Value) -> Self {
        Vm::on(FakeHost::new(config, NOW))
    }

    /// Another worker of the same process (the same shared data).
    pub(super) fn worker(&self, config: &Value) -> Self {
        Vm::on(self.host.worker(config, NOW))
    }

    pub(super) fn on(host: Rc<FakeHost>) -> Self {
        let mut root = GuardRoot::with_host(1, host.clone());
        assert!(root.configure(), "{:?}", host.logs(LogLevel::Error));
        Vm {
            host,
            root,
            streams: Vec::new(),
        }
    }

    /// A GET of `path` on a new stream `context`, with `token` as its bearer token.
    pub(super) fn request(&mut self, context: u32, path: &str, token: &str) -> Action {
        let authorization = format!("Bearer {token}");
        self.send(
            context,
            &[
                (":method", "GET"),
                (":path", path),
                (":authority", "orders.example"),
                ("authorization", &authorization),
            ],
        )
    }

    /// A request with exactly these headers on a new stream `context`.
    pub(super) fn send(&mut self, context: u32, headers: &[(&str, &str)]) -> Action {
        self.host.start_request(context, headers);
        let mut stream = self.root.stream(context);
        let action = stream.request_headers();
        self.streams.push((context, stream));
        action
    }

    /// The host deletes stream `context`: the SDK drops its context (`proxy_on_delete`).
    pub(super) fn delete(&mut self, context: u32) {
        self.host.enter(context);
        self.streams.retain(|(c, _)| *c != context);
    }

    pub(super) fn stream(&mut self, context: u32) -> &mut GuardHttp {
        let found = self.streams.iter_mut().find(|(c, _)| *c == context);
        &mut found.expect("a stream of that context").1
    }

    pub(super) fn tick(&mut self) {
        self.host.enter(1);
        self.root.tick();
    }

    /// The host answers the root's call `call` with `status` and `body`.
    pub(super) fn answer_root(&mut self, call: &Call, status: Option<u16>, body: &str) {
        self.host.set_call_response(status, &[], body);
        self.host.enter(1);
        self.root.call_response(call.token, body.len());
    }

    pub(super) fn last_call(&self) -> Call {
        self.host.calls().pop().expect("a call was dispatched")
    }
}

/// The upstream answers request `context` with this revocation header.
pub(super) fn respond_with_revocation(vm: &mut Vm, context: u32, directives: &str) {
    vm.host.start_response(
        context,
        &[(":status", "200"), ("x-revoke-token", directives)],
    );
    assert_eq!(vm.stream(context).response_headers(), Action::Continue);
}

pub(super) fn header<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn claim_headers_config() -> Value {
    testkit::config_json(
        json!({ "claim_to_headers": [{ "claim_name": "sub", "header_name": "x-user" }] }),
        None,
    )
}

#[test]
fn a_valid_token_continues_with_its_upstream_headers() {
    let mut vm = Vm::new(&claim_headers_config());
    assert_eq!(
        vm.request(2, "/orders", &rs256(&good_claims())),
        Action::Continue
    );
    let upstream = vm.host.request_headers(2);
    assert_eq!(header(&upstream, "authorization"), None, "token stripped");
    assert_eq!(header(&upstream, "x-user"), Some("alice"));
    assert_eq!(vm.host.local_response(2), None);
}

#[test]
fn a_denial_is_a_local_401_with_a_bearer_challenge() {
    let mut vm = Vm::new(&claim_headers_config());
    let mut expired = good_claims();
    expired["exp"] = json!(NOW - 3600);
    assert_eq!(vm.request(2, "/orders", &rs256(&expired)), Action::Pause);
    let response = vm.host.local_response(2).expect("a local response");
    assert_eq!(response.status, 401);
    let challenge = header(&response.headers, "www-authenticate").expect("a challenge");
    assert!(challenge.starts_with("Bearer realm="), "{challenge}");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(!response.body.is_empty());
    assert_eq!(vm.host.resumed(2), 0);
}

#[test]
fn the_decision_log_line_names_the_client_address() {
    let mut config = claim_headers_config();
    config["log"] = json!({ "decisions": "all" });
    let mut vm = Vm::new(&config);
    vm.host
        .set_property(&["source", "address"], "192.0.2.7:50000");
    vm.request(2, "/orders", &rs256(&good_claims()));
    let lines = vm.host.logged("\"client_ip\":\"192.0.2.7\"");
    assert_eq!(lines.len(), 1, "{:?}", vm.host.logs(LogLevel::Info));
    assert!(lines[0].contains("\"decision\":\"allow\""), "{}", lines[0]);
}

pub(super) fn remote_config() -> Value {
    json!({ "providers": { "corp": {
        "issuer": testkit::ISSUER,
        "audiences": ["orders-api"],
        "remote_jwks": { "cluster": "idp", "uri": "https://idp.example.com/jwks" }
    }}})
}

/// The JWKS GET the tick dispatched.
fn jwks_call(vm: &Vm) -> Call {
    let call = vm.last_call();
    assert_eq!(call.cluster, "idp");
    assert_eq!(call.header(":method"), Some("GET"));
    assert_eq!(call.header(":path"), Some("/jwks"));
    assert_eq!(call.header(":authority"), Some("idp.example.com"));
    call
}

#[test]
fn a_request_waits_for_the_first_jwks_fetch_then_continues() {
    let mut vm = Vm::new(&remote_config());
    assert_eq!(vm.request(2, "/", &rs256(&good_claims())), Action::Pause);
    assert!(vm.host.calls().is_empty(), "fetches start on the tick");
    vm.tick();
    assert_eq!(vm.host.calls().len(), 1);
    let call = jwks_call(&vm);
    vm.answer_root(&call, Some(200), &testkit::jwks().to_string());
    assert_eq!(vm.host.resumed(2), 1);
    assert_eq!(vm.host.local_response(2), None);
    assert_eq!(header(&vm.host.request_headers(2), "authorization"), None);
    assert_eq!(
        vm.host
            .logged("JWKS for provider 0 fetched: 5 key(s)")
            .len(),
        1
    );
    vm.tick();
    assert_eq!(
        vm.host.calls().len(),
        1,
        "fetched keys are not fetched again"
    );
}

fn jwks_warnings(vm: &Vm) -> usize {
    let warnings = vm.host.logs(LogLevel::Warn);
    warnings.iter().filter(|l| l.contains("JWKS")).count()
}

/// The paused request `context` was answered 503, to be retried.
pub(super) fn assert_unavailable(vm: &Vm, context: u32) {
    let response = vm.host.local_response(context).expect("a local response");
    assert_eq!(response.status, 503);
    assert!(header(&response.headers, "retry-after").is_some());
    assert_eq!(vm.host.resumed(context), 0);
}

#[test]
fn a_failed_jwks_fetch_answers_503_and_logs_once_until_it_recovers() {
    let mut vm = Vm::new(&remote_config());
    let token = rs256(&good_claims());
    vm.request(2, "/", &token);
    vm.tick();
    let call = jwks_call(&vm);
    vm.answer_root(&call, Some(500), "oops");
    assert_unavailable(&vm, 2);
    let failed = "JWKS fetch for provider 0 failed: HTTP status 500";
    assert_eq!(vm.host.logged(failed).len(), 1);
    // The retry waits: a request meanwhile is answered now, not held.
    vm.request(3, "/", &token);
    assert_unavailable(&vm, 3);
    vm.host.set_now(NOW + 5);
    vm.tick();
    let retry = jwks_call(&vm);
    assert_ne!(retry.token, call.token);
    vm.answer_root(&retry, None, "");
    assert_eq!(jwks_warnings(&vm), 1, "one line per outage");
    vm.host.set_now(NOW + 10);
    vm.tick();
    let good = jwks_call(&vm);
    vm.answer_root(&good, Some(200), &testkit::jwks().to_string());
    let recovered = vm
        .host
        .logged("JWKS for provider 0 recovered after 2 failed fetch(es)");
    assert_eq!(recovered.len(), 1, "{:?}", vm.host.logs(LogLevel::Info));
    assert_eq!(vm.request(4, "/", &token), Action::Continue);
    vm.tick();
    assert_eq!(vm.host.metric("bearer_guard.jwks_fetch_failed"), Some(2));
    assert_eq!(vm.host.metric("bearer_guard.jwks_fetch_success"), Some(1));
}

#[test]
fn a_jwks_fetch_not_sent_answers_503_and_says_which_cluster() {
    let mut vm = Vm::new(&remote_config());
    vm.request(2, "/", &rs256(&good_claims()));
    vm.host.refuse_calls(Some(Status::BadArgument));
    vm.tick();
    assert_unavailable(&vm, 2);
    let line = "JWKS fetch for provider 0 not sent (BadArgument): is cluster \"idp\" defined? (logged once until it works)";
    assert_eq!(vm.host.logged("not sent"), vec![line.to_owned()]);
    vm.host.set_now(NOW + 5);
    vm.tick();
    assert_eq!(jwks_warnings(&vm), 1, "logged once");
    vm.host.refuse_calls(None);
    vm.host.set_now(NOW + 10);
    vm.tick();
    let call = jwks_call(&vm);
    vm.answer_root(&call, Some(200), &testkit::jwks().to_string());
    assert_eq!(
        vm.host.logged("recovered after 2 failed fetch(es)").len(),
        1
    );
}

#[test]
fn a_second_worker_adopts_the_fetched_keys_without_a_call() {
    let config = remote_config();
    let mut first = Vm::new(&config);
    let mut second = first.worker(&config);
    first.request(2, "/", &rs256(&good_claims()));
    first.tick();
    let call = jwks_call(&first);
    first.answer_root(&call, Some(200), &testkit::jwks().to_string());
    second.tick();
    assert_eq!(
        second.request(2, "/", &rs256(&good_claims())),
        Action::Continue
    );
    assert!(second.host.calls().is_empty(), "keys adopted, not fetched");
}

pub(super) fn revocation_config(revocation: Value) -> Value {
    let mut config = testkit::config_json(json!({}), None);
    config["revocation"] = revocation;
    config
}

#[test]
fn a_request_waits_for_the_first_revocation_list_then_continues() {
    let list = json!({ "list": { "cluster": "rev", "uri": "http://rev/v1/list" } });
    let mut vm = Vm::new(&revocation_config(list));
    let mut claims = good_claims();
    claims["jti"] = json!("j-1");
    assert_eq!(vm.request(2, "/", &rs256(&claims)), Action::Pause);
    vm.tick();
    let call = vm.last_call();
    assert_eq!(call.cluster, "rev");
    assert_eq!(call.header(":authority"), Some("rev"));
    vm.answer_root(&call, Some(200), r#"{"version":"v1","jti":["other"]}"#);
    assert_eq!(vm.host.resumed(2), 1);
    assert_eq!(vm.host.local_response(2), None);
    assert_eq!(
        vm.host.logged("revocation list fetched: 1 entries").len(),
        1
    );
}

#[test]
fn a_failed_revocation_list_fetch_is_logged_once_until_it_recovers() {
    let list = json!({ "list": { "cluster": "rev", "uri": "http://rev/v1/list" } });
    let mut vm = Vm::new(&revocation_config(list));
    vm.tick();
    let call = vm.last_call();
    vm.answer_root(&call, Some(503), "");
    let failed = "revocation list fetch failed: ";
    assert_eq!(vm.host.logged(failed).len(), 1);
    vm.host.set_now(NOW + 5);
    vm.tick();
    let retry = vm.last_call();
    assert_ne!(retry.token, call.token);
    vm.answer_root(&retry, None, "");
    assert_eq!(vm.host.logged(failed).len(), 1, "one line per outage");
    vm.host.set_now(NOW + 10);
    vm.tick();
    let good = vm.last_call();
    vm.answer_root(&good, Some(200), r#"{"version":"v1"}"#);
    let recovered = "revocation list fetch recovered after 2 failed attempt(s)";
    assert_eq!(vm.host.logged(recovered).len(), 1);
}

#[test]
fn a_revocation_response_header_refuses_the_token_next_time() {
    let mut vm = Vm::new(&revocation_config(json!({})));
    let token = rs256(&good_claims());
    assert_eq!(vm.request(2, "/", &token), Action::Continue);
    respond_with_revocation(&mut vm, 2, "self");
    let headers = vm.host.response_headers(2);
    assert_eq!(header(&headers, "x-revoke-token"), None, "not passed on");
    vm.delete(2);
    assert_eq!(vm.request(3, "/", &token), Action::Pause);
    let response = vm.host.local_response(3).expect("refused");
    assert_eq!(response.status, 401);
}

/// A stream that ends before its response (the client went away, the upstream failed) is
/// cleaned up when the host deletes it: the SDK drops the context, and the token that
/// authorized it is not held for the worker's lifetime.
#[test]
fn a_stream_deleted_before_its_response_leaves_nothing_held() {
    let mut vm = Vm::new(&revocation_config(json!({})));
    let token = rs256(&good_claims());
    for context in 2..12 {
        assert_eq!(vm.request(context, "/", &token), Action::Continue);
    }
    assert_eq!(vm.root.revocation_streams_held(), 10);
    for context in 2..12 {
        vm.delete(context);
    }
    assert_eq!(vm.root.revocation_streams_held(), 0);
}

#[test]
fn an_opaque_token_waits_for_its_introspection_answer() {
    // The test provider, asking its IdP about tokens that are not JWTs.
    let introspection = json!({
        "cluster": "idp", "uri": "http://idp/token/introspection",
        "client_id": "proxy", "client_secret": "s"
    });
    let config = testkit::config_json(
        json!({ "introspection": introspection,
                "claim_to_headers": [{ "claim_name": "client_id", "header_name": "x-client-id" }] }),
        None,
    );
    let mut vm = Vm::new(&config);
    let opaque = "cMYcCrAzIcMcMp_1ejWvqXdKDOAURgnM9VlR7Oo9pp3";
    assert_eq!(vm.request(2, "/", opaque), Action::Pause);
    let call = vm.last_call();
    assert_eq!(call.cluster, "idp");
    assert_eq!(call.header(":method"), Some("POST"));
    let answer = json!({ "active": true, "iss": testkit::ISSUER, "aud": "orders-api",
                         "client_id": "orders-client", "exp": NOW + 300 });
    let body = answer.to_string();
    vm.host.set_call_response(Some(200), &[], &body);
    vm.host.enter(2);
    vm.stream(2).call_response(call.token, body.len());
    assert_eq!(vm.host.resumed(2), 1);
    let upstream = vm.host.request_headers(2);
    assert_eq!(header(&upstream, "x-client-id"), Some("orders-client"));
}

#[test]
fn a_stat_prefix_goes_into_every_stat_name() {
    let mut config = claim_headers_config();
    config["stat_prefix"] = json!("edge");
    config["revocation"] = json!({});
    let mut vm = Vm::new(&config);
    assert_eq!(
        vm.request(2, "/orders", &rs256(&good_claims())),
        Action::Continue
    );
    vm.tick();
    assert_eq!(vm.host.metric("bearer_guard.edge.allowed"), Some(1));
    assert_eq!(
        vm.host.metric("bearer_guard.edge.provider.corp.allowed"),
        Some(1)
    );
    assert!(vm
        .host
        .metric("bearer_guard.edge.revocation.entries")
        .is_some());
    assert_eq!(
        vm.host.metric("bearer_guard.allowed"),
        None,
        "not under the plain name"
    );
}

/// What the host hands over for the request's headers: a map whose sizes lie is no headers and
/// counts as not read (as a map the host refuses), an empty map is read and empty, and values
/// that are not UTF-8 are set apart by name.
#[test]
fn the_request_header_map_is_read_without_trusting_it() {
    use crate::decide::header_map::serialize;
    type Read = (Vec<(String, String)>, Vec<String>, bool);
    let read = |serialized: Result<Vec<u8>, Status>| -> Read {
        let (headers, read) = super::request_headers(&serialized);
        let text = headers.text.iter();
        (
            text.map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            headers.not_utf8.iter().map(|n| (*n).to_owned()).collect(),
            read,
        )
    };
    let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
        p.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    };
    let good = serialize(&[(":path", "/"), ("authorization", "Bearer a.b.c")]);
    let want = pairs(&[(":path", "/"), ("authorization", "Bearer a.b.c")]);
    assert_eq!(read(Ok(good.clone())), (want, vec![], true));

    let mut lying = good;
    lying[0] = 9;
    assert_eq!(read(Ok(lying)), (vec![], vec![], false));
    assert_eq!(read(Ok(Vec::new())), (vec![], vec![], true));
    assert_eq!(read(Err(Status::InternalFailure)), (vec![], vec![], false));

    let mut not_utf8 = serialize(&[(":path", "/"), ("authorization", "Bearer \u{e9}")]);
    let at = not_utf8.len() - 3;
    not_utf8[at] = 0xff;
    let want = (
        pairs(&[(":path", "/")]),
        vec!["authorization".to_owned()],
        true,
    );
    assert_eq!(read(Ok(not_utf8)), want);
}
