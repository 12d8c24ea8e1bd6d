//! The host side of remote JWKS: each provider's keys fetched once per process (by lease),
//! shared with the other workers through shared data, adopted from there, and refreshed when
//! due. With `discovery_uri` a fetch is two GETs under one lease: the provider's OpenID
//! discovery document, then the JWKS at its `jwks_uri`; the document is read again on every
//! fetch (refresh or unknown `kid`), so an IdP that moves its JWKS is followed. Parsing and
//! accepting a document or a JWKS is `keys::discovery`'s and `keys::fetch`'s; the I/O
//! skeleton is `remote_io`'s.

use crate::config::{JwksLocation, Provider, RemoteJwks};
use crate::decide::guard::Guard;
use crate::keys::discovery::{self, JwksUri};
use crate::keys::fetch::{self, FetchError};
use crate::remote::Fetch;

use super::host::Host;
use super::metrics::{Counter, Metrics, ProviderCounter};
use super::remote_io::{self, Get, Source, Started};
use super::{Active, WaitTarget};

/// One provider's remote JWKS, as this worker sees it.
pub struct RemoteState {
    pub provider: usize,
    /// The provider's name, for the discovery log lines.
    name: String,
    /// The provider's `issuer` (with discovery): the document must name exactly this one.
    issuer: String,
    pub remote: RemoteJwks,
    /// Shared-data keys: the fetched JWKS, and the lease of whoever is fetching it.
    shared_key: String,
    pub lease_key: String,
    seen_cas: Option<u32>,
    pub fetched_at: Option<i64>,
    /// Wanted by a request (no keys yet, an unknown `kid`), in flight, retry, episode.
    pub fetch: Fetch,
    /// Which GET the call in flight is.
    step: Step,
    /// Where discovery last said the JWKS is (logged when it changes).
    jwks_uri: Option<JwksUri>,
}

/// The GETs of one fetch: with discovery, the document's and then the JWKS's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Discovery,
    Jwks,
}

impl RemoteState {
    /// The provider's remote JWKS, if it has one.
    pub fn new(index: usize, provider: &Provider) -> Option<Self> {
        let remote = provider.remote_jwks.clone()?;
        let name = &provider.name;
        let shared_key = match &remote.location {
            JwksLocation::Direct => {
                format!(
                    "bearer_guard.jwks.{name}.{}{}",
                    remote.authority, remote.path
                )
            }
            // Keys found by discovery were found for this issuer: a configuration that names
            // another one (a reload) must check a document itself, not adopt them.
            JwksLocation::Discovery { issuer, .. } => format!(
                "bearer_guard.jwks.{name}.discovery.{}{}#{issuer}",
                remote.authority, remote.path
            ),
        };
        Some(RemoteState {
            provider: index,
            name: name.clone(),
            issuer: match &remote.location {
                JwksLocation::Discovery { issuer, .. } => issuer.clone(),
                // Never read: a direct JWKS has no discovery document.
                JwksLocation::Direct => String::new(),
            },
            lease_key: format!("{shared_key}.lease"),
            shared_key,
            remote,
            seen_cas: None,
            fetched_at: None,
            fetch: Fetch::new(),
            step: Step::Jwks,
            jwks_uri: None,
        })
    }

    /// The GET that starts a fetch: the configured URI, a JWKS or a discovery document.
    fn first_step(&self) -> Step {
        match self.remote.location {
            JwksLocation::Direct => Step::Jwks,
            JwksLocation::Discovery { .. } => Step::Discovery,
        }
    }

    /// Counted when a GET of `step` fails: every failure is a failed JWKS fetch; those of
    /// the discovery document are also counted apart.
    fn failed_counters(&self, step: Step) -> Vec<Counter> {
        let provider = self.provider;
        let mut counters = vec![
            Counter::JwksFetchFailed,
            Counter::Provider(provider, ProviderCounter::JwksFetchFailed),
        ];
        if step == Step::Discovery {
            counters.push(Counter::JwksDiscoveryFailed);
            counters.push(Counter::Provider(
                provider,
                ProviderCounter::JwksDiscoveryFailed,
            ));
        }
        counters
    }

    /// Where the GET of the current step goes: its cluster, `:authority` and `:path` (the
    /// configured URI's, or the `jwks_uri` discovery found).
    fn target(&self) -> (String, String, String) {
        let remote = &self.remote;
        let (cluster, authority, path) = match (self.step, &self.jwks_uri) {
            (Step::Jwks, Some(found)) => (remote.jwks_cluster(), &found.authority, &found.path),
            _ => (remote.cluster.as_str(), &remote.authority, &remote.path),
        };
        (cluster.to_owned(), authority.clone(), path.clone())
    }

    /// How log lines name a GET of `step`.
    fn what(&self, step: Step) -> String {
        match step {
            Step::Jwks => format!("JWKS fetch for provider {}", self.provider),
            Step::Discovery => format!(
                "JWKS discovery for provider {} ({}) at {}{}",
                self.provider, self.name, self.remote.authority, self.remote.path
            ),
        }
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
        state.step = state.first_step();
        if send(host, metrics, state, now) == Started::NotSent {
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

/// Sends the GET of the fetch's current step (the lease taken, or held from its first GET).
fn send(host: &dyn Host, metrics: &Metrics, state: &mut RemoteState, now: i64) -> Started {
    let what = state.what(state.step);
    let failed = state.failed_counters(state.step);
    let (cluster, authority, path) = state.target();
    let source = Source {
        lease: &state.lease_key,
        what: &what,
        failed: &failed,
    };
    let get = Get {
        cluster: &cluster,
        path: &path,
        authority: &authority,
        accept: "application/json",
        if_none_match: None,
        timeout_ms: state.remote.timeout_ms,
    };
    remote_io::start_fetch(host, &source, &get, &mut state.fetch, metrics, now)
}

/// A response to a JWKS fetch's GET; the providers whose waiters can be answered (none: the
/// call is not a JWKS fetch, or it was a discovery document and the JWKS GET is on its way).
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
        let over = match state.step {
            Step::Discovery => {
                let limit = discovery::MAX_DISCOVERY_BYTES;
                let (status, body) = remote_io::call_response(host, body_size, limit);
                match discovery::accept_discovery(status.as_deref(), &body, &state.issuer) {
                    Ok(found) => fetch_found_jwks(host, metrics, state, found, now),
                    Err(e) => {
                        remote_io::release_lease(host, &state.lease_key);
                        fail(host, guard, metrics, state, &e, now);
                        true
                    }
                }
            }
            Step::Jwks => {
                on_jwks(host, guard, metrics, state, body_size, now);
                true
            }
        };
        if over {
            ready.push(WaitTarget::Keys(state.provider));
        }
    }
    ready
}

/// The discovery document said where the JWKS is: its GET goes out under the same lease.
/// Whether the fetch is over all the same (the GET could not be sent).
fn fetch_found_jwks(
    host: &dyn Host,
    metrics: &Metrics,
    state: &mut RemoteState,
    found: JwksUri,
    now: i64,
) -> bool {
    if state.jwks_uri.as_ref() != Some(&found) {
        host.info(&format!(
            "{}: the JWKS is at {}{}",
            state.what(Step::Discovery),
            found.authority,
            found.path
        ));
    }
    state.jwks_uri = Some(found);
    state.step = Step::Jwks;
    send(host, metrics, state, now) != Started::Sent
}

/// The JWKS arrived: installed and shared, or the fetch has failed.
fn on_jwks(
    host: &dyn Host,
    guard: &Guard,
    metrics: &Metrics,
    state: &mut RemoteState,
    body_size: usize,
    now: i64,
) {
    remote_io::release_lease(host, &state.lease_key);
    let (status, body) = remote_io::call_response(host, body_size, fetch::MAX_JWKS_BYTES);
    let fetched = match fetch::accept_response(status.as_deref(), &body) {
        Ok(fetched) => fetched,
        Err(e) => return fail(host, guard, metrics, state, &e, now),
    };
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
        format!("JWKS for provider {provider} recovered after {failed} failed fetch(es)")
    });
    guard.state().install_keys(provider, fetched.keys, now);
    state.fetched_at = Some(now);
    share(host, state, &fetch::encode_shared(now, &body));
}

/// The GET of the current step brought nothing usable: counted, logged once per outage, and
/// the keys held (if any) stay in use.
fn fail(
    host: &dyn Host,
    guard: &Guard,
    metrics: &Metrics,
    state: &mut RemoteState,
    error: &FetchError,
    now: i64,
) {
    let failed = state.failed_counters(state.step);
    let what = state.what(state.step);
    let source = Source {
        lease: &state.lease_key,
        what: &what,
        failed: &failed,
    };
    let held = guard.state().key_count(state.provider);
    remote_io::failed(host, &mut state.fetch, now, metrics, &source, || {
        format!("{what} failed: {error}; keeping {held} key(s) in use (logged once until a fetch works)")
    });
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

#[cfg(test)]
#[path = "jwks_tests.rs"]
mod tests;
