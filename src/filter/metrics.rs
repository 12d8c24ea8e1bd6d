//! Envoy stats: counters and gauges, defined once per VM. Envoy shows them under the
//! `wasmcustom.` prefix in `/stats`; `/stats/prometheus` drops it (`bearer_guard_allowed`).
//! Increments are batched in the VM and flushed to the host on the root context's tick: a
//! host call per counter per request would cost more than our own logic.

use std::cell::RefCell;

use super::host::Host;
use proxy_wasm::types::MetricType;

use crate::decide::decision::{DenyReason, RevocationSource};
use crate::decide::guard::CacheLookup;

/// Every counter. Names: `bearer_guard.<name>`, see `Counter::name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Allowed,
    CacheHit,
    CacheMiss,
    JwksFetchOk,
    JwksFetchFailed,
    /// Of the failed JWKS fetches, those whose OpenID discovery document was no use (no
    /// answer, not a document, another issuer's, a `jwks_uri` that cannot be fetched).
    JwksDiscoveryFailed,
    /// Entries learned from revocation response headers.
    RevokedByHeader,
    /// Revocation response header values refused because they are not UTF-8.
    RevocationHeaderInvalid,
    /// Tokens revoked by misuse detection (`anomaly.action: revoke`).
    RevokedByAnomaly,
    ListFetchOk,
    ListNotModified,
    ListFetchFailed,
    /// Whole lists that left out live revoked entries (kept: `list.allow_removal` false).
    ListRollback,
    /// Let through on a stale revocation list (`on_stale: allow`).
    StaleAllowed,
    /// Entries POSTed to the list service, failed POSTs, entries given up on.
    PublishOk,
    PublishFailed,
    PublishDropped,
    /// Learned revocations still in force evicted by the 100,000-entry bound.
    LearnedEvicted,
    /// Revocation header directives refused: not allowed, or a value that does not parse.
    HeaderDirectiveRefused,
    /// Tokens revoked at the identity provider (RFC 7009), failed POSTs, tokens given up on.
    IdpRevokeOk,
    IdpRevokeFailed,
    IdpRevokeDropped,
    /// Introspection calls answered (active or not), and failed.
    IntrospectionOk,
    IntrospectionFailed,
    /// Token Status List fetches.
    StatusListFetchOk,
    StatusListFetchFailed,
    /// Tokens over a misuse limit (once per token per window), windows evicted for room,
    /// and requests not counted because the shared slot could not be updated.
    AnomalyDetected,
    AnomalyEvicted,
    AnomalyNotCounted,
    /// The etcd store: reads of the prefix completed and failed, watch events applied,
    /// watches broken, keys skipped (do not parse), and entries written (per batch) or
    /// given up on.
    EtcdReadOk,
    EtcdReadFailed,
    EtcdWatchEvents,
    EtcdWatchBroken,
    EtcdSkipped,
    EtcdPublishOk,
    EtcdPublishFailed,
    EtcdPublishDropped,
    Denied(DenyReason),
    /// Requests refused because of a revocation, by where it came from.
    RevokedBy(RevocationSource),
    /// Denials shadow mode let through, per reason: apart from `Denied`, so that alerts on
    /// enforced denials do not fire while a rule is only watched.
    ShadowDenied(DenyReason),
    Provider(usize, ProviderCounter),
}

/// Counters kept per provider (jwt_authn has none: envoy issue 15405).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderCounter {
    Allowed,
    JwksFetchOk,
    JwksFetchFailed,
    JwksDiscoveryFailed,
    Denied(DenyReason),
    ShadowDenied(DenyReason),
}

const FIXED: [Counter; 37] = [
    Counter::Allowed,
    Counter::CacheHit,
    Counter::CacheMiss,
    Counter::JwksFetchOk,
    Counter::JwksFetchFailed,
    Counter::JwksDiscoveryFailed,
    Counter::RevokedByHeader,
    Counter::RevocationHeaderInvalid,
    Counter::RevokedByAnomaly,
    Counter::ListFetchOk,
    Counter::ListNotModified,
    Counter::ListFetchFailed,
    Counter::ListRollback,
    Counter::StaleAllowed,
    Counter::PublishOk,
    Counter::PublishFailed,
    Counter::PublishDropped,
    Counter::LearnedEvicted,
    Counter::HeaderDirectiveRefused,
    Counter::IdpRevokeOk,
    Counter::IdpRevokeFailed,
    Counter::IdpRevokeDropped,
    Counter::IntrospectionOk,
    Counter::IntrospectionFailed,
    Counter::StatusListFetchOk,
    Counter::StatusListFetchFailed,
    Counter::AnomalyDetected,
    Counter::AnomalyEvicted,
    Counter::AnomalyNotCounted,
    Counter::EtcdReadOk,
    Counter::EtcdReadFailed,
    Counter::EtcdWatchEvents,
    Counter::EtcdWatchBroken,
    Counter::EtcdSkipped,
    Counter::EtcdPublishOk,
    Counter::EtcdPublishFailed,
    Counter::EtcdPublishDropped,
];

const PROVIDER_FIXED: [ProviderCounter; 4] = [
    ProviderCounter::Allowed,
    ProviderCounter::JwksFetchOk,
    ProviderCounter::JwksFetchFailed,
    ProviderCounter::JwksDiscoveryFailed,
];
const PER_PROVIDER: usize = PROVIDER_FIXED.len() + 2 * DenyReason::ALL.len();

fn position<T: PartialEq>(all: &[T], item: &T) -> usize {
    all.iter().position(|x| x == item).unwrap_or_default()
}

impl Counter {
    /// Index in `Metrics::ids`: fixed, then denials, then revocation sources, then shadowed
    /// denials, then each provider's block (fixed, denials, shadowed denials).
    fn index(self) -> usize {
        let reasons = DenyReason::ALL.len();
        let sources = RevocationSource::ALL.len();
        let reason_at = |reason: &DenyReason| position(&DenyReason::ALL, reason);
        match self {
            Counter::Denied(reason) => FIXED.len() + reason_at(&reason),
            Counter::RevokedBy(source) => {
                FIXED.len() + reasons + position(&RevocationSource::ALL, &source)
            }
            Counter::ShadowDenied(reason) => FIXED.len() + reasons + sources + reason_at(&reason),
            Counter::Provider(provider, counter) => {
                let within = match counter {
                    ProviderCounter::Denied(reason) => PROVIDER_FIXED.len() + reason_at(&reason),
                    ProviderCounter::ShadowDenied(reason) => {
                        PROVIDER_FIXED.len() + reasons + reason_at(&reason)
                    }
                    fixed => position(&PROVIDER_FIXED, &fixed),
                };
                FIXED.len() + 2 * reasons + sources + provider * PER_PROVIDER + within
            }
            fixed => position(&FIXED, &fixed),
        }
    }

    /// Defined only for a config that shadows something: an enforce-only config exports no
    /// series it can never move.
    fn is_shadow(self) -> bool {
        matches!(
            self,
            Counter::ShadowDenied(_) | Counter::Provider(_, ProviderCounter::ShadowDenied(_))
        )
    }

    fn name(self, providers: &[String]) -> String {
        let name = match self {
            Counter::Allowed => "allowed",
            Counter::CacheHit => "jwt_cache_hit",
            Counter::CacheMiss => "jwt_cache_miss",
            Counter::JwksFetchOk => "jwks_fetch_success",
            Counter::JwksFetchFailed => "jwks_fetch_failed",
            Counter::JwksDiscoveryFailed => "jwks_discovery_failed",
            Counter::RevokedByHeader => "revocation.header_revoked",
            Counter::RevocationHeaderInvalid => "revocation.header_invalid",
            Counter::RevokedByAnomaly => "revocation.anomaly_revoked",
            Counter::ListFetchOk => "revocation.list_fetch_success",
            Counter::ListNotModified => "revocation.list_not_modified",
            Counter::ListFetchFailed => "revocation.list_fetch_failed",
            Counter::ListRollback => "revocation.list_rollback",
            Counter::StaleAllowed => "revocation.stale_allowed",
            Counter::PublishOk => "revocation.publish_success",
            Counter::PublishFailed => "revocation.publish_failed",
            Counter::PublishDropped => "revocation.publish_dropped",
            Counter::LearnedEvicted => "revocation.learned_evicted",
            Counter::HeaderDirectiveRefused => "revocation.header_refused",
            Counter::IdpRevokeOk => "revocation.idp_success",
            Counter::IdpRevokeFailed => "revocation.idp_failed",
            Counter::IdpRevokeDropped => "revocation.idp_dropped",
            Counter::IntrospectionOk => "introspection.success",
            Counter::IntrospectionFailed => "introspection.failed",
            Counter::StatusListFetchOk => "status_list.fetch_success",
            Counter::StatusListFetchFailed => "status_list.fetch_failed",
            Counter::AnomalyDetected => "anomaly.detected",
            Counter::AnomalyEvicted => "anomaly.evicted",
            Counter::AnomalyNotCounted => "anomaly.not_counted",
            Counter::EtcdReadOk => "revocation.etcd_read_success",
            Counter::EtcdReadFailed => "revocation.etcd_read_failed",
            Counter::EtcdWatchEvents => "revocation.etcd_watch_events",
            Counter::EtcdWatchBroken => "revocation.etcd_watch_broken",
            Counter::EtcdSkipped => "revocation.etcd_skipped",
            Counter::EtcdPublishOk => "revocation.etcd_publish_success",
            Counter::EtcdPublishFailed => "revocation.etcd_publish_failed",
            Counter::EtcdPublishDropped => "revocation.etcd_publish_dropped",
            Counter::Denied(reason) => return format!("bearer_guard.denied.{}", reason.code()),
            Counter::RevokedBy(source) => {
                return format!("bearer_guard.revoked_by.{}", source.code())
            }
            Counter::ShadowDenied(reason) => {
                return format!("bearer_guard.shadow_denied.{}", reason.code())
            }
            Counter::Provider(index, counter) => {
                let provider = providers.get(index).map_or("-", String::as_str);
                let counter = match counter {
                    ProviderCounter::Allowed => "allowed".to_owned(),
                    ProviderCounter::JwksFetchOk => "jwks_fetch_success".to_owned(),
                    ProviderCounter::JwksFetchFailed => "jwks_fetch_failed".to_owned(),
                    ProviderCounter::JwksDiscoveryFailed => "jwks_discovery_failed".to_owned(),
                    ProviderCounter::Denied(reason) => format!("denied.{}", reason.code()),
                    ProviderCounter::ShadowDenied(reason) => {
                        format!("shadow_denied.{}", reason.code())
                    }
                };
                return format!("bearer_guard.provider.{provider}.{counter}");
            }
        };
        format!("bearer_guard.{name}")
    }

    fn all(providers: usize) -> impl Iterator<Item = Counter> {
        let per_provider = move |p: usize| {
            PROVIDER_FIXED
                .into_iter()
                .chain(DenyReason::ALL.into_iter().map(ProviderCounter::Denied))
                .chain(
                    DenyReason::ALL
                        .into_iter()
                        .map(ProviderCounter::ShadowDenied),
                )
                .map(move |c| Counter::Provider(p, c))
        };
        FIXED
            .into_iter()
            .chain(DenyReason::ALL.into_iter().map(Counter::Denied))
            .chain(RevocationSource::ALL.into_iter().map(Counter::RevokedBy))
            .chain(DenyReason::ALL.into_iter().map(Counter::ShadowDenied))
            .chain((0..providers).flat_map(per_provider))
    }
}

pub struct Metrics {
    ids: Vec<Option<u32>>,
    pending: RefCell<Vec<i64>>,
    /// Gauges: entries in the revocation list held, when it was last confirmed, all entries
    /// held, seconds since the last good list fetch, and per provider since the last good
    /// JWKS fetch (remote JWKS only).
    list_entries: Option<u32>,
    list_checked_at: Option<u32>,
    revocation_entries: Option<u32>,
    list_age: Option<u32>,
    /// The etcd store: entries in the set the workers share, seconds since it was last
    /// known to be in sync.
    etcd_entries: Option<u32>,
    etcd_age: Option<u32>,
    jwks_age: Vec<Option<u32>>,
}

/// Which optional parts of the config are on: their stats are defined only then.
#[derive(Debug, Clone, Copy, Default)]
pub struct Parts {
    pub revocation: bool,
    pub list: bool,
    pub etcd: bool,
    /// The top-level `mode` or a rule's is `shadow`.
    pub shadow: bool,
}

fn gauge(host: &dyn Host, name: &str) -> Option<u32> {
    host.define_metric(MetricType::Gauge, name).ok()
}

/// A stat name with the filter config's `stat_prefix` after `bearer_guard.`, if it has one.
fn prefixed(stat_prefix: Option<&str>, name: &str) -> String {
    match (stat_prefix, name.strip_prefix("bearer_guard.")) {
        (Some(prefix), Some(rest)) => format!("bearer_guard.{prefix}.{rest}"),
        _ => name.to_owned(),
    }
}

fn record(host: &dyn Host, id: Option<u32>, value: i64) {
    if let Some(id) = id {
        // A failed update must never affect traffic.
        let _ = host.record_metric(id, u64::try_from(value).unwrap_or(0));
    }
}

impl Metrics {
    /// `providers`: names in config order; `remote`: which of them fetch their JWKS.
    pub fn define(
        host: &dyn Host,
        stat_prefix: Option<&str>,
        providers: &[String],
        remote: &[bool],
        parts: Parts,
    ) -> Self {
        let Parts {
            revocation,
            list,
            etcd,
            shadow,
        } = parts;
        // An undefined counter keeps its slot (`None`): counting it is then a no-op.
        let ids: Vec<Option<u32>> = Counter::all(providers.len())
            .map(|c| {
                if c.is_shadow() && !shadow {
                    return None;
                }
                host.define_metric(
                    MetricType::Counter,
                    &prefixed(stat_prefix, &c.name(providers)),
                )
                .ok()
            })
            .collect();
        let pending = RefCell::new(vec![0; ids.len()]);
        let jwks_age = providers
            .iter()
            .zip(remote)
            .map(|(name, remote)| {
                let name = format!("bearer_guard.provider.{name}.jwks_age_seconds");
                let name = prefixed(stat_prefix, &name);
                remote.then(|| gauge(host, &name)).flatten()
            })
            .collect();
        let gauge_if = |wanted: bool, name: &str| {
            wanted
                .then(|| gauge(host, &prefixed(stat_prefix, name)))
                .flatten()
        };
        Metrics {
            ids,
            pending,
            list_entries: gauge_if(list, "bearer_guard.revocation.list_entries"),
            list_checked_at: gauge_if(list, "bearer_guard.revocation.list_checked_at"),
            revocation_entries: gauge_if(revocation, "bearer_guard.revocation.entries"),
            list_age: gauge_if(list, "bearer_guard.revocation.list_age_seconds"),
            etcd_entries: gauge_if(etcd, "bearer_guard.revocation.etcd_entries"),
            etcd_age: gauge_if(etcd, "bearer_guard.revocation.etcd_age_seconds"),
            jwks_age,
        }
    }

    pub fn gauge_list_entries(&self, host: &dyn Host, entries: u64, checked_at: i64) {
        record(
            host,
            self.list_entries,
            i64::try_from(entries).unwrap_or(i64::MAX),
        );
        record(host, self.list_checked_at, checked_at);
    }

    pub fn gauge_revocation_entries(&self, host: &dyn Host, entries: usize) {
        record(
            host,
            self.revocation_entries,
            i64::try_from(entries).unwrap_or(i64::MAX),
        );
    }

    pub fn gauge_list_age(&self, host: &dyn Host, seconds: i64) {
        record(host, self.list_age, seconds);
    }

    pub fn gauge_etcd(&self, host: &dyn Host, entries: usize, age_seconds: i64) {
        record(
            host,
            self.etcd_entries,
            i64::try_from(entries).unwrap_or(i64::MAX),
        );
        record(host, self.etcd_age, age_seconds);
    }

    pub fn gauge_jwks_age(&self, host: &dyn Host, provider: usize, seconds: i64) {
        record(
            host,
            self.jwks_age.get(provider).copied().flatten(),
            seconds,
        );
    }

    pub fn count(&self, counter: Counter) {
        if let Some(n) = self.pending.borrow_mut().get_mut(counter.index()) {
            *n += 1;
        }
    }

    pub fn count_cache(&self, lookup: CacheLookup) {
        match lookup {
            CacheLookup::Hit => self.count(Counter::CacheHit),
            CacheLookup::Miss => self.count(Counter::CacheMiss),
            CacheLookup::Skipped => {}
        }
    }

    pub fn flush(&self, host: &dyn Host) {
        for (id, n) in self.ids.iter().zip(self.pending.borrow_mut().iter_mut()) {
            if let (Some(id), true) = (id, *n > 0) {
                // A failed counter update must never affect traffic; the count is dropped.
                let _ = host.increment_metric(*id, *n);
            }
            *n = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_has_its_own_index_and_name() {
        let providers = vec!["corp".to_owned(), "partner".to_owned()];
        let all: Vec<Counter> = Counter::all(providers.len()).collect();
        for (i, counter) in all.iter().enumerate() {
            assert_eq!(counter.index(), i, "{counter:?}");
        }
        let mut names: Vec<String> = all.iter().map(|c| c.name(&providers)).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
        assert!(names.contains(&"bearer_guard.provider.partner.denied.expired".to_owned()));
        assert!(names.contains(&"bearer_guard.revoked_by.status_list".to_owned()));
        assert!(names.contains(&"bearer_guard.shadow_denied.expired".to_owned()));
        assert!(names.contains(&"bearer_guard.provider.partner.shadow_denied.revoked".to_owned()));
    }
}
