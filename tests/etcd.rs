//! Revocations kept in etcd (`revocation.etcd`) in a real Envoy against a real etcd cluster:
//! a key written is refused on every worker within a second and its delete lets the token in
//! again; revocations survive an Envoy restart and an etcd outage (until `max_stale_seconds`,
//! then the stale policy); garbage under the prefix is skipped, never fatal.
//!
//! The filter's first read of etcd is awaited by polling what a client sees: with
//! `on_stale: deny` a valid token is 503 until the first read completes, so a test waits
//! (bounded, [`FIRST_READ`]) until 20 requests in a row, each on a new connection (spread over
//! the workers), answer 200.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;
use support::testkit;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::envoy::Envoy;
use support::etcd::EtcdCluster;
use support::http;
use support::upstream::Upstream;
use support::wasm_health::{wasm_health_problems, wasm_stats};
use testkit::{keys, mint, unix_now, Signer, ISSUER};

const PREFIX: &str = "/bearer-guard/revoked/";
/// A second issuer (its own provider, same keys): `iss/<issuer>/` entries are not its.
const PARTNER: &str = "https://partner.example.com";
const REVOKED: &str = "error_description=\"token revoked\"";
/// Bound on the first read of etcd after Envoy starts (a loaded 2-core machine included).
const FIRST_READ: Duration = Duration::from_secs(10);
/// A key written or deleted is enforced on every worker within this.
const PROPAGATION: Duration = Duration::from_secs(1);
/// Requests per round, each on a new connection: they land on every worker.
const ROUND: usize = 20;

// ---- helpers -----------------------------------------------------------------------------

/// Percent-encoding of the key layout: all but RFC 3986's unreserved characters as `%XX`.
fn pct(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn jti_key(jti: &str) -> String {
    format!("{PREFIX}jti/{}", pct(jti))
}

fn subject_key(issuer: &str, sub: &str) -> String {
    format!("{PREFIX}iss/{}/sub/{}", pct(issuer), pct(sub))
}

fn token(issuer: &str, jti: &str, sub: &str) -> String {
    let now = unix_now();
    let claims = json!({
        "iss": issuer, "aud": "orders-api", "sub": sub, "jti": jti,
        "iat": now - 5, "exp": now + 600
    });
    mint(Signer::Rs256(&keys().rsa), Some("rsa-1"), &claims)
}

/// Two providers (`corp`: `ISSUER`, `partner`: `PARTNER`) and revocations from etcd.
fn config(max_stale_seconds: u64) -> Value {
    config_with(json!({ "max_stale_seconds": max_stale_seconds }))
}

/// `config` with these `revocation.etcd` keys (over `cluster: etcd`, the prefix, deny).
fn config_with(etcd: Value) -> Value {
    let mut config = testkit::config_json(json!({}), None);
    config["providers"]["partner"] = json!({
        "issuer": PARTNER,
        "audiences": ["orders-api"],
        "local_jwks": testkit::jwks(),
    });
    let mut store = json!({ "cluster": "etcd", "prefix": PREFIX, "on_stale": "deny" });
    if let (Some(store), Some(extra)) = (store.as_object_mut(), etcd.as_object()) {
        store.extend(extra.clone());
    }
    config["revocation"] = json!({ "etcd": store });
    config
}

/// Envoy with 2 workers, its `etcd` cluster on every member of `etcd`.
fn start(etcd: &EtcdCluster, upstream: &Upstream, max_stale_seconds: u64) -> Envoy {
    start_with(
        &config(max_stale_seconds),
        &etcd.envoy_endpoints(),
        upstream,
        None,
    )
}

/// Envoy with 2 workers and this plugin config; its `etcd` cluster on `endpoints` (an
/// `lb_endpoints` list), its HTTP/1.1 `revocations` cluster on `http1_port` if given.
fn start_with(
    config: &Value,
    endpoints: &str,
    upstream: &Upstream,
    http1_port: Option<u16>,
) -> Envoy {
    let port = upstream.port.to_string();
    let http1 = http1_port.unwrap_or(upstream.port).to_string();
    let yaml = support::envoy::fill_template(
        "envoy/test.yaml.tmpl",
        config,
        upstream.port,
        &[
            ("IDP_PORT", &port),
            ("ETCD_ENDPOINTS", endpoints),
            ("REVOCATION_PORT", &http1),
        ],
    );
    Envoy::start_with_args(&yaml, "guarded", 2, &[]).unwrap()
}

fn get(envoy: &Envoy, token: &str) -> http::Response {
    http::get(
        envoy.port,
        "/api",
        &[("authorization", &format!("Bearer {token}"))],
    )
}

fn status(envoy: &Envoy, token: &str) -> u16 {
    get(envoy, token).status
}

fn assert_revoked(response: &http::Response) {
    assert_eq!(response.status, 401, "{}", response.body);
    let challenge = response.header("www-authenticate").unwrap_or_default();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(challenge.contains(REVOKED), "{challenge}");
}

fn assert_stale(response: &http::Response) {
    assert_eq!(response.status, 503, "{}", response.body);
    assert!(
        response.header("retry-after").is_some(),
        "{:?}",
        response.headers
    );
}

/// A round of [`ROUND`] requests on new connections, every one answered `expected` (401: also
/// as "token revoked").
fn everywhere(envoy: &Envoy, token: &str, expected: u16) -> bool {
    (0..ROUND).all(|_| {
        let response = get(envoy, token);
        response.status == expected
            && (expected != 401
                || response
                    .header("www-authenticate")
                    .is_some_and(|c| c.contains(REVOKED)))
    })
}

/// Polls `check` until it holds; how long that took, or `None` after `limit`.
fn eventually(limit: Duration, check: impl FnMut() -> bool) -> Option<Duration> {
    support::within(limit, check)
}

/// How long after `since` every worker answered `expected`: the start of the first round that
/// did (its own requests not counted). Panics after `limit`, with Envoy's log tail.
fn everywhere_after(
    envoy: &Envoy,
    token: &str,
    expected: u16,
    since: Instant,
    limit: Duration,
    what: &str,
) -> Duration {
    while since.elapsed() < limit {
        let attempt = Instant::now();
        if everywhere(envoy, token, expected) {
            return attempt.duration_since(since);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "{what}: not {expected} on every worker within {limit:?}\n{}",
        log_tail(envoy)
    );
}

/// Waits for the filter's first read of etcd: `valid` served on every worker.
fn wait_for_first_read(envoy: &Envoy, valid: &str) {
    if eventually(FIRST_READ, || everywhere(envoy, valid, 200)).is_none() {
        let last = get(envoy, valid);
        panic!(
            "a valid token was not served within {FIRST_READ:?} of Envoy's start (the first \
             read of etcd): last answer {} {:?} {}\n{}",
            last.status,
            last.header("www-authenticate"),
            last.body,
            log_tail(envoy)
        );
    }
}

fn log_tail(envoy: &Envoy) -> String {
    let log = envoy.log();
    let tail: Vec<&str> = log.lines().rev().take(40).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

fn assert_wasm_healthy(envoy: &Envoy, vms_at_start: &std::collections::BTreeMap<String, u64>) {
    let problems = wasm_health_problems(envoy, &envoy.log(), Some(vms_at_start));
    assert!(problems.is_empty(), "{problems:#?}");
}

// ---- tests -------------------------------------------------------------------------------

#[test]
fn a_revocation_written_to_etcd_is_refused_by_every_worker_within_a_second() {
    let etcd = EtcdCluster::start(3);
    let upstream = Upstream::start();
    let envoy = start(&etcd, &upstream, 300);
    let vms = wasm_stats(&envoy);
    // A jti that percent-encodes (`:`), as the layout writes it.
    let alice = token(ISSUER, "urn:etcd:1", "alice");
    let other = token(ISSUER, "urn:etcd:2", "alice");
    wait_for_first_read(&envoy, &alice);

    etcd.put(&jti_key("urn:etcd:1"), "{}");
    let took = everywhere_after(
        &envoy,
        &alice,
        401,
        Instant::now(),
        Duration::from_secs(10),
        "a jti put in etcd",
    );
    assert!(
        took <= PROPAGATION,
        "refused on every worker {took:?} after the put, more than {PROPAGATION:?}"
    );
    assert_revoked(&get(&envoy, &alice));
    assert!(everywhere(&envoy, &other, 200), "another jti is refused");

    // Deleted: served again.
    assert!(etcd.del(&jti_key("urn:etcd:1")));
    let took = everywhere_after(
        &envoy,
        &alice,
        200,
        Instant::now(),
        Duration::from_secs(10),
        "a jti deleted from etcd",
    );
    assert!(
        took <= PROPAGATION,
        "served on every worker {took:?} after the delete, more than {PROPAGATION:?}"
    );

    // A subject of one issuer, issued before a cutoff: that issuer's tokens of that subject
    // only (the name percent-encodes: `@`).
    let carol = token(ISSUER, "c-1", "carol@example.com");
    let carol_at_partner = token(PARTNER, "c-2", "carol@example.com");
    let dave = token(ISSUER, "d-1", "dave");
    assert!(everywhere(&envoy, &carol, 200));
    assert!(everywhere(&envoy, &carol_at_partner, 200));
    etcd.put(
        &subject_key(ISSUER, "carol@example.com"),
        &json!({ "issued_before": unix_now() + 60 }).to_string(),
    );
    let took = everywhere_after(
        &envoy,
        &carol,
        401,
        Instant::now(),
        Duration::from_secs(10),
        "an issuer's subject put in etcd",
    );
    assert!(
        took <= PROPAGATION,
        "subject refused {took:?} after the put"
    );
    assert_revoked(&get(&envoy, &carol));
    assert!(
        everywhere(&envoy, &carol_at_partner, 200),
        "another issuer's token of the same sub is refused"
    );
    assert!(everywhere(&envoy, &dave, 200), "another subject is refused");
    assert_wasm_healthy(&envoy, &vms);
}

#[test]
fn revocations_survive_an_envoy_restart_and_an_etcd_outage() {
    let max_stale: u64 = 3;
    let mut etcd = EtcdCluster::start(3);
    let upstream = Upstream::start();
    let revoked = token(ISSUER, "b-revoked", "alice");
    let valid = token(ISSUER, "b-valid", "alice");
    etcd.put(
        &jti_key("b-revoked"),
        &json!({ "exp": unix_now() + 600 }).to_string(),
    );

    let first = start(&etcd, &upstream, max_stale);
    wait_for_first_read(&first, &valid);
    assert_revoked(&get(&first, &revoked));
    drop(first);

    // A new Envoy process: from its first request on, the revoked token is never served;
    // 503 (stale: not read yet) until the read, then 401.
    let envoy = start(&etcd, &upstream, max_stale);
    let vms = wasm_stats(&envoy);
    let started = Instant::now();
    let mut answers = Vec::new();
    let read = eventually(FIRST_READ, || {
        let response = get(&envoy, &revoked);
        answers.push(response.status);
        match response.status {
            401 => {
                assert_revoked(&response);
                true
            }
            503 => {
                assert_stale(&response);
                false
            }
            other => panic!(
                "the revoked token got {other} {} {:?} after a restart",
                started.elapsed().as_millis(),
                response.headers
            ),
        }
    });
    assert!(
        read.is_some(),
        "the revoked token was never refused as revoked after a restart: {answers:?}\n{}",
        log_tail(&envoy)
    );
    assert!(
        everywhere(&envoy, &revoked, 401),
        "a worker serves the revoked token"
    );
    wait_for_first_read(&envoy, &valid);

    // etcd goes down: what was read holds until max_stale_seconds...
    etcd.stop_all();
    let down = Instant::now();
    let fresh_until = Duration::from_secs(max_stale) - Duration::from_millis(700);
    while down.elapsed() < fresh_until {
        let response = get(&envoy, &valid);
        assert_eq!(
            response.status,
            200,
            "a valid token refused {:?} into an etcd outage (max_stale_seconds {max_stale})",
            down.elapsed()
        );
        assert_revoked(&get(&envoy, &revoked));
        std::thread::sleep(Duration::from_millis(100));
    }
    // ...then the stale policy (deny) answers 503 with Retry-After; the revoked stays 401.
    let stale = eventually(Duration::from_secs(max_stale + 10), || {
        status(&envoy, &valid) == 503
    });
    assert!(
        stale.is_some(),
        "a valid token never got 503 in an etcd outage\n{}",
        log_tail(&envoy)
    );
    assert_stale(&get(&envoy, &valid));
    assert_revoked(&get(&envoy, &revoked));

    // etcd comes back (from its data): served again after the watch's backoff (at most 30 s).
    etcd.restart_all();
    let back = Instant::now();
    everywhere_after(
        &envoy,
        &valid,
        200,
        back,
        Duration::from_secs(40),
        "a valid token after etcd came back",
    );
    assert_revoked(&get(&envoy, &revoked));
    assert_wasm_healthy(&envoy, &vms);
}

#[test]
fn garbage_under_the_prefix_is_skipped_not_fatal() {
    let etcd = EtcdCluster::start(3);
    let upstream = Upstream::start();
    let now = unix_now();
    // Read at start (the Range).
    let garbage = [
        (format!("{PREFIX}jti/"), "{}".to_owned()),
        (format!("{PREFIX}token/zz"), "{}".to_owned()),
        (format!("{PREFIX}jti/g-not-json"), "not json".to_owned()),
        (format!("{PREFIX}sub/g-no-cutoff"), "{}".to_owned()),
        (format!("{PREFIX}issued_before"), "\"soon\"".to_owned()),
        (format!("{PREFIX}nonsense/x"), "{}".to_owned()),
        (format!("{PREFIX}jti/g-bad%zzpct"), "{}".to_owned()),
        (
            format!("{PREFIX}jti/g-exp-text"),
            r#"{"exp":"tomorrow"}"#.to_owned(),
        ),
    ];
    for (key, value) in &garbage {
        etcd.put(key, value);
    }
    etcd.put(&jti_key("g-good"), &json!({ "exp": now + 600 }).to_string());
    let envoy = start(&etcd, &upstream, 300);
    let vms = wasm_stats(&envoy);
    let valid = token(ISSUER, "g-valid", "alice");
    let good = token(ISSUER, "g-good", "alice");
    wait_for_first_read(&envoy, &valid);
    assert!(
        everywhere(&envoy, &good, 401),
        "the good entry is not enforced"
    );
    assert_revoked(&get(&envoy, &good));

    // Seen by the watch: more garbage, then a good entry, which is enforced.
    for (key, value) in &garbage {
        etcd.put(&format!("{key}-again"), value);
        etcd.put(key, &format!("{value}!"));
    }
    etcd.put(&format!("{PREFIX}token/{}", "Z".repeat(64)), "{}");
    let later = token(ISSUER, "g-later", "alice");
    assert!(everywhere(&envoy, &later, 200));
    etcd.put(&jti_key("g-later"), "{}");
    everywhere_after(
        &envoy,
        &later,
        401,
        Instant::now(),
        Duration::from_secs(5),
        "a good entry after garbage in the watch",
    );
    assert!(
        everywhere(&envoy, &valid, 200),
        "garbage revoked a valid token"
    );
    assert_revoked(&get(&envoy, &good));
    assert_wasm_healthy(&envoy, &vms);
}

#[test]
fn a_revocation_learned_by_one_proxy_is_written_to_etcd_and_refused_by_the_other() {
    let etcd = EtcdCluster::start(3);
    let upstream = Upstream::start();
    // The upstream ends the session it serves (the default directive: `self`).
    upstream.add_response_headers("/logout", &[("x-revoke-token", "self")]);
    let a = start(&etcd, &upstream, 300);
    let b = start(&etcd, &upstream, 300);
    let vms = wasm_stats(&b);
    let session = token(ISSUER, "urn:session:7", "erin");
    wait_for_first_read(&a, &session);
    wait_for_first_read(&b, &session);
    let logout = http::get(
        a.port,
        "/logout",
        &[("authorization", &format!("Bearer {session}"))],
    );
    assert_eq!(logout.status, 200, "the logout itself is served");
    let written = Instant::now();
    everywhere_after(
        &a,
        &session,
        401,
        written,
        Duration::from_secs(10),
        "proxy a",
    );
    let took = everywhere_after(
        &b,
        &session,
        401,
        written,
        Duration::from_secs(10),
        "proxy b, through etcd",
    );
    assert!(
        took <= Duration::from_secs(2),
        "proxy b refused it {took:?} after the logout"
    );
    assert_revoked(&get(&b, &session));
    // In etcd as the layout says: under the issuer, by jti, with the token's exp (its lease).
    let key = format!("{PREFIX}iss/{}/jti/{}", pct(ISSUER), pct("urn:session:7"));
    let value: Value = serde_json::from_str(&etcd.get(&key).expect("written to etcd")).unwrap();
    assert!(
        value["exp"].as_i64().is_some_and(|exp| exp > unix_now()),
        "{value}"
    );
    assert!(a.counter_at_least("wasmcustom.bearer_guard.revocation.etcd_publish_success", 1) >= 1);
    assert!(everywhere(&b, &token(ISSUER, "urn:session:8", "erin"), 200));
    assert_wasm_healthy(&b, &vms);
}

#[test]
fn etcd_auth_errors_are_logged_and_a_proxy_with_the_right_password_reads() {
    let etcd = EtcdCluster::start(1);
    let upstream = Upstream::start();
    etcd.put(&jti_key("a-revoked"), "{}");
    // etcd's own authentication: a user who may read and write the prefix only.
    etcd.ctl(None, &["user", "add", "root:rootpw"]);
    etcd.ctl(None, &["role", "add", "revocations"]);
    etcd.ctl(
        None,
        &[
            "role",
            "grant-permission",
            "revocations",
            "--prefix=true",
            "readwrite",
            PREFIX,
        ],
    );
    etcd.ctl(None, &["user", "add", "proxy:proxypw"]);
    etcd.ctl(None, &["user", "grant-role", "proxy", "revocations"]);
    etcd.ctl(None, &["auth", "enable"]);
    let endpoints = etcd.envoy_endpoints();
    let wrong = config_with(json!({ "username": "proxy", "password": "wrong" }));
    let refused = start_with(&wrong, &endpoints, &upstream, None);
    let right = config_with(json!({ "username": "proxy", "password": "proxypw" }));
    let reads = start_with(&right, &endpoints, &upstream, None);
    let vms = wasm_stats(&reads);
    let valid = token(ISSUER, "a-valid", "alice");
    wait_for_first_read(&reads, &valid);
    assert_revoked(&get(&reads, &token(ISSUER, "a-revoked", "alice")));
    // Never read: fail closed (on_stale deny), and say why.
    assert_stale(&get(&refused, &valid));
    let logged = eventually(Duration::from_secs(10), || {
        refused.log().contains("etcd authentication failed")
    });
    assert!(logged.is_some(), "{}", log_tail(&refused));
    assert!(
        !refused.log().contains("wrong") && !reads.log().contains("proxypw"),
        "a password in the log"
    );
    assert_wasm_healthy(&reads, &vms);
}

#[test]
fn a_cluster_without_http2_is_a_clear_log_line_not_a_crash() {
    let etcd = EtcdCluster::start(1);
    let upstream = Upstream::start();
    // The `revocations` cluster speaks HTTP/1.1; etcd's gRPC needs HTTP/2.
    let config = config_with(json!({ "cluster": "revocations" }));
    let port = etcd.client_ports()[0];
    let envoy = start_with(&config, &etcd.envoy_endpoints(), &upstream, Some(port));
    let vms = wasm_stats(&envoy);
    let valid = token(ISSUER, "h-valid", "alice");
    let line = "etcd read of /bearer-guard/revoked/ through cluster \"revocations\" failed: \
                gRPC status 12";
    let logged = eventually(Duration::from_secs(15), || {
        let log = envoy.log();
        log.contains(line) && log.contains("the cluster does not speak gRPC")
    });
    assert!(logged.is_some(), "{}", log_tail(&envoy));
    assert_stale(&get(&envoy, &valid));
    assert!(envoy.counter_at_least("wasmcustom.bearer_guard.revocation.etcd_read_failed", 1) >= 1);
    // An unknown cluster name: the same, naming it (Envoy 1.40 answers ParseFailure).
    let unknown = start_with(
        &config_with(json!({ "cluster": "no-such-cluster" })),
        &etcd.envoy_endpoints(),
        &upstream,
        None,
    );
    let line = "through cluster \"no-such-cluster\" failed: not sent: ParseFailure (is the \
                cluster defined, with HTTP/2?)";
    let named = eventually(Duration::from_secs(15), || unknown.log().contains(line));
    assert!(named.is_some(), "{}", log_tail(&unknown));
    assert_stale(&get(&unknown, &valid));
    assert_wasm_healthy(&envoy, &vms);
    let unknown_vms = wasm_stats(&unknown);
    assert_wasm_healthy(&unknown, &unknown_vms);
}

#[test]
fn a_proxy_reads_and_watches_through_etcds_grpc_proxy() {
    let etcd = EtcdCluster::start(3);
    let upstream = Upstream::start();
    etcd.put(&jti_key("p-old"), "{}");
    let proxy = etcd.start_grpc_proxy();
    let endpoints = support::envoy::lb_endpoints(&[proxy.port]);
    let envoy = start_with(&config(300), &endpoints, &upstream, None);
    let vms = wasm_stats(&envoy);
    let valid = token(ISSUER, "p-valid", "alice");
    wait_for_first_read(&envoy, &valid);
    assert_revoked(&get(&envoy, &token(ISSUER, "p-old", "alice")));
    let fresh = token(ISSUER, "p-new", "alice");
    etcd.put(&jti_key("p-new"), "{}");
    let took = everywhere_after(
        &envoy,
        &fresh,
        401,
        Instant::now(),
        Duration::from_secs(10),
        "a put seen through the grpc-proxy",
    );
    assert!(
        took <= PROPAGATION,
        "{took:?} through the grpc-proxy\n{}",
        proxy.log()
    );
    assert_wasm_healthy(&envoy, &vms);
}

/// A member that stops answering without closing the stream (a paused VM, a black-holed
/// link) must not keep the proxy "in sync": a quiet watch is asked for progress, and one that
/// does not answer is stale, then broken and resumed (a reviewer's finding: it was in sync
/// from etcd's `created` until the stream closed).
#[test]
fn a_frozen_member_under_the_watch_does_not_keep_the_proxy_in_sync() {
    let max_stale: u64 = 3;
    let etcd = EtcdCluster::start(3);
    let upstream = Upstream::start();
    // Envoy reaches etcd through member 1 only (one address behind a load balancer, say).
    let endpoints = support::envoy::lb_endpoints(&etcd.client_ports()[..1]);
    let envoy = start_with(&config(max_stale), &endpoints, &upstream, None);
    let revoked = token(ISSUER, "f-revoked", "alice");
    wait_for_first_read(&envoy, &revoked);

    etcd.freeze_member(0);
    etcd.put_via(1, &jti_key("f-revoked"), "{}");
    let written = Instant::now();
    // Well past max_stale_seconds: refused as revoked (401) or as stale (503), never served.
    std::thread::sleep(Duration::from_secs(max_stale + 7));
    let served = (0..ROUND)
        .filter(|_| status(&envoy, &revoked) == 200)
        .count();
    let log = log_tail(&envoy);
    let revoked_for = written.elapsed();
    // Thawed, the member delivers the put on the same watch: the write was there all along.
    etcd.thaw_member(0);
    let caught_up = eventually(Duration::from_secs(10), || {
        everywhere(&envoy, &revoked, 401)
    });
    assert_eq!(
        served, 0,
        "{served}/{ROUND} requests with a token revoked {revoked_for:?} ago were served, \
         max_stale_seconds {max_stale} notwithstanding (refused {caught_up:?} after the member \
         was thawed)\n{log}"
    );
}

#[test]
fn a_quiet_watch_stays_in_sync_through_progress_answers() {
    let etcd = EtcdCluster::start(1);
    let upstream = Upstream::start();
    // max_stale_seconds 3: a quiet watch is asked for progress every second.
    let envoy = start(&etcd, &upstream, 3);
    let valid = token(ISSUER, "q-valid", "alice");
    wait_for_first_read(&envoy, &valid);
    // Nothing written for 8 s: still in sync (progress answers), never stale, never broken.
    let quiet = Instant::now();
    while quiet.elapsed() < Duration::from_secs(8) {
        assert_eq!(status(&envoy, &valid), 200, "{}", log_tail(&envoy));
        std::thread::sleep(Duration::from_millis(250));
    }
    let log = envoy.log();
    assert!(
        !log.contains("etcd watch of"),
        "the watch broke while etcd was quiet:\n{}",
        log_tail(&envoy)
    );
    assert_eq!(
        envoy.counter("wasmcustom.bearer_guard.revocation.etcd_watch_broken"),
        0
    );
}
