//! What operators see, from a real Envoy: every counter moves by exactly what the requests
//! caused (per reason, per provider, per revocation source), the age gauges grow when a source
//! fails, the decision log is one JSON object per line with every field and never the token,
//! the access log reads the decision from filter state, the Grafana dashboard queries metrics
//! Envoy really exports, and misuse detection counts one token across workers exactly.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;
use support::testkit;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jwt_compact::jwk::JsonWebKey;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use support::envoy::Envoy;
use support::http;
use support::revocation_server::RevocationServer;
use support::upstream::Upstream;
use support::within;
use testkit::{keys, mint, public_jwk, unix_now, Signer, ISSUER};

const PARTNER: &str = "https://partner.example.com";
const STAT: &str = "wasmcustom.bearer_guard.";
/// Every field of a decision log line.
const FIELDS: &str = "time decision reason status provider iss sub jti token_fp revoked_by \
                      anomaly client_ip method path authority user_agent";

fn token(issuer: &str, jti: &str, sub: &str, changes: Value) -> String {
    let now = unix_now();
    let mut claims = json!({
        "iss": issuer, "aud": "orders-api", "sub": sub, "jti": jti,
        "iat": now - 5, "exp": now + 600
    });
    if let (Some(c), Some(changes)) = (claims.as_object_mut(), changes.as_object()) {
        c.extend(changes.clone());
    }
    mint(Signer::Rs256(&keys().rsa), Some("rsa-1"), &claims)
}

fn fingerprint(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A scratch file for Envoy's access log, removed on drop.
struct AccessLog(PathBuf);

impl AccessLog {
    fn new(name: &str) -> AccessLog {
        let path =
            std::env::temp_dir().join(format!("bearer-guard-{name}-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        AccessLog(path)
    }

    /// Lines, once Envoy flushed at least `count` of them (it flushes about every second).
    fn lines(&self, count: usize) -> Vec<String> {
        let read = || {
            std::fs::read_to_string(&self.0)
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        within(Duration::from_secs(10), || read().len() >= count);
        read()
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn start(
    config: &Value,
    upstream: &Upstream,
    ports: &[(&str, u16)],
    access_log: Option<&AccessLog>,
    concurrency: u32,
) -> Envoy {
    let ports: Vec<(&str, String)> = ports.iter().map(|(n, p)| (*n, p.to_string())).collect();
    let mut extra: Vec<(&str, &str)> = ports.iter().map(|(n, p)| (*n, p.as_str())).collect();
    let log_path = access_log.map(|l| l.0.display().to_string());
    if let Some(path) = &log_path {
        extra.push(("ACCESS_LOG", path));
    }
    if !extra.iter().any(|(n, _)| *n == "IDP_PORT") {
        extra.push(("IDP_PORT", "1"));
    }
    let yaml = support::envoy::fill_template("envoy/test.yaml.tmpl", config, upstream.port, &extra);
    Envoy::start_with(&yaml, "guarded", concurrency).unwrap()
}

fn gauge(envoy: &Envoy, name: &str) -> i64 {
    i64::try_from(envoy.counter(&format!("{STAT}{name}"))).unwrap()
}

/// Asserts each counter reaches exactly its value (counters are flushed every 250 ms).
fn assert_counters(envoy: &Envoy, expected: &[(&str, u64)]) {
    for (name, value) in expected {
        let full = format!("{STAT}{name}");
        assert_eq!(
            envoy.counter_eventually(&full, *value),
            *value,
            "counter {full}"
        );
    }
}

#[test]
fn every_decision_is_counted_logged_and_visible_to_the_access_log() {
    let upstream = Upstream::start();
    let jwks = json!({ "keys": [public_jwk(JsonWebKey::from(&keys().rsa), "rsa-1", None)] });
    let idp = Upstream::serving(200, &jwks.to_string());
    let list = RevocationServer::start();
    list.revoke(&json!({ "jti": ["j-listed"] }));
    let mut config = testkit::config_json(json!({}), None);
    config["providers"]["partner"] = json!({
        "issuer": PARTNER,
        "audiences": ["orders-api"],
        "remote_jwks": {
            "cluster": "idp",
            "uri": "http://idp.example.com/jwks.json",
            "cache_duration_seconds": 300,
            "refetch_min_interval_seconds": 1,
            "timeout_ms": 500
        }
    });
    config["revocation"] = json!({
        "jti": ["j-config"],
        "list": {
            "cluster": "revocations",
            "uri": "http://revocations.local/v1/list",
            "refresh_seconds": 1,
            "max_stale_seconds": 600
        }
    });
    config["log"] = json!({ "decisions": "all", "filter_state": true });
    let access_log = AccessLog::new("access");
    let envoy = start(
        &config,
        &upstream,
        &[("IDP_PORT", idp.port), ("REVOCATION_PORT", list.port)],
        Some(&access_log),
        // One worker: the verified-token cache is per worker, so hits and misses are exact.
        1,
    );

    let valid: Vec<String> = (1..=3)
        .map(|i| token(ISSUER, &format!("j-valid-{i}"), "alice", json!({})))
        .collect();
    let partner = token(PARTNER, "j-partner", "pat", json!({}));
    let expired = token(
        ISSUER,
        "j-expired",
        "eve",
        json!({ "iat": unix_now() - 7_200, "exp": unix_now() - 3_600 }),
    );
    let mut forged = token(ISSUER, "j-forged", "mallory", json!({}));
    forged.replace_range(forged.len() - 6.., "AAAAAA");
    let by_config = token(ISSUER, "j-config", "carol", json!({}));
    let by_list = token(ISSUER, "j-listed", "dave", json!({}));
    let wrong_audience = token(ISSUER, "j-aud", "frank", json!({ "aud": "billing" }));
    let user_agent = format!("agent/{}", "x".repeat(300));
    let send = |token: Option<&str>| {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("user-agent", user_agent.as_str())];
        if let Some(b) = &bearer {
            headers.push(("authorization", b.as_str()));
        }
        http::get(envoy.port, "/orders?page=query-secret", &headers).status
    };
    // The first valid token three times (one verification, two cache hits), the others once.
    for t in [&valid[0], &valid[0], &valid[0], &partner, &partner] {
        assert_eq!(send(Some(t)), 200);
    }
    assert_eq!(send(Some(&expired)), 401);
    assert_eq!(send(None), 401);
    assert_eq!(send(Some("not-a-jwt")), 401);
    assert_eq!(send(Some(&forged)), 401);
    assert_eq!(send(Some(&by_config)), 401);
    assert_eq!(send(Some(&by_list)), 401);
    assert_eq!(send(Some(&wrong_audience)), 401);

    assert_counters(
        &envoy,
        &[
            ("allowed", 5),
            ("provider.corp.allowed", 3),
            ("provider.partner.allowed", 2),
            ("denied.expired", 1),
            ("provider.corp.denied.expired", 1),
            ("denied.missing", 1),
            ("denied.malformed", 1),
            ("denied.signature", 1),
            ("provider.corp.denied.signature", 1),
            ("denied.revoked", 2),
            ("provider.corp.denied.revoked", 2),
            ("revoked_by.config", 1),
            ("revoked_by.list", 1),
            ("revoked_by.header", 0),
            ("revoked_by.anomaly", 0),
            ("denied.audience", 1),
            ("provider.corp.denied.audience", 1),
            ("provider.partner.denied.audience", 0),
            // Every request with a credential looks in the cache: 3 hits, 8 misses.
            ("jwt_cache_hit", 3),
            ("jwt_cache_miss", 8),
            ("denied.anomaly", 0),
            ("anomaly.detected", 0),
        ],
    );
    let jwks_ok = envoy.counter(&format!("{STAT}jwks_fetch_success"));
    assert!(jwks_ok >= 1);
    assert_eq!(
        envoy.counter(&format!("{STAT}provider.partner.jwks_fetch_success")),
        jwks_ok,
        "only the partner fetches keys"
    );
    assert!(envoy.counter(&format!("{STAT}revocation.list_fetch_success")) >= 1);
    // Gauges: one entry in the config and one in the list; both sources fresh.
    assert_eq!(gauge(&envoy, "revocation.entries"), 2);
    assert_eq!(gauge(&envoy, "revocation.list_entries"), 1);
    // The list refreshes every second, so its age stays small; the keys were fetched at start.
    assert!(gauge(&envoy, "revocation.list_age_seconds") <= 2);
    assert!(gauge(&envoy, "provider.partner.jwks_age_seconds") <= 10);

    // The decision log: one JSON line per decision, every field, never the token.
    let lines = envoy.decision_lines();
    assert_eq!(lines.len(), 12, "{lines:#?}");
    for line in &lines {
        for field in FIELDS.split_whitespace() {
            assert!(line.get(field).is_some(), "{field} missing in {line}");
        }
        assert_eq!(line["client_ip"], "127.0.0.1");
        assert_eq!(line["method"], "GET");
        assert_eq!(line["path"], "/orders");
        assert_eq!(line["authority"], "test.local");
        assert_eq!(line["user_agent"].as_str().unwrap().chars().count(), 128);
        let time = line["time"].as_str().unwrap();
        assert!(
            time.len() == 24 && time.ends_with('Z') && &time[10..11] == "T",
            "{time}"
        );
    }
    let by_jti = |jti: &str| {
        lines
            .iter()
            .find(|l| l["jti"] == jti)
            .unwrap_or_else(|| panic!("no line for {jti}"))
            .clone()
    };
    let allowed = by_jti("j-valid-1");
    assert_eq!(
        (&allowed["decision"], &allowed["reason"], &allowed["status"]),
        (&json!("allow"), &Value::Null, &Value::Null)
    );
    assert_eq!(allowed["provider"], "corp");
    assert_eq!(allowed["iss"], ISSUER);
    assert_eq!(allowed["sub"], "alice");
    assert_eq!(allowed["token_fp"], fingerprint(&valid[0]));
    assert_eq!(by_jti("j-partner")["provider"], "partner");
    let refused = by_jti("j-expired");
    assert_eq!(refused["decision"], "deny");
    assert_eq!(refused["reason"], "expired");
    assert_eq!(refused["status"], 401);
    assert_eq!(refused["sub"], "eve");
    assert_eq!(refused["token_fp"], fingerprint(&expired));
    assert_eq!(by_jti("j-config")["revoked_by"], "config");
    assert_eq!(by_jti("j-listed")["revoked_by"], "list");
    assert_eq!(by_jti("j-aud")["reason"], "audience");
    // A forged token's claims are never repeated: only its fingerprint.
    let forged_line = lines.iter().find(|l| l["reason"] == "signature").unwrap();
    assert_eq!(forged_line["token_fp"], fingerprint(&forged));
    assert_eq!(
        (
            &forged_line["sub"],
            &forged_line["iss"],
            &forged_line["jti"]
        ),
        (&Value::Null, &Value::Null, &Value::Null)
    );
    let missing = lines.iter().find(|l| l["reason"] == "missing").unwrap();
    assert_eq!(missing["token_fp"], Value::Null);

    // The access log reads the decision from filter state.
    let access = access_log.lines(12);
    assert_eq!(access.len(), 12, "{access:#?}");
    assert!(
        access.iter().any(
            |l| l.contains("401 decision=deny reason=expired provider=corp sub=eve")
                && l.contains(&format!("token_fp={}", fingerprint(&expired)))
                && l.contains("client=127.0.0.1")
        ),
        "{access:#?}"
    );
    assert!(
        access
            .iter()
            .any(|l| l
                .contains("\"GET /orders\" 200 decision=allow reason=- provider=partner sub=pat")),
        "{access:#?}"
    );
    assert!(
        access
            .iter()
            .any(|l| l.contains("401 decision=deny reason=missing provider=- sub=- token_fp=-")),
        "{access:#?}"
    );

    // No token, signature or query string anywhere in either log.
    let everything = format!("{}\n{}", envoy.log(), access.join("\n"));
    for t in valid
        .iter()
        .chain([&partner, &expired, &forged, &by_config, &by_list])
    {
        assert!(!everything.contains(t.as_str()));
        let signature = t.rsplit('.').next().unwrap();
        assert!(!everything.contains(signature));
    }
    assert!(!everything.contains("query-secret"));
    assert!(!everything.contains("not-a-jwt"));

    // Prometheus: the labels of the shipped stats_tags, and every metric and label the
    // Grafana dashboard queries.
    let prometheus = envoy.admin("/stats/prometheus");
    for series in [
        "bearer_guard_provider_allowed{bearer_guard_provider=\"corp\"} 3",
        "bearer_guard_provider_allowed{bearer_guard_provider=\"partner\"} 2",
        "bearer_guard_denied{bearer_guard_reason=\"expired\"} 1",
        "bearer_guard_revoked_by{bearer_guard_revocation_source=\"list\"} 1",
        "bearer_guard_provider_denied{bearer_guard_provider=\"corp\",bearer_guard_reason=\"revoked\"} 2",
    ] {
        assert!(prometheus.contains(series), "{series} not in /stats/prometheus");
    }
    // Shadow mode's counters are defined only for a config that shadows something: checked
    // in tests/shadow.rs.
    let mut names = support::dashboard::names();
    names.retain(|name| !support::dashboard::is_shadow(name));
    support::dashboard::assert_exported(&prometheus, &names);

    // A failing JWKS endpoint and list service: the ages grow, the failures are counted (a
    // token with an unknown key makes the partner refetch).
    idp.set_response(500, "down");
    list.fail_with(500);
    let rotated = mint(
        Signer::Rs256(&keys().rsa),
        Some("rsa-rotated"),
        &json!({ "iss": PARTNER, "aud": "orders-api", "sub": "pat", "exp": unix_now() + 600 }),
    );
    assert_eq!(send(Some(&rotated)), 401);
    let aged = within(Duration::from_secs(10), || {
        gauge(&envoy, "revocation.list_age_seconds") >= 3
    });
    assert!(
        aged.is_some(),
        "the list's age did not grow while its polls failed"
    );
    assert!(envoy.counter(&format!("{STAT}provider.partner.jwks_fetch_failed")) >= 1);
    assert!(envoy.counter(&format!("{STAT}revocation.list_fetch_failed")) >= 1);
}

fn anomaly_config(anomaly: Value) -> Value {
    let mut config = testkit::config_json(json!({}), None);
    config["anomaly"] = anomaly;
    config["revocation"] = json!({});
    config
}

fn status_from(envoy: &Envoy, source: &str, token: &str) -> (u16, String) {
    let response = http::get_from(
        source,
        envoy.port,
        "/orders",
        &[("authorization", &format!("Bearer {token}"))],
    );
    let challenge = response
        .header("www-authenticate")
        .unwrap_or_default()
        .to_owned();
    (response.status, challenge)
}

const ANOMALY: &str = "error_description=\"token use anomaly detected\"";
const REVOKED: &str = "error_description=\"token revoked\"";

#[test]
fn a_token_from_a_sixth_address_is_handled_as_the_action_says() {
    let upstream = Upstream::start();
    for action in ["deny", "log", "revoke"] {
        let config = anomaly_config(json!({
            "window_seconds": 60, "max_distinct_ips": 5, "max_requests": 1000, "action": action
        }));
        let envoy = start(&config, &upstream, &[], None, 4);
        let stolen = token(ISSUER, &format!("j-stolen-{action}"), "alice", json!({}));
        let other = token(ISSUER, &format!("j-other-{action}"), "bob", json!({}));
        for last in 2..=6 {
            for _ in 0..4 {
                let source = format!("127.0.0.{last}");
                assert_eq!(
                    status_from(&envoy, &source, &stolen).0,
                    200,
                    "{action} {source}"
                );
            }
        }
        let sixth: Vec<(u16, String)> = (0..3)
            .map(|_| status_from(&envoy, "127.0.0.7", &stolen))
            .collect();
        // Another token from the same new address is not disturbed.
        assert_eq!(status_from(&envoy, "127.0.0.7", &other).0, 200, "{action}");
        let first_address = status_from(&envoy, "127.0.0.2", &stolen);
        match action {
            "deny" => {
                assert!(
                    sixth.iter().all(|(s, c)| *s == 401 && c.contains(ANOMALY)),
                    "{sixth:?}"
                );
                // Only the offending requests: the first five addresses keep working.
                assert_eq!(first_address.0, 200);
            }
            "log" => {
                assert!(sixth.iter().all(|(s, _)| *s == 200), "{sixth:?}");
                assert_eq!(first_address.0, 200);
            }
            _ => {
                assert!(
                    sixth[0].0 == 401 && sixth[0].1.contains(ANOMALY),
                    "{sixth:?}"
                );
                // Revoked: refused everywhere from now on, as a revocation.
                for (status, challenge) in sixth.iter().skip(1).chain([&first_address]) {
                    assert!(*status == 401 && challenge.contains(REVOKED), "{sixth:?}");
                }
            }
        }
        let (denied, revoked_by_anomaly, revoked_entries) = match action {
            "deny" => (3, 0, 0),
            "log" => (0, 0, 0),
            _ => (1, 3, 1),
        };
        assert_counters(
            &envoy,
            &[
                ("anomaly.detected", 1),
                ("denied.anomaly", denied),
                ("revoked_by.anomaly", revoked_by_anomaly),
                ("revocation.anomaly_revoked", revoked_entries),
                ("anomaly.not_counted", 0),
            ],
        );
        let log = envoy.log();
        assert_eq!(
            log.matches("token misuse: max_distinct_ips exceeded")
                .count(),
            1,
            "{action}: logged once per token and window"
        );
        assert!(log.contains("client_ip=127.0.0.7"));
        if action != "log" {
            let flagged = envoy
                .decision_lines()
                .into_iter()
                .find(|l| l["reason"] == "anomaly")
                .unwrap();
            assert_eq!(flagged["anomaly"], "max_distinct_ips");
            assert_eq!(flagged["client_ip"], "127.0.0.7");
            assert_eq!(flagged["sub"], "alice");
        }
        assert!(!log.contains(&stolen));
    }
}

#[test]
fn request_counts_are_exact_across_four_workers() {
    let upstream = Upstream::start();
    let config = anomaly_config(json!({
        "window_seconds": 300, "max_distinct_ips": 64, "max_requests": 150, "action": "deny"
    }));
    let envoy = start(&config, &upstream, &[], None, 4);
    let busy = token(ISSUER, "j-busy", "alice", json!({}));
    let calm = token(ISSUER, "j-calm", "bob", json!({}));
    let busy_ok = Arc::new(AtomicUsize::new(0));
    let busy_refused = Arc::new(AtomicUsize::new(0));
    let calm_ok = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for thread in 0..12 {
            let (token, ok, refused) = if thread < 8 {
                (&busy, &busy_ok, &busy_refused)
            } else {
                (&calm, &calm_ok, &busy_refused)
            };
            let envoy = &envoy;
            scope.spawn(move || {
                for _ in 0..25 {
                    // Each request on a new connection: spread over the four workers.
                    let (status, challenge) = status_from(envoy, "127.0.0.1", token);
                    match status {
                        200 => ok.fetch_add(1, Ordering::SeqCst),
                        401 if challenge.contains(ANOMALY) => {
                            refused.fetch_add(1, Ordering::SeqCst)
                        }
                        other => panic!("unexpected {other} {challenge}"),
                    };
                }
            });
        }
    });
    assert_eq!(
        busy_ok.load(Ordering::SeqCst),
        150,
        "no request counted twice or lost"
    );
    assert_eq!(busy_refused.load(Ordering::SeqCst), 50);
    assert_eq!(
        calm_ok.load(Ordering::SeqCst),
        100,
        "the other token is not disturbed"
    );
    assert_counters(
        &envoy,
        &[
            ("allowed", 250),
            ("denied.anomaly", 50),
            ("anomaly.detected", 1),
            ("anomaly.not_counted", 0),
        ],
    );
    let stats = envoy.admin("/stats?filter=worker_.\\.downstream_cx_total");
    let busy_workers = stats
        .lines()
        .filter(|l| l.contains("listener.127.0.0.1_") && !l.ends_with(": 0"))
        .count();
    assert!(busy_workers >= 3, "load on {busy_workers} workers: {stats}");
    let over = envoy
        .decision_lines()
        .into_iter()
        .filter(|l| l["anomaly"] == "max_requests")
        .count();
    assert_eq!(over, 50);
}

#[test]
fn behind_a_trusted_proxy_the_client_is_read_from_x_forwarded_for() {
    let upstream = Upstream::start();
    let mut config = anomaly_config(json!({ "max_distinct_ips": 5, "action": "deny" }));
    // The proxy in front, and this Envoy itself (`use_remote_address: true` appends the peer).
    config["xff_num_trusted_hops"] = json!(2);
    let envoy = start(&config, &upstream, &[], None, 2);
    let token = token(ISSUER, "j-forwarded", "alice", json!({}));
    let bearer = format!("Bearer {token}");
    let from = |xff: &str| {
        http::get(
            envoy.port,
            "/orders",
            &[("authorization", &bearer), ("x-forwarded-for", xff)],
        )
        .status
    };
    for n in 1..=5 {
        assert_eq!(from(&format!("10.0.0.{n}")), 200);
    }
    assert_eq!(from("10.0.0.6"), 401, "a sixth client behind the proxy");
    // What the client wrote itself (left of the trusted proxy's entry) does not count.
    assert_eq!(from("6.6.6.6, 10.0.0.1"), 200);
    let flagged = envoy
        .decision_lines()
        .into_iter()
        .find(|l| l["reason"] == "anomaly")
        .unwrap();
    assert_eq!(flagged["client_ip"], "10.0.0.6");
    assert_counters(&envoy, &[("denied.anomaly", 1), ("allowed", 6)]);
}

#[test]
fn without_trusted_hops_a_client_cannot_choose_its_address() {
    let upstream = Upstream::start();
    let config = anomaly_config(json!({ "max_distinct_ips": 1, "action": "deny" }));
    let envoy = start(&config, &upstream, &[], None, 2);
    let token = token(ISSUER, "j-spoof", "alice", json!({}));
    let bearer = format!("Bearer {token}");
    for n in 1..=6 {
        let xff = format!("198.51.100.{n}");
        let headers = [
            ("authorization", bearer.as_str()),
            ("x-forwarded-for", &xff),
        ];
        assert_eq!(http::get(envoy.port, "/orders", &headers).status, 200);
    }
    let lines = envoy.decision_lines();
    assert!(lines.is_empty(), "{lines:?}");
    assert_counters(&envoy, &[("allowed", 6), ("anomaly.detected", 0)]);
}
