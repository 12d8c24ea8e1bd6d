//! The host side of Token Status Lists: fetching each list through the cluster its URI's
//! authority maps to (one fetch per process, by lease), sharing the list token with the other
//! workers, and refreshing it when due. Checking the token and the statuses is the guard's.

use std::collections::HashMap;

use crate::decide::guard::Guard;
use crate::remote::Fetch;
use crate::revocation::config::StatusListConfig;
use crate::revocation::set::{fingerprint, Kind};

use super::host::Host;
use super::remote_io::{self, Get, Source, Started};
use super::{Counter, Metrics, WaitTarget};

/// A status list token is a few hundred KB at most (1M entries at 8 bits: ~1.3 MB of zlib).
const MAX_LIST_BYTES: usize = 4 * 1024 * 1024;

/// One list, as this worker drives it.
#[derive(Debug)]
pub struct StatusFetch {
    provider: usize,
    fetch: Fetch,
}

pub type StatusFetches = HashMap<String, StatusFetch>;

pub fn wait_target(uri: &str) -> WaitTarget {
    WaitTarget::StatusList(fingerprint(Kind::Jti, "status_list", uri.as_bytes()))
}

fn shared_key(uri: &str) -> String {
    format!("bearer_guard.status_list.{uri}")
}

/// A request needs this list (never fetched).
pub fn want(fetches: &mut StatusFetches, provider: usize, uri: &str) {
    let list = fetches.entry(uri.to_owned()).or_insert(StatusFetch {
        provider,
        fetch: Fetch::new(),
    });
    list.provider = provider;
    list.fetch.want();
}

/// Whether the list a request waits for is being fetched or may be at the next tick (not while
/// this worker's last fetch of it failed and its retry is still ahead).
pub fn fetch_coming(fetches: &StatusFetches, target: WaitTarget, now: i64) -> bool {
    fetches
        .iter()
        .find(|(uri, _)| wait_target(uri) == target)
        .is_none_or(|(_, f)| f.fetch.coming(now))
}

/// Each tick: adopt lists other workers fetched, fetch those wanted or due. Returns the
/// lists that arrived (their waiters can be answered).
pub fn drive(
    host: &dyn Host,
    guard: &Guard,
    config: &StatusListConfig,
    fetches: &mut StatusFetches,
    metrics: &Metrics,
    now: i64,
) -> Vec<WaitTarget> {
    for (provider, uri) in guard.state().status_lists_due(now) {
        want(fetches, provider, &uri);
    }
    let mut ready = Vec::new();
    for (uri, list) in fetches.iter_mut() {
        if adopt(host, guard, list.provider, uri) {
            remote_io::adopted(host, &mut list.fetch, |failed| {
                format!("status list {uri} recovered after {failed} failed fetch(es) (fetched by another worker)")
            });
            if guard.state().status_list_due(uri, now) {
                list.fetch.want();
            }
            ready.push(wait_target(uri));
        }
        if !list.fetch.should_start(false, now) {
            continue;
        }
        let Some(endpoint) = config.endpoint(uri) else {
            list.fetch.satisfied();
            continue;
        };
        let lease = lease_key(uri);
        let get = Get {
            cluster: &endpoint.cluster,
            path: &endpoint.path,
            authority: &endpoint.authority,
            accept: "application/statuslist+jwt",
            if_none_match: None,
            timeout_ms: config.timeout_ms,
        };
        let source = source(&lease);
        if remote_io::start_fetch(host, &source, &get, &mut list.fetch, metrics, now)
            == Started::NotSent
        {
            ready.push(wait_target(uri));
        }
    }
    ready
}

fn lease_key(uri: &str) -> String {
    format!("{}.lease", shared_key(uri))
}

/// A list's fetch, as the fetch shell runs it.
fn source(lease: &str) -> Source<'_> {
    Source {
        lease,
        what: "status list fetch",
        failed: &[Counter::StatusListFetchFailed],
    }
}

/// Installs the list another worker shared, if it is newer than the one held.
fn adopt(host: &dyn Host, guard: &Guard, provider: usize, uri: &str) -> bool {
    let Ok((Some(value), _)) = host.shared_data(&shared_key(uri)) else {
        return false;
    };
    let text = String::from_utf8_lossy(&value);
    let Some((at, token)) = text.split_once('\n') else {
        return false;
    };
    let Ok(fetched_at) = at.parse::<i64>() else {
        return false;
    };
    if guard
        .state()
        .status_list_fetched_at(uri)
        .is_some_and(|held| held >= fetched_at)
    {
        return false;
    }
    guard
        .install_status_list(provider, uri, token, fetched_at)
        .is_ok()
}

/// A response to a status list fetch; `None` if the call is not one.
pub fn on_response(
    host: &dyn Host,
    call: u32,
    body_size: usize,
    guard: &Guard,
    fetches: &mut StatusFetches,
    metrics: &Metrics,
    now: i64,
) -> Option<WaitTarget> {
    let (uri, list) = fetches.iter_mut().find(|(_, f)| f.fetch.is_call(call))?;
    let lease = lease_key(uri);
    let (status, body) = remote_io::call_response(host, body_size, MAX_LIST_BYTES);
    let outcome = match status.as_deref() {
        Some("200") if body.len() <= MAX_LIST_BYTES => {
            let token = String::from_utf8_lossy(&body).trim().to_owned();
            guard
                .install_status_list(list.provider, uri, &token, now)
                .map(|fresh_until| (token, fresh_until))
        }
        Some("200") => Err(format!("body of {} bytes is too large", body.len())),
        Some(other) => Err(format!("HTTP status {other}")),
        None => Err("no response (timeout or connection failure)".to_owned()),
    };
    match outcome {
        Ok((token, fresh_until)) => {
            host.info(&format!(
                "status list {uri} fetched; next fetch in {}s",
                fresh_until - now
            ));
            let ok = [Counter::StatusListFetchOk];
            remote_io::succeeded(host, &mut list.fetch, metrics, &ok, |failed| {
                format!("status list {uri} recovered after {failed} failed fetch(es)")
            });
            let value = format!("{now}\n{token}");
            let _ = host.set_shared_data(&shared_key(uri), value.as_bytes(), None);
        }
        Err(why) => {
            list.fetch.want();
            remote_io::failed(host, &mut list.fetch, now, metrics, &source(&lease), || {
                format!("status list {uri} not usable: {why}; the list held (if any) stays until stale (logged once until a fetch works)")
            });
        }
    }
    // Only now: the list is shared before another worker may fetch it again.
    remote_io::release_lease(host, &lease);
    Some(wait_target(uri))
}
