//! Header values an attacker (or an upstream) controls, outside the token itself: the
//! revocation response header (`revocation_learned::from_header`), credential extraction from
//! headers, cookies and query parameters (`extract`), and X-Forwarded-For (`client_ip`).
//!
//! The input is raw bytes, as the host hands them over (Envoy passes bytes that are not UTF-8
//! through): it is read as a serialized header map (`header_map::deserialize`), and split on
//! '\n' into up to five fields: revocation header, authorization header, cookie header,
//! `:path`, X-Forwarded-For. A missing field is the whole input, so even a short input reaches
//! every parser. Fields go through `header_map` as the filter's do: a value that is not UTF-8
//! is set apart (request) or refused (revocation header), never read lossily.
#![no_main]

use std::net::IpAddr;

use bearer_guard::decide::decision::Authorized;
use bearer_guard::decide::header_map::{
    credential_unreadable, deserialize, read, request_line_unreadable, split_utf8, text_values,
};
use bearer_guard::policy::client_ip::client_ip;
use bearer_guard::revocation::learned::{from_header, HeaderPolicy};
use bearer_guard::token::extract::{
    cookie_header_without, cookies, find_credential, path_without_params, query_params, Credential,
    TokenSource,
};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_800_000_000;

fn check_ip(ip: Option<String>) {
    if let Some(ip) = ip {
        let parsed: IpAddr = ip.parse().expect("client_ip returns an IP");
        assert_eq!(
            parsed.to_string(),
            ip,
            "client_ip returns the canonical form"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    // The host's serialized map: sizes that lie are refused, never trusted; the filter's
    // one-pass read gives what the two steps give.
    assert_eq!(read(data), deserialize(data).map(split_utf8));
    let mut fields = data.splitn(5, |b| *b == b'\n');
    let revoke_raw = fields.next().unwrap_or_default();
    let request = split_utf8(vec![
        (b"authorization", fields.next().unwrap_or(data)),
        (b"cookie", fields.next().unwrap_or(data)),
        (b":path", fields.next().unwrap_or(data)),
        (b"x-forwarded-for", fields.next().unwrap_or(data)),
    ]);
    let text = |name: &str| {
        request
            .text
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| *v)
    };
    let (authorization, cookie, path, xff) = (
        text("authorization"),
        text("cookie"),
        text(":path"),
        text("x-forwarded-for"),
    );
    // A revocation header value that is not UTF-8 is refused whole, as the filter does.
    let (revoke_values, refused) = text_values(vec![revoke_raw]);
    assert_eq!(revoke_values.len() + refused.len(), 1);
    let revoke = revoke_values.first().copied().unwrap_or_default();

    // The revocation header, on a request no token authorized and on one a token did.
    let policy = HeaderPolicy::all();
    let _ = from_header(revoke, None, &policy, NOW);
    let authorized = Authorized {
        provider: "corp".to_owned(),
        jti: (revoke.len() % 2 == 0).then(|| revoke.to_owned()),
        sub: Some("alice".to_owned()),
        token_sha256: [7; 32],
        id: [8; 32],
        clock_skew_seconds: 60,
        max_lifetime_seconds: None,
        exp: Some(NOW + 60),
        introspected: false,
        token: None,
    };
    let learned = from_header(revoke, Some(&authorized), &policy, NOW);
    assert_eq!(learned.learned.len(), learned.publish.len());
    for problem in &learned.problems {
        let _ = problem.to_string();
    }

    // Credentials in headers, cookies and the query.
    let headers = [
        ("authorization", authorization),
        ("X-Token", revoke),
        ("cookie", cookie),
    ];
    let sources = [
        TokenSource::authorization_bearer(),
        TokenSource::header("x-token", "Token "),
        TokenSource::Cookie {
            name: "session".into(),
        },
        TokenSource::Param {
            name: "access_token".into(),
        },
    ];
    let all = &sources[..];
    // A credential header that is not UTF-8 is malformed: what the guard checks first.
    let unreadable = credential_unreadable(all, &request.not_utf8);
    assert_eq!(
        unreadable,
        request
            .not_utf8
            .iter()
            .any(|n| *n == "authorization" || *n == "cookie")
    );
    let _ = request_line_unreadable(&request.not_utf8);
    if let Credential::One { token, source } = find_credential(&headers, path, all) {
        assert!(sources.contains(source));
        let _ = token.len();
    }
    let _ = find_credential(&headers, path, &all[..1]);
    for (name, value) in cookies(cookie) {
        let _ = (name.len(), value.len());
    }
    for (name, value) in query_params(path) {
        let _ = (name.len(), value.len());
    }
    // The token is stripped before the request goes upstream: none may be left behind. Only
    // checked without a '#': `query_params` finds the query at the first '?' even inside a
    // fragment, so once the query is gone a '?' in the fragment reads as one (the fragment's
    // text was there before; nothing is added).
    let stripped = path_without_params(path, &["access_token"]);
    if !path.contains('#') {
        assert!(
            !query_params(&stripped).any(|(name, _)| name == "access_token"),
            "access_token left in {stripped:?}"
        );
    }
    if let Some(rest) = cookie_header_without(cookie, &["session"]) {
        assert!(
            !cookies(&rest).any(|(name, _)| name == "session"),
            "session cookie left in {rest:?}"
        );
    }

    // The client address: Envoy's own, or X-Forwarded-For behind trusted proxies.
    for hops in [0, 1, 2, u32::MAX] {
        check_ip(client_ip(Some("192.0.2.1:443"), Some(xff), hops));
        check_ip(client_ip(Some(xff), Some(xff), hops));
    }
    check_ip(client_ip(Some(path), None, 0));
});
