//! Plugin configuration JSON: parsing and compiling (providers, inline JWKS, rules and their
//! regexes, revocation entries, endpoints). A config that compiles must also serve a request.
#![no_main]

use bearer_guard::config::Config;
use bearer_guard::decide::guard::{Guard, Request};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(configured) = Config::from_json(data) else {
        return;
    };
    let guard = Guard::new(configured.config);
    let _ = guard.config().expiry_grace_seconds();
    let _ = guard.config().wants_identity();
    let _ = guard.state().status_lists_due(NOW);
    let headers = [
        ("authorization", "Bearer a.b.c"),
        ("origin", "https://app.example"),
        ("access-control-request-method", "GET"),
    ];
    for (method, path) in [("GET", "/orders/1?access_token=x"), ("OPTIONS", "/")] {
        let request = Request {
            method,
            path,
            headers: &headers,
            tls: false,
            not_utf8: &[],
            jwt_authn: None,
        };
        let _ = guard.decide(&request, NOW);
    }
});
