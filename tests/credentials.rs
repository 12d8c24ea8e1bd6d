//! Credentials inside a real Envoy: every credential a decision used is taken out of the
//! request before it goes upstream (also under `requires_all`, with several of one kind), and
//! a credential that is present but cannot be read is refused, never taken for "no token".

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;
use support::testkit;

use serde_json::{json, Value};

use support::envoy::{test_config, Envoy};
use support::http::{self, Response};
use support::upstream::{SeenRequest, Upstream};
use support::wasm_health::wasm_failures;
use testkit::{keys, mint, unix_now, Signer};

const REALM: &str = "bearer-guard";

/// One provider per credential place, each its own issuer, so a route can need several.
fn plugin_config() -> Value {
    let provider = |issuer: &str, sources: Value| {
        let mut p = json!({
            "issuer": issuer,
            "audiences": ["orders-api"],
            "local_jwks": testkit::jwks(),
        });
        p.as_object_mut()
            .unwrap()
            .extend(sources.as_object().unwrap().clone());
        p
    };
    let all = |names: &[&str]| {
        json!({ "requires_all": { "requirements":
            names.iter().map(|n| json!({ "provider_name": n })).collect::<Vec<_>>() } })
    };
    json!({
        "providers": {
            "pa": provider("https://pa", json!({ "from_params": ["jwt_a"] })),
            "pb": provider("https://pb", json!({ "from_params": ["jwt_b"] })),
            "ca": provider("https://ca", json!({ "from_cookies": ["sa"] })),
            "cb": provider("https://cb", json!({ "from_cookies": ["sb"] })),
            "ha": provider("https://ha", json!({ "from_headers":
                [{ "name": "x-token-a", "value_prefix": "Bearer " }] })),
            "hb": provider("https://hb", json!({ "from_headers": [{ "name": "x-token-b" }] })),
            "corp": provider("https://corp", json!({})),
            "pf": provider("https://pf", json!({ "from_params": ["jwt_f"], "forward": true })),
            "cf": provider("https://cf", json!({ "from_cookies": ["sf"], "forward": true }))
        },
        "rules": [
            { "match": { "prefix": "/params" }, "requires": all(&["pa", "pb"]) },
            { "match": { "prefix": "/cookies" }, "requires": all(&["ca", "cb"]) },
            { "match": { "prefix": "/headers" }, "requires": all(&["ha", "hb"]) },
            { "match": { "prefix": "/mixed" }, "requires": all(&["pa", "ca", "corp"]) },
            { "match": { "prefix": "/nested" }, "requires": { "requires_all": { "requirements": [
                { "requires_any": { "requirements": [
                    { "provider_name": "pa" }, { "provider_name": "ca" } ] } },
                { "provider_name": "pb" } ] } } },
            { "match": { "prefix": "/forward" }, "requires": all(&["pf", "pa", "cf", "cb"]) },
            { "match": { "prefix": "/either" }, "requires": { "requires_any": { "requirements": [
                { "provider_name": "corp" }, { "provider_name": "hb" } ] } } },
            { "match": { "prefix": "/optional" }, "requires": { "allow_missing": {} } },
            { "match": { "prefix": "/api" }, "requires": { "provider_name": "corp" } }
        ],
        "log": { "max_lines_per_second": 0 }
    })
}

fn token(provider: &str) -> String {
    mint(
        Signer::Rs256(&keys().rsa),
        Some("rsa-1"),
        &json!({
            "iss": format!("https://{provider}"), "aud": "orders-api", "sub": "alice",
            "exp": unix_now() + 600,
        }),
    )
}

struct Setup {
    envoy: Envoy,
    upstream: Upstream,
}

impl Setup {
    fn start() -> Setup {
        let upstream = Upstream::start();
        let envoy = Envoy::start(&test_config(&plugin_config(), upstream.port))
            .unwrap_or_else(|f| panic!("envoy did not start: {f:?}"));
        Setup { envoy, upstream }
    }

    /// GET tagged with `case`; the response and what the upstream received (if anything).
    fn get(
        &self,
        case: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (Response, Option<SeenRequest>) {
        let mut all = headers.to_vec();
        all.push(("x-test-case", case));
        let response = http::get(self.envoy.port, path, &all);
        let seen = self.upstream.seen_case(case);
        assert!(seen.len() <= 1, "{case}: upstream saw {seen:?}");
        (response, seen.into_iter().next())
    }

    /// Allowed, and what the upstream received.
    fn allowed(&self, case: &str, path: &str, headers: &[(&str, &str)]) -> SeenRequest {
        let (response, seen) = self.get(case, path, headers);
        assert_eq!(response.status, 200, "{case}: {}", response.body);
        seen.unwrap_or_else(|| panic!("{case}: allowed but the upstream saw nothing"))
    }

    /// Refused with 400 `invalid_request` and this description; nothing reached the upstream.
    fn bad_request(&self, case: &str, path: &str, headers: &[(&str, &str)], description: &str) {
        let (response, seen) = self.get(case, path, headers);
        assert_eq!(
            (response.status, response.header("www-authenticate")),
            (
                400,
                Some(
                    format!(
                        "Bearer realm=\"{REALM}\", error=\"invalid_request\", \
                         error_description=\"{description}\""
                    )
                    .as_str()
                )
            ),
            "{case}: {}",
            response.body
        );
        assert_eq!(
            response.json(),
            json!({ "error": "invalid_request", "error_description": description }),
            "{case}"
        );
        assert!(seen.is_none(), "{case}: reached the upstream: {seen:?}");
    }
}

fn assert_no_credential(case: &str, seen: &SeenRequest, tokens: &[&str]) {
    let everything = format!("{} {:?}", seen.path, seen.headers);
    for token in tokens {
        assert!(
            !everything.contains(token),
            "{case}: a credential reached the upstream: {everything}"
        );
    }
}

/// `requires_all`: each credential the decision used comes out, whatever its place, and the
/// rest of the request stays as it was.
#[test]
fn every_credential_a_decision_used_is_taken_out() {
    let s = Setup::start();
    let (a, b) = (token("pa"), token("pb"));

    let path = format!("/params/x?x=1&jwt_a={a}&y=2&jwt_b={b}&z=3");
    let seen = s.allowed("two-params", &path, &[]);
    assert_eq!(seen.path, "/params/x?x=1&y=2&z=3");
    assert_no_credential("two-params", &seen, &[&a, &b]);

    let (ca, cb) = (token("ca"), token("cb"));
    let cookie = format!("theme=dark; sa={ca}; lang=en; sb={cb}");
    let seen = s.allowed("two-cookies", "/cookies", &[("cookie", &cookie)]);
    assert_eq!(seen.header("cookie"), Some("theme=dark; lang=en"));
    assert_no_credential("two-cookies", &seen, &[&ca, &cb]);
    let only_tokens = format!("sa={ca}; sb={cb}");
    let seen = s.allowed("two-cookies-only", "/cookies", &[("cookie", &only_tokens)]);
    assert_eq!(seen.header("cookie"), None);

    let (ha, hb) = (token("ha"), token("hb"));
    let bearer_a = format!("Bearer {ha}");
    let seen = s.allowed(
        "two-headers",
        "/headers",
        &[("x-token-a", &bearer_a), ("x-token-b", &hb)],
    );
    assert_no_credential("two-headers", &seen, &[&ha, &hb]);

    // A parameter, a cookie and a header.
    let corp = format!("Bearer {}", token("corp"));
    let path = format!("/mixed?jwt_a={a}&keep=1");
    let cookie = format!("sa={ca}; theme=dark");
    let seen = s.allowed(
        "mixed",
        &path,
        &[("cookie", &cookie), ("authorization", &corp)],
    );
    assert_eq!(seen.path, "/mixed?keep=1");
    assert_eq!(seen.header("cookie"), Some("theme=dark"));
    assert_eq!(seen.header("authorization"), None);
    assert_no_credential("mixed", &seen, &[&a, &ca, &corp]);

    // `requires_any` inside `requires_all`.
    let path = format!("/nested?jwt_b={b}&jwt_a={a}");
    let seen = s.allowed("nested-params", &path, &[]);
    assert_eq!(seen.path, "/nested");
    let path = format!("/nested?jwt_b={b}");
    let cookie = format!("sa={ca}");
    let seen = s.allowed("nested-cookie", &path, &[("cookie", &cookie)]);
    assert_eq!(seen.path, "/nested");
    assert_eq!(seen.header("cookie"), None);

    // `requires_any`: a credential refused beside the one accepted does not reach the
    // upstream either (it could take it for one the proxy checked).
    let expired = mint(
        Signer::Rs256(&keys().rsa),
        Some("rsa-1"),
        &json!({ "iss": "https://corp", "aud": "orders-api", "sub": "mallory",
                 "exp": unix_now() - 3600 }),
    );
    let forged = format!("{}AAAA", &expired[..expired.len() - 4]);
    for (case, bad) in [("either-expired", &expired), ("either-forged", &forged)] {
        let authorization = format!("Bearer {bad}");
        let seen = s.allowed(
            case,
            "/either",
            &[("authorization", &authorization), ("x-token-b", &hb)],
        );
        assert_eq!(seen.header("authorization"), None, "{case}");
        assert_no_credential(case, &seen, &[bad, &hb]);
    }

    // `forward: true` keeps its own credential, and only that one.
    let (pf, cf) = (token("pf"), token("cf"));
    let path = format!("/forward?jwt_f={pf}&jwt_a={a}");
    let cookie = format!("sf={cf}; sb={cb}");
    let seen = s.allowed("forward", &path, &[("cookie", &cookie)]);
    assert_eq!(seen.path, format!("/forward?jwt_f={pf}"));
    assert_eq!(seen.header("cookie"), Some(format!("sf={cf}").as_str()));

    assert_eq!(wasm_failures(&s.envoy.log()), Vec::<&str>::new());
}

/// A credential in a place a provider reads that cannot be read is a bad request (RFC 6750
/// §3.1 `invalid_request`), on `allow_missing` routes too: never "no token" with its bytes
/// passed on unchecked.
#[test]
fn an_unreadable_credential_is_refused_not_taken_for_none() {
    let s = Setup::start();
    let malformed = "credential is malformed";
    let forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.";
    let headers: [(&str, String); 6] = [
        ("bearer-tab", format!("Bearer\t{forged}")),
        ("bearer-glued", format!("Bearer{forged}")),
        ("bearer-colon", format!("Bearer: {forged}")),
        ("bearer-nbsp", format!("Bearer\u{a0}{forged}")),
        ("bearer-alone", "Bearer".to_owned()),
        ("bearer-spaces", "Bearer    ".to_owned()),
    ];
    for (case, value) in &headers {
        s.bad_request(
            &format!("optional-{case}"),
            "/optional",
            &[("authorization", value)],
            malformed,
        );
        s.bad_request(
            &format!("api-{case}"),
            "/api",
            &[("authorization", value)],
            malformed,
        );
    }
    // The same rule for a header with its own prefix.
    s.bad_request(
        "header-a-tab",
        "/optional",
        &[("x-token-a", &format!("Bearer\t{forged}"))],
        malformed,
    );
    // A configured cookie without a value, a configured parameter without a value, and a
    // parameter an upstream framework reads as a configured one (case, PHP's `.` for `_`).
    for (case, path, cookie) in [
        ("cookie-bare-name", "/optional", "theme=dark; sa"),
        ("cookie-empty", "/optional", "sa=; theme=dark"),
        ("cookie-empty-quoted", "/optional", "sa=\"\""),
        ("param-empty", "/optional?jwt_a=&x=1", ""),
        ("param-bare-name", "/optional?jwt_a", ""),
        ("param-other-case", &format!("/optional?JWT_A={forged}"), ""),
        ("param-dot", &format!("/optional?jwt.a={forged}"), ""),
        ("param-space", &format!("/optional?jwt+a={forged}"), ""),
    ] {
        let headers: &[(&str, &str)] = if cookie.is_empty() {
            &[]
        } else {
            &[("cookie", cookie)]
        };
        s.bad_request(case, path, headers, malformed);
    }
    // RFC 6750 §2.3's parameter where no provider reads it, in the spellings frameworks fold
    // into `access_token`.
    for (case, name) in [
        ("query-token-dot", "access.token"),
        ("query-token-case", "Access_Token"),
    ] {
        s.bad_request(
            case,
            &format!("/optional?{name}={forged}"),
            &[],
            "tokens in the query string are not accepted",
        );
    }

    // Not credentials: another scheme, another parameter, another cookie. These go upstream.
    let seen = s.allowed(
        "basic",
        "/optional",
        &[("authorization", "Basic dXNlcjpwYXNz")],
    );
    assert_eq!(seen.header("authorization"), Some("Basic dXNlcjpwYXNz"));
    let seen = s.allowed("header-a-basic", "/optional", &[("x-token-a", "Basic x")]);
    assert_eq!(seen.header("x-token-a"), Some("Basic x"));
    let seen = s.allowed("other-param", "/optional?jwt_ab=1&jwt=2&x=3", &[]);
    assert_eq!(seen.path, "/optional?jwt_ab=1&jwt=2&x=3");
    let seen = s.allowed(
        "other-cookie",
        "/optional",
        &[("cookie", "Sa=1; sab=2; theme=dark")],
    );
    assert_eq!(seen.header("cookie"), Some("Sa=1; sab=2; theme=dark"));
    s.allowed("nothing", "/optional", &[]);
    // A readable token on the optional route is checked and taken out.
    let path = format!("/optional?jwt_a={}&x=1", token("pa"));
    assert_eq!(s.allowed("readable", &path, &[]).path, "/optional?x=1");

    let refused = 2 * headers.len() as u64 + 1 + 8;
    assert_eq!(
        s.envoy.counter_eventually(
            "wasmcustom.bearer_guard.denied.malformed_credential",
            refused
        ),
        refused
    );
    assert_eq!(wasm_failures(&s.envoy.log()), Vec::<&str>::new());
}
