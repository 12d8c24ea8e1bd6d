//! The proxy-wasm adapter: the only module that talks to the host. It gathers the request's
//! headers and the host's time, asks the core, and applies the decision; every host call goes
//! through the `Host` trait (Envoy: `WasmHost`; the unit tests: a recording fake). This file
//! holds the request flow: decide, apply, wait and answer the waiting.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use proxy_wasm::types::{Action, MapType, Status};
use sha2::{Digest, Sha256};

use crate::decide::decision::{Authorized, Decision, Denial, DenyReason, TokenIdentity, Upstream};
use crate::decide::guard::{CacheLookup, Guard, Occasion, Request, Verdict};
use crate::decide::header_map;
use crate::observe::anomaly as anomaly_core;
use crate::observe::decision_log::{path_without_query, Record};
use crate::observe::episode::Episode;
use crate::observe::log_limit::LogLimiter;
use crate::policy::mode::Mode;
use crate::remote::lease::fetch_deadline;
use crate::remote::waiters::{Waiter, Waiters};
use crate::token::id::TokenDigest;
use crate::token::jwt_authn::VerifiedPayloads;

mod abi;
mod anomaly;
#[cfg(test)]
mod companion_tests;
mod etcd;
#[cfg(test)]
mod etcd_findings_tests;
#[cfg(test)]
mod etcd_tests;
#[cfg(test)]
mod exports_tests;
#[cfg(test)]
mod fake_host;
mod host;
#[cfg(test)]
mod host_calls_tests;
mod http;
mod introspection;
mod jwks;
#[cfg(test)]
mod list_sharing_tests;
mod metrics;
mod remote_io;
mod revocation;
mod root;
#[cfg(test)]
mod shadow_tests;
mod status_lists;
#[cfg(test)]
mod tests;
mod wasm_host;

pub use host::Host;
use http::GuardHttp;
pub use root::GuardRoot;
pub use wasm_host::WasmHost;

use metrics::{Counter, Metrics, ProviderCounter};
use remote_io::call_response;
use revocation::Revocation;

/// A short, stable name for a scope of shared data (keys stay small and free of whatever
/// characters the parts hold): SHA-256 over the length-prefixed parts, 16 hex digits.
fn scope_hash(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    crate::observe::fingerprint::hex(hash.finalize().get(..8).unwrap_or_default())
}

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    abi::init_logging();
    proxy_wasm::set_root_context(|id| -> Box<dyn proxy_wasm::traits::RootContext> { Box::new(GuardRoot::new(id)) });
}}

struct Active {
    guard: Guard,
    metrics: Metrics,
    /// Decision log lines per second (`log.max_lines_per_second`).
    decision_log: RefCell<LogLimiter>,
    /// When this configuration was applied: gauges of "seconds since the last good fetch"
    /// count from here until a first fetch.
    configured_at: i64,
    remote: RefCell<Vec<jwks::RemoteState>>,
    /// Requests paused until their provider's keys (or list, or answer) arrive.
    waiting: RefCell<Waiters<WaitTarget>>,
    /// Tokens being introspected by this worker, until when: one call per token at a time.
    introspecting: RefCell<HashMap<TokenDigest, i64>>,
    status_fetches: RefCell<status_lists::StatusFetches>,
    /// Failing introspection calls, logged once per episode (they fail per request).
    introspection_episode: RefCell<Episode>,
    revocation: Option<Revocation>,
    /// The host this configuration runs on (also held by what the guard calls back into).
    host: Rc<dyn Host>,
}

/// Pauses the request of `context` until `target` arrives (or `deadline`).
fn wait_for(active: &Active, context: u32, target: WaitTarget, deadline: i64, waits: u8) {
    active.waiting.borrow_mut().push(Waiter {
        context,
        target,
        deadline,
        waits,
    });
    if let WaitTarget::Keys(provider) = target {
        if let Some(state) = active
            .remote
            .borrow_mut()
            .iter_mut()
            .find(|s| s.provider == provider)
        {
            state.fetch.want();
        }
    }
}

/// What a paused request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WaitTarget {
    /// A provider's remote keys.
    Keys(usize),
    /// The first revocation list fetch.
    RevocationList,
    /// An introspection answer for this token.
    Introspection(TokenDigest),
    /// The first fetch of a status list (by the fingerprint of its URI).
    StatusList(u64),
}

/// Decides again for paused requests whose keys, list or answer arrived (or whose wait timed
/// out), then gives the host its effective context back (`restore`).
fn answer_waiting(active: &Active, ready: &[WaitTarget], now: i64, restore: u32) {
    let host = &*active.host;
    let due = active.waiting.borrow_mut().take_due(ready, now);
    for waiter in due {
        // The stream may be gone (client closed); then there is nothing to answer.
        if host.set_effective_context(waiter.context).is_err() {
            continue;
        }
        // What arrived may reveal the next thing to fetch (a status list after the keys): one
        // more wait, for something else, within bounds; otherwise decide with what there is.
        let look = if waiter.may_wait_again(now) {
            Look::Again
        } else {
            Look::Last
        };
        let mut applied = decide_and_apply(active, waiter.context, look);
        if let Applied::Wait { target, deadline } = applied {
            if target != waiter.target {
                wait_for(active, waiter.context, target, deadline, waiter.waits + 1);
                continue;
            }
            applied = decide_and_apply(active, waiter.context, Look::Last);
        }
        // An introspection call needs the request's own context: decided with what there is.
        if let Applied::Introspect { .. } = applied {
            applied = decide_and_apply(active, waiter.context, Look::Last);
        }
        if let Applied::Continue = applied {
            if let Err(status) = host.resume_request() {
                host.warn(&format!("could not resume a paused request: {status:?}"));
            }
        }
    }
    let _ = host.set_effective_context(restore);
}

/// What happened to the current request (the host's effective context).
enum Applied {
    Continue,
    Responded,
    Wait { target: WaitTarget, deadline: i64 },
    Introspect { provider: usize, token: String },
}

/// Which look at a request this is: a request may wait for keys, a list or an answer, and is
/// then decided again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    /// On its headers: the one that counts the cache lookup (one per request).
    First,
    /// After a wait, and it may wait once more for something else.
    Again,
    /// After a wait: decide with what there is.
    Last,
}

/// Decides for the request of the effective context and applies the decision.
fn decide_and_apply(active: &Active, context: u32, look: Look) -> Applied {
    let host = &*active.host;
    // One clock read serves the sync, the decision (seconds) and the log line (milliseconds).
    let now_ms = now_unix_millis(host);
    if let Some(revocation) = &active.revocation {
        revocation.sync_learned(&active.guard, now_ms);
    }
    let serialized = host.headers(MapType::HttpRequestHeaders);
    let (all, headers_read) = request_headers(&serialized);
    let headers = &all.text;
    let header = |name: &str| header_value(headers, name).unwrap_or_default();
    let payloads = jwt_authn_payloads(active);
    let request = Request {
        method: header(":method"),
        path: header(":path"),
        headers,
        tls: active.guard.config().requires_tls() && connection_is_tls(host),
        not_utf8: &all.not_utf8,
        jwt_authn: payloads.as_ref(),
    };
    let now = now_ms.map(|ms| ms.div_euclid(1000));
    let Verdict {
        decision,
        stale_allowed,
        mode,
        ..
    } = decide(active, &request, look, now);
    let now = now.unwrap_or_default();
    let seen = Seen::new(active, headers, headers_read, now_ms.unwrap_or_default());
    let applied = match decision {
        Decision::Allow {
            provider,
            upstream,
            token,
            identity,
        } => {
            let allowed = Allowed {
                provider,
                upstream,
                token,
                identity,
                stale_allowed,
                mode,
            };
            allow(active, context, &request, &seen, allowed, now)
        }
        Decision::WaitForKeys { provider } => {
            let remote = active.guard.config().providers.get(provider);
            let timeout_ms = remote.and_then(|p| p.remote_jwks.as_ref());
            wait(
                WaitTarget::Keys(provider),
                timeout_ms.map(|r| r.timeout_ms),
                now,
            )
        }
        Decision::Introspect { provider, token } => Applied::Introspect { provider, token },
        Decision::WaitForStatusList { provider, uri } => {
            let config = active
                .revocation
                .as_ref()
                .and_then(|r| r.config().status_list.as_ref());
            status_lists::want(&mut active.status_fetches.borrow_mut(), provider, &uri);
            let target = status_lists::wait_target(&uri);
            wait(target, config.map(|c| c.timeout_ms), now)
        }
        Decision::WaitForRevocationList => {
            // The first list fetch or etcd read: as long as the slower of the two may take.
            let revocation = active.guard.config().revocation.as_ref();
            let list = revocation
                .and_then(|r| r.list.as_ref())
                .map(|l| l.timeout_ms);
            let etcd = revocation
                .and_then(|r| r.etcd.as_ref())
                .map(|e| e.timeout_ms);
            wait(WaitTarget::RevocationList, list.max(etcd), now)
        }
        Decision::Deny(denial) => refuse(active, &request, &seen, denial, None, mode, now),
    };
    match applied {
        // While a failed fetch waits for its retry, waiting would only hold the request until
        // its deadline: decide now with what there is.
        Applied::Wait { target, .. }
            if look != Look::Last && !fetch_coming(active, target, now) =>
        {
            decide_and_apply(active, context, Look::Last)
        }
        applied => applied,
    }
}

/// The guard's verdict at `now` (none: the host has no clock, 503, under the request's
/// mode like any denial).
fn decide(active: &Active, request: &Request, look: Look, now: Option<i64>) -> Verdict {
    let Some(now) = now else {
        let realm = &active.guard.config().realm;
        let denial = Denial::new(DenyReason::Unavailable, realm, None, None);
        return Verdict {
            decision: Decision::Deny(denial),
            cache: CacheLookup::Skipped,
            stale_allowed: false,
            mode: active.guard.mode_for(request),
        };
    };
    // Whether the configuration reports denials at all is the guard's to know; the shell
    // knows whether the decision log has room for one more line this second.
    let occasion = Occasion {
        after_wait: look == Look::Last,
        reported: active.guard.config().log.filter_state
            || active.decision_log.borrow().has_room(now),
    };
    let verdict = active.guard.decide_as(request, now, occasion);
    // Once per request, on its first look: later looks find what that one cached.
    if look == Look::First {
        active.metrics.count_cache(verdict.cache);
    }
    verdict
}

/// Pauses for `target`, at most the fetch's timeout (`None`: not configured, 0) and slack.
fn wait(target: WaitTarget, timeout_ms: Option<u64>, now: i64) -> Applied {
    Applied::Wait {
        target,
        deadline: fetch_deadline(now, timeout_ms.unwrap_or(0)),
    }
}

/// What the guard allowed a request with.
struct Allowed {
    provider: Option<String>,
    upstream: Upstream,
    token: Option<Box<Authorized>>,
    identity: Option<Box<TokenIdentity>>,
    stale_allowed: bool,
    /// Misuse detection's denial is shadowed like any other.
    mode: Mode,
}

/// An allowed request: refused after all if its token is being misused; otherwise counted,
/// logged, and continued with its upstream headers.
fn allow(
    active: &Active,
    context: u32,
    request: &Request,
    seen: &Seen,
    allowed: Allowed,
    now: i64,
) -> Applied {
    let host = &*active.host;
    let Allowed {
        provider,
        upstream,
        token,
        identity,
        stale_allowed,
        mode,
    } = allowed;
    let flagged = identity
        .as_deref()
        .and_then(|identity| check_misuse(active, identity, seen, now));
    if let Some(flag) = flagged.filter(|f| f.response != anomaly_core::Response::Allow) {
        // Shadow mode only watches: a revocation recorded here would reach every worker, the
        // mesh's store and the IdP, and be enforced by proxies that do enforce.
        if let (anomaly_core::Response::RevokeAndDeny, Some(token), Some(revocation), false) = (
            flag.response,
            token.as_deref(),
            &active.revocation,
            mode == Mode::Shadow,
        ) {
            revocation.revoke_misused(token, &active.guard, &active.metrics, now);
        }
        let realm = &active.guard.config().realm;
        let fingerprint = identity.as_deref().map(TokenIdentity::fingerprint);
        let mut denial = Denial::new(DenyReason::Anomaly, realm, provider, fingerprint);
        denial.identity = identity;
        return refuse(
            active,
            request,
            seen,
            denial,
            Some(flag.exceeded),
            mode,
            now,
        );
    }
    if stale_allowed {
        note_stale_allowed(active, request, now);
    }
    active.metrics.count(Counter::Allowed);
    if let Some(index) = provider.as_deref().and_then(|n| provider_index(active, n)) {
        let counter = Counter::Provider(index, ProviderCounter::Allowed);
        active.metrics.count(counter);
    }
    // Kept for a `self` revocation header in the response (misuse detection used it already).
    if let (Some(token), Some(revocation)) = (token, &active.revocation) {
        if revocation.response_header().is_some() {
            revocation.remember(context, token);
        }
    }
    apply_upstream(host, request, seen, &upstream);
    let record = Record {
        allowed: true,
        provider: provider.as_deref(),
        identity: identity.as_deref(),
        anomaly: flagged.map(|f| f.exceeded.as_str()),
        ..seen.record(request)
    };
    report(active, seen, record, now);
    Applied::Continue
}

/// Let through on a stale revocation list (`on_stale: allow`): counted, logged at a rate.
fn note_stale_allowed(active: &Active, request: &Request, now: i64) {
    active.metrics.count(Counter::StaleAllowed);
    if let Some(revocation) = &active.revocation {
        if revocation.stale_log.borrow_mut().permit(now).write {
            active.host.warn(&format!(
                "allowed on a stale revocation list (on_stale: allow) path={}",
                path_without_query(request.path)
            ));
        }
    }
}

/// Whether what a request would wait for is being fetched, or may be at the next tick (not
/// while this worker's last fetch of it failed and its retry is still ahead).
fn fetch_coming(active: &Active, target: WaitTarget, now: i64) -> bool {
    match target {
        WaitTarget::Keys(provider) => active
            .remote
            .borrow()
            .iter()
            .find(|s| s.provider == provider)
            .is_none_or(|s| s.fetch.coming(now)),
        WaitTarget::StatusList(_) => {
            status_lists::fetch_coming(&active.status_fetches.borrow(), target, now)
        }
        // The list's first fetch is raced for by every VM of the process (the main thread's
        // included), so this VM's own retry time does not say whether one is coming.
        WaitTarget::RevocationList | WaitTarget::Introspection(_) => true,
    }
}

/// What the decision log and misuse detection read about the request beyond its path.
struct Seen<'h> {
    host: &'h dyn Host,
    time_ms: i64,
    /// Read from the host on first use: a quiet configuration never asks.
    client_ip: std::cell::OnceCell<Option<String>>,
    forwarded_for: Option<&'h str>,
    trusted_hops: u32,
    authority: &'h str,
    user_agent: Option<&'h str>,
    /// The host handed the request's headers over: one it did not carry needs no removal.
    headers_read: bool,
}

impl<'h> Seen<'h> {
    fn new(
        active: &'h Active,
        headers: &'h [(&'h str, &'h str)],
        headers_read: bool,
        time_ms: i64,
    ) -> Self {
        let header = |name: &str| header_value(headers, name);
        Seen {
            host: &*active.host,
            time_ms,
            client_ip: std::cell::OnceCell::new(),
            forwarded_for: header("x-forwarded-for"),
            trusted_hops: active.guard.config().xff_num_trusted_hops,
            authority: header(":authority").unwrap_or_default(),
            user_agent: header("user-agent"),
            headers_read,
        }
    }

    fn client_ip(&self) -> Option<&str> {
        self.client_ip
            .get_or_init(|| {
                let source = self
                    .host
                    .property(&["source", "address"])
                    .ok()
                    .flatten()
                    .and_then(|bytes| String::from_utf8(bytes).ok());
                crate::policy::client_ip::client_ip(
                    source.as_deref(),
                    self.forwarded_for,
                    self.trusted_hops,
                )
            })
            .as_deref()
    }

    fn record<'r>(&'r self, request: &Request<'r>) -> Record<'r> {
        Record {
            time_ms: self.time_ms,
            method: request.method,
            path: request.path,
            authority: self.authority,
            user_agent: self.user_agent,
            ..Record::default()
        }
    }
}

/// A request over a misuse limit.
#[derive(Debug, Clone, Copy)]
struct Flag {
    exceeded: anomaly_core::Exceeded,
    response: anomaly_core::Response,
}

/// Counts the request into its token's window (shared by every worker); `Some` when it went
/// over a limit.
fn check_misuse(active: &Active, identity: &TokenIdentity, seen: &Seen, now: i64) -> Option<Flag> {
    let host = &*active.host;
    let config = active.guard.config().anomaly.as_ref()?;
    let ip = seen.client_ip().unwrap_or("unknown");
    let token = anomaly_core::token_key(&identity.id);
    let Some(observed) = anomaly::observe(host, config, token, anomaly_core::ip_key(ip), now)
    else {
        active.metrics.count(Counter::AnomalyNotCounted);
        return None;
    };
    if observed.evicted {
        active.metrics.count(Counter::AnomalyEvicted);
    }
    let exceeded = observed.exceeded?;
    if observed.first_report {
        active.metrics.count(Counter::AnomalyDetected);
        host.warn(&format!(
            "token misuse: {} exceeded ({} requests from {} address(es) in the window) token_fp={} sub={} client_ip={ip} action={}",
            exceeded.as_str(),
            observed.requests,
            observed.distinct_ips + usize::from(exceeded == anomaly_core::Exceeded::DistinctIps),
            identity.fingerprint(),
            identity.sub.as_deref().unwrap_or("-"),
            config.action.as_str()
        ));
    }
    Some(Flag {
        exceeded,
        response: observed.response(config.action),
    })
}

/// Counts, logs and sends a denial; in shadow mode counts and logs it as shadowed and lets
/// the request through instead (`Guard::shadowed_upstream`).
fn refuse(
    active: &Active,
    request: &Request,
    seen: &Seen,
    denial: Denial,
    anomaly: Option<anomaly_core::Exceeded>,
    mode: Mode,
    now: i64,
) -> Applied {
    let shadow = mode == Mode::Shadow;
    count_denial(active, &denial, shadow);
    let record = Record {
        allowed: false,
        reason: Some(denial.reason.code()),
        status: Some(denial.status),
        shadow,
        provider: denial.provider.as_deref(),
        identity: denial.identity.as_deref(),
        token_fp: denial.token_fingerprint.as_deref(),
        revoked_by: denial.revoked_by,
        anomaly: anomaly.map(anomaly_core::Exceeded::as_str),
        ..seen.record(request)
    };
    report(active, seen, record, now);
    if shadow {
        let upstream = active.guard.shadowed_upstream();
        apply_upstream(&*active.host, request, seen, &upstream);
        return Applied::Continue;
    }
    send_denial(&*active.host, &denial);
    Applied::Responded
}

/// A denial's counters: per reason, per revocation source and per provider; a shadowed one
/// only under `shadow_denied` (per reason and per provider), so the enforced denials' counters
/// and the alerts on them do not move while a rule is only watched.
fn count_denial(active: &Active, denial: &Denial, shadow: bool) {
    let reason = denial.reason;
    let (total, per_provider) = if shadow {
        (
            Counter::ShadowDenied(reason),
            ProviderCounter::ShadowDenied(reason),
        )
    } else {
        (Counter::Denied(reason), ProviderCounter::Denied(reason))
    };
    active.metrics.count(total);
    if let (Some(source), false) = (denial.revoked_by, shadow) {
        active.metrics.count(Counter::RevokedBy(source));
    }
    if let Some(index) = denial
        .provider
        .as_deref()
        .and_then(|name| provider_index(active, name))
    {
        active.metrics.count(Counter::Provider(index, per_provider));
    }
}

/// The decision log line (rate-limited per worker) and the access log's filter state.
fn report<'r>(active: &Active, seen: &'r Seen, mut record: Record<'r>, now: i64) {
    let host = &*active.host;
    let log = &active.guard.config().log;
    let logs = log.logs(record.allowed);
    if !log.filter_state && !logs {
        return;
    }
    // The client address is a host call: made only for a field that is written.
    if log.filter_state {
        record.client_ip = seen.client_ip();
        for (key, value) in record.filter_state() {
            // What the access log cannot show is not worth failing the request over.
            let _ = host.set_filter_state(key, value.as_bytes());
        }
    }
    if !logs {
        return;
    }
    let permit = active.decision_log.borrow_mut().permit(now);
    if permit.report_suppressed > 0 {
        host.info(&format!(
            "{} decision line(s) not written (log.max_lines_per_second {} per worker; counters have them all)",
            permit.report_suppressed, log.max_lines_per_second
        ));
    }
    if permit.write {
        record.client_ip = seen.client_ip();
        host.info(&record.to_json_line());
    }
}

fn provider_index(active: &Active, name: &str) -> Option<usize> {
    active
        .guard
        .config()
        .providers
        .iter()
        .position(|p| p.name == name)
}

/// Applies what goes upstream. A header is removed only if the request carries it (by the
/// headers read for this look; all of them when the host did not hand those over): most
/// requests carry none of the headers bearer-guard writes, and each removal is a host call.
fn apply_upstream(host: &dyn Host, request: &Request, seen: &Seen, upstream: &Upstream) {
    let map = MapType::HttpRequestHeaders;
    let carried = |name: &str| {
        !seen.headers_read
            || request
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
            || request
                .not_utf8
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name))
    };
    for name in upstream.remove_headers.iter().filter(|n| carried(n)) {
        if let Err(status) = host.remove_header(map, name) {
            host.error(&format!("could not remove header {name}: {status:?}"));
        }
    }
    for (name, value) in &upstream.set_headers {
        if let Err(status) = host.set_header(map, name, value) {
            host.error(&format!("could not set header {name}: {status:?}"));
        }
    }
    if let Some(path) = &upstream.path {
        if let Err(status) = host.set_header(map, ":path", path) {
            host.error(&format!("could not rewrite :path: {status:?}"));
        }
    }
}

/// The first value of a request header (names are lowercase in Envoy's header map).
fn header_value<'h>(headers: &'h [(&'h str, &'h str)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// The request's headers, values that are not UTF-8 set apart by name (the guard refuses a
/// credential there and matches nothing against them), and whether the host handed them
/// over. A map the host cannot hand over, or serialized inconsistently, is no headers: the
/// request then matches no rule that needs one.
fn request_headers(serialized: &Result<Vec<u8>, Status>) -> (header_map::Headers<'_>, bool) {
    match serialized.as_deref().map(header_map::read) {
        Ok(Some(headers)) => (headers, true),
        _ => (header_map::Headers::default(), false),
    }
}

/// Envoy's `connection.tls_version`: set (e.g. `TLSv1.3`) only on a TLS connection.
fn connection_is_tls(host: &dyn Host) -> bool {
    matches!(
        host.property(&["connection", "tls_version"]),
        Ok(Some(version)) if !version.is_empty()
    )
}

/// What jwt_authn verified for this request (its dynamic metadata, one host call), when a
/// provider is its companion. Metadata that cannot be read is no payload: those providers
/// then see no token, and the request is refused as without one.
fn jwt_authn_payloads(active: &Active) -> Option<VerifiedPayloads> {
    if !active.guard.config().reads_jwt_authn() {
        return None;
    }
    let host = &*active.host;
    match host.property(&["metadata"]) {
        Ok(Some(bytes)) => match VerifiedPayloads::from_metadata(&bytes) {
            Ok(payloads) => Some(payloads),
            Err(why) => {
                host.log(
                    proxy_wasm::types::LogLevel::Debug,
                    &format!("dynamic metadata not readable: {why}"),
                );
                None
            }
        },
        _ => None,
    }
}

fn now_unix_millis(host: &dyn Host) -> Option<i64> {
    let now: SystemTime = host.now().ok()?;
    let since = now.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(since.as_millis()).ok()
}

fn now_unix_seconds(host: &dyn Host) -> Option<i64> {
    now_unix_millis(host).map(|ms| ms.div_euclid(1000))
}

fn send_denial(host: &dyn Host, denial: &Denial) -> Action {
    let headers = header_map::as_str_pairs(&denial.headers);
    if let Err(status) = host.send_response(denial.status, &headers, denial.body.as_bytes()) {
        host.error(&format!("could not send the denial: {status:?}"));
    }
    Action::Pause
}
