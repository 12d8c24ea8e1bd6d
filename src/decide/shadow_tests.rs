//! Shadow mode in the core: the decision is the same in both modes (same reason, same
//! upstream for an allowed request), only the verdict's mode differs, and the mode comes from
//! the rule, else the top level. Time is injected.

use serde_json::{json, Value};

use crate::config::Config;
use crate::decide::decision::{Decision, DenyReason, Upstream};
use crate::decide::guard::{str_pairs, Guard, Request, Verdict};
use crate::policy::mode::Mode;
use crate::testkit::{self, good_claims, rs256, NOW};

fn guard(config: &Value) -> Guard {
    Guard::new(
        Config::from_json(config.to_string().as_bytes())
            .unwrap()
            .config,
    )
}

/// `testkit::writing_config` with these rules.
fn config(mode: &str, rules: Option<Value>) -> Value {
    let mut config = testkit::writing_config(mode);
    if let Some(rules) = rules {
        config["rules"] = rules;
    }
    config
}

fn decide(guard: &Guard, path: &str, headers: &[(String, String)], now: i64) -> Verdict {
    guard.decide(&Request::get(path, &str_pairs(headers)), now)
}

fn bearer(token: &str) -> Vec<(String, String)> {
    vec![("authorization".to_owned(), format!("Bearer {token}"))]
}

fn reason(decision: &Decision) -> Option<DenyReason> {
    match decision {
        Decision::Deny(denial) => Some(denial.reason),
        _ => None,
    }
}

#[test]
fn a_shadowed_denial_is_the_enforced_denial_with_another_mode() {
    let token = rs256(&good_claims());
    let (enforce, shadow) = (
        guard(&config("enforce", None)),
        guard(&config("shadow", None)),
    );
    // exp = NOW + 3600, clock skew 60: allowed now, expired an hour later, in both modes.
    for now in [NOW, NOW + 3_661] {
        let enforced = decide(&enforce, "/orders", &bearer(&token), now);
        let shadowed = decide(&shadow, "/orders", &bearer(&token), now);
        assert_eq!(enforced.mode, Mode::Enforce);
        assert_eq!(shadowed.mode, Mode::Shadow);
        assert_eq!(
            Verdict {
                mode: Mode::Enforce,
                ..shadowed
            },
            enforced,
            "at {now}"
        );
    }
    let late = decide(&shadow, "/orders", &bearer(&token), NOW + 3_661);
    assert_eq!(reason(&late.decision), Some(DenyReason::Expired));
    let missing = decide(&shadow, "/orders", &[], NOW);
    assert_eq!(reason(&missing.decision), Some(DenyReason::MissingToken));
    assert_eq!(missing.mode, Mode::Shadow);
}

#[test]
fn a_rule_mode_overrides_the_top_level_and_no_rule_is_the_top_level() {
    let rules = json!([
        { "match": { "prefix": "/admin" }, "requires": { "provider_name": "corp" }, "mode": "enforce" },
        { "match": { "prefix": "/beta" }, "requires": { "provider_name": "corp" } },
    ]);
    let top_shadow = guard(&config("shadow", Some(rules)));
    let mode = |g: &Guard, path: &str| decide(g, path, &[], NOW).mode;
    assert_eq!(mode(&top_shadow, "/admin/users"), Mode::Enforce);
    assert_eq!(mode(&top_shadow, "/beta/x"), Mode::Shadow, "inherited");
    let unmatched = decide(&top_shadow, "/other", &[], NOW);
    assert_eq!(
        reason(&unmatched.decision),
        Some(DenyReason::NoMatchingRule)
    );
    assert_eq!(
        unmatched.mode,
        Mode::Shadow,
        "no rule: the top level's mode"
    );

    let rules = json!([
        { "match": { "prefix": "/beta" }, "requires": { "provider_name": "corp" }, "mode": "shadow" },
        { "match": { "prefix": "/" }, "requires": { "provider_name": "corp" } },
    ]);
    let top_enforce = guard(&config("enforce", Some(rules)));
    assert_eq!(mode(&top_enforce, "/beta"), Mode::Shadow);
    assert_eq!(mode(&top_enforce, "/orders"), Mode::Enforce);
    // The rule is chosen from the path without its query: `?/beta` picks nothing.
    assert_eq!(mode(&top_enforce, "/orders?/beta"), Mode::Enforce);
    assert_eq!(
        mode(&top_enforce, "/betamax"),
        Mode::Shadow,
        "a prefix is a prefix"
    );
}

#[test]
fn an_unreadable_request_line_is_judged_under_the_top_level_mode() {
    let rules = json!([
        { "match": { "prefix": "/" }, "requires": { "provider_name": "corp" }, "mode": "shadow" },
    ]);
    let g = guard(&config("enforce", Some(rules)));
    let not_utf8 = [":path"];
    let request = Request {
        method: "GET",
        path: "",
        headers: &[],
        tls: false,
        not_utf8: &not_utf8,
        jwt_authn: None,
    };
    let verdict = g.decide(&request, NOW);
    assert_eq!(reason(&verdict.decision), Some(DenyReason::NoMatchingRule));
    assert_eq!(verdict.mode, Mode::Enforce);
    assert_eq!(g.mode_for(&request), Mode::Enforce);
}

#[test]
fn a_shadowed_denial_goes_upstream_cleaned_only_of_the_headers_bearer_guard_writes() {
    let g = guard(&config("shadow", None));
    let upstream = g.shadowed_upstream();
    let mut removed = upstream.remove_headers.clone();
    removed.sort();
    assert_eq!(removed, ["x-payload", "x-revoke-token", "x-user"]);
    assert_eq!(
        upstream,
        Upstream {
            remove_headers: upstream.remove_headers.clone(),
            set_headers: Vec::new(),
            path: None,
        },
        "nothing set, the credential not touched"
    );
}

#[test]
fn a_shadow_allowed_request_goes_upstream_as_an_enforced_one() {
    let token = rs256(&good_claims());
    let allowed = |mode: &str| match decide(&guard(&config(mode, None)), "/", &bearer(&token), NOW)
        .decision
    {
        Decision::Allow { upstream, .. } => upstream,
        other => panic!("{other:?}"),
    };
    let shadowed = allowed("shadow");
    assert_eq!(shadowed, allowed("enforce"));
    assert!(shadowed
        .remove_headers
        .contains(&"authorization".to_owned()));
    assert!(shadowed
        .set_headers
        .contains(&("x-user".to_owned(), "alice".to_owned())));
}
