//! The fetch lease, sans I/O: one fetch of a source per process, not one per worker. The
//! lease is a shared-data value `<until>` (unix seconds); whoever sets it by compare-and-swap
//! fetches, the other workers wait for what it shares. The shell reads and writes the value;
//! what it means is decided here.

/// A lease nobody holds (also the value a lease is created with).
pub const FREE: &[u8] = b"0";

/// When a fetch started at `now` is given up on: its timeout plus 2 s of slack. Bounds both
/// the fetch lease and how long a request waits for what is fetched.
pub fn fetch_deadline(now: i64, timeout_ms: u64) -> i64 {
    now.saturating_add(i64::try_from(timeout_ms / 1000).unwrap_or(0) + 2)
}

/// Whether a lease holding `value` (none: never taken) may be taken at `now`.
pub fn lease_free(value: Option<&[u8]>, now: i64) -> bool {
    value
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse::<i64>().ok())
        .is_none_or(|until| until <= now)
}

/// The value that takes the lease for a fetch started at `now`, if it may be taken: it is
/// free, and it has a CAS to swap against (one without was never created, so a racing
/// worker could take it too).
pub fn take(value: Option<&[u8]>, cas: Option<u32>, now: i64, timeout_ms: u64) -> Option<Vec<u8>> {
    (cas.is_some() && lease_free(value, now)).then(|| held_until(fetch_deadline(now, timeout_ms)))
}

/// The value of a lease held until `until`.
pub fn held_until(until: i64) -> Vec<u8> {
    until.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_and_lease() {
        assert_eq!(fetch_deadline(100, 2000), 104);
        assert_eq!(fetch_deadline(100, 500), 102);
        assert!(lease_free(None, 10));
        assert!(lease_free(Some(b"10"), 10));
        assert!(!lease_free(Some(b"11"), 10));
        assert!(lease_free(Some(b"junk"), 10));
        assert_eq!(take(Some(FREE), Some(3), 100, 2000), Some(b"104".to_vec()));
        assert_eq!(take(Some(b"104"), Some(3), 103, 2000), None);
        assert_eq!(
            take(Some(FREE), None, 100, 2000),
            None,
            "no CAS: not created"
        );
    }
}
