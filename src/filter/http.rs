//! The HTTP context, thin: it holds the host and hands it to the request flow (decide, apply,
//! wait), the introspection call of an opaque token, and the revocation response header.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use sha2::{Digest, Sha256};

use crate::decide::decision::{Denial, DenyReason};
use crate::decide::header_map;
use crate::idp::introspection::{self as idp, MAX_CALLS_IN_FLIGHT};
use crate::remote::lease::fetch_deadline;
use crate::token::id::TokenDigest;

use super::host::{Host, HttpCall};
use super::metrics::Counter;
use super::{
    answer_waiting, call_response, decide_and_apply, introspection, now_unix_seconds, send_denial,
    wait_for, Active, Applied, Look, WaitTarget,
};

pub struct GuardHttp {
    id: u32,
    host: Rc<dyn Host>,
    /// `None` only if the host creates streams without a successful configure: deny them all.
    active: Option<Rc<Active>>,
    /// The introspection call this request made: its token, the provider and the digest.
    introspection_call: Option<(u32, usize, TokenDigest)>,
}

impl GuardHttp {
    pub fn new(id: u32, host: Rc<dyn Host>, active: Option<Rc<Active>>) -> Self {
        GuardHttp {
            id,
            host,
            active,
            introspection_call: None,
        }
    }
}

/// The SDK's callbacks, each handed to the flow below (which the unit tests call directly).
impl Context for GuardHttp {
    fn on_http_call_response(&mut self, call: u32, _: usize, body_size: usize, _: usize) {
        self.call_response(call, body_size);
    }
}

impl HttpContext for GuardHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.request_headers()
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.response_headers()
    }
}

/// The SDK drops a stream's context when the host deletes the stream (`proxy_on_delete`), right
/// after the host's `proxy_on_done`. Cleaning up here rather than in `on_done` lets the module
/// export no `proxy_on_done` (`exports.json`): one call into the VM less on every request.
/// No host calls here: the SDK drops the context without making it the current one.
impl Drop for GuardHttp {
    fn drop(&mut self) {
        self.ended();
    }
}

impl GuardHttp {
    /// The answer to this request's introspection call.
    pub(super) fn call_response(&mut self, token: u32, body_size: usize) {
        let Some(active) = &self.active else {
            return;
        };
        let Some((call, provider, digest)) = self.introspection_call.take() else {
            return;
        };
        if call == token {
            on_answer(&*self.host, active, self.id, provider, digest, body_size);
        }
    }

    /// The stream is over: what it left with the worker goes.
    fn ended(&mut self) {
        if let Some(revocation) = self.active.as_ref().and_then(|a| a.revocation.as_ref()) {
            revocation.forget(self.id);
        }
    }

    pub(super) fn request_headers(&mut self) -> Action {
        let host = &*self.host;
        let Some(active) = &self.active else {
            let denial = Denial::new(
                DenyReason::Unavailable,
                crate::config::DEFAULT_REALM,
                None,
                None,
            );
            host.error("request denied: filter is not configured");
            return send_denial(host, &denial);
        };
        match decide_and_apply(active, self.id, Look::First) {
            Applied::Continue => Action::Continue,
            Applied::Responded => Action::Pause,
            Applied::Introspect { provider, token } => {
                self.introspection_call = introspect(host, active, self.id, provider, &token);
                Action::Pause
            }
            Applied::Wait { target, deadline } => {
                // Resumed (or answered) by the root context once the keys or the list are in.
                wait_for(active, self.id, target, deadline, 1);
                Action::Pause
            }
        }
    }

    /// The upstream's response headers: a revocation header is applied (and removed).
    pub(super) fn response_headers(&mut self) -> Action {
        if let Some(revocation) = self.active.as_ref().and_then(|a| a.revocation.as_ref()) {
            if let Some(active) = &self.active {
                revocation.on_response_headers(self.id, &active.guard, &active.metrics);
            }
        }
        Action::Continue
    }
}

/// Pauses the request until the provider answers about `token`; one call per token per
/// worker, later requests with the same token wait for that call's answer. The call sent, if
/// this request sent one.
fn introspect(
    host: &dyn Host,
    active: &Active,
    context: u32,
    provider: usize,
    token: &str,
) -> Option<(u32, usize, TokenDigest)> {
    let config = active
        .guard
        .config()
        .providers
        .get(provider)
        .and_then(|p| p.introspection.clone())?;
    let now = now_unix_seconds(host).unwrap_or_default();
    let digest: TokenDigest = Sha256::digest(token.as_bytes()).into();
    let deadline = fetch_deadline(now, config.client.timeout_ms);
    let target = WaitTarget::Introspection(digest);
    wait_for(active, context, target, deadline, 1);
    let in_flight = active
        .introspecting
        .borrow()
        .get(&digest)
        .is_some_and(|until| *until > now);
    if in_flight {
        return None;
    }
    // A flood of made-up tokens must not become a flood of calls to the IdP: past the
    // bound, requests are answered 503 (the token may be fine) without a call.
    let calls = {
        let mut introspecting = active.introspecting.borrow_mut();
        introspecting.retain(|_, until| *until > now);
        introspecting.len()
    };
    if calls >= MAX_CALLS_IN_FLIGHT {
        active.metrics.count(Counter::IntrospectionFailed);
        host.warn(&format!(
            "introspection not asked: {calls} calls already in flight on this worker (limit {MAX_CALLS_IN_FLIGHT})"
        ));
        answer_waiting(active, &[target], now, context);
        return None;
    }
    let (headers, body) = idp::token_post(&config.client, token);
    let headers = header_map::as_str_pairs(&headers);
    let cluster = &config.client.endpoint.cluster;
    let call = HttpCall {
        cluster,
        headers: &headers,
        body: Some(body.as_bytes()),
        timeout_ms: config.client.timeout_ms,
    };
    match host.dispatch_http_call(&call) {
        Ok(call) => {
            active.introspecting.borrow_mut().insert(digest, deadline);
            Some((call, provider, digest))
        }
        Err(status) => {
            if active.introspection_episode.borrow_mut().failed() {
                host.warn(&format!(
                    "introspection call not sent ({status:?}): is cluster {cluster:?} defined? (logged once until a call works)"
                ));
            }
            active.metrics.count(Counter::IntrospectionFailed);
            answer_waiting(active, &[target], now, context);
            None
        }
    }
}

/// The provider's answer about a token: cached for every worker, and the requests waiting
/// for it decided.
fn on_answer(
    host: &dyn Host,
    active: &Active,
    context: u32,
    provider: usize,
    digest: TokenDigest,
    body_size: usize,
) {
    active.introspecting.borrow_mut().remove(&digest);
    let now = now_unix_seconds(host).unwrap_or_default();
    let (status, body) = call_response(host, body_size, idp::MAX_RESPONSE_BYTES);
    let provider = active.guard.config().providers.get(provider);
    let config = provider.and_then(|p| p.introspection.as_ref());
    let scope = provider.and_then(introspection::answer_scope);
    if let (Some(config), Some(scope)) = (config, scope) {
        match idp::accept_response(status.as_deref(), &body, config, now) {
            Ok(answer) => {
                active.metrics.count(Counter::IntrospectionOk);
                introspection::store_answer(host, &scope, &digest, answer, now);
                if let Some(failed) = active.introspection_episode.borrow_mut().recovered() {
                    host.info(&format!(
                        "introspection recovered after {failed} failed call(s)"
                    ));
                }
            }
            Err(e) => {
                // Not cached: the requests waiting for it get 503, the next one asks again.
                active.metrics.count(Counter::IntrospectionFailed);
                if active.introspection_episode.borrow_mut().failed() {
                    host.warn(&format!(
                        "introspection failed: {e} (logged once until a call works)"
                    ));
                }
            }
        }
    }
    answer_waiting(active, &[WaitTarget::Introspection(digest)], now, context);
}
