//! Header values an attacker (or an upstream) controls, outside the token itself: the
//! revocation response header (`revocation_learned::from_header`), credential extraction from
//! headers, cookies and query parameters (`extract`), and X-Forwarded-For (`client_ip`).
//!
//! The input is read as lossy UTF-8 and split on '\n' into up to five fields: revocation
//! header, authorization header, cookie header, `:path`, X-Forwarded-For. A missing field is
//! the whole input, so even a short input reaches every parser.
#![no_main]

use std::net::IpAddr;

use bearer_guard::client_ip::client_ip;
use bearer_guard::extract::{
    cookie_header_without, cookies, find_credential, path_without_params, query_params, Credential,
    TokenSource,
};
use bearer_guard::revocation_learned::{from_header, Authorized};
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
    let text = String::from_utf8_lossy(data);
    let whole: &str = &text;
    let mut fields = whole.splitn(5, '\n');
    let revoke = fields.next().unwrap_or_default();
    let authorization = fields.next().unwrap_or(whole);
    let cookie = fields.next().unwrap_or(whole);
    let path = fields.next().unwrap_or(whole);
    let xff = fields.next().unwrap_or(whole);

    // The revocation header, on a request no token authorized and on one a token did.
    let _ = from_header(revoke, None, NOW);
    let authorized = Authorized {
        provider: "corp".to_owned(),
        jti: (revoke.len() % 2 == 0).then(|| revoke.to_owned()),
        sub: Some("alice".to_owned()),
        token_sha256: [7; 32],
        exp: Some(NOW + 60),
        introspected: false,
        token: None,
    };
    let learned = from_header(revoke, Some(&authorized), NOW);
    assert_eq!(learned.learned.len(), learned.publish.len());
    for problem in &learned.problems {
        let _ = problem.to_string();
    }

    // Credentials in headers, cookies and the query.
    let headers = vec![
        ("authorization".to_owned(), authorization.to_owned()),
        ("X-Token".to_owned(), revoke.to_owned()),
        ("cookie".to_owned(), cookie.to_owned()),
    ];
    let sources = [
        TokenSource::authorization_bearer(),
        TokenSource::header("x-token", "Token "),
        TokenSource::Cookie {
            name: "session".to_owned(),
        },
        TokenSource::Param {
            name: "access_token".to_owned(),
        },
    ];
    let all: Vec<&TokenSource> = sources.iter().collect();
    if let Credential::One { token, source } = find_credential(&headers, path, &all) {
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
