//! What the reading VM holds of the etcd prefix: each key's entry, as what it adds to a
//! revocation set, so a watch event (a put, a delete) changes one key and the set the workers
//! share is built again from all of them. Sans I/O: the watch hands over `Changes`, the shell
//! shares the built set.
//!
//! Per key, only a 128-bit digest of the key and what the entry revokes are kept (about 80
//! bytes an entry, not the key and value): a 1M-entry prefix is held once per process, by the
//! reader. Two keys with one digest would need a SHA-256 collision in 128 bits.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::layout::{parse_entry, Revoked, Skipped, StoreEntry};
use crate::remote::watch::Changes;
use crate::revocation::set::{fingerprint, Kind, RevocationSet, SetBuilder, ANY_PROVIDER};

/// At most this many skipped keys are described per answer (the rest are only counted).
pub const MAX_SKIPPED_LINES: usize = 5;

/// The fingerprints of one entry: one for an entry of every provider (most of them), one per
/// provider of its issuer otherwise. Inline when one, so a 1M-entry prefix is not 1M small
/// allocations.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fingerprints {
    One(u64),
    Many(Box<[u64]>),
}

impl Fingerprints {
    fn of(mut all: Vec<u64>) -> Self {
        match all.as_slice() {
            [one] => Fingerprints::One(*one),
            _ => {
                all.shrink_to_fit();
                Fingerprints::Many(all.into_boxed_slice())
            }
        }
    }

    fn each(&self, mut f: impl FnMut(u64)) {
        match self {
            Fingerprints::One(fp) => f(*fp),
            Fingerprints::Many(fps) => fps.iter().for_each(|fp| f(*fp)),
        }
    }
}

/// What one key revokes, resolved to the set's fingerprints and scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Adds {
    Exact(Fingerprints),
    Subject(Fingerprints, i64),
    Cutoff(Box<[String]>, i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    /// When its token is dead anyway (left out of sets built after it); `i64::MAX`: never.
    exp: i64,
    adds: Adds,
}

/// What applying an answer did, for the counters and the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Keys now held (written or replaced).
    pub put: usize,
    /// Held keys deleted.
    pub deleted: usize,
    /// Keys that do not parse: a written value that does not parse keeps the entry the key
    /// held before (if any), since reading leans towards revoking.
    pub skipped: usize,
    /// The first few, as log lines that never show the key.
    pub skipped_lines: Vec<String>,
    /// Under `iss/<issuer>/` for an issuer no provider has.
    pub no_such_issuer: usize,
}

/// The reader's copy of the prefix.
#[derive(Debug, Default)]
pub struct HeldStore {
    prefix: String,
    entries: HashMap<u128, Held>,
}

fn digest(key: &[u8]) -> u128 {
    let hash = Sha256::digest(key);
    let mut first = [0u8; 16];
    first.copy_from_slice(hash.get(..16).unwrap_or(&[0; 16]));
    u128::from_le_bytes(first)
}

impl HeldStore {
    pub fn new(prefix: &str) -> Self {
        HeldStore {
            prefix: prefix.to_owned(),
            entries: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Applies what the watch saw. `scopes_of_issuer`: the names of the providers whose
    /// `issuer` is that string (what an `iss/<issuer>/` entry is held under).
    pub fn apply(
        &mut self,
        changes: &Changes,
        scopes_of_issuer: &dyn Fn(&str) -> Vec<String>,
    ) -> Applied {
        let mut applied = Applied::default();
        // A whole read handed over at once replaces what is held; a read's pages are only
        // added (the caller collects them in a store of their own until the read is whole).
        if changes.reset && changes.page.is_none() {
            self.entries.clear();
        }
        for kv in &changes.puts {
            match parse_entry(&self.prefix, &kv.key, &kv.value) {
                Ok(entry) => match adds_of(&entry, scopes_of_issuer) {
                    Some(adds) => {
                        let exp = entry.revoked.exp().unwrap_or(i64::MAX);
                        self.entries.insert(digest(&kv.key), Held { exp, adds });
                        applied.put += 1;
                    }
                    None => applied.no_such_issuer += 1,
                },
                Err(skipped) => applied.note_skipped(skipped, &kv.key),
            }
        }
        for key in &changes.deletes {
            if self.entries.remove(&digest(key)).is_some() {
                applied.deleted += 1;
            }
        }
        applied
    }

    /// The set every worker enforces: every held entry whose token may still be alive at
    /// `now` (the caller passes `now` minus the clock skew it grants).
    pub fn build(&self, now: i64, version: &str) -> RevocationSet {
        let mut builder = SetBuilder::default();
        for held in self.entries.values() {
            if held.exp <= now {
                continue;
            }
            match &held.adds {
                Adds::Exact(fps) => fps.each(|fp| builder.add_exact_fingerprint(fp)),
                Adds::Subject(fps, cutoff) => {
                    fps.each(|fp| builder.add_subject_fingerprint(fp, *cutoff))
                }
                Adds::Cutoff(scopes, cutoff) => {
                    scopes.iter().for_each(|s| builder.add_cutoff(s, *cutoff))
                }
            }
        }
        builder.build(version, "")
    }
}

impl Applied {
    fn note_skipped(&mut self, skipped: Skipped, key: &[u8]) {
        self.skipped += 1;
        if self.skipped_lines.len() < MAX_SKIPPED_LINES {
            self.skipped_lines
                .push(super::layout::skipped_line(skipped, key));
        }
    }
}

/// A subject entry's fingerprints (one per scope, as a reader holds them) and its cutoff;
/// `None` for other entries, or an issuer no provider has.
pub fn subject_of(
    entry: &StoreEntry,
    scopes_of_issuer: &dyn Fn(&str) -> Vec<String>,
) -> Option<(Vec<u64>, i64)> {
    match adds_of(entry, scopes_of_issuer)? {
        Adds::Subject(fps, cutoff) => {
            let mut all = Vec::new();
            fps.each(|fp| all.push(fp));
            Some((all, cutoff))
        }
        Adds::Exact(_) | Adds::Cutoff(..) => None,
    }
}

/// The scopes an entry applies to: every provider's, or those of its issuer (`None`: no
/// provider has that issuer).
fn adds_of(entry: &StoreEntry, scopes_of_issuer: &dyn Fn(&str) -> Vec<String>) -> Option<Adds> {
    let scopes = match &entry.issuer {
        None => vec![ANY_PROVIDER.to_owned()],
        Some(issuer) => scopes_of_issuer(issuer),
    };
    if scopes.is_empty() {
        return None;
    }
    let exact = |kind: Kind, value: &[u8]| -> Fingerprints {
        Fingerprints::of(scopes.iter().map(|s| fingerprint(kind, s, value)).collect())
    };
    Some(match &entry.revoked {
        Revoked::Jti { jti, .. } => Adds::Exact(exact(Kind::Jti, jti.as_bytes())),
        Revoked::Token { id, .. } => Adds::Exact(exact(Kind::TokenSha256, id)),
        Revoked::Subject {
            sub, issued_before, ..
        } => Adds::Subject(exact(Kind::Subject, sub.as_bytes()), *issued_before),
        Revoked::IssuedBefore(cutoff) => Adds::Cutoff(scopes.clone().into_boxed_slice(), *cutoff),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::etcd::proto::KeyValue;
    use crate::revocation::set::{Probe, TokenHashes};

    const PREFIX: &str = "/r/";

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            ..KeyValue::default()
        }
    }

    fn puts(pairs: &[(&str, &str)]) -> Changes {
        Changes {
            puts: pairs.iter().map(|(k, v)| kv(k, v)).collect(),
            ..Changes::default()
        }
    }

    fn issuers(issuer: &str) -> Vec<String> {
        match issuer {
            "https://idp" => vec!["a".to_owned(), "b".to_owned()],
            _ => Vec::new(),
        }
    }

    fn jti_probe(scope: &str, jti: &str) -> Probe {
        Probe::scoped(
            &[scope.to_owned()],
            Some(jti),
            None,
            Some(100),
            TokenHashes::default(),
        )
    }

    #[test]
    fn a_delete_lets_the_token_in_again_and_a_read_replaces_everything() {
        let mut store = HeldStore::new(PREFIX);
        store.apply(&puts(&[("/r/jti/j1", "{}"), ("/r/jti/j2", "{}")]), &issuers);
        assert!(store.build(0, "").revokes(&jti_probe("p", "j1")));
        let delete = Changes {
            deletes: vec![b"/r/jti/j1".to_vec(), b"/r/jti/never".to_vec()],
            ..Changes::default()
        };
        assert_eq!(store.apply(&delete, &issuers).deleted, 1);
        let set = store.build(0, "");
        assert!(!set.revokes(&jti_probe("p", "j1")));
        assert!(set.revokes(&jti_probe("p", "j2")));
        let reread = Changes {
            reset: true,
            ..puts(&[("/r/jti/j3", "{}")])
        };
        store.apply(&reread, &issuers);
        let set = store.build(0, "");
        assert!(!set.revokes(&jti_probe("p", "j2")), "not in the new read");
        assert!(set.revokes(&jti_probe("p", "j3")));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn garbage_is_skipped_and_counted_and_never_unrevokes_a_held_key() {
        let mut store = HeldStore::new(PREFIX);
        store.apply(&puts(&[("/r/jti/j1", "{}")]), &issuers);
        let secret = "eyJhbGciOiJSUzI1NiJ9.secret.sig";
        let garbage = [
            ("/r/jti/j1", "not json"),
            ("/r/what/x", "{}"),
            (&format!("/r/jti/{secret}/x") as &str, "{}"),
            ("/r/iss/https%3A%2F%2Fother/jti/j9", "{}"),
        ];
        let applied = store.apply(&puts(&garbage), &issuers);
        assert_eq!(
            (applied.put, applied.skipped, applied.no_such_issuer),
            (0, 3, 1)
        );
        assert_eq!(applied.skipped_lines.len(), 3);
        assert!(applied.skipped_lines.iter().all(|l| !l.contains("secret")));
        assert!(
            store.build(0, "").revokes(&jti_probe("p", "j1")),
            "an unreadable overwrite keeps the revocation"
        );
    }

    #[test]
    fn dead_tokens_leave_the_set_and_issuer_entries_apply_to_that_issuers_providers_only() {
        let mut store = HeldStore::new(PREFIX);
        store.apply(
            &puts(&[
                ("/r/jti/old", r#"{"exp": 100}"#),
                ("/r/iss/https%3A%2F%2Fidp/jti/j3", "{}"),
            ]),
            &issuers,
        );
        assert!(store.build(99, "").revokes(&jti_probe("x", "old")));
        let set = store.build(100, "");
        assert!(!set.revokes(&jti_probe("x", "old")));
        assert!(set.revokes(&jti_probe("a", "j3")) && set.revokes(&jti_probe("b", "j3")));
        assert!(!set.revokes(&jti_probe("c", "j3")));
        assert_eq!(store.len(), 2, "held until etcd deletes it (its lease)");
    }

    #[test]
    fn many_skipped_keys_describe_only_the_first_few() {
        let keys: Vec<String> = (0..20).map(|i| format!("/r/nope/{i}")).collect();
        let pairs: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "{}")).collect();
        let applied = HeldStore::new(PREFIX).apply(&puts(&pairs), &issuers);
        assert_eq!(applied.skipped, 20);
        assert_eq!(applied.skipped_lines.len(), MAX_SKIPPED_LINES);
    }
}
