//! The host side of revocation: shared data that every worker of the process reads (the
//! learned log and the polled list), the list poll, the revocation response header and the
//! publish POSTs. Decisions stay in the core (`revocation*` modules, `Guard`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::rc::Rc;

use proxy_wasm::types::{BufferType, MapType, Status};

use crate::decide::decision::Authorized;
use crate::decide::guard::{Guard, HeldList, HeldSet};
use crate::decide::header_map;
use crate::idp::introspection::token_post;
use crate::observe::episode::Episode;
use crate::observe::log_limit::LogLimiter;
use crate::remote::{lease, Fetch};
use crate::revocation::config::{ListConfig, RevocationConfig};
use crate::revocation::doc::{render, PublishEntry};
use crate::revocation::indexed::{self, IndexedSet, SharedValues, Value};
use crate::revocation::learned::{
    from_header, misuse_entries, FromHeader, HeaderProblem, Learned, LearnedEntry,
};
use crate::revocation::list::{self, Checked, Lifetimes, ListUpdate};
use crate::revocation::publish::{
    publish_accepted, PublishQueue, BATCH_SIZE, MAX_PUBLISH_RESPONSE_BYTES,
};
use crate::revocation::set::RevocationSet;

use super::etcd::EtcdStore;
use super::host::{call_response_header, Host, HttpCall};
use super::remote_io::{self, Get, Source};
use super::{Counter, Metrics};

/// Shared-data keys. Every key is within the config's revocation scope (`scope_of`): the
/// filter configs of a VM share one process's shared data, and one must never read or clear
/// another's. The generation is part of every key of what was learned: a new
/// `learned_generation` starts from nothing, and the old values are blanked. The polled list
/// is the list service's, whatever the generation: VMs of the old config that still serve
/// keep reading the list they hold while the new ones adopt it.
struct Keys {
    /// Which `learned_generation` this scope is at.
    generation: String,
    learned: String,
    /// Small; read on every request. Changes whenever `learned` does.
    learned_serial: String,
    /// The prefix of the list's keys: the last whole list is shared under it as `indexed`
    /// lays it out (`shared_list`); the deltas since (small) are one value.
    list: String,
    list_overlay: String,
    /// The known `exp` of the list's entries (the rollback guard); read by the fetching VM.
    list_lifetimes: String,
    /// `<checked_at> <base serial> <overlay serial>`: read each tick; the serials say when
    /// `list` or `list_overlay` changed.
    list_checked: String,
    list_lease: String,
}

impl Keys {
    fn new(scope: &str, generation: u64, list: Option<&ListConfig>) -> Self {
        let prefix = format!("bearer_guard.revocation.{scope}.g{generation}");
        let endpoint = list.map_or(String::new(), |l| {
            format!("{}{}", l.endpoint.authority, l.endpoint.path)
        });
        // The index format in the key: a module of another format polls and shares its own.
        let list = format!(
            "bearer_guard.revocation.{scope}.indexed-v{}-list.{endpoint}",
            indexed::FORMAT
        );
        Keys {
            generation: format!("bearer_guard.revocation.{scope}.generation"),
            learned: format!("{prefix}.learned"),
            learned_serial: format!("{prefix}.learned.serial"),
            list_checked: format!("{list}.checked"),
            list_overlay: format!("{list}.overlay"),
            list_lifetimes: format!("{list}.lifetimes"),
            list_lease: format!("{list}.lease"),
            list,
        }
    }

    /// The shared values of the list, as `indexed` reads and writes them.
    fn shared_list(&self, host: &Rc<dyn Host>) -> Rc<SharedList> {
        Rc::new(SharedList {
            host: host.clone(),
            prefix: self.list.clone(),
        })
    }
}

/// A large set's values in shared data (the polled list's, the etcd store's): the head, the
/// index parts, the buckets, under one prefix.
pub(super) struct SharedList {
    pub(super) host: Rc<dyn Host>,
    pub(super) prefix: String,
}

impl SharedList {
    fn key(&self, value: Value) -> String {
        let prefix = &self.prefix;
        match value {
            Value::Head => format!("{prefix}.index"),
            Value::Part(part) => format!("{prefix}.index.{part}"),
            Value::Bucket { bits, index } => format!("{prefix}.bucket.{bits}.{index}"),
        }
    }
}

impl SharedValues for SharedList {
    fn get(&self, value: Value) -> Option<Vec<u8>> {
        get_shared(&*self.host, &self.key(value))
            .0
            .filter(|bytes| !bytes.is_empty())
    }

    fn put(&self, value: Value, bytes: &[u8]) -> bool {
        share_value(&*self.host, &self.key(value), bytes)
    }
}

fn share_value(host: &dyn Host, key: &str, bytes: &[u8]) -> bool {
    match host.set_shared_data(key, bytes, None) {
        Ok(()) => true,
        Err(status) => {
            host.warn(&format!(
                "revocations could not be shared with other workers ({status:?})"
            ));
            false
        }
    }
}

/// A filter config's revocation scope: its Envoy plugin name (`config.name`) and its
/// providers' names and issuers. A reload of the same filter keeps its scope (and what it
/// learned); two filter configs in one VM with another name, or other providers, never share
/// learned revocations or the list, and a `learned_generation` change clears only its own.
pub fn scope_of(plugin_name: &str, providers: &[crate::config::Provider]) -> String {
    let mut parts: Vec<(&str, &str)> = providers
        .iter()
        // No issuer is "" (an empty `issuer` is refused by the config).
        .map(|p| (p.name.as_str(), p.issuer.as_deref().unwrap_or_default()))
        .collect();
    parts.sort_unstable();
    let mut flat = vec![plugin_name];
    flat.extend(parts.iter().flat_map(|(name, issuer)| [*name, *issuer]));
    super::scope_hash(&flat)
}

/// One VM's view of the polled list.
struct ListState {
    config: ListConfig,
    /// The shared serials of the list this VM holds, and when it was last confirmed.
    seen: Option<Checked>,
    /// The poll in flight, the retry after a failure, the outage episode.
    fetch: Fetch,
    /// Whole lists that left out live entries: logged once per episode.
    rollback: Episode,
}

pub struct Revocation {
    config: RevocationConfig,
    keys: Keys,
    /// The learned serial this worker last read.
    learned_seen: RefCell<Option<Vec<u8>>>,
    list: RefCell<Option<ListState>>,
    publish: RefCell<Option<PublishQueue<PublishEntry>>>,
    /// Tokens to revoke at the identity provider (RFC 7009), one per POST.
    idp: RefCell<Option<PublishQueue<String>>>,
    idp_in_flight: RefCell<Option<u32>>,
    publish_in_flight: RefCell<Option<u32>>,
    /// Tokens that authorized requests still in flight, by HTTP context, for `self`.
    authorized: RefCell<HashMap<u32, Box<Authorized>>>,
    pub stale_log: RefCell<LogLimiter>,
    /// This VM has decided requests (a worker); one that has not (Envoy's main thread)
    /// polls the list first, so a large list is parsed off the request path.
    serves_requests: Cell<bool>,
    /// The etcd store (`revocation.etcd`).
    etcd: Option<EtcdStore>,
    host: Rc<dyn Host>,
}

fn get_shared(host: &dyn Host, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    host.shared_data(key).unwrap_or((None, None))
}

impl Revocation {
    /// At configure: pick up what earlier VMs of this process learned and fetched (a config
    /// reload keeps it), or start a new generation.
    /// `plugin_name`: Envoy's name of this filter config (part of its scope, `scope_of`).
    pub fn new(
        shared: Rc<dyn Host>,
        config: RevocationConfig,
        guard: &Guard,
        plugin_name: &str,
    ) -> Self {
        let host = &*shared;
        let scope = scope_of(plugin_name, &guard.config().providers);
        let keys = Keys::new(&scope, config.learned_generation, config.list.as_ref());
        let generation = config.learned_generation.to_string();
        if let (Some(old), _) = get_shared(host, &keys.generation) {
            if old != generation.as_bytes() {
                let old = String::from_utf8_lossy(&old).parse::<u64>().unwrap_or(0);
                let stale = Keys::new(&scope, old, config.list.as_ref());
                let _ = host.set_shared_data(&stale.learned, b"", None);
                host.info(&format!("revocation: learned_generation {old} -> {generation}: revocations learned at run time cleared"));
            }
        }
        let _ = host.set_shared_data(&keys.generation, generation.as_bytes(), None);
        // Shared data has no atomic create: the values exist before any worker CASes them.
        for (key, initial) in [
            (
                &keys.learned,
                Learned::new(config.learned_generation).encode(),
            ),
            (&keys.learned_serial, b"0".to_vec()),
            (&keys.list_lease, b"0".to_vec()),
        ] {
            if matches!(get_shared(host, key), (None, _) | (Some(_), None))
                || get_shared(host, key).0.is_some_and(|v| v.is_empty())
            {
                let _ = host.set_shared_data(key, &initial, None);
            }
        }
        let list = config.list.clone().map(|config| ListState {
            fetch: Fetch::retrying_after(retry_delay(&config)),
            config,
            seen: None,
            rollback: Episode::default(),
        });
        let publish = config
            .publish
            .as_ref()
            .map(|p| PublishQueue::new(BATCH_SIZE, p.queue_size, p.max_attempts));
        let idp = config
            .idp
            .as_ref()
            .map(|i| PublishQueue::new(1, i.queue_size, i.max_attempts));
        let etcd = EtcdStore::new(shared.clone(), &config, guard, &scope);
        let revocation = Revocation {
            etcd,
            keys,
            learned_seen: RefCell::new(None),
            list: RefCell::new(list),
            publish: RefCell::new(publish),
            publish_in_flight: RefCell::new(None),
            idp: RefCell::new(idp),
            idp_in_flight: RefCell::new(None),
            authorized: RefCell::new(HashMap::new()),
            stale_log: RefCell::new(LogLimiter::default()),
            serves_requests: Cell::new(false),
            config,
            host: shared.clone(),
        };
        revocation.read_learned(guard);
        revocation.adopt_list(guard);
        revocation
    }

    pub fn config(&self) -> &RevocationConfig {
        &self.config
    }

    pub fn response_header(&self) -> Option<&str> {
        self.config.response_header.as_deref()
    }

    /// Before each decision: one small shared read; the log itself only when it changed.
    /// This is what makes a revocation on one worker hold on every worker's next request.
    /// `now_ms`: the request's clock reading (the etcd set is looked at every few ms, not on
    /// every request).
    pub fn sync_learned(&self, guard: &Guard, now_ms: Option<i64>) {
        self.serves_requests.set(true);
        self.read_learned(guard);
        if let Some(etcd) = &self.etcd {
            etcd.adopt_if_due(guard, now_ms);
        }
    }

    pub fn etcd(&self) -> Option<&EtcdStore> {
        self.etcd.as_ref()
    }

    /// On the tick: what other workers revoked, for the gauges (a request syncs anyway).
    pub fn refresh_learned(&self, guard: &Guard) {
        self.read_learned(guard);
    }

    fn read_learned(&self, guard: &Guard) {
        let host = &*self.host;
        let (Some(serial), _) = get_shared(host, &self.keys.learned_serial) else {
            return;
        };
        if self.learned_seen.borrow().as_ref() == Some(&serial) {
            return;
        }
        if let (Some(bytes), _) = get_shared(host, &self.keys.learned) {
            if let Some(learned) = Learned::decode(&bytes) {
                guard.state().install_learned(learned.to_sets());
            }
        }
        *self.learned_seen.borrow_mut() = Some(serial);
    }

    pub fn remember(&self, context: u32, token: Box<Authorized>) {
        self.authorized.borrow_mut().insert(context, token);
    }

    pub fn forget(&self, context: u32) {
        self.authorized.borrow_mut().remove(&context);
    }

    /// How many streams' authorizing tokens are held.
    #[cfg(test)]
    pub fn streams_held(&self) -> usize {
        self.authorized.borrow().len()
    }

    /// The upstream's response headers: any revocation header is applied, then removed. The
    /// clock is read only for a response that carries one (most carry none).
    pub fn on_response_headers(&self, context: u32, guard: &Guard, metrics: &Metrics) {
        let host = &*self.host;
        let Some(name) = self.response_header() else {
            return;
        };
        // Envoy answers with the first value only; if there is none there are none.
        let map = MapType::HttpResponseHeaders;
        if !matches!(host.header(map, name), Ok(Some(_))) {
            return;
        }
        let now = super::now_unix_seconds(host).unwrap_or_default();
        // A map the host serialized inconsistently holds no values.
        let serialized = host.headers(map).unwrap_or_default();
        let values: Vec<&[u8]> = header_map::deserialize(&serialized)
            .unwrap_or_default()
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
            .collect();
        if let Err(status) = host.remove_header(map, name) {
            host.warn(&format!(
                "could not remove the {name} response header: {status:?}"
            ));
        }
        let (values, refused) = header_map::text_values(values);
        for size in refused {
            metrics.count(Counter::RevocationHeaderInvalid);
            host.warn(&format!("{name} response header: a value ({size} bytes) is not UTF-8; refused as a whole, nothing revoked from it"));
        }
        let authorized = self.authorized.borrow_mut().remove(&context);
        let mut revoked = FromHeader::default();
        for value in &values {
            let out = from_header(
                value,
                authorized.as_deref(),
                &self.config.header_policy,
                now,
            );
            for problem in &out.problems {
                host.warn(&format!("{name} response header: {problem}"));
                if !matches!(problem, HeaderProblem::SelfWithoutToken) {
                    metrics.count(Counter::HeaderDirectiveRefused);
                }
            }
            revoked.self_revoked |= out.self_revoked;
            revoked.learned.extend(out.learned);
            revoked.publish.extend(out.publish);
        }
        let what = format!("the {name} response header");
        let counter = Counter::RevokedByHeader;
        self.apply(
            revoked,
            authorized.as_deref(),
            &what,
            counter,
            guard,
            metrics,
            now,
        );
    }

    /// Misuse detection (`action: revoke`): the token is revoked like a `self` header would
    /// (every worker, the list service, the IdP when configured).
    pub fn revoke_misused(&self, token: &Authorized, guard: &Guard, metrics: &Metrics, now: i64) {
        let revoked = misuse_entries(token);
        let counter = Counter::RevokedByAnomaly;
        self.apply(
            revoked,
            Some(token),
            "misuse detection",
            counter,
            guard,
            metrics,
            now,
        );
    }

    /// Learns, shares and forwards what a header or the misuse detector revoked.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        revoked: FromHeader,
        authorized: Option<&Authorized>,
        what: &str,
        counter: Counter,
        guard: &Guard,
        metrics: &Metrics,
        now: i64,
    ) {
        let host = &*self.host;
        let FromHeader {
            self_revoked,
            learned,
            publish,
            ..
        } = revoked;
        if let (true, Some(token)) = (self_revoked, authorized) {
            if token.introspected {
                let provider = guard
                    .config()
                    .providers
                    .iter()
                    .find(|p| p.name == token.provider);
                if let Some(scope) = provider.and_then(super::introspection::answer_scope) {
                    super::introspection::forget_answer(host, &scope, &token.token_sha256);
                }
            }
            if let (Some(queue), Some(raw)) = (self.idp.borrow_mut().as_mut(), &token.token) {
                for _ in 0..queue.push([raw.clone()]) {
                    metrics.count(Counter::IdpRevokeDropped);
                }
            }
        }
        if learned.is_empty() {
            return;
        }
        let token_fp = authorized.map_or("-".to_owned(), |a| {
            crate::observe::fingerprint::fingerprint(&a.token_sha256)
        });
        match self.record(&learned, guard, now) {
            Ok(evicted) => {
                for _ in 0..learned.len() {
                    metrics.count(counter);
                }
                if evicted > 0 {
                    for _ in 0..evicted {
                        metrics.count(Counter::LearnedEvicted);
                    }
                    host.warn(&format!(
                        "revocation: {evicted} learned revocations still in force evicted (limit \
                         {}; those expiring soonest first): they no longer apply in this process",
                        crate::revocation::learned::MAX_LEARNED_ENTRIES
                    ));
                }
                host.info(&format!(
                    "revoked {} entr{} by {what} (provider={} token_fp={token_fp})",
                    learned.len(),
                    if learned.len() == 1 { "y" } else { "ies" },
                    authorized.map_or("-", |a| a.provider.as_str()),
                ));
            }
            Err(status) => {
                // Still enforced by this worker (added to what it holds); other workers learn
                // it from the list, if publishing is on.
                host.warn(&format!(
                    "revocation could not be shared with other workers ({status:?})"
                ));
                for _ in 0..learned.len() {
                    metrics.count(counter);
                }
                let mut local = Learned::new(self.config.learned_generation);
                local.append(&learned, now, guard.config().expiry_grace_seconds());
                guard.state().extend_learned(&local.to_sets());
            }
        }
        if let Some(etcd) = &self.etcd {
            etcd.publish(&publish, guard, metrics);
        }
        if let Some(queue) = self.publish.borrow_mut().as_mut() {
            for _ in 0..queue.push(publish) {
                metrics.count(Counter::PublishDropped);
            }
        }
    }

    /// Appends to the shared log by compare-and-swap, then bumps the serial other workers
    /// check on every request. Returns how many old entries the bound evicted.
    fn record(&self, entries: &[LearnedEntry], guard: &Guard, now: i64) -> Result<usize, Status> {
        let host = &*self.host;
        let mut last = Status::CasMismatch;
        for _ in 0..64 {
            let (bytes, cas) = get_shared(host, &self.keys.learned);
            let mut learned = bytes
                .as_deref()
                .and_then(Learned::decode)
                .filter(|l| l.generation == self.config.learned_generation)
                .unwrap_or_else(|| Learned::new(self.config.learned_generation));
            let evicted = learned.append(entries, now, guard.config().expiry_grace_seconds());
            match host.set_shared_data(&self.keys.learned, &learned.encode(), cas) {
                Ok(()) => {
                    let (_, serial_cas) = get_shared(host, &self.keys.learned_serial);
                    let serial = serial_cas.map_or(1, |c| u64::from(c) + 1).to_string();
                    host.set_shared_data(&self.keys.learned_serial, serial.as_bytes(), None)?;
                    guard.state().install_learned(learned.to_sets());
                    // Not marked as seen: another worker may have written after this one, and
                    // the next request reads the log again to pick that up.
                    *self.learned_seen.borrow_mut() = None;
                    return Ok(evicted);
                }
                Err(status) => last = status,
            }
        }
        Err(last)
    }

    /// Each tick: adopt the list another VM fetched, and fetch it if due (one VM of the
    /// process, by lease).
    pub fn drive(&self, guard: &Guard, metrics: &Metrics, now: i64) {
        let host = &*self.host;
        self.adopt_list(guard);
        if let Some(etcd) = &self.etcd {
            etcd.drive(guard, metrics, now);
        }
        self.send_publish(metrics, now);
        self.send_idp(metrics, now);
        let mut list = self.list.borrow_mut();
        let Some(state) = list.as_mut() else {
            return;
        };
        let checked_at = state.seen.map(|c| c.at);
        if let Some(checked) = checked_at {
            let entries = guard.state().revocation_list().map_or(0, |l| l.len());
            metrics.gauge_list_entries(host, u64::try_from(entries).unwrap_or(0), checked);
        }
        let due = list::fetch_due(
            checked_at,
            now,
            state.config.refresh_seconds,
            self.serves_requests.get(),
        );
        if !state.fetch.should_start(due, now) {
            return;
        }
        let held = guard.state().revocation_list();
        let held = held.as_ref().map(HeldList::tag);
        let path = list::request_path(&state.config.endpoint.path, held);
        let get = Get {
            cluster: &state.config.endpoint.cluster,
            path: &path,
            authority: &state.config.endpoint.authority,
            accept: "application/json",
            if_none_match: list::if_none_match(held),
            timeout_ms: state.config.timeout_ms,
        };
        let source = self.list_source();
        remote_io::start_fetch(host, &source, &get, &mut state.fetch, metrics, now);
    }

    /// The list poll, as the fetch shell runs it.
    fn list_source(&self) -> Source<'_> {
        Source {
            lease: &self.keys.list_lease,
            what: "revocation list fetch",
            failed: &[Counter::ListFetchFailed],
        }
    }

    /// Reads the small `checked` value each tick; the base or the overlay only when its
    /// serial moved.
    fn adopt_list(&self, guard: &Guard) {
        let host = &*self.host;
        let mut list = self.list.borrow_mut();
        let Some(state) = list.as_mut() else {
            return;
        };
        let Some(shared) = self.shared_checked() else {
            return;
        };
        let seen = state.seen;
        if seen.map(|s| s.base_serial) != Some(shared.base_serial) {
            // The held list goes first: a large list must not be held twice. A worker holds
            // the index only (it reads the entries a request may need from their bucket), and
            // keeps the parts of it that did not change.
            let held = guard
                .state()
                .take_revocation_list()
                .and_then(|h| h.base.into_index().ok());
            let base = IndexedSet::adopt(self.keys.shared_list(&self.host), held, false).ok();
            let overlay = self.shared_overlay(shared);
            let (Some(base), Ok(overlay)) = (base, overlay) else {
                // Fail closed: no list held means stale, and the stale policy decides.
                host.warn(
                    "revocation list in shared data is unreadable; waiting for the next fetch",
                );
                guard.state().forget_revocation_list();
                state.seen = None;
                return;
            };
            let held = HeldList {
                base: HeldSet::Indexed(Rc::new(base)),
                overlay,
            };
            guard.state().install_revocation_list(held, shared.at);
        } else if seen.map(|s| s.overlay_serial) != Some(shared.overlay_serial) {
            match self.shared_overlay(shared) {
                Ok(overlay) => guard.state().install_revocation_overlay(overlay),
                Err(()) => {
                    host.warn("revocation list overlay in shared data is unreadable; waiting for the next fetch");
                    guard.state().forget_revocation_list();
                    state.seen = None;
                    return;
                }
            }
        }
        guard.state().revocation_list_checked(shared.at);
        // A newer fetch by another VM ends an outage this one logged.
        if seen.is_none_or(|s| shared.at > s.at) {
            remote_io::adopted(host, &mut state.fetch, |failed| {
                format!("revocation list fetch recovered after {failed} failed attempt(s) (fetched by another VM)")
            });
        }
        let at = seen.map_or(shared.at, |s| s.at.max(shared.at));
        state.seen = Some(Checked { at, ..shared });
    }

    /// `Ok(None)`: no overlay; `Err`: there should be one and it cannot be read.
    fn shared_overlay(&self, shared: Checked) -> Result<Option<Rc<RevocationSet>>, ()> {
        let host = &*self.host;
        if shared.overlay_serial == 0 {
            return Ok(None);
        }
        get_shared(host, &self.keys.list_overlay)
            .0
            .and_then(RevocationSet::decode)
            .map(|set| Some(Rc::new(set)))
            .ok_or(())
    }

    fn shared_checked(&self) -> Option<Checked> {
        let host = &*self.host;
        list::decode_checked(&get_shared(host, &self.keys.list_checked).0?)
    }

    /// A response to one of our calls; `false` if the token is not ours.
    pub fn on_call_response(
        &self,
        token: u32,
        body_size: usize,
        guard: &Guard,
        metrics: &Metrics,
        now: i64,
    ) -> bool {
        let host = &*self.host;
        if *self.idp_in_flight.borrow() == Some(token) {
            *self.idp_in_flight.borrow_mut() = None;
            // RFC 7009 §2.2: 200 even for tokens the IdP does not know; the body is ignored.
            let outcome = match call_status(host).as_deref() {
                Some("200") => Ok(()),
                Some(other) => Err(format!("HTTP status {other}")),
                None => Err("no response (timeout or connection failure)".to_owned()),
            };
            if let Some(queue) = self.idp.borrow_mut().as_mut() {
                let settled = queue.settle(outcome.is_ok(), now);
                count_settled(host, &IDP, settled, outcome.err().as_deref(), metrics);
            }
            return true;
        }
        if *self.publish_in_flight.borrow() == Some(token) {
            *self.publish_in_flight.borrow_mut() = None;
            // A 2xx from something other than the list service (an HTML page, garbage) did
            // not store the entries: retried.
            let (status, body) =
                remote_io::call_response(host, body_size, MAX_PUBLISH_RESPONSE_BYTES);
            let outcome = publish_accepted(status.as_deref(), body_size, &body);
            if let Some(queue) = self.publish.borrow_mut().as_mut() {
                let settled = queue.settle(outcome.is_ok(), now);
                count_settled(host, &PUBLISH, settled, outcome.err().as_deref(), metrics);
            }
            return true;
        }
        let mut list = self.list.borrow_mut();
        let Some(state) = list.as_mut().filter(|s| s.fetch.is_call(token)) else {
            return false;
        };
        // Parsing a large list can outlast the fetch lease: renewed so no one polls meanwhile.
        let renewed = lease::fetch_deadline(now, state.config.timeout_ms).saturating_add(60);
        let _ = host.set_shared_data(&self.keys.list_lease, &lease::held_until(renewed), None);
        self.apply_list_response(state, body_size, guard, metrics, now);
        // Only now: another VM must not poll while this one is still parsing and sharing.
        remote_io::release_lease(host, &self.keys.list_lease);
        true
    }

    fn apply_list_response(
        &self,
        state: &mut ListState,
        body_size: usize,
        guard: &Guard,
        metrics: &Metrics,
        now: i64,
    ) {
        let host = &*self.host;
        let status = call_status(host);
        // A 200 is applied against the whole list (deltas, the rollback guard).
        let whole = status.as_deref() != Some("200") || self.hold_whole_list(guard);
        let held = guard.state().revocation_list();
        let update = if whole {
            self.read_update(state, status, body_size, held.as_ref(), guard, now)
        } else {
            Err(list::ListError::HeldUnreadable)
        };
        let shared = self.shared_checked().unwrap_or_default();
        let seen = state.seen.unwrap_or(shared);
        let (confirmed, shared_ok) = match update {
            Ok(ListUpdate::NotModified) => {
                metrics.count(Counter::ListNotModified);
                guard.state().revocation_list_checked(now);
                (Checked { at: now, ..seen }, true)
            }
            Ok(ListUpdate::Replaced {
                base,
                expired_dropped,
                kept,
                lifetimes,
            }) => {
                drop(held);
                note_rollback(host, &mut state.rollback, kept, metrics);
                let fetched = Fetched {
                    set: base,
                    expired_dropped,
                    lifetimes,
                };
                self.install_replaced(fetched, guard, metrics, (seen, shared), now)
            }
            Ok(ListUpdate::Extended {
                overlay,
                expired_dropped,
                lifetimes,
            }) => {
                let fetched = Fetched {
                    set: overlay,
                    expired_dropped,
                    lifetimes,
                };
                self.install_delta(fetched, held, guard, metrics, (seen, shared), now)
            }
            Err(e) => {
                let confirmed = state
                    .seen
                    .map_or("never".to_owned(), |c| format!("{}s ago", now - c.at));
                remote_io::failed(
                    host,
                    &mut state.fetch,
                    now,
                    metrics,
                    &self.list_source(),
                    || {
                        format!("revocation list fetch failed: {e}; list last confirmed {confirmed} (logged once until a fetch works)")
                    },
                );
                return;
            }
        };
        remote_io::succeeded(host, &mut state.fetch, metrics, &[], |failed| {
            format!("revocation list fetch recovered after {failed} failed attempt(s)")
        });
        state.seen = Some(confirmed);
        // Only a list the others can read is announced; otherwise they poll themselves.
        if shared_ok {
            let value = list::encode_checked(confirmed);
            let _ = host.set_shared_data(&self.keys.list_checked, &value, None);
        }
    }

    /// The poll's answer, read as a stream against the held list (a 304 changes nothing).
    fn read_update(
        &self,
        state: &ListState,
        status: Option<String>,
        body_size: usize,
        held: Option<&HeldList>,
        guard: &Guard,
        now: i64,
    ) -> Result<ListUpdate, list::ListError> {
        let host = &*self.host;
        // A 304 keeps whatever is held, a worker's index included: only a 200 is applied
        // against the whole list.
        if status.as_deref() == Some("304") && held.is_some() {
            return Ok(ListUpdate::NotModified);
        }
        let etag = call_response_header(host, "etag");
        let body = BufReader::with_capacity(
            64 * 1024,
            CallBody {
                host,
                offset: 0,
                size: body_size,
            },
        );
        // Read only for a 200 (a 304 changes nothing) and only with the rollback guard on.
        let known = (!state.config.allow_removal && status.as_deref() == Some("200"))
            .then(|| self.shared_lifetimes());
        // Entries are kept until their token's exp + the clock skew, not just exp.
        list::accept_response(
            status.as_deref(),
            etag.as_deref(),
            body,
            held.and_then(HeldList::held),
            known.as_ref(),
            now.saturating_sub(guard.config().expiry_grace_seconds()),
        )
    }

    /// A worker holds the list's index; to apply a fetched list itself it needs the whole
    /// list, read back from the buckets (and held from then on). `false`: they cannot be read.
    fn hold_whole_list(&self, guard: &Guard) -> bool {
        let Some(HeldSet::Indexed(index)) = guard.state().revocation_list().map(|h| h.base) else {
            return true;
        };
        let Some(whole) = index.assemble() else {
            return false;
        };
        guard
            .state()
            .replace_revocation_base(HeldSet::Whole(Rc::new(whole)));
        true
    }

    /// A whole new list: shared (the large value first, then the small one that tells the
    /// others to read it) and installed. Returns what to announce, and whether the others can
    /// read it.
    fn install_replaced(
        &self,
        fetched: Fetched,
        guard: &Guard,
        metrics: &Metrics,
        (seen, shared): (Checked, Checked),
        now: i64,
    ) -> (Checked, bool) {
        let host = &*self.host;
        let Fetched {
            set: base,
            expired_dropped,
            lifetimes,
        } = fetched;
        metrics.count(Counter::ListFetchOk);
        log_list(host, "fetched", &base, base.len(), expired_dropped);
        let mut shared_ok = self.share_lifetimes(lifetimes.as_ref());
        shared_ok &= self.share_base(&base);
        guard
            .state()
            .install_revocation_list(HeldList::whole(base, None), now);
        let confirmed = Checked {
            at: now,
            base_serial: shared.base_serial.max(seen.base_serial) + 1,
            overlay_serial: 0,
        };
        (confirmed, shared_ok)
    }

    /// Deltas over the held base: shared and installed as the overlay. `held` is dropped
    /// before the overlay is installed (a large list is not held twice).
    fn install_delta(
        &self,
        fetched: Fetched,
        held: Option<HeldList>,
        guard: &Guard,
        metrics: &Metrics,
        (seen, shared): (Checked, Checked),
        now: i64,
    ) -> (Checked, bool) {
        let host = &*self.host;
        let Fetched {
            set: overlay,
            expired_dropped,
            lifetimes,
        } = fetched;
        metrics.count(Counter::ListFetchOk);
        let mut shared_ok = self.share_lifetimes(lifetimes.as_ref());
        let total = held.as_ref().map_or(0, HeldList::base_len) + overlay.len();
        log_list(host, "updated by a delta", &overlay, total, expired_dropped);
        let mut confirmed = Checked {
            at: now,
            base_serial: seen.base_serial,
            overlay_serial: shared.overlay_serial.max(seen.overlay_serial) + 1,
        };
        // Held a base the others no longer share (a lost race): share ours too.
        if seen.base_serial != shared.base_serial {
            if let Some(HeldSet::Whole(base)) = held.as_ref().map(|h| &h.base) {
                shared_ok &= self.share_base(base);
            }
            confirmed.base_serial = shared.base_serial.max(seen.base_serial) + 1;
        }
        drop(held);
        shared_ok &= self.share(&self.keys.list_overlay, &overlay);
        guard
            .state()
            .install_revocation_overlay(Some(Rc::new(overlay)));
        guard.state().revocation_list_checked(now);
        (confirmed, shared_ok)
    }

    /// The known `exp` of the held list's entries; none stored (or unreadable): none known,
    /// so every held entry counts as live (kept rather than un-revoked).
    fn shared_lifetimes(&self) -> Lifetimes {
        let host = &*self.host;
        get_shared(host, &self.keys.list_lifetimes)
            .0
            .and_then(|bytes| Lifetimes::decode(&bytes))
            .unwrap_or_default()
    }

    /// `None`: unchanged (or the guard is off), nothing to write.
    fn share_lifetimes(&self, lifetimes: Option<&Lifetimes>) -> bool {
        let host = &*self.host;
        let Some(lifetimes) = lifetimes else {
            return true;
        };
        match host.set_shared_data(&self.keys.list_lifetimes, &lifetimes.encode(), None) {
            Ok(()) => true,
            Err(status) => {
                host.warn(&format!(
                    "revocation list lifetimes could not be shared ({status:?})"
                ));
                false
            }
        }
    }

    /// A whole list, as workers read it (`indexed::share`: only what changed is written).
    fn share_base(&self, base: &RevocationSet) -> bool {
        indexed::share(base, &*self.keys.shared_list(&self.host))
    }

    fn share(&self, key: &str, set: &RevocationSet) -> bool {
        share_value(&*self.host, key, set.as_bytes())
    }

    fn send_publish(&self, metrics: &Metrics, now: i64) {
        let host = &*self.host;
        let Some(config) = &self.config.publish else {
            return;
        };
        let mut queue = self.publish.borrow_mut();
        let Some(queue) = queue.as_mut() else {
            return;
        };
        let Some(batch) = queue.next_batch(now) else {
            return;
        };
        let body = render(&batch);
        let headers = vec![
            (":method", "POST"),
            (":path", config.endpoint.path.as_str()),
            (":authority", config.endpoint.authority.as_str()),
            ("content-type", "application/json"),
        ];
        let call = HttpCall {
            cluster: &config.endpoint.cluster,
            headers: &headers,
            body: Some(body.as_bytes()),
            timeout_ms: config.timeout_ms,
        };
        *self.publish_in_flight.borrow_mut() = post(host, &call, queue, &PUBLISH, metrics, now);
    }

    /// RFC 7009: one queued token per POST to the identity provider.
    fn send_idp(&self, metrics: &Metrics, now: i64) {
        let host = &*self.host;
        let Some(config) = &self.config.idp else {
            return;
        };
        let mut queue = self.idp.borrow_mut();
        let Some(queue) = queue.as_mut() else {
            return;
        };
        let Some(token) = queue.next_batch(now).and_then(|b| b.into_iter().next()) else {
            return;
        };
        let (headers, body) = token_post(&config.client, &token);
        let headers = header_map::as_str_pairs(&headers);
        let call = HttpCall {
            cluster: &config.client.endpoint.cluster,
            headers: &headers,
            body: Some(body.as_bytes()),
            timeout_ms: config.client.timeout_ms,
        };
        *self.idp_in_flight.borrow_mut() = post(host, &call, queue, &IDP, metrics, now);
    }
}

/// POSTs the next of an outgoing queue (the list service's publish, the IdP's revocation):
/// the call in flight; a POST not sent is settled as a failed attempt.
fn post<T: Clone>(
    host: &dyn Host,
    call: &HttpCall,
    queue: &mut PublishQueue<T>,
    counters: &QueueCounters,
    metrics: &Metrics,
    now: i64,
) -> Option<u32> {
    match host.dispatch_http_call(call) {
        Ok(call) => Some(call),
        Err(status) => {
            let settled = queue.not_sent(now);
            let why = format!("not sent: {status:?}");
            count_settled(host, counters, settled, Some(&why), metrics);
            None
        }
    }
}

/// The counters and log name of one outgoing queue.
pub(super) struct QueueCounters {
    pub(super) what: &'static str,
    pub(super) ok: Counter,
    pub(super) failed: Counter,
    pub(super) dropped: Counter,
}

const PUBLISH: QueueCounters = QueueCounters {
    what: "revocation publish",
    ok: Counter::PublishOk,
    failed: Counter::PublishFailed,
    dropped: Counter::PublishDropped,
};

const IDP: QueueCounters = QueueCounters {
    what: "token revocation at the identity provider",
    ok: Counter::IdpRevokeOk,
    failed: Counter::IdpRevokeFailed,
    dropped: Counter::IdpRevokeDropped,
};

/// `why`: what went wrong with a failed attempt, for the log.
pub(super) fn count_settled(
    host: &dyn Host,
    queue: &QueueCounters,
    settled: crate::revocation::publish::Settled,
    why: Option<&str>,
    metrics: &Metrics,
) {
    for _ in 0..settled.published {
        metrics.count(queue.ok);
    }
    if let Some(failed) = settled.recovered_after {
        host.info(&format!(
            "{} recovered after {failed} failed attempt(s)",
            queue.what
        ));
    }
    if settled.failed_attempt {
        metrics.count(queue.failed);
        if settled.starts_episode {
            host.warn(&format!(
                "{} failed ({}); will retry (logged once until it works)",
                queue.what,
                why.unwrap_or("no response")
            ));
        }
    }
    for _ in 0..settled.dropped {
        metrics.count(queue.dropped);
    }
    if settled.dropped > 0 {
        host.warn(&format!(
            "{}: {} entries dropped after repeated failures",
            queue.what, settled.dropped
        ));
    }
}

/// A whole list that left out live entries (kept): counted each time, logged once per
/// episode (a rolled-back service answers the same on every poll).
fn note_rollback(host: &dyn Host, episode: &mut Episode, kept: usize, metrics: &Metrics) {
    if kept == 0 {
        if let Some(lists) = episode.recovered() {
            host.info(&format!("revocation list: a whole list holds every live entry again (after {lists} that did not)"));
        }
        return;
    }
    metrics.count(Counter::ListRollback);
    if episode.failed() {
        host.warn(&format!(
            "revocation list: a whole list left out {kept} revoked entries whose tokens may still be valid \
             (a rolled-back or stale list service?); kept them until their exp \
             (revocation.list.allow_removal: true lets a list un-revoke; logged once until a list holds them again)"
        ));
    }
}

fn log_list(
    host: &dyn Host,
    what: &str,
    set: &RevocationSet,
    total: usize,
    expired_dropped: usize,
) {
    host.info(&format!(
        "revocation list {what}: {total} entries, version {:?}{}",
        set.version,
        if expired_dropped > 0 {
            format!(", {expired_dropped} expired entries skipped")
        } else {
            String::new()
        }
    ));
}

/// A list polled more often than the common retry delay retries as often as it polls.
fn retry_delay(config: &ListConfig) -> i64 {
    i64::try_from(config.refresh_seconds).unwrap_or(i64::MAX)
}

fn call_status(host: &dyn Host) -> Option<String> {
    call_response_header(host, ":status")
}

/// The call's response body, read from the host in chunks (a large list is never copied
/// into wasm whole).
struct CallBody<'h> {
    host: &'h dyn Host,
    offset: usize,
    size: usize,
}

impl Read for CallBody<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let want = out.len().min(self.size.saturating_sub(self.offset));
        if want == 0 {
            return Ok(0);
        }
        let chunk = self
            .host
            .buffer(BufferType::HttpCallResponseBody, self.offset, want)
            .map_err(|s| std::io::Error::other(format!("{s:?}")))?
            .unwrap_or_default();
        let n = chunk.len().min(want);
        if n == 0 {
            return Ok(0);
        }
        if let (Some(dst), Some(src)) = (out.get_mut(..n), chunk.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.offset += n;
        Ok(n)
    }
}

/// What a poll's answer brought: a whole list or the deltas since the held one, with what it
/// dropped as expired and the `exp` of its entries.
struct Fetched {
    set: RevocationSet,
    expired_dropped: usize,
    lifetimes: Option<Lifetimes>,
}
