//! What the decision holds between requests and the shell replaces as fetches land: each
//! provider's keys (and when each last asked for a refetch), the verified-token cache, Token
//! Status Lists, the polled revocation list and what was learned at run time. The guard only
//! reads it; the shell writes it (`install_*`, `forget_*`). Interior mutability: a worker VM
//! is single-threaded, and a decision never holds a borrow across a call that writes.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use crate::decide::cache::TokenCache;
use crate::idp::status_list::StatusList;
use crate::keys::jwks::KeySet;
use crate::revocation::indexed::IndexedSet;
use crate::revocation::learned::LearnedSets;
use crate::revocation::list::{Held, Tag};
use crate::revocation::set::{Probe, RevocationSet};

/// A large revocation set (the polled list's last whole list, the etcd store's prefix) as
/// this VM holds it.
#[derive(Debug, Clone)]
pub enum HeldSet {
    /// All of it: the VM that polls the list or reads etcd holds it (applying deltas, the
    /// rollback guard and the next share read it).
    Whole(Rc<RevocationSet>),
    /// Its index: what every other VM holds; the entries stay in shared data (`indexed`).
    Indexed(Rc<IndexedSet>),
}

impl HeldSet {
    /// `None`: the index may hold the token and its bucket could not be read.
    pub fn revokes(&self, probe: &Probe) -> Option<bool> {
        match self {
            HeldSet::Whole(set) => Some(set.revokes(probe)),
            HeldSet::Indexed(set) => set.revokes(probe),
        }
    }

    /// The index itself, to adopt the next one with (its unchanged parts are kept); the set
    /// back when it is whole, or shared with another holder.
    pub fn into_index(self) -> Result<IndexedSet, HeldSet> {
        match self {
            HeldSet::Indexed(index) => Rc::try_unwrap(index).map_err(HeldSet::Indexed),
            whole => Err(whole),
        }
    }

    /// The cutoff held for a subject fingerprint; `None` when it cannot be read.
    pub fn cutoff_of_subject(&self, fp: u64) -> Option<Option<i64>> {
        match self {
            HeldSet::Whole(set) => Some(set.cutoff_of_subject(fp)),
            HeldSet::Indexed(set) => set.cutoff_of_subject(fp),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            HeldSet::Whole(set) => set.len(),
            HeldSet::Indexed(set) => set.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The polled list: the last whole list, and the deltas since.
#[derive(Debug, Clone)]
pub struct HeldList {
    pub base: HeldSet,
    pub overlay: Option<Rc<RevocationSet>>,
}

impl HeldList {
    pub fn whole(base: RevocationSet, overlay: Option<Rc<RevocationSet>>) -> Self {
        HeldList {
            base: HeldSet::Whole(Rc::new(base)),
            overlay,
        }
    }

    /// The whole list and its deltas; `None` when only the index is held.
    pub fn held(&self) -> Option<Held<'_>> {
        match &self.base {
            HeldSet::Whole(base) => Some(Held {
                base,
                overlay: self.overlay.as_deref(),
            }),
            HeldSet::Indexed(_) => None,
        }
    }

    /// The version and ETag the next poll sends.
    pub fn tag(&self) -> Tag<'_> {
        let (version, etag) = match (&self.overlay, &self.base) {
            (Some(latest), _) | (None, HeldSet::Whole(latest)) => {
                (latest.version.as_str(), latest.etag.as_str())
            }
            (None, HeldSet::Indexed(base)) => (base.version(), base.etag()),
        };
        Tag { version, etag }
    }

    /// `None`: the index may hold the token and its bucket could not be read.
    pub fn revokes(&self, probe: &Probe) -> Option<bool> {
        if self.overlay.as_ref().is_some_and(|o| o.revokes(probe)) {
            return Some(true);
        }
        self.base.revokes(probe)
    }

    /// Entries in the whole list.
    pub fn base_len(&self) -> usize {
        self.base.len()
    }

    pub fn len(&self) -> usize {
        self.base_len() + self.overlay.as_ref().map_or(0, |o| o.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A Token Status List as held: whose keys signed it, and until when it serves.
#[derive(Debug, Clone)]
pub struct HeldStatusList {
    pub provider: usize,
    pub issued_at: i64,
    pub list: Rc<StatusList>,
    /// Due for a fetch from then on.
    pub fresh_until: i64,
    /// `exp`: never used past it.
    pub expires_at: Option<i64>,
    pub fetched_at: i64,
}

impl HeldStatusList {
    fn due(&self, now: i64) -> bool {
        now >= self.fresh_until
    }
}

#[derive(Debug)]
pub struct State {
    /// Each provider's keys; remote ones are replaced when a fetch lands.
    keys: RefCell<Vec<Rc<KeySet>>>,
    /// When each provider last asked for an unknown-`kid` refetch.
    last_refetch: RefCell<Vec<Option<i64>>>,
    pub(super) cache: RefCell<TokenCache>,
    /// Token Status Lists by URI, as last fetched.
    status_lists: RefCell<HashMap<String, HeldStatusList>>,
    /// The polled list as last fetched (a base and an overlay of deltas), and when it was
    /// last confirmed (200 or 304).
    list: RefCell<Option<HeldList>>,
    list_checked_at: Cell<Option<i64>>,
    /// What revocation headers and misuse detection taught this process.
    learned: RefCell<LearnedSets>,
    /// The etcd store's prefix as the reading VM last shared it, and when it was last known
    /// to be in sync (a read completed, or its watch was live).
    etcd: RefCell<Option<HeldSet>>,
    etcd_confirmed_at: Cell<Option<i64>>,
}

impl State {
    /// The configured keys (empty for remote ones until their first fetch) and an empty cache.
    pub fn new(keys: Vec<KeySet>, cache_size: usize) -> Self {
        State {
            last_refetch: RefCell::new(vec![None; keys.len()]),
            keys: RefCell::new(keys.into_iter().map(Rc::new).collect()),
            cache: RefCell::new(TokenCache::new(cache_size)),
            status_lists: RefCell::new(HashMap::new()),
            list: RefCell::new(None),
            list_checked_at: Cell::new(None),
            learned: RefCell::new(LearnedSets::default()),
            etcd: RefCell::new(None),
            etcd_confirmed_at: Cell::new(None),
        }
    }

    /// New keys for a provider (a remote JWKS fetch landed). Tokens this provider verified
    /// with the old keys are dropped from the cache: a key that was removed must stop working.
    /// The same keys again (a periodic refetch, another worker's fetch adopted) drop nothing,
    /// and other providers' entries stay: clearing them made a worker verify its tokens again
    /// whenever any provider's keys landed.
    /// `fetched_at` also counts as a refetch, so the refetch rate limit holds across workers
    /// (each adopts the keys, and their time, that any worker fetched).
    pub fn install_keys(&self, provider: usize, keys: KeySet, fetched_at: i64) {
        let mut changed = true;
        if let Some(slot) = self.keys.borrow_mut().get_mut(provider) {
            changed = !slot.same_keys(&keys);
            *slot = Rc::new(keys);
        }
        if let Some(last) = self.last_refetch.borrow_mut().get_mut(provider) {
            *last = Some(last.map_or(fetched_at, |l| l.max(fetched_at)));
        }
        if changed {
            self.cache.borrow_mut().drop_provider(provider);
        }
    }

    /// A provider's keys as held now.
    pub fn keys(&self, provider: usize) -> Rc<KeySet> {
        self.keys
            .borrow()
            .get(provider)
            .cloned()
            .unwrap_or_default()
    }

    pub fn key_count(&self, provider: usize) -> usize {
        self.keys.borrow().get(provider).map_or(0, |k| k.keys.len())
    }

    /// Whether an unknown `kid` may ask for a refetch now (at most once per `min_interval`
    /// per provider); asking counts as the refetch.
    pub fn refetch_allowed(&self, provider: usize, now: i64, min_interval: u64) -> bool {
        let mut last = self.last_refetch.borrow_mut();
        let Some(slot) = last.get_mut(provider) else {
            return false;
        };
        let interval = i64::try_from(min_interval).unwrap_or(i64::MAX);
        if slot.is_some_and(|at| now < at.saturating_add(interval)) {
            return false;
        }
        *slot = Some(now);
        true
    }

    /// A checked status list for `uri`, unless an older one than held (a stale cache between
    /// us and the issuer must not undo a revocation).
    pub(super) fn hold_status_list(&self, uri: &str, held: HeldStatusList) -> Result<(), String> {
        let mut lists = self.status_lists.borrow_mut();
        if lists
            .get(uri)
            .is_some_and(|current| held.issued_at < current.issued_at)
        {
            return Err("older than the list held (iat)".to_owned());
        }
        lists.insert(uri.to_owned(), held);
        Ok(())
    }

    /// The held status list for `uri`, if it was signed by `provider`'s keys.
    pub(super) fn status_list(&self, uri: &str, provider: usize) -> Option<HeldStatusList> {
        self.status_lists
            .borrow()
            .get(uri)
            .filter(|h| h.provider == provider)
            .cloned()
    }

    /// Lists due for a fetch: (provider, uri).
    pub fn status_lists_due(&self, now: i64) -> Vec<(usize, String)> {
        self.status_lists
            .borrow()
            .iter()
            .filter(|(_, held)| held.due(now))
            .map(|(uri, held)| (held.provider, uri.clone()))
            .collect()
    }

    /// Whether the held list for `uri` is due for a fetch.
    pub fn status_list_due(&self, uri: &str, now: i64) -> bool {
        self.status_lists
            .borrow()
            .get(uri)
            .is_some_and(|held| held.due(now))
    }

    /// When the held list for `uri` was fetched.
    pub fn status_list_fetched_at(&self, uri: &str) -> Option<i64> {
        self.status_lists.borrow().get(uri).map(|h| h.fetched_at)
    }

    /// A new polled list, confirmed at `checked_at`.
    pub fn install_revocation_list(&self, list: HeldList, checked_at: i64) {
        *self.list.borrow_mut() = Some(list);
        self.revocation_list_checked(checked_at);
    }

    /// The same list held another way (a worker that now holds it whole).
    pub fn replace_revocation_base(&self, base: HeldSet) {
        if let Some(list) = self.list.borrow_mut().as_mut() {
            list.base = base;
        }
    }

    /// New deltas over the held base.
    pub fn install_revocation_overlay(&self, overlay: Option<Rc<RevocationSet>>) {
        if let Some(list) = self.list.borrow_mut().as_mut() {
            list.overlay = overlay;
        }
    }

    /// The list was confirmed current (a 304, or another worker's fetch).
    pub fn revocation_list_checked(&self, checked_at: i64) {
        let latest = self
            .list_checked_at
            .get()
            .map_or(checked_at, |at| at.max(checked_at));
        self.list_checked_at.set(Some(latest));
    }

    pub fn revocation_list(&self) -> Option<HeldList> {
        self.list.borrow().clone()
    }

    /// Whether the polled list revokes what `probe` describes; `None`: it cannot tell (a
    /// worker's bucket of the list could not be read from shared data).
    pub(super) fn listed(&self, probe: &Probe) -> Option<bool> {
        self.list
            .borrow()
            .as_ref()
            .map_or(Some(false), |list| list.revokes(probe))
    }

    /// Takes the held list out first: a 1M-entry list must not be held twice while the next
    /// one is read (a worker is single-threaded, so no request sees the gap).
    pub fn take_revocation_list(&self) -> Option<HeldList> {
        self.list.borrow_mut().take()
    }

    /// No list held, and none confirmed: the list is stale until the next fetch lands.
    pub fn forget_revocation_list(&self) {
        *self.list.borrow_mut() = None;
        self.list_checked_at.set(None);
    }

    /// When the polled list was last confirmed (200 or 304).
    pub fn revocation_list_checked_at(&self) -> Option<i64> {
        self.list_checked_at.get()
    }

    pub fn install_learned(&self, learned: LearnedSets) {
        *self.learned.borrow_mut() = learned;
    }

    /// Adds to what this worker learned (when the shared log could not be written).
    pub fn extend_learned(&self, more: &LearnedSets) {
        let extended = self.learned.borrow().extended(more);
        *self.learned.borrow_mut() = extended;
    }

    pub(super) fn learned(&self) -> std::cell::Ref<'_, LearnedSets> {
        self.learned.borrow()
    }

    /// Entries held in the list, the etcd store and learned at run time (the config's are
    /// the guard's).
    pub(super) fn held_entries(&self) -> usize {
        let listed = self.list.borrow().as_ref().map_or(0, HeldList::len);
        listed + self.etcd_entries() + self.learned.borrow().len()
    }

    /// A new set of the etcd store's entries (the old one is dropped as it is replaced).
    pub fn install_etcd(&self, set: Option<HeldSet>) {
        *self.etcd.borrow_mut() = set;
    }

    /// The etcd set held, taken out (a worker keeps the parts of its index that did not
    /// change, and never holds two).
    pub fn take_etcd(&self) -> Option<HeldSet> {
        self.etcd.borrow_mut().take()
    }

    /// What is held of etcd was known to be in sync at `at` (never goes back).
    pub fn etcd_confirmed(&self, at: i64) {
        let latest = self.etcd_confirmed_at.get().map_or(at, |held| held.max(at));
        self.etcd_confirmed_at.set(Some(latest));
    }

    pub fn etcd_confirmed_at(&self) -> Option<i64> {
        self.etcd_confirmed_at.get()
    }

    pub fn etcd_entries(&self) -> usize {
        self.etcd.borrow().as_ref().map_or(0, |set| set.len())
    }

    /// The cutoff the etcd store holds for a subject under every one of these fingerprints
    /// (its scopes), the earliest of them; `None` when one of them has none.
    pub fn etcd_subject_cutoff(&self, fingerprints: &[u64]) -> Option<i64> {
        let set = self.etcd.borrow();
        let set = set.as_ref()?;
        fingerprints
            .iter()
            .map(|fp| set.cutoff_of_subject(*fp).flatten())
            .try_fold(i64::MAX, |earliest, cutoff| Some(earliest.min(cutoff?)))
            .filter(|_| !fingerprints.is_empty())
    }

    /// Whether the etcd store revokes what `probe` describes; `None`: it cannot tell (a
    /// bucket of the set could not be read from shared data).
    pub(super) fn in_etcd(&self, probe: &Probe) -> Option<bool> {
        self.etcd
            .borrow()
            .as_ref()
            .map_or(Some(false), |set| set.revokes(probe))
    }
}
