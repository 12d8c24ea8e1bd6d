//! The revocation response header's grammar (`self`, `jti=`, `sub=`, RFC 8941 quoted
//! strings), as an upstream could write it: never a panic, and a value that does not parse
//! (or names an unknown directive) revokes nothing at all.
#![no_main]

use bearer_guard::decide::decision::Authorized;
use bearer_guard::revocation::learned::{from_header, HeaderPolicy, HeaderProblem};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let token = Authorized {
        provider: "corp".into(),
        jti: Some("j-1".into()),
        sub: Some("alice".into()),
        token_sha256: [1; 32],
        id: [2; 32],
        clock_skew_seconds: 60,
        max_lifetime_seconds: Some(3600),
        exp: Some(1_800_003_600),
        introspected: false,
        token: None,
    };
    for authorized in [Some(&token), None] {
        for policy in [HeaderPolicy::all(), HeaderPolicy::self_only()] {
            let out = from_header(value, authorized, &policy, 1_800_000_000);
            let refused_whole = out
                .problems
                .iter()
                .any(|p| matches!(p, HeaderProblem::Unparsable(_) | HeaderProblem::Unknown(_)));
            if refused_whole {
                assert!(out.learned.is_empty() && out.publish.is_empty() && !out.self_revoked);
            }
            assert_eq!(out.learned.len(), out.publish.len());
            if !policy.allow_sub && !policy.allow_jti {
                assert!(out.learned.len() <= 1, "only self can revoke: {value:?}");
            }
        }
    }
});
