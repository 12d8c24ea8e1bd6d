//! The proxy-wasm adapter: the only module that talks to the host. It gathers the request's
//! headers and the host's time, asks the core, and applies the decision.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::{error, info, warn};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType, Status};
use sha2::{Digest, Sha256};

use crate::config::{Config, CryptoMode, RemoteJwks};
use crate::decide::decision::{Decision, Denial, DenyReason, TokenIdentity, Upstream};
use crate::decide::guard::{Guard, Request};
use crate::decide::header_map;
use crate::keys::fetch;
use crate::keys::host_crypto::{self, HostCheck, HostCrypto, HostCryptoError};
use crate::observe::anomaly as anomaly_core;
use crate::observe::decision_log::{path_without_query, Record};
use crate::observe::episode::Episode;
use crate::observe::log_limit::LogLimiter;
use crate::remote::Fetch;
use crate::token::id::TokenDigest;

/// Counters are flushed, other workers' JWKS adopted and fetches started this often.
const TICK_PERIOD: Duration = Duration::from_millis(250);

mod anomaly;
mod host;
mod introspection;
mod metrics;
mod revocation;
mod status_lists;

use metrics::{Counter, Metrics, ProviderCounter};

use revocation::Revocation;

/// Takes a fetch lease (JWKS, revocation list), unless another worker holds an unexpired one:
/// one fetch per process, not one per worker.
fn take_lease(lease_key: &str, now: i64, timeout_ms: u64) -> bool {
    if let Ok((None, None)) = host::shared_data(lease_key) {
        // Keys not known at configure (a status list URI): created free, then competed for.
        let _ = host::set_shared_data(lease_key, b"0", None);
    }
    let Ok((value, cas)) = host::shared_data(lease_key) else {
        return true;
    };
    if cas.is_none() || !fetch::lease_free(value.as_deref(), now) {
        return false;
    }
    let until = fetch::fetch_deadline(now, timeout_ms);
    host::set_shared_data(lease_key, until.to_string().as_bytes(), cas).is_ok()
}

fn release_lease(lease_key: &str) {
    let _ = host::set_shared_data(lease_key, b"0", None);
}

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

/// Envoy's name of this filter config (`config.name`; Istio: the WasmPlugin's namespace and
/// name); empty if the host has none.
fn plugin_name() -> String {
    match host::property(&["plugin_name"]) {
        Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        _ => String::new(),
    }
}

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    host::init_logging();
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> { Box::new(GuardRoot::new(id)) });
}}

/// Envoy's `verify_signature` foreign function (BoringSSL).
struct EnvoyCrypto;

impl HostCrypto for EnvoyCrypto {
    fn verify(&self, check: &HostCheck<'_>) -> Result<bool, HostCryptoError> {
        let arguments = host_crypto::encode_arguments(check);
        match host::foreign_function(host_crypto::FUNCTION_NAME, &arguments) {
            Ok(Some(result)) => host_crypto::decode_result(&result),
            Ok(None) => Err(HostCryptoError::BadResult),
            Err(Status::NotFound) => Err(HostCryptoError::NotAvailable),
            Err(status) => Err(HostCryptoError::CallFailed(format!("{status:?}"))),
        }
    }
}

struct Active {
    guard: Guard,
    metrics: Metrics,
    /// Decision log lines per second (`log.max_lines_per_second`).
    decision_log: RefCell<LogLimiter>,
    /// When this configuration was applied: gauges of "seconds since the last good fetch"
    /// count from here until a first fetch.
    configured_at: i64,
    remote: RefCell<Vec<RemoteState>>,
    /// Requests paused until their provider's keys (or list, or answer) arrive.
    waiting: RefCell<Vec<Waiter>>,
    /// Tokens being introspected by this worker, until when: one call per token at a time.
    introspecting: RefCell<HashMap<TokenDigest, i64>>,
    status_fetches: RefCell<status_lists::StatusFetches>,
    /// Failing introspection calls, logged once per episode (they fail per request).
    introspection_episode: RefCell<Episode>,
    revocation: Option<Revocation>,
}

/// One provider's remote JWKS, as this worker sees it.
struct RemoteState {
    provider: usize,
    remote: RemoteJwks,
    /// Shared-data keys: the fetched JWKS, and the lease of whoever is fetching it.
    shared_key: String,
    lease_key: String,
    seen_cas: Option<u32>,
    fetched_at: Option<i64>,
    /// Wanted by a request (no keys yet, an unknown `kid`), in flight, retry, episode.
    fetch: Fetch,
}

struct Waiter {
    context: u32,
    target: WaitTarget,
    deadline: i64,
    /// Waits so far: a request may need keys, then a list, each fetched once.
    waits: u8,
}

/// A request waits at most this many times in a row (keys, then a status or revocation list).
const MAX_WAITS: u8 = 3;

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

pub struct GuardRoot {
    id: u32,
    active: Option<Rc<Active>>,
    /// Outcome of the host crypto self-test; run once per VM, on the first configure.
    host_crypto_ok: Option<bool>,
}

impl GuardRoot {
    pub fn new(id: u32) -> Self {
        GuardRoot {
            id,
            active: None,
            host_crypto_ok: None,
        }
    }

    /// Adopts keys other workers fetched, starts fetches that are due (one worker per
    /// process, by lease), and answers requests whose wait is over.
    fn drive_remote_jwks(&self, now: i64) {
        let Some(active) = self.active.clone() else {
            return;
        };
        let mut ready = Vec::new();
        for state in active.remote.borrow_mut().iter_mut() {
            if let Ok((Some(value), cas)) = host::shared_data(&state.shared_key) {
                if cas != state.seen_cas {
                    state.seen_cas = cas;
                    if let Some((at, keys)) = fetch::decode_shared(&value) {
                        if state.fetched_at.is_none_or(|ours| at > ours) {
                            active.guard.state().install_keys(state.provider, keys, at);
                            state.fetched_at = Some(at);
                            // Fresh keys answer what this worker wanted a fetch for.
                            if let Some(failed) = state.fetch.adopted() {
                                info!(
                                    "JWKS for provider {} recovered after {failed} failed fetch(es) (fetched by another worker)",
                                    state.provider
                                );
                            }
                            ready.push(WaitTarget::Keys(state.provider));
                        }
                    }
                }
            }
            let due = fetch::fetch_due(state.fetched_at, now, state.remote.cache_duration_seconds);
            if state.fetch.should_start(due, now)
                && take_lease(&state.lease_key, now, state.remote.timeout_ms)
            {
                let headers = vec![
                    (":method", "GET"),
                    (":path", state.remote.path.as_str()),
                    (":authority", state.remote.authority.as_str()),
                    ("accept", "application/json"),
                ];
                let timeout = Duration::from_millis(state.remote.timeout_ms);
                match self.dispatch_http_call(&state.remote.cluster, headers, None, vec![], timeout)
                {
                    Ok(token) => state.fetch.started(token),
                    Err(status) => {
                        if state.fetch.failed(now) {
                            warn!("JWKS fetch for provider {} not sent ({status:?}): is cluster {:?} defined? (logged once until it works)", state.provider, state.remote.cluster);
                        }
                        active.metrics.count(Counter::JwksFetchFailed);
                        active.metrics.count(Counter::Provider(
                            state.provider,
                            ProviderCounter::JwksFetchFailed,
                        ));
                        release_lease(&state.lease_key);
                        ready.push(WaitTarget::Keys(state.provider));
                    }
                }
            }
        }
        self.answer_waiting(&active, &ready, now);
    }

    fn answer_waiting(&self, active: &Active, ready: &[WaitTarget], now: i64) {
        answer_waiting(active, ready, now, self.id);
    }

    fn host_crypto_passes_self_test(&mut self) -> bool {
        *self.host_crypto_ok.get_or_insert_with(|| {
            match host_crypto::self_test(&EnvoyCrypto) {
                Ok(()) => {
                    info!("host crypto: verify_signature passed its self-test; RSA and ECDSA verify in the host");
                    true
                }
                Err(failure) => {
                    warn!("host crypto not used ({failure:?}); RSA and ECDSA verify in wasm");
                    false
                }
            }
        })
    }
}

impl Context for GuardRoot {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(active) = self.active.clone() else {
            return;
        };
        let now = now_unix_seconds().unwrap_or_default();
        if let Some(revocation) = &active.revocation {
            let status_list = status_lists::on_response(
                token,
                body_size,
                &active.guard,
                &mut active.status_fetches.borrow_mut(),
                &active.metrics,
                now,
            );
            if let Some(target) = status_list {
                self.answer_waiting(&active, &[target], now);
                return;
            }
            if revocation.on_call_response(token, body_size, &active.guard, &active.metrics, now) {
                self.answer_waiting(&active, &[WaitTarget::RevocationList], now);
                return;
            }
        }
        let (status, body) = call_response(body_size, fetch::MAX_JWKS_BYTES);
        let mut ready = Vec::new();
        for state in active.remote.borrow_mut().iter_mut() {
            if !state.fetch.is_call(token) {
                continue;
            }
            release_lease(&state.lease_key);
            ready.push(WaitTarget::Keys(state.provider));
            match fetch::accept_response(status.as_deref(), &body) {
                Ok(fetched) => {
                    for skipped in &fetched.skipped {
                        warn!("JWKS for provider {}: {skipped}", state.provider);
                    }
                    info!(
                        "JWKS for provider {} fetched: {} key(s)",
                        state.provider,
                        fetched.keys.keys.len()
                    );
                    if let Some(failed) = state.fetch.succeeded() {
                        info!(
                            "JWKS for provider {} recovered after {failed} failed fetch(es)",
                            state.provider
                        );
                    }
                    active
                        .guard
                        .state()
                        .install_keys(state.provider, fetched.keys, now);
                    active.metrics.count(Counter::JwksFetchOk);
                    active.metrics.count(Counter::Provider(
                        state.provider,
                        ProviderCounter::JwksFetchOk,
                    ));
                    state.fetched_at = Some(now);
                    let shared = fetch::encode_shared(now, &body);
                    if host::set_shared_data(&state.shared_key, &shared, None).is_ok() {
                        state.seen_cas = host::shared_data(&state.shared_key)
                            .ok()
                            .and_then(|(_, cas)| cas);
                    }
                }
                Err(e) => {
                    active.metrics.count(Counter::JwksFetchFailed);
                    active.metrics.count(Counter::Provider(
                        state.provider,
                        ProviderCounter::JwksFetchFailed,
                    ));
                    if state.fetch.failed(now) {
                        warn!(
                            "JWKS fetch for provider {} failed: {e}; keeping {} key(s) in use (logged once until a fetch works)",
                            state.provider,
                            active.guard.state().key_count(state.provider)
                        );
                    }
                }
            }
        }
        self.answer_waiting(&active, &ready, now);
    }
}

impl RootContext for GuardRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = match host::buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                error!("no plugin configuration; at least one provider is required");
                return false;
            }
            Err(status) => {
                error!("cannot read plugin configuration: {status:?}");
                return false;
            }
        };
        let configured = match Config::from_json(&bytes) {
            Ok(configured) => configured,
            Err(e) => {
                error!("{e}");
                return false;
            }
        };
        for warning in &configured.warnings {
            warn!("{warning}");
        }
        let config = configured.config;
        let summary = config
            .providers
            .iter()
            .map(|p| format!("{} ({} keys)", p.name, p.keys.keys.len()))
            .collect::<Vec<_>>()
            .join(", ");
        let use_host = config.crypto == CryptoMode::Auto && self.host_crypto_passes_self_test();
        let answer_scope = config
            .providers
            .iter()
            .find_map(introspection::answer_scope);
        let mut guard = Guard::new(config);
        if use_host {
            guard = guard.with_host_crypto(Box::new(EnvoyCrypto));
        }
        if let Some(scope) = answer_scope {
            guard = guard.with_answer_store(Box::new(introspection::SharedAnswers { scope }));
        }
        info!(
            "configured {} provider(s): {summary}; signatures verified in {}",
            guard.config().providers.len(),
            if guard.uses_host_crypto() {
                "the host"
            } else {
                "wasm"
            }
        );
        // A new configuration gets a new guard, and with it an empty token cache.
        if let Some(previous) = &self.active {
            previous.metrics.flush();
        }
        let remote = guard
            .config()
            .providers
            .iter()
            .enumerate()
            .filter_map(|(index, p)| {
                let remote = p.remote_jwks.clone()?;
                let shared_key = format!(
                    "bearer_guard.jwks.{}.{}{}",
                    p.name, remote.authority, remote.path
                );
                Some(RemoteState {
                    provider: index,
                    lease_key: format!("{shared_key}.lease"),
                    shared_key,
                    remote,
                    seen_cas: None,
                    fetched_at: None,
                    fetch: Fetch::new(),
                })
            })
            .collect();
        let revocation = guard
            .config()
            .revocation
            .clone()
            .map(|config| Revocation::new(config, &guard, &plugin_name()));
        let (names, remote_jwks): (Vec<String>, Vec<bool>) = guard
            .config()
            .providers
            .iter()
            .map(|p| (p.name.clone(), p.remote_jwks.is_some()))
            .unzip();
        let revocation_config = guard.config().revocation.as_ref();
        let metrics = Metrics::define(
            &names,
            &remote_jwks,
            revocation_config.is_some(),
            revocation_config.is_some_and(|r| r.list.is_some()),
        );
        let lines_per_second = guard.config().log.max_lines_per_second;
        self.active = Some(Rc::new(Active {
            guard,
            metrics,
            decision_log: RefCell::new(LogLimiter::with_limit(lines_per_second)),
            configured_at: now_unix_seconds().unwrap_or_default(),
            remote: RefCell::new(remote),
            waiting: RefCell::new(Vec::new()),
            introspecting: RefCell::new(HashMap::new()),
            status_fetches: RefCell::new(HashMap::new()),
            introspection_episode: RefCell::new(Episode::default()),
            revocation,
        }));
        if let Err(status) = host::set_tick_period(TICK_PERIOD) {
            warn!("no tick ({status:?}): counters will not reach the host");
        }
        // Shared data cannot be created atomically, so the leases exist before any worker's
        // first tick competes for them by compare-and-swap.
        if let Some(active) = &self.active {
            for state in active.remote.borrow().iter() {
                if let Ok((None, _)) = host::shared_data(&state.lease_key) {
                    let _ = host::set_shared_data(&state.lease_key, b"0", None);
                }
            }
        }
        // The first JWKS fetch starts at the first tick (250 ms), from a worker: Envoy drops
        // the VM that runs the first configure, and with it any call it started.
        true
    }

    fn on_tick(&mut self) {
        if let Some(active) = &self.active {
            active.metrics.flush();
            if let Some(now) = now_unix_seconds() {
                record_gauges(active, now);
            }
        }
        if let Some(now) = now_unix_seconds() {
            self.drive_remote_jwks(now);
            if let Some(active) = self.active.clone() {
                if let Some(revocation) = &active.revocation {
                    revocation.drive(self, &active.guard, &active.metrics, now);
                    // Another VM's fetch, adopted by this one.
                    if active.guard.state().revocation_list().is_some() {
                        self.answer_waiting(&active, &[WaitTarget::RevocationList], now);
                    }
                    if let Some(config) = &revocation.config().status_list {
                        let ready = status_lists::drive(
                            self,
                            &active.guard,
                            config,
                            &mut active.status_fetches.borrow_mut(),
                            &active.metrics,
                            now,
                        );
                        if !ready.is_empty() {
                            self.answer_waiting(&active, &ready, now);
                        }
                    }
                }
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(GuardHttp {
            id: context_id,
            active: self.active.clone(),
            introspection_call: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct GuardHttp {
    id: u32,
    /// `None` only if the host creates streams without a successful configure: deny them all.
    active: Option<Rc<Active>>,
    /// The introspection call this request made: its token, the provider and the digest.
    introspection_call: Option<(u32, usize, TokenDigest)>,
}

impl GuardHttp {
    /// Pauses the request until the provider answers about `token`; one call per token per
    /// worker, later requests with the same token wait for that call's answer.
    fn introspect(&mut self, active: &Active, provider: usize, token: &str) -> Action {
        let Some(config) = active
            .guard
            .config()
            .providers
            .get(provider)
            .and_then(|p| p.introspection.clone())
        else {
            return Action::Pause;
        };
        let now = now_unix_seconds().unwrap_or_default();
        let digest: TokenDigest = Sha256::digest(token.as_bytes()).into();
        let deadline = fetch::fetch_deadline(now, config.client.timeout_ms);
        wait_for(
            active,
            self.id,
            WaitTarget::Introspection(digest),
            deadline,
            1,
        );
        let in_flight = active
            .introspecting
            .borrow()
            .get(&digest)
            .is_some_and(|until| *until > now);
        if in_flight {
            return Action::Pause;
        }
        // A flood of made-up tokens must not become a flood of calls to the IdP: past the
        // bound, requests are answered 503 (the token may be fine) without a call.
        let calls = {
            let mut introspecting = active.introspecting.borrow_mut();
            introspecting.retain(|_, until| *until > now);
            introspecting.len()
        };
        if calls >= crate::idp::introspection::MAX_CALLS_IN_FLIGHT {
            active.metrics.count(Counter::IntrospectionFailed);
            warn!(
                "introspection not asked: {calls} calls already in flight on this worker (limit {})",
                crate::idp::introspection::MAX_CALLS_IN_FLIGHT
            );
            answer_waiting(active, &[WaitTarget::Introspection(digest)], now, self.id);
            return Action::Pause;
        }
        let (headers, body) = crate::idp::introspection::token_post(&config.client, token);
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let timeout = Duration::from_millis(config.client.timeout_ms);
        match self.dispatch_http_call(
            &config.client.endpoint.cluster,
            headers,
            Some(body.as_bytes()),
            vec![],
            timeout,
        ) {
            Ok(call) => {
                self.introspection_call = Some((call, provider, digest));
                active.introspecting.borrow_mut().insert(digest, deadline);
            }
            Err(status) => {
                if active.introspection_episode.borrow_mut().failed() {
                    warn!(
                        "introspection call not sent ({status:?}): is cluster {:?} defined? (logged once until a call works)",
                        config.client.endpoint.cluster
                    );
                }
                active.metrics.count(Counter::IntrospectionFailed);
                answer_waiting(active, &[WaitTarget::Introspection(digest)], now, self.id);
            }
        }
        Action::Pause
    }
}

impl Context for GuardHttp {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(active) = self.active.clone() else {
            return;
        };
        let Some((call, provider, digest)) = self.introspection_call.take() else {
            return;
        };
        if call != token {
            return;
        }
        active.introspecting.borrow_mut().remove(&digest);
        let now = now_unix_seconds().unwrap_or_default();
        let (status, body) =
            call_response(body_size, crate::idp::introspection::MAX_RESPONSE_BYTES);
        let provider = active.guard.config().providers.get(provider);
        let config = provider.and_then(|p| p.introspection.as_ref());
        let scope = provider.and_then(introspection::answer_scope);
        if let (Some(config), Some(scope)) = (config, scope) {
            match crate::idp::introspection::accept_response(status.as_deref(), &body, config, now)
            {
                Ok(answer) => {
                    active.metrics.count(Counter::IntrospectionOk);
                    introspection::store_answer(&scope, &digest, answer, now);
                    if let Some(failed) = active.introspection_episode.borrow_mut().recovered() {
                        info!("introspection recovered after {failed} failed call(s)");
                    }
                }
                Err(e) => {
                    // Not cached: the requests waiting for it get 503, the next one asks again.
                    active.metrics.count(Counter::IntrospectionFailed);
                    if active.introspection_episode.borrow_mut().failed() {
                        warn!("introspection failed: {e} (logged once until a call works)");
                    }
                }
            }
        }
        answer_waiting(&active, &[WaitTarget::Introspection(digest)], now, self.id);
    }
    fn on_done(&mut self) -> bool {
        if let Some(revocation) = self.active.as_ref().and_then(|a| a.revocation.as_ref()) {
            revocation.forget(self.id);
        }
        true
    }
}

impl HttpContext for GuardHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(active) = self.active.clone() else {
            let denial = Denial::new(
                DenyReason::Unavailable,
                crate::config::DEFAULT_REALM,
                None,
                None,
            );
            error!("request denied: filter is not configured");
            return send_denial(&denial);
        };
        match decide_and_apply(&active, self.id, Look::First) {
            Applied::Continue => Action::Continue,
            Applied::Responded => Action::Pause,
            Applied::Introspect { provider, token } => self.introspect(&active, provider, &token),
            Applied::Wait { target, deadline } => {
                // Resumed (or answered) by the root context once the keys or the list are in.
                wait_for(&active, self.id, target, deadline, 1);
                Action::Pause
            }
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(active) = &self.active {
            if let Some(revocation) = &active.revocation {
                let now = now_unix_seconds().unwrap_or_default();
                revocation.on_response_headers(self.id, &active.guard, &active.metrics, now);
            }
        }
        Action::Continue
    }
}

/// Decides again for paused requests whose keys, list or answer arrived (or whose wait timed
/// out), then gives the host its effective context back (`restore`).
fn answer_waiting(active: &Active, ready: &[WaitTarget], now: i64, restore: u32) {
    let due: Vec<Waiter> = {
        let mut waiting = active.waiting.borrow_mut();
        let (due, keep) = waiting
            .drain(..)
            .partition(|w| ready.contains(&w.target) || now >= w.deadline);
        *waiting = keep;
        due
    };
    for waiter in due {
        // The stream may be gone (client closed); then there is nothing to answer.
        if host::set_effective_context(waiter.context).is_err() {
            continue;
        }
        // What arrived may reveal the next thing to fetch (a status list after the keys): one
        // more wait, for something else, within bounds; otherwise decide with what there is.
        let may_wait = waiter.waits < MAX_WAITS && now < waiter.deadline;
        let look = if may_wait { Look::Again } else { Look::Last };
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
            if let Err(status) = host::resume_request() {
                warn!("could not resume a paused request: {status:?}");
            }
        }
    }
    let _ = host::set_effective_context(restore);
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
    if let Some(revocation) = &active.revocation {
        revocation.sync_learned(&active.guard);
    }
    let all = request_headers();
    let headers = &all.text;
    let header = |name: &str| header_value(headers, name).unwrap_or_default();
    let request = Request {
        method: header(":method"),
        path: header(":path"),
        headers,
        tls: active.guard.config().requires_tls() && connection_is_tls(),
        not_utf8: &all.not_utf8,
    };
    // One clock read serves the decision (seconds) and the log line (milliseconds).
    let now_ms = now_unix_millis();
    let now = now_ms.map(|ms| ms.div_euclid(1000));
    let mut stale_allowed = false;
    let decision = match now {
        Some(now) => {
            let verdict = if look == Look::Last {
                active.guard.decide_after_wait(&request, now)
            } else {
                active.guard.decide(&request, now)
            };
            // Once per request, on its first look: later looks find what that one cached.
            if look == Look::First {
                active.metrics.count_cache(verdict.cache);
            }
            stale_allowed = verdict.stale_allowed;
            verdict.decision
        }
        None => Decision::Deny(Denial::new(
            DenyReason::Unavailable,
            &active.guard.config().realm,
            None,
            None,
        )),
    };
    let now = now.unwrap_or_default();
    let seen = Seen::new(active, headers, now_ms.unwrap_or_default());
    let applied = match decision {
        Decision::Allow {
            provider,
            upstream,
            token,
            identity,
        } => {
            let flagged = identity
                .as_deref()
                .and_then(|identity| check_misuse(active, identity, &seen, now));
            if let Some(flag) = flagged {
                if flag.response != anomaly_core::Response::Allow {
                    if let (anomaly_core::Response::RevokeAndDeny, Some(token), Some(revocation)) =
                        (flag.response, token.as_deref(), &active.revocation)
                    {
                        revocation.revoke_misused(token, &active.guard, &active.metrics, now);
                    }
                    let mut denial = Denial::new(
                        DenyReason::Anomaly,
                        &active.guard.config().realm,
                        provider,
                        identity.as_deref().map(TokenIdentity::fingerprint),
                    );
                    denial.identity = identity;
                    return refuse(active, &request, &seen, denial, Some(flag.exceeded), now);
                }
            }
            if stale_allowed {
                active.metrics.count(Counter::StaleAllowed);
                if let Some(revocation) = &active.revocation {
                    if revocation.stale_log.borrow_mut().permit(now).write {
                        warn!(
                            "allowed on a stale revocation list (on_stale: allow) path={}",
                            path_without_query(request.path)
                        );
                    }
                }
            }
            let provider_index = provider
                .as_deref()
                .and_then(|name| provider_index(active, name));
            active.metrics.count(Counter::Allowed);
            if let Some(index) = provider_index {
                active
                    .metrics
                    .count(Counter::Provider(index, ProviderCounter::Allowed));
            }
            // Kept for a `self` revocation header in the response (misuse detection used it
            // already).
            if let (Some(token), Some(revocation)) = (token, &active.revocation) {
                if revocation.response_header().is_some() {
                    revocation.remember(context, token);
                }
            }
            apply_upstream(&upstream);
            let record = Record {
                allowed: true,
                provider: provider.as_deref(),
                identity: identity.as_deref(),
                anomaly: flagged.map(|f| f.exceeded.as_str()),
                ..seen.record(&request)
            };
            report(active, &seen, record, now);
            Applied::Continue
        }
        Decision::WaitForKeys { provider } => {
            let timeout_ms = active
                .guard
                .config()
                .providers
                .get(provider)
                .and_then(|p| p.remote_jwks.as_ref())
                .map_or(0, |r| r.timeout_ms);
            Applied::Wait {
                target: WaitTarget::Keys(provider),
                deadline: fetch::fetch_deadline(now, timeout_ms),
            }
        }
        Decision::Introspect { provider, token } => Applied::Introspect { provider, token },
        Decision::WaitForStatusList { provider, uri } => {
            let config = active
                .revocation
                .as_ref()
                .and_then(|r| r.config().status_list.as_ref());
            let timeout_ms = config.map_or(0, |c| c.timeout_ms);
            status_lists::want(&mut active.status_fetches.borrow_mut(), provider, &uri);
            Applied::Wait {
                target: status_lists::wait_target(&uri),
                deadline: fetch::fetch_deadline(now, timeout_ms),
            }
        }
        Decision::WaitForRevocationList => {
            let timeout_ms = active
                .guard
                .config()
                .revocation
                .as_ref()
                .and_then(|r| r.list.as_ref())
                .map_or(0, |l| l.timeout_ms);
            Applied::Wait {
                target: WaitTarget::RevocationList,
                deadline: fetch::fetch_deadline(now, timeout_ms),
            }
        }
        Decision::Deny(denial) => refuse(active, &request, &seen, denial, None, now),
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
    time_ms: i64,
    /// Read from the host on first use: a quiet configuration never asks.
    client_ip: std::cell::OnceCell<Option<String>>,
    forwarded_for: Option<&'h str>,
    trusted_hops: u32,
    authority: &'h str,
    user_agent: Option<&'h str>,
}

impl<'h> Seen<'h> {
    fn new(active: &Active, headers: &'h [(String, String)], time_ms: i64) -> Self {
        let header = |name: &str| header_value(headers, name);
        Seen {
            time_ms,
            client_ip: std::cell::OnceCell::new(),
            forwarded_for: header("x-forwarded-for"),
            trusted_hops: active.guard.config().xff_num_trusted_hops,
            authority: header(":authority").unwrap_or_default(),
            user_agent: header("user-agent"),
        }
    }

    fn client_ip(&self) -> Option<&str> {
        self.client_ip
            .get_or_init(|| {
                let source = host::property(&["source", "address"])
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
    let config = active.guard.config().anomaly.as_ref()?;
    let ip = seen.client_ip().unwrap_or("unknown");
    let token = anomaly_core::token_key(&identity.id);
    let Some(observed) = anomaly::observe(config, token, anomaly_core::ip_key(ip), now) else {
        active.metrics.count(Counter::AnomalyNotCounted);
        return None;
    };
    if observed.evicted {
        active.metrics.count(Counter::AnomalyEvicted);
    }
    let exceeded = observed.exceeded?;
    if observed.first_report {
        active.metrics.count(Counter::AnomalyDetected);
        warn!(
            "token misuse: {} exceeded ({} requests from {} address(es) in the window) token_fp={} sub={} client_ip={ip} action={}",
            exceeded.as_str(),
            observed.requests,
            observed.distinct_ips + usize::from(exceeded == anomaly_core::Exceeded::DistinctIps),
            identity.fingerprint(),
            identity.sub.as_deref().unwrap_or("-"),
            config.action.as_str()
        );
    }
    Some(Flag {
        exceeded,
        response: observed.response(config.action),
    })
}

/// Counts, logs and sends a denial.
fn refuse(
    active: &Active,
    request: &Request,
    seen: &Seen,
    denial: Denial,
    anomaly: Option<anomaly_core::Exceeded>,
    now: i64,
) -> Applied {
    active.metrics.count(Counter::Denied(denial.reason));
    if let Some(source) = denial.revoked_by {
        active.metrics.count(Counter::RevokedBy(source));
    }
    if let Some(index) = denial
        .provider
        .as_deref()
        .and_then(|name| provider_index(active, name))
    {
        active.metrics.count(Counter::Provider(
            index,
            ProviderCounter::Denied(denial.reason),
        ));
    }
    let record = Record {
        allowed: false,
        reason: Some(denial.reason.code()),
        status: Some(denial.status),
        provider: denial.provider.as_deref(),
        identity: denial.identity.as_deref(),
        token_fp: denial.token_fingerprint.as_deref(),
        revoked_by: denial.revoked_by,
        anomaly: anomaly.map(anomaly_core::Exceeded::as_str),
        ..seen.record(request)
    };
    report(active, seen, record, now);
    send_denial(&denial);
    Applied::Responded
}

/// The decision log line (rate-limited per worker) and the access log's filter state.
fn report<'r>(active: &Active, seen: &'r Seen, mut record: Record<'r>, now: i64) {
    let log = &active.guard.config().log;
    let logs = log.logs(record.allowed);
    if !log.filter_state && !logs {
        return;
    }
    record.client_ip = seen.client_ip();
    if log.filter_state {
        for (key, value) in record.filter_state() {
            // What the access log cannot show is not worth failing the request over.
            let _ = host::set_filter_state(key, value.as_bytes());
        }
    }
    if !logs {
        return;
    }
    let permit = active.decision_log.borrow_mut().permit(now);
    if permit.report_suppressed > 0 {
        info!(
            "{} decision line(s) not written (log.max_lines_per_second {} per worker; counters have them all)",
            permit.report_suppressed, log.max_lines_per_second
        );
    }
    if permit.write {
        info!("{}", record.to_json_line());
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

/// Gauges, every tick: what is held and how old it is.
fn record_gauges(active: &Active, now: i64) {
    let metrics = &active.metrics;
    if let Some(revocation) = &active.revocation {
        // An idle worker learns what the others revoked here, not only on its next request.
        revocation.refresh_learned(&active.guard);
    }
    if let Some(revocation) = &active.guard.config().revocation {
        metrics.gauge_revocation_entries(active.guard.revocation_entries());
        if revocation.list.is_some() {
            let since = active
                .guard
                .state()
                .revocation_list_checked_at()
                .unwrap_or(active.configured_at);
            metrics.gauge_list_age(now.saturating_sub(since));
        }
    }
    for state in active.remote.borrow().iter() {
        let since = state.fetched_at.unwrap_or(active.configured_at);
        metrics.gauge_jwks_age(state.provider, now.saturating_sub(since));
    }
}

fn apply_upstream(upstream: &Upstream) {
    let map = MapType::HttpRequestHeaders;
    for name in &upstream.remove_headers {
        if let Err(status) = host::remove_header(map, name) {
            error!("could not remove header {name}: {status:?}");
        }
    }
    for (name, value) in &upstream.set_headers {
        if let Err(status) = host::set_header(map, name, value) {
            error!("could not set header {name}: {status:?}");
        }
    }
    if let Some(path) = &upstream.path {
        if let Err(status) = host::set_header(map, ":path", path) {
            error!("could not rewrite :path: {status:?}");
        }
    }
}

/// The first value of a request header (names are lowercase in Envoy's header map).
fn header_value<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The request's headers, values that are not UTF-8 set apart by name (the guard refuses a
/// credential there and matches nothing against them). A map the host cannot hand over is
/// no headers: the request then matches no rule that needs one.
fn request_headers() -> header_map::Headers {
    header_map::split_utf8(host::headers(MapType::HttpRequestHeaders).unwrap_or_default())
}

/// A call's `:status` and body (at most `limit` + 1 bytes read, so a body too large shows).
fn call_response(body_size: usize, limit: usize) -> (Option<String>, Vec<u8>) {
    let status = host::call_response_header(":status");
    // A failed call has no body to read (and asking for one is not worth the risk).
    if status.is_none() || body_size == 0 {
        return (status, Vec::new());
    }
    let body = host::buffer(
        BufferType::HttpCallResponseBody,
        0,
        body_size.min(limit.saturating_add(1)),
    )
    .ok()
    .flatten()
    .unwrap_or_default();
    (status, body)
}

/// Envoy's `connection.tls_version`: set (e.g. `TLSv1.3`) only on a TLS connection.
fn connection_is_tls() -> bool {
    matches!(
        host::property(&["connection", "tls_version"]),
        Ok(Some(version)) if !version.is_empty()
    )
}

fn now_unix_millis() -> Option<i64> {
    let now: SystemTime = host::now().ok()?;
    let since = now.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(since.as_millis()).ok()
}

fn now_unix_seconds() -> Option<i64> {
    now_unix_millis().map(|ms| ms.div_euclid(1000))
}

fn send_denial(denial: &Denial) -> Action {
    let headers: Vec<(&str, &str)> = denial
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    if let Err(status) = host::send_response(denial.status, &headers, denial.body.as_bytes()) {
        error!("could not send the denial: {status:?}");
    }
    Action::Pause
}
