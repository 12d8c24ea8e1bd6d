//! bearer-guard inside a real Envoy: real HTTP in, a real upstream behind it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;
use support::testkit;

use jwt_compact::jwk::JsonWebKey;
use serde_json::{json, Value};

use support::envoy::{test_config, Envoy};
use support::http;
use support::ports::free_port;
use support::upstream::{Upstream, UPSTREAM_BODY};
use testkit::{keys, mint, public_jwk, unix_now, Signer, ISSUER};

fn plugin_config() -> Value {
    let jwks = testkit::jwks_all_algorithms();
    json!({
        "providers": {
            "corp": {
                "issuer": ISSUER,
                "audiences": ["orders-api"],
                "local_jwks": jwks,
                "algorithms": ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "ES512", "EdDSA", "HS256"],
                "forward_payload_header": "x-jwt-payload",
                "claim_to_headers": [{ "claim_name": "sub", "header_name": "x-jwt-sub" }],
            }
        },
        "rules": [
            { "match": { "prefix": "/healthz" } },
            { "match": { "path": "/login", "methods": ["POST"] } },
            { "match": { "regex": "/items/[0-9]+" } },
            { "match": { "prefix": "/admin-api" }, "requires": { "provider_name": "corp" },
              "scopes": ["admin"] },
            { "match": { "prefix": "/api" }, "requires": { "provider_name": "corp" } }
        ]
    })
}

/// Claims valid now, with `changes` applied (`null` removes a claim).
fn claims(changes: Value) -> Value {
    let now = unix_now();
    let mut claims = json!({
        "iss": ISSUER, "aud": "orders-api", "sub": "alice", "iat": now - 10, "exp": now + 600,
    });
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

fn rs256(changes: Value) -> String {
    mint(Signer::Rs256(&keys().rsa), Some("rsa-1"), &claims(changes))
}

struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    headers: Vec<(String, String)>,
    status: u16,
    /// Exact `WWW-Authenticate`, or `None` when there must be none.
    challenge: Option<String>,
    reaches_upstream: bool,
}

fn bearer(token: &str) -> Vec<(String, String)> {
    vec![("authorization".into(), format!("Bearer {token}"))]
}

fn invalid(description: &str) -> Option<String> {
    Some(format!(
        "Bearer realm=\"bearer-guard\", error=\"invalid_token\", error_description=\"{description}\""
    ))
}

fn allowed(name: &'static str, path: &'static str, headers: Vec<(String, String)>) -> Case {
    Case {
        name,
        method: "GET",
        path,
        headers,
        status: 200,
        challenge: None,
        reaches_upstream: true,
    }
}

/// ES384/ES512: verified by the host; without it, refused as unsupported.
fn host_only(host: bool, name: &'static str, token: &str) -> Case {
    if host {
        allowed(name, "/api/orders", bearer(token))
    } else {
        rejected(name, token, "token algorithm not supported")
    }
}

fn rejected(name: &'static str, token: &str, description: &str) -> Case {
    Case {
        name,
        method: "GET",
        path: "/api/orders",
        headers: bearer(token),
        status: 401,
        challenge: invalid(description),
        reaches_upstream: false,
    }
}

#[test]
fn decisions_with_host_crypto() {
    decisions_seen_by_clients_and_upstream("auto");
}

/// The in-wasm fallback (`"crypto": "wasm"`) decides the same over the same corpus, except
/// ES384/ES512, which only the host verifies and which are then refused.
#[test]
fn decisions_with_wasm_crypto() {
    decisions_seen_by_clients_and_upstream("wasm");
}

fn decisions_seen_by_clients_and_upstream(crypto: &str) {
    let host = crypto == "auto";
    let mut config = plugin_config();
    config["crypto"] = json!(crypto);
    let upstream = Upstream::start();
    let envoy = Envoy::start(&test_config(&config, upstream.port))
        .unwrap_or_else(|f| panic!("envoy did not start: {f:?}"));
    let where_verified = if host { "the host" } else { "wasm" };
    assert!(
        envoy
            .log()
            .contains(&format!("signatures verified in {where_verified}")),
        "{}",
        envoy.log()
    );
    let k = keys();
    let now = unix_now();
    let valid = rs256(json!({}));
    let unsigned = testkit::unsigned_with_header(
        &json!({ "alg": "none", "kid": "rsa-1" }),
        &claims(json!({})),
    );
    let unsigned = format!("{}.", unsigned.rsplit_once('.').unwrap().0);
    let cases = vec![
        allowed("valid-rs256", "/api/orders", bearer(&valid)),
        allowed(
            "valid-es256",
            "/api/orders?limit=5",
            bearer(&mint(
                Signer::Es256(&k.ec),
                Some("ec-1"),
                &claims(json!({})),
            )),
        ),
        allowed(
            "lowercase-scheme",
            "/api/orders",
            vec![("authorization".into(), format!("bearer {valid}"))],
        ),
        allowed("public-route", "/healthz", vec![]),
        allowed(
            "public-route-spoofed-claim-header",
            "/healthz",
            vec![("x-jwt-sub".into(), "mallory".into())],
        ),
        allowed(
            "valid-rs384",
            "/api/orders",
            bearer(&mint(
                Signer::Rs384(&k.rsa),
                Some("rsa-any"),
                &claims(json!({})),
            )),
        ),
        allowed(
            "valid-rs512",
            "/api/orders",
            bearer(&mint(
                Signer::Rs512(&k.rsa),
                Some("rsa-any"),
                &claims(json!({})),
            )),
        ),
        host_only(
            host,
            "valid-es384",
            &mint(Signer::Es384(&k.ec384), Some("ec-384"), &claims(json!({}))),
        ),
        host_only(
            host,
            "valid-es512",
            &mint(Signer::Es512(&k.ec521), Some("ec-521"), &claims(json!({}))),
        ),
        allowed(
            "valid-ps256",
            "/api/orders",
            bearer(&mint(
                Signer::Ps256(&k.rsa),
                Some("rsa-any"),
                &claims(json!({})),
            )),
        ),
        allowed(
            "valid-eddsa",
            "/api/orders",
            bearer(&mint(
                Signer::EdDsa(&k.ed25519.0),
                Some("ed-1"),
                &claims(json!({})),
            )),
        ),
        allowed(
            "valid-hs256",
            "/api/orders",
            bearer(&mint(
                Signer::Hs256(&k.hmac_secret),
                Some("hmac-1"),
                &claims(json!({})),
            )),
        ),
        rejected(
            "hs256-with-rsa-public-key",
            &mint(
                Signer::Hs256(testkit::rsa_public_pem().as_bytes()),
                Some("rsa-1"),
                &claims(json!({})),
            ),
            "token algorithm does not match the key",
        ),
        rejected(
            "ps512-not-allowed",
            &mint(Signer::Ps512(&k.rsa), Some("rsa-any"), &claims(json!({}))),
            "token algorithm not accepted",
        ),
        rejected(
            "unknown-crit",
            &testkit::mint_with_header(
                Signer::Rs256(&k.rsa),
                json!({ "kid": "rsa-1", "crit": ["urn:example:ext"], "urn:example:ext": true }),
                &claims(json!({})),
            ),
            "unsupported critical header parameter",
        ),
        rejected(
            "id-token",
            &rs256(json!({ "nonce": "n-0S6_WzA2Mj" })),
            "not an access token",
        ),
        rejected(
            "es256-bad-signature",
            &mint(
                Signer::Es256(&p256::ecdsa::SigningKey::random(&mut rsa::rand_core::OsRng)),
                Some("ec-1"),
                &claims(json!({})),
            ),
            "signature verification failed",
        ),
        rejected(
            "rs512-bad-signature",
            &mint(
                Signer::Rs512(&k.rsa_other),
                Some("rsa-any"),
                &claims(json!({})),
            ),
            "signature verification failed",
        ),
        Case {
            method: "POST",
            ..allowed("public-exact-path", "/login", vec![])
        },
        rejected(
            "expired",
            &rs256(json!({ "exp": now - 3600, "iat": now - 7200 })),
            "token expired",
        ),
        rejected(
            "nbf-future",
            &rs256(json!({ "nbf": now + 3600 })),
            "token not yet valid",
        ),
        rejected(
            "wrong-iss",
            &rs256(json!({ "iss": "https://evil.example" })),
            "issuer not accepted",
        ),
        rejected(
            "wrong-aud",
            &rs256(json!({ "aud": "billing-api" })),
            "audience not accepted",
        ),
        rejected(
            "bad-signature",
            &mint(
                Signer::Rs256(&k.rsa_other),
                Some("rsa-1"),
                &claims(json!({})),
            ),
            "signature verification failed",
        ),
        rejected(
            "unknown-kid",
            &mint(
                Signer::Rs256(&k.rsa),
                Some("rotated-away"),
                &claims(json!({})),
            ),
            "signing key not found",
        ),
        rejected("alg-none", &unsigned, "unsigned tokens are not accepted"),
        rejected("garbage", "not-a-jwt", "token is malformed"),
        Case {
            name: "missing",
            method: "GET",
            path: "/api/orders",
            headers: vec![],
            status: 401,
            challenge: Some("Bearer realm=\"bearer-guard\"".into()),
            reaches_upstream: false,
        },
        Case {
            name: "basic-scheme-is-no-bearer",
            method: "GET",
            path: "/api/orders",
            headers: vec![("authorization".into(), "Basic dXNlcjpwYXNz".into())],
            status: 401,
            challenge: Some("Bearer realm=\"bearer-guard\"".into()),
            reaches_upstream: false,
        },
        Case {
            name: "two-authorization-headers",
            method: "GET",
            path: "/api/orders",
            headers: [bearer(&valid), bearer(&valid)].concat(),
            status: 400,
            challenge: Some(
                "Bearer realm=\"bearer-guard\", error=\"invalid_request\", \
                 error_description=\"more than one credential in the request\""
                    .into(),
            ),
            reaches_upstream: false,
        },
        allowed("public-regex-route", "/items/42", vec![]),
        Case {
            name: "regex-is-a-full-match",
            method: "GET",
            path: "/items/42/secret",
            headers: vec![],
            status: 403,
            challenge: None,
            reaches_upstream: false,
        },
        Case {
            name: "insufficient-scope",
            method: "GET",
            path: "/admin-api/users",
            headers: bearer(&valid),
            status: 403,
            challenge: Some(
                "Bearer realm=\"bearer-guard\", error=\"insufficient_scope\", \
                 error_description=\"the token lacks a required scope\", scope=\"admin\""
                    .into(),
            ),
            reaches_upstream: false,
        },
        Case {
            method: "OPTIONS",
            ..allowed(
                "cors-preflight",
                "/api/orders",
                vec![
                    ("origin".into(), "https://app.example".into()),
                    ("access-control-request-method".into(), "POST".into()),
                ],
            )
        },
        Case {
            name: "no-rule-matches",
            method: "GET",
            path: "/admin",
            headers: bearer(&valid),
            status: 403,
            challenge: None,
            reaches_upstream: false,
        },
        Case {
            name: "dot-segments-do-not-escape-to-public",
            method: "GET",
            path: "/healthz/../api/orders",
            headers: vec![],
            status: 401,
            challenge: Some("Bearer realm=\"bearer-guard\"".into()),
            reaches_upstream: false,
        },
    ];

    let mut failures = Vec::new();
    for case in &cases {
        let mut headers: Vec<(&str, &str)> = case
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        headers.push(("x-test-case", case.name));
        let response = http::request(envoy.port, case.method, case.path, &headers);
        let reached = !upstream.seen_case(case.name).is_empty();
        let mut problems = Vec::new();
        if response.status != case.status {
            problems.push(format!("status {} (want {})", response.status, case.status));
        }
        if response.header("www-authenticate").map(str::to_owned) != case.challenge {
            problems.push(format!(
                "www-authenticate {:?} (want {:?})",
                response.header("www-authenticate"),
                case.challenge
            ));
        }
        if reached != case.reaches_upstream {
            problems.push(format!(
                "upstream saw it: {reached} (want {})",
                case.reaches_upstream
            ));
        }
        if case.status == 200 {
            if response.body != UPSTREAM_BODY {
                problems.push(format!("body {:?} is not the upstream's", response.body));
            }
        } else {
            let body = response.json();
            if body["error_description"].as_str().is_none() || body["error"].as_str().is_none() {
                problems.push(format!("body lacks error fields: {}", response.body));
            }
            if response.header("content-type") != Some("application/json") {
                problems.push("content-type is not application/json".into());
            }
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}", case.name, problems.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "failed cases:\n{}\n--- envoy log ---\n{}",
        failures.join("\n"),
        envoy.log()
    );

    // Upstream gets the verified subject and payload, not the credential (forward: false),
    // and never a client's own copy of a header bearer-guard writes.
    let seen = upstream.seen_case("valid-rs256");
    assert_eq!(seen[0].header("authorization"), None);
    assert_eq!(seen[0].header("x-jwt-sub"), Some("alice"));
    assert_eq!(seen[0].header("x-jwt-payload"), valid.split('.').nth(1));
    assert_eq!(seen[0].path, "/api/orders");
    let spoofed = upstream.seen_case("public-route-spoofed-claim-header");
    assert_eq!(spoofed[0].header("x-jwt-sub"), None);

    // A repeated token is served from the per-worker verified-token cache: 4 more requests
    // over at most 2 workers' caches, which `valid-rs256` and `lowercase-scheme` warmed.
    for _ in 0..4 {
        let auth = format!("Bearer {valid}");
        assert_eq!(
            http::get(envoy.port, "/api/orders", &[("authorization", &auth)]).status,
            200
        );
    }
    // `valid` is looked up 7 times (valid-rs256, lowercase-scheme, insufficient-scope and the
    // 4 repeats) over 2 workers' caches: at most 2 misses.
    let hits = envoy.counter_at_least("wasmcustom.bearer_guard.jwt_cache_hit", 5);
    assert!((5..=6).contains(&hits), "cache hits: {hits}");

    // Every decision is counted by reason, across both workers.
    let allowed_cases = cases.iter().filter(|c| c.status == 200).count() as u64 + 4;
    assert_eq!(
        envoy.counter_eventually("wasmcustom.bearer_guard.allowed", allowed_cases),
        allowed_cases
    );
    assert_eq!(
        envoy.counter_eventually(
            "wasmcustom.bearer_guard.denied.alg_unsupported",
            if host { 0 } else { 2 }
        ),
        if host { 0 } else { 2 }
    );
    for (reason, count) in [
        ("expired", 1),
        ("not_yet_valid", 1),
        ("issuer", 1),
        ("audience", 1),
        ("signature", 3),
        ("unknown_kid", 1),
        ("alg_none", 1),
        ("malformed", 1),
        ("missing", 3),
        ("multiple", 1),
        ("no_rule", 2),
        ("scope", 1),
        ("key_alg_mismatch", 1),
        ("alg_not_allowed", 1),
        ("crit", 1),
        ("not_access_token", 1),
    ] {
        assert_eq!(
            envoy.counter_eventually(&format!("wasmcustom.bearer_guard.denied.{reason}"), count),
            count,
            "counter for {reason}"
        );
    }

    // Denials are logged with a reason and a fingerprint, never with the token.
    let log = envoy.log();
    assert_no_wasm_failure(&log);
    assert!(
        log.contains(r#""decision":"deny","iss":"https://idp.example.com","jti":null,"method":"GET","path":"/api/orders","provider":"corp","reason":"expired","revoked_by":null,"shadow":false,"status":401,"sub":"alice""#),
        "{log}"
    );
    for case in &cases {
        for (_, value) in &case.headers {
            if let Some(signature) = value.rsplit('.').next().filter(|s| s.len() > 20) {
                assert!(
                    !log.contains(signature),
                    "{} leaked a token into the log",
                    case.name
                );
            }
        }
    }
}

#[test]
fn invalid_configuration_is_refused_with_the_key_named() {
    let upstream = Upstream::start();
    let mut config = plugin_config();
    config["providers"]["corp"]["audience"] = json!(["typo"]);
    let failure = match Envoy::start(&test_config(&config, upstream.port)) {
        Ok(envoy) => panic!(
            "envoy served with a bad configuration on port {}",
            envoy.port
        ),
        Err(failure) => failure,
    };
    assert!(
        failure
            .log
            .contains("invalid configuration at providers.corp.audience: unknown field `audience`"),
        "exit {:?}, log:\n{}",
        failure.exit_code,
        failure.log
    );
}

#[test]
fn key_without_kid_serves_tokens_without_kid() {
    let upstream = Upstream::start();
    let k = keys();
    let mut config = plugin_config();
    let mut jwk = public_jwk(JsonWebKey::from(&k.ec), "x", None);
    jwk.as_object_mut().unwrap().remove("kid");
    let jwks = json!({ "keys": [jwk] }).to_string();
    config["providers"]["corp"]["local_jwks"] = json!({ "inline_string": jwks });
    let envoy = Envoy::start(&test_config(&config, upstream.port))
        .unwrap_or_else(|f| panic!("envoy did not start: {f:?}"));
    let token = mint(Signer::Es256(&k.ec), None, &claims(json!({})));
    let response = http::get(
        envoy.port,
        "/api/x",
        &[("authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(response.status, 200, "{}", response.body);
    let forged = mint(Signer::Rs256(&k.rsa), None, &claims(json!({})));
    let response = http::get(
        envoy.port,
        "/api/x",
        &[("authorization", &format!("Bearer {forged}"))],
    );
    assert_eq!(response.status, 401);
    assert_eq!(
        response.json()["error_description"],
        "token algorithm does not match the key"
    );
}

/// A shared gateway: rules per host (`match.hosts`), the `Host` header as Envoy gives it
/// (`:authority`), without its port and case-insensitively; `*.` takes one or more labels.
#[test]
fn rules_per_host_on_a_shared_gateway() {
    let upstream = Upstream::start();
    let mut config = plugin_config();
    config["rules"] = json!([
        { "match": { "prefix": "/", "hosts": ["api.example.com"] },
          "requires": { "provider_name": "corp" } },
        { "match": { "prefix": "/", "hosts": ["*.docs.example.com"] } },
        { "match": { "prefix": "/healthz" } },
    ]);
    let envoy = Envoy::start(&test_config(&config, upstream.port))
        .unwrap_or_else(|f| panic!("envoy did not start: {f:?}"));
    let token = rs256(json!({}));
    let auth = format!("Bearer {token}");
    let get = |host: &str, path: &str, token: bool| {
        let mut headers = vec![("host", host)];
        if token {
            headers.push(("authorization", auth.as_str()));
        }
        http::get(envoy.port, path, &headers).status
    };
    assert_eq!(
        get("api.example.com", "/orders", false),
        401,
        "needs a token"
    );
    assert_eq!(get("API.Example.com:8443", "/orders", true), 200);
    assert_eq!(get("v2.docs.example.com", "/guide", false), 200, "public");
    assert_eq!(get("a.b.docs.example.com:80", "/guide", false), 200);
    assert_eq!(
        get("docs.example.com", "/guide", false),
        403,
        "not the domain itself"
    );
    assert_eq!(
        get("evil.example.com", "/orders", true),
        403,
        "no rule for the host"
    );
    assert_eq!(
        get("evil.example.com", "/healthz", false),
        200,
        "rules without hosts"
    );
    assert_no_wasm_failure(&envoy.log());
}

/// `stat_prefix`: two bearer-guard filters in one Envoy count apart; every stat of this
/// filter config is `bearer_guard.<stat_prefix>.*`.
#[test]
fn a_stat_prefix_names_every_stat_of_the_filter_config() {
    let upstream = Upstream::start();
    let mut config = plugin_config();
    config["stat_prefix"] = json!("edge");
    let envoy = Envoy::start(&test_config(&config, upstream.port))
        .unwrap_or_else(|f| panic!("envoy did not start: {f:?}"));
    let auth = format!("Bearer {}", rs256(json!({})));
    assert_eq!(
        http::get(envoy.port, "/api/x", &[("authorization", &auth)]).status,
        200
    );
    assert_eq!(http::get(envoy.port, "/api/x", &[]).status, 401);
    assert_eq!(
        envoy.counter_eventually("wasmcustom.bearer_guard.edge.allowed", 1),
        1
    );
    assert_eq!(
        envoy.counter_eventually("wasmcustom.bearer_guard.edge.denied.missing", 1),
        1
    );
    let stats = envoy.admin("/stats?filter=bearer_guard");
    assert!(
        !stats.contains("wasmcustom.bearer_guard.allowed:"),
        "{stats}"
    );
    assert_no_wasm_failure(&envoy.log());
}

/// A panic or trap in the filter shows in Envoy's log; none may happen.
fn assert_no_wasm_failure(log: &str) {
    for marker in [
        "panicked at",
        "Wasm VM failed",
        "Function: proxy_on_request_headers failed",
    ] {
        assert!(
            !log.contains(marker),
            "the filter failed ({marker}):\n{log}"
        );
    }
}

/// `make run`: `envoy/demo.yaml` (on free ports here) accepts the tokens that the demo
/// token printer mints and refuses the expired one it prints.
#[test]
fn demo_config_serves_the_printed_demo_tokens() {
    let upstream_port = free_port();
    let etcd = support::etcd::EtcdCluster::start(1);
    let etcd_port = etcd.client_ports()[0];
    let demo = std::fs::read_to_string(support::repo_path("envoy/demo.yaml"))
        .unwrap()
        .replace("port_value: 9901", "port_value: 0")
        .replace("port_value: 10000", "port_value: 0")
        .replace("port_value: 10001", &format!("port_value: {upstream_port}"))
        .replace("port_value: 10002", &format!("port_value: {etcd_port}"))
        .replace(
            "filename: dist/bearer_guard.wasm",
            &format!("filename: {}", support::wasm_path().display()),
        );
    let envoy = Envoy::start(&demo).unwrap_or_else(|f| panic!("demo envoy did not start: {f:?}"));

    // cargo builds examples next to the test binaries: target/<profile>/examples/.
    let exe = std::env::current_exe().unwrap();
    let printer = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/demo_tokens");
    let output = std::process::Command::new(&printer)
        .args(["--port", &envoy.port.to_string()])
        .args(["--etcd-port", &etcd_port.to_string()])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo build --examples`)", printer.display()));
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).unwrap();
    let token = |name: &str| {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} not printed:\n{printed}"))
            .to_owned()
    };
    assert!(printed.contains(&format!("http://127.0.0.1:{}/hello", envoy.port)));

    for name in ["VALID_RS256", "VALID_ES256"] {
        let auth = format!("Bearer {}", token(name));
        let response = http::get(envoy.port, "/hello", &[("authorization", &auth)]);
        assert_eq!(response.status, 200, "{name}: {}", response.body);
        assert_eq!(response.body, "hello from the demo upstream\n");
    }
    let auth = format!("Bearer {}", token("EXPIRED"));
    let response = http::get(envoy.port, "/hello", &[("authorization", &auth)]);
    assert_eq!(response.status, 401);
    assert_eq!(response.json()["error_description"], "token expired");
    assert_eq!(http::get(envoy.port, "/hello", &[]).status, 401);
    assert_eq!(http::get(envoy.port, "/healthz", &[]).status, 200);

    // The printed revocation walk-through: logout revokes the ES256 token, etcd the RS256 one.
    let key = "/bearer-guard/revoked/jti/demo-1";
    assert!(printed.contains(&format!(
        "etcdctl --endpoints=127.0.0.1:{etcd_port} put {key} '{{}}'"
    )));
    assert!(printed.contains(&format!(
        "etcdctl --endpoints=127.0.0.1:{etcd_port} del {key}"
    )));
    let es = format!("Bearer {}", token("VALID_ES256"));
    let rs = format!("Bearer {}", token("VALID_RS256"));
    let logout = http::get(envoy.port, "/logout", &[("authorization", &es)]);
    assert_eq!(logout.status, 200);
    assert!(logout.header("x-revoke-token").is_none());
    let after = http::get(envoy.port, "/hello", &[("authorization", &es)]);
    assert_eq!(after.status, 401);
    assert_eq!(after.json()["error_description"], "token revoked");
    assert_eq!(
        http::get(envoy.port, "/hello", &[("authorization", &rs)]).status,
        200
    );
    // The logout's revocation reached etcd, under the demo issuer.
    let written = "/bearer-guard/revoked/iss/https%3A%2F%2Fdemo-idp.bearer-guard.local/jti/demo-2";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while etcd.get(written).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the logout was not written to etcd"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for (change, expected) in [("put", 401), ("del", 200)] {
        if change == "put" {
            etcd.put(key, "{}");
        } else {
            assert!(etcd.del(key));
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while http::get(envoy.port, "/hello", &[("authorization", &rs)]).status != expected {
            assert!(
                std::time::Instant::now() < deadline,
                "etcd {change} not enforced"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    assert_no_wasm_failure(&envoy.log());
}

/// Tokens in a cookie or a query parameter: accepted only where configured, and taken out of
/// the request before it goes upstream (the other cookies and parameters stay).
#[test]
fn cookie_and_query_tokens_are_taken_out_before_upstream() {
    let upstream = Upstream::start();
    let mut config = plugin_config();
    config["providers"]["corp"]["from_cookies"] = json!(["session"]);
    config["providers"]["corp"]["from_params"] = json!(["access_token"]);
    let envoy = Envoy::start(&test_config(&config, upstream.port))
        .unwrap_or_else(|f| panic!("envoy did not start: {f:?}"));
    let token = mint(
        Signer::Rs256(&keys().rsa),
        Some("rsa-1"),
        &json!({
            "iss": ISSUER, "aud": "orders-api", "sub": "alice", "exp": unix_now() + 600,
        }),
    );

    let cookie = format!("theme=dark; session={token}; lang=en");
    let r = http::get(
        envoy.port,
        "/api/a",
        &[("cookie", &cookie), ("x-test-case", "cookie")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = upstream.seen_case("cookie");
    assert_eq!(seen[0].header("cookie"), Some("theme=dark; lang=en"));
    assert_eq!(seen[0].header("x-jwt-sub"), Some("alice"));

    let path = format!("/api/b?x=1&access_token={token}&y=2");
    let r = http::get(envoy.port, &path, &[("x-test-case", "param")]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(upstream.seen_case("param")[0].path, "/api/b?x=1&y=2");

    // Authorization is no longer a source of this provider: the token there is not seen.
    let auth = format!("Bearer {token}");
    assert_eq!(
        http::get(envoy.port, "/api/c", &[("authorization", &auth)]).status,
        401
    );
    // Two credentials (cookie and parameter) are a bad request.
    let both = http::get(
        envoy.port,
        &format!("/api/d?access_token={token}"),
        &[("cookie", &cookie)],
    );
    assert_eq!(both.status, 400);
}

/// `issuer` is optional, as in jwt_authn: a provider without one takes tokens without `iss`,
/// and never a token that names an issuer (its keys are not that issuer's to vouch for).
#[test]
fn a_provider_without_issuer_takes_only_tokens_without_iss() {
    let upstream = Upstream::start();
    let mut config = plugin_config();
    config["providers"]["corp"]
        .as_object_mut()
        .unwrap()
        .remove("issuer");
    let envoy = Envoy::start(&test_config(&config, upstream.port))
        .unwrap_or_else(|f| panic!("envoy did not start: {f:?}"));
    let get = |token: &str| {
        let auth = format!("Bearer {token}");
        http::get(envoy.port, "/api/x", &[("authorization", &auth)])
    };
    assert_eq!(get(&rs256(json!({ "iss": null }))).status, 200);
    let named = get(&rs256(json!({})));
    assert_eq!(named.status, 401);
    assert!(named
        .header("www-authenticate")
        .unwrap_or_default()
        .contains("issuer not accepted"));
    assert_no_wasm_failure(&envoy.log());
}

/// Bodies pass both ways whole and a refused request's body reaches no upstream, now that the
/// module exports no body callbacks (`src/filter/exports.json`; that the built module exports
/// none is the next test's).
#[test]
fn bodies_pass_whole_both_ways_and_a_refused_one_goes_nowhere() {
    let pattern = |len: usize, first: u8| -> String {
        (0..len)
            .map(|i| char::from(first + u8::try_from(i % 26).unwrap()))
            .collect()
    };
    let upstream = Upstream::start();
    let response_body = pattern(300_000, b'a');
    upstream.set_response(200, &response_body);
    let envoy = Envoy::start(&test_config(&plugin_config(), upstream.port))
        .unwrap_or_else(|f| panic!("envoy did not start: {f:?}"));
    let request_body = pattern(500_000, b'A');

    let auth = format!("Bearer {}", rs256(json!({})));
    let r = http::post(
        envoy.port,
        "/api/upload",
        &[("authorization", &auth), ("x-test-case", "upload")],
        "application/octet-stream",
        &request_body,
    );
    assert_eq!(r.status, 200, "{}", &r.body[..r.body.len().min(300)]);
    assert!(
        r.body == response_body,
        "response body of {} bytes differs",
        r.body.len()
    );
    let seen = upstream.seen_case("upload");
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].body == request_body,
        "upstream saw {} bytes",
        seen[0].body.len()
    );

    let forged = mint(
        Signer::Rs256(&keys().rsa_other),
        Some("rsa-1"),
        &claims(json!({})),
    );
    let r = http::post(
        envoy.port,
        "/api/upload",
        &[
            ("authorization", &format!("Bearer {forged}")),
            ("x-test-case", "forged-upload"),
        ],
        "application/octet-stream",
        &request_body,
    );
    assert_eq!(r.status, 401);
    assert!(upstream.seen_case("forged-upload").is_empty());
    assert_no_wasm_failure(&envoy.log());
}

/// `make build` left only the exports of `src/filter/exports.json` in the module it wrote (the
/// unit test `exports_tests` holds that list to the callbacks the filter implements).
#[test]
fn the_built_module_exports_only_the_listed_callbacks() {
    let graph: Value = serde_json::from_str(
        &std::fs::read_to_string(support::repo_path("src/filter/exports.json")).unwrap(),
    )
    .unwrap();
    let mut listed: Vec<String> = graph
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|node| node["export"].as_str().map(str::to_owned))
        .collect();
    listed.sort();
    let mut exported = module_exports(&std::fs::read(support::wasm_path()).unwrap());
    exported.sort();
    assert_eq!(exported, listed);
    assert!(!exported
        .iter()
        .any(|e| e == "proxy_on_request_body" || e == "proxy_on_log"));
}

/// The export names of a wasm module (its export section, id 7).
fn module_exports(module: &[u8]) -> Vec<String> {
    fn leb(bytes: &[u8], at: &mut usize) -> usize {
        let (mut value, mut shift) = (0usize, 0);
        loop {
            let byte = bytes[*at];
            *at += 1;
            value |= usize::from(byte & 0x7f) << shift;
            shift += 7;
            if byte < 0x80 {
                return value;
            }
        }
    }
    assert_eq!(&module[..4], b"\0asm");
    let mut at = 8;
    while at < module.len() {
        let id = module[at];
        at += 1;
        let size = leb(module, &mut at);
        if id == 7 {
            let mut entry = at;
            let count = leb(module, &mut entry);
            return (0..count)
                .map(|_| {
                    let length = leb(module, &mut entry);
                    let name = String::from_utf8(module[entry..entry + length].to_vec()).unwrap();
                    entry += length + 1; // the name, then the kind byte
                    leb(module, &mut entry); // the index
                    name
                })
                .collect();
        }
        at += size;
    }
    panic!("no export section");
}
