//! The proxy-wasm adapter: the only module that talks to the host. It gathers the request's
//! headers and the host's time, asks the core, and applies the decision.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::{debug, error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType, MetricType, Status};

use crate::config::{Config, CryptoMode};
use crate::decision::{Decision, Denial, DenyReason, Upstream};
use crate::guard::{CacheLookup, Guard, Request};
use crate::host_crypto::{self, HostCheck, HostCrypto, HostCryptoError};
use crate::log_limit::{LogLimiter, DENIAL_LINES_PER_SECOND};

const METRICS_FLUSH_PERIOD: Duration = Duration::from_secs(1);

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(GuardRoot::default()) });
}}

/// Envoy's `verify_signature` foreign function (BoringSSL).
struct EnvoyCrypto;

impl HostCrypto for EnvoyCrypto {
    fn verify(&self, check: &HostCheck<'_>) -> Result<bool, HostCryptoError> {
        let arguments = host_crypto::encode_arguments(check);
        match hostcalls::call_foreign_function(host_crypto::FUNCTION_NAME, Some(&arguments)) {
            Ok(Some(result)) => host_crypto::decode_result(&result),
            Ok(None) => Err(HostCryptoError::BadResult),
            Err(Status::NotFound) => Err(HostCryptoError::NotAvailable),
            Err(status) => Err(HostCryptoError::CallFailed(format!("{status:?}"))),
        }
    }
}

/// Counters, defined once per VM. Envoy shows them under the `wasmcustom.` prefix.
/// Increments are batched in the VM and flushed to the host on the root context's tick
/// (every second): a host call per counter per request would cost more than our own logic.
struct Metrics {
    ids: Vec<Option<u32>>,
    pending: RefCell<Vec<i64>>,
}

/// Index of each counter in `Metrics::ids`.
#[derive(Debug, Clone, Copy)]
enum Counter {
    Allowed,
    CacheHit,
    CacheMiss,
    Denied(DenyReason),
}

impl Counter {
    fn index(self) -> usize {
        match self {
            Counter::Allowed => 0,
            Counter::CacheHit => 1,
            Counter::CacheMiss => 2,
            Counter::Denied(reason) => {
                3 + DenyReason::ALL
                    .iter()
                    .position(|r| *r == reason)
                    .unwrap_or_default()
            }
        }
    }

    fn name(self) -> String {
        match self {
            Counter::Allowed => "bearer_guard.allowed".to_owned(),
            Counter::CacheHit => "bearer_guard.jwt_cache_hit".to_owned(),
            Counter::CacheMiss => "bearer_guard.jwt_cache_miss".to_owned(),
            Counter::Denied(reason) => format!("bearer_guard.denied.{}", reason.code()),
        }
    }

    fn all() -> impl Iterator<Item = Counter> {
        [Counter::Allowed, Counter::CacheHit, Counter::CacheMiss]
            .into_iter()
            .chain(DenyReason::ALL.into_iter().map(Counter::Denied))
    }
}

impl Metrics {
    fn define() -> Self {
        let ids: Vec<Option<u32>> = Counter::all()
            .map(|c| hostcalls::define_metric(MetricType::Counter, &c.name()).ok())
            .collect();
        let pending = RefCell::new(vec![0; ids.len()]);
        Metrics { ids, pending }
    }

    fn count(&self, counter: Counter) {
        if let Some(n) = self.pending.borrow_mut().get_mut(counter.index()) {
            *n += 1;
        }
    }

    fn count_cache(&self, lookup: CacheLookup) {
        match lookup {
            CacheLookup::Hit => self.count(Counter::CacheHit),
            CacheLookup::Miss => self.count(Counter::CacheMiss),
            CacheLookup::Skipped => {}
        }
    }

    fn flush(&self) {
        for (id, n) in self.ids.iter().zip(self.pending.borrow_mut().iter_mut()) {
            if let (Some(id), true) = (id, *n > 0) {
                // A failed counter update must never affect traffic; the count is dropped.
                let _ = hostcalls::increment_metric(*id, *n);
            }
            *n = 0;
        }
    }
}

struct Active {
    guard: Guard,
    metrics: Metrics,
    denial_log: RefCell<LogLimiter>,
}

#[derive(Default)]
pub struct GuardRoot {
    active: Option<Rc<Active>>,
    /// Outcome of the host crypto self-test; run once per VM, on the first configure.
    host_crypto_ok: Option<bool>,
}

impl GuardRoot {
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

impl Context for GuardRoot {}

impl RootContext for GuardRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
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
        let mut guard = Guard::new(config);
        if use_host {
            guard = guard.with_host_crypto(Box::new(EnvoyCrypto));
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
        self.active = Some(Rc::new(Active {
            guard,
            metrics: Metrics::define(),
            denial_log: RefCell::new(LogLimiter::default()),
        }));
        if let Err(status) = hostcalls::set_tick_period(METRICS_FLUSH_PERIOD) {
            warn!("no tick ({status:?}): counters will not reach the host");
        }
        true
    }

    fn on_tick(&mut self) {
        if let Some(active) = &self.active {
            active.metrics.flush();
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(GuardHttp {
            active: self.active.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct GuardHttp {
    /// `None` only if the host creates streams without a successful configure: deny them all.
    active: Option<Rc<Active>>,
}

impl Context for GuardHttp {}

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
        let headers = request_headers();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map_or("", |(_, v)| v.as_str())
        };
        let request = Request {
            method: header(":method"),
            path: header(":path"),
            headers: &headers,
        };
        let now = now_unix_seconds();
        let decision = match now {
            Some(now) => {
                let verdict = active.guard.decide(&request, now);
                active.metrics.count_cache(verdict.cache);
                verdict.decision
            }
            None => Decision::Deny(Denial::new(
                DenyReason::Unavailable,
                &active.guard.config().realm,
                None,
                None,
            )),
        };
        match decision {
            Decision::Allow { provider, upstream } => {
                active.metrics.count(Counter::Allowed);
                apply_upstream(&upstream);
                debug!(
                    "allowed provider={} path={}",
                    provider.as_deref().unwrap_or("-"),
                    path_without_query(request.path)
                );
                Action::Continue
            }
            Decision::Deny(denial) => {
                active.metrics.count(Counter::Denied(denial.reason));
                let permit = active
                    .denial_log
                    .borrow_mut()
                    .permit(now.unwrap_or_default());
                if permit.report_suppressed > 0 {
                    info!(
                        "{} denial line(s) not written (limit {DENIAL_LINES_PER_SECOND}/s per worker; counters have them all)",
                        permit.report_suppressed
                    );
                }
                if !permit.write {
                    return send_denial(&denial);
                }
                info!(
                    "denied reason={} status={} provider={} token_fp={} method={} path={}",
                    denial.reason,
                    denial.status,
                    denial.provider.as_deref().unwrap_or("-"),
                    denial.token_fingerprint.as_deref().unwrap_or("-"),
                    request.method,
                    path_without_query(request.path)
                );
                send_denial(&denial)
            }
        }
    }
}

fn apply_upstream(upstream: &Upstream) {
    let map = MapType::HttpRequestHeaders;
    for name in &upstream.remove_headers {
        if let Err(status) = hostcalls::set_map_value(map, name, None) {
            error!("could not remove header {name}: {status:?}");
        }
    }
    for (name, value) in &upstream.set_headers {
        if let Err(status) = hostcalls::set_map_value(map, name, Some(value)) {
            error!("could not set header {name}: {status:?}");
        }
    }
    if let Some(path) = &upstream.path {
        if let Err(status) = hostcalls::set_map_value(map, ":path", Some(path)) {
            error!("could not rewrite :path: {status:?}");
        }
    }
}

/// Header values that are not UTF-8 are kept lossily: a token with such bytes is malformed anyway.
fn request_headers() -> Vec<(String, String)> {
    hostcalls::get_map_bytes(MapType::HttpRequestHeaders)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| {
            let value = String::from_utf8(value)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            (name, value)
        })
        .collect()
}

fn now_unix_seconds() -> Option<i64> {
    let now: SystemTime = hostcalls::get_current_time().ok()?;
    let since = now.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(since.as_secs()).ok()
}

/// Query strings may carry secrets; logs get the path only.
fn path_without_query(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or_default()
}

fn send_denial(denial: &Denial) -> Action {
    let headers: Vec<(&str, &str)> = denial
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    if let Err(status) =
        hostcalls::send_http_response(denial.status, headers, Some(denial.body.as_bytes()))
    {
        error!("could not send the denial: {status:?}");
    }
    Action::Pause
}
