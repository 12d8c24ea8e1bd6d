//! The decision for one request: the route's requirement (`requires_any`, `requires_all`,
//! a provider, public), each token in it through the pipeline (`pipeline.rs`), and the
//! verdict the shell applies. What the decision reads between requests (keys, lists, the
//! cache, learned revocations) is the shell's to write, in `State`.

use std::cell::Cell;

use crate::config::{normalize_token_type, status_list_signer, Config, Provider};
use crate::decide::decision::{Decision, DenyReason, Upstream, WaitFor};
use crate::decide::header_map;
use crate::decide::pipeline::{Granted, Look, Stop, TokenCheck};
use crate::decide::state::{HeldStatusList, State};
use crate::decide::trace::{Step, Trace, Tracer};
use crate::decide::upstream::UpstreamPlan;
use crate::idp::introspection::Answer;
use crate::idp::status_list::from_token_payload;
use crate::keys::host_crypto::HostCrypto;
use crate::policy::mode::Mode;
use crate::policy::rules::{is_cors_preflight, Requirement};
use crate::token::extract::{distinct, TokenSource};
use crate::token::id::TokenDigest;
use crate::token::jwt_authn::VerifiedPayloads;
use crate::token::verify;

pub use crate::decide::state::{HeldList, HeldSet};

/// What the adapter gathers from the host for one request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// `:path`, query included; rules ignore the query.
    pub path: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    /// The downstream connection is TLS (only read when a provider has `require_tls`).
    pub tls: bool,
    /// Names of headers whose value is not UTF-8 (left out of `headers`): a credential there
    /// is malformed; a `:path` or `:method` there matches no rule.
    pub not_utf8: &'a [&'a str],
    /// What jwt_authn verified earlier in the chain (read only when a provider is its
    /// companion); `None`: nothing.
    pub jwt_authn: Option<&'a VerifiedPayloads>,
}

/// When a decision is made, as the shell sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occasion {
    /// After a wait for keys, a list or an answer: never wait again.
    pub after_wait: bool,
    /// Whether a denial would be reported, as far as the shell knows: the decision log has
    /// room for its line this second (or filter state is on); the configuration must report
    /// denials too (`Config::reports_denials`). When not, the denial carries no fingerprint or
    /// identity, and the token is not hashed for them: under a flood of bad tokens, the lines
    /// the rate limit drops cost nothing.
    pub reported: bool,
}

impl Occasion {
    pub const FIRST: Occasion = Occasion {
        after_wait: false,
        reported: true,
    };
}

/// How the verified-token cache took part in a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheLookup {
    /// No token was looked up (public route, no or several credentials, cache disabled).
    Skipped,
    Hit,
    Miss,
}

/// The decision plus what the adapter counts about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub decision: Decision,
    pub cache: CacheLookup,
    /// Allowed although the revocation list is stale: counted and logged by the adapter.
    pub stale_allowed: bool,
    /// The mode the request was judged under (its rule's, else the top level's): under
    /// `Shadow` the adapter lets a denial through (`Guard::shadowed_upstream`) instead of
    /// answering it. The decision itself is the same in both modes.
    pub mode: Mode,
}

/// Introspection answers, cached per process by the adapter (shared data).
pub trait AnswerStore {
    fn lookup(&self, digest: &TokenDigest, now: i64) -> Option<Answer>;
}

pub struct Guard {
    pub(super) config: Config,
    /// Every provider index, for requirements any provider may meet (built once, not per request).
    all_providers: Vec<usize>,
    /// Where those providers read tokens (companions excluded: jwt_authn reads theirs), each
    /// place once; built once, not per request.
    all_sources: Vec<TokenSource>,
    /// The host's signature verifier, when it passed its self-test and config allows it.
    pub(super) crypto: Option<Box<dyn HostCrypto>>,
    /// Introspection answers (per process, in shared data, in the adapter).
    pub(super) answers: Option<Box<dyn AnswerStore>>,
    pub(super) state: State,
}

impl Guard {
    pub fn new(config: Config) -> Self {
        let keys = config.providers.iter().map(|p| p.keys.clone()).collect();
        let verifying = config.providers.iter().filter(|p| p.jwt_authn.is_none());
        let all_sources = distinct(verifying.flat_map(|p| p.sources.iter()));
        Guard {
            all_providers: (0..config.providers.len()).collect(),
            all_sources,
            state: State::new(keys, config.jwt_cache_size),
            config,
            crypto: None,
            answers: None,
        }
    }

    /// Where introspection answers are looked up (the adapter's shared-data cache).
    pub fn with_answer_store(mut self, store: Box<dyn AnswerStore>) -> Self {
        self.answers = Some(store);
        self
    }

    /// Verify RSA and ECDSA signatures through the host instead of in wasm.
    pub fn with_host_crypto(mut self, host: Box<dyn HostCrypto>) -> Self {
        self.crypto = Some(host);
        self
    }

    pub fn uses_host_crypto(&self) -> bool {
        self.crypto.is_some()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What the decision holds between requests; the shell installs what it fetches here.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// A fetched Status List Token for `uri`: checked like the draft says (`typ`, signature
    /// with the keys of the provider whose token referenced it, `sub`, `iat`, `exp`) and held
    /// until it is due again. Returns when it is due.
    pub fn install_status_list(
        &self,
        provider: usize,
        uri: &str,
        token: &str,
        fetched_at: i64,
    ) -> Result<i64, String> {
        let config = self
            .config
            .revocation
            .as_ref()
            .and_then(|r| r.status_list.as_ref())
            .ok_or("status lists are not configured")?;
        let (signer, issuer) = self.status_list_signer(provider)?;
        let parsed = verify::parse(token.trim()).map_err(|r| r.description().to_owned())?;
        if parsed.typ.as_deref().map(normalize_token_type).as_deref() != Some("statuslist+jwt") {
            return Err("typ is not statuslist+jwt".to_owned());
        }
        if !issuer.algorithms.contains(&parsed.algorithm) {
            return Err("algorithm not accepted for this provider".to_owned());
        }
        let keys = self.state.keys(signer);
        let verified = verify::verify_signature(&parsed, &keys, self.crypto.as_deref())
            .map_err(|r| r.description().to_owned())?;
        let payload: serde_json::Value =
            serde_json::from_slice(verified.payload_json()).map_err(|e| e.to_string())?;
        let checked = from_token_payload(&payload, uri, fetched_at, config.default_ttl_seconds)
            .map_err(|e| e.to_string())?;
        // A `ttl` of years must not pin a list: refetch at least daily.
        let fresh_until = checked.fresh_until.min(fetched_at.saturating_add(86_400));
        self.state.hold_status_list(
            uri,
            HeldStatusList {
                provider,
                issued_at: checked.issued_at,
                list: std::rc::Rc::new(checked.list),
                fresh_until,
                expires_at: checked.expires_at,
                fetched_at,
            },
        )?;
        Ok(fresh_until)
    }

    /// Whose keys verify the status lists a provider's tokens reference (`status_list_signer`).
    fn status_list_signer(&self, provider: usize) -> Result<(usize, &Provider), String> {
        let providers = &self.config.providers;
        let referenced_by = providers.get(provider).ok_or("no such provider")?;
        status_list_signer(providers, provider)
            .and_then(|signer| providers.get(signer).map(|p| (signer, p)))
            .ok_or_else(|| {
                format!(
                    "provider {} is a jwt_authn companion: the status lists its tokens name are \
                     verified with the keys of a provider of the same issuer, and there is none",
                    referenced_by.name
                )
            })
    }

    /// Revocation entries held: config, the polled list and what was learned at run time.
    /// A configured revocation source (the list, etcd) has not answered its first read yet:
    /// requests wait for it, and are let go once none is pending.
    pub fn first_revocation_read_pending(&self) -> bool {
        let Some(config) = &self.config.revocation else {
            return false;
        };
        (config.list.is_some() && self.state.revocation_list_checked_at().is_none())
            || (config.etcd.is_some() && self.state.etcd_confirmed_at().is_none())
    }

    pub fn revocation_entries(&self) -> usize {
        let configured = self
            .config
            .revocation
            .as_ref()
            .map_or(0, |r| r.static_set.len());
        configured + self.state.held_entries()
    }

    /// `now` is Unix seconds from the host's clock. May ask to wait for keys, a list or an
    /// introspection answer (`Decision::WaitFor*`, `Decision::Introspect`).
    pub fn decide(&self, request: &Request<'_>, now: i64) -> Verdict {
        self.decide_as(request, now, Occasion::FIRST)
    }

    /// Like `decide`, after a wait: never asks to wait again; no keys is a 503 and an unknown
    /// `kid` is refused.
    pub fn decide_after_wait(&self, request: &Request<'_>, now: i64) -> Verdict {
        let occasion = Occasion {
            after_wait: true,
            ..Occasion::FIRST
        };
        self.decide_as(request, now, occasion)
    }

    /// `decide` or `decide_after_wait`, as the shell knows the occasion: whether a denial
    /// would be reported at all (see `Occasion::reported`).
    pub fn decide_as(&self, request: &Request<'_>, now: i64, occasion: Occasion) -> Verdict {
        let look = Look {
            now,
            may_wait: !occasion.after_wait,
            reports: occasion.reported && self.config.reports_denials(),
        };
        self.decide_look(request, look, Tracer::default())
    }

    /// The decision and every step the pipeline took to it (the CLI's `explain`).
    pub fn decide_traced(
        &self,
        request: &Request<'_>,
        now: i64,
        may_wait: bool,
    ) -> (Verdict, Vec<Step>) {
        let trace = Trace::default();
        let look = Look {
            now,
            may_wait,
            reports: self.config.reports_denials(),
        };
        let verdict = self.decide_look(request, look, Tracer::into(&trace));
        (verdict, trace.into_steps())
    }

    /// The mode `request` is judged under: its rule's `mode`, else the top level's (also when
    /// no rule matches, or the request line cannot be read).
    pub fn mode_for(&self, request: &Request<'_>) -> Mode {
        let rule = self.rule_for(request).and_then(|rule| rule.mode);
        Mode::of(rule, self.config.mode)
    }

    fn rule_for(&self, request: &Request<'_>) -> Option<&crate::policy::rules::Rule> {
        if header_map::request_line_unreadable(request.not_utf8) {
            return None;
        }
        self.config
            .rules
            .rule_for(request.method, request.path, request.headers)
    }

    /// What goes upstream for a denial that shadow mode lets through: the request as the
    /// client sent it, credential included (shadow must not change what the upstream sees),
    /// cleaned only of the headers bearer-guard writes, which a client must never supply,
    /// shadow or not. Nothing is set: no token was accepted.
    pub fn shadowed_upstream(&self) -> Upstream {
        Upstream {
            remove_headers: self.config.written_headers.clone(),
            ..Upstream::default()
        }
    }

    fn decide_look(&self, request: &Request<'_>, look: Look, tracer: Tracer<'_>) -> Verdict {
        let cache = Cell::new(CacheLookup::Skipped);
        let rule = self.rule_for(request);
        let mode = Mode::of(rule.and_then(|r| r.mode), self.config.mode);
        let route = rule.map(|r| (&r.requirement, r.scopes.as_slice()));
        let outcome = match route {
            None => Err(self.refusal(DenyReason::NoMatchingRule)),
            Some(_)
                if self.config.bypass_cors_preflight
                    && is_cors_preflight(request.method, request.headers) =>
            {
                Ok(self.grant_public())
            }
            Some((requirement, scopes)) => {
                let route = Route {
                    request,
                    scopes,
                    look,
                    cache: &cache,
                    tracer,
                };
                self.evaluate(requirement, &route)
            }
        };
        let (decision, stale_allowed) = match outcome {
            Ok(granted) => (
                Decision::Allow {
                    provider: granted.provider,
                    upstream: granted.upstream.rewrite(request),
                    token: granted.token,
                    identity: granted.identity,
                },
                granted.stale_allowed,
            ),
            Err(Stop::Deny(denial)) => (Decision::Deny(denial), false),
            Err(Stop::Wait(wait)) => (waiting(wait), false),
        };
        Verdict {
            decision,
            cache: cache.get(),
            stale_allowed,
            mode,
        }
    }

    fn grant_public(&self) -> Granted {
        Granted {
            provider: None,
            upstream: UpstreamPlan::public(&self.config.written_headers),
            token: None,
            identity: None,
            stale_allowed: false,
        }
    }

    /// A requirement: each token in it through the pipeline, combined as the rule says.
    fn evaluate(&self, requirement: &Requirement, route: &Route<'_, '_>) -> Result<Granted, Stop> {
        match requirement {
            Requirement::Public => Ok(self.grant_public()),
            Requirement::Provider { index, audiences } => self.check_token(
                std::slice::from_ref(index),
                self.own_sources(*index),
                audiences.as_deref(),
                route,
            ),
            Requirement::AnyProvider => self.check_any_provider(route),
            Requirement::AllowMissing => match self.check_any_provider(route) {
                Err(stop) if stop.is_missing_token() => Ok(self.grant_public()),
                other => other,
            },
            Requirement::Any(options) => self.any_of(options, route),
            Requirement::All(parts) => {
                let mut merged = self.grant_public();
                for part in parts {
                    let granted = self.evaluate(part, route)?;
                    merged.provider = granted.provider.or(merged.provider);
                    merged.token = merged.token.or(granted.token);
                    merged.identity = merged.identity.or(granted.identity);
                    merged.stale_allowed |= granted.stale_allowed;
                    merged.upstream.merge(granted.upstream);
                }
                Ok(merged)
            }
        }
    }

    /// `requires_any`: the first option met; else the first real failure (it says more than
    /// "no token here"). The credentials of refused options never reach the upstream.
    fn any_of(&self, options: &[Requirement], route: &Route<'_, '_>) -> Result<Granted, Stop> {
        let mut best: Option<Stop> = None;
        let mut rejected: Vec<TokenSource> = Vec::new();
        for option in options {
            match self.evaluate(option, route) {
                Ok(mut granted) => {
                    granted.upstream.strip_rejected(rejected);
                    return Ok(granted);
                }
                Err(stop) => {
                    if !stop.is_missing_token() {
                        rejected.extend(self.sources_of(option));
                    }
                    if best.as_ref().is_none_or(Stop::is_missing_token) {
                        best = Some(stop);
                    }
                }
            }
        }
        Err(best.unwrap_or_else(|| self.refusal(DenyReason::MissingToken)))
    }

    fn check_any_provider(&self, route: &Route<'_, '_>) -> Result<Granted, Stop> {
        self.check_token(&self.all_providers, &self.all_sources, None, route)
    }

    /// Where one provider reads tokens itself (each place once, as the config keeps them);
    /// none for a companion, whose tokens jwt_authn reads.
    fn own_sources(&self, index: usize) -> &[TokenSource] {
        let provider = self.config.providers.get(index);
        let verifying = provider.filter(|p| p.jwt_authn.is_none());
        verifying.map_or(&[], |p| &p.sources)
    }

    /// `sources`: where `candidates` that verify tokens themselves read them, each place once.
    fn check_token(
        &self,
        candidates: &[usize],
        sources: &[TokenSource],
        audiences: Option<&[String]>,
        route: &Route<'_, '_>,
    ) -> Result<Granted, Stop> {
        TokenCheck {
            guard: self,
            request: route.request,
            candidates,
            sources,
            audiences,
            scopes: route.scopes,
            look: route.look,
            cache: route.cache,
            tracer: route.tracer,
        }
        .run()
    }

    /// Every token source of the providers a requirement may accept.
    fn sources_of(&self, requirement: &Requirement) -> Vec<TokenSource> {
        let providers: Vec<usize> = match requirement {
            Requirement::Public => Vec::new(),
            Requirement::Provider { index, .. } => vec![*index],
            Requirement::AnyProvider | Requirement::AllowMissing => self.all_providers.clone(),
            Requirement::Any(parts) | Requirement::All(parts) => {
                return parts.iter().flat_map(|p| self.sources_of(p)).collect()
            }
        };
        providers
            .iter()
            .filter_map(|&i| self.config.providers.get(i))
            .flat_map(|p| p.sources.iter().cloned())
            .collect()
    }

    /// A denial before any token is read.
    fn refusal(&self, reason: DenyReason) -> Stop {
        Stop::Deny(crate::decide::decision::Denial::new(
            reason,
            &self.config.realm,
            None,
            None,
        ))
    }
}

/// What every token check of one request shares.
struct Route<'a, 'r> {
    request: &'a Request<'r>,
    scopes: &'a [String],
    look: Look,
    cache: &'a Cell<CacheLookup>,
    tracer: Tracer<'a>,
}

/// The decision that pauses the request for what it waits for.
fn waiting(wait: WaitFor) -> Decision {
    match wait {
        WaitFor::Keys(provider) => Decision::WaitForKeys { provider },
        WaitFor::StatusList(provider, uri) => Decision::WaitForStatusList { provider, uri },
        WaitFor::RevocationList => Decision::WaitForRevocationList,
        WaitFor::Introspection(provider, token) => Decision::Introspect { provider, token },
    }
}

#[cfg(test)]
impl<'a> Request<'a> {
    /// A GET of `path` with these headers, over plaintext, as most tests send it.
    pub(crate) fn get(path: &'a str, headers: &'a [(&'a str, &'a str)]) -> Self {
        Request {
            method: "GET",
            path,
            headers,
            tls: false,
            not_utf8: &[],
            jwt_authn: None,
        }
    }
}

#[cfg(test)]
pub(crate) use crate::decide::header_map::as_str_pairs as str_pairs;

#[cfg(test)]
impl Guard {
    /// What the guard learns from `x-revoke-token: self` on the response to `authorized`.
    pub(crate) fn learn_self(&self, authorized: &crate::decide::decision::Authorized, now: i64) {
        let out = crate::revocation::learned::from_header(
            "self",
            Some(authorized),
            &crate::revocation::learned::HeaderPolicy::self_only(),
            now,
        );
        let mut learned = crate::revocation::learned::Learned::new(0);
        learned.append(&out.learned, now, 600);
        self.state().install_learned(learned.to_sets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::decision::{RevocationSource, Upstream};
    use crate::decide::trace::Mark;
    use crate::observe::fingerprint::fingerprint;
    use crate::testkit::{self, good_claims, keys, mint, rs256, Signer, NOW};
    use crate::token::id::token_id;
    use jwt_compact::jwk::JsonWebKey;
    use serde_json::{json, Value};
    use sha2::{Digest, Sha256};
    use std::cell::RefCell;
    use std::rc::Rc;

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

    /// Decisions compared whole, leaving the identity to the tests about it.
    fn without_identity(decision: Decision) -> Decision {
        match decision {
            Decision::Allow {
                provider,
                upstream,
                token,
                ..
            } => Decision::Allow {
                provider,
                upstream,
                token,
                identity: None,
            },
            other => other,
        }
    }

    /// A place listed twice (the prefix in another case too: it is matched ignoring case) is
    /// one place: one token there is one credential, not two
    /// (`MultipleTokens`), on a provider's own route and on one any provider may meet.
    #[test]
    fn a_place_listed_twice_is_read_once() {
        let mut config = testkit::config_json(
            json!({ "from_headers": [
                { "name": "authorization", "value_prefix": "Bearer " },
                { "name": "Authorization", "value_prefix": "bearer " }
            ]}),
            None,
        );
        // A second provider reading the same place in a third spelling.
        let partner_jwks = json!({ "keys": [
            testkit::public_jwk(JsonWebKey::from(&keys().rsa_other), "p-1", None)
        ]});
        config["providers"]["partner"] = json!({
            "issuer": "https://partner.example",
            "local_jwks": partner_jwks,
            "from_headers": [{ "name": "authorization", "value_prefix": "BEARER " }]
        });
        config["rules"] = json!([
            { "match": { "prefix": "/corp" }, "requires": { "provider_name": "corp" } },
            { "match": { "prefix": "/" }, "requires": { "allow_missing": {} } }
        ]);
        let g = guard(config);
        let token = rs256(&good_claims());
        for path in ["/corp", "/any"] {
            assert!(
                matches!(
                    decide_at(&g, path, &bearer(&token), NOW),
                    Decision::Allow { .. }
                ),
                "{path}"
            );
        }
        let two = vec![
            ("authorization".to_owned(), format!("Bearer {token}")),
            ("authorization".to_owned(), format!("Bearer {token}")),
        ];
        assert_eq!(
            reason(decide_at(&g, "/corp", &two, NOW)),
            Some(DenyReason::MultipleTokens)
        );
    }

    #[test]
    fn an_unread_access_token_parameter_is_refused_not_ignored() {
        let g = default_guard();
        let token = rs256(&good_claims());
        let Decision::Deny(denial) = decide_at(&g, &format!("/?access_token={token}"), &[], NOW)
        else {
            panic!("refused");
        };
        assert_eq!(
            (denial.reason, denial.status),
            (DenyReason::TokenInQuery, 400)
        );
        // With a header credential too: still refused (one method per request, RFC 6750 §2).
        assert_eq!(
            reason(decide_at(&g, "/?access_token=x", &bearer(&token), NOW)),
            Some(DenyReason::TokenInQuery)
        );
        // Other parameters are the application's business.
        assert!(matches!(
            decide_at(&g, "/?token_hint=x", &bearer(&token), NOW),
            Decision::Allow { .. }
        ));
        // Read where configured.
        let g = guard(testkit::config_json(
            json!({ "from_params": ["access_token"] }),
            None,
        ));
        assert!(matches!(
            decide_at(&g, &format!("/?access_token={token}"), &[], NOW),
            Decision::Allow { .. }
        ));
    }

    #[test]
    fn require_tls_refuses_credentials_on_plaintext_unless_a_trusted_proxy_says_https() {
        let decide = |config: Value, tls: bool, headers: Vec<(String, String)>| {
            let g = guard(config);
            g.decide(
                &Request {
                    method: "GET",
                    path: "/",
                    headers: &str_pairs(&headers),
                    tls,
                    not_utf8: &[],
                    jwt_authn: None,
                },
                NOW,
            )
            .decision
        };
        let token = rs256(&good_claims());
        let mut global = testkit::config_json(json!({}), None);
        global["require_tls"] = json!(true);
        let Decision::Deny(denial) = decide(global.clone(), false, bearer(&token)) else {
            panic!("plaintext refused");
        };
        assert_eq!(denial.reason, DenyReason::InsecureTransport);
        assert_eq!(denial.status, 400);
        assert!(denial.headers[0].1.contains("error=\"invalid_request\""));
        assert!(matches!(
            decide(global.clone(), true, bearer(&token)),
            Decision::Allow { .. }
        ));
        // No credential, no exposure: still 401 missing, as without the setting.
        assert_eq!(
            reason(decide(global.clone(), false, vec![])),
            Some(DenyReason::MissingToken)
        );
        // x-forwarded-proto counts only behind trusted proxies.
        let mut forwarded = bearer(&token);
        forwarded.push(("x-forwarded-proto".to_owned(), "https".to_owned()));
        assert_eq!(
            reason(decide(global.clone(), false, forwarded.clone())),
            Some(DenyReason::InsecureTransport)
        );
        let mut behind = global;
        behind["xff_num_trusted_hops"] = json!(1);
        assert!(matches!(
            decide(behind, false, forwarded),
            Decision::Allow { .. }
        ));
        // Per provider: off for this one although on globally.
        let mut relaxed = testkit::config_json(json!({ "require_tls": false }), None);
        relaxed["require_tls"] = json!(true);
        assert!(matches!(
            decide(relaxed, false, bearer(&token)),
            Decision::Allow { .. }
        ));
    }

    #[test]
    fn decisions_carry_the_verified_identity_for_the_log() {
        let token = rs256(&with(json!({ "jti": "j-7", "sub": "alice" })));
        // By default an allow carries none: nothing would read it.
        assert!(matches!(
            decide_at(&default_guard(), "/", &bearer(&token), NOW),
            Decision::Allow { identity: None, .. }
        ));
        let mut config = testkit::config_json(json!({}), None);
        config["log"] = json!({ "decisions": "all" });
        let g = guard(config);
        for _ in 0..2 {
            // Fresh, then from the cache.
            let Decision::Allow {
                identity: Some(identity),
                ..
            } = decide_at(&g, "/", &bearer(&token), NOW)
            else {
                panic!("allowed with an identity");
            };
            assert_eq!(identity.sub.as_deref(), Some("alice"));
            assert_eq!(identity.jti.as_deref(), Some("j-7"));
            assert_eq!(identity.iss.as_deref(), Some(testkit::ISSUER));
            assert_eq!(
                identity.sha256,
                <[u8; 32]>::from(Sha256::digest(token.as_bytes()))
            );
        }
        // Verified, then refused: the claims are the issuer's and go to the log.
        let expired = rs256(&with(json!({ "sub": "bob", "exp": NOW - 3_600 })));
        let Decision::Deny(denial) = decide_at(&g, "/", &bearer(&expired), NOW) else {
            panic!("expired");
        };
        assert_eq!(denial.identity.unwrap().sub.as_deref(), Some("bob"));
        // A bad signature: nothing the token says is repeated.
        let mut forged = rs256(&with(json!({ "sub": "mallory" })));
        forged.push('A');
        let Decision::Deny(denial) = decide_at(&g, "/", &bearer(&forged), NOW) else {
            panic!("forged");
        };
        assert_eq!(denial.reason, DenyReason::BadSignature);
        assert!(denial.identity.is_none());
        assert!(denial.token_fingerprint.is_some());
    }

    #[test]
    fn refusals_name_the_source_of_the_revocation() {
        let g = revocation_guard(json!({ "jti": ["in-config"] }));
        let by_config = rs256(&with(json!({ "jti": "in-config" })));
        let Decision::Deny(denial) = decide_at(&g, "/", &bearer(&by_config), NOW) else {
            panic!("revoked");
        };
        assert_eq!(denial.revoked_by, Some(RevocationSource::Config));
        let misused = rs256(&with(json!({ "jti": "misused" })));
        let Decision::Allow {
            token: Some(authorized),
            ..
        } = decide_at(&g, "/", &bearer(&misused), NOW)
        else {
            panic!("allowed");
        };
        let mut learned = crate::revocation::learned::Learned::new(0);
        learned.append(
            &crate::revocation::learned::misuse_entries(&authorized).learned,
            NOW,
            600,
        );
        g.state().install_learned(learned.to_sets());
        let Decision::Deny(denial) = decide_at(&g, "/", &bearer(&misused), NOW) else {
            panic!("revoked");
        };
        assert_eq!(denial.revoked_by, Some(RevocationSource::Anomaly));
        assert!(denial.identity.is_some());
    }

    fn bearer(token: &str) -> Vec<(String, String)> {
        vec![("authorization".to_owned(), format!("Bearer {token}"))]
    }

    fn decide_at(guard: &Guard, path: &str, headers: &[(String, String)], now: i64) -> Decision {
        guard
            .decide(&Request::get(path, &str_pairs(headers)), now)
            .decision
    }

    fn reason(decision: Decision) -> Option<DenyReason> {
        match decision {
            Decision::Allow { .. } => None,
            Decision::Deny(denial) => Some(denial.reason),
            Decision::WaitForKeys { provider } => panic!("waits for provider {provider}'s keys"),
            Decision::WaitForRevocationList => panic!("waits for the revocation list"),
            Decision::Introspect { provider, .. } => panic!("asks provider {provider}"),
            Decision::WaitForStatusList { uri, .. } => panic!("waits for status list {uri}"),
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
        // The credential is not forwarded by default.
        assert_eq!(
            without_identity(decide_at(&default_guard(), "/", &bearer(&es), NOW)),
            Decision::Allow {
                provider: Some("corp".to_owned()),
                upstream: Upstream {
                    remove_headers: vec!["authorization".to_owned()],
                    ..Upstream::default()
                },
                token: None,
                identity: None,
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
        assert_eq!(check(&t), Some(DenyReason::AlgorithmNotAllowed));
        let t = testkit::unsigned_with_header(&json!({ "alg": "ES256K" }), &claims);
        assert_eq!(check(&t), Some(DenyReason::UnsupportedAlgorithm));
        let t = testkit::unsigned_with_header(&json!({ "alg": "RS256", "crit": ["exp"] }), &claims);
        assert_eq!(check(&t), Some(DenyReason::UnknownCriticalHeader));
        // `crit` present but not a list of names (`null` too): malformed, never "absent".
        for crit in [json!(null), json!("exp"), json!([1]), json!({})] {
            let header = json!({ "kid": "rsa-1", "crit": crit });
            let signed = testkit::mint_with_header(Signer::Rs256(&keys().rsa), header, &claims);
            assert_eq!(check(&signed), Some(DenyReason::MalformedToken), "{crit}");
        }
    }

    /// A provider that lists PS*, EdDSA and an HMAC secret next to the default keys.
    fn all_algorithms_guard() -> Guard {
        let k = keys();
        let mut jwks = testkit::jwks();
        let keys = jwks["keys"].as_array_mut().unwrap();
        keys.push(testkit::public_jwk(
            JsonWebKey::from(&k.ed25519.1),
            "ed-1",
            None,
        ));
        keys.push(json!({ "kty": "oct", "kid": "hmac-1", "k": testkit::b64(&k.hmac_secret) }));
        guard(testkit::config_json(
            json!({
                "local_jwks": jwks,
                "algorithms": ["RS256", "PS256", "PS512", "EdDSA", "HS256", "HS512"]
            }),
            None,
        ))
    }

    /// Regression (`make fuzz`, target `token`): a 1- or 65-byte Ed25519 or HMAC signature
    /// panicked inside jwt-compact, which would take the worker's VM down.
    #[test]
    fn signatures_of_the_wrong_length_are_bad_signatures_not_panics() {
        let k = keys();
        let g = all_algorithms_guard();
        let c = good_claims();
        let tokens = [
            mint(Signer::EdDsa(&k.ed25519.0), Some("ed-1"), &c),
            mint(Signer::Hs256(&k.hmac_secret), Some("hmac-1"), &c),
            mint(Signer::Hs512(&k.hmac_secret), Some("hmac-1"), &c),
        ];
        for token in &tokens {
            let (signed, _) = token.rsplit_once('.').unwrap();
            for length in [0, 1, 31, 33, 48, 63, 65, 128] {
                let forged = format!("{signed}.{}", testkit::b64(&vec![7u8; length]));
                let reason = reason(decide_at(&g, "/", &bearer(&forged), NOW));
                assert!(
                    matches!(
                        reason,
                        Some(DenyReason::BadSignature | DenyReason::MalformedToken)
                    ),
                    "{length} bytes: {reason:?}"
                );
            }
        }
    }

    #[test]
    fn pss_eddsa_and_hmac_verify_in_wasm() {
        let k = keys();
        let g = all_algorithms_guard();
        let c = good_claims();
        let cases = [
            (mint(Signer::Ps256(&k.rsa), Some("rsa-any"), &c), None),
            (mint(Signer::Ps512(&k.rsa), Some("rsa-any"), &c), None),
            (mint(Signer::EdDsa(&k.ed25519.0), Some("ed-1"), &c), None),
            (
                mint(Signer::Hs256(&k.hmac_secret), Some("hmac-1"), &c),
                None,
            ),
            (
                mint(Signer::Hs512(&k.hmac_secret), Some("hmac-1"), &c),
                None,
            ),
            (
                mint(
                    Signer::Hs256(b"another secret that is 32 bytes!"),
                    Some("hmac-1"),
                    &c,
                ),
                Some(DenyReason::BadSignature),
            ),
            (
                mint(Signer::Ps256(&k.rsa_other), Some("rsa-any"), &c),
                Some(DenyReason::BadSignature),
            ),
            // Allowed by the key but not by the provider's list.
            (
                mint(Signer::Ps384(&k.rsa), Some("rsa-any"), &c),
                Some(DenyReason::AlgorithmNotAllowed),
            ),
            // PS256 pinned away by the key's own alg.
            (
                mint(Signer::Ps256(&k.rsa), Some("rsa-1"), &c),
                Some(DenyReason::KeyAlgorithmMismatch),
            ),
        ];
        for (i, (token, expected)) in cases.iter().enumerate() {
            assert_eq!(
                reason(decide_at(&g, "/", &bearer(token), NOW)),
                *expected,
                "case {i}"
            );
        }
    }

    /// RFC 8725 §2.1: HS256 "signed" with the RSA public key must never verify.
    #[test]
    fn hmac_with_the_rsa_public_key_is_refused() {
        use rsa::pkcs8::EncodePublicKey;
        let public = rsa::RsaPublicKey::from(&keys().rsa);
        let pem = public
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap();
        let der = public.to_public_key_der().unwrap();
        for secret in [pem.as_bytes(), der.as_bytes()] {
            let token = mint(Signer::Hs256(secret), Some("rsa-1"), &good_claims());
            // The default provider: HS* is not allowed at all.
            assert_eq!(check(&token), Some(DenyReason::AlgorithmNotAllowed));
            // A provider that allows HS256: the RSA key is never an HMAC key.
            let g = all_algorithms_guard();
            assert_eq!(
                reason(decide_at(&g, "/", &bearer(&token), NOW)),
                Some(DenyReason::KeyAlgorithmMismatch)
            );
        }
    }

    #[test]
    fn token_types_and_non_access_tokens() {
        let k = keys();
        let with_typ = |typ: &str, claims: &Value| {
            testkit::mint_with_header(
                Signer::Rs256(&k.rsa),
                json!({ "kid": "rsa-1", "typ": typ }),
                claims,
            )
        };
        let c = good_claims();
        for accepted in ["JWT", "jwt", "at+jwt", "application/at+jwt", "AT+JWT"] {
            assert_eq!(check(&with_typ(accepted, &c)), None, "{accepted}");
        }
        assert_eq!(
            check(&with_typ("secevent+jwt", &c)),
            Some(DenyReason::TokenTypeNotAccepted)
        );
        assert_eq!(
            check(&with_typ("refresh+jwt", &c)),
            Some(DenyReason::NotAnAccessToken)
        );
        let id_token = with(json!({ "nonce": "n-0S6_WzA2Mj" }));
        assert_eq!(check(&rs256(&id_token)), Some(DenyReason::NotAnAccessToken));
        let refresh = with(json!({ "token_use": "refresh" }));
        assert_eq!(check(&rs256(&refresh)), Some(DenyReason::NotAnAccessToken));

        let strict = guard(testkit::config_json(
            json!({ "token_types": ["at+jwt"], "require_token_type": true }),
            None,
        ));
        assert_eq!(
            reason(decide_at(&strict, "/", &bearer(&rs256(&c)), NOW)),
            Some(DenyReason::TokenTypeNotAccepted)
        );
        assert_eq!(
            reason(decide_at(&strict, "/", &bearer(&with_typ("JWT", &c)), NOW)),
            Some(DenyReason::TokenTypeNotAccepted)
        );
        assert_eq!(
            reason(decide_at(
                &strict,
                "/",
                &bearer(&with_typ("application/at+jwt", &c)),
                NOW
            )),
            None
        );
    }

    #[test]
    fn subjects_matcher_applies() {
        let g = guard(testkit::config_json(
            json!({ "subjects": { "prefix": "svc-" } }),
            None,
        ));
        let svc = rs256(&with(json!({ "sub": "svc-orders" })));
        assert_eq!(reason(decide_at(&g, "/", &bearer(&svc), NOW)), None);
        assert_eq!(
            reason(decide_at(&g, "/", &bearer(&rs256(&good_claims())), NOW)),
            Some(DenyReason::SubjectNotAccepted)
        );
    }

    #[test]
    fn malformed_tokens() {
        for bad in ["abc", "a.b", "a.b.c.d", "a.b.c", "e30.e30.", "x y.z.w"] {
            assert_eq!(check(bad), Some(DenyReason::MalformedToken), "{bad:?}");
        }
        // No token after the scheme: the request is malformed, not the token (RFC 6750 §3.1).
        assert_eq!(check(""), Some(DenyReason::MalformedCredential));
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
            Decision::Allow {
                provider: None,
                upstream: Upstream::default(),
                token: None,
                identity: None,
            }
        );
        assert_eq!(
            reason(decide_at(&g, "/api/x", &[], NOW)),
            Some(DenyReason::MissingToken)
        );
        assert_eq!(
            reason(decide_at(&g, "/login", &[], NOW)),
            Some(DenyReason::NoMatchingRule)
        );
        let post = g
            .decide(
                &Request {
                    method: "POST",
                    path: "/login",
                    headers: &[],
                    tls: false,
                    not_utf8: &[],
                    jwt_authn: None,
                },
                NOW,
            )
            .decision;
        assert_eq!(
            post,
            Decision::Allow {
                provider: None,
                upstream: Upstream::default(),
                token: None,
                identity: None,
            }
        );
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
            without_identity(decide_at(&g, "/", &in_header, NOW)),
            Decision::Allow {
                provider: Some("partner".to_owned()),
                upstream: Upstream {
                    remove_headers: vec!["x-partner-token".to_owned()],
                    ..Upstream::default()
                },
                token: None,
                identity: None,
            }
        );
        // The partner's token in the corp provider's header is not accepted.
        assert_eq!(
            reason(decide_at(&g, "/", &bearer(&partner), NOW)),
            Some(DenyReason::IssuerNotAccepted)
        );
    }

    /// With the decision log off and no filter state, nothing reads a denial's fingerprint or
    /// identity: the guard does not hash the token for them (a rejection costs no more than an
    /// acceptance). The denial itself is the same.
    #[test]
    fn unreported_denials_hash_nothing() {
        let token = rs256(&with(json!({ "exp": NOW - 1000 })));
        let mut config = testkit::config_json(json!({}), None);
        config["log"] = json!({"decisions": "none"});
        let quiet = guard(config);
        let Decision::Deny(denial) = decide_at(&quiet, "/", &bearer(&token), NOW) else {
            panic!("expected a denial");
        };
        assert_eq!(denial.reason, DenyReason::Expired);
        assert_eq!(denial.token_fingerprint, None);
        assert!(denial.identity.is_none());
        let Decision::Deny(logged) = decide_at(&default_guard(), "/", &bearer(&token), NOW) else {
            panic!("expected a denial");
        };
        assert!(logged.token_fingerprint.is_some() && logged.identity.is_some());
        assert_eq!((logged.status, &logged.body), (denial.status, &denial.body));
        // The shell says the log has no room for this line: the same, unreported.
        let headers = bearer(&token);
        let unreported = Occasion {
            reported: false,
            ..Occasion::FIRST
        };
        let verdict =
            default_guard().decide_as(&Request::get("/", &str_pairs(&headers)), NOW, unreported);
        let Decision::Deny(dropped) = verdict.decision else {
            panic!("expected a denial");
        };
        assert_eq!(dropped, denial);
    }

    #[test]
    fn denials_carry_a_fingerprint_never_the_token() {
        let token = rs256(&with(json!({ "exp": NOW - 1000 })));
        let Decision::Deny(denial) = decide_at(&default_guard(), "/", &bearer(&token), NOW) else {
            panic!("expected a denial");
        };
        let digest: TokenDigest = Sha256::digest(token.as_bytes()).into();
        assert_eq!(denial.token_fingerprint, Some(fingerprint(&digest)));
        assert_eq!(denial.provider.as_deref(), Some("corp"));
        let rendered = format!("{denial:?}");
        let signature = token.rsplit('.').next().unwrap();
        assert!(!rendered.contains(signature));
    }

    fn verdict(guard: &Guard, path: &str, token: &str, now: i64) -> Verdict {
        guard.decide(&Request::get(path, &str_pairs(&bearer(token))), now)
    }

    /// `verdict`, on the look after a wait (keys, a list or an answer were fetched, or not).
    fn verdict_after_wait(guard: &Guard, path: &str, token: &str, now: i64) -> Verdict {
        guard.decide_after_wait(&Request::get(path, &str_pairs(&bearer(token))), now)
    }

    /// Every algorithm, good and bad, through the host path and the wasm path.
    fn corpus() -> Vec<(&'static str, String)> {
        let k = keys();
        let c = good_claims();
        vec![
            ("rs256", mint(Signer::Rs256(&k.rsa), Some("rsa-1"), &c)),
            ("rs384", mint(Signer::Rs384(&k.rsa), Some("rsa-any"), &c)),
            ("rs512", mint(Signer::Rs512(&k.rsa), Some("rsa-any"), &c)),
            ("es256", mint(Signer::Es256(&k.ec), Some("ec-1"), &c)),
            ("es384", mint(Signer::Es384(&k.ec384), Some("ec-384"), &c)),
            ("es512", mint(Signer::Es512(&k.ec521), Some("ec-521"), &c)),
            (
                "rs384-pinned-key",
                mint(Signer::Rs384(&k.rsa), Some("rsa-1"), &c),
            ),
            (
                "rs256-forged",
                mint(Signer::Rs256(&k.rsa_other), Some("rsa-1"), &c),
            ),
            (
                "rs512-forged",
                mint(Signer::Rs512(&k.rsa_other), Some("rsa-any"), &c),
            ),
            (
                "es256-forged",
                mint(
                    Signer::Es256(&p256::ecdsa::SigningKey::random(&mut rsa::rand_core::OsRng)),
                    Some("ec-1"),
                    &c,
                ),
            ),
            (
                "es384-forged",
                mint(
                    Signer::Es384(&p384::ecdsa::SigningKey::random(&mut rsa::rand_core::OsRng)),
                    Some("ec-384"),
                    &c,
                ),
            ),
            (
                "es384-on-p256-key",
                mint(Signer::Es384(&k.ec384), Some("ec-1"), &c),
            ),
            (
                "expired-es256",
                mint(
                    Signer::Es256(&k.ec),
                    Some("ec-1"),
                    &with(json!({ "exp": NOW - 100 })),
                ),
            ),
        ]
    }

    struct CountingHost(std::rc::Rc<std::cell::Cell<usize>>);

    impl HostCrypto for CountingHost {
        fn verify(
            &self,
            check: &crate::keys::host_crypto::HostCheck<'_>,
        ) -> Result<bool, crate::keys::host_crypto::HostCryptoError> {
            self.0.set(self.0.get() + 1);
            crate::keys::host_crypto::software::RustCryptoHost.verify(check)
        }
    }

    #[test]
    fn host_and_wasm_crypto_decide_the_same() {
        let config = || {
            let mut c = testkit::config_json(json!({}), None);
            c["jwt_cache_size"] = json!(0);
            Config::from_json(c.to_string().as_bytes()).unwrap().config
        };
        let in_wasm = Guard::new(config());
        let host_calls = std::rc::Rc::new(std::cell::Cell::new(0));
        let in_host =
            Guard::new(config()).with_host_crypto(Box::new(CountingHost(host_calls.clone())));
        let mut expected_allowed = 0;
        for (name, token) in corpus() {
            let wasm = decide_at(&in_wasm, "/", &bearer(&token), NOW);
            let host = decide_at(&in_host, "/", &bearer(&token), NOW);
            let allowed = matches!(host, Decision::Allow { .. });
            assert_eq!(
                allowed,
                ["rs256", "rs384", "rs512", "es256", "es384", "es512"].contains(&name),
                "{name}: {host:?}"
            );
            expected_allowed += usize::from(allowed);
            if name.starts_with("es384") || name.starts_with("es512") {
                // Host-only algorithms: refused, never guessed at, without the host.
                assert_eq!(
                    reason(wasm),
                    Some(DenyReason::UnsupportedAlgorithm),
                    "{name}"
                );
            } else {
                assert_eq!(wasm, host, "{name}");
            }
        }
        let calls = host_calls.get();
        assert!(
            calls >= expected_allowed,
            "host verified {calls} signatures"
        );
    }

    #[test]
    fn repeated_token_hits_the_cache_and_time_is_still_checked() {
        let g = default_guard();
        let token = rs256(&good_claims());
        let first = verdict(&g, "/", &token, NOW);
        assert_eq!(first.cache, CacheLookup::Miss);
        assert!(matches!(first.decision, Decision::Allow { .. }));
        let second = verdict(&g, "/", &token, NOW + 1);
        assert_eq!(
            second,
            Verdict {
                decision: first.decision,
                cache: CacheLookup::Hit,
                stale_allowed: false,
                mode: Mode::Enforce,
            }
        );
        // exp = NOW + 3600, skew 60: a hit after that is still refused as expired...
        let late = verdict(&g, "/", &token, NOW + 3660);
        assert_eq!(late.cache, CacheLookup::Hit);
        assert_eq!(reason(late.decision), Some(DenyReason::Expired));
        // ...and the entry is gone.
        assert_eq!(
            verdict(&g, "/", &token, NOW + 3661).cache,
            CacheLookup::Miss
        );
    }

    #[test]
    fn failed_tokens_are_not_cached() {
        let g = default_guard();
        let forged = mint(
            Signer::Rs256(&keys().rsa_other),
            Some("rsa-1"),
            &good_claims(),
        );
        for _ in 0..2 {
            let v = verdict(&g, "/", &forged, NOW);
            assert_eq!(v.cache, CacheLookup::Miss);
            assert_eq!(reason(v.decision), Some(DenyReason::BadSignature));
        }
        let premature = rs256(&with(json!({ "nbf": NOW + 600 })));
        assert_eq!(
            reason(verdict(&g, "/", &premature, NOW).decision),
            Some(DenyReason::NotYetValid)
        );
        assert_eq!(
            verdict(&g, "/", &premature, NOW + 600).cache,
            CacheLookup::Miss
        );
    }

    #[test]
    fn a_hit_never_widens_what_the_route_accepts() {
        let k = keys();
        let partner_jwks =
            json!({ "keys": [testkit::public_jwk(JsonWebKey::from(&k.rsa_other), "p-1", None)] });
        let g = guard(json!({
            "providers": {
                "corp": testkit::config_json(json!({}), None)["providers"]["corp"].clone(),
                "partner": { "issuer": "https://partner.example", "local_jwks": partner_jwks }
            },
            "rules": [
                { "match": { "prefix": "/corp" }, "requires": { "provider_name": "corp" } },
                { "match": { "prefix": "/partner" }, "requires": { "provider_name": "partner" } }
            ]
        }));
        let token = rs256(&good_claims());
        assert!(matches!(
            verdict(&g, "/corp/a", &token, NOW).decision,
            Decision::Allow { .. }
        ));
        assert_eq!(verdict(&g, "/corp/b", &token, NOW).cache, CacheLookup::Hit);
        let other_route = verdict(&g, "/partner/a", &token, NOW);
        assert_eq!(other_route.cache, CacheLookup::Miss);
        assert_eq!(
            reason(other_route.decision),
            Some(DenyReason::IssuerNotAccepted)
        );
    }

    #[test]
    fn zero_cache_size_disables_the_cache() {
        let mut config = testkit::config_json(json!({}), None);
        config["jwt_cache_size"] = json!(0);
        let g = guard(config);
        let token = rs256(&good_claims());
        for _ in 0..2 {
            let v = verdict(&g, "/", &token, NOW);
            assert_eq!(v.cache, CacheLookup::Skipped);
            assert!(matches!(v.decision, Decision::Allow { .. }));
        }
        // Without the cache's digest, a denial still carries the token's fingerprint.
        let expired = rs256(&with(json!({ "exp": NOW - 1000 })));
        let Decision::Deny(denial) = verdict(&g, "/", &expired, NOW).decision else {
            panic!("expected a denial");
        };
        let digest: TokenDigest = Sha256::digest(expired.as_bytes()).into();
        assert_eq!(denial.token_fingerprint, Some(fingerprint(&digest)));
    }

    fn upstream_of(decision: Decision) -> Upstream {
        match decision {
            Decision::Allow { upstream, .. } => upstream,
            other => panic!("not allowed: {other:?}"),
        }
    }

    #[test]
    fn payload_and_claims_go_upstream_and_client_copies_never_do() {
        let g = guard(testkit::config_json(
            json!({
                "forward_payload_header": "X-JWT-Payload",
                "claim_to_headers": [
                    { "claim_name": "sub", "header_name": "x-jwt-sub" },
                    { "claim_name": "org.id", "header_name": "x-org" }
                ]
            }),
            Some(json!([
                { "match": { "prefix": "/public" } },
                { "match": { "prefix": "/" }, "requires": { "provider_name": "corp" } }
            ])),
        ));
        let token = rs256(&with(json!({ "org": { "id": "o-7" } })));
        let payload = token.split('.').nth(1).unwrap().to_owned();
        for round in ["miss", "hit"] {
            let upstream = upstream_of(decide_at(&g, "/a", &bearer(&token), NOW));
            assert_eq!(
                upstream,
                Upstream {
                    remove_headers: vec![
                        "x-jwt-payload".into(),
                        "x-jwt-sub".into(),
                        "x-org".into(),
                        "authorization".into()
                    ],
                    set_headers: vec![
                        ("x-jwt-payload".into(), payload.clone()),
                        ("x-jwt-sub".into(), "alice".into()),
                        ("x-org".into(), "o-7".into()),
                    ],
                    path: None,
                },
                "{round}"
            );
        }
        // Public routes scrub the same headers: a client cannot claim to be "alice" there.
        let spoofed = vec![("x-jwt-sub".to_owned(), "alice".to_owned())];
        assert_eq!(
            upstream_of(decide_at(&g, "/public", &spoofed, NOW)).remove_headers,
            vec!["x-jwt-payload", "x-jwt-sub", "x-org"]
        );
    }

    #[test]
    fn forward_keeps_the_credential() {
        let g = guard(testkit::config_json(json!({ "forward": true }), None));
        let upstream = upstream_of(decide_at(&g, "/", &bearer(&rs256(&good_claims())), NOW));
        assert_eq!(upstream, Upstream::default());
    }

    #[test]
    fn cookie_and_param_credentials_are_taken_out() {
        let g = guard(testkit::config_json(
            json!({ "from_cookies": ["session"], "from_params": ["access_token"] }),
            None,
        ));
        let token = rs256(&good_claims());
        let cookie = vec![(
            "cookie".to_owned(),
            format!("theme=dark; session={token}; lang=en"),
        )];
        let upstream = upstream_of(decide_at(&g, "/a", &cookie, NOW));
        assert_eq!(upstream.remove_headers, vec!["cookie"]);
        assert_eq!(
            upstream.set_headers,
            vec![("cookie".into(), "theme=dark; lang=en".into())]
        );
        let path = format!("/a?x=1&access_token={token}");
        let upstream = upstream_of(decide_at(&g, &path, &[], NOW));
        assert_eq!(upstream.path.as_deref(), Some("/a?x=1"));
        // Authorization is not a source for this provider any more.
        assert_eq!(
            reason(decide_at(&g, "/a", &bearer(&token), NOW)),
            Some(DenyReason::MissingToken)
        );
    }

    /// What the adapter hands over when header values are not UTF-8: the rest as text, the
    /// names of those apart.
    fn decide_not_utf8(
        g: &Guard,
        path: &str,
        headers: &[(String, String)],
        bad: &[&str],
    ) -> Decision {
        let headers = str_pairs(headers);
        let request = Request {
            method: "GET",
            path,
            headers: &headers,
            tls: false,
            not_utf8: bad,
            jwt_authn: None,
        };
        g.decide(&request, NOW).decision
    }

    #[test]
    fn a_credential_header_that_is_not_utf8_is_a_malformed_token() {
        let g = guard(testkit::config_json(
            json!({
                "from_headers": [{ "name": "authorization", "value_prefix": "Bearer " }],
                "from_cookies": ["session"],
            }),
            None,
        ));
        let valid = bearer(&rs256(&good_claims()));
        let cookie = vec![(
            "cookie".to_owned(),
            format!("session={}", rs256(&good_claims())),
        )];
        // Whatever else the request carries: the bytes were meant as a credential.
        assert_eq!(
            reason(decide_not_utf8(&g, "/", &cookie, &["authorization"])),
            Some(DenyReason::MalformedToken)
        );
        let g = default_guard();
        assert_eq!(
            reason(decide_not_utf8(&g, "/", &[], &["authorization"])),
            Some(DenyReason::MalformedToken)
        );
        // A header no provider of the route reads is not a credential: ignored.
        for other in ["cookie", "x-forwarded-for", "user-agent", ":authority"] {
            assert_eq!(
                reason(decide_not_utf8(&g, "/", &valid, &[other])),
                None,
                "{other}"
            );
        }
    }

    #[test]
    fn a_request_line_or_rule_header_that_is_not_utf8_matches_no_rule() {
        let rules = json!([
            { "match": { "prefix": "/", "headers": [{ "name": "x-tenant", "exact": "blue" }] },
              "requires": { "allow_missing": {} } },
            { "match": { "prefix": "/" }, "requires": { "provider_name": "corp" } }
        ]);
        let g = guard(testkit::config_json(json!({}), Some(rules)));
        let tenant = vec![("x-tenant".to_owned(), "blue".to_owned())];
        assert_eq!(reason(decide_not_utf8(&g, "/", &tenant, &[])), None);
        // `x-tenant: blue\xff` is not `blue`: the public rule does not match, the token one does.
        assert_eq!(
            reason(decide_not_utf8(&g, "/", &[], &["x-tenant"])),
            Some(DenyReason::MissingToken)
        );
        let valid = bearer(&rs256(&good_claims()));
        for line in [":path", ":method"] {
            assert_eq!(
                reason(decide_not_utf8(&g, "", &valid, &[line])),
                Some(DenyReason::NoMatchingRule),
                "{line}"
            );
        }
    }

    /// corp (Authorization) and partner (x-partner-token), with rules of every kind.
    fn two_provider_guard() -> Guard {
        let k = keys();
        let partner_jwks =
            json!({ "keys": [testkit::public_jwk(JsonWebKey::from(&k.rsa_other), "p-1", None)] });
        guard(json!({
            "providers": {
                "corp": testkit::config_json(json!({}), None)["providers"]["corp"].clone(),
                "partner": {
                    "issuer": "https://partner.example",
                    "local_jwks": partner_jwks,
                    "from_headers": [{ "name": "x-partner-token" }]
                }
            },
            "rules": [
                { "match": { "prefix": "/any" }, "requires": { "requires_any": { "requirements": [
                    { "provider_name": "corp" }, { "provider_name": "partner" } ] } } },
                { "match": { "prefix": "/all" }, "requires": { "requires_all": { "requirements": [
                    { "provider_name": "corp" }, { "provider_name": "partner" } ] } } },
                { "match": { "prefix": "/optional" }, "requires": { "allow_missing": {} } },
                { "match": { "prefix": "/billing" }, "requires": { "provider_and_audiences": {
                    "provider_name": "corp", "audiences": ["billing-api"] } } },
                { "match": { "prefix": "/orders", "methods": ["DELETE"] },
                  "requires": { "provider_name": "corp" }, "scopes": ["orders:admin"] },
                { "match": { "prefix": "/orders" }, "requires": { "provider_name": "corp" },
                  "scopes": ["orders:read"] }
            ]
        }))
    }

    fn partner_token() -> String {
        mint(
            Signer::Rs256(&keys().rsa_other),
            Some("p-1"),
            &with(json!({ "iss": "https://partner.example" })),
        )
    }

    #[test]
    fn requires_any_all_and_allow_missing() {
        let g = two_provider_guard();
        let corp = bearer(&rs256(&good_claims()));
        let partner = vec![("x-partner-token".to_owned(), partner_token())];
        let both: Vec<_> = corp.iter().chain(partner.iter()).cloned().collect();
        let at =
            |path: &str, headers: &[(String, String)]| reason(decide_at(&g, path, headers, NOW));
        assert_eq!(at("/any", &corp), None);
        assert_eq!(at("/any", &partner), None);
        assert_eq!(at("/any", &[]), Some(DenyReason::MissingToken));
        let expired = bearer(&rs256(&with(json!({ "exp": NOW - 999 }))));
        assert_eq!(
            at("/any", &expired),
            Some(DenyReason::Expired),
            "the real failure is reported"
        );
        assert_eq!(at("/all", &both), None);
        assert_eq!(at("/all", &corp), Some(DenyReason::MissingToken));
        let upstream = upstream_of(decide_at(&g, "/all", &both, NOW));
        assert!(upstream
            .remove_headers
            .contains(&"authorization".to_owned()));
        assert!(upstream
            .remove_headers
            .contains(&"x-partner-token".to_owned()));
        assert_eq!(at("/optional", &[]), None);
        assert_eq!(at("/optional", &corp), None);
        assert_eq!(at("/optional", &expired), Some(DenyReason::Expired));
    }

    /// One provider per credential place (issuer `https://<name>`), and routes needing
    /// several of them.
    fn credential_places_guard() -> Guard {
        let provider = |name: &str, sources: Value| {
            let mut p =
                json!({ "issuer": format!("https://{name}"), "local_jwks": testkit::jwks() });
            p.as_object_mut()
                .unwrap()
                .extend(sources.as_object().unwrap().clone());
            p
        };
        let all = |names: &[&str]| {
            json!({ "requires_all": { "requirements":
                names.iter().map(|n| json!({ "provider_name": n })).collect::<Vec<_>>() } })
        };
        guard(json!({
            "providers": {
                "pa": provider("pa", json!({ "from_params": ["jwt_a"] })),
                "pb": provider("pb", json!({ "from_params": ["jwt_b"] })),
                "ca": provider("ca", json!({ "from_cookies": ["sa"] })),
                "cb": provider("cb", json!({ "from_cookies": ["sb"] })),
                "ha": provider("ha", json!({ "from_headers": [{ "name": "x-token-a" }] })),
                "pf": provider("pf", json!({ "from_params": ["jwt_f"], "forward": true })),
                "hf": provider("hf", json!({ "from_headers": [{ "name": "x-token-f" }],
                    "forward": true }))
            },
            "rules": [
                { "match": { "prefix": "/params" }, "requires": all(&["pa", "pb"]) },
                { "match": { "prefix": "/cookies" }, "requires": all(&["ca", "cb"]) },
                { "match": { "prefix": "/mixed" }, "requires": all(&["pa", "ca", "ha"]) },
                { "match": { "prefix": "/nested" }, "requires": { "requires_all": {
                    "requirements": [
                        { "requires_any": { "requirements": [
                            { "provider_name": "pa" }, { "provider_name": "ca" } ] } },
                        { "provider_name": "pb" } ] } } },
                { "match": { "prefix": "/forward" }, "requires": all(&["pf", "pa", "hf", "ha"]) },
                { "match": { "prefix": "/optional" }, "requires": { "allow_missing": {} } }
            ]
        }))
    }

    fn token_of(provider: &str) -> String {
        rs256(&json!({ "iss": format!("https://{provider}"), "exp": NOW + 60 }))
    }

    #[test]
    fn requires_all_takes_out_every_credential_it_used() {
        let g = credential_places_guard();
        let (a, b) = (token_of("pa"), token_of("pb"));
        let path = format!("/params?x=1&jwt_a={a}&jwt_b={b}&y=2");
        assert_eq!(
            upstream_of(decide_at(&g, &path, &[], NOW)).path.as_deref(),
            Some("/params?x=1&y=2")
        );
        let cookie = vec![(
            "cookie".to_owned(),
            format!("sa={}; theme=dark; sb={}", token_of("ca"), token_of("cb")),
        )];
        let upstream = upstream_of(decide_at(&g, "/cookies", &cookie, NOW));
        assert_eq!(upstream.remove_headers, vec!["cookie"]);
        assert_eq!(
            upstream.set_headers,
            vec![("cookie".into(), "theme=dark".into())]
        );
        let headers = vec![
            ("cookie".to_owned(), format!("sa={}", token_of("ca"))),
            ("x-token-a".to_owned(), token_of("ha")),
        ];
        let path = format!("/mixed?jwt_a={a}");
        assert_eq!(
            upstream_of(decide_at(&g, &path, &headers, NOW)),
            Upstream {
                remove_headers: vec!["x-token-a".into(), "cookie".into()],
                set_headers: Vec::new(),
                path: Some("/mixed".into()),
            }
        );
        // `requires_any` inside `requires_all`: the option that granted, and the other part.
        let path = format!("/nested?jwt_a={a}&jwt_b={b}");
        let upstream = upstream_of(decide_at(&g, &path, &[], NOW));
        assert_eq!(upstream.path.as_deref(), Some("/nested"));
    }

    /// `requires_any`: a refused credential beside an accepted one must not reach the upstream,
    /// which could take it for one the proxy checked.
    #[test]
    fn requires_any_takes_out_the_credentials_it_refused() {
        let g = two_provider_guard();
        let expired = rs256(&with(json!({ "exp": NOW - 999 })));
        let forged = format!("{}AAAA", &expired[..expired.len() - 4]);
        for bad in [expired, forged] {
            let headers = vec![
                ("authorization".to_owned(), format!("Bearer {bad}")),
                ("x-partner-token".to_owned(), partner_token()),
            ];
            let upstream = upstream_of(decide_at(&g, "/any", &headers, NOW));
            for name in ["authorization", "x-partner-token"] {
                assert!(
                    upstream.remove_headers.contains(&name.to_owned()),
                    "{name}: {upstream:?}"
                );
            }
        }
        // Nothing refused, nothing extra: a missing corp token takes nothing else out.
        let partner = vec![("x-partner-token".to_owned(), partner_token())];
        let upstream = upstream_of(decide_at(&g, "/any", &partner, NOW));
        assert!(upstream
            .remove_headers
            .contains(&"x-partner-token".to_owned()));
    }

    #[test]
    fn a_forwarding_provider_keeps_only_its_own_credential() {
        let g = credential_places_guard();
        let (a, f) = (token_of("pa"), token_of("pf"));
        let headers = vec![
            ("x-token-f".to_owned(), token_of("hf")),
            ("x-token-a".to_owned(), token_of("ha")),
        ];
        let path = format!("/forward?jwt_a={a}&jwt_f={f}");
        let upstream = upstream_of(decide_at(&g, &path, &headers, NOW));
        assert_eq!(upstream.path, Some(format!("/forward?jwt_f={f}")));
        assert_eq!(upstream.remove_headers, vec!["x-token-a"]);
    }

    #[test]
    fn allow_missing_refuses_an_unreadable_credential() {
        let g = credential_places_guard();
        let at = |path: &str, headers: &[(&str, &str)]| {
            let headers: Vec<_> = headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect();
            let Decision::Deny(denial) = decide_at(&g, path, &headers, NOW) else {
                return None;
            };
            Some((denial.reason, denial.status))
        };
        let malformed = Some((DenyReason::MalformedCredential, 400));
        // `optional` reads Authorization through no provider here: not a source, so a
        // malformed bearer header is just a header. The providers' own places count.
        assert_eq!(at("/optional", &[("authorization", "Bearer\tx")]), None);
        assert_eq!(at("/optional", &[("cookie", "sa")]), malformed);
        assert_eq!(at("/optional", &[("cookie", "sb=")]), malformed);
        assert_eq!(at("/optional?jwt_a=", &[]), malformed);
        assert_eq!(at("/optional?JWT_B=x", &[]), malformed);
        assert_eq!(at("/optional?jwt.f=x", &[]), malformed);
        assert_eq!(at("/optional", &[("x-token-a", "")]), malformed);
        assert_eq!(
            at("/optional?access.token=x", &[]),
            Some((DenyReason::TokenInQuery, 400))
        );
        assert_eq!(at("/optional?jwt=x&sa=y", &[("cookie", "Sa=1")]), None);
        let default = default_guard();
        for value in ["Bearer\tx", "Bearerx", "Bearer"] {
            assert_eq!(
                reason(decide_at(
                    &default,
                    "/",
                    &[("authorization".into(), value.into())],
                    NOW
                )),
                Some(DenyReason::MalformedCredential),
                "{value:?}"
            );
        }
    }

    #[test]
    fn provider_and_audiences_overrides_the_audience() {
        let g = two_provider_guard();
        let orders = bearer(&rs256(&good_claims()));
        let billing = bearer(&rs256(&with(json!({ "aud": "billing-api" }))));
        assert_eq!(
            reason(decide_at(&g, "/billing", &orders, NOW)),
            Some(DenyReason::AudienceNotAccepted)
        );
        assert_eq!(reason(decide_at(&g, "/billing", &billing, NOW)), None);
        // ...also when the token is already in the cache.
        assert_eq!(
            reason(decide_at(&g, "/billing", &orders, NOW)),
            Some(DenyReason::AudienceNotAccepted)
        );
    }

    #[test]
    fn scopes_are_required_per_route() {
        let g = two_provider_guard();
        let reader = rs256(&with(json!({ "scope": "orders:read profile" })));
        let request = |method: &'static str, token: &str| {
            g.decide(
                &Request {
                    method,
                    path: "/orders/1",
                    headers: &str_pairs(&bearer(token)),
                    tls: false,
                    not_utf8: &[],
                    jwt_authn: None,
                },
                NOW,
            )
            .decision
        };
        assert_eq!(reason(request("GET", &reader)), None);
        let Decision::Deny(denial) = request("DELETE", &reader) else {
            panic!("reader may not delete");
        };
        assert_eq!(denial.reason, DenyReason::InsufficientScope);
        assert_eq!(denial.status, 403);
        assert!(
            denial.headers[0].1.ends_with("scope=\"orders:admin\""),
            "{:?}",
            denial.headers
        );
        // A cache hit checks the route's scopes too.
        assert_eq!(
            reason(request("DELETE", &reader)),
            Some(DenyReason::InsufficientScope)
        );
        let no_scope = rs256(&good_claims());
        assert_eq!(
            reason(request("GET", &no_scope)),
            Some(DenyReason::InsufficientScope)
        );
    }

    #[test]
    fn cors_preflight_passes_unless_disabled() {
        let preflight = vec![
            ("origin".to_owned(), "https://app.example".to_owned()),
            (
                "access-control-request-method".to_owned(),
                "POST".to_owned(),
            ),
        ];
        let options = |g: &Guard| {
            reason(
                g.decide(
                    &Request {
                        method: "OPTIONS",
                        path: "/",
                        headers: &str_pairs(&preflight),
                        tls: false,
                        not_utf8: &[],
                        jwt_authn: None,
                    },
                    NOW,
                )
                .decision,
            )
        };
        assert_eq!(options(&default_guard()), None);
        let mut config = testkit::config_json(json!({}), None);
        config["bypass_cors_preflight"] = json!(false);
        assert_eq!(options(&guard(config)), Some(DenyReason::MissingToken));
    }

    fn remote_guard() -> Guard {
        guard(json!({
            "providers": { "corp": {
                "issuer": testkit::ISSUER,
                "remote_jwks": { "cluster": "idp", "uri": "https://idp.example.com/jwks",
                                 "refetch_min_interval_seconds": 30 }
            }}
        }))
    }

    fn key_set(kid: &str, key: &jwt_compact::alg::RsaPrivateKey) -> crate::keys::jwks::KeySet {
        crate::keys::jwks::parse_keys(&[testkit::public_jwk(JsonWebKey::from(key), kid, None)])
            .key_set
    }

    #[test]
    fn before_the_first_fetch_a_request_waits_then_gets_a_503() {
        let g = remote_guard();
        let token = bearer(&rs256(&good_claims()));
        let request = Request {
            method: "GET",
            path: "/",
            headers: &str_pairs(&token),
            tls: false,
            not_utf8: &[],
            jwt_authn: None,
        };
        assert_eq!(
            g.decide(&request, NOW).decision,
            Decision::WaitForKeys { provider: 0 }
        );
        assert_eq!(
            reason(g.decide_after_wait(&request, NOW).decision),
            Some(DenyReason::Unavailable)
        );
        g.state()
            .install_keys(0, key_set("rsa-1", &keys().rsa), NOW);
        assert_eq!(reason(g.decide(&request, NOW).decision), None);
    }

    #[test]
    fn an_unknown_kid_waits_for_one_rate_limited_refetch() {
        let g = remote_guard();
        g.state()
            .install_keys(0, key_set("rsa-1", &keys().rsa), NOW - 100);
        let rotated = bearer(&mint(
            Signer::Rs256(&keys().rsa_other),
            Some("rsa-2"),
            &good_claims(),
        ));
        let request = Request {
            method: "GET",
            path: "/",
            headers: &str_pairs(&rotated),
            tls: false,
            not_utf8: &[],
            jwt_authn: None,
        };
        assert_eq!(
            g.decide(&request, NOW).decision,
            Decision::WaitForKeys { provider: 0 }
        );
        // Nothing new arrived: the second look refuses; and no second refetch within 30 s.
        assert_eq!(
            reason(g.decide_after_wait(&request, NOW).decision),
            Some(DenyReason::UnknownKeyId)
        );
        assert_eq!(
            reason(g.decide(&request, NOW + 29).decision),
            Some(DenyReason::UnknownKeyId)
        );
        // The new keys land: the rotated key works and the removed one stops, cache or not.
        let old = bearer(&rs256(&good_claims()));
        g.state()
            .install_keys(0, key_set("rsa-1", &keys().rsa), NOW + 29);
        assert_eq!(reason(decide_at(&g, "/", &old, NOW + 29)), None);
        g.state()
            .install_keys(0, key_set("rsa-2", &keys().rsa_other), NOW + 30);
        assert_eq!(reason(decide_at(&g, "/", &rotated, NOW + 30)), None);
        assert_eq!(
            reason(decide_at(&g, "/", &old, NOW + 31)),
            Some(DenyReason::UnknownKeyId)
        );
    }

    /// Keys landing for one provider (its first fetch, or another worker's fetch adopted)
    /// leave the other providers' verified tokens cached: only the provider whose keys
    /// changed can have lost the key a cached token verified with.
    #[test]
    fn new_keys_for_one_provider_keep_the_others_cached_tokens() {
        let g = guard(json!({
            "providers": {
                "corp": { "issuer": testkit::ISSUER,
                          "remote_jwks": { "cluster": "idp", "uri": "https://idp.example.com/jwks" } },
                "partner": { "issuer": "https://partner.example",
                             "remote_jwks": { "cluster": "idp", "uri": "https://idp.example.com/partner" },
                             "from_headers": [{ "name": "x-partner-token" }] }
            }
        }));
        g.state()
            .install_keys(0, key_set("rsa-1", &keys().rsa), NOW - 10);
        let token = rs256(&good_claims());
        assert_eq!(verdict(&g, "/", &token, NOW).cache, CacheLookup::Miss);
        assert_eq!(verdict(&g, "/", &token, NOW).cache, CacheLookup::Hit);
        g.state()
            .install_keys(1, key_set("p-1", &keys().rsa_other), NOW);
        let after_partner = verdict(&g, "/", &token, NOW + 1);
        assert_eq!(after_partner.cache, CacheLookup::Hit);
        assert_eq!(reason(after_partner.decision), None);
        // corp's same keys again (a periodic refetch) drop nothing...
        g.state()
            .install_keys(0, key_set("rsa-1", &keys().rsa), NOW + 2);
        assert_eq!(verdict(&g, "/", &token, NOW + 2).cache, CacheLookup::Hit);
        // ...and changed ones drop corp's entries: they are verified afresh.
        g.state()
            .install_keys(0, key_set("rsa-one", &keys().rsa), NOW + 3);
        let renamed = verdict(&g, "/", &token, NOW + 3);
        assert_eq!(renamed.cache, CacheLookup::Miss);
        assert_eq!(reason(renamed.decision), Some(DenyReason::UnknownKeyId));
    }

    fn revocation_guard(revocation: Value) -> Guard {
        let mut config = testkit::config_json(json!({}), None);
        config["revocation"] = revocation;
        guard(config)
    }

    #[test]
    fn static_revocations_by_jti_hash_subject_and_cutoff() {
        let token = rs256(&with(json!({ "jti": "j-1" })));
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let hex = crate::observe::fingerprint::digest_to_hex(&digest);
        let revoked = |revocation: Value, token: &str| {
            let g = revocation_guard(revocation);
            reason(decide_at(&g, "/", &bearer(token), NOW))
        };
        let other = rs256(&with(json!({ "jti": "j-2", "sub": "bob" })));
        for revocation in [
            json!({ "jti": ["j-1"] }),
            json!({ "token_sha256": [hex] }),
            json!({ "subjects": { "alice": NOW - 10 } }),
            json!({ "providers": { "corp": { "subjects": { "alice": NOW } } } }),
            json!({ "issued_before": NOW - 10 }),
            json!({ "providers": { "corp": { "jti": ["j-1"] } } }),
        ] {
            assert_eq!(
                revoked(revocation.clone(), &token),
                Some(DenyReason::Revoked),
                "{revocation}"
            );
            if revocation.get("issued_before").is_none() {
                assert_eq!(revoked(revocation, &other), None);
            }
        }
        // Issued after the subject's cutoff: fine.
        assert_eq!(
            revoked(json!({ "subjects": { "alice": NOW - 11 } }), &token),
            None
        );
        let denial = match decide_at(
            &revocation_guard(json!({ "jti": ["j-1"] })),
            "/",
            &bearer(&token),
            NOW,
        ) {
            Decision::Deny(denial) => denial,
            other => panic!("{other:?}"),
        };
        assert_eq!(denial.status, 401);
        assert!(denial.headers.iter().any(|(n, v)| n == "www-authenticate"
            && v.contains("error=\"invalid_token\"")
            && v.contains("error_description=\"token revoked\"")));
    }

    #[test]
    fn learned_revocations_reach_cached_tokens() {
        let g = revocation_guard(json!({}));
        let token = rs256(&with(json!({ "jti": "j-1" })));
        let first = verdict(&g, "/", &token, NOW);
        let authorized = match first.decision {
            Decision::Allow { token: Some(t), .. } => t,
            other => panic!("{other:?}"),
        };
        assert_eq!(authorized.jti.as_deref(), Some("j-1"));
        assert_eq!(verdict(&g, "/", &token, NOW).cache, CacheLookup::Hit);
        g.learn_self(&authorized, NOW);
        let after = verdict(&g, "/", &token, NOW);
        assert_eq!(after.cache, CacheLookup::Hit);
        assert_eq!(reason(after.decision), Some(DenyReason::Revoked));
        // The header disabled: no token is kept for `self`.
        let g = revocation_guard(json!({ "response_header": null }));
        assert!(matches!(
            verdict(&g, "/", &token, NOW).decision,
            Decision::Allow { token: None, .. }
        ));
    }

    /// The cache keeps each token's hashes with its entry: a hit reports the hashes of the
    /// token that hit, never those of another entry (a twin has its own whole-token hash).
    #[test]
    fn hits_carry_their_own_hashes() {
        let token = mint(Signer::Es256(&keys().ec), Some("ec-1"), &good_claims());
        let twin = testkit::es256_twin(&token);
        let g = revocation_guard(json!({}));
        for round in 0..3 {
            for t in [&token, &twin] {
                let v = verdict(&g, "/", t, NOW);
                let expected = if round == 0 {
                    CacheLookup::Miss
                } else {
                    CacheLookup::Hit
                };
                assert_eq!(v.cache, expected);
                let authorized = match v.decision {
                    Decision::Allow { token: Some(a), .. } => a,
                    other => panic!("{other:?}"),
                };
                let whole: [u8; 32] = Sha256::digest(t.as_bytes()).into();
                assert_eq!(authorized.token_sha256, whole);
                assert_eq!(authorized.id, token_id(t));
            }
        }
    }

    /// An upstream's `self` revocation of a token without `jti`, made from a cache hit (whose
    /// hashes come from the cache entry), revokes that token on its next hit: the hit's hashes
    /// are the token's own, not left empty or taken from another entry.
    #[test]
    fn a_self_revocation_made_on_a_hit_revokes_the_cached_token() {
        let token = rs256(&good_claims());
        let other = rs256(&with(json!({ "sub": "bob" })));
        let g = revocation_guard(json!({}));
        for t in [&token, &other] {
            assert_eq!(verdict(&g, "/", t, NOW).cache, CacheLookup::Miss);
        }
        let hit = verdict(&g, "/", &token, NOW);
        assert_eq!(hit.cache, CacheLookup::Hit);
        let Decision::Allow {
            token: Some(authorized),
            ..
        } = hit.decision
        else {
            panic!("allowed with the token kept for `self`");
        };
        assert_eq!(authorized.jti, None);
        g.learn_self(&authorized, NOW);
        let after = verdict(&g, "/", &token, NOW);
        assert_eq!(after.cache, CacheLookup::Hit);
        assert_eq!(reason(after.decision), Some(DenyReason::Revoked));
        // The other cached token is untouched.
        assert_eq!(reason(verdict(&g, "/", &other, NOW).decision), None);
    }

    /// A revoked ES256 token without `jti` must stay revoked under its signature twin
    /// (`s` -> `n - s` verifies too): revocation, `self`, misuse and the cache all know a token
    /// by its identity (the signing input), which the twin shares.
    #[test]
    fn signature_twins_are_the_same_token_to_revocation() {
        let token = mint(Signer::Es256(&keys().ec), Some("ec-1"), &good_claims());
        let twin = testkit::es256_twin(&token);
        assert_ne!(token, twin);
        let g = revocation_guard(json!({}));
        for t in [&token, &twin] {
            assert_eq!(
                reason(decide_at(&g, "/", &bearer(t), NOW)),
                None,
                "twins verify"
            );
        }
        // `self` on the original's response; the twin was cached before that, and is not after.
        let authorized = match verdict(&g, "/", &token, NOW).decision {
            Decision::Allow { token: Some(t), .. } => t,
            other => panic!("{other:?}"),
        };
        g.learn_self(&authorized, NOW);
        for t in [&token, &twin] {
            assert_eq!(
                reason(decide_at(&g, "/", &bearer(t), NOW)),
                Some(DenyReason::Revoked)
            );
        }
        // Entries operators write: the identity revokes both; a whole-token hash (how entries
        // were made before) still revokes the token it was made from.
        let id = crate::observe::fingerprint::digest_to_hex(&token_id(&token));
        let whole =
            crate::observe::fingerprint::digest_to_hex(&Sha256::digest(token.as_bytes()).into());
        let g = revocation_guard(json!({ "token_sha256": [id] }));
        for t in [&token, &twin] {
            assert_eq!(
                reason(decide_at(&g, "/", &bearer(t), NOW)),
                Some(DenyReason::Revoked)
            );
        }
        let g = revocation_guard(json!({ "token_sha256": [whole] }));
        assert_eq!(
            reason(decide_at(&g, "/", &bearer(&token), NOW)),
            Some(DenyReason::Revoked)
        );
        // The twin and the original share the identity misuse detection counts by.
        let g = guard({
            let mut c = testkit::config_json(json!({}), None);
            c["anomaly"] = json!({ "max_distinct_ips": 2 });
            c
        });
        let identity = |t: &str| match g
            .decide(&Request::get("/", &str_pairs(&bearer(t))), NOW)
            .decision
        {
            Decision::Allow {
                identity: Some(i), ..
            } => i,
            other => panic!("{other:?}"),
        };
        assert_eq!(identity(&token).id, identity(&twin).id);
        assert_ne!(identity(&token).sha256, identity(&twin).sha256);
    }

    /// RFC 8017 §5.2.2: an RSA signature must be below the modulus. `s + n` is `s` modulo `n`;
    /// a verifier that skips the check (the `rsa` crate's PSS path) accepts the second spelling.
    #[test]
    fn rsa_signatures_at_or_above_the_modulus_are_refused() {
        use rsa::RsaPublicKey;
        let k = keys();
        let public = RsaPublicKey::from(&k.rsa);
        let g = all_algorithms_guard();
        let mut tried = 0;
        // About 1 signature in 40 leaves room for s + n under this key's modulus (PS256's are
        // random): go on until enough were tried, not for a fixed count that a run can miss.
        for i in 0..4000 {
            if tried >= 6 {
                break;
            }
            let signer = if i % 2 == 0 {
                Signer::Ps256(&k.rsa)
            } else {
                Signer::Rs256(&k.rsa)
            };
            let token = mint(
                signer,
                Some("rsa-any"),
                &with(json!({ "jti": i.to_string() })),
            );
            assert_eq!(reason(decide_at(&g, "/", &bearer(&token), NOW)), None);
            if let Some(bigger) = testkit::rsa_plus_modulus(&token, &public) {
                tried += 1;
                assert_eq!(
                    reason(decide_at(&g, "/", &bearer(&bigger), NOW)),
                    Some(DenyReason::BadSignature)
                );
            }
        }
        assert!(tried >= 4, "only {tried} signatures had room for s + n");
    }

    /// RFC 4648 §3.5: the unused bits of the last base64url character are zero; another
    /// spelling of the same signature bytes is refused, not a second token.
    #[test]
    fn non_canonical_signature_encodings_are_refused() {
        let k = keys();
        let (all, default) = (all_algorithms_guard(), default_guard());
        let tokens = [
            (
                &default,
                mint(Signer::Es256(&k.ec), Some("ec-1"), &good_claims()),
            ),
            (&all, rs256(&good_claims())),
            (
                &all,
                mint(Signer::Ps256(&k.rsa), Some("rsa-any"), &good_claims()),
            ),
            (
                &all,
                mint(Signer::EdDsa(&k.ed25519.0), Some("ed-1"), &good_claims()),
            ),
            (
                &all,
                mint(
                    Signer::Hs256(&k.hmac_secret),
                    Some("hmac-1"),
                    &good_claims(),
                ),
            ),
        ];
        for (g, token) in tokens {
            assert_eq!(reason(decide_at(g, "/", &bearer(&token), NOW)), None);
            let respelled = testkit::with_noncanonical_signature_encoding(&token).unwrap();
            let refused = reason(decide_at(g, "/", &bearer(&respelled), NOW));
            assert!(
                matches!(
                    refused,
                    Some(DenyReason::MalformedToken | DenyReason::BadSignature)
                ),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn a_stale_list_denies_or_allows_as_configured() {
        let list = |on_stale: &str| {
            revocation_guard(json!({ "list": {
                "cluster": "rev", "uri": "http://rev/v1/list",
                "refresh_seconds": 10, "max_stale_seconds": 60, "on_stale": on_stale
            }}))
        };
        let token = rs256(&with(json!({ "jti": "j-1" })));
        let g = list("deny");
        // Never fetched: the request waits for the first fetch...
        assert_eq!(
            verdict(&g, "/", &token, NOW).decision,
            Decision::WaitForRevocationList
        );
        // ...and if that fails, the token may be fine but cannot be shown unrevoked.
        let after_wait = verdict_after_wait(&g, "/", &token, NOW);
        let denial = match after_wait.decision {
            Decision::Deny(denial) => denial,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (denial.reason, denial.status),
            (DenyReason::RevocationListStale, 503)
        );
        assert!(denial.headers.iter().any(|(n, _)| n == "retry-after"));
        // A bad token still gets its own reason.
        assert_eq!(
            reason(verdict(&g, "/", "x.y.z", NOW).decision),
            Some(DenyReason::MalformedToken)
        );
        let mut b = crate::revocation::set::SetBuilder::default();
        b.add_exact(crate::revocation::set::Kind::Jti, "", b"j-9");
        g.state()
            .install_revocation_list(HeldList::whole(b.build("v1", ""), None), NOW);
        assert_eq!(reason(verdict(&g, "/", &token, NOW + 60).decision), None);
        assert_eq!(
            reason(verdict(&g, "/", &token, NOW + 61).decision),
            Some(DenyReason::RevocationListStale)
        );
        g.state().revocation_list_checked(NOW + 61);
        assert_eq!(reason(verdict(&g, "/", &token, NOW + 61).decision), None);
        let listed = rs256(&with(json!({ "jti": "j-9" })));
        assert_eq!(
            reason(verdict(&g, "/", &listed, NOW + 61).decision),
            Some(DenyReason::Revoked)
        );

        let g = list("allow");
        let v = verdict(&g, "/", &token, NOW);
        assert!(v.stale_allowed);
        assert_eq!(reason(v.decision), None);
    }

    /// Answers as the adapter's shared cache would hold them.
    #[derive(Default, Clone)]
    struct Answers(Rc<RefCell<std::collections::HashMap<TokenDigest, Answer>>>);

    impl AnswerStore for Answers {
        fn lookup(&self, digest: &TokenDigest, now: i64) -> Option<Answer> {
            self.0
                .borrow()
                .get(digest)
                .filter(|a| a.cache_until > now)
                .cloned()
        }
    }

    impl Answers {
        fn set(&self, token: &str, active: bool, claims: Value) {
            self.0.borrow_mut().insert(
                Sha256::digest(token.as_bytes()).into(),
                Answer {
                    cache_until: NOW + 30,
                    active,
                    claims_json: claims.to_string(),
                },
            );
        }
    }

    fn introspecting_guard(extra: Value, answers: &Answers) -> Guard {
        let mut config = json!({ "providers": { "idp": {
            "issuer": "https://idp.example",
            "audiences": ["orders-api"],
            "introspection": {
                "cluster": "idp", "uri": "http://idp/token/introspection",
                "client_id": "proxy", "client_secret": "s"
            },
            "claim_to_headers": [{ "claim_name": "client_id", "header_name": "x-client-id" }]
        }}, "rules": [{ "match": { "prefix": "/" }, "requires": { "provider_name": "idp" }, "scopes": ["orders:read"] }]});
        if let (Some(c), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
            c.extend(extra.clone());
        }
        guard(config).with_answer_store(Box::new(answers.clone()))
    }

    #[test]
    fn opaque_tokens_are_decided_by_the_introspection_answer() {
        let answers = Answers::default();
        let g = introspecting_guard(json!({}), &answers);
        let opaque = "cMYcCrAzIcMcMp_1ejWvqXdKDOAURgnM9VlR7Oo9pp3";
        // Nothing cached: ask the provider, then decide.
        assert_eq!(
            decide_at(&g, "/", &bearer(opaque), NOW),
            Decision::Introspect {
                provider: 0,
                token: opaque.to_owned()
            }
        );
        let after_wait = |g: &Guard| verdict_after_wait(g, "/", opaque, NOW).decision;
        // The call failed (nothing was cached): the token may be fine, 503.
        assert_eq!(reason(after_wait(&g)), Some(DenyReason::Unavailable));
        let good = json!({ "active": true, "iss": "https://idp.example", "aud": "orders-api",
                           "scope": "orders:read", "client_id": "orders-client", "exp": NOW + 300 });
        answers.set(opaque, true, good.clone());
        match decide_at(&g, "/", &bearer(opaque), NOW) {
            Decision::Allow {
                upstream, token, ..
            } => {
                assert!(upstream
                    .set_headers
                    .contains(&("x-client-id".to_owned(), "orders-client".to_owned())));
                assert!(token.is_none(), "no revocation header without `revocation`");
            }
            other => panic!("{other:?}"),
        }
        let cases = [
            (
                json!({ "active": true, "iss": "https://other", "aud": "orders-api", "scope": "orders:read" }),
                DenyReason::IssuerNotAccepted,
            ),
            (
                json!({ "active": true, "aud": "billing", "scope": "orders:read" }),
                DenyReason::AudienceNotAccepted,
            ),
            (
                json!({ "active": true, "aud": "orders-api", "scope": "orders:write" }),
                DenyReason::InsufficientScope,
            ),
            (
                json!({ "active": true, "aud": "orders-api", "scope": "orders:read", "exp": NOW - 100 }),
                DenyReason::Expired,
            ),
        ];
        for (claims, expected) in cases {
            answers.set(opaque, true, claims.clone());
            assert_eq!(
                reason(decide_at(&g, "/", &bearer(opaque), NOW)),
                Some(expected),
                "{claims}"
            );
        }
        answers.set(opaque, false, json!({ "active": false }));
        assert_eq!(
            reason(decide_at(&g, "/", &bearer(opaque), NOW)),
            Some(DenyReason::InactiveToken)
        );
        // A revocation learned for the token holds over an "active" answer still cached.
        answers.set(opaque, true, good);
        let g = introspecting_guard(
            json!({ "revocation": {
                "token_sha256": [crate::observe::fingerprint::digest_to_hex(&Sha256::digest(opaque.as_bytes()).into())]
            }}),
            &answers,
        );
        assert_eq!(
            reason(decide_at(&g, "/", &bearer(opaque), NOW)),
            Some(DenyReason::Revoked)
        );
        let g = introspecting_guard(json!({ "revocation": {} }), &answers);
        match decide_at(&g, "/", &bearer(opaque), NOW) {
            Decision::Allow { token, .. } => {
                assert!(
                    token.is_some_and(|t| t.introspected),
                    "a `self` revocation drops the answer"
                );
            }
            other => panic!("{other:?}"),
        }
        // A JWT-looking token is never introspected by a provider without `introspect_jwt`.
        assert_eq!(
            reason(decide_at(&g, "/", &bearer("a.b.c"), NOW)),
            Some(DenyReason::MalformedToken)
        );
    }

    fn status_list_token(uri: &str, statuses: &[u8], bits: u8, claims: Value) -> String {
        let mut payload = json!({
            "sub": uri, "iat": NOW - 5,
            "status_list": crate::idp::status_list::encode_claim(bits, statuses).unwrap()
        });
        if let (Some(p), Some(extra)) = (payload.as_object_mut(), claims.as_object()) {
            p.extend(extra.clone());
        }
        testkit::mint_with_header(
            Signer::Rs256(&keys().rsa),
            json!({ "kid": "rsa-1", "typ": "statuslist+jwt" }),
            &payload,
        )
    }

    #[test]
    fn token_status_lists_decide_valid_revoked_and_suspended() {
        let uri = "https://status.example/lists/1";
        let mut config = testkit::config_json(json!({}), None);
        config["revocation"] = json!({ "status_list": {
            "clusters": { "status.example": "status" }, "max_stale_seconds": 60, "default_ttl_seconds": 30
        }});
        let g = guard(config);
        let with_status = |idx: u64, uri: &str| {
            rs256(&with(
                json!({ "jti": format!("s-{idx}-{uri}"), "status": { "status_list": { "idx": idx, "uri": uri } } }),
            ))
        };
        let token = with_status(1, uri);
        // Never fetched: the request waits for the list.
        assert_eq!(
            decide_at(&g, "/", &bearer(&token), NOW),
            Decision::WaitForStatusList {
                provider: 0,
                uri: uri.to_owned()
            }
        );
        // The fetch failed: the stale policy (deny).
        let after = verdict_after_wait(&g, "/", &token, NOW);
        assert_eq!(
            reason(after.decision),
            Some(DenyReason::RevocationListStale)
        );
        // 2 bits: 0 valid, 1 invalid, 2 suspended, 3 application-specific.
        let list = status_list_token(uri, &[0, 1, 2, 3], 2, json!({}));
        assert_eq!(g.install_status_list(0, uri, &list, NOW), Ok(NOW + 30));
        assert_eq!(
            reason(decide_at(&g, "/", &bearer(&with_status(0, uri)), NOW)),
            None
        );
        assert_eq!(
            reason(decide_at(&g, "/", &bearer(&token), NOW)),
            Some(DenyReason::Revoked)
        );
        assert_eq!(
            reason(decide_at(&g, "/", &bearer(&with_status(2, uri)), NOW)),
            Some(DenyReason::Suspended)
        );
        assert_eq!(
            reason(decide_at(&g, "/", &bearer(&with_status(3, uri)), NOW)),
            Some(DenyReason::StatusUnknown)
        );
        assert_eq!(
            reason(decide_at(&g, "/", &bearer(&with_status(99, uri)), NOW)),
            Some(DenyReason::StatusUnknown)
        );
        // A cached token is checked again on every request.
        let valid = with_status(0, uri);
        assert_eq!(reason(decide_at(&g, "/", &bearer(&valid), NOW)), None);
        let flipped = status_list_token(uri, &[1, 1, 2, 3], 2, json!({}));
        g.install_status_list(0, uri, &flipped, NOW + 1).unwrap();
        assert_eq!(
            reason(decide_at(&g, "/", &bearer(&valid), NOW + 1)),
            Some(DenyReason::Revoked)
        );
        // Past fresh_until + max_stale_seconds: stale.
        assert_eq!(
            reason(decide_at(
                &g,
                "/",
                &bearer(&with_status(2, uri)),
                NOW + 1 + 30 + 61
            )),
            Some(DenyReason::RevocationListStale)
        );
        // Lists anywhere else are never fetched.
        assert_eq!(
            reason(decide_at(
                &g,
                "/",
                &bearer(&with_status(0, "https://evil.example/l")),
                NOW
            )),
            Some(DenyReason::StatusListNotAllowed)
        );
        // A malformed claim.
        let bad = rs256(&with(
            json!({ "status": { "status_list": { "idx": -1, "uri": uri } } }),
        ));
        assert_eq!(
            reason(decide_at(&g, "/", &bearer(&bad), NOW)),
            Some(DenyReason::StatusUnknown)
        );
        // The list token itself must be right: typ, signature, sub, exp.
        let wrong_sub = status_list_token("https://status.example/other", &[0], 1, json!({}));
        assert!(g.install_status_list(0, uri, &wrong_sub, NOW).is_err());
        let expired = status_list_token(uri, &[0], 1, json!({ "exp": NOW - 1 }));
        assert!(g.install_status_list(0, uri, &expired, NOW).is_err());
        let untyped = rs256(
            &json!({ "sub": uri, "iat": NOW, "status_list": crate::idp::status_list::encode_claim(1, &[0]).unwrap() }),
        );
        assert!(g.install_status_list(0, uri, &untyped, NOW).is_err());
        // An older copy of the list (a stale cache in between) does not replace a newer one.
        let older = status_list_token(uri, &[0, 0, 0, 0], 2, json!({ "iat": NOW - 100 }));
        assert!(g.install_status_list(0, uri, &older, NOW + 2).is_err());
        let forged = format!("{}x", &list[..list.len() - 1]);
        assert!(g.install_status_list(0, uri, &forged, NOW).is_err());
        // Without status lists configured, the claim is not read.
        assert_eq!(check(&with_status(1, "https://evil.example/l")), None);
    }

    #[test]
    fn introspect_jwt_asks_the_idp_about_valid_jwts_on_every_request() {
        let answers = Answers::default();
        let config = testkit::config_json(
            json!({ "introspection": {
                "cluster": "idp", "uri": "http://idp/i", "client_id": "proxy", "introspect_jwt": true
            }}),
            None,
        );
        let g = guard(config).with_answer_store(Box::new(answers.clone()));
        let token = rs256(&good_claims());
        assert_eq!(
            decide_at(&g, "/", &bearer(&token), NOW),
            Decision::Introspect {
                provider: 0,
                token: token.clone()
            }
        );
        answers.set(&token, true, json!({ "active": true }));
        assert_eq!(reason(decide_at(&g, "/", &bearer(&token), NOW)), None);
        answers.set(&token, false, json!({ "active": false }));
        assert_eq!(
            reason(decide_at(&g, "/", &bearer(&token), NOW)),
            Some(DenyReason::InactiveToken)
        );
        // A bad signature is refused before anyone is asked.
        let forged = format!("{}AAAA", &token[..token.len() - 4]);
        assert_eq!(
            reason(decide_at(&g, "/", &bearer(&forged), NOW)),
            Some(DenyReason::BadSignature)
        );
    }

    /// Two providers of one issuer: `web` (a cookie) and `api` (the Authorization header),
    /// each on its own routes.
    fn same_issuer_guard(extra: Value) -> Guard {
        guard(testkit::same_issuer_config(extra))
    }

    /// `jti` and `sub` are unique per issuer (RFC 7519): a logout through one provider revokes
    /// the token for every provider of its issuer, whatever the entry's source.
    #[test]
    fn revocations_apply_to_every_provider_of_the_issuer() {
        let token = rs256(&with(json!({ "jti": "j-1" })));
        let cookie = vec![("cookie".to_owned(), format!("session={token}"))];
        let g = same_issuer_guard(json!({ "revocation": {} }));
        let authorized = match g
            .decide(&Request::get("/web", &str_pairs(&cookie)), NOW)
            .decision
        {
            Decision::Allow { token: Some(t), .. } => t,
            other => panic!("{other:?}"),
        };
        assert_eq!(reason(decide_at(&g, "/api", &bearer(&token), NOW)), None);
        for directive in ["self", "jti=j-1", "sub=alice"] {
            let g = same_issuer_guard(json!({ "revocation": {
                "response_header_directives": ["self", "jti", "sub"]
            } }));
            let out = crate::revocation::learned::from_header(
                directive,
                Some(&authorized),
                &crate::revocation::learned::HeaderPolicy::all(),
                NOW + 1,
            );
            let mut learned = crate::revocation::learned::Learned::new(0);
            learned.append(&out.learned, NOW, 600);
            g.state().install_learned(learned.to_sets());
            for (path, headers) in [("/web", &cookie), ("/api", &bearer(&token))] {
                assert_eq!(
                    reason(decide_at(&g, path, headers, NOW + 1)),
                    Some(DenyReason::Revoked),
                    "{directive} on {path}"
                );
            }
        }
        let g = same_issuer_guard(json!({ "revocation": {
            "providers": { "web": { "jti": ["j-1"] } }
        } }));
        assert_eq!(
            reason(decide_at(&g, "/api", &bearer(&token), NOW)),
            Some(DenyReason::Revoked)
        );
    }

    /// A token cached through a provider without `introspect_jwt` must not skip the IdP on a
    /// route whose first provider of that issuer introspects JWTs.
    #[test]
    fn a_cache_hit_never_skips_introspection_of_another_provider() {
        let answers = Answers::default();
        let corp = testkit::config_json(json!({}), None)["providers"]["corp"].clone();
        let mut strict = corp.clone();
        strict["introspection"] = json!({
            "cluster": "idp", "uri": "http://idp/i", "client_id": "proxy", "introspect_jwt": true
        });
        // `allow_missing` routes accept any provider, in config order: `a-strict` first.
        let g = guard(json!({
            "providers": { "a-strict": strict, "b-plain": corp },
            "rules": [
                { "match": { "prefix": "/plain" }, "requires": { "provider_name": "b-plain" } },
                { "match": { "prefix": "/optional" }, "requires": { "allow_missing": {} } },
            ],
        }))
        .with_answer_store(Box::new(answers.clone()));
        let token = rs256(&good_claims());
        assert_eq!(reason(decide_at(&g, "/plain", &bearer(&token), NOW)), None);
        assert_eq!(verdict(&g, "/plain", &token, NOW).cache, CacheLookup::Hit);
        answers.set(&token, false, json!({ "active": false }));
        assert_eq!(
            reason(decide_at(&g, "/optional", &bearer(&token), NOW)),
            Some(DenyReason::InactiveToken)
        );
    }

    /// A provider that merely names the same `iss` with other keys (here a partner's HS256
    /// secret) does not share revocations: its key holder could mint a token with a victim's
    /// `jti` and revoke the victim's token with `self` on a logout.
    #[test]
    fn same_issuer_string_with_other_keys_shares_no_revocations() {
        let corp = testkit::config_json(json!({}), None)["providers"]["corp"].clone();
        let secret = [7u8; 32];
        let mut partner = corp.clone();
        partner["local_jwks"] = json!({ "keys": [
            { "kty": "oct", "kid": "partner", "k": testkit::b64(&secret) }
        ]});
        partner["algorithms"] = json!(["HS256"]);
        let config = json!({
            "providers": { "corp": corp, "partner": partner },
            "rules": [
                { "match": { "prefix": "/partner" }, "requires": { "provider_name": "partner" } },
                { "match": { "prefix": "/" }, "requires": { "provider_name": "corp" } },
            ],
            "revocation": {},
        });
        let configured = crate::config::Config::from_json(config.to_string().as_bytes()).unwrap();
        assert!(
            configured
                .warnings
                .iter()
                .any(|w| w.contains("same issuer but different keys")),
            "{:?}",
            configured.warnings
        );
        let g = guard(config);
        let victim = rs256(&with(json!({ "jti": "victim-jti" })));
        assert_eq!(reason(decide_at(&g, "/api", &bearer(&victim), NOW)), None);
        let forged = mint(
            Signer::Hs256(&secret),
            Some("partner"),
            &with(json!({ "jti": "victim-jti" })),
        );
        let authorized = match decide_at(&g, "/partner/logout", &bearer(&forged), NOW) {
            Decision::Allow { token: Some(t), .. } => t,
            other => panic!("{other:?}"),
        };
        g.learn_self(&authorized, NOW);
        assert_eq!(reason(decide_at(&g, "/api", &bearer(&victim), NOW)), None);
        assert_eq!(
            reason(decide_at(&g, "/partner/x", &bearer(&forged), NOW)),
            Some(DenyReason::Revoked)
        );
    }

    #[test]
    fn the_trace_is_the_decision_and_stops_at_its_reason() {
        let g = all_algorithms_guard();
        let mut forged = rs256(&good_claims());
        forged.push('A');
        let expired = rs256(&with(json!({ "exp": NOW - 3_600 })));
        let mut tokens: Vec<String> = corpus().into_iter().map(|(_, t)| t).collect();
        tokens.extend([forged, expired, "not-a-jwt".to_owned()]);
        for token in tokens {
            let headers = bearer(&token);
            let pairs = str_pairs(&headers);
            let request = Request::get("/", &pairs);
            let plain = g.decide(&request, NOW);
            let (traced, steps) = g.decide_traced(&request, NOW, true);
            assert_eq!(
                without_identity(traced.decision.clone()),
                without_identity(plain.decision)
            );
            let last = steps.last().expect("a token was looked at");
            match &traced.decision {
                Decision::Deny(denial) => {
                    assert_eq!(last.mark, Mark::Fail(denial.reason), "{steps:?}");
                    let failed = steps.iter().filter(|s| matches!(s.mark, Mark::Fail(_)));
                    assert_eq!(failed.count(), 1, "one provider, one failure: {steps:?}");
                }
                Decision::Allow { .. } => {
                    assert!(steps.iter().all(|s| !matches!(s.mark, Mark::Fail(_))));
                    assert_eq!(last.name, "scopes");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_cache_hit_is_checked_in_the_order_a_fresh_token_is() {
        // Revoked by its status list AND short of the route's scope: the status list speaks
        // first, whether the token was just verified or comes from the cache.
        let uri = "https://status.example/lists/1";
        let rules = json!([{ "match": { "prefix": "/" }, "requires": { "provider_name": "corp" },
                             "scopes": ["orders:admin"] }]);
        let mut config = testkit::config_json(json!({}), Some(rules));
        config["revocation"] =
            json!({ "status_list": { "clusters": { "status.example": "status" } } });
        let g = guard(config);
        let list = status_list_token(uri, &[1], 1, json!({}));
        g.install_status_list(0, uri, &list, NOW).unwrap();
        let token = rs256(&with(json!({
            "scope": "orders:read", "status": { "status_list": { "idx": 0, "uri": uri } }
        })));
        let fresh = verdict(&g, "/", &token, NOW);
        assert_eq!(fresh.cache, CacheLookup::Miss);
        let hit = verdict(&g, "/", &token, NOW);
        assert_eq!(hit.cache, CacheLookup::Hit);
        assert_eq!(reason(fresh.decision), Some(DenyReason::Revoked));
        assert_eq!(reason(hit.decision), Some(DenyReason::Revoked));
    }

    /// The provider's `algorithms` are checked before its keys are: a token in an algorithm
    /// the provider never accepts is refused at once, never held for a JWKS fetch, and never
    /// spends the unknown-`kid` refetch (a flood of such tokens cannot make the proxy fetch).
    #[test]
    fn a_refused_algorithm_never_waits_for_keys_nor_asks_for_a_refetch() {
        let g = guard(json!({
            "providers": { "corp": {
                "issuer": testkit::ISSUER,
                "algorithms": ["ES256"],
                "remote_jwks": { "cluster": "idp", "uri": "https://idp.example.com/jwks",
                                 "refetch_min_interval_seconds": 30 }
            }}
        }));
        let token = rs256(&good_claims());
        assert_eq!(
            reason(decide_at(&g, "/", &bearer(&token), NOW)),
            Some(DenyReason::AlgorithmNotAllowed)
        );
        let k = keys();
        g.state()
            .install_keys(0, key_set("rsa-1", &k.rsa), NOW - 100);
        let unknown_kid = mint(Signer::Rs256(&k.rsa), Some("rsa-2"), &good_claims());
        assert_eq!(
            reason(decide_at(&g, "/", &bearer(&unknown_kid), NOW)),
            Some(DenyReason::AlgorithmNotAllowed)
        );
        // The refetch was not spent: an ES256 token with an unknown kid still gets it.
        let es256 = mint(Signer::Es256(&k.ec), Some("ec-2"), &good_claims());
        assert_eq!(
            decide_at(&g, "/", &bearer(&es256), NOW),
            Decision::WaitForKeys { provider: 0 }
        );
    }

    /// A token's times are read before its keys and signature (as jwt_authn does): an expired
    /// token is refused as expired whatever its signature, without a signature check unless
    /// its denial is reported, and never waits for keys nor spends the unknown-`kid` refetch.
    /// A reported denial names the identity only when the signature verifies.
    #[test]
    fn an_expired_token_is_refused_on_its_times_before_any_key_or_signature() {
        let expired = rs256(&with(json!({ "sub": "bob", "exp": NOW - 3_600 })));
        // A signature of the right length that does not verify: it reaches the crypto.
        let signed = rs256(&with(json!({ "sub": "mallory", "exp": NOW - 3_600 })));
        let (signed_data, signature) = signed.rsplit_once('.').unwrap();
        let flipped = if signature.starts_with('A') { "B" } else { "A" };
        let forged = format!("{signed_data}.{flipped}{}", &signature[1..]);
        let config = |decisions: &str| {
            let mut c = testkit::config_json(json!({}), None);
            c["jwt_cache_size"] = json!(0);
            c["log"] = json!({ "decisions": decisions });
            Config::from_json(c.to_string().as_bytes()).unwrap().config
        };
        // Unreported: no signature is checked, and a forged token reads as what it says.
        let checks = std::rc::Rc::new(std::cell::Cell::new(0));
        let quiet =
            Guard::new(config("none")).with_host_crypto(Box::new(CountingHost(checks.clone())));
        for token in [&expired, &forged] {
            let Decision::Deny(denial) = decide_at(&quiet, "/", &bearer(token), NOW) else {
                panic!("expired");
            };
            assert_eq!(denial.reason, DenyReason::Expired);
            assert!(denial.identity.is_none());
        }
        assert_eq!(checks.get(), 0, "signatures checked for unreported denials");
        // Reported: the same answers; the identity only of the authentic token.
        let checks = std::rc::Rc::new(std::cell::Cell::new(0));
        let logged =
            Guard::new(config("denied")).with_host_crypto(Box::new(CountingHost(checks.clone())));
        let Decision::Deny(authentic) = decide_at(&logged, "/", &bearer(&expired), NOW) else {
            panic!("expired");
        };
        let Decision::Deny(mallory) = decide_at(&logged, "/", &bearer(&forged), NOW) else {
            panic!("forged and expired");
        };
        assert_eq!(
            (authentic.reason, mallory.reason),
            (DenyReason::Expired, DenyReason::Expired)
        );
        assert_eq!(authentic.identity.unwrap().sub.as_deref(), Some("bob"));
        assert!(mallory.identity.is_none());
        assert!(mallory.token_fingerprint.is_some());
        assert_eq!(
            (authentic.status, &authentic.body),
            (mallory.status, &mallory.body)
        );
        assert_eq!(checks.get(), 2);
        // Two providers of the issuer, the first without the token's key: the first refusal
        // is the answer, and its line names the token, which the second's keys verify.
        let k = keys();
        let mut old_keys = testkit::config_json(json!({}), None)["providers"]["corp"].clone();
        old_keys["local_jwks"] = json!({ "keys": [testkit::jwks()["keys"][2].clone()] });
        let current = testkit::config_json(json!({}), None)["providers"]["corp"].clone();
        let two = guard(json!({ "providers": { "a_old": old_keys, "b_current": current } }));
        let Decision::Deny(denial) = decide_at(&two, "/", &bearer(&expired), NOW) else {
            panic!("expired");
        };
        assert_eq!(denial.reason, DenyReason::Expired);
        assert_eq!(denial.provider.as_deref(), Some("a_old"));
        assert_eq!(denial.identity.unwrap().sub.as_deref(), Some("bob"));
        let Decision::Deny(denial) = decide_at(&two, "/", &bearer(&forged), NOW) else {
            panic!("forged and expired");
        };
        assert!(denial.identity.is_none());
        // Remote keys: not fetched yet, an expired token is refused at once, not held...
        let g = guard(json!({
            "providers": { "corp": {
                "issuer": testkit::ISSUER,
                "remote_jwks": { "cluster": "idp", "uri": "https://idp.example.com/jwks",
                                 "refetch_min_interval_seconds": 30 }
            }}
        }));
        assert_eq!(
            reason(decide_at(&g, "/", &bearer(&expired), NOW)),
            Some(DenyReason::Expired)
        );
        // ...and, fetched, one naming a kid they lack does not spend the refetch.
        g.state()
            .install_keys(0, key_set("rsa-1", &k.rsa), NOW - 100);
        let unknown_kid = mint(
            Signer::Rs256(&k.rsa),
            Some("rsa-2"),
            &with(json!({ "exp": NOW - 3_600 })),
        );
        assert_eq!(
            reason(decide_at(&g, "/", &bearer(&unknown_kid), NOW)),
            Some(DenyReason::Expired)
        );
        let fresh = mint(Signer::Rs256(&k.rsa), Some("rsa-2"), &good_claims());
        assert_eq!(
            decide_at(&g, "/", &bearer(&fresh), NOW),
            Decision::WaitForKeys { provider: 0 }
        );
    }

    /// `introspect_jwt`: when the IdP's answer does not come, the 503 still names the verified
    /// token in the decision log (its claims are the issuer's).
    #[test]
    fn an_unanswered_introspection_of_a_verified_token_keeps_its_identity() {
        let answers = Answers::default();
        let mut config = testkit::config_json(
            json!({ "introspection": {
                "cluster": "idp", "uri": "http://idp/i", "client_id": "proxy", "introspect_jwt": true
            }}),
            None,
        );
        config["log"] = json!({ "decisions": "all" });
        let g = guard(config).with_answer_store(Box::new(answers.clone()));
        let token = rs256(&with(json!({ "sub": "alice" })));
        let Decision::Deny(denial) = verdict_after_wait(&g, "/", &token, NOW).decision else {
            panic!("no answer: 503");
        };
        assert_eq!(denial.reason, DenyReason::Unavailable);
        assert_eq!(denial.identity.unwrap().sub.as_deref(), Some("alice"));
    }

    /// A cached token refused by the provider that verified it (here: past its exp for that
    /// provider's clock skew) goes on to the next provider of its issuer, as a fresh check
    /// would; it is not refused on the cache's word.
    #[test]
    fn a_cache_hit_refused_by_its_provider_is_tried_with_the_next_of_the_issuer() {
        let provider = |skew: u64| {
            let mut p = testkit::config_json(json!({}), None)["providers"]["corp"].clone();
            p["clock_skew_seconds"] = json!(skew);
            p
        };
        let g =
            guard(json!({ "providers": { "a_strict": provider(0), "b_lenient": provider(300) } }));
        let token = rs256(&with(json!({ "iat": NOW, "exp": NOW + 10 })));
        let first = verdict(&g, "/", &token, NOW);
        assert!(
            matches!(&first.decision, Decision::Allow { provider: Some(p), .. } if p == "a_strict"),
            "{first:?}"
        );
        let later = verdict(&g, "/", &token, NOW + 100);
        assert!(
            matches!(&later.decision, Decision::Allow { provider: Some(p), .. } if p == "b_lenient"),
            "{later:?}"
        );
        // Past every provider's skew: refused, with the first provider's reason.
        assert_eq!(
            reason(verdict(&g, "/", &token, NOW + 400).decision),
            Some(DenyReason::Expired)
        );
    }
}
