//! Revocation in a real Envoy: static entries, the revocation response header (on every worker
//! at once, never seen by the client, never injectable by it), the polled list with its stale
//! policy, and two proxies sharing revocations through one list service.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;
use support::testkit;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use support::envoy::Envoy;
use support::http;
use support::revocation_server::RevocationServer;
use support::upstream::Upstream;
use support::within;
use testkit::{keys, mint, unix_now, Signer, ISSUER};

const REVOKED: &str = "error_description=\"token revoked\"";

fn token(jti: Option<&str>, sub: &str, iat: i64) -> String {
    let mut claims = json!({
        "iss": ISSUER, "aud": "orders-api", "sub": sub, "iat": iat, "exp": unix_now() + 600
    });
    if let Some(jti) = jti {
        claims["jti"] = json!(jti);
    }
    mint(Signer::Rs256(&keys().rsa), Some("rsa-1"), &claims)
}

fn config(revocation: Value) -> Value {
    let mut config = testkit::config_json(json!({}), None);
    config["revocation"] = revocation;
    config
}

fn start(revocation: Value, upstream: &Upstream, concurrency: u32) -> Envoy {
    start_with_list_port(revocation, upstream, concurrency, upstream.port)
}

fn start_with_list_port(
    revocation: Value,
    upstream: &Upstream,
    concurrency: u32,
    list_port: u16,
) -> Envoy {
    let yaml = support::envoy::fill_template(
        "envoy/test.yaml.tmpl",
        &config(revocation),
        upstream.port,
        &[
            ("IDP_PORT", &upstream.port.to_string()),
            ("REVOCATION_PORT", &list_port.to_string()),
        ],
    );
    Envoy::start_with(&yaml, "guarded", concurrency).unwrap()
}

fn get(envoy: &Envoy, path: &str, token: &str) -> http::Response {
    http::get(
        envoy.port,
        path,
        &[("authorization", &format!("Bearer {token}"))],
    )
}

fn status(envoy: &Envoy, token: &str) -> u16 {
    get(envoy, "/api", token).status
}

fn assert_revoked(response: &http::Response) {
    assert_eq!(response.status, 401, "{}", response.body);
    let challenge = response.header("www-authenticate").unwrap_or_default();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(challenge.contains(REVOKED), "{challenge}");
}

/// Refused on every worker: new connections land on all of them, and each must say 401.
fn revoked_everywhere(envoy: &Envoy, token: &str) -> bool {
    (0..20).all(|_| status(envoy, token) == 401)
}

/// How long after `since` the token was refused on every worker: the start of the first
/// all-refused round (the round's own 20 requests are not counted). `None` after `limit`.
fn enforced_after(envoy: &Envoy, token: &str, since: Instant, limit: Duration) -> Option<Duration> {
    while since.elapsed() < limit {
        let attempt = Instant::now();
        if revoked_everywhere(envoy, token) {
            return Some(attempt.duration_since(since));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn static_entries_revoke_exactly_what_they_name() {
    let upstream = Upstream::start();
    let now = unix_now();
    let by_hash = token(None, "carol", now - 5);
    let hex: String = Sha256::digest(by_hash.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let envoy = start(
        json!({
            "jti": ["jti-revoked"],
            "token_sha256": [hex],
            "subjects": { "dave": now - 100 },
            "providers": { "corp": { "jti": ["jti-corp-revoked"] } },
            "issued_before": now - 1000,
        }),
        &upstream,
        2,
    );
    let cases = [
        (
            "listed jti",
            token(Some("jti-revoked"), "alice", now - 5),
            true,
        ),
        (
            "provider-scoped jti",
            token(Some("jti-corp-revoked"), "alice", now - 5),
            true,
        ),
        ("listed SHA-256", by_hash.clone(), true),
        (
            "subject, issued before its cutoff",
            token(Some("d1"), "dave", now - 200),
            true,
        ),
        (
            "subject, issued at its cutoff",
            token(Some("d2"), "dave", now - 100),
            true,
        ),
        (
            "subject, issued after its cutoff",
            token(Some("d3"), "dave", now - 99),
            false,
        ),
        (
            "before the global cutoff",
            token(Some("old"), "erin", now - 1001),
            true,
        ),
        (
            "another jti",
            token(Some("jti-fine"), "alice", now - 5),
            false,
        ),
        ("no jti, another hash", token(None, "carol", now - 6), false),
    ];
    for (case, token, revoked) in &cases {
        // Twice: the second answer comes from the verified-token cache, revocation still applies.
        for _ in 0..2 {
            let response = get(&envoy, "/api", token);
            if *revoked {
                assert_revoked(&response);
            } else {
                assert_eq!(response.status, 200, "{case}: {}", response.body);
            }
        }
    }
    assert_eq!(
        envoy.counter_eventually("wasmcustom.bearer_guard.denied.revoked", 12),
        12
    );
}

#[test]
fn a_revocation_header_holds_on_every_worker_at_once_and_never_leaks() {
    let upstream = Upstream::start();
    upstream.add_response_headers("/signout-everywhere", &[("x-revoke-token", "sub=alice")]);
    upstream.add_response_headers("/logout", &[("x-revoke-token", "self")]);
    let envoy = start(
        json!({ "response_header_directives": ["self", "sub"] }),
        &upstream,
        4,
    );
    let now = unix_now();
    let session = token(Some("session-1"), "alice", now - 5);
    let other_session = token(Some("session-2"), "alice", now - 5);
    let bob = token(Some("session-3"), "bob", now - 5);
    assert_eq!(status(&envoy, &session), 200);

    // Many clients use the session on new connections (spread over the 4 workers) while it
    // is revoked; each records when its request started and what it got.
    let stop = Arc::new(AtomicBool::new(false));
    let results: Arc<Mutex<Vec<(Instant, u16)>>> = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..12)
        .map(|_| {
            let (stop, results, session, port) =
                (stop.clone(), results.clone(), session.clone(), envoy.port);
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let bearer = format!("Bearer {session}");
                    if let Ok(r) =
                        http::try_request(port, "GET", "/api", &[("authorization", &bearer)])
                    {
                        results.lock().unwrap().push((started, r.status));
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let logout = get(&envoy, "/logout", &session);
    let revoked_at = Instant::now();
    assert_eq!(logout.status, 200, "{}", logout.body);
    assert!(
        logout.header("x-revoke-token").is_none(),
        "the client saw the revocation header: {:?}",
        logout.headers
    );
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }
    let results = results.lock().unwrap();
    let before = results.iter().filter(|(t, _)| *t < revoked_at).count();
    let after: Vec<u16> = results
        .iter()
        .filter(|(t, _)| *t >= revoked_at)
        .map(|(_, s)| *s)
        .collect();
    assert!(
        before > 10 && after.len() > 50,
        "too little load: {before} before, {} after",
        after.len()
    );
    assert!(
        after.iter().all(|s| *s == 401),
        "accepted after the revoking response completed: {} of {}",
        after.iter().filter(|s| **s != 401).count(),
        after.len()
    );
    // The load really reached every worker.
    let stats = envoy.admin("/stats?filter=worker_.\\.downstream_cx_total");
    let busy_workers = stats
        .lines()
        .filter(|l| l.contains("listener.127.0.0.1_") && !l.ends_with(": 0"))
        .count();
    assert_eq!(busy_workers, 4, "{stats}");

    assert_revoked(&get(&envoy, "/api", &session));
    // Only that token: the same user's other session and other users are unaffected.
    assert_eq!(status(&envoy, &other_session), 200);
    assert_eq!(status(&envoy, &bob), 200);
    // `sub=` revokes every token of the subject issued until now (plus the clock skew, 60 s:
    // an IdP clock ahead by that much stamps such tokens in the proxy's future).
    let signed_out_at = unix_now();
    let logout = get(&envoy, "/signout-everywhere", &other_session);
    assert_eq!(logout.status, 200);
    assert!(logout.header("x-revoke-token").is_none());
    assert_revoked(&get(&envoy, "/api", &other_session));
    assert_revoked(&get(
        &envoy,
        "/api",
        &token(Some("session-4"), "alice", now - 1),
    ));
    assert_eq!(status(&envoy, &bob), 200);
    assert_revoked(&get(
        &envoy,
        "/api",
        &token(Some("session-5"), "alice", signed_out_at + 59),
    ));
    // A token issued after the cutoff (a new login) works, once it is no longer in the
    // proxy's future beyond the skew.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        status(
            &envoy,
            &token(Some("session-6"), "alice", signed_out_at + 62)
        ),
        200
    );
    assert_eq!(
        envoy.counter_eventually("wasmcustom.bearer_guard.revocation.header_revoked", 2),
        2
    );
}

#[test]
fn downstream_cannot_inject_the_revocation_header() {
    let upstream = Upstream::start();
    let envoy = start(json!({ "response_header": "x-logout" }), &upstream, 2);
    let alice = token(Some("a-1"), "alice", unix_now() - 5);
    let response = http::get(
        envoy.port,
        "/api",
        &[
            ("authorization", &format!("Bearer {alice}")),
            ("x-logout", "sub=alice"),
            ("x-test-case", "inject"),
        ],
    );
    assert_eq!(response.status, 200);
    let seen = upstream.seen_case("inject");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("x-logout"), None, "{:?}", seen[0].headers);
    // A request header revokes nothing.
    assert_eq!(status(&envoy, &alice), 200);
}

fn list_config(refresh: u64, max_stale: u64, on_stale: &str) -> Value {
    json!({ "list": {
        "cluster": "revocations",
        "uri": "http://revocations.local/v1/list",
        "timeout_ms": 1000,
        "refresh_seconds": refresh,
        "max_stale_seconds": max_stale,
        "on_stale": on_stale,
    }})
}

#[test]
fn a_polled_list_is_enforced_within_a_refresh_and_fetched_once_per_process() {
    let upstream = Upstream::start();
    let list = RevocationServer::start();
    let (refresh, max_stale) = (1, 4);
    let envoy = start_with_list_port(
        list_config(refresh, max_stale, "deny"),
        &upstream,
        4,
        list.port,
    );
    let now = unix_now();
    let alice = token(Some("list-1"), "alice", now - 5);
    let bob = token(Some("list-2"), "bob", now - 5);
    assert!(within(Duration::from_secs(5), || status(&envoy, &alice) == 200).is_some());

    list.revoke(&json!({ "jti": [{ "jti": "list-1", "exp": now + 600 }] }));
    let took = enforced_after(&envoy, &alice, Instant::now(), Duration::from_secs(10))
        .expect("the listed jti was never enforced");
    assert!(
        took <= Duration::from_secs(refresh + 1),
        "enforced on every worker after {took:?}, more than refresh_seconds + 1 s"
    );
    assert_revoked(&get(&envoy, "/api", &alice));
    assert_eq!(status(&envoy, &bob), 200);

    // One fetch per refresh for the whole process, not one per worker.
    let before = list.stats()["gets"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let gets = list.stats()["gets"].as_u64().unwrap() - before;
    assert!(
        (2..=6).contains(&gets),
        "{gets} list fetches in 4 s with refresh 1 s and 4 workers"
    );
    assert!(
        list.stats()["not_modified"].as_u64().unwrap() >= 1,
        "conditional GETs are used"
    );
    assert!(
        list.stats()["deltas"].as_u64().unwrap() >= 1,
        "changes come as deltas"
    );

    // The service fails: tokens keep working until the list is max_stale_seconds old, then 503.
    list.fail_with(503);
    let failed = Instant::now();
    let stale = within(Duration::from_secs(max_stale + 5), || {
        status(&envoy, &bob) == 503
    })
    .expect("a stale list never led to 503");
    assert!(
        failed.elapsed() >= Duration::from_secs(max_stale - refresh),
        "503 after {stale:?}, before the list was max_stale_seconds old"
    );
    let response = get(&envoy, "/api", &bob);
    assert_eq!(response.status, 503);
    assert!(response.header("retry-after").is_some());
    assert_revoked(&get(&envoy, "/api", &alice));
    // Back up: served again within a refresh.
    list.fail_with(0);
    assert!(
        within(Duration::from_secs(refresh + 2), || status(&envoy, &bob)
            == 200)
        .is_some()
    );
    assert!(envoy.counter_at_least("wasmcustom.bearer_guard.denied.revocation_list_stale", 1) >= 1);
    assert!(envoy.counter_at_least("wasmcustom.bearer_guard.revocation.list_fetch_failed", 1) >= 1);
}

#[test]
fn without_a_list_the_stale_policy_applies_from_the_start() {
    let upstream = Upstream::start();
    // A port nothing listens on: the list is never fetched.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let alice = token(Some("x-1"), "alice", unix_now() - 5);

    let deny = start_with_list_port(list_config(1, 2, "deny"), &upstream, 2, dead_port);
    let response = get(&deny, "/api", &alice);
    assert_eq!(response.status, 503, "{}", response.body);
    assert!(response.header("retry-after").is_some());
    // A token that is bad anyway still gets its own answer.
    assert_eq!(get(&deny, "/api", "not.a.token").status, 401);
    drop(deny);

    let allow = start_with_list_port(list_config(1, 2, "allow"), &upstream, 2, dead_port);
    assert_eq!(status(&allow, &alice), 200);
    assert!(allow.counter_at_least("wasmcustom.bearer_guard.revocation.stale_allowed", 1) >= 1);
    assert!(allow.log().contains("allowed on a stale revocation list"));
}

#[test]
fn a_revocation_on_one_proxy_reaches_another_through_the_list_service() {
    let upstream = Upstream::start();
    upstream.add_response_headers("/logout", &[("x-revoke-token", "self")]);
    let list = RevocationServer::start();
    let refresh = 1;
    let mut with_publish = list_config(refresh, 30, "deny");
    with_publish["publish"] =
        json!({ "cluster": "revocations", "uri": "http://revocations.local/v1/list" });
    let proxy_a = start_with_list_port(with_publish, &upstream, 2, list.port);
    let proxy_b = start_with_list_port(list_config(refresh, 30, "deny"), &upstream, 2, list.port);
    let alice = token(Some("mesh-1"), "alice", unix_now() - 5);
    for proxy in [&proxy_a, &proxy_b] {
        assert!(within(Duration::from_secs(5), || status(proxy, &alice) == 200).is_some());
    }
    assert_eq!(get(&proxy_a, "/logout", &alice).status, 200);
    let revoked = Instant::now();
    assert_revoked(&get(&proxy_a, "/api", &alice));
    let took = enforced_after(&proxy_b, &alice, revoked, Duration::from_secs(10))
        .expect("proxy B never learned the revocation");
    assert!(
        took <= Duration::from_secs(refresh + 1),
        "proxy B enforced it after {took:?}, more than refresh_seconds + 1 s"
    );
    assert_revoked(&get(&proxy_b, "/api", &alice));
    // The service holds the entry as published (with the token's exp).
    let document = list.list();
    let entries = document["providers"]["corp"]["jti"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["jti"] == "mesh-1" && e["exp"].is_i64()),
        "{document}"
    );
    assert!(proxy_a.counter_at_least("wasmcustom.bearer_guard.revocation.publish_success", 1) >= 1);
}

/// A listener whose filter config comes from an LDS file, so a test can reload it.
fn lds_listener(revocation: Value) -> Value {
    json!({ "resources": [support::envoy::guarded_listener(
        "guarded",
        "bearer_guard",
        &config(revocation)
    )] })
}

fn write_lds(path: &std::path::Path, listener: &Value) {
    support::envoy::write_watched(path, &listener.to_string());
}

#[test]
fn a_config_reload_keeps_learned_revocations_unless_their_generation_changes() {
    let upstream = Upstream::start();
    upstream.add_response_headers("/logout", &[("x-revoke-token", "self")]);
    let dir = std::env::temp_dir().join(format!("bearer-guard-lds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let lds = dir.join("lds.json");
    write_lds(&lds, &lds_listener(json!({})));
    let bootstrap = json!({
        "node": { "id": "bearer-guard-test", "cluster": "bearer-guard-test" },
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
        "dynamic_resources": { "lds_config": {
            "resource_api_version": "V3",
            "path_config_source": { "path": lds, "watched_directory": { "path": dir } }
        }},
        "static_resources": { "clusters": [{
            "name": "upstream", "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": { "cluster_name": "upstream", "endpoints": [{ "lb_endpoints": [{
                "endpoint": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": upstream.port } } }
            }]}]}
        }]}
    });
    let mut envoy = Envoy::start_with(&bootstrap.to_string(), "guarded", 2).unwrap();
    let alice = token(Some("reload-1"), "alice", unix_now() - 5);
    assert_eq!(status(&envoy, &alice), 200);
    assert_eq!(get(&envoy, "/logout", &alice).status, 200);
    assert_revoked(&get(&envoy, "/api", &alice));

    // Reload with another (still valid) config: a new listener, new filter instances.
    let reload = |envoy: &mut Envoy, revocation: Value, reloads: u64| {
        write_lds(&lds, &lds_listener(revocation));
        within(Duration::from_secs(20), || {
            envoy.counter("listener_manager.lds.update_success") >= reloads
                && envoy.counter("listener_manager.total_listeners_draining") == 0
        })
        .expect("the LDS update was not applied");
        envoy.port = envoy.listener_port("guarded").unwrap();
    };
    reload(&mut envoy, json!({ "jti": ["unrelated"] }), 2);
    assert_revoked(&get(&envoy, "/api", &alice));
    // A new learned_generation clears what was learned.
    reload(
        &mut envoy,
        json!({ "jti": ["unrelated"], "learned_generation": 1 }),
        3,
    );
    assert_eq!(status(&envoy, &alice), 200);
    drop(envoy);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A list service that answers every poll with the document given last (a static file, a
/// cache, a rolled-back server): no ETag, no deltas.
fn list_answering(document: &Value) -> Upstream {
    Upstream::serving(200, &document.to_string())
}

/// Polls a whole list applied after `since` (two more successful fetches, so one surely
/// started after the service changed its answer).
fn wait_for_polls(envoy: &Envoy, since: u64) {
    let name = "wasmcustom.bearer_guard.revocation.list_fetch_success";
    assert!(
        envoy.counter_at_least(name, since + 2) >= since + 2,
        "the list was not polled again"
    );
}

/// The list service revokes T, then (rolled back, or a stale cache in front of it) answers
/// with an older, smaller whole list without T. T's exp is ahead: T stays refused, and the
/// rollback is counted. With `allow_removal`, the operator lets the list un-revoke T.
fn list_rollback(allow_removal: Option<bool>) -> (Envoy, String, Upstream, Upstream) {
    let upstream = Upstream::start();
    let now = unix_now();
    let newer =
        json!({ "version": "v2", "jti": [{ "jti": "rolled-back", "exp": now + 600 }, "plain"] });
    let list = list_answering(&newer);
    let mut revocation = list_config(1, 30, "deny");
    if let Some(allow) = allow_removal {
        revocation["list"]["allow_removal"] = json!(allow);
    }
    let envoy = start_with_list_port(revocation, &upstream, 2, list.port);
    let t = token(Some("rolled-back"), "alice", now - 5);
    enforced_after(&envoy, &t, Instant::now(), Duration::from_secs(10))
        .expect("the listed jti was never enforced");
    let fetched = envoy.counter("wasmcustom.bearer_guard.revocation.list_fetch_success");
    list.set_response(
        200,
        &json!({ "version": "v1", "jti": ["other"] }).to_string(),
    );
    wait_for_polls(&envoy, fetched);
    (envoy, t, list, upstream)
}

#[test]
fn an_older_whole_list_does_not_un_revoke_a_live_token() {
    let (envoy, t, _list, _upstream) = list_rollback(None);
    assert_revoked(&get(&envoy, "/api", &t));
    assert!(
        revoked_everywhere(&envoy, &t),
        "T was un-revoked on some worker"
    );
    let other = token(Some("other"), "bob", unix_now() - 5);
    assert_revoked(&get(&envoy, "/api", &other));
    // Every poll answers the same old list: counted each time, logged once per episode (per
    // VM that polled: the main thread's and at most the 2 workers').
    let rollbacks = "wasmcustom.bearer_guard.revocation.list_rollback";
    assert!(
        envoy.counter_at_least(rollbacks, 4) >= 4,
        "rollbacks not counted"
    );
    let log = envoy.log();
    let logged = log.matches("left out 2 revoked entries").count();
    assert!((1..=3).contains(&logged), "logged {logged} times:\n{log}");
    assert!(!log.contains(&t), "the token reached the log");
}

#[test]
fn an_operator_who_allows_removal_lets_the_list_un_revoke() {
    let (envoy, t, _list, _upstream) = list_rollback(Some(true));
    within(Duration::from_secs(5), || status(&envoy, &t) == 200)
        .expect("with allow_removal the list's removal never took effect");
    assert_eq!(
        envoy.counter("wasmcustom.bearer_guard.revocation.list_rollback"),
        0
    );
}

/// Two listeners in one VM (`vm_id`), each with its own filter config (`name`): a reload of
/// one with another `learned_generation` clears its own learned revocations, never the other's.
#[test]
fn a_new_learned_generation_on_one_listener_keeps_the_other_listeners_revocations() {
    let upstream = Upstream::start();
    upstream.add_response_headers("/logout", &[("x-revoke-token", "self")]);
    let dir = std::env::temp_dir().join(format!("bearer-guard-scopes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let lds = dir.join("lds.json");
    let listeners = |billing_generation: u64| {
        let orders = support::envoy::guarded_listener("orders", "orders", &config(json!({})));
        let billing = support::envoy::guarded_listener(
            "billing",
            "billing",
            &config(json!({ "learned_generation": billing_generation })),
        );
        json!({ "resources": [orders, billing] })
    };
    write_lds(&lds, &listeners(0));
    let bootstrap = support::envoy::bootstrap(&[], &[("upstream", upstream.port)], Some(&lds));
    let mut envoy = Envoy::start_with(&bootstrap, "orders", 2).unwrap();
    within(Duration::from_secs(10), || {
        envoy.listener_port("billing").is_some()
    })
    .expect("the billing listener never came up");
    let alice = token(Some("scoped-1"), "alice", unix_now() - 5);
    assert_eq!(get(&envoy, "/logout", &alice).status, 200);
    assert_revoked(&get(&envoy, "/api", &alice));

    // Only the billing listener changes: Envoy keeps the orders listener and its filter.
    write_lds(&lds, &listeners(1));
    within(Duration::from_secs(20), || {
        envoy.counter("listener_manager.lds.update_success") >= 2
            && envoy.counter("listener_manager.total_listeners_draining") == 0
    })
    .expect("the LDS update was not applied");
    envoy.port = envoy.listener_port("orders").unwrap();
    assert_revoked(&get(&envoy, "/api", &alice));
    // The orders listener learns another revocation: its log must still hold alice's.
    let bob = token(Some("scoped-2"), "bob", unix_now() - 5);
    assert_eq!(get(&envoy, "/logout", &bob).status, 200);
    assert_revoked(&get(&envoy, "/api", &bob));
    assert!(
        revoked_everywhere(&envoy, &alice),
        "the billing listener's new learned_generation wiped the orders listener's revocations"
    );
    drop(envoy);
    let _ = std::fs::remove_dir_all(&dir);
}
