//! The host side of introspection: answers cached per process in shared data (so every
//! worker sees one answer), read on each request for an opaque token.

use super::host;
use log::warn;
use proxy_wasm::types::Status;

use crate::cache::TokenDigest;
use crate::guard::AnswerStore;
use crate::introspection::{slot_of, Answer, Slot};

fn slot_key(digest: &TokenDigest) -> String {
    format!("bearer_guard.introspection.{}", slot_of(digest))
}

/// The guard's view of the shared answers.
pub struct SharedAnswers;

impl AnswerStore for SharedAnswers {
    fn lookup(&self, digest: &TokenDigest, now: i64) -> Option<Answer> {
        let (bytes, _) = host::shared_data(&slot_key(digest)).ok()?;
        Slot::decode(&bytes?).lookup(digest, now).cloned()
    }
}

/// Changes one slot by compare-and-swap (workers write concurrently).
fn update_slot(digest: &TokenDigest, change: impl Fn(&mut Slot)) {
    let key = slot_key(digest);
    for _ in 0..16 {
        let (bytes, cas) = host::shared_data(&key).unwrap_or((None, None));
        let mut slot = bytes.as_deref().map(Slot::decode).unwrap_or_default();
        change(&mut slot);
        match host::set_shared_data(&key, &slot.encode(), cas) {
            Ok(()) => return,
            Err(Status::CasMismatch) => continue,
            Err(status) => {
                warn!("introspection answer not cached ({status:?})");
                return;
            }
        }
    }
    warn!("introspection answer not cached (too much contention)");
}

pub fn store_answer(digest: &TokenDigest, answer: Answer, now: i64) {
    update_slot(digest, |slot| slot.insert(*digest, answer.clone(), now));
}

/// A token revoked by a response header must not be served from a cached "active".
pub fn forget_answer(digest: &TokenDigest) {
    update_slot(digest, |slot| slot.remove(digest));
}
