//! One token through the checks, in one order whichever way it is vouched for:
//!
//! ```text
//! credential -> cache hit | introspection (opaque) | times, signature (JWS) -> claims
//!            -> revocation -> status list -> scopes -> grant
//! ```
//!
//! A JWS's times are read before its signature (an expired token costs no signature check);
//! every other claim only once something vouches for it.
//!
//! Each way of vouching ends in a `Vouched` token whose claims are `Trusted` (a verified
//! signature, a cache entry made from one, or the IdP's active answer); the tail after it is
//! written once (`admit`). A check that needs something fetched first stops with
//! `Stop::Wait`, never inside a denial; whether this look may still wait is `Look::may_wait`.

use std::borrow::Cow;
use std::cell::{Cell, OnceCell};
use std::rc::Rc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::config::Provider;
use crate::decide::cache::{CachedToken, StatusClaim};
use crate::decide::decision::{
    Authorized, Denial, DenyReason, RevocationSource, TokenIdentity, WaitFor,
};
use crate::decide::guard::{CacheLookup, Guard, Request};
use crate::decide::header_map;
use crate::decide::trace::{Detail, Mark, Tracer};
use crate::decide::upstream::UpstreamPlan;
use crate::idp::introspection::answers_for_another_kind_of_token;
use crate::idp::status_list::{reference_of, Status};
use crate::observe::anomaly::AnomalyAction;
use crate::observe::fingerprint::fingerprint;
use crate::revocation::config::OnStale;
use crate::revocation::list::is_stale;
use crate::revocation::set::{Probe, TokenHashes};
use crate::token::claims::{
    check_audience, check_scopes, check_subject, check_times, StringClaims, TimeClaims, TimePolicy,
};
use crate::token::extract::{
    distinct, find_credential, query_params, read_as, Credential, TokenSource,
};
use crate::token::id::{token_id, whole_token_sha256, Digests, TokenDigest};
use crate::token::verify::{self, ParsedToken, TrustedClaims, Verified};

/// The query parameter RFC 6750 §2.3 defines for bearer tokens.
const QUERY_TOKEN: &str = "access_token";

/// One look at a request: its time, and whether it may still ask to wait (after a wait, the
/// request is decided with what there is).
#[derive(Debug, Clone, Copy)]
pub struct Look {
    pub now: i64,
    pub may_wait: bool,
    /// A denial goes to the decision log or filter state: only then is the token hashed for
    /// its fingerprint and identity.
    pub reports: bool,
}

/// Why a requirement is not met: a denial, or something to fetch (or ask) first.
#[derive(Debug)]
pub enum Stop {
    Deny(Denial),
    Wait(WaitFor),
}

impl Stop {
    pub fn is_missing_token(&self) -> bool {
        matches!(self, Stop::Deny(d) if d.reason == DenyReason::MissingToken)
    }
}

/// A requirement that was met, and what goes upstream.
pub struct Granted {
    pub provider: Option<String>,
    pub upstream: UpstreamPlan,
    pub token: Option<Box<Authorized>>,
    pub identity: Option<Box<TokenIdentity>>,
    /// Let through although a revocation or status list is stale (`on_stale: allow`).
    pub stale_allowed: bool,
}

/// A check's failure; for a revocation, where it came from.
#[derive(Debug, Clone, Copy)]
struct Failure {
    reason: DenyReason,
    revoked_by: Option<RevocationSource>,
}

impl From<DenyReason> for Failure {
    fn from(reason: DenyReason) -> Self {
        Failure {
            reason,
            revoked_by: (reason == DenyReason::InactiveToken)
                .then_some(RevocationSource::Introspection),
        }
    }
}

/// What vouches for a token's claims; never the token's own word.
enum Trusted<'p, 't> {
    /// Verified before, by the same provider (the cache).
    Cached(Rc<CachedToken>),
    Signed(Verified<'p, 't>),
    /// The IdP's active introspection answer.
    Introspected(TrustedClaims),
    /// A payload Envoy's jwt_authn verified earlier in the chain.
    JwtAuthn(TrustedClaims),
}

impl Trusted<'_, '_> {
    fn claims(&self) -> &StringClaims {
        match self {
            Trusted::Cached(entry) => entry.trusted.claims(),
            Trusted::Signed(verified) => verified.claims(),
            Trusted::Introspected(trusted) | Trusted::JwtAuthn(trusted) => trusted.claims(),
        }
    }

    fn times(&self) -> TimeClaims {
        match self {
            Trusted::Cached(entry) => entry.trusted.times(),
            Trusted::Signed(verified) => verified.times(),
            Trusted::Introspected(trusted) | Trusted::JwtAuthn(trusted) => trusted.times(),
        }
    }
}

/// A token one provider vouched for, ready for the checks every path shares.
struct Vouched<'c, 'p, 't> {
    index: usize,
    provider: &'c Provider,
    trusted: Trusted<'p, 't>,
    /// Payload and claim headers for upstream.
    headers: Vec<(String, String)>,
    status: StatusClaim,
    /// The IdP was asked (RFC 7009 revocations then go to it too).
    introspected: bool,
}

/// A payload jwt_authn verified, the companion provider it is for, and its claims.
struct ByJwtAuthn<'g> {
    index: usize,
    provider: &'g Provider,
    payload: &'g str,
    claims: Result<TrustedClaims, DenyReason>,
}

/// Why one provider did not vouch for a token.
enum NotVouched {
    /// Refused by this provider; another of the same issuer may still accept it.
    Refused(Denial),
    /// Refused by this provider on the token's times, before its signature was checked: the
    /// denial is made once every provider of the issuer has had its say (`deny_untimely`).
    Untimely(DenyReason),
    /// Decided: wait, or answer now.
    Final(Stop),
}

/// The first refusal among the providers of an issuer: the answer if none accepts the token.
enum FirstRefusal<'g> {
    Denied(Denial),
    Untimely(DenyReason, &'g Provider),
}

/// A denial by one provider: another of the same issuer may still vouch for the token.
fn refusal(stop: Stop) -> NotVouched {
    match stop {
        Stop::Deny(denial) => NotVouched::Refused(denial),
        stop => NotVouched::Final(stop),
    }
}

impl From<Stop> for NotVouched {
    fn from(stop: Stop) -> Self {
        NotVouched::Final(stop)
    }
}

/// The credential as presented, and its hashes, each computed once when first needed.
struct Presented<'r, 's> {
    token: Cow<'r, str>,
    source: &'s TokenSource,
    /// The token itself is in the request. Not so for a jwt_authn companion's payload whose
    /// token jwt_authn did not forward: `token` is then empty, and the hashes stand for the
    /// payload (`payload_only`).
    sent: bool,
    sha256: OnceCell<TokenDigest>,
    id: OnceCell<TokenDigest>,
    /// The cache entry this token hit or was cached as: hashes computed later go there too.
    entry: OnceCell<Rc<CachedToken>>,
}

impl<'r, 's> Presented<'r, 's> {
    fn sent(token: Cow<'r, str>, source: &'s TokenSource) -> Self {
        Presented {
            token,
            source,
            sent: true,
            sha256: OnceCell::new(),
            id: OnceCell::new(),
            entry: OnceCell::new(),
        }
    }

    /// A payload jwt_authn verified, without its token: known by a digest of the payload, so
    /// the cache of misuse detection and learned `self` revocations still tell tokens apart.
    fn payload_only(payload_json: &str, source: &'s TokenSource) -> Self {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        hash.update(b"bearer-guard jwt_authn payload\0");
        hash.update(payload_json.as_bytes());
        let digest: TokenDigest = hash.finalize().into();
        Presented {
            token: Cow::Borrowed(""),
            source,
            sent: false,
            sha256: OnceCell::from(digest),
            id: OnceCell::from(digest),
            entry: OnceCell::new(),
        }
    }
}

impl Presented<'_, '_> {
    /// SHA-256 of the token as sent: the log fingerprint, a `token_sha256` revocation.
    fn sha256(&self) -> TokenDigest {
        self.hash_once(&self.sha256, whole_token_sha256)
    }

    /// The token identity revocations and misuse detection know it by (a signature twin has
    /// the same one); for an opaque token, its whole-token hash.
    fn id(&self) -> TokenDigest {
        self.hash_once(&self.id, token_id)
    }

    /// `cell`'s hash, computed on first need and handed to the cache entry with the other.
    fn hash_once(
        &self,
        cell: &OnceCell<TokenDigest>,
        hash: fn(&str) -> TokenDigest,
    ) -> TokenDigest {
        if let Some(known) = cell.get() {
            return *known;
        }
        let digest = hash(&self.token);
        let _ = cell.set(digest);
        self.keep();
        digest
    }

    /// Both hashes (revocation and the identity need both): in one pass over the token when
    /// neither is known yet.
    fn digests(&self) -> Digests {
        if self.sha256.get().is_none() && self.id.get().is_none() {
            let both = Digests::of(&self.token);
            let _ = self.sha256.set(both.sha256);
            let _ = self.id.set(both.id);
            self.keep();
        }
        Digests {
            sha256: self.sha256(),
            id: self.id(),
        }
    }

    /// Once both hashes are known, hands them to this token's cache entry.
    fn keep(&self) {
        if let (Some(entry), Some(&sha256), Some(&id)) =
            (self.entry.get(), self.sha256.get(), self.id.get())
        {
            entry.digests.set(Some(Digests { sha256, id }));
        }
    }

    /// An opaque token is known by its whole-token hash, whatever its shape.
    fn known_as_opaque(&self) {
        if self.id.get().is_none() {
            let digest = self.sha256();
            let _ = self.id.set(digest);
            self.keep();
        }
    }

    /// Links a cache entry of this very token: its known hashes serve this request, and
    /// hashes this request computes serve later hits.
    fn link(&self, entry: &Rc<CachedToken>) {
        let _ = self.entry.set(entry.clone());
        if let Some(known) = entry.digests.get() {
            let _ = self.sha256.set(known.sha256);
            let _ = self.id.set(known.id);
        }
        self.keep();
    }
}

/// One token check: which providers the route accepts here, and for what.
pub struct TokenCheck<'g, 'r> {
    pub guard: &'g Guard,
    pub request: &'g Request<'r>,
    pub candidates: &'g [usize],
    /// Where the candidates that verify tokens themselves read them, each place once.
    pub sources: &'g [TokenSource],
    pub audiences: Option<&'g [String]>,
    pub scopes: &'g [String],
    pub look: Look,
    pub cache: &'g Cell<CacheLookup>,
    pub tracer: Tracer<'g>,
}

impl<'g> TokenCheck<'g, '_> {
    /// The whole pipeline for one token.
    pub fn run(&self) -> Result<Granted, Stop> {
        if let Some(verified) = self.verified_by_jwt_authn() {
            return self.vouch_companion_and_admit(verified);
        }
        self.refuse_what_jwt_authn_did_not_verify()?;
        let presented = self.presented()?;
        if let Some(entry) = self.cached(&presented) {
            self.cache.set(CacheLookup::Hit);
            let others = self.other_providers_of_issuer(&entry, &presented);
            match self.vouch_cached(entry, &presented) {
                Ok(vouched) => return self.admit(vouched, &presented),
                // The provider that verified it refuses it now (its clock skew, say): a fresh
                // check would go on to the next provider of the issuer, so this one does too.
                Err(Stop::Deny(_)) if others => self.cache.set(CacheLookup::Miss),
                Err(stop) => return Err(stop),
            }
        } else if self.guard.config.jwt_cache_size > 0 {
            self.cache.set(CacheLookup::Miss);
        }
        // The providers first: without introspection, no pass over the token to tell.
        let opaque = self
            .introspecting(&presented)
            .filter(|_| !verify::looks_like_jws(&presented.token));
        if let Some((index, provider)) = opaque {
            let vouched = self.vouch_opaque(index, provider, &presented)?;
            return self.admit(vouched, &presented);
        }
        let parsed = self
            .tracer
            .check("token", verify::parse(&presented.token), || {
                "a JWS with a supported algorithm".to_owned()
            })
            .map_err(|reason| self.deny(reason, None, None, Some(&presented)))?;
        self.vouch_signed_and_admit(&parsed, &presented)
    }

    // ---- credential -------------------------------------------------------------------------

    /// The one credential of the request, from the sources of the route's providers.
    fn presented(&self) -> Result<Presented<'g, 'g>, Stop> {
        let found = self
            .refuse_unread_query_token(self.sources)
            .and_then(|()| self.one_credential(self.sources));
        // No token where these providers read one is not a failure of a `requires_any` option.
        let mark = match &found {
            Err(DenyReason::MissingToken) => Mark::NotChecked,
            other => Mark::of(other),
        };
        self.tracer.step("credential", mark, || {
            Detail::Text(match &found {
                Ok((_, source)) => format!("one, in {}", described(source)),
                Err(_) => "none usable".to_owned(),
            })
        });
        let (token, source) = found.map_err(|reason| self.deny(reason, None, None, None))?;
        Ok(Presented::sent(token, source))
    }

    /// The one credential in these sources; `MissingToken` when there is none.
    fn one_credential(
        &self,
        sources: &'g [TokenSource],
    ) -> Result<(Cow<'g, str>, &'g TokenSource), DenyReason> {
        let request = self.request;
        if header_map::credential_unreadable(sources, request.not_utf8) {
            return Err(DenyReason::MalformedToken);
        }
        match find_credential(request.headers, request.path, sources) {
            Credential::None => Err(DenyReason::MissingToken),
            Credential::Multiple => Err(DenyReason::MultipleTokens),
            Credential::Unreadable => Err(DenyReason::MalformedCredential),
            Credential::One { token, source } if self.transport_acceptable(source) => {
                Ok((token, source))
            }
            Credential::One { .. } => Err(DenyReason::InsecureTransport),
        }
    }

    /// RFC 6750 §2.3's parameter, where no provider reads it: refused, not ignored (ignored,
    /// it would go upstream in the URL and into every access log on the way). Also in a
    /// spelling an upstream reads as `access_token` (`Access_Token`, `access.token`).
    fn refuse_unread_query_token(&self, sources: &[TokenSource]) -> Result<(), DenyReason> {
        let read = sources
            .iter()
            .any(|s| matches!(s, TokenSource::Param { name } if &**name == QUERY_TOKEN));
        let query_token = |name: &str| name == QUERY_TOKEN || read_as(name, QUERY_TOKEN);
        if !read && query_params(self.request.path).any(|(name, _)| query_token(&name)) {
            return Err(DenyReason::TokenInQuery);
        }
        Ok(())
    }

    /// `require_tls`: a provider that may read this credential wants it over TLS. Behind
    /// trusted proxies (`xff_num_trusted_hops`), `x-forwarded-proto: https` says the client's
    /// leg was TLS.
    fn transport_acceptable(&self, source: &TokenSource) -> bool {
        let required = self
            .providers()
            .any(|(_, p)| p.require_tls && p.sources.contains(source));
        if !required || self.request.tls {
            return true;
        }
        self.guard.config.xff_num_trusted_hops > 0
            && self
                .request
                .headers
                .iter()
                .any(|(n, v)| *n == "x-forwarded-proto" && v.trim().eq_ignore_ascii_case("https"))
    }

    /// The route's providers that verify credentials themselves, in the route's order
    /// (a jwt_authn companion's tokens are jwt_authn's payloads, `verified_by_jwt_authn`).
    fn providers(&self) -> impl Iterator<Item = (usize, &'g Provider)> + '_ {
        self.route_providers()
            .filter(|(_, p)| p.jwt_authn.is_none())
    }

    /// The route's providers, in the route's order.
    fn route_providers(&self) -> impl Iterator<Item = (usize, &'g Provider)> + '_ {
        let providers = &self.guard.config.providers;
        self.candidates
            .iter()
            .filter_map(move |&i| providers.get(i).map(|p| (i, p)))
    }

    /// The route's providers that read tokens where this one was found.
    fn eligible<'a>(
        &'a self,
        presented: &'a Presented<'_, '_>,
    ) -> impl Iterator<Item = (usize, &'g Provider)> + 'a {
        self.providers()
            .filter(move |(_, p)| p.sources.contains(presented.source))
    }

    /// The providers that may vouch for this JWS: those reading its credential that take
    /// its (stated) issuer, in the route's order.
    fn issuers<'a>(
        &'a self,
        parsed: &'a ParsedToken<'_>,
        presented: &'a Presented<'_, '_>,
    ) -> impl Iterator<Item = (usize, &'g Provider)> + 'a {
        let iss = parsed.unverified_claims().iss.as_deref();
        self.eligible(presented).filter(move |(_, p)| p.issues(iss))
    }

    // ---- vouching: jwt_authn, earlier in the chain ------------------------------------------

    /// The route's companion provider of the payload jwt_authn wrote: the first whose key has a
    /// payload and whose issuer is the payload's `iss` (Istio writes every issuer's payload
    /// under one key, `payload`), else the first with a payload (to be refused for its issuer).
    /// No payload: jwt_authn refused the token, or there was none; no token of that provider.
    /// Each payload's claims are read here, once.
    fn verified_by_jwt_authn(&self) -> Option<ByJwtAuthn<'g>> {
        let payloads = self.request.jwt_authn?;
        let mut with_payload = self.route_providers().filter_map(|(index, provider)| {
            let key = &provider.jwt_authn.as_ref()?.payload_in_metadata;
            let payload = payloads.get(key)?;
            Some(ByJwtAuthn {
                index,
                provider,
                payload,
                claims: TrustedClaims::from_jwt_authn(payload),
            })
        });
        let issues = |candidate: &ByJwtAuthn<'_>| {
            let iss = candidate
                .claims
                .as_ref()
                .ok()
                .and_then(|c| c.claims().iss.as_deref());
            candidate.provider.issues(iss)
        };
        let first = with_payload.next()?;
        if issues(&first) {
            return Some(first);
        }
        Some(with_payload.find(|c| issues(c)).unwrap_or(first))
    }

    /// No payload, yet a credential where only a companion reads one: jwt_authn saw it and
    /// did not verify it (with `allow_missing_or_failed` such a request goes on; Istio's
    /// `allow_missing` answers 401 itself). Refused, as an invalid token is on any route,
    /// `allow_missing` ones included, rather than taken for no token and sent upstream.
    fn refuse_what_jwt_authn_did_not_verify(&self) -> Result<(), Stop> {
        let read_elsewhere =
            |source: &TokenSource| self.providers().any(|(_, p)| p.sources.contains(source));
        let sources = distinct(
            self.route_providers()
                .filter(|(_, p)| p.jwt_authn.is_some())
                .flat_map(|(_, p)| p.sources.iter())
                .filter(|source| !read_elsewhere(source)),
        );
        if sources.is_empty() {
            return Ok(());
        }
        match find_credential(self.request.headers, self.request.path, &sources) {
            Credential::None => Ok(()),
            found => {
                self.tracer.step(
                    "jwt_authn",
                    Mark::Fail(DenyReason::NotTheVerifiedToken),
                    || {
                        Detail::Text(
                            "a credential jwt_authn did not verify (no payload)".to_owned(),
                        )
                    },
                );
                let presented = match found {
                    Credential::One { token, source } => Some(Presented::sent(token, source)),
                    _ => None,
                };
                Err(self.deny(
                    DenyReason::NotTheVerifiedToken,
                    None,
                    None,
                    presented.as_ref(),
                ))
            }
        }
    }

    /// jwt_authn checked the signature (and its own idea of the time); every other check runs
    /// here as for a token this filter verified, on the claims jwt_authn wrote.
    fn vouch_companion_and_admit(&self, verified: ByJwtAuthn<'g>) -> Result<Granted, Stop> {
        let ByJwtAuthn {
            index,
            provider,
            payload,
            claims,
        } = verified;
        let presented = self.original_token(provider, payload)?;
        let deny = |reason| self.deny(reason, Some(provider), None, Some(&presented));
        let trusted = self
            .tracer
            .check("jwt_authn", claims, || {
                format!(
                    "the payload jwt_authn verified, for provider {}",
                    provider.name
                )
            })
            .map_err(deny)?;
        let trusted = Trusted::JwtAuthn(trusted);
        let issuer = if provider.issues(trusted.claims().iss.as_deref()) {
            Ok(())
        } else {
            Err(DenyReason::IssuerNotAccepted)
        };
        self.tracer
            .check("iss", issuer, || match &provider.issuer {
                Some(issuer) => format!("provider {} takes {issuer:?}", provider.name),
                None => format!("provider {} takes tokens without iss", provider.name),
            })
            .and_then(|()| self.check_claims(provider, &trusted, provider.time))
            .map_err(|reason| self.deny_after_trust(reason, provider, &trusted, &presented))?;
        let introspected = provider.introspection.is_some();
        if introspected {
            if !presented.sent {
                // RFC 7662 asks about the token itself, which jwt_authn did not forward.
                self.tracer.step(
                    "introspection",
                    Mark::Fail(DenyReason::MissingToken),
                    || Detail::Text("needs the token: set jwt_authn's forward: true".to_owned()),
                );
                return Err(self.deny_after_trust(
                    DenyReason::MissingToken,
                    provider,
                    &trusted,
                    &presented,
                ));
            }
            self.check_signed_answer(index, provider, &trusted, &presented)
                .map_err(|not| match not {
                    NotVouched::Refused(denial) => Stop::Deny(denial),
                    NotVouched::Untimely(reason) => {
                        self.deny_after_trust(reason, provider, &trusted, &presented)
                    }
                    NotVouched::Final(stop) => stop,
                })?;
        }
        let vouched = Vouched {
            index,
            provider,
            headers: provider
                .forward
                .upstream_headers(&URL_SAFE_NO_PAD.encode(payload), payload.as_bytes()),
            status: self.status_claim_of(payload.as_bytes()),
            trusted,
            introspected,
        };
        self.admit(vouched, &presented)
    }

    /// The token jwt_authn verified, when it is still in the request (jwt_authn `forward`,
    /// Istio `forwardOriginalToken`): hash-based revocations then apply to it. Only a token
    /// whose claims are the payload's is taken for it: a second token beside it must not lend
    /// its identity to the one jwt_authn checked.
    fn original_token(
        &self,
        provider: &'g Provider,
        payload: &str,
    ) -> Result<Presented<'g, 'g>, Stop> {
        let sources = &provider.sources[..];
        // jwt_authn also reads `?access_token=` by default, and cannot take it out of the URL:
        // a token there that the companion does not read would be judged as a payload alone
        // (hash revocations skipped) and go upstream in the URL. Refused as on the other path.
        let found = self
            .refuse_unread_query_token(sources)
            .and_then(|()| self.one_credential(sources));
        let (token, source) = match found {
            Ok(found) => found,
            Err(DenyReason::MissingToken) => {
                self.tracer.step("credential", Mark::NotChecked, || {
                    Detail::Text(
                        "not forwarded by jwt_authn: hash-based revocations cannot apply"
                            .to_owned(),
                    )
                });
                // Sources are never empty (the default is `Authorization: Bearer`).
                let Some(source) = sources.first() else {
                    return Err(self.deny(DenyReason::MissingToken, Some(provider), None, None));
                };
                return Ok(Presented::payload_only(payload, source));
            }
            Err(reason) => return Err(self.deny(reason, Some(provider), None, None)),
        };
        let presented = Presented::sent(token, source);
        // Every claim, not only those checked here: a token with the payload's `sub` and `jti`
        // but claims of its own (`roles`) is not the one jwt_authn verified.
        let same = verify::parse(&presented.token).is_ok_and(|parsed| {
            crate::token::jwt_authn::same_payload(parsed.unverified_payload_json(), payload)
        });
        self.tracer
            .check(
                "credential",
                if same {
                    Ok(())
                } else {
                    Err(DenyReason::NotTheVerifiedToken)
                },
                || format!("in {}: the token jwt_authn verified", described(source)),
            )
            .map_err(|reason| self.deny(reason, Some(provider), None, Some(&presented)))?;
        Ok(presented)
    }

    // ---- vouching: the cache ----------------------------------------------------------------

    /// A verified token of this request's provider, if cached. Only the provider a fresh
    /// verification would pick first (the first eligible one of the token's issuer) may serve
    /// a hit: another provider of that issuer may be stricter (`introspect_jwt`, other keys),
    /// and a hit must never skip what it would do.
    fn cached(&self, presented: &Presented<'_, '_>) -> Option<Rc<CachedToken>> {
        if self.guard.config.jwt_cache_size == 0 {
            return None;
        }
        let entry = self.guard.state.cache.borrow().get(&presented.token)?;
        let iss = entry.trusted.claims().iss.as_deref();
        let first = self
            .eligible(presented)
            .find(|(_, p)| p.issues(iss))
            .map(|(i, _)| i);
        if first != Some(entry.provider) {
            return None;
        }
        presented.link(&entry);
        Some(entry)
    }

    /// Whether another provider that may read this credential has the cached token's issuer.
    fn other_providers_of_issuer(
        &self,
        entry: &CachedToken,
        presented: &Presented<'_, '_>,
    ) -> bool {
        let iss = entry.trusted.claims().iss.as_deref();
        self.eligible(presented)
            .any(|(i, p)| i != entry.provider && p.issues(iss))
    }

    /// A hit skips the signature; every check that depends on the time and the route runs.
    fn vouch_cached(
        &self,
        entry: Rc<CachedToken>,
        presented: &Presented<'_, '_>,
    ) -> Result<Vouched<'g, 'static, 'static>, Stop> {
        let index = entry.provider;
        let Some(provider) = self.guard.config.providers.get(index) else {
            return Err(self.deny(DenyReason::IssuerNotAccepted, None, None, Some(presented)));
        };
        self.tracer.step("cache", Mark::Pass, || {
            Detail::Text(format!(
                "verified before by provider {} (signature not checked again)",
                provider.name
            ))
        });
        let trusted = Trusted::Cached(entry.clone());
        if let Err(reason) = self.check_claims(provider, &trusted, provider.time) {
            if reason == DenyReason::Expired {
                self.guard.state.cache.borrow_mut().remove(&presented.token);
            }
            return Err(self.deny_after_trust(reason, provider, &trusted, presented));
        }
        Ok(Vouched {
            index,
            provider,
            headers: entry.upstream_headers.clone(),
            status: entry.status.clone(),
            trusted,
            introspected: false,
        })
    }

    // ---- vouching: introspection of an opaque token ------------------------------------------

    /// The first provider that may read this credential and introspects tokens.
    fn introspecting(&self, presented: &Presented<'_, '_>) -> Option<(usize, &'g Provider)> {
        self.eligible(presented)
            .find(|(_, p)| p.introspection.is_some())
    }

    /// An opaque token: the provider's introspection answer (cached per process) decides,
    /// with the same checks a JWT gets.
    fn vouch_opaque(
        &self,
        index: usize,
        provider: &'g Provider,
        presented: &Presented<'_, '_>,
    ) -> Result<Vouched<'g, 'static, 'static>, Stop> {
        // An opaque token's identity is the hash of the whole token.
        presented.known_as_opaque();
        let deny = |reason| self.deny(reason, Some(provider), None, Some(presented));
        let answer = self.answer(index, provider, None, presented)?;
        let trusted = self
            .tracer
            .check(
                "introspection",
                TrustedClaims::from_active_answer(&answer),
                || format!("provider {}'s answer", provider.name),
            )
            .map_err(deny)?;
        let trusted = Trusted::Introspected(trusted);
        if answers_for_another_kind_of_token(&answer.claims_json) {
            return Err(self.deny_after_trust(
                DenyReason::NotAnAccessToken,
                provider,
                &trusted,
                presented,
            ));
        }
        // RFC 7662 makes `iss` optional too: only an answer that names another issuer fails.
        let issuer = match (trusted.claims().iss.as_deref(), &provider.issuer) {
            (Some(iss), Some(issuer)) if iss != issuer => Err(DenyReason::IssuerNotAccepted),
            _ => Ok(()),
        };
        // RFC 7662 makes `exp` optional: the IdP's `active` is the authority here.
        let time = TimePolicy {
            require_expiration: false,
            ..provider.time
        };
        issuer
            .and_then(|()| self.check_claims(provider, &trusted, time))
            .map_err(|reason| self.deny_after_trust(reason, provider, &trusted, presented))?;
        let payload_b64 = URL_SAFE_NO_PAD.encode(answer.claims_json.as_bytes());
        Ok(Vouched {
            index,
            provider,
            headers: provider
                .forward
                .upstream_headers(&payload_b64, answer.claims_json.as_bytes()),
            status: Ok(None),
            trusted,
            introspected: true,
        })
    }

    /// The IdP's cached answer about the token; none yet: ask (once), then 503.
    /// `trusted`: the verified claims of a signed token (`introspect_jwt`), for the log.
    fn answer(
        &self,
        index: usize,
        provider: &Provider,
        trusted: Option<&Trusted<'_, '_>>,
        presented: &Presented<'_, '_>,
    ) -> Result<crate::idp::introspection::Answer, Stop> {
        let answer = self
            .guard
            .answers
            .as_ref()
            .and_then(|store| store.lookup(&presented.sha256(), self.look.now));
        match answer {
            Some(answer) => Ok(answer),
            None if self.look.may_wait => {
                self.tracer.step("introspection", Mark::Waits, || {
                    Detail::Text(format!("asks provider {}", provider.name))
                });
                Err(Stop::Wait(WaitFor::Introspection(
                    index,
                    presented.token.clone().into_owned(),
                )))
            }
            // Asked, and no answer came: the token may be fine.
            None => Err(self.deny(
                DenyReason::Unavailable,
                Some(provider),
                trusted,
                Some(presented),
            )),
        }
    }

    // ---- vouching: a signed token -----------------------------------------------------------

    /// The unverified `iss` only picks the provider; that provider's keys then decide. A
    /// provider that refuses the token leaves it to the next of the same issuer; the first
    /// refusal is the answer if none accepts it.
    fn vouch_signed_and_admit(
        &self,
        parsed: &ParsedToken<'_>,
        presented: &Presented<'_, '_>,
    ) -> Result<Granted, Stop> {
        let mut first_refusal = None;
        for (index, provider) in self.issuers(parsed, presented) {
            match self.vouch_signed(index, provider, parsed, presented) {
                Ok(vouched) => return self.admit(vouched, presented),
                Err(NotVouched::Final(stop)) => return Err(stop),
                Err(NotVouched::Refused(denial)) => {
                    first_refusal.get_or_insert(FirstRefusal::Denied(denial));
                }
                Err(NotVouched::Untimely(reason)) => {
                    first_refusal.get_or_insert(FirstRefusal::Untimely(reason, provider));
                }
            }
        }
        Err(match first_refusal {
            Some(FirstRefusal::Denied(denial)) => Stop::Deny(denial),
            Some(FirstRefusal::Untimely(reason, provider)) => {
                self.deny_untimely(reason, provider, parsed, presented)
            }
            None => {
                self.tracer
                    .step("iss", Mark::Fail(DenyReason::IssuerNotAccepted), || {
                        let iss = parsed.unverified_claims().iss.as_deref();
                        Detail::Text(format!(
                            "{iss:?} is not the issuer of a provider that reads this credential"
                        ))
                    });
                self.deny(DenyReason::IssuerNotAccepted, None, None, Some(presented))
            }
        })
    }

    /// The token's times before its keys and signature, as in jwt_authn: an expired token (the
    /// refusal clients meet most) is refused as expired whatever its signature, and costs no
    /// signature check and no key refetch unless its denial is reported. The other claims wait
    /// for the signature: claims of a token that is not authentic are not worth reporting on.
    fn vouch_signed<'p, 't>(
        &self,
        index: usize,
        provider: &'g Provider,
        parsed: &'p ParsedToken<'t>,
        presented: &Presented<'_, '_>,
    ) -> Result<Vouched<'g, 'p, 't>, NotVouched> {
        let refused = |reason| refusal(self.deny(reason, Some(provider), None, Some(presented)));
        self.tracer.step("iss", Mark::Pass, || {
            Detail::Text(match &provider.issuer {
                Some(issuer) => format!("{issuer:?} is provider {}'s issuer", provider.name),
                None => format!("none, as provider {} takes", provider.name),
            })
        });
        self.check_algorithm(provider, parsed).map_err(refused)?;
        self.check_times_unsigned(provider, parsed)
            .map_err(NotVouched::Untimely)?;
        let keys = self.keys_for(index, provider, parsed, presented)?;
        let verified = self.check_signature(parsed, &keys).map_err(refused)?;
        let trusted = Trusted::Signed(verified);
        self.check_kind_and_type(provider, parsed)
            .and_then(|()| self.check_claims(provider, &trusted, provider.time))
            .map_err(|reason| {
                refusal(self.deny_after_trust(reason, provider, &trusted, presented))
            })?;
        let headers = provider
            .forward
            .upstream_headers(verified.payload_b64(), verified.payload_json());
        let status = self.status_claim(&verified);
        let introspected = provider
            .introspection
            .as_ref()
            .is_some_and(|i| i.introspect_jwt);
        if introspected {
            // The IdP has the last word on every request: never from the cache.
            self.check_signed_answer(index, provider, &trusted, presented)?;
        } else if self.guard.config.jwt_cache_size > 0 {
            let entry = CachedToken {
                provider: index,
                trusted: verified.to_trusted(),
                upstream_headers: headers.clone(),
                status: status.clone(),
                digests: Cell::new(None),
            };
            let cached = self
                .guard
                .state
                .cache
                .borrow_mut()
                .insert(&presented.token, entry);
            if let Some(cached) = cached {
                presented.link(&cached);
            }
        }
        Ok(Vouched {
            index,
            provider,
            trusted,
            headers,
            status,
            introspected,
        })
    }

    /// Before any key is touched: this is what keeps an HS256 token away from an RSA key.
    fn check_algorithm(
        &self,
        provider: &Provider,
        parsed: &ParsedToken<'_>,
    ) -> Result<(), DenyReason> {
        let allowed = if provider.algorithms.contains(&parsed.algorithm) {
            Ok(())
        } else {
            Err(DenyReason::AlgorithmNotAllowed)
        };
        self.tracer.check("alg", allowed, || {
            let names: Vec<&str> = provider.algorithms.iter().map(|a| a.name()).collect();
            format!(
                "{}; accepted: {}",
                parsed.algorithm.name(),
                names.join(", ")
            )
        })
    }

    /// `exp`, `nbf`, `iat` and the lifetime as the token states them. Noted only when they
    /// refuse it: when they pass, the claim checks after the signature note them.
    fn check_times_unsigned(
        &self,
        provider: &Provider,
        parsed: &ParsedToken<'_>,
    ) -> Result<(), DenyReason> {
        let timely = check_times(parsed.times, provider.time, self.look.now);
        if timely.is_err() {
            // Said before the failure, which ends the trace.
            self.tracer.step("signature", Mark::NotChecked, || {
                Detail::Text(
                    "the times come first and refuse the token (a recorded denial checks it only to name the token)"
                        .to_owned(),
                )
            });
            self.tracer
                .step("times", Mark::of(&timely), || Detail::Times {
                    times: parsed.times,
                    policy: provider.time,
                });
        }
        timely
    }

    /// A refusal by the token's times. A reported one names the token's identity when the
    /// keys at hand of a provider of its issuer that takes its algorithm verify its signature
    /// (checked for the record only: the decision log's rate limit bounds that cost, unless
    /// filter state is on or the limit is off); otherwise it names none.
    fn deny_untimely(
        &self,
        reason: DenyReason,
        provider: &Provider,
        parsed: &ParsedToken<'_>,
        presented: &Presented<'_, '_>,
    ) -> Stop {
        if self.look.reports {
            for (index, candidate) in self.issuers(parsed, presented) {
                if !candidate.algorithms.contains(&parsed.algorithm) {
                    continue;
                }
                let keys = self.guard.state.keys(index);
                let crypto = self.guard.crypto.as_deref();
                if let Ok(verified) = verify::verify_signature(parsed, &keys, crypto) {
                    let trusted = Trusted::Signed(verified);
                    return self.deny_after_trust(reason, provider, &trusted, presented);
                }
            }
        }
        self.deny(reason, Some(provider), None, Some(presented))
    }

    fn check_signature<'p, 't>(
        &self,
        parsed: &'p ParsedToken<'t>,
        keys: &crate::keys::jwks::KeySet,
    ) -> Result<Verified<'p, 't>, DenyReason> {
        let verified = verify::verify_signature(parsed, keys, self.guard.crypto.as_deref());
        self.tracer.check("signature", verified, || {
            format!(
                "kid {}, with {} key(s), in {}",
                parsed
                    .kid
                    .as_deref()
                    .map_or("-".to_owned(), |k| format!("{k:?}")),
                keys.keys.len(),
                if self.guard.crypto.is_some() {
                    "the host (crypto: auto)"
                } else {
                    "wasm"
                }
            )
        })
    }

    /// The provider's keys; with remote keys, a wait for the first fetch, or for one
    /// rate-limited refetch when the token names a `kid` they lack (a key rotation).
    fn keys_for(
        &self,
        index: usize,
        provider: &Provider,
        parsed: &ParsedToken<'_>,
        presented: &Presented<'_, '_>,
    ) -> Result<Rc<crate::keys::jwks::KeySet>, NotVouched> {
        let keys = self.guard.state.keys(index);
        let Some(remote) = &provider.remote_jwks else {
            return Ok(keys);
        };
        let wait = |reason| {
            self.tracer.step(
                "keys",
                if self.look.may_wait {
                    Mark::Waits
                } else {
                    Mark::Fail(reason)
                },
                || Detail::Text(format!("provider {}'s remote JWKS", provider.name)),
            );
            NotVouched::Final(if self.look.may_wait {
                Stop::Wait(WaitFor::Keys(index))
            } else {
                self.deny(reason, Some(provider), None, Some(presented))
            })
        };
        if keys.keys.is_empty() {
            // Never fetched yet: the token may well be fine, so wait, then 503.
            return Err(wait(DenyReason::Unavailable));
        }
        if self.look.may_wait
            && verify::names_unknown_key(parsed, &keys)
            && self.guard.state.refetch_allowed(
                index,
                self.look.now,
                remote.refetch_min_interval_seconds,
            )
        {
            return Err(wait(DenyReason::UnknownKeyId));
        }
        Ok(keys)
    }

    /// What only a signed token carries about its kind: not an ID or refresh token, and a
    /// `typ` the provider accepts.
    fn check_kind_and_type(
        &self,
        provider: &Provider,
        parsed: &ParsedToken<'_>,
    ) -> Result<(), DenyReason> {
        let kind = if parsed.not_an_access_token {
            Err(DenyReason::NotAnAccessToken)
        } else {
            Ok(())
        };
        self.tracer.check("access token", kind, || {
            "not an ID token or a refresh token".to_owned()
        })?;
        let typ = if provider.token_types.accepts(parsed.typ.as_deref()) {
            Ok(())
        } else {
            Err(DenyReason::TokenTypeNotAccepted)
        };
        self.tracer.check("typ", typ, || {
            format!(
                "{}; accepted: {}{}",
                parsed
                    .typ
                    .as_deref()
                    .map_or("-".to_owned(), |t| format!("{t:?}")),
                provider.token_types.accepted.join(", "),
                if provider.token_types.required {
                    " (required)"
                } else {
                    ""
                }
            )
        })
    }

    /// `introspect_jwt`: a verified token is also asked about, on every request.
    fn check_signed_answer(
        &self,
        index: usize,
        provider: &Provider,
        trusted: &Trusted<'_, '_>,
        presented: &Presented<'_, '_>,
    ) -> Result<(), NotVouched> {
        let answer = self.answer(index, provider, Some(trusted), presented)?;
        let verdict = if !answer.active {
            Err(DenyReason::InactiveToken)
        } else if answers_for_another_kind_of_token(&answer.claims_json) {
            Err(DenyReason::NotAnAccessToken)
        } else {
            Ok(())
        };
        self.tracer
            .check("introspection", verdict, || {
                format!("provider {}'s answer", provider.name)
            })
            .map_err(|reason| {
                NotVouched::Final(self.deny_after_trust(reason, provider, trusted, presented))
            })
    }

    /// The token's status list reference; read only when status lists are configured.
    fn status_claim(&self, verified: &Verified<'_, '_>) -> StatusClaim {
        self.status_claim_of(verified.payload_json())
    }

    fn status_claim_of(&self, payload_json: &[u8]) -> StatusClaim {
        let configured = self
            .guard
            .config
            .revocation
            .as_ref()
            .is_some_and(|r| r.status_list.is_some());
        if !configured {
            return Ok(None);
        }
        match serde_json::from_slice::<serde_json::Value>(payload_json) {
            Ok(payload) => reference_of(&payload),
            Err(_) => Ok(None),
        }
    }

    // ---- claims: every path ------------------------------------------------------------------

    /// Time, audience and subject, with the route's audiences when it names some.
    fn check_claims(
        &self,
        provider: &Provider,
        trusted: &Trusted<'_, '_>,
        time: TimePolicy,
    ) -> Result<(), DenyReason> {
        let times = trusted.times();
        let claims = trusted.claims();
        let audiences = self.audiences.unwrap_or(&provider.audiences);
        let timely = check_times(times, time, self.look.now);
        self.tracer
            .step("times", Mark::of(&timely), || Detail::Times {
                times,
                policy: time,
            });
        timely?;
        self.tracer.check(
            "aud",
            check_audience(claims.aud.as_ref(), audiences),
            || {
                if audiences.is_empty() {
                    "not checked (no audiences configured)".to_owned()
                } else {
                    format!("accepted: {}", audiences.join(", "))
                }
            },
        )?;
        let subject = check_subject(claims.sub.as_deref(), provider.subjects.as_ref());
        match &provider.subjects {
            None => self.tracer.step("sub", Mark::NotChecked, || {
                Detail::Text("no subjects matcher".to_owned())
            }),
            Some(matcher) => self.tracer.step("sub", Mark::of(&subject), || {
                Detail::Text(format!("must match {matcher:?}"))
            }),
        }
        subject
    }

    // ---- the tail: every path ----------------------------------------------------------------

    /// Revocation, status list and scopes, on every request (after caching), then the grant.
    fn admit(
        &self,
        vouched: Vouched<'_, '_, '_>,
        presented: &Presented<'_, '_>,
    ) -> Result<Granted, Stop> {
        let Vouched {
            index,
            provider,
            ref trusted,
            ..
        } = vouched;
        let deny = |failure: Failure| self.deny_after_trust(failure, provider, trusted, presented);
        let list_stale = self.check_revocation(provider, trusted, presented);
        let list_stale = match list_stale {
            Err(failure)
                if matches!(
                    failure.reason,
                    DenyReason::RevocationListStale | DenyReason::RevocationStoreStale
                ) && self.look.may_wait
                    && self.guard.first_revocation_read_pending() =>
            {
                // Before the first list fetch or etcd read has answered, a request waits for
                // it (as for remote keys) instead of being refused at once.
                return Err(Stop::Wait(WaitFor::RevocationList));
            }
            other => other.map_err(deny)?,
        };
        let status_stale = self.check_status(index, &vouched.status)?.map_err(deny)?;
        let scopes = check_scopes(&trusted.claims().scopes, self.scopes);
        self.tracer
            .check("scopes", scopes, || {
                if self.scopes.is_empty() {
                    "none required by the rule".to_owned()
                } else {
                    format!("required: {}", self.scopes.join(" "))
                }
            })
            .map_err(|reason| deny(reason.into()))?;
        Ok(self.grant(vouched, presented, list_stale | status_stale))
    }

    /// `Ok(true)`: not revoked as far as known, but let through on a stale list.
    fn check_revocation(
        &self,
        provider: &Provider,
        trusted: &Trusted<'_, '_>,
        presented: &Presented<'_, '_>,
    ) -> Result<bool, Failure> {
        let Some(config) = &self.guard.config.revocation else {
            self.tracer.step("revocation", Mark::NotChecked, || {
                Detail::Text("no revocation configured".to_owned())
            });
            return Ok(false);
        };
        let claims = trusted.claims();
        let Digests { sha256, id } = presented.digests();
        let probe = Probe::scoped(
            &provider.revocation_scopes,
            claims.jti.as_deref(),
            claims.sub.as_deref(),
            trusted.times().iat,
            TokenHashes {
                id: Some(&id),
                whole: Some(&sha256),
            },
        );
        let state = &self.guard.state;
        let listed = state.listed(&probe);
        let in_etcd = state.in_etcd(&probe);
        let held = HeldSays {
            listed: listed == Some(true),
            in_etcd: in_etcd == Some(true),
        };
        let source = revoked_by(state, held, &config.static_set, &probe);
        let now = self.look.now;
        // A list whose entry for this token cannot be read is as good as a stale one.
        let list_stale = config.list.as_ref().and_then(|list| {
            (listed.is_none()
                || is_stale(
                    state.revocation_list_checked_at(),
                    now,
                    list.max_stale_seconds,
                ))
            .then_some((
                list.on_stale,
                DenyReason::RevocationListStale,
                "the list",
            ))
        });
        // Likewise for etcd's set.
        let etcd_stale = config.etcd.as_ref().and_then(|etcd| {
            (in_etcd.is_none() || is_stale(state.etcd_confirmed_at(), now, etcd.max_stale_seconds))
                .then_some((etcd.on_stale, DenyReason::RevocationStoreStale, "etcd"))
        });
        let stale = [list_stale, etcd_stale];
        let refusing = stale.iter().flatten().find(|s| s.0 == OnStale::Deny);
        let outcome = match (source, refusing) {
            (Some(source), _) => Err(Failure {
                reason: DenyReason::Revoked,
                revoked_by: Some(source),
            }),
            (None, Some(&(_, reason, _))) => Err(reason.into()),
            (None, None) => Ok(stale.iter().any(Option::is_some)),
        };
        self.tracer.step(
            "revocation",
            Mark::of(&outcome.map_err(|f| f.reason)),
            || {
                let stale: Vec<&str> = stale.iter().flatten().map(|s| s.2).collect();
                Detail::Text(match source {
                    Some(source) => format!("revoked by {}", source.code()),
                    None if !stale.is_empty() => {
                        format!("not revoked as far as known; stale: {}", stale.join(", "))
                    }
                    None => "not revoked".to_owned(),
                })
            },
        );
        outcome
    }

    /// Token Status List: `Ok(Ok(true))` when let through on a stale list; `Err` to wait for a
    /// list never fetched.
    fn check_status(
        &self,
        provider: usize,
        status: &StatusClaim,
    ) -> Result<Result<bool, Failure>, Stop> {
        let Some(config) = self
            .guard
            .config
            .revocation
            .as_ref()
            .and_then(|r| r.status_list.as_ref())
        else {
            return Ok(Ok(false));
        };
        let reference = match status {
            Ok(None) => return Ok(Ok(false)),
            Ok(Some(reference)) => reference,
            Err(_) => return Ok(Err(DenyReason::StatusUnknown.into())),
        };
        let outcome = if config.endpoint(&reference.uri).is_none() {
            Err(DenyReason::StatusListNotAllowed.into())
        } else {
            let held = self.guard.state.status_list(&reference.uri, provider);
            let now = self.look.now;
            let max_stale = i64::try_from(config.max_stale_seconds).unwrap_or(i64::MAX);
            let usable = held.as_ref().filter(|h| {
                h.expires_at.is_none_or(|exp| now < exp)
                    && now <= h.fresh_until.saturating_add(max_stale)
            });
            match (usable, &held) {
                (Some(held), _) => status_in(held, reference.idx),
                // Never fetched: fetch it while the request waits (once).
                (None, None) if self.look.may_wait => {
                    self.tracer.step("status list", Mark::Waits, || {
                        Detail::Text(format!("{:?} not fetched yet", reference.uri))
                    });
                    return Err(Stop::Wait(WaitFor::StatusList(
                        provider,
                        reference.uri.clone(),
                    )));
                }
                // Stale (or the fetch failed): the list policy decides.
                _ => match config.on_stale {
                    OnStale::Deny => Err(DenyReason::RevocationListStale.into()),
                    OnStale::Allow => Ok(true),
                },
            }
        };
        self.tracer.step(
            "status list",
            Mark::of(&outcome.map_err(|f: Failure| f.reason)),
            || Detail::Text(format!("{:?} index {}", reference.uri, reference.idx)),
        );
        Ok(outcome)
    }

    /// What goes upstream, and what the shell keeps about the token.
    fn grant(
        &self,
        vouched: Vouched<'_, '_, '_>,
        presented: &Presented<'_, '_>,
        stale_allowed: bool,
    ) -> Granted {
        let config = &self.guard.config;
        let provider = vouched.provider;
        let identity = config
            .wants_identity()
            .then(|| identity_of(&vouched.trusted, presented));
        Granted {
            provider: Some(provider.name.clone()),
            token: self.authorized(&vouched, presented),
            identity,
            upstream: if presented.sent {
                UpstreamPlan::for_token(
                    &config.written_headers,
                    // A companion leaves the token as jwt_authn did (its `forward`).
                    provider.forward.forward || provider.jwt_authn.is_some(),
                    presented.source,
                    vouched.headers,
                )
            } else {
                UpstreamPlan::for_payload(&config.written_headers, vouched.headers)
            },
            stale_allowed,
        }
    }

    /// What a `self` revocation in the response (or misuse detection) will need, when either
    /// is enabled.
    fn authorized(
        &self,
        vouched: &Vouched<'_, '_, '_>,
        presented: &Presented<'_, '_>,
    ) -> Option<Box<Authorized>> {
        let config = &self.guard.config;
        let revocation = config.revocation.as_ref();
        let header = revocation.is_some_and(|r| r.response_header.is_some());
        let misuse_revokes = config
            .anomaly
            .as_ref()
            .is_some_and(|a| a.action == AnomalyAction::Revoke);
        if !(header || misuse_revokes) {
            return None;
        }
        let provider = vouched.provider;
        let claims = vouched.trusted.claims();
        let Digests { sha256, id } = presented.digests();
        Some(Box::new(Authorized {
            provider: provider.name.clone(),
            jti: claims.jti.clone(),
            sub: claims.sub.clone(),
            token_sha256: sha256,
            id,
            clock_skew_seconds: i64::try_from(provider.time.clock_skew_seconds).unwrap_or(i64::MAX),
            max_lifetime_seconds: provider
                .time
                .max_lifetime_seconds
                .map(|l| i64::try_from(l).unwrap_or(i64::MAX)),
            exp: vouched.trusted.times().exp,
            introspected: vouched.introspected,
            // RFC 7009 needs the token itself; kept only when revocations go to the IdP.
            token: (presented.sent && revocation.is_some_and(|r| r.idp.is_some()))
                .then(|| presented.token.clone().into_owned()),
        }))
    }

    // ---- denials ----------------------------------------------------------------------------

    /// A denial; with the token's fingerprint once there is a token, never the token.
    fn deny(
        &self,
        failure: impl Into<Failure>,
        provider: Option<&Provider>,
        trusted: Option<&Trusted<'_, '_>>,
        presented: Option<&Presented<'_, '_>>,
    ) -> Stop {
        let failure = failure.into();
        let config = &self.guard.config;
        // Hashing the token is for the decision log and filter state only.
        let presented = presented.filter(|_| self.look.reports);
        // Only claims something vouched for reach the decision log. The identity first: it
        // needs both hashes, made in one pass, and the fingerprint is one of them.
        let identity = trusted.zip(presented).map(|(t, p)| identity_of(t, p));
        let mut denial = Denial::new(
            failure.reason,
            &config.realm,
            provider.map(|p| p.name.clone()),
            presented.map(|p| fingerprint(&p.sha256())),
        );
        denial.revoked_by = failure.revoked_by;
        denial.identity = identity;
        if failure.reason == DenyReason::InsufficientScope {
            denial = denial.with_required_scope(&config.realm, self.scopes);
        }
        Stop::Deny(denial)
    }

    /// A denial of a token whose claims are trusted: the decision log may name them.
    fn deny_after_trust(
        &self,
        failure: impl Into<Failure>,
        provider: &Provider,
        trusted: &Trusted<'_, '_>,
        presented: &Presented<'_, '_>,
    ) -> Stop {
        self.deny(failure, Some(provider), Some(trusted), Some(presented))
    }
}

/// A token's entry in a usable status list: valid, revoked, suspended, or unknown.
fn status_in(held: &crate::decide::state::HeldStatusList, idx: u64) -> Result<bool, Failure> {
    let revoked = |reason| Failure {
        reason,
        revoked_by: Some(RevocationSource::StatusList),
    };
    match held.list.status(idx) {
        Some(Status::Valid) => Ok(false),
        Some(Status::Invalid) => Err(revoked(DenyReason::Revoked)),
        Some(Status::Suspended) => Err(revoked(DenyReason::Suspended)),
        _ => Err(DenyReason::StatusUnknown.into()),
    }
}

/// Which revocation names the token, if any: the polled list, etcd, the config's entries, then
/// what was learned at run time (from response headers, from misuse detection).
/// What the large held sets (read once per request by the caller) say of the token.
#[derive(Debug, Clone, Copy)]
struct HeldSays {
    listed: bool,
    in_etcd: bool,
}

fn revoked_by(
    state: &crate::decide::state::State,
    held: HeldSays,
    configured: &crate::revocation::set::RevocationSet,
    probe: &Probe,
) -> Option<RevocationSource> {
    if held.listed {
        return Some(RevocationSource::List);
    }
    if held.in_etcd {
        return Some(RevocationSource::Etcd);
    }
    if configured.revokes(probe) {
        return Some(RevocationSource::Config);
    }
    let learned = state.learned();
    if learned.by_header.revokes(probe) {
        Some(RevocationSource::Header)
    } else if learned.by_anomaly.revokes(probe) {
        Some(RevocationSource::Anomaly)
    } else {
        None
    }
}

fn identity_of(trusted: &Trusted<'_, '_>, presented: &Presented<'_, '_>) -> Box<TokenIdentity> {
    let claims = trusted.claims();
    let Digests { sha256, id } = presented.digests();
    Box::new(TokenIdentity {
        sha256,
        id,
        iss: claims.iss.clone(),
        sub: claims.sub.clone(),
        jti: claims.jti.clone(),
    })
}

/// Where a credential was found, for a reader.
fn described(source: &TokenSource) -> String {
    match source {
        TokenSource::Header { name, value_prefix } if value_prefix.is_empty() => {
            format!("header {name}")
        }
        TokenSource::Header { name, value_prefix } => {
            format!("header {name} ({:?} scheme)", value_prefix.trim())
        }
        TokenSource::Cookie { name } => format!("cookie {name}"),
        TokenSource::Param { name } => format!("query parameter {name}"),
    }
}
