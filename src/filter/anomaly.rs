//! The host side of misuse detection: a token's window lives in a shared-data slot that every
//! worker of the process updates by compare-and-swap, so no request is counted twice or lost.

use super::host::Host;
use proxy_wasm::types::Status;

use crate::observe::anomaly::{self, AnomalyConfig, Observed};

/// Retries under contention; each retry re-reads the slot (a few hundred bytes).
const MAX_CAS_ATTEMPTS: usize = 64;

/// Counts one request of `token` from `ip`. `None` when the slot could not be updated: the
/// request is then let through uncounted (`anomaly.not_counted`): misuse detection is a
/// signal on top of a valid token, and shared-data trouble must not refuse good ones.
pub fn observe(
    host: &dyn Host,
    config: &AnomalyConfig,
    token: u64,
    ip: u64,
    now: i64,
) -> Option<Observed> {
    let key = config.slot_key(token);
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (bytes, cas) = host.shared_data(&key).ok()?;
        let observed = anomaly::observe(bytes.as_deref(), token, ip, now, config);
        // A slot never written has no CAS: the host creates a missing key whatever CAS is
        // given, and a key another worker created meanwhile fails this one (no lost update).
        let cas = cas.or(Some(u32::MAX));
        match host.set_shared_data(&key, &observed.slot, cas) {
            Ok(()) => return Some(observed),
            Err(Status::CasMismatch) => continue,
            Err(_) => return None,
        }
    }
    None
}
