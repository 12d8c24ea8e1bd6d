//! Remote sources failing in every way a test can stage (500, garbage, 10 MB, an HTML page,
//! past the timeout, a reset mid-body, a peer that closes at once), against a real Envoy, for
//! every source: remote JWKS, the revocation list, Token Status Lists, introspection (RFC 7662),
//! the publish target and the RFC 7009 endpoint. What was fetched last stays in use (keys,
//! lists, cached answers), what cannot be known fails closed (503 + Retry-After), what must be
//! sent waits in its queue and goes out once the target works again; every failure is counted,
//! the log says it once per episode (per VM) and again when the source recovers, and nothing
//! crashes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;
use support::testkit;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::{engine::general_purpose::STANDARD, Engine};
use bearer_guard::idp::status_list::encode_claim;
use jwt_compact::jwk::JsonWebKey;
use serde_json::{json, Value};

use support::envoy::Envoy;
use support::fault::{Fault, FaultServer};
use support::http;
use support::upstream::{Upstream, UPSTREAM_BODY};
use support::wasm_health::{wasm_health_problems, wasm_stats};
use support::within;
use testkit::{keys, mint, mint_with_header, public_jwk, unix_now, Signer, ISSUER};

const PARTNER: &str = "https://partner.example.com";
const STAT: &str = "wasmcustom.bearer_guard.";

fn counter(envoy: &Envoy, name: &str) -> u64 {
    envoy.counter(&format!("{STAT}{name}"))
}

/// Every fault, in the order the tests stage them.
fn all_faults() -> [Fault; 7] {
    [
        Fault::Status500,
        Fault::Garbage,
        Fault::Huge,
        Fault::WrongContentType,
        Fault::Slow(Duration::from_millis(1_500)),
        Fault::ResetMidBody,
        Fault::Down,
    ]
}

/// An Envoy with one worker, so one VM decides requests and each episode is logged exactly
/// once; its `idp` and `revocations` clusters point at these ports.
fn start(config: &Value, upstream: &Upstream, idp_port: u16, revocations_port: u16) -> Envoy {
    let yaml = support::envoy::fill_template(
        "envoy/test.yaml.tmpl",
        config,
        upstream.port,
        &[
            ("IDP_PORT", &idp_port.to_string()),
            ("REVOCATION_PORT", &revocations_port.to_string()),
        ],
    );
    Envoy::start_with(&yaml, "guarded", 1).unwrap_or_else(|f| panic!("envoy did not start: {f:?}"))
}

fn get(envoy: &Envoy, path: &str, token: &str) -> http::Response {
    http::get(
        envoy.port,
        path,
        &[("authorization", &format!("Bearer {token}"))],
    )
}

/// Lines of Envoy's log that contain `needle`.
fn lines(envoy: &Envoy, needle: &str) -> usize {
    envoy.log().lines().filter(|l| l.contains(needle)).count()
}

fn tail(envoy: &Envoy) -> String {
    let log = envoy.log();
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(30)..].join("\n")
}

/// Waits for `check`, or fails with what the filter logged last.
fn expect(envoy: &Envoy, what: &str, limit: Duration, check: impl FnMut() -> bool) {
    if within(limit, check).is_none() {
        let stats = envoy.admin("/stats?filter=bearer_guard");
        panic!(
            "{what}: not within {limit:?}\n{stats}\n--- envoy log ---\n{}",
            tail(envoy)
        );
    }
}

/// 503 `temporarily_unavailable` with `Retry-After` and no challenge (a new token would not
/// help): how the filter fails closed.
fn assert_unavailable(response: &http::Response, what: &str) {
    assert_eq!(response.status, 503, "{what}: {}", response.body);
    assert_eq!(response.header("retry-after"), Some("5"), "{what}");
    assert!(response.header("www-authenticate").is_none(), "{what}");
    assert_eq!(
        response.json()["error"],
        "temporarily_unavailable",
        "{what}"
    );
}

fn assert_revoked(response: &http::Response, what: &str) {
    assert_eq!(response.status, 401, "{what}: {}", response.body);
    let challenge = response.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("error=\"invalid_token\""),
        "{what}: {challenge}"
    );
    assert!(
        challenge.contains("error_description=\"token revoked\""),
        "{what}: {challenge}"
    );
}

/// No wasm failure: none in Envoy's log, no failure in Envoy's wasm stats, no VM created or
/// lost since `before` (a failed VM would be replaced).
/// `FAULTS_VERBOSE=1` prints what the filter logged.
fn assert_no_wasm_failure(envoy: &Envoy, before: &BTreeMap<String, u64>) {
    let log = envoy.log();
    if std::env::var_os("FAULTS_VERBOSE").is_some() {
        for line in log.lines().filter(|l| l.contains("wasm log")) {
            eprintln!("{line}");
        }
    }
    let problems = wasm_health_problems(envoy, &log, Some(before));
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn keys_and_revocation_list_survive_every_fault_of_their_sources() {
    let upstream = Upstream::start();
    let jwks = json!({ "keys": [public_jwk(JsonWebKey::from(&keys().rsa), "rsa-1", None)] });
    let jwks_server = FaultServer::start(&jwks.to_string());
    let list_server = FaultServer::start(r#"{"jti": ["j-revoked"]}"#);
    let config = json!({
        "providers": { "partner": {
            "issuer": PARTNER,
            "remote_jwks": {
                "cluster": "idp",
                "uri": "http://idp.example.com/jwks.json",
                "cache_duration_seconds": 1,
                "timeout_ms": 500
            }
        }},
        "revocation": { "list": {
            "cluster": "revocations",
            "uri": "http://revocations.local/v1/list",
            "refresh_seconds": 1,
            "max_stale_seconds": 600,
            "timeout_ms": 500
        }}
    });
    let envoy = start(&config, &upstream, jwks_server.port, list_server.port);
    let token = |jti: &str| {
        let claims = json!({ "iss": PARTNER, "sub": "alice", "jti": jti, "exp": unix_now() + 600 });
        format!(
            "Bearer {}",
            mint(Signer::Rs256(&keys().rsa), Some("rsa-1"), &claims)
        )
    };
    let (good, revoked) = (token("j-good"), token("j-revoked"));
    let status = |auth: &str| http::get(envoy.port, "/api", &[("authorization", auth)]).status;
    within(Duration::from_secs(10), || {
        status(&good) == 200 && status(&revoked) == 401
    })
    .expect("keys and list were never fetched");
    let wasm_before = wasm_stats(&envoy);

    let faults = all_faults();
    for fault in &faults {
        let jwks_failed = counter(&envoy, "jwks_fetch_failed");
        let list_failed = counter(&envoy, "revocation.list_fetch_failed");
        jwks_server.set(fault.clone());
        list_server.set(fault.clone());
        expect(
            &envoy,
            &format!("{fault:?}: a failed fetch counted ({jwks_failed}, {list_failed} before)"),
            Duration::from_secs(15),
            || {
                counter(&envoy, "jwks_fetch_failed") > jwks_failed
                    && counter(&envoy, "revocation.list_fetch_failed") > list_failed
            },
        );
        // The last good keys and list stay in use.
        assert_eq!(status(&good), 200, "{fault:?}");
        assert_eq!(status(&revoked), 401, "{fault:?}");

        let jwks_ok = counter(&envoy, "jwks_fetch_success");
        let list_ok = counter(&envoy, "revocation.list_fetch_success")
            + counter(&envoy, "revocation.list_not_modified");
        jwks_server.set(Fault::Healthy(jwks.to_string()));
        list_server.set(Fault::Healthy(r#"{"jti": ["j-revoked"]}"#.to_owned()));
        expect(
            &envoy,
            &format!("{fault:?}: recovered"),
            Duration::from_secs(15),
            || {
                counter(&envoy, "jwks_fetch_success") > jwks_ok
                    && counter(&envoy, "revocation.list_fetch_success")
                        + counter(&envoy, "revocation.list_not_modified")
                        > list_ok
            },
        );
    }

    assert_no_wasm_failure(&envoy, &wasm_before);
    assert_eq!(status(&good), 200, "Envoy still serves");
    let log = envoy.log();
    // Once per episode and VM (Envoy's main-thread VM and the worker both poll), not once per
    // failed fetch; and a line when it works again.
    let episodes = faults.len();
    for (what, failed_counter, recovered) in [
        (
            "JWKS fetch for provider 0",
            "jwks_fetch_failed",
            "JWKS for provider 0 recovered after",
        ),
        (
            "revocation list fetch",
            "revocation.list_fetch_failed",
            "revocation list fetch recovered after",
        ),
    ] {
        let lines = log
            .lines()
            .filter(|l| l.contains(what) && l.contains("logged once"))
            .count();
        let failures = usize::try_from(counter(&envoy, failed_counter)).unwrap();
        assert!(
            (episodes..=2 * episodes).contains(&lines),
            "{what}: {lines} lines for {episodes} episodes ({failures} failures)"
        );
        assert!(
            log.matches(recovered).count() >= episodes,
            "{what}: recoveries not logged"
        );
    }
}

const OPAQUE_ISSUER: &str = "https://opaque.example";
const ANSWER_CACHE_SECONDS: u64 = 3;

/// RFC 7662: an answer cached before the IdP failed keeps serving (until its TTL, not beyond);
/// a token without one is 503 (never a guess, nothing cached), each request asking again; one
/// log line per outage and one when a call works again, with the number of failed calls.
#[test]
fn introspection_serves_cached_answers_and_fails_closed_while_the_idp_fails() {
    let upstream = Upstream::start();
    let answer = json!({
        "active": true, "iss": OPAQUE_ISSUER, "sub": "alice", "client_id": "orders-client",
        "exp": unix_now() + 3600
    })
    .to_string();
    let idp = FaultServer::start(&answer);
    let config = json!({ "providers": { "opaque": {
        "issuer": OPAQUE_ISSUER,
        "introspection": {
            "cluster": "idp",
            "uri": "http://idp.example.com/token/introspection",
            "client_id": "proxy",
            "client_secret": "proxy-secret",
            "timeout_ms": 500,
            "cache_seconds": ANSWER_CACHE_SECONDS,
            "negative_cache_seconds": 1
        }
    }}});
    let envoy = start(&config, &upstream, idp.port, upstream.port);
    let wasm_before = wasm_stats(&envoy);
    const FAILED: &str = "introspection failed:";
    const RECOVERED: &str = "introspection recovered after 3 failed call(s)";

    for (i, fault) in all_faults().iter().enumerate() {
        let cached = format!("cached-{i}");
        let r = get(&envoy, "/api", &cached);
        assert_eq!(r.status, 200, "{fault:?}: {}\n{}", r.body, tail(&envoy));
        // Exactly: per fault so far, one call for `cached-` and one after the recovery
        // answered; three failed.
        let answered = 2 * i as u64 + 1;
        assert_eq!(
            envoy.counter_eventually(&format!("{STAT}introspection.success"), answered),
            answered,
            "{fault:?}"
        );
        let failed = 3 * i as u64;
        assert_eq!(counter(&envoy, "introspection.failed"), failed, "{fault:?}");
        assert_eq!(counter(&envoy, "denied.unavailable"), failed, "{fault:?}");
        let (failed_lines, recovered_lines) = (lines(&envoy, FAILED), lines(&envoy, RECOVERED));

        idp.set(fault.clone());
        let calls = idp.received().len();
        // The cached answer serves without a call.
        assert_eq!(get(&envoy, "/api", &cached).status, 200, "{fault:?}");
        for j in 0..3 {
            let r = get(&envoy, "/api", &format!("fresh-{i}-{j}"));
            assert_unavailable(&r, &format!("{fault:?}: no cached answer"));
        }
        assert_eq!(idp.received().len(), calls + 3, "{fault:?}: one call each");
        assert_eq!(
            envoy.counter_eventually(&format!("{STAT}introspection.failed"), failed + 3),
            failed + 3,
            "{fault:?}"
        );
        assert_eq!(
            envoy.counter_eventually(&format!("{STAT}denied.unavailable"), failed + 3),
            failed + 3,
            "{fault:?}"
        );
        assert_eq!(counter(&envoy, "introspection.success"), answered);
        assert_eq!(lines(&envoy, FAILED), failed_lines + 1, "{fault:?}: once");

        // Nothing was cached from the failures: the same token is asked again and passes.
        idp.set(Fault::Healthy(answer.clone()));
        let r = get(&envoy, "/api", &format!("fresh-{i}-0"));
        assert_eq!(r.status, 200, "{fault:?} recovered: {}", r.body);
        expect(
            &envoy,
            &format!("{fault:?}: recovery logged"),
            Duration::from_secs(2),
            || lines(&envoy, RECOVERED) == recovered_lines + 1,
        );
    }

    // An answer cached before the outage serves until its TTL, then 503 (never past it).
    let last = "cached-last";
    assert_eq!(get(&envoy, "/api", last).status, 200);
    let cached_at = Instant::now();
    idp.set(Fault::Down);
    assert_eq!(get(&envoy, "/api", last).status, 200);
    expect(
        &envoy,
        "the cached answer expires",
        Duration::from_secs(ANSWER_CACHE_SECONDS + 3),
        || get(&envoy, "/api", last).status == 503,
    );
    assert!(cached_at.elapsed() <= Duration::from_secs(ANSWER_CACHE_SECONDS + 1));
    idp.set(Fault::Healthy(answer.clone()));
    assert_eq!(get(&envoy, "/api", last).status, 200, "Envoy still serves");
    assert_no_wasm_failure(&envoy, &wasm_before);
}

const STATUS_URI: &str = "http://status.test/lists/1";

/// The issuer's Status List Token for `uri` (1 bit per token), refetched every `ttl`.
fn status_list(uri: &str, statuses: &[u8], ttl: u64) -> String {
    let now = unix_now();
    mint_with_header(
        Signer::Rs256(&keys().rsa),
        json!({ "kid": "rsa-1", "typ": "statuslist+jwt" }),
        &json!({
            "sub": uri, "iat": now, "exp": now + 3600, "ttl": ttl,
            "status_list": encode_claim(1, statuses).unwrap()
        }),
    )
}

/// A token of the `corp` provider whose status is entry `idx` of the list at `uri`.
fn listed_token(jti: &str, idx: u64, uri: &str) -> String {
    let claims = json!({
        "iss": ISSUER, "aud": "orders-api", "sub": "alice", "exp": unix_now() + 600, "jti": jti,
        "status": { "status_list": { "idx": idx, "uri": uri } }
    });
    mint(Signer::Rs256(&keys().rsa), Some("rsa-1"), &claims)
}

/// Token Status Lists: the list held keeps deciding (a valid token passes, a revoked one is
/// refused) while its refetches fail; a list never fetched fails closed (503, `on_stale: deny`)
/// within the fetch timeout + 2 s; each list logs its episode once and its recovery.
#[test]
fn a_held_status_list_keeps_deciding_and_a_missing_one_fails_closed_while_the_issuer_fails() {
    let upstream = Upstream::start();
    let list = status_list(STATUS_URI, &[0, 1, 0, 0], 1);
    let issuer = FaultServer::start(&list);
    let mut config = testkit::config_json(json!({}), None);
    config["revocation"] = json!({ "status_list": {
        "clusters": { "status.test": "idp" },
        "timeout_ms": 500,
        "max_stale_seconds": 600
    }});
    let envoy = start(&config, &upstream, issuer.port, upstream.port);
    let wasm_before = wasm_stats(&envoy);
    let valid = listed_token("s-valid", 0, STATUS_URI);
    let revoked = listed_token("s-revoked", 1, STATUS_URI);
    let r = get(&envoy, "/api", &valid);
    assert_eq!(r.status, 200, "{}\n{}", r.body, tail(&envoy));
    assert_revoked(&get(&envoy, "/api", &revoked), "before any fault");
    let failed_line = format!("status list {STATUS_URI} not usable");
    let recovered_line = format!("status list {STATUS_URI} recovered after");

    let faults = all_faults();
    for (i, fault) in faults.iter().enumerate() {
        let (failed_lines, recovered_lines) =
            (lines(&envoy, &failed_line), lines(&envoy, &recovered_line));
        let failed = counter(&envoy, "status_list.fetch_failed");
        let stale = counter(&envoy, "denied.revocation_list_stale");
        issuer.set(fault.clone());
        // The held list is due every second (ttl 1): its refetch fails.
        expect(
            &envoy,
            &format!("{fault:?}: failed refetch logged"),
            Duration::from_secs(10),
            || lines(&envoy, &failed_line) > failed_lines,
        );
        assert!(
            envoy.counter_at_least(&format!("{STAT}status_list.fetch_failed"), failed + 1) > failed,
            "{fault:?}: not counted"
        );
        // The last good list keeps deciding.
        assert_eq!(get(&envoy, "/api", &valid).status, 200, "{fault:?}");
        assert_revoked(&get(&envoy, "/api", &revoked), &format!("{fault:?}"));
        // A list never fetched: the request waits for its fetch, which fails: 503.
        let missing_uri = format!("http://status.test/lists/missing-{i}");
        let missing = listed_token(&format!("s-missing-{i}"), 0, &missing_uri);
        let asked = Instant::now();
        let r = get(&envoy, "/api", &missing);
        assert_unavailable(&r, &format!("{fault:?}: list never fetched"));
        assert!(
            asked.elapsed() < Duration::from_millis(3_500),
            "{fault:?}: answered after {:?}",
            asked.elapsed()
        );
        assert!(
            envoy.counter_at_least(&format!("{STAT}denied.revocation_list_stale"), stale + 1)
                > stale
        );
        // While that list's next attempt is seconds away, its requests are answered at once
        // rather than held until their deadline.
        let asked = Instant::now();
        assert_unavailable(
            &get(&envoy, "/api", &missing),
            &format!("{fault:?}: list in its retry wait"),
        );
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "{fault:?}: answered after {:?} during the retry wait",
            asked.elapsed()
        );

        issuer.route(
            &format!("/lists/missing-{i}"),
            &status_list(&missing_uri, &[0], 3600),
        );
        issuer.set(Fault::Healthy(list.clone()));
        // Retried 5 s after a failure.
        let missing_recovered =
            format!("status list {missing_uri} recovered after 1 failed fetch(es)");
        expect(
            &envoy,
            &format!("{fault:?}: recovery logged"),
            Duration::from_secs(10),
            || {
                lines(&envoy, &recovered_line) > recovered_lines
                    && lines(&envoy, &missing_recovered) == 1
            },
        );
        assert_eq!(get(&envoy, "/api", &missing).status, 200, "{fault:?}");
        assert_eq!(get(&envoy, "/api", &valid).status, 200, "{fault:?}");
        assert_revoked(&get(&envoy, "/api", &revoked), &format!("{fault:?}"));
    }

    // Once per episode and list (the list that never came logged its one failure too).
    assert_eq!(lines(&envoy, &failed_line), faults.len());
    assert_eq!(lines(&envoy, &recovered_line), faults.len());
    for i in 0..faults.len() {
        let uri = format!("http://status.test/lists/missing-{i}");
        assert_eq!(lines(&envoy, &format!("status list {uri} not usable")), 1);
    }
    assert_no_wasm_failure(&envoy, &wasm_before);
}

/// The revocation config of the publish and RFC 7009 tests: POSTs to the `revocations`
/// cluster (the list service) and the `idp` cluster (the IdP's revocation endpoint).
fn outgoing_revocations(max_attempts: u32) -> Value {
    let mut config = testkit::config_json(json!({}), None);
    config["revocation"] = json!({
        "publish": {
            "cluster": "revocations",
            "uri": "http://revocations.local/v1/list",
            "timeout_ms": 500,
            "max_attempts": max_attempts
        },
        "idp": {
            "cluster": "idp",
            "uri": "http://idp.example.com/token/revocation",
            "client_id": "proxy",
            "client_secret": "proxy-secret",
            "timeout_ms": 500,
            "max_attempts": max_attempts
        }
    });
    config
}

fn session(jti: &str) -> String {
    let claims = json!({
        "iss": ISSUER, "aud": "orders-api", "sub": "alice", "jti": jti, "exp": unix_now() + 600
    });
    mint(Signer::Rs256(&keys().rsa), Some("rsa-1"), &claims)
}

/// A logout (`x-revoke-token: self`) while the target fails: the logout itself is answered at
/// once and the token is refused at once; the revocation waits in its queue and is delivered
/// once the target works. Counted, logged once per outage and on recovery.
fn logout(envoy: &Envoy, token: &str, what: &str) {
    let started = Instant::now();
    let r = get(envoy, "/logout", token);
    assert_eq!(r.status, 200, "{what}: {}", r.body);
    assert_eq!(r.body, UPSTREAM_BODY, "{what}");
    assert!(r.header("x-revoke-token").is_none(), "{what}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{what}: the logout waited {:?}",
        started.elapsed()
    );
    assert_revoked(
        &get(envoy, "/api", token),
        &format!("{what}: after the logout"),
    );
}

/// Publish (to the list service) and RFC 7009 (to the IdP) against every fault. The list
/// service answers `{"version": ...}`: anything else is a failed attempt. RFC 7009 §2.2: the
/// status alone decides (the body is ignored), so a 200 with garbage, 10 MB or an HTML page is
/// delivered there.
#[test]
fn revocations_wait_in_their_queues_and_go_out_once_publish_and_idp_targets_recover() {
    let upstream = Upstream::start();
    upstream.add_response_headers("/logout", &[("x-revoke-token", "self")]);
    let list_answer = r#"{"version": "fault-1"}"#;
    let list_service = FaultServer::start(list_answer);
    let idp = FaultServer::start("");
    let envoy = start(
        &outgoing_revocations(20),
        &upstream,
        idp.port,
        list_service.port,
    );
    let wasm_before = wasm_stats(&envoy);
    let basic = format!("Basic {}", STANDARD.encode("proxy:proxy-secret"));
    const PUBLISH_FAILED: &str = "revocation publish failed (";
    const PUBLISH_RECOVERED: &str = "revocation publish recovered after";
    const IDP_FAILED: &str = "token revocation at the identity provider failed (";
    const IDP_RECOVERED: &str = "token revocation at the identity provider recovered after";

    let faults = all_faults();
    let mut idp_episodes = 0;
    for (i, fault) in faults.iter().enumerate() {
        let jti = format!("logout-{i}");
        let token = session(&jti);
        assert_eq!(get(&envoy, "/api", &token).status, 200, "{fault:?}");
        let published = counter(&envoy, "revocation.publish_success");
        let publish_failed = counter(&envoy, "revocation.publish_failed");
        let sent = counter(&envoy, "revocation.idp_success");
        let idp_failed = counter(&envoy, "revocation.idp_failed");
        let idp_delivers = matches!(
            fault,
            Fault::Garbage | Fault::Huge | Fault::WrongContentType
        );
        let logged = (
            lines(&envoy, PUBLISH_FAILED),
            lines(&envoy, PUBLISH_RECOVERED),
            lines(&envoy, IDP_FAILED),
            lines(&envoy, IDP_RECOVERED),
        );

        list_service.set(fault.clone());
        idp.set(fault.clone());
        logout(&envoy, &token, &format!("{fault:?}"));
        expect(
            &envoy,
            &format!("{fault:?}: failed POSTs counted"),
            Duration::from_secs(10),
            || {
                counter(&envoy, "revocation.publish_failed") > publish_failed
                    && if idp_delivers {
                        counter(&envoy, "revocation.idp_success") > sent
                    } else {
                        counter(&envoy, "revocation.idp_failed") > idp_failed
                    }
            },
        );
        assert_eq!(
            counter(&envoy, "revocation.publish_success"),
            published,
            "{fault:?}"
        );
        if idp_delivers {
            assert_eq!(
                counter(&envoy, "revocation.idp_failed"),
                idp_failed,
                "{fault:?}"
            );
        } else {
            assert_eq!(counter(&envoy, "revocation.idp_success"), sent, "{fault:?}");
            idp_episodes += 1;
        }
        // Still refused while its revocation waits to go out.
        assert_revoked(&get(&envoy, "/api", &token), &format!("{fault:?}: queued"));

        list_service.set(Fault::Healthy(list_answer.to_owned()));
        idp.set(Fault::Healthy(String::new()));
        expect(
            &envoy,
            &format!("{fault:?}: delivered after recovery"),
            Duration::from_secs(10),
            || {
                counter(&envoy, "revocation.publish_success") > published
                    && counter(&envoy, "revocation.idp_success") > sent
            },
        );
        assert_eq!(counter(&envoy, "revocation.publish_success"), published + 1);
        assert_eq!(counter(&envoy, "revocation.idp_success"), sent + 1);
        // What the targets received: the entry (once, answered well) and the token.
        let posts: Vec<_> = list_service
            .received()
            .into_iter()
            .filter(|r| r.body.contains(&format!("\"{jti}\"")))
            .collect();
        assert!(posts
            .iter()
            .all(|r| r.method == "POST" && r.path == "/v1/list"));
        assert!(
            posts.len() >= 2,
            "{fault:?}: a failed attempt, then a good one: {posts:?}"
        );
        assert_eq!(posts.iter().filter(|r| r.healthy).count(), 1, "{fault:?}");
        let body: Value = serde_json::from_str(&posts.last().unwrap().body).unwrap();
        assert_eq!(body["providers"]["corp"]["jti"][0]["jti"], jti.as_str());
        let form = format!("token={token}&token_type_hint=access_token");
        let revocations: Vec<_> = idp
            .received()
            .into_iter()
            .filter(|r| r.body == form)
            .collect();
        assert!(revocations
            .iter()
            .all(|r| r.method == "POST" && r.header("authorization") == Some(basic.as_str())));
        if idp_delivers {
            assert_eq!(
                revocations.len(),
                1,
                "{fault:?}: delivered, never sent again"
            );
        } else {
            assert!(revocations.len() >= 2, "{fault:?}: {revocations:?}");
            assert_eq!(revocations.iter().filter(|r| r.healthy).count(), 1);
        }

        // One line for the outage, one for its end.
        expect(
            &envoy,
            &format!("{fault:?}: logged"),
            Duration::from_secs(2),
            || {
                lines(&envoy, PUBLISH_FAILED) == logged.0 + 1
                    && lines(&envoy, PUBLISH_RECOVERED) == logged.1 + 1
                    && lines(&envoy, IDP_FAILED) == logged.2 + usize::from(!idp_delivers)
                    && lines(&envoy, IDP_RECOVERED) == logged.3 + usize::from(!idp_delivers)
            },
        );
        assert_revoked(
            &get(&envoy, "/api", &token),
            &format!("{fault:?}: delivered"),
        );
    }
    assert_eq!(idp_episodes, 4);
    assert_eq!(lines(&envoy, PUBLISH_FAILED), faults.len());
    assert_eq!(lines(&envoy, IDP_FAILED), idp_episodes);
    assert_eq!(counter(&envoy, "revocation.publish_dropped"), 0);
    assert_eq!(counter(&envoy, "revocation.idp_dropped"), 0);
    assert_no_wasm_failure(&envoy, &wasm_before);
}

/// `max_attempts` failed POSTs: the entry (publish) and the token (RFC 7009) are dropped,
/// counted and logged; the token stays revoked on this proxy, and later revocations go out
/// once the targets work again.
#[test]
fn revocations_that_cannot_be_delivered_are_dropped_after_max_attempts() {
    let upstream = Upstream::start();
    upstream.add_response_headers("/logout", &[("x-revoke-token", "self")]);
    let list_service = FaultServer::start(r#"{"version": "fault-1"}"#);
    let idp = FaultServer::start("");
    list_service.set(Fault::Down);
    idp.set(Fault::Status500);
    let envoy = start(
        &outgoing_revocations(2),
        &upstream,
        idp.port,
        list_service.port,
    );
    let wasm_before = wasm_stats(&envoy);
    let token = session("dropped-1");
    assert_eq!(get(&envoy, "/api", &token).status, 200);
    logout(&envoy, &token, "targets down");
    expect(
        &envoy,
        "dropped after 2 attempts",
        Duration::from_secs(10),
        || {
            counter(&envoy, "revocation.publish_dropped") == 1
                && counter(&envoy, "revocation.idp_dropped") == 1
        },
    );
    assert_eq!(counter(&envoy, "revocation.publish_failed"), 2);
    assert_eq!(counter(&envoy, "revocation.idp_failed"), 2);
    assert_eq!(list_service.received().len(), 2);
    assert_eq!(idp.received().len(), 2);
    for what in [
        "revocation publish: 1 entries dropped after repeated failures",
        "token revocation at the identity provider: 1 entries dropped after repeated failures",
    ] {
        assert_eq!(lines(&envoy, what), 1, "{what}");
    }
    assert_revoked(&get(&envoy, "/api", &token), "dropped from the queues");
    // Not retried once dropped.
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(list_service.received().len(), 2);
    assert_eq!(idp.received().len(), 2);

    list_service.set(Fault::Healthy(r#"{"version": "fault-2"}"#.to_owned()));
    idp.set(Fault::Healthy(String::new()));
    let next = session("dropped-2");
    logout(&envoy, &next, "targets back");
    expect(
        &envoy,
        "the next revocation goes out",
        Duration::from_secs(5),
        || {
            counter(&envoy, "revocation.publish_success") == 1
                && counter(&envoy, "revocation.idp_success") == 1
        },
    );
    for what in [
        "revocation publish recovered after 2 failed attempt(s)",
        "token revocation at the identity provider recovered after 2 failed attempt(s)",
    ] {
        expect(&envoy, what, Duration::from_secs(2), || {
            lines(&envoy, what) == 1
        });
    }
    assert_no_wasm_failure(&envoy, &wasm_before);
}
