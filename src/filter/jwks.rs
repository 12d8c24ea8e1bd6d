//! The host side of remote JWKS: each provider's keys fetched once per process (by lease),
//! shared with the other workers through shared data, adopted from there, and refreshed when
//! due. Parsing and accepting a JWKS is `keys::fetch`'s; the I/O skeleton is `remote_io`'s.

use crate::config::RemoteJwks;
use crate::decide::guard::Guard;
use crate::keys::fetch;
use crate::remote::Fetch;

use super::host::Host;
use super::metrics::{Counter, ProviderCounter};
use super::remote_io::{self, Get, Source, Started};
use super::{Active, WaitTarget};

/// One provider's remote JWKS, as this worker sees it.
pub struct RemoteState {
    pub provider: usize,
    pub remote: RemoteJwks,
    /// Shared-data keys: the fetched JWKS, and the lease of whoever is fetching it.
    shared_key: String,
    pub lease_key: String,
    seen_cas: Option<u32>,
    pub fetched_at: Option<i64>,
    /// Wanted by a request (no keys yet, an unknown `kid`), in flight, retry, episode.
    pub fetch: Fetch,
}

impl RemoteState {
    pub fn new(provider: usize, name: &str, remote: RemoteJwks) -> Self {
        let shared_key = format!(
            "bearer_guard.jwks.{name}.{}{}",
            remote.authority, remote.path
        );
        RemoteState {
            provider,
            lease_key: format!("{shared_key}.lease"),
            shared_key,
            remote,
            seen_cas: None,
            fetched_at: None,
            fetch: Fetch::new(),
        }
    }

    fn failed_counters(&self) -> [Counter; 2] {
        [
            Counter::JwksFetchFailed,
            Counter::Provider(self.provider, ProviderCounter::JwksFetchFailed),
        ]
    }
}

/// Each tick: adopt keys other workers fetched, start fetches that are due (one worker per
/// process, by lease). Returns what arrived (or failed), whose waiters can be answered.
pub fn drive(host: &dyn Host, active: &Active, now: i64) -> Vec<WaitTarget> {
    let (guard, metrics) = (&active.guard, &active.metrics);
    let mut ready = Vec::new();
    for state in active.remote.borrow_mut().iter_mut() {
        if adopt(host, guard, state) {
            ready.push(WaitTarget::Keys(state.provider));
        }
        let due = fetch::fetch_due(state.fetched_at, now, state.remote.cache_duration_seconds);
        if !state.fetch.should_start(due, now) {
            continue;
        }
        let what = format!("JWKS fetch for provider {}", state.provider);
        let failed = state.failed_counters();
        let source = Source {
            lease: &state.lease_key,
            what: &what,
            failed: &failed,
        };
        let get = Get {
            cluster: &state.remote.cluster,
            path: &state.remote.path,
            authority: &state.remote.authority,
            accept: "application/json",
            if_none_match: None,
            timeout_ms: state.remote.timeout_ms,
        };
        if remote_io::start_fetch(host, &source, &get, &mut state.fetch, metrics, now)
            == Started::NotSent
        {
            ready.push(WaitTarget::Keys(state.provider));
        }
    }
    ready
}

/// Installs the keys another worker shared, if they are newer than the ones held.
fn adopt(host: &dyn Host, guard: &Guard, state: &mut RemoteState) -> bool {
    let Ok((Some(value), cas)) = host.shared_data(&state.shared_key) else {
        return false;
    };
    if cas == state.seen_cas {
        return false;
    }
    state.seen_cas = cas;
    let Some((at, keys)) = fetch::decode_shared(&value) else {
        return false;
    };
    if state.fetched_at.is_some_and(|ours| at <= ours) {
        return false;
    }
    guard.state().install_keys(state.provider, keys, at);
    state.fetched_at = Some(at);
    // Fresh keys answer what this worker wanted a fetch for.
    let provider = state.provider;
    remote_io::adopted(host, &mut state.fetch, |failed| {
        format!("JWKS for provider {provider} recovered after {failed} failed fetch(es) (fetched by another worker)")
    });
    true
}

/// A response to a JWKS fetch; the providers whose waiters can be answered (none: the call
/// is not a JWKS fetch).
pub fn on_response(
    host: &dyn Host,
    active: &Active,
    call: u32,
    body_size: usize,
    now: i64,
) -> Vec<WaitTarget> {
    let (guard, metrics) = (&active.guard, &active.metrics);
    let mut ready = Vec::new();
    let mut states = active.remote.borrow_mut();
    for state in states.iter_mut().filter(|s| s.fetch.is_call(call)) {
        ready.push(WaitTarget::Keys(state.provider));
        remote_io::release_lease(host, &state.lease_key);
        let (status, body) = remote_io::call_response(host, body_size, fetch::MAX_JWKS_BYTES);
        match fetch::accept_response(status.as_deref(), &body) {
            Ok(fetched) => {
                let provider = state.provider;
                for skipped in &fetched.skipped {
                    host.warn(&format!("JWKS for provider {provider}: {skipped}"));
                }
                host.info(&format!(
                    "JWKS for provider {provider} fetched: {} key(s)",
                    fetched.keys.keys.len()
                ));
                let ok = [
                    Counter::JwksFetchOk,
                    Counter::Provider(provider, ProviderCounter::JwksFetchOk),
                ];
                remote_io::succeeded(host, &mut state.fetch, metrics, &ok, |failed| {
                    format!(
                        "JWKS for provider {provider} recovered after {failed} failed fetch(es)"
                    )
                });
                guard.state().install_keys(provider, fetched.keys, now);
                state.fetched_at = Some(now);
                share(host, state, &fetch::encode_shared(now, &body));
            }
            Err(e) => {
                let failed = state.failed_counters();
                let source = Source {
                    lease: &state.lease_key,
                    what: "JWKS fetch",
                    failed: &failed,
                };
                let held = guard.state().key_count(state.provider);
                let provider = state.provider;
                remote_io::failed(host, &mut state.fetch, now, metrics, &source, || {
                    format!("JWKS fetch for provider {provider} failed: {e}; keeping {held} key(s) in use (logged once until a fetch works)")
                });
            }
        }
    }
    ready
}

/// Shares fetched keys with the other workers; what this worker wrote is not adopted back.
fn share(host: &dyn Host, state: &mut RemoteState, value: &[u8]) {
    if host.set_shared_data(&state.shared_key, value, None).is_ok() {
        state.seen_cas = host
            .shared_data(&state.shared_key)
            .ok()
            .and_then(|(_, cas)| cas);
    }
}
