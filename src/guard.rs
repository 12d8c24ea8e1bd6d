//! The decision: given a request and the time, allow it or deny it with a reason.

use crate::claims::{check_audience, check_times};
use crate::config::{Config, Provider};
use crate::decision::{Decision, Denial, DenyReason};
use crate::extract::{find_credential, Credential, HeaderSource};
use crate::fingerprint::fingerprint;
use crate::host_crypto::HostCrypto;
use crate::rules::Requirement;
use crate::verify::{self, ParsedToken};

/// What the adapter gathers from the host for one request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// `:path`, query included; rules ignore the query.
    pub path: &'a str,
    pub headers: &'a [(String, String)],
}

pub struct Guard {
    config: Config,
    /// The host's signature verifier, when it passed its self-test and config allows it.
    host_crypto: Option<Box<dyn HostCrypto>>,
}

impl Guard {
    pub fn new(config: Config) -> Self {
        Guard {
            config,
            host_crypto: None,
        }
    }

    /// Verify RSA and ECDSA signatures through the host instead of in wasm.
    pub fn with_host_crypto(mut self, host: Box<dyn HostCrypto>) -> Self {
        self.host_crypto = Some(host);
        self
    }

    pub fn uses_host_crypto(&self) -> bool {
        self.host_crypto.is_some()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// `now` is Unix seconds from the host's clock.
    pub fn decide(&self, request: &Request<'_>, now: i64) -> Decision {
        let candidates: Vec<&Provider> = match self
            .config
            .rules
            .requirement_for(request.method, request.path)
        {
            None => return self.deny(DenyReason::NoMatchingRule, None, None),
            Some(Requirement::Public) => return Decision::Allow { provider: None },
            Some(Requirement::Provider(index)) => {
                self.config.providers.get(index).into_iter().collect()
            }
            Some(Requirement::AnyProvider) => self.config.providers.iter().collect(),
        };
        let mut sources: Vec<&HeaderSource> = Vec::new();
        for source in candidates.iter().flat_map(|p| p.sources.iter()) {
            if !sources.contains(&source) {
                sources.push(source);
            }
        }
        let (token, source) = match find_credential(request.headers, &sources) {
            Credential::None => return self.deny(DenyReason::MissingToken, None, None),
            Credential::Multiple => return self.deny(DenyReason::MultipleTokens, None, None),
            Credential::One { token, source } => (token, source),
        };
        let deny = |reason, provider: Option<&Provider>| {
            self.deny(
                reason,
                provider.map(|p| p.name.clone()),
                Some(fingerprint(token)),
            )
        };
        let parsed = match verify::parse(token) {
            Ok(parsed) => parsed,
            Err(reason) => return deny(reason, None),
        };
        // The unverified `iss` only picks the provider; that provider's keys then decide.
        let mut first_failure = None;
        for provider in candidates.iter().filter(|p| {
            parsed.claims.iss.as_deref() == Some(p.issuer.as_str()) && p.sources.contains(source)
        }) {
            match check_with_provider(&parsed, provider, now, self.host_crypto.as_deref()) {
                Ok(()) => {
                    return Decision::Allow {
                        provider: Some(provider.name.clone()),
                    }
                }
                Err(reason) => {
                    first_failure.get_or_insert((reason, *provider));
                }
            }
        }
        match first_failure {
            Some((reason, provider)) => deny(reason, Some(provider)),
            None => deny(DenyReason::IssuerNotAccepted, None),
        }
    }

    fn deny(
        &self,
        reason: DenyReason,
        provider: Option<String>,
        token_fingerprint: Option<String>,
    ) -> Decision {
        Decision::Deny(Denial::new(
            reason,
            &self.config.realm,
            provider,
            token_fingerprint,
        ))
    }
}

/// Signature first: claims of a token that is not authentic are not worth reporting on.
fn check_with_provider(
    token: &ParsedToken<'_>,
    provider: &Provider,
    now: i64,
    host: Option<&dyn HostCrypto>,
) -> Result<(), DenyReason> {
    verify::verify_signature(token, &provider.keys, host)?;
    check_times(token.times, provider.time, now)?;
    check_audience(token.claims.aud.as_ref(), &provider.audiences)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{self, good_claims, keys, mint, rs256, Signer, NOW};
    use jwt_compact::jwk::JsonWebKey;
    use serde_json::{json, Value};

    fn guard(config: Value) -> Guard {
        Guard::new(
            Config::from_json(config.to_string().as_bytes())
                .unwrap()
                .config,
        )
    }

    fn default_guard() -> Guard {
        guard(testkit::config_json(json!({}), None))
    }

    fn bearer(token: &str) -> Vec<(String, String)> {
        vec![("authorization".to_owned(), format!("Bearer {token}"))]
    }

    fn decide_at(guard: &Guard, path: &str, headers: &[(String, String)], now: i64) -> Decision {
        guard.decide(
            &Request {
                method: "GET",
                path,
                headers,
            },
            now,
        )
    }

    fn reason(decision: Decision) -> Option<DenyReason> {
        match decision {
            Decision::Allow { .. } => None,
            Decision::Deny(denial) => Some(denial.reason),
        }
    }

    fn check(token: &str) -> Option<DenyReason> {
        reason(decide_at(&default_guard(), "/orders", &bearer(token), NOW))
    }

    fn with(changes: Value) -> Value {
        let mut claims = good_claims();
        if let (Some(c), Some(changes)) = (claims.as_object_mut(), changes.as_object()) {
            for (k, v) in changes {
                if v.is_null() {
                    c.remove(k);
                } else {
                    c.insert(k.clone(), v.clone());
                }
            }
        }
        claims
    }

    #[test]
    fn valid_rs256_and_es256_tokens_are_allowed() {
        assert_eq!(check(&rs256(&good_claims())), None);
        let es = mint(Signer::Es256(&keys().ec), Some("ec-1"), &good_claims());
        assert_eq!(check(&es), None);
        assert_eq!(
            decide_at(&default_guard(), "/", &bearer(&es), NOW),
            Decision::Allow {
                provider: Some("corp".to_owned())
            }
        );
    }

    #[test]
    fn missing_and_multiple_credentials() {
        let g = default_guard();
        assert_eq!(
            reason(decide_at(&g, "/", &[], NOW)),
            Some(DenyReason::MissingToken)
        );
        let token = rs256(&good_claims());
        let mut two = bearer(&token);
        two.extend(bearer(&token));
        assert_eq!(
            reason(decide_at(&g, "/", &two, NOW)),
            Some(DenyReason::MultipleTokens)
        );
    }

    #[test]
    fn time_claims_are_checked_with_the_injected_clock() {
        let token = rs256(&good_claims());
        let g = default_guard();
        // exp = NOW + 3600, skew 60: valid until just before exp + 60.
        assert_eq!(
            reason(decide_at(&g, "/", &bearer(&token), NOW + 3659)),
            None
        );
        assert_eq!(
            reason(decide_at(&g, "/", &bearer(&token), NOW + 3660)),
            Some(DenyReason::Expired)
        );
        assert_eq!(
            check(&rs256(&with(json!({ "exp": NOW - 61 })))),
            Some(DenyReason::Expired)
        );
        assert_eq!(
            check(&rs256(&with(json!({ "nbf": NOW + 120 })))),
            Some(DenyReason::NotYetValid)
        );
        assert_eq!(
            check(&rs256(&with(json!({ "iat": NOW + 120 })))),
            Some(DenyReason::IssuedInFuture)
        );
        assert_eq!(
            check(&rs256(&with(json!({ "exp": null })))),
            Some(DenyReason::MissingExpiration)
        );
    }

    #[test]
    fn issuer_and_audience() {
        assert_eq!(
            check(&rs256(&with(json!({ "iss": "https://evil.example" })))),
            Some(DenyReason::IssuerNotAccepted)
        );
        assert_eq!(
            check(&rs256(&with(json!({ "iss": null })))),
            Some(DenyReason::IssuerNotAccepted)
        );
        assert_eq!(
            check(&rs256(&with(json!({ "aud": "other-api" })))),
            Some(DenyReason::AudienceNotAccepted)
        );
        assert_eq!(
            check(&rs256(&with(json!({ "aud": ["x", "orders-api"] })))),
            None
        );
        assert_eq!(
            check(&rs256(&with(json!({ "aud": null })))),
            Some(DenyReason::AudienceNotAccepted)
        );
    }

    #[test]
    fn signature_and_key_selection() {
        let k = keys();
        let forged = mint(Signer::Rs256(&k.rsa_other), Some("rsa-1"), &good_claims());
        assert_eq!(check(&forged), Some(DenyReason::BadSignature));
        let unknown = mint(Signer::Rs256(&k.rsa), Some("rsa-9"), &good_claims());
        assert_eq!(check(&unknown), Some(DenyReason::UnknownKeyId));
        let wrong_alg = mint(Signer::Es256(&k.ec), Some("rsa-1"), &good_claims());
        assert_eq!(check(&wrong_alg), Some(DenyReason::KeyAlgorithmMismatch));
        let no_kid = mint(Signer::Rs256(&k.rsa), None, &good_claims());
        assert_eq!(check(&no_kid), None);
    }

    #[test]
    fn tampered_payload_fails_the_signature() {
        let token = rs256(&good_claims());
        let mut parts: Vec<&str> = token.split('.').collect();
        let evil = testkit::unsigned_with_header(&json!({}), &with(json!({ "sub": "mallory" })));
        let evil_payload = evil.split('.').nth(1).unwrap().to_owned();
        parts[1] = &evil_payload;
        assert_eq!(check(&parts.join(".")), Some(DenyReason::BadSignature));
    }

    #[test]
    fn unsigned_symmetric_and_unknown_algorithms_are_refused_before_crypto() {
        let claims = good_claims();
        for alg in ["none", "None", "NONE"] {
            let t = testkit::unsigned_with_header(&json!({ "alg": alg, "kid": "rsa-1" }), &claims);
            assert_eq!(check(&t), Some(DenyReason::UnsignedToken), "{alg}");
        }
        let t = testkit::unsigned_with_header(&json!({ "alg": "HS256", "kid": "rsa-1" }), &claims);
        assert_eq!(check(&t), Some(DenyReason::SymmetricAlgorithm));
        let t = testkit::unsigned_with_header(&json!({ "alg": "PS256" }), &claims);
        assert_eq!(check(&t), Some(DenyReason::UnsupportedAlgorithm));
    }

    #[test]
    fn malformed_tokens() {
        for bad in ["", "abc", "a.b", "a.b.c.d", "a.b.c", "e30.e30.", "x y.z.w"] {
            assert_eq!(check(bad), Some(DenyReason::MalformedToken), "{bad:?}");
        }
        let t =
            testkit::unsigned_with_header(&json!({ "alg": "RS256" }), &json!({ "exp": "soon" }));
        assert_eq!(check(&t), Some(DenyReason::MalformedToken));
        let t = testkit::unsigned_with_header(&json!({ "alg": "RS256" }), &json!({ "aud": 7 }));
        assert_eq!(check(&t), Some(DenyReason::MalformedToken));
    }

    #[test]
    fn max_lifetime_is_enforced() {
        let g = guard(testkit::config_json(
            json!({ "max_lifetime_seconds": 600 }),
            None,
        ));
        let long = rs256(&good_claims());
        assert_eq!(
            reason(decide_at(&g, "/", &bearer(&long), NOW)),
            Some(DenyReason::LifetimeTooLong)
        );
        let short = rs256(&with(json!({ "exp": NOW + 500 })));
        assert_eq!(reason(decide_at(&g, "/", &bearer(&short), NOW)), None);
    }

    #[test]
    fn rules_public_routes_and_fail_closed() {
        let rules = json!([
            { "match": { "prefix": "/healthz" } },
            { "match": { "path": "/login", "methods": ["POST"] } },
            { "match": { "prefix": "/api" }, "requires": { "provider_name": "corp" } }
        ]);
        let g = guard(testkit::config_json(json!({}), Some(rules)));
        assert_eq!(
            decide_at(&g, "/healthz", &[], NOW),
            Decision::Allow { provider: None }
        );
        assert_eq!(
            reason(decide_at(&g, "/api/x", &[], NOW)),
            Some(DenyReason::MissingToken)
        );
        assert_eq!(
            reason(decide_at(&g, "/login", &[], NOW)),
            Some(DenyReason::NoMatchingRule)
        );
        let post = g.decide(
            &Request {
                method: "POST",
                path: "/login",
                headers: &[],
            },
            NOW,
        );
        assert_eq!(post, Decision::Allow { provider: None });
        assert_eq!(
            reason(decide_at(&g, "/other", &[], NOW)),
            Some(DenyReason::NoMatchingRule)
        );
    }

    #[test]
    fn provider_is_chosen_by_issuer_and_only_its_sources_count() {
        let k = keys();
        let partner_jwks = json!({ "keys": [
            testkit::public_jwk(JsonWebKey::from(&k.rsa_other), "p-1", None)
        ]});
        let config = json!({
            "providers": {
                "corp": testkit::config_json(json!({}), None)["providers"]["corp"].clone(),
                "partner": {
                    "issuer": "https://partner.example",
                    "local_jwks": partner_jwks,
                    "from_headers": [{ "name": "x-partner-token" }]
                }
            }
        });
        let g = guard(config);
        let partner = mint(
            Signer::Rs256(&k.rsa_other),
            Some("p-1"),
            &with(json!({ "iss": "https://partner.example" })),
        );
        let in_header = vec![("x-partner-token".to_owned(), partner.clone())];
        assert_eq!(
            decide_at(&g, "/", &in_header, NOW),
            Decision::Allow {
                provider: Some("partner".to_owned())
            }
        );
        // The partner's token in the corp provider's header is not accepted.
        assert_eq!(
            reason(decide_at(&g, "/", &bearer(&partner), NOW)),
            Some(DenyReason::IssuerNotAccepted)
        );
    }

    #[test]
    fn denials_carry_a_fingerprint_never_the_token() {
        let token = rs256(&with(json!({ "exp": NOW - 1000 })));
        let Decision::Deny(denial) = decide_at(&default_guard(), "/", &bearer(&token), NOW) else {
            panic!("expected a denial");
        };
        assert_eq!(
            denial.token_fingerprint,
            Some(crate::fingerprint::fingerprint(&token))
        );
        assert_eq!(denial.provider.as_deref(), Some("corp"));
        let rendered = format!("{denial:?}");
        let signature = token.rsplit('.').next().unwrap();
        assert!(!rendered.contains(signature));
    }
}
