//! The I/O of fetching a remote source (a provider's JWKS, the revocation list, a status list),
//! written once: the process-wide lease, the GET, reading the response, and the log lines of
//! an outage. When to fetch, retry and log is the sans-IO `remote::Fetch`'s; what a lease
//! value means is `remote::lease`'s; each source keeps its own wording and its own use of the
//! body.

use crate::remote::{lease, Fetch};

use super::host::{call_response_header, Host, HttpCall};
use super::metrics::{Counter, Metrics};
use proxy_wasm::types::BufferType;

/// One source's fetch, as the shell runs it.
pub struct Source<'a> {
    /// The shared-data key of its lease.
    pub lease: &'a str,
    /// How its log lines name the fetch ("JWKS fetch for provider 0").
    pub what: &'a str,
    /// Counted for every fetch that fails.
    pub failed: &'a [Counter],
}

/// The GET that fetches a source.
pub struct Get<'a> {
    pub cluster: &'a str,
    pub path: &'a str,
    pub authority: &'a str,
    pub accept: &'a str,
    /// A conditional GET: the entity tag held.
    pub if_none_match: Option<&'a str>,
    pub timeout_ms: u64,
}

/// What `start_fetch` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// Dispatched: the response comes to `on_http_call_response`.
    Sent,
    /// Another worker holds the lease: its fetch will be shared.
    Leased,
    /// Not dispatched (an unknown cluster, say): counted, logged once per outage, and the
    /// lease is free again; requests waiting for it can be answered now.
    NotSent,
}

/// Takes the lease and sends the GET; the caller has asked `fetch.should_start` first. Or
/// the next GET of a fetch in flight (the JWKS after its discovery document was answered):
/// the lease is this worker's already, and is held for this GET's timeout from now.
pub fn start_fetch(
    host: &dyn Host,
    source: &Source,
    get: &Get,
    fetch: &mut Fetch,
    metrics: &Metrics,
    now: i64,
) -> Started {
    if fetch.in_flight() {
        let held = lease::held_until(lease::fetch_deadline(now, get.timeout_ms));
        let _ = host.set_shared_data(source.lease, &held, None);
    } else if !take_lease(host, source.lease, now, get.timeout_ms) {
        return Started::Leased;
    }
    let mut headers = vec![
        (":method", "GET"),
        (":path", get.path),
        (":authority", get.authority),
        ("accept", get.accept),
    ];
    if let Some(etag) = get.if_none_match {
        headers.push(("if-none-match", etag));
    }
    let call = HttpCall {
        cluster: get.cluster,
        headers: &headers,
        body: None,
        timeout_ms: get.timeout_ms,
    };
    match host.dispatch_http_call(&call) {
        Ok(call) => {
            fetch.started(call);
            Started::Sent
        }
        Err(status) => {
            if fetch.failed(now) {
                host.warn(&format!(
                    "{} not sent ({status:?}): is cluster {:?} defined? (logged once until it works)",
                    source.what, get.cluster
                ));
            }
            count(metrics, source.failed);
            release_lease(host, source.lease);
            Started::NotSent
        }
    }
}

/// The fetch worked: counted, and the end of an outage logged (`recovered`: its line, given
/// the number of failed attempts).
pub fn succeeded(
    host: &dyn Host,
    fetch: &mut Fetch,
    metrics: &Metrics,
    ok: &[Counter],
    recovered: impl FnOnce(u64) -> String,
) {
    count(metrics, ok);
    if let Some(failed) = fetch.succeeded() {
        host.info(&recovered(failed));
    }
}

/// The fetch's response is no use: counted, and logged once per outage (`line`).
pub fn failed(
    host: &dyn Host,
    fetch: &mut Fetch,
    now: i64,
    metrics: &Metrics,
    source: &Source,
    line: impl FnOnce() -> String,
) {
    count(metrics, source.failed);
    if fetch.failed(now) {
        host.warn(&line());
    }
}

/// What another worker fetched was adopted: an outage this worker logged is over too.
pub fn adopted(host: &dyn Host, fetch: &mut Fetch, recovered: impl FnOnce(u64) -> String) {
    if let Some(failed) = fetch.adopted() {
        host.info(&recovered(failed));
    }
}

fn count(metrics: &Metrics, counters: &[Counter]) {
    for counter in counters {
        metrics.count(*counter);
    }
}

/// Takes a fetch lease unless another worker holds an unexpired one: one fetch per process,
/// not one per worker.
pub fn take_lease(host: &dyn Host, lease_key: &str, now: i64, timeout_ms: u64) -> bool {
    if let Ok((None, None)) = host.shared_data(lease_key) {
        // Keys not known at configure (a status list URI): created free, then competed for.
        let _ = host.set_shared_data(lease_key, lease::FREE, None);
    }
    let Ok((value, cas)) = host.shared_data(lease_key) else {
        return true;
    };
    match lease::take(value.as_deref(), cas, now, timeout_ms) {
        Some(held) => host.set_shared_data(lease_key, &held, cas).is_ok(),
        None => false,
    }
}

pub fn release_lease(host: &dyn Host, lease_key: &str) {
    let _ = host.set_shared_data(lease_key, lease::FREE, None);
}

/// A call's `:status` and body (at most `limit` + 1 bytes read, so a body too large shows).
pub fn call_response(host: &dyn Host, body_size: usize, limit: usize) -> (Option<String>, Vec<u8>) {
    let status = call_response_header(host, ":status");
    // A failed call has no body to read (and asking for one is not worth the risk).
    if status.is_none() || body_size == 0 {
        return (status, Vec::new());
    }
    let body = host
        .buffer(
            BufferType::HttpCallResponseBody,
            0,
            body_size.min(limit.saturating_add(1)),
        )
        .ok()
        .flatten()
        .unwrap_or_default();
    (status, body)
}
