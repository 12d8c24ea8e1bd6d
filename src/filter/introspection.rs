//! The host side of introspection: answers cached per process in shared data (so every
//! worker sees one answer), read on each request for an opaque token. Answers are kept per
//! IdP (`answer_scope`): every filter config of a VM shares the process's shared data, and one
//! must never be answered with what another config's IdP said.

use std::rc::Rc;

use proxy_wasm::types::Status;

use crate::config::Provider;
use crate::decide::guard::AnswerStore;
use crate::idp::introspection::{slot_of, Answer, Slot};
use crate::token::id::TokenDigest;

use super::host::Host;

/// Who answered: the endpoint (cluster, authority, path), the client asking, and the issuer
/// the answers are checked against. Configs that ask the same IdP as the same client share
/// answers; any other config never sees them. `None`: the provider does not introspect.
pub fn answer_scope(provider: &Provider) -> Option<String> {
    let client = &provider.introspection.as_ref()?.client;
    let endpoint = &client.endpoint;
    Some(super::scope_hash(&[
        &endpoint.cluster,
        &endpoint.authority,
        &endpoint.path,
        &client.client_id,
        // No issuer is "" (an empty `issuer` is refused by the config).
        provider.issuer.as_deref().unwrap_or_default(),
    ]))
}

fn slot_key(scope: &str, digest: &TokenDigest) -> String {
    format!("bearer_guard.introspection.{scope}.{}", slot_of(digest))
}

/// The guard's view of the shared answers of one IdP (at most one provider introspects).
pub struct SharedAnswers {
    pub scope: String,
    /// The guard asks on its own: the host comes along.
    pub host: Rc<dyn Host>,
}

impl AnswerStore for SharedAnswers {
    fn lookup(&self, digest: &TokenDigest, now: i64) -> Option<Answer> {
        let (bytes, _) = self.host.shared_data(&slot_key(&self.scope, digest)).ok()?;
        Slot::decode(&bytes?).lookup(digest, now).cloned()
    }
}

/// Changes one slot by compare-and-swap (workers write concurrently).
fn update_slot(host: &dyn Host, scope: &str, digest: &TokenDigest, change: impl Fn(&mut Slot)) {
    let key = slot_key(scope, digest);
    for _ in 0..16 {
        let (bytes, cas) = host.shared_data(&key).unwrap_or((None, None));
        let mut slot = bytes.as_deref().map(Slot::decode).unwrap_or_default();
        change(&mut slot);
        match host.set_shared_data(&key, &slot.encode(), cas) {
            Ok(()) => return,
            Err(Status::CasMismatch) => continue,
            Err(status) => {
                host.warn(&format!("introspection answer not cached ({status:?})"));
                return;
            }
        }
    }
    host.warn("introspection answer not cached (too much contention)");
}

pub fn store_answer(host: &dyn Host, scope: &str, digest: &TokenDigest, answer: Answer, now: i64) {
    update_slot(host, scope, digest, |slot| {
        slot.insert(*digest, answer.clone(), now)
    });
}

/// A token revoked by a response header must not be served from a cached "active".
pub fn forget_answer(host: &dyn Host, scope: &str, digest: &TokenDigest) {
    update_slot(host, scope, digest, |slot| slot.remove(digest));
}
