//! The host side of the etcd revocation store (`revocation.etcd`). One VM per process, by a
//! lease in shared data, reads the prefix (`KV/Range`, paged, at one revision) and holds a
//! `Watch` from the next revision over a gRPC stream through the configured cluster; it
//! builds the set every worker enforces and shares it (the set, then a small `checked` value
//! `<in sync at> <serial> <revision>`). Every VM adopts what is shared on its tick and before a
//! decision at most every 20 ms (one small read), and writes what it learns at run time
//! (response headers, misuse detection) to etcd: a lease grant, then one transaction of puts
//! per batch.
//!
//! What to ask etcd next and what its answers mean are the sans-IO `remote::watch` and
//! `revocation::etcd`'s; this module only moves bytes and logs.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use prost::Message;
use proxy_wasm::types::BufferType;

use crate::decide::guard::{Guard, HeldSet};
use crate::observe::episode::Episode;
use crate::remote::lease;
use crate::remote::watch::{Action, Changes, PrefixWatch, Refused};
use crate::revocation::config::RevocationConfig;
use crate::revocation::doc::PublishEntry;
use crate::revocation::etcd::config::EtcdConfig;
use crate::revocation::etcd::held::{subject_of, Applied, HeldStore};
use crate::revocation::etcd::layout::{
    from_learned, key_for, lease_seconds, value_for, NotWritten, StoreEntry, MAX_VALUE_BYTES,
};
use crate::revocation::etcd::proto::{
    AuthenticateRequest, AuthenticateResponse, Compare, LeaseGrantRequest, LeaseGrantResponse,
    PutRequest, RangeRequest, RangeResponse, RequestOp, RequestUnion, TxnRequest, TxnResponse,
    WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse, MAX_MESSAGE_BYTES,
};
use crate::revocation::indexed::{self, IndexedSet};
use crate::revocation::publish::{PublishQueue, BATCH_SIZE};

use super::host::{GrpcMethod, Host};
use super::metrics::{Counter, Metrics};
use super::revocation::{count_settled, QueueCounters, SharedList};

/// The reader renews its lease every tick; another VM takes over this long after the reader
/// stopped (its VM was replaced, say). What is shared stays enforced meanwhile.
const READER_LEASE_SECONDS: i64 = 5;
/// A set of at most this many entries is built and shared as soon as a watch event lands;
/// a larger one at the next tick, so a burst of events costs one build per tick.
const BUILD_AT_ONCE: usize = 100_000;
/// A worker looks at the shared set before a decision at most this often (and on every
/// tick): what bounds how late a put reaches it after the reader applied it.
const ADOPT_EVERY_MS: i64 = 20;
/// After a failed `Authenticate`, the next try waits this long, doubling up to the cap: each
/// one costs etcd a bcrypt check, and a mesh-wide wrong password must not flood it.
const AUTH_RETRY_SECONDS: i64 = 5;
const AUTH_RETRY_MAX_SECONDS: i64 = 300;
/// A quiet watch is asked for progress after a third of `max_stale_seconds`, at most this:
/// what is held trails etcd by no more than that while the watch is live.
const QUIET_SECONDS_MAX: i64 = 10;
/// gRPC status codes that mean the auth token is no good (UNAUTHENTICATED; etcd answers an
/// expired simple token with INVALID_ARGUMENT "invalid auth token").
const GRPC_UNAUTHENTICATED: u32 = 16;
const GRPC_INVALID_ARGUMENT: u32 = 3;

const WRITES: QueueCounters = QueueCounters {
    what: "revocation write to etcd",
    ok: Counter::EtcdPublishOk,
    failed: Counter::EtcdPublishFailed,
    dropped: Counter::EtcdPublishDropped,
};

/// Shared-data keys, within the config's revocation scope and this store: everything that
/// changes what is read or built (cluster, prefix, credentials, the expiry grace the set is
/// built with). Two configs that differ in one of them (a password rotation, a larger clock
/// skew) never share a reader or a set.
struct Keys {
    /// The prefix of the set's values, as `indexed` lays them out.
    set: String,
    checked: String,
    lease: String,
}

impl Keys {
    fn new(scope: &str, config: &EtcdConfig, grace: i64) -> Self {
        let (user, password) = config
            .credentials
            .as_ref()
            .map_or(("", ""), |c| (c.username.as_str(), c.password.as_str()));
        let grace = grace.to_string();
        let store = super::scope_hash(&[&config.cluster, &config.prefix, user, password, &grace]);
        // The index format in the key: a module of another format reads and shares its own.
        let base = format!(
            "bearer_guard.etcd-indexed-v{}.{scope}.{store}",
            indexed::FORMAT
        );
        Keys {
            set: format!("{base}.set"),
            checked: format!("{base}.checked"),
            lease: format!("{base}.lease"),
        }
    }

    fn shared_set(&self, host: &Rc<dyn Host>) -> Rc<SharedList> {
        Rc::new(SharedList {
            host: host.clone(),
            prefix: self.set.clone(),
        })
    }
}

/// What the small shared value says: when what is shared was last known to be in sync with
/// etcd (`None`: never), which set is shared, and the etcd revision it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Checked {
    in_sync_at: Option<i64>,
    serial: u64,
    revision: i64,
}

/// `<in sync at> <serial> <revision>` (0: never in sync).
fn encode_checked(checked: Checked) -> Vec<u8> {
    let Checked {
        in_sync_at,
        serial,
        revision,
    } = checked;
    format!("{} {serial} {revision}", in_sync_at.unwrap_or(0)).into_bytes()
}

fn decode_checked(bytes: &[u8]) -> Option<Checked> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut fields = text.split(' ').map(str::parse::<i64>);
    let (Some(Ok(at)), Some(Ok(serial)), Some(Ok(revision)), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return None;
    };
    Some(Checked {
        in_sync_at: (at > 0).then_some(at),
        serial: u64::try_from(serial).ok()?,
        revision,
    })
}

/// The reading VM's state: the watch machine, the prefix as held, and its gRPC traffic.
struct Reader {
    watch: PrefixWatch,
    held: HeldStore,
    range_call: Option<u32>,
    stream: Option<u32>,
    /// The lease value this VM last wrote (it still holds the lease while it reads it back).
    lease: Vec<u8>,
    /// The pages of a read in progress (what is enforced stays `held` until it is whole).
    staging: Option<HeldStore>,
    /// Changes applied but not yet shared.
    dirty: bool,
    /// The in-sync time last shared.
    shared_in_sync: Option<i64>,
    /// The etcd revision of the last set built.
    built_revision: i64,
}

#[derive(Default)]
struct Auth {
    token: Option<String>,
    call: Option<u32>,
    not_before: i64,
    /// The wait after the next failure (0: the first, `AUTH_RETRY_SECONDS`).
    retry_after: i64,
    episode: Episode,
}

impl Auth {
    fn failed(&mut self, now: i64) -> bool {
        let wait = self.retry_after.max(AUTH_RETRY_SECONDS);
        self.not_before = now.saturating_add(wait);
        self.retry_after = wait.saturating_mul(2).min(AUTH_RETRY_MAX_SECONDS);
        self.episode.failed()
    }
}

/// The step of the batch being written: a lease for it, then the transaction.
enum Step {
    Granting { call: u32, plan: Plan },
    Writing { call: u32 },
}

/// What a batch writes: its entries but the subject cutoffs etcd already holds at least as
/// late (in the set this VM adopted), and the keys of the subject cutoffs it does write,
/// which must not have changed since that set's revision (a later cutoff written meanwhile
/// must never be lowered: the transaction fails and the batch is tried again).
struct Plan {
    puts: Vec<StoreEntry>,
    guarded: Vec<Vec<u8>>,
    revision: i64,
}

pub struct EtcdStore {
    config: EtcdConfig,
    keys: Keys,
    host: Rc<dyn Host>,
    /// Entries stay in the set until their token's `exp` plus this (the largest skew).
    grace: i64,
    seen_serial: Cell<Option<u64>>,
    /// The etcd revision of the set this VM holds (0: none): writes of subject cutoffs are
    /// made against it.
    seen_revision: Cell<i64>,
    /// When a request last looked at the shared set (`adopt_if_due`), ms.
    adopted_at_ms: Cell<i64>,
    /// A shared set that did not decode (logged once).
    unreadable_serial: Cell<Option<u64>>,
    reader: RefCell<Option<Reader>>,
    auth: RefCell<Auth>,
    queue: RefCell<PublishQueue<StoreEntry>>,
    step: RefCell<Option<Step>>,
}

impl EtcdStore {
    pub fn new(
        host: Rc<dyn Host>,
        config: &RevocationConfig,
        guard: &Guard,
        scope: &str,
    ) -> Option<Self> {
        let etcd = config.etcd.clone()?;
        let grace = guard.config().expiry_grace_seconds();
        let keys = Keys::new(scope, &etcd, grace);
        // Shared data cannot be created atomically: the lease exists before anyone CASes it.
        if matches!(host.shared_data(&keys.lease), Ok((None, _)) | Err(_)) {
            let _ = host.set_shared_data(&keys.lease, lease::FREE, None);
        }
        let store = EtcdStore {
            keys,
            host,
            grace,
            seen_serial: Cell::new(None),
            seen_revision: Cell::new(0),
            unreadable_serial: Cell::new(None),
            adopted_at_ms: Cell::new(i64::MIN),
            reader: RefCell::new(None),
            auth: RefCell::new(Auth::default()),
            queue: RefCell::new(PublishQueue::new(
                BATCH_SIZE,
                crate::revocation::config::DEFAULT_PUBLISH_QUEUE_SIZE,
                crate::revocation::config::DEFAULT_PUBLISH_MAX_ATTEMPTS,
            )),
            step: RefCell::new(None),
            config: etcd,
        };
        store.adopt(guard);
        Some(store)
    }

    /// Before a decision: `adopt`, unless this VM looked less than `ADOPT_EVERY_MS` ago. A
    /// shared-data read on every request costs more than the rest of a cache hit; a put is
    /// still refused on every worker within that much of the reader applying it.
    pub fn adopt_if_due(&self, guard: &Guard, now_ms: Option<i64>) {
        if let Some(now_ms) = now_ms {
            let last = self.adopted_at_ms.get();
            if now_ms >= last && now_ms.saturating_sub(last) < ADOPT_EVERY_MS {
                return;
            }
            self.adopted_at_ms.set(now_ms);
        }
        self.adopt_as(guard, true);
    }

    /// Picks up the set the reader shared, if it changed, and when it was last in sync. One
    /// small shared read when nothing changed.
    pub fn adopt(&self, guard: &Guard) {
        self.adopt_as(guard, false);
    }

    /// `before_a_decision`: a shared set found unreadable is tried again on the next tick, not
    /// before every request (each try reads the index parts that changed).
    fn adopt_as(&self, guard: &Guard, before_a_decision: bool) {
        let host = &*self.host;
        let Ok((Some(bytes), _)) = host.shared_data(&self.keys.checked) else {
            return;
        };
        let Some(Checked {
            in_sync_at,
            serial,
            revision,
        }) = decode_checked(&bytes)
        else {
            return;
        };
        if self.seen_serial.get() != Some(serial) {
            if before_a_decision && self.unreadable_serial.get() == Some(serial) {
                return;
            }
            // The index held goes in, so its unchanged parts are kept; it stays whole until
            // the new one is read (what this VM holds stays enforced if that fails).
            let (index, whole) = match guard.state().take_etcd().map(HeldSet::into_index) {
                Some(Ok(index)) => (Some(index), None),
                Some(Err(held)) => (None, Some(held)),
                None => (None, None),
            };
            let adopted = IndexedSet::adopt(self.keys.shared_set(&self.host), index, true);
            let set = match adopted {
                Ok(set) => set,
                Err(index) => {
                    let kept = index
                        .map(|index| HeldSet::Indexed(Rc::new(index)))
                        .or(whole);
                    guard.state().install_etcd(kept);
                    // The staleness clock is not advanced. Said once per shared set, not on
                    // every request.
                    if self.unreadable_serial.replace(Some(serial)) != Some(serial) {
                        host.warn(
                            "etcd revocations in shared data are unreadable; keeping what is held",
                        );
                    }
                    return;
                }
            };
            drop(whole);
            guard
                .state()
                .install_etcd(Some(HeldSet::Indexed(Rc::new(set))));
            self.seen_serial.set(Some(serial));
            self.seen_revision.set(revision);
        }
        if let Some(at) = in_sync_at {
            guard.state().etcd_confirmed(at);
        }
    }

    /// Each tick: adopt, hold or take the reader's lease, drive the reader, write what was
    /// learned.
    pub fn drive(&self, guard: &Guard, metrics: &Metrics, now: i64) {
        self.adopt(guard);
        if self.hold_lease(now) {
            self.drive_reader(guard, metrics, now);
        }
        self.send_writes(guard, metrics, now);
    }

    /// Whether this VM is the reader after this tick: renews its lease, or takes a free one.
    fn hold_lease(&self, now: i64) -> bool {
        let host = &*self.host;
        let Ok((value, cas)) = host.shared_data(&self.keys.lease) else {
            return false;
        };
        let mut reader = self.reader.borrow_mut();
        let ours = reader
            .as_ref()
            .is_some_and(|r| Some(&r.lease) == value.as_ref());
        if reader.is_some() && !ours {
            // Another VM took over (this one stalled past the lease): stop reading.
            if let Some(stream) = reader.as_ref().and_then(|r| r.stream) {
                let _ = host.cancel_grpc_stream(stream);
            }
            *reader = None;
            host.info("etcd: another VM of this process reads etcd now");
        }
        let free = cas.is_some() && lease::lease_free(value.as_deref(), now);
        if !ours && !free {
            return false;
        }
        let renewed = lease::held_until(now.saturating_add(READER_LEASE_SECONDS));
        if host
            .set_shared_data(&self.keys.lease, &renewed, cas)
            .is_err()
        {
            return reader.is_some();
        }
        match reader.as_mut() {
            Some(r) => r.lease = renewed,
            None => {
                let quiet = i64::try_from(self.config.max_stale_seconds / 3)
                    .unwrap_or(i64::MAX)
                    .clamp(1, QUIET_SECONDS_MAX);
                *reader = Some(Reader {
                    watch: PrefixWatch::new(self.config.prefix.as_bytes())
                        .with_value_limit(MAX_VALUE_BYTES)
                        .with_liveness(quiet),
                    held: HeldStore::new(&self.config.prefix),
                    range_call: None,
                    stream: None,
                    lease: renewed,
                    staging: None,
                    dirty: false,
                    shared_in_sync: None,
                    built_revision: 0,
                });
            }
        }
        true
    }

    fn drive_reader(&self, guard: &Guard, metrics: &Metrics, now: i64) {
        if !self.authenticated(now) {
            return;
        }
        let mut reader = self.reader.borrow_mut();
        let Some(reader) = reader.as_mut() else {
            return;
        };
        if let Some(refused) = reader.watch.check_alive(now) {
            self.refused(reader, refused, metrics, Half::Watch);
        }
        // A few actions at most: each one changes the machine's state (sent, opened, failed).
        for _ in 0..4 {
            if !self.drive_next(reader, metrics, now) {
                break;
            }
        }
        self.share(reader, guard, now, true);
    }

    fn method<'a>(
        &'a self,
        service: &'a str,
        method: &'a str,
        metadata: &'a [(&'a str, &'a [u8])],
    ) -> GrpcMethod<'a> {
        GrpcMethod {
            cluster: &self.config.cluster,
            service,
            method,
            metadata,
        }
    }

    /// Calls a unary method with the auth token, if any.
    fn call(
        &self,
        service: &str,
        method: &str,
        message: &[u8],
    ) -> Result<u32, proxy_wasm::types::Status> {
        let auth = self.auth.borrow();
        let metadata = with_token(&auth, None);
        let method = self.method(service, method, &metadata);
        self.host
            .dispatch_grpc_call(&method, message, self.config.timeout_ms)
    }

    fn send_range(&self, reader: &mut Reader, request: &RangeRequest, metrics: &Metrics, now: i64) {
        match self.call("etcdserverpb.KV", "Range", &request.encode_to_vec()) {
            Ok(call) => reader.range_call = Some(call),
            Err(status) => {
                let why = format!("not sent: {status:?} (is the cluster defined, with HTTP/2?)");
                self.read_failed(reader, &why, metrics, now);
            }
        }
    }

    fn open_watch(
        &self,
        reader: &mut Reader,
        create: WatchCreateRequest,
        metrics: &Metrics,
        now: i64,
    ) {
        let host = &*self.host;
        let auth = self.auth.borrow();
        // etcd's `WithRequireLeader`: a member cut off from the quorum cancels the watch
        // instead of keeping it open and silent.
        let metadata = with_token(&auth, Some(("hasleader", b"true")));
        let method = self.method("etcdserverpb.Watch", "Watch", &metadata);
        let opened = host.open_grpc_stream(&method).and_then(|stream| {
            let request = WatchRequest::from(create).encode_to_vec();
            match host.send_grpc_stream_message(stream, &request) {
                Ok(()) => Ok(stream),
                Err(status) => {
                    let _ = host.cancel_grpc_stream(stream);
                    Err(status)
                }
            }
        });
        drop(auth);
        match opened {
            Ok(stream) => reader.stream = Some(stream),
            Err(status) => {
                let why = format!("not opened: {status:?} (is the cluster defined, with HTTP/2?)");
                self.watch_broke(reader, &why, metrics, now);
            }
        }
    }

    /// Builds and shares the set when something changed (`at_tick`: also a large one), and
    /// the in-sync time when it moved.
    fn share(&self, reader: &mut Reader, guard: &Guard, now: i64, at_tick: bool) {
        let host = &*self.host;
        let in_sync = reader.watch.in_sync_at();
        let build = reader.dirty && (at_tick || reader.held.len() <= BUILD_AT_ONCE);
        if reader.dirty && !build {
            // What is shared is behind what is held: it must not be called in sync (a
            // request let go on that word would be decided without the new entries).
            return;
        }
        if !build && in_sync == reader.shared_in_sync {
            return;
        }
        let shared = host
            .shared_data(&self.keys.checked)
            .ok()
            .and_then(|(bytes, _)| decode_checked(&bytes?));
        let mut serial = shared.map_or(0, |c| c.serial);
        if build {
            let set = Rc::new(reader.held.build(now.saturating_sub(self.grace), ""));
            serial = serial.max(self.seen_serial.get().unwrap_or(0)) + 1;
            // Only what changed is written (a put: one bucket and one index part), and the
            // others read only that.
            let shared = indexed::share(&set, &*self.keys.shared_set(&self.host));
            // Enforced here in any case; if it could not be shared, the others keep what they
            // hold (`share` said why).
            guard.state().install_etcd(Some(HeldSet::Whole(set)));
            if !shared {
                return;
            }
            self.seen_serial.set(Some(serial));
            reader.built_revision = reader.watch.revision().unwrap_or(0);
            self.seen_revision.set(reader.built_revision);
            reader.dirty = false;
        }
        let checked = Checked {
            in_sync_at: in_sync,
            serial,
            revision: reader.built_revision,
        };
        if host
            .set_shared_data(&self.keys.checked, &encode_checked(checked), None)
            .is_ok()
        {
            reader.shared_in_sync = in_sync;
        }
        if let Some(at) = in_sync {
            guard.state().etcd_confirmed(at);
        }
    }

    /// Whether calls may go out: no credentials configured, or a token held. Sends the
    /// `Authenticate` when one is needed.
    fn authenticated(&self, now: i64) -> bool {
        let Some(credentials) = &self.config.credentials else {
            return true;
        };
        let mut auth = self.auth.borrow_mut();
        if auth.token.is_some() {
            return true;
        }
        if auth.call.is_some() || now < auth.not_before {
            return false;
        }
        let request = AuthenticateRequest {
            name: credentials.username.clone(),
            password: credentials.password.clone(),
        };
        let method = self.method("etcdserverpb.Auth", "Authenticate", &[]);
        match self.host.dispatch_grpc_call(
            &method,
            &request.encode_to_vec(),
            self.config.timeout_ms,
        ) {
            Ok(call) => auth.call = Some(call),
            Err(status) => {
                if auth.failed(now) {
                    self.host.warn(&format!("etcd authentication not sent: {status:?} (is cluster {:?} defined, with HTTP/2?)", self.config.cluster));
                }
            }
        }
        false
    }

    /// A gRPC status that says the auth token is no good: forget it (a new one is asked for).
    fn check_auth(&self, status: u32, message: Option<&str>) {
        let invalid_token =
            status == GRPC_INVALID_ARGUMENT && message.is_some_and(|m| m.contains("auth token"));
        if status == GRPC_UNAUTHENTICATED || invalid_token {
            self.auth.borrow_mut().token = None;
        }
    }

    /// The answer of a unary call; `false` when it is not one of this store's.
    pub fn on_grpc_call_response(
        &self,
        call: u32,
        status: u32,
        size: usize,
        guard: &Guard,
        metrics: &Metrics,
        now: i64,
    ) -> bool {
        if self.auth.borrow().call == Some(call) {
            self.on_auth_response(status, size, now);
            return true;
        }
        let range = self.reader.borrow().as_ref().and_then(|r| r.range_call) == Some(call);
        if range {
            self.on_range_response(status, size, guard, metrics, now);
            return true;
        }
        let step = self.step.borrow_mut().take();
        match step {
            Some(Step::Granting { call: c, plan }) if c == call => {
                self.on_lease_granted(status, size, plan, metrics, now);
                true
            }
            Some(Step::Writing { call: c }) if c == call => {
                let outcome =
                    self.answer::<TxnResponse>(status, size)
                        .and_then(|txn| match txn.succeeded {
                            true => Ok(()),
                            false => Err("a subject's cutoff changed in etcd meanwhile (tried \
                                      again against what etcd holds then)"
                                .to_owned()),
                        });
                self.settle(outcome, metrics, now);
                true
            }
            other => {
                *self.step.borrow_mut() = other;
                false
            }
        }
    }

    /// The message of an answer, decoded; or why there is none.
    fn answer<M: Message + Default>(&self, status: u32, size: usize) -> Result<M, String> {
        let (_, message) = if status == 0 {
            (0, None)
        } else {
            self.host.grpc_status()
        };
        if status != 0 {
            self.check_auth(status, message.as_deref());
            return Err(format!(
                "gRPC status {status}{}{}",
                message.map(|m| format!(" ({m})")).unwrap_or_default(),
                grpc_hint(status)
            ));
        }
        if size > MAX_MESSAGE_BYTES {
            return Err(format!(
                "an answer of {size} bytes (over {MAX_MESSAGE_BYTES})"
            ));
        }
        let bytes = match self.host.buffer(BufferType::GrpcReceiveBuffer, 0, size) {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(status) => return Err(format!("the answer could not be read ({status:?})")),
        };
        M::decode(bytes.as_slice()).map_err(|_| "an answer that does not decode".to_owned())
    }

    fn on_auth_response(&self, status: u32, size: usize, now: i64) {
        let answer = self.answer::<AuthenticateResponse>(status, size);
        let mut auth = self.auth.borrow_mut();
        auth.call = None;
        match answer {
            Ok(answer) if !answer.token.is_empty() => {
                auth.token = Some(answer.token);
                auth.retry_after = 0;
                if let Some(failed) = auth.episode.recovered() {
                    self.host.info(&format!(
                        "etcd authentication works again after {failed} failed attempt(s)"
                    ));
                }
            }
            other => {
                if auth.failed(now) {
                    let why = other
                        .err()
                        .unwrap_or_else(|| "no token in the answer".to_owned());
                    self.host.warn(&format!("etcd authentication failed: {why}; held revocations stay enforced (logged once until it works)"));
                }
            }
        }
    }

    fn on_range_response(
        &self,
        status: u32,
        size: usize,
        guard: &Guard,
        metrics: &Metrics,
        now: i64,
    ) {
        let answer = self.answer::<RangeResponse>(status, size);
        let mut reader = self.reader.borrow_mut();
        let Some(reader) = reader.as_mut() else {
            return;
        };
        reader.range_call = None;
        if status == 0 && size > MAX_MESSAGE_BYTES && reader.watch.range_too_large() {
            // Large values under the prefix: the same page again, with fewer keys.
            self.drive_next(reader, metrics, now);
            return;
        }
        let changes = match answer {
            Ok(response) => reader.watch.range_response(now, response),
            Err(why) => {
                self.read_failed(reader, &why, metrics, now);
                return;
            }
        };
        match changes {
            Ok(changes) => self.apply(reader, changes, guard, metrics, now),
            Err(refused) => self.refused(reader, refused, metrics, Half::Read),
        }
        // The next page, or the watch, without waiting for the tick.
        self.drive_next(reader, metrics, now);
    }

    /// Does what the watch machine asks next; `false` when it asks nothing.
    fn drive_next(&self, reader: &mut Reader, metrics: &Metrics, now: i64) -> bool {
        match reader.watch.next_action(now) {
            Action::SendRange(request) => self.send_range(reader, &request, metrics, now),
            Action::OpenWatch(create) => self.open_watch(reader, create, metrics, now),
            Action::CloseWatch => {
                if let Some(stream) = reader.stream.take() {
                    let _ = self.host.cancel_grpc_stream(stream);
                }
            }
            Action::RequestProgress => self.request_progress(reader, metrics, now),
            Action::Nothing => return false,
        }
        true
    }

    /// Asks etcd, on the watch stream, to say how far it is: a stream that cannot answer is
    /// dead (`PrefixWatch::check_alive`), whatever the transport thinks.
    fn request_progress(&self, reader: &mut Reader, metrics: &Metrics, now: i64) {
        let Some(stream) = reader.stream else {
            return;
        };
        let request = WatchRequest {
            request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
        };
        if let Err(status) = self
            .host
            .send_grpc_stream_message(stream, &request.encode_to_vec())
        {
            let _ = self.host.cancel_grpc_stream(stream);
            reader.stream = None;
            let why = format!("a progress request not sent: {status:?}");
            self.watch_broke(reader, &why, metrics, now);
        }
    }

    /// A message on a stream; `false` when it is not this store's.
    pub fn on_grpc_stream_message(
        &self,
        stream: u32,
        size: usize,
        guard: &Guard,
        metrics: &Metrics,
        now: i64,
    ) -> bool {
        if self.reader.borrow().as_ref().and_then(|r| r.stream) != Some(stream) {
            return false;
        }
        let answer = self.answer::<WatchResponse>(0, size);
        let mut reader = self.reader.borrow_mut();
        let Some(reader) = reader.as_mut() else {
            return true;
        };
        let changes = match answer {
            Ok(response) => reader.watch.watch_response(now, response),
            Err(why) => {
                // The events of this message are lost: resume from the last revision seen.
                if let Some(stream) = reader.stream.take() {
                    let _ = self.host.cancel_grpc_stream(stream);
                }
                self.watch_broke(reader, &why, metrics, now);
                return true;
            }
        };
        match changes {
            Ok(changes) => {
                for _ in 0..changes.puts.len() + changes.deletes.len() {
                    metrics.count(Counter::EtcdWatchEvents);
                }
                self.apply(reader, changes, guard, metrics, now);
            }
            Err(refused) => self.refused(reader, refused, metrics, Half::Watch),
        }
        self.drive_next(reader, metrics, now);
        true
    }

    /// A stream closed (by etcd, Envoy or the network); `false` when it is not this store's.
    pub fn on_grpc_stream_close(
        &self,
        stream: u32,
        status: u32,
        metrics: &Metrics,
        now: i64,
    ) -> bool {
        let mut reader = self.reader.borrow_mut();
        let Some(reader) = reader.as_mut().filter(|r| r.stream == Some(stream)) else {
            return false;
        };
        reader.stream = None;
        let (_, message) = self.host.grpc_status();
        self.check_auth(status, message.as_deref());
        let why = format!(
            "the watch stream closed (gRPC status {status}{}){}",
            message.map(|m| format!(": {m}")).unwrap_or_default(),
            grpc_hint(status)
        );
        self.watch_broke(reader, &why, metrics, now);
        true
    }

    /// What an answer changed: held, counted, logged, and shared when cheap enough now.
    fn apply(
        &self,
        reader: &mut Reader,
        changes: Changes,
        guard: &Guard,
        metrics: &Metrics,
        now: i64,
    ) {
        let host = &*self.host;
        if let Some(failed) = changes.recovered {
            host.info(&format!(
                "etcd: in sync again after {failed} failed attempt(s)"
            ));
        }
        if changes.is_empty() {
            self.share(reader, guard, now, false);
            return;
        }
        let config = guard.config();
        let scopes_of = |issuer: &str| config.provider_names_of_issuer(issuer);
        // A read's pages go to a store of their own until the read is whole: what is
        // enforced meanwhile is the previous read and its events, never half a prefix.
        let target = match changes.page {
            Some(page) => {
                if page.first || reader.staging.is_none() {
                    reader.staging = Some(HeldStore::new(&self.config.prefix));
                }
                reader.staging.as_mut()
            }
            None => Some(&mut reader.held),
        };
        let applied =
            target.map_or_else(Applied::default, |store| store.apply(&changes, &scopes_of));
        for line in &applied.skipped_lines {
            host.warn(line);
        }
        for _ in 0..applied.skipped {
            metrics.count(Counter::EtcdSkipped);
        }
        if applied.skipped > applied.skipped_lines.len() {
            host.warn(&format!(
                "etcd: {} more keys skipped",
                applied.skipped - applied.skipped_lines.len()
            ));
        }
        if applied.no_such_issuer > 0 {
            host.info(&format!(
                "etcd: {} entries for issuers no provider has (not applied)",
                applied.no_such_issuer
            ));
        }
        if changes.page.is_some() && !changes.reset {
            return;
        }
        if changes.reset {
            if let Some(read) = reader.staging.take() {
                reader.held = read;
            }
            metrics.count(Counter::EtcdReadOk);
            host.info(&format!(
                "etcd: read {} entries under {} at revision {}",
                reader.held.len(),
                self.config.prefix,
                reader.watch.revision().unwrap_or(0)
            ));
        }
        reader.dirty = true;
        // A whole read is built and shared at once, whatever its size: requests wait for it.
        self.share(reader, guard, now, changes.reset);
    }

    /// An answer the watch machine refused (it has already backed off): the stream goes.
    fn refused(&self, reader: &mut Reader, refused: Refused, metrics: &Metrics, half: Half) {
        if let Some(stream) = reader.stream.take() {
            let _ = self.host.cancel_grpc_stream(stream);
        }
        self.failed(half, refused.why, refused.starts_outage, metrics);
    }

    fn read_failed(&self, reader: &mut Reader, why: &str, metrics: &Metrics, now: i64) {
        let starts_outage = reader.watch.range_failed(now);
        self.failed(Half::Read, why, starts_outage, metrics);
    }

    fn watch_broke(&self, reader: &mut Reader, why: &str, metrics: &Metrics, now: i64) {
        let starts_outage = reader.watch.watch_closed(now);
        self.failed(Half::Watch, why, starts_outage, metrics);
    }

    /// Counted every time; logged once per outage (the watch machine says when one starts).
    fn failed(&self, half: Half, why: &str, starts_outage: bool, metrics: &Metrics) {
        metrics.count(half.counter());
        if !starts_outage {
            return;
        }
        let (prefix, cluster) = (&self.config.prefix, &self.config.cluster);
        self.host.warn(&match half {
            Half::Read => format!(
                "etcd read of {prefix} through cluster {cluster:?} failed: {why}; held \
                 revocations stay enforced, retrying with backoff (logged once until it recovers)"
            ),
            Half::Watch => format!(
                "etcd watch of {prefix} through cluster {cluster:?} broke: {why}; held \
                 revocations stay enforced, watching again with backoff (logged once until it \
                 recovers)"
            ),
        });
    }

    /// Queues what this VM learned (a response header, misuse detection) for etcd.
    pub fn publish(&self, learned: &[PublishEntry], guard: &Guard, metrics: &Metrics) {
        let config = guard.config();
        let issuer_of = |name: &str| config.shared_issuer_of(name);
        let mut entries = Vec::with_capacity(learned.len());
        for entry in learned {
            match from_learned(&self.config.prefix, entry, &issuer_of) {
                Ok(entry) => entries.push(entry),
                // Still enforced by this proxy (learned), only not written for the others.
                Err(NotWritten::Issuer) => self.host.warn(
                    "etcd: a learned revocation not written: its provider's issuer is also the \
                     issuer of a provider with other keys, and an etcd entry names an issuer",
                ),
                Err(NotWritten::Unreadable(skipped)) => self.host.warn(&format!(
                    "etcd: a learned revocation not written: readers would skip it ({skipped})"
                )),
            }
        }
        for _ in 0..self.queue.borrow_mut().push(entries) {
            metrics.count(Counter::EtcdPublishDropped);
        }
    }

    /// The next batch: a lease first when an entry has an `exp`, else the puts at once.
    fn send_writes(&self, guard: &Guard, metrics: &Metrics, now: i64) {
        // Logged in only when there is something to write: every worker could write.
        let due = self.step.borrow().is_none() && self.queue.borrow().is_due(now);
        if !due || !self.authenticated(now) {
            return;
        }
        let Some(batch) = self.queue.borrow_mut().next_batch(now) else {
            return;
        };
        let plan = self.plan(batch, guard);
        if plan.puts.is_empty() {
            // etcd already revokes all of it.
            self.settle(Ok(()), metrics, now);
            return;
        }
        let ttl = plan
            .puts
            .iter()
            .filter_map(|e| lease_seconds(e.revoked.exp(), self.grace, now))
            .max();
        let sent = match ttl {
            Some(ttl) => {
                let request = LeaseGrantRequest { ttl, id: 0 };
                self.call("etcdserverpb.Lease", "LeaseGrant", &request.encode_to_vec())
                    .map(|call| Step::Granting { call, plan })
            }
            None => self.write(&plan, 0).map(|call| Step::Writing { call }),
        };
        match sent {
            Ok(step) => *self.step.borrow_mut() = Some(step),
            Err(status) => {
                let settled = self.queue.borrow_mut().not_sent(now);
                let why = format!("not sent: {status:?}");
                count_settled(&*self.host, &WRITES, settled, Some(&why), metrics);
            }
        }
    }

    fn plan(&self, batch: Vec<StoreEntry>, guard: &Guard) -> Plan {
        let config = guard.config();
        let scopes_of = |issuer: &str| config.provider_names_of_issuer(issuer);
        let mut plan = Plan {
            puts: Vec::with_capacity(batch.len()),
            guarded: Vec::new(),
            revision: self.seen_revision.get(),
        };
        for entry in batch {
            if let Some((fingerprints, cutoff)) = subject_of(&entry, &scopes_of) {
                let held = guard.state().etcd_subject_cutoff(&fingerprints);
                if held.is_some_and(|held| held >= cutoff) {
                    continue;
                }
                plan.guarded
                    .push(key_for(&self.config.prefix, &entry).into_bytes());
            }
            plan.puts.push(entry);
        }
        plan
    }

    /// One transaction of puts; entries with an `exp` carry the lease.
    fn write(&self, plan: &Plan, lease: i64) -> Result<u32, proxy_wasm::types::Status> {
        let success = plan
            .puts
            .iter()
            .map(|entry| RequestOp {
                request_put: Some(PutRequest {
                    key: key_for(&self.config.prefix, entry).into_bytes(),
                    value: value_for(entry).into_bytes(),
                    lease: if entry.revoked.exp().is_some() {
                        lease
                    } else {
                        0
                    },
                    ..PutRequest::default()
                }),
            })
            .collect();
        let compare = plan
            .guarded
            .iter()
            .map(|key| Compare::unchanged_since(key.clone(), plan.revision))
            .collect();
        let request = TxnRequest { compare, success };
        self.call("etcdserverpb.KV", "Txn", &request.encode_to_vec())
    }

    fn on_lease_granted(&self, status: u32, size: usize, plan: Plan, metrics: &Metrics, now: i64) {
        let granted = self
            .answer::<LeaseGrantResponse>(status, size)
            .and_then(|g| {
                if g.error.is_empty() && g.id != 0 {
                    Ok(g.id)
                } else {
                    Err(format!("lease not granted: {}", g.error))
                }
            });
        let written = granted.and_then(|lease| {
            self.write(&plan, lease)
                .map_err(|s| format!("not sent: {s:?}"))
        });
        match written {
            Ok(call) => *self.step.borrow_mut() = Some(Step::Writing { call }),
            Err(why) => self.settle(Err(why), metrics, now),
        }
    }

    fn settle(&self, outcome: Result<(), String>, metrics: &Metrics, now: i64) {
        let settled = self.queue.borrow_mut().settle(outcome.is_ok(), now);
        count_settled(
            &*self.host,
            &WRITES,
            settled,
            outcome.err().as_deref(),
            metrics,
        );
    }
}

/// A call's metadata: `first`, if any, then etcd's auth token when one is held.
fn with_token<'a>(auth: &'a Auth, first: Option<(&'a str, &'a [u8])>) -> Vec<(&'a str, &'a [u8])> {
    let token = auth.token.as_deref().map(|t| ("token", t.as_bytes()));
    first.into_iter().chain(token).collect()
}

/// Which half of the reader failed: the read of the prefix, or the watch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Half {
    Read,
    Watch,
}

impl Half {
    fn counter(self) -> Counter {
        match self {
            Half::Read => Counter::EtcdReadFailed,
            Half::Watch => Counter::EtcdWatchBroken,
        }
    }
}

/// What a gRPC status from etcd's cluster most likely means, for the log line.
fn grpc_hint(status: u32) -> &'static str {
    match status {
        // Envoy's answer when the cluster does not speak HTTP/2 (or it is not etcd).
        12 => ": the cluster does not speak gRPC (HTTP/2 to etcd's client port?)",
        14 => ": etcd cannot be reached",
        16 => ": etcd refused the credentials",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_value_round_trips_and_junk_is_none() {
        let checked = Checked {
            in_sync_at: Some(17),
            serial: 3,
            revision: 40,
        };
        assert_eq!(decode_checked(&encode_checked(checked)), Some(checked));
        let never = Checked {
            in_sync_at: None,
            serial: 0,
            revision: 0,
        };
        assert_eq!(decode_checked(&encode_checked(never)), Some(never));
        assert_eq!(decode_checked(b"1 2"), None, "a field missing");
        assert_eq!(decode_checked(b"1 2 3 4"), None);
        assert_eq!(decode_checked(b"x 1"), None);
        assert_eq!(decode_checked(b"12"), None);
        assert_eq!(decode_checked(&[0xff, b' ', b'1']), None);
    }
}
