//! Header bytes that are not UTF-8, in a real Envoy with two workers: in every request header
//! the filter reads, and in the revocation response header of an upstream. Envoy passes such
//! bytes (obs-text) through; the proxy-wasm SDK's header calls `unwrap` their UTF-8 decoding,
//! so before the filter read headers through its own host calls, one such value panicked the
//! worker's VM, and a few of them left no worker serving (every request 503, FAIL_CLOSED).
//!
//! After each batch: every worker still answers (20 new connections, a valid token 200 and an
//! invalid one 401), nothing was revoked by a bad value, and no wasm failure shows.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;
use support::testkit;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};

use support::envoy::Envoy;
use support::upstream::{Upstream, UPSTREAM_BODY};
use support::wasm_health::{wasm_health_problems, wasm_stats};
use testkit::{keys, mint, unix_now, Signer, ISSUER};

const MALFORMED: &str = "error=\"invalid_token\", error_description=\"token is malformed\"";

fn token(sub: &str) -> String {
    let now = unix_now();
    let claims = json!({
        "iss": ISSUER, "aud": "orders-api", "sub": sub, "jti": format!("jti-{sub}"),
        "iat": now - 10, "exp": now + 600
    });
    mint(Signer::Rs256(&keys().rsa), Some("rsa-1"), &claims)
}

/// Every header the filter reads is in play: the token in `authorization`, `x-api-token` or
/// the `session` cookie; a rule on `x-tenant`; one trusted hop, whose `x-forwarded-for` names
/// the client (misuse detection; Envoy sets `x-forwarded-proto` itself here); CORS
/// preflights (`origin`); the decision log (method, path, authority, user agent) for every
/// decision; the revocation response header.
fn plugin_config() -> Value {
    let mut config = testkit::config_json(
        json!({
            "from_headers": [
                { "name": "authorization", "value_prefix": "Bearer " },
                { "name": "x-api-token" }
            ],
            "from_cookies": ["session"],
        }),
        Some(json!([
            { "match": { "prefix": "/tenant", "headers": [{ "name": "x-tenant", "exact": "blue" }] } },
            { "match": { "prefix": "/" }, "requires": { "provider_name": "corp" } }
        ])),
    );
    config["xff_num_trusted_hops"] = json!(1);
    config["anomaly"] = json!({ "max_distinct_ips": 64 });
    config["log"] = json!({ "decisions": "all", "max_lines_per_second": 0 });
    // jti= and sub= allowed: a value that is not UTF-8 must be refused for that, not for the
    // directive allow-list.
    config["revocation"] = json!({ "response_header_directives": ["self", "jti", "sub"] });
    config
}

/// What a trusted proxy in front adds to every request.
const PROXY: [(&str, &[u8]); 1] = [("x-forwarded-for", b"192.0.2.7")];

struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One request on a new connection, written byte for byte: the request line too (a path that
/// is not UTF-8), and the `host` header only when the test does not write its own. `None`
/// when the connection ends without an answer.
fn send(method: &str, target: &[u8], headers: &[(&str, &[u8])], port: u16) -> Option<Answer> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut raw = [method.as_bytes(), b" ", target, b" HTTP/1.1\r\n"].concat();
    if !headers.iter().any(|(n, _)| *n == "host") {
        raw.extend_from_slice(b"host: test.local\r\n");
    }
    for (name, value) in headers {
        raw.extend_from_slice(&[name.as_bytes(), b": ", value, b"\r\n"].concat());
    }
    raw.extend_from_slice(b"connection: close\r\n\r\n");
    let _ = stream.write_all(&raw);
    // Read until the message is complete, not to EOF: after a local reply Envoy holds the
    // connection open for its delayed-close timeout.
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while !complete(&bytes) {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some(Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}

fn complete(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.to_ascii_lowercase()
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|length| body.len() >= length)
}

fn with_proxy<'a>(headers: &[(&'a str, &'a [u8])]) -> Vec<(&'a str, &'a [u8])> {
    let mut all = headers.to_vec();
    for (name, value) in PROXY {
        if !all.iter().any(|(n, _)| *n == name) {
            all.push((name, value));
        }
    }
    all
}

fn bearer(token: &str) -> Vec<u8> {
    format!("Bearer {token}").into_bytes()
}

/// One hostile request and what the user must see.
struct Case {
    name: &'static str,
    method: &'static str,
    target: Vec<u8>,
    headers: Vec<(&'static str, Vec<u8>)>,
    /// Status, and a text the `www-authenticate` challenge contains (`""`: none).
    want: (u16, &'static str),
}

fn case(
    name: &'static str,
    headers: Vec<(&'static str, Vec<u8>)>,
    want: (u16, &'static str),
) -> Case {
    Case {
        name,
        method: "GET",
        target: format!("/api/{name}").into_bytes(),
        headers,
        want,
    }
}

fn request_cases(valid: &str) -> Vec<Case> {
    let auth = || ("authorization", bearer(valid));
    let bad = |prefix: &[u8]| [prefix, b"\xff\xfe"].concat();
    vec![
        // Where a credential is read: a malformed credential (RFC 6750: invalid_token, the
        // client's token arrived unusable), whatever else the request carries.
        case(
            "authorization",
            vec![("authorization", bad(&bearer(valid)))],
            (401, MALFORMED),
        ),
        case(
            "authorization-scheme",
            vec![("authorization", [b"Bearer\xff ", valid.as_bytes()].concat())],
            (401, MALFORMED),
        ),
        case(
            "token-header",
            vec![auth(), ("x-api-token", bad(b""))],
            (401, MALFORMED),
        ),
        case(
            "cookie",
            vec![auth(), ("cookie", bad(b"theme=dark; session="))],
            (401, MALFORMED),
        ),
        // Elsewhere: as if absent, so matching nothing.
        case(
            "forwarded-proto",
            vec![auth(), ("x-forwarded-proto", bad(b"https"))],
            (200, ""),
        ),
        case(
            "forwarded-for",
            vec![auth(), ("x-forwarded-for", bad(b"192.0.2."))],
            (200, ""),
        ),
        case(
            "user-agent",
            vec![auth(), ("user-agent", bad(b"curl/"))],
            (200, ""),
        ),
        // Envoy 1.40 refuses such an authority or path itself (400, the filter never sees
        // it); the filter would treat them as matching no rule (src/decide/header_map.rs tests).
        case(
            "host",
            vec![auth(), ("host", bad(b"test.local"))],
            (400, ""),
        ),
        case(
            "other-header",
            vec![auth(), ("x-unread", bad(b""))],
            (200, ""),
        ),
        Case {
            target: b"/tenant/x".to_vec(),
            ..case(
                "rule-header",
                vec![("x-tenant", bad(b"blue"))],
                (401, "Bearer realm="),
            )
        },
        Case {
            method: "OPTIONS",
            ..case(
                "cors-origin",
                vec![
                    ("origin", bad(b"https://app.example")),
                    ("access-control-request-method", b"GET".to_vec()),
                ],
                (401, "Bearer realm="),
            )
        },
        Case {
            target: b"/api/\xff\xfe".to_vec(),
            ..case("path", vec![auth()], (400, ""))
        },
    ]
}

/// Positive controls: the same requests, readable, go through (so each refusal above is the
/// bytes' doing).
fn controls(valid: &str) -> Vec<Case> {
    vec![
        case(
            "control-token-header",
            vec![("x-api-token", valid.as_bytes().to_vec())],
            (200, ""),
        ),
        case(
            "control-cookie",
            vec![(
                "cookie",
                format!("theme=dark; session={valid}").into_bytes(),
            )],
            (200, ""),
        ),
        Case {
            target: b"/tenant/x".to_vec(),
            ..case(
                "control-rule-header",
                vec![("x-tenant", b"blue".to_vec())],
                (200, ""),
            )
        },
        Case {
            method: "OPTIONS",
            ..case(
                "control-cors",
                vec![
                    ("origin", b"https://app.example".to_vec()),
                    ("access-control-request-method", b"GET".to_vec()),
                ],
                (200, ""),
            )
        },
    ]
}

fn run(envoy: &Envoy, case: &Case) -> Option<String> {
    let headers: Vec<(&str, &[u8])> = case
        .headers
        .iter()
        .map(|(n, v)| (*n, v.as_slice()))
        .collect();
    let Some(answer) = send(case.method, &case.target, &with_proxy(&headers), envoy.port) else {
        return Some(format!("{}: no answer", case.name));
    };
    let (status, challenge) = case.want;
    let got = answer.header("www-authenticate").unwrap_or_default();
    let challenge_ok = if challenge.is_empty() {
        got.is_empty()
    } else {
        got.contains(challenge)
    };
    (answer.status != status || !challenge_ok).then(|| {
        format!(
            "{}: {} {got:?} {:?} (want {status} {challenge:?})",
            case.name, answer.status, answer.body
        )
    })
}

/// Every worker still decides: 20 new connections each for a valid and an invalid token.
fn workers_serve(envoy: &Envoy, valid: &str, when: &str) -> Vec<String> {
    let forged = format!("{}x", &valid[..valid.len() - 1]);
    let mut problems = Vec::new();
    for i in 0..20 {
        for (token, want) in [(valid, 200), (forged.as_str(), 401)] {
            let auth = bearer(token);
            let target = format!("/api/after-{i}");
            match send(
                "GET",
                target.as_bytes(),
                &with_proxy(&[("authorization", &auth)]),
                envoy.port,
            ) {
                Some(a) if a.status == want => {}
                Some(a) => problems.push(format!(
                    "{when}: {target} got {} (want {want}): {}",
                    a.status, a.body
                )),
                None => problems.push(format!("{when}: {target}: no answer")),
            }
        }
    }
    problems
}

#[test]
fn header_bytes_that_are_not_utf8_never_take_a_worker_down() {
    let upstream = Upstream::start();
    // The upstream's revocation header values that are not UTF-8: a subject, a jti, `self`
    // with bytes after it, and a readable directive then bytes in one value.
    let logouts: [(&str, &[u8]); 4] = [
        ("/logout-sub", b"sub=\xff\xfe"),
        ("/logout-jti", b"jti=jti-alice\xff"),
        ("/logout-self", b"self\xc3"),
        ("/logout-mixed", b"self, sub=\xe9"),
    ];
    for (prefix, value) in logouts {
        upstream.add_raw_response_headers(prefix, &[("x-revoke-token", value)]);
    }
    let yaml = support::envoy::test_config(&plugin_config(), upstream.port);
    let envoy = Envoy::start_with(&yaml, "guarded", 2).unwrap_or_else(|f| panic!("{f:?}"));
    let before = wasm_stats(&envoy);
    let alice = token("alice");
    let mut problems = Vec::new();

    for case in request_cases(&alice).iter().chain(&controls(&alice)) {
        // Each hostile request several times: both workers see it.
        for _ in 0..4 {
            problems.extend(run(&envoy, case));
        }
        problems.extend(workers_serve(&envoy, &alice, case.name));
    }

    for (path, _) in logouts {
        for _ in 0..4 {
            let auth = bearer(&alice);
            match send(
                "GET",
                path.as_bytes(),
                &with_proxy(&[("authorization", &auth)]),
                envoy.port,
            ) {
                Some(a) if a.status == 200 && a.body == UPSTREAM_BODY => {
                    if let Some(leaked) = a.header("x-revoke-token") {
                        problems.push(format!("{path}: the client saw x-revoke-token {leaked:?}"));
                    }
                }
                Some(a) => problems.push(format!("{path}: {} {:?}", a.status, a.body)),
                None => problems.push(format!("{path}: no answer")),
            }
        }
        // Nothing revoked: the token of the logout request still works, on every worker.
        problems.extend(workers_serve(&envoy, &alice, path));
    }
    let refused = envoy.counter_eventually("wasmcustom.bearer_guard.revocation.header_invalid", 16);
    if refused != 16 {
        problems.push(format!("revocation.header_invalid {refused} (want 16)"));
    }
    let revoked = envoy.counter("wasmcustom.bearer_guard.revocation.header_revoked");
    if revoked != 0 {
        problems.push(format!("revocation.header_revoked {revoked} (want 0)"));
    }

    let log = envoy.log();
    problems.extend(wasm_health_problems(&envoy, &log, Some(&before)));
    if !log.contains("x-revoke-token response header: a value (") {
        problems.push("no log line for a refused revocation header value".into());
    }
    // The token is never logged, nor are the upstream's bytes echoed.
    if log.contains(&alice) || log.contains("\u{FFFD}\u{FFFD}") {
        problems.push("the log holds the token or the replaced bytes".into());
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}
