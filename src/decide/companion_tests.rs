//! Companion providers (`providers.<name>.jwt_authn`): tokens Envoy's jwt_authn verified,
//! judged on the payload it wrote; and providers without an `issuer`.

use serde_json::{json, Value};

use crate::config::Config;
use crate::decide::decision::{Decision, DenyReason, RevocationSource};
use crate::decide::guard::{str_pairs, Guard, Request};
use crate::observe::fingerprint::digest_to_hex;
use crate::testkit::{self, good_claims, rs256, ISSUER, NOW};
use crate::token::id::token_id;
use crate::token::jwt_authn::VerifiedPayloads;

fn config(provider: Value, top: Value) -> Value {
    let mut config = json!({ "providers": { "mesh": provider } });
    if let (Some(c), Some(top)) = (config.as_object_mut(), top.as_object()) {
        c.extend(top.clone());
    }
    config
}

fn companion(extra: Value) -> Value {
    let mut provider = json!({
        "issuer": ISSUER,
        "jwt_authn": { "payload_in_metadata": ISSUER },
        "claim_to_headers": [{ "claim_name": "sub", "header_name": "x-sub" }],
    });
    if let (Some(p), Some(extra)) = (provider.as_object_mut(), extra.as_object()) {
        p.extend(extra.clone());
    }
    provider
}

fn guard(config: Value) -> Guard {
    Guard::new(
        Config::from_json(config.to_string().as_bytes())
            .expect("config")
            .config,
    )
}

fn decide(
    g: &Guard,
    headers: &[(String, String)],
    payloads: Option<&VerifiedPayloads>,
) -> Decision {
    decide_at(g, "/orders", headers, payloads)
}

fn reason(decision: &Decision) -> Option<DenyReason> {
    match decision {
        Decision::Allow { .. } => None,
        Decision::Deny(denial) => Some(denial.reason),
        other => panic!("{other:?}"),
    }
}

fn verified(claims: &Value) -> VerifiedPayloads {
    VerifiedPayloads::from_json([(ISSUER, claims.to_string().as_str())])
}

fn bearer(token: &str) -> Vec<(String, String)> {
    vec![("authorization".to_owned(), format!("Bearer {token}"))]
}

fn claims_with(changes: Value) -> Value {
    let mut claims = good_claims();
    if let (Some(c), Some(changes)) = (claims.as_object_mut(), changes.as_object()) {
        c.extend(changes.clone());
    }
    claims
}

#[test]
fn a_payload_jwt_authn_verified_is_a_token_without_a_signature_check() {
    let g = guard(config(companion(json!({})), json!({})));
    let claims = good_claims();
    // No token in the request at all (jwt_authn did not forward it): the payload is enough.
    let allowed = decide(&g, &[], Some(&verified(&claims)));
    let Decision::Allow {
        provider, upstream, ..
    } = allowed
    else {
        panic!("{allowed:?}");
    };
    assert_eq!(provider.as_deref(), Some("mesh"));
    assert!(upstream
        .set_headers
        .contains(&("x-sub".to_owned(), "alice".to_owned())));
    // Forwarded by jwt_authn: the token stays in the request.
    let token = rs256(&claims);
    let allowed = decide(&g, &bearer(&token), Some(&verified(&claims)));
    let Decision::Allow { upstream, .. } = allowed else {
        panic!("{allowed:?}");
    };
    assert!(upstream.remove_headers.iter().all(|h| h != "authorization"));
    assert_eq!(upstream.path, None);
}

#[test]
fn without_the_payload_there_is_no_token_of_that_provider() {
    let g = guard(config(companion(json!({})), json!({})));
    assert_eq!(
        reason(&decide(&g, &[], None)),
        Some(DenyReason::MissingToken)
    );
    // A token jwt_authn did not vouch for (refused under allow_missing_or_failed, or not its
    // provider's): never verified here, and never taken for no token either.
    let token = rs256(&good_claims());
    let denied = decide(&g, &bearer(&token), None);
    assert_eq!(reason(&denied), Some(DenyReason::NotTheVerifiedToken));
    let other_key = VerifiedPayloads::from_json([("another", good_claims().to_string().as_str())]);
    assert_eq!(
        reason(&decide(&g, &bearer(&token), Some(&other_key))),
        Some(DenyReason::NotTheVerifiedToken)
    );
}

#[test]
fn an_unverified_token_on_an_allow_missing_route_is_refused_not_sent_upstream() {
    // jwt_authn with allow_missing_or_failed lets a forged or expired token through without
    // a payload; a bearer-guard rule that allows no token must not let that one pass.
    let g = guard(config(
        companion(json!({})),
        json!({ "rules": [{ "match": { "prefix": "/" }, "requires": { "allow_missing": {} } }] }),
    ));
    assert_eq!(reason(&decide(&g, &[], None)), None);
    let forged = rs256(&claims_with(json!({ "exp": NOW - 7200 })));
    assert_eq!(
        reason(&decide(&g, &bearer(&forged), None)),
        Some(DenyReason::NotTheVerifiedToken)
    );
}

#[test]
fn every_check_after_the_signature_still_runs_on_the_payload() {
    let g = guard(config(
        companion(json!({ "audiences": ["orders-api"], "subjects": { "prefix": "al" } })),
        json!({ "rules": [{ "match": { "prefix": "/" },
                             "requires": { "provider_name": "mesh" }, "scopes": ["read"] }] }),
    ));
    let ok = claims_with(json!({ "scope": "read write" }));
    assert_eq!(reason(&decide(&g, &[], Some(&verified(&ok)))), None);
    for (changes, expected) in [
        (json!({ "exp": NOW - 3600 }), DenyReason::Expired),
        (
            json!({ "iss": "https://other" }),
            DenyReason::IssuerNotAccepted,
        ),
        (json!({ "aud": "billing" }), DenyReason::AudienceNotAccepted),
        (json!({ "sub": "bob" }), DenyReason::SubjectNotAccepted),
        (json!({ "scope": "write" }), DenyReason::InsufficientScope),
        // An ID token is not an access token, whoever verified it.
        (
            json!({ "nonce": "n", "at_hash": "h" }),
            DenyReason::NotAnAccessToken,
        ),
    ] {
        let mut claims = ok.clone();
        if let (Some(c), Some(changes)) = (claims.as_object_mut(), changes.as_object()) {
            c.extend(changes.clone());
        }
        assert_eq!(
            reason(&decide(&g, &[], Some(&verified(&claims)))),
            Some(expected),
            "{changes}"
        );
    }
    let garbage = VerifiedPayloads::from_json([(ISSUER, "[1, 2]")]);
    assert_eq!(
        reason(&decide(&g, &[], Some(&garbage))),
        Some(DenyReason::MalformedToken)
    );
}

#[test]
fn revocations_apply_and_hash_entries_need_the_original_token() {
    let claims = claims_with(json!({ "jti": "j-1" }));
    let token = rs256(&claims);
    let hex = digest_to_hex(&token_id(&token));
    let revoked = |revocation: Value, headers: &[(String, String)]| {
        let g = guard(config(
            companion(json!({})),
            json!({ "revocation": revocation }),
        ));
        decide(&g, headers, Some(&verified(&claims)))
    };
    for revocation in [
        json!({ "jti": ["j-1"] }),
        json!({ "subjects": { "alice": NOW } }),
        json!({ "issued_before": NOW }),
    ] {
        for headers in [vec![], bearer(&token)] {
            let denied = revoked(revocation.clone(), &headers);
            assert_eq!(reason(&denied), Some(DenyReason::Revoked), "{revocation}");
            let Decision::Deny(denial) = denied else {
                unreachable!()
            };
            assert_eq!(denial.revoked_by, Some(RevocationSource::Config));
        }
    }
    let by_hash = json!({ "token_sha256": [hex] });
    assert_eq!(
        reason(&revoked(by_hash.clone(), &bearer(&token))),
        Some(DenyReason::Revoked)
    );
    // Without the token its hash is unknown: what the README says about `forward`.
    assert_eq!(reason(&revoked(by_hash, &[])), None);
}

#[test]
fn a_token_beside_the_payload_must_be_the_one_jwt_authn_verified() {
    let g = guard(config(companion(json!({})), json!({})));
    let claims = claims_with(json!({ "jti": "j-1" }));
    // The client sends another token (a revoked one, an unsigned one) in the header bearer-guard
    // reads, while jwt_authn verified a different one (read from elsewhere): its hash must not
    // stand for the verified token, nor the other way round.
    for other in [
        rs256(&claims_with(json!({ "jti": "j-2" }))),
        testkit::unsigned_with_header(
            &json!({ "alg": "RS256" }),
            &claims_with(json!({ "jti": "j-9" })),
        ),
        "opaque-token".to_owned(),
    ] {
        assert_eq!(
            reason(&decide(&g, &bearer(&other), Some(&verified(&claims)))),
            Some(DenyReason::NotTheVerifiedToken)
        );
    }
    let two = vec![
        (
            "authorization".to_owned(),
            format!("Bearer {}", rs256(&claims)),
        ),
        ("authorization".to_owned(), "Bearer x.y.z".to_owned()),
    ];
    assert_eq!(
        reason(&decide(&g, &two, Some(&verified(&claims)))),
        Some(DenyReason::MultipleTokens)
    );
}

/// A companion's place listed twice is one place: the token jwt_authn verified, once in the
/// request, is one credential (it was refused as two before the config read each place once).
#[test]
fn a_companion_place_listed_twice_is_read_once() {
    let sources = json!({ "from_headers": [
        { "name": "authorization", "value_prefix": "Bearer " },
        { "name": "authorization", "value_prefix": "BEARER " }
    ]});
    let g = guard(config(companion(sources), json!({})));
    let claims = claims_with(json!({ "jti": "j-1" }));
    let token = rs256(&claims);
    assert_eq!(
        reason(&decide(&g, &bearer(&token), Some(&verified(&claims)))),
        None
    );
}

#[test]
fn a_companion_beside_a_verifying_provider_on_one_route() {
    let mut c = config(companion(json!({})), json!({}));
    c["providers"]["corp"] = testkit::config_json(json!({}), None)["providers"]["corp"].clone();
    c["providers"]["mesh"]["issuer"] = json!("https://mesh");
    c["providers"]["mesh"]["jwt_authn"]["payload_in_metadata"] = json!("https://mesh");
    let g = guard(c);
    // A token bearer-guard verifies itself, and no jwt_authn payload: the other provider.
    let token = rs256(&good_claims());
    let allowed = decide(&g, &bearer(&token), None);
    assert!(
        matches!(&allowed, Decision::Allow { provider: Some(p), .. } if p == "corp"),
        "{allowed:?}"
    );
    // A token signed by nobody this filter knows is still verified (and refused) by `corp`.
    let forged =
        testkit::unsigned_with_header(&json!({ "alg": "RS256", "kid": "rsa-1" }), &good_claims());
    assert_eq!(
        reason(&decide(&g, &bearer(&forged), None)),
        Some(DenyReason::BadSignature)
    );
}

#[test]
fn companion_config_errors_name_the_key() {
    let error = |provider: Value, top: Value| {
        Config::from_json(config(provider, top).to_string().as_bytes())
            .expect_err("refused")
            .to_string()
    };
    let keys = testkit::jwks();
    assert!(error(companion(json!({ "local_jwks": keys })), json!({}))
        .contains("providers.mesh.local_jwks"));
    assert!(
        error(companion(json!({ "algorithms": ["RS256"] })), json!({}))
            .contains("providers.mesh.algorithms")
    );
    assert!(error(
        companion(json!({ "jwt_authn": { "payload_in_metadata": "" } })),
        json!({})
    )
    .contains("providers.mesh.jwt_authn.payload_in_metadata"));
    let mut two = config(companion(json!({})), json!({}));
    two["providers"]["again"] = companion(json!({}));
    let text = Config::from_json(two.to_string().as_bytes())
        .expect_err("two companions of one payload")
        .to_string();
    assert!(
        text.contains("providers.mesh.jwt_authn.payload_in_metadata"),
        "{text}"
    );
    assert!(
        error(json!({ "issuer": "", "local_jwks": keys }), json!({}))
            .contains("providers.mesh.issuer")
    );
}

#[test]
fn a_provider_without_issuer_takes_only_tokens_without_iss() {
    let mut provider = testkit::config_json(json!({}), None)["providers"]["corp"].clone();
    if let Some(p) = provider.as_object_mut() {
        p.remove("issuer");
    }
    let g = guard(config(provider, json!({})));
    let mut claims = good_claims();
    if let Some(c) = claims.as_object_mut() {
        c.remove("iss");
    }
    assert_eq!(reason(&decide(&g, &bearer(&rs256(&claims)), None)), None);
    // A token that names an issuer is not this provider's, signed with its keys or not.
    assert_eq!(
        reason(&decide(&g, &bearer(&rs256(&good_claims())), None)),
        Some(DenyReason::IssuerNotAccepted)
    );
}

#[test]
fn one_key_for_every_issuer_as_istio_writes_it() {
    // Istio writes every RequestAuthentication issuer's payload under `payload`, with `scope`
    // split into an array (normalize_payload_in_metadata).
    let provider = |issuer: &str| json!({ "issuer": issuer, "jwt_authn": { "payload_in_metadata": "payload" } });
    let g = guard(json!({
        "providers": { "a": provider("https://a"), "b": provider("https://b") },
        "rules": [{ "match": { "prefix": "/" },
                    "requires": { "requires_any": { "requirements": [
                        { "provider_name": "a" }, { "provider_name": "b" } ] } },
                    "scopes": ["read"] }],
    }));
    let payload = |iss: &str| {
        let mut claims = claims_with(json!({ "iss": iss, "scope": ["read", "write"] }));
        claims["aud"] = json!(["x"]);
        VerifiedPayloads::from_json([("payload", claims.to_string().as_str())])
    };
    for (iss, provider) in [("https://a", "a"), ("https://b", "b")] {
        let decision = decide(&g, &[], Some(&payload(iss)));
        assert!(
            matches!(&decision, Decision::Allow { provider: Some(p), .. } if p == provider),
            "{decision:?}"
        );
    }
    assert_eq!(
        reason(&decide(&g, &[], Some(&payload("https://c")))),
        Some(DenyReason::IssuerNotAccepted)
    );
    let mut same =
        json!({ "providers": { "a": provider("https://a"), "b": provider("https://a") } });
    let text = Config::from_json(same.to_string().as_bytes())
        .expect_err("one key, one issuer, two providers")
        .to_string();
    assert!(
        text.contains("providers.b.jwt_authn.payload_in_metadata"),
        "{text}"
    );
    same["providers"]["b"]["issuer"] = json!("https://b");
    assert!(Config::from_json(same.to_string().as_bytes()).is_ok());
}

#[test]
fn status_lists_of_companion_tokens_are_verified_with_their_issuers_keys() {
    let uri = "https://status.example/lists/1";
    let status_list = json!({ "status_list": {
        "clusters": { "status.example": "status" }, "max_stale_seconds": 60 } });
    let mut c = config(companion(json!({})), json!({ "revocation": status_list }));
    let g_alone = guard(c.clone());
    // The issuer's keys, in a provider of the same issuer beside the companion.
    c["providers"]["keys"] = testkit::config_json(json!({}), None)["providers"]["corp"].clone();
    let g = guard(c);
    let companion_index = 1; // providers by name: "keys", "mesh"
    let list = testkit::mint_with_header(
        testkit::Signer::Rs256(&testkit::keys().rsa),
        json!({ "kid": "rsa-1", "typ": "statuslist+jwt" }),
        &json!({ "sub": uri, "iat": NOW - 5,
                 "status_list": crate::idp::status_list::encode_claim(1, &[0, 1]).expect("list") }),
    );
    let with_status = |idx: u64| {
        verified(&claims_with(
            json!({ "status": { "status_list": { "idx": idx, "uri": uri } } }),
        ))
    };
    assert_eq!(
        decide(&g, &[], Some(&with_status(1))),
        Decision::WaitForStatusList {
            provider: companion_index,
            uri: uri.to_owned()
        }
    );
    assert!(g
        .install_status_list(companion_index, uri, &list, NOW)
        .is_ok());
    assert_eq!(reason(&decide(&g, &[], Some(&with_status(0)))), None);
    assert_eq!(
        reason(&decide(&g, &[], Some(&with_status(1)))),
        Some(DenyReason::Revoked)
    );
    // Without a provider holding the issuer's keys, the list cannot be trusted: never held.
    let refused = g_alone.install_status_list(0, uri, &list, NOW);
    assert!(
        refused
            .as_ref()
            .is_err_and(|why| why.contains("jwt_authn companion")),
        "{refused:?}"
    );
}

fn decide_at(
    g: &Guard,
    path: &str,
    headers: &[(String, String)],
    payloads: Option<&VerifiedPayloads>,
) -> Decision {
    g.decide(
        &Request {
            jwt_authn: payloads,
            ..Request::get(path, &str_pairs(headers))
        },
        NOW,
    )
    .decision
}

/// Attack: jwt_authn reads `?access_token=` by default (Envoy's default locations, Istio's
/// too) and cannot remove a token from the query, even with `forward: false`. A client whose
/// token is revoked by its hash sends it in the query instead of `Authorization`: jwt_authn
/// verifies it and writes its payload; the companion, which reads only `Authorization`, finds
/// no token and judges the payload alone, so the hash revocation never applies, and the token
/// goes upstream in the URL (what the normal path refuses as `TokenInQuery`).
#[test]
fn a_token_in_the_query_that_the_companion_does_not_read_is_refused() {
    let claims = claims_with(json!({ "jti": "j-hashed" }));
    let token = rs256(&claims);
    let hex = digest_to_hex(&token_id(&token));
    let g = guard(config(
        companion(json!({})),
        json!({ "revocation": { "token_sha256": [hex] } }),
    ));
    // In the header it reads: revoked.
    assert_eq!(
        reason(&decide(&g, &bearer(&token), Some(&verified(&claims)))),
        Some(DenyReason::Revoked)
    );
    for path in [
        format!("/orders?access_token={token}"),
        format!("/orders?Access_Token={token}"),
    ] {
        let decision = decide_at(&g, &path, &[], Some(&verified(&claims)));
        assert!(
            matches!(
                reason(&decision),
                Some(DenyReason::TokenInQuery | DenyReason::Revoked)
            ),
            "{path}: {decision:?}"
        );
    }
}

/// Attack: jwt_authn reads the token from a header the companion does not (Istio `fromHeaders`),
/// and the client puts a token of its own making in `Authorization`: the same `iss`, `sub`,
/// `aud`, `jti`, `scope` and times as the verified payload (so it passes the "same claims"
/// check) plus claims the payload does not have (`roles`), signed by nobody. It is left in the
/// request and reaches the upstream as if it were the token jwt_authn verified.
#[test]
fn a_token_beside_the_payload_with_extra_claims_is_not_the_verified_token() {
    let g = guard(config(companion(json!({})), json!({})));
    let claims = claims_with(json!({ "jti": "j-1" }));
    let mut inflated = claims.clone();
    inflated["roles"] = json!(["admin"]);
    inflated["email"] = json!("root@example.com");
    let forged =
        testkit::unsigned_with_header(&json!({ "alg": "RS256", "kid": "rsa-1" }), &inflated);
    assert_eq!(
        reason(&decide(&g, &bearer(&forged), Some(&verified(&claims)))),
        Some(DenyReason::NotTheVerifiedToken)
    );
    // The verified token itself still passes, and so does Istio's split `scope`.
    let with_scope = claims_with(json!({ "jti": "j-1", "scope": "read write" }));
    let mut split = with_scope.clone();
    split["scope"] = json!(["read", "write"]);
    assert_eq!(
        reason(&decide(
            &g,
            &bearer(&rs256(&with_scope)),
            Some(&verified(&split))
        )),
        None
    );
}

/// Attack: a route takes either the payload jwt_authn verified (companion `mesh`) or a token
/// bearer-guard verifies itself (`corp`, same issuer, its JWKS: the provider the docs tell
/// operators to add for status lists). The user logs out (`x-revoke-token: self` on a request
/// the companion let through); the next request with the same forwarded token is refused by
/// the companion, and `requires_any` goes on to `corp`, which verifies the same token and
/// lets it through: the two do not share revocations (different trust anchors).
#[test]
fn a_token_revoked_through_the_companion_is_not_let_through_by_a_keyed_provider_of_its_issuer() {
    let mut c = config(
        companion(json!({})),
        json!({ "revocation": { "response_header": "x-revoke-token" },
                "rules": [{ "match": { "prefix": "/" },
                            "requires": { "requires_any": { "requirements": [
                                { "provider_name": "mesh" }, { "provider_name": "corp" } ] } } }] }),
    );
    c["providers"]["corp"] = testkit::config_json(json!({}), None)["providers"]["corp"].clone();
    let g = guard(c);
    let claims = claims_with(json!({ "jti": "j-logout" }));
    let token = rs256(&claims);
    let allowed = decide(&g, &bearer(&token), Some(&verified(&claims)));
    let Decision::Allow {
        provider,
        token: Some(authorized),
        ..
    } = allowed
    else {
        panic!("{allowed:?}");
    };
    assert_eq!(provider.as_deref(), Some("mesh"));
    g.learn_self(&authorized, NOW);
    let after = decide(&g, &bearer(&token), Some(&verified(&claims)));
    assert_eq!(reason(&after), Some(DenyReason::Revoked), "{after:?}");
}
