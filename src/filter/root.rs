//! The root context, thin: it holds the host and hands it to the flow of configure (a guard
//! and what drives its remote sources), the tick (counters, gauges, fetches) and the
//! responses to the calls it sent.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, Status};

use crate::config::{Config, CryptoMode};
use crate::decide::guard::Guard;
use crate::keys::host_crypto::{self, HostCheck, HostCrypto, HostCryptoError};
use crate::observe::episode::Episode;
use crate::observe::log_limit::LogLimiter;
use crate::remote::lease;
use crate::remote::waiters::Waiters;

use super::host::Host;
use super::jwks::{self, RemoteState};
use super::metrics::{Metrics, Parts};
use super::revocation::Revocation;
use super::wasm_host::WasmHost;
use super::{
    answer_waiting, introspection, now_unix_seconds, status_lists, Active, GuardHttp, WaitTarget,
};

/// Counters are flushed, other workers' JWKS adopted and fetches started this often.
const TICK_PERIOD: Duration = Duration::from_millis(250);

pub struct GuardRoot {
    id: u32,
    host: Rc<dyn Host>,
    active: Option<Rc<Active>>,
    /// Outcome of the host crypto self-test; run once per VM, on the first configure.
    host_crypto_ok: Option<bool>,
}

impl GuardRoot {
    pub fn new(id: u32) -> Self {
        GuardRoot::with_host(id, Rc::new(WasmHost))
    }

    /// How many streams' authorizing tokens the revocation side holds (none without it).
    #[cfg(test)]
    pub(super) fn revocation_streams_held(&self) -> usize {
        self.active
            .as_ref()
            .and_then(|a| a.revocation.as_ref())
            .map_or(0, Revocation::streams_held)
    }

    /// A root context over any host (the unit tests' fake).
    pub fn with_host(id: u32, host: Rc<dyn Host>) -> Self {
        GuardRoot {
            id,
            host,
            active: None,
            host_crypto_ok: None,
        }
    }

    fn host_crypto_passes_self_test(&mut self) -> bool {
        let host = &self.host;
        *self.host_crypto_ok.get_or_insert_with(|| {
            match host_crypto::self_test(&EnvoyCrypto(host.clone())) {
                Ok(()) => {
                    host.info("host crypto: verify_signature passed its self-test; RSA and ECDSA verify in the host");
                    true
                }
                Err(failure) => {
                    host.warn(&format!(
                        "host crypto not used ({failure:?}); RSA and ECDSA verify in wasm"
                    ));
                    false
                }
            }
        })
    }
}

/// The SDK's callbacks, each handed to the flow below (which the unit tests call directly:
/// the SDK's trait objects bring its host calls along, which only link in wasm).
impl Context for GuardRoot {
    fn on_http_call_response(&mut self, call: u32, _: usize, body_size: usize, _: usize) {
        self.call_response(call, body_size);
    }

    fn on_grpc_call_response(&mut self, call: u32, status: u32, size: usize) {
        self.grpc(GrpcEvent::CallResponse { call, status, size });
    }

    fn on_grpc_stream_message(&mut self, stream: u32, size: usize) {
        self.grpc(GrpcEvent::StreamMessage { stream, size });
    }

    fn on_grpc_stream_close(&mut self, stream: u32, status: u32) {
        self.grpc(GrpcEvent::StreamClose { stream, status });
    }
}

/// What the host said over gRPC (only the etcd store talks gRPC).
#[derive(Debug, Clone, Copy)]
pub(super) enum GrpcEvent {
    CallResponse { call: u32, status: u32, size: usize },
    StreamMessage { stream: u32, size: usize },
    StreamClose { stream: u32, status: u32 },
}

impl RootContext for GuardRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        self.configure()
    }

    fn on_tick(&mut self) {
        self.tick();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(self.stream(context_id)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl GuardRoot {
    pub(super) fn configure(&mut self) -> bool {
        let host = self.host.clone();
        let Some(config) = read_config(&*host) else {
            return false;
        };
        let use_host = config.crypto == CryptoMode::Auto && self.host_crypto_passes_self_test();
        // A new configuration gets a new guard, and with it an empty token cache.
        if let Some(previous) = &self.active {
            previous.metrics.flush(&*host);
        }
        let active = activate(host, config, use_host);
        start(&*self.host, &active);
        self.active = Some(Rc::new(active));
        // The first JWKS fetch starts at the first tick (250 ms), from a worker: Envoy drops
        // the VM that runs the first configure, and with it any call it started.
        true
    }

    pub(super) fn tick(&mut self) {
        if let Some(active) = &self.active {
            tick(&*self.host, active, self.id);
        }
    }

    pub(super) fn call_response(&mut self, call: u32, body_size: usize) {
        if let Some(active) = &self.active {
            on_call_response(&*self.host, active, call, body_size, self.id);
        }
    }

    pub(super) fn grpc(&mut self, event: GrpcEvent) {
        let Some(active) = &self.active else {
            return;
        };
        let Some(etcd) = active.revocation.as_ref().and_then(|r| r.etcd()) else {
            return;
        };
        let host = &*self.host;
        let now = now_unix_seconds(host).unwrap_or_default();
        let (guard, metrics) = (&active.guard, &active.metrics);
        match event {
            GrpcEvent::CallResponse { call, status, size } => {
                etcd.on_grpc_call_response(call, status, size, guard, metrics, now);
            }
            GrpcEvent::StreamMessage { stream, size } => {
                etcd.on_grpc_stream_message(stream, size, guard, metrics, now);
            }
            GrpcEvent::StreamClose { stream, status } => {
                etcd.on_grpc_stream_close(stream, status, metrics, now);
            }
        }
        // The first read landed here: the requests waiting for it go on now.
        if !active.guard.first_revocation_read_pending() {
            answer_waiting(active, &[WaitTarget::RevocationList], now, self.id);
        }
    }

    pub(super) fn stream(&self, context: u32) -> GuardHttp {
        GuardHttp::new(context, self.host.clone(), self.active.clone())
    }
}

/// Envoy's `verify_signature` foreign function (BoringSSL).
struct EnvoyCrypto(Rc<dyn Host>);

impl HostCrypto for EnvoyCrypto {
    fn verify(&self, check: &HostCheck<'_>) -> Result<bool, HostCryptoError> {
        let arguments = host_crypto::encode_arguments(check);
        match self
            .0
            .foreign_function(host_crypto::FUNCTION_NAME, &arguments)
        {
            Ok(Some(result)) => host_crypto::decode_result(&result),
            Ok(None) => Err(HostCryptoError::BadResult),
            Err(Status::NotFound) => Err(HostCryptoError::NotAvailable),
            Err(status) => Err(HostCryptoError::CallFailed(format!("{status:?}"))),
        }
    }
}

/// The plugin configuration, parsed; its warnings logged, its errors too (then `None`).
fn read_config(host: &dyn Host) -> Option<Config> {
    let bytes = match host.buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            host.error("no plugin configuration; at least one provider is required");
            return None;
        }
        Err(status) => {
            host.error(&format!("cannot read plugin configuration: {status:?}"));
            return None;
        }
    };
    let configured = match Config::from_json(&bytes) {
        Ok(configured) => configured,
        Err(e) => {
            host.error(&e.to_string());
            return None;
        }
    };
    for warning in &configured.warnings {
        host.warn(&warning.to_string());
    }
    Some(configured.config)
}

/// The guard of a configuration, with the host's crypto and the shared introspection answers.
fn build_guard(host: &Rc<dyn Host>, config: Config, use_host_crypto: bool) -> Guard {
    let summary = config
        .providers
        .iter()
        .map(|p| format!("{} ({} keys)", p.name, p.keys.keys.len()))
        .collect::<Vec<_>>()
        .join(", ");
    let answer_scope = config
        .providers
        .iter()
        .find_map(introspection::answer_scope);
    let mut guard = Guard::new(config);
    if use_host_crypto {
        guard = guard.with_host_crypto(Box::new(EnvoyCrypto(host.clone())));
    }
    if let Some(scope) = answer_scope {
        let answers = introspection::SharedAnswers {
            scope,
            host: host.clone(),
        };
        guard = guard.with_answer_store(Box::new(answers));
    }
    host.info(&format!(
        "configured {} provider(s): {summary}; signatures verified in {}",
        guard.config().providers.len(),
        if guard.uses_host_crypto() {
            "the host"
        } else {
            "wasm"
        }
    ));
    guard
}

/// Everything one configuration runs on in this VM.
fn activate(host: Rc<dyn Host>, config: Config, use_host_crypto: bool) -> Active {
    let guard = build_guard(&host, config, use_host_crypto);
    let remote = guard
        .config()
        .providers
        .iter()
        .enumerate()
        .filter_map(|(index, p)| RemoteState::new(index, p))
        .collect();
    let revocation = guard
        .config()
        .revocation
        .clone()
        .map(|config| Revocation::new(host.clone(), config, &guard, &plugin_name(&*host)));
    let (names, remote_jwks): (Vec<String>, Vec<bool>) = guard
        .config()
        .providers
        .iter()
        .map(|p| (p.name.clone(), p.remote_jwks.is_some()))
        .unzip();
    let revocation_config = guard.config().revocation.as_ref();
    let parts = Parts {
        revocation: revocation_config.is_some(),
        list: revocation_config.is_some_and(|r| r.list.is_some()),
        etcd: revocation_config.is_some_and(|r| r.etcd.is_some()),
        shadow: guard.config().shadows(),
    };
    let metrics = Metrics::define(
        &*host,
        guard.config().stat_prefix.as_deref(),
        &names,
        &remote_jwks,
        parts,
    );
    let lines_per_second = guard.config().log.max_lines_per_second;
    Active {
        guard,
        metrics,
        decision_log: RefCell::new(LogLimiter::with_limit(lines_per_second)),
        configured_at: now_unix_seconds(&*host).unwrap_or_default(),
        remote: RefCell::new(remote),
        waiting: RefCell::new(Waiters::default()),
        introspecting: RefCell::new(HashMap::new()),
        status_fetches: RefCell::new(HashMap::new()),
        introspection_episode: RefCell::new(Episode::default()),
        revocation,
        host,
    }
}

/// The tick, and the leases every worker competes for.
fn start(host: &dyn Host, active: &Active) {
    if let Err(status) = host.set_tick_period(TICK_PERIOD) {
        host.warn(&format!(
            "no tick ({status:?}): counters will not reach the host"
        ));
    }
    // Shared data cannot be created atomically, so the leases exist before any worker's
    // first tick competes for them by compare-and-swap.
    for state in active.remote.borrow().iter() {
        if let Ok((None, _)) = host.shared_data(&state.lease_key) {
            let _ = host.set_shared_data(&state.lease_key, lease::FREE, None);
        }
    }
}

/// Envoy's name of this filter config (`config.name`; Istio: the WasmPlugin's namespace and
/// name); empty if the host has none.
fn plugin_name(host: &dyn Host) -> String {
    match host.property(&["plugin_name"]) {
        Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        _ => String::new(),
    }
}

/// Each tick: counters and gauges to the host; adopt what other workers fetched, start what
/// is due, and answer the requests whose wait is over.
fn tick(host: &dyn Host, active: &Active, id: u32) {
    active.metrics.flush(host);
    let Some(now) = now_unix_seconds(host) else {
        return;
    };
    record_gauges(host, active, now);
    let ready = jwks::drive(host, active, now);
    answer_waiting(active, &ready, now, id);
    let Some(revocation) = &active.revocation else {
        return;
    };
    revocation.drive(&active.guard, &active.metrics, now);
    // Another VM's fetch or read, adopted by this one.
    if !active.guard.first_revocation_read_pending() {
        answer_waiting(active, &[WaitTarget::RevocationList], now, id);
    }
    if let Some(config) = &revocation.config().status_list {
        let ready = status_lists::drive(
            host,
            &active.guard,
            config,
            &mut active.status_fetches.borrow_mut(),
            &active.metrics,
            now,
        );
        if !ready.is_empty() {
            answer_waiting(active, &ready, now, id);
        }
    }
}

/// A response to a call the root sent: a status list, the revocation list (or a publish), or
/// a JWKS.
fn on_call_response(host: &dyn Host, active: &Active, call: u32, body_size: usize, id: u32) {
    let now = now_unix_seconds(host).unwrap_or_default();
    if let Some(revocation) = &active.revocation {
        let status_list = status_lists::on_response(
            host,
            call,
            body_size,
            &active.guard,
            &mut active.status_fetches.borrow_mut(),
            &active.metrics,
            now,
        );
        if let Some(target) = status_list {
            answer_waiting(active, &[target], now, id);
            return;
        }
        if revocation.on_call_response(call, body_size, &active.guard, &active.metrics, now) {
            if !active.guard.first_revocation_read_pending() {
                answer_waiting(active, &[WaitTarget::RevocationList], now, id);
            }
            return;
        }
    }
    let ready = jwks::on_response(host, active, call, body_size, now);
    answer_waiting(active, &ready, now, id);
}

/// Gauges, every tick: what is held and how old it is.
fn record_gauges(host: &dyn Host, active: &Active, now: i64) {
    let metrics = &active.metrics;
    if let Some(revocation) = &active.revocation {
        // An idle worker learns what the others revoked here, not only on its next request.
        revocation.refresh_learned(&active.guard);
    }
    if let Some(revocation) = &active.guard.config().revocation {
        metrics.gauge_revocation_entries(host, active.guard.revocation_entries());
        if revocation.list.is_some() {
            let since = active
                .guard
                .state()
                .revocation_list_checked_at()
                .unwrap_or(active.configured_at);
            metrics.gauge_list_age(host, now.saturating_sub(since));
        }
        if revocation.etcd.is_some() {
            let state = active.guard.state();
            let since = state.etcd_confirmed_at().unwrap_or(active.configured_at);
            metrics.gauge_etcd(host, state.etcd_entries(), now.saturating_sub(since));
        }
    }
    for state in active.remote.borrow().iter() {
        let since = state.fetched_at.unwrap_or(active.configured_at);
        metrics.gauge_jwks_age(host, state.provider, now.saturating_sub(since));
    }
}
