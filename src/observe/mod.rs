//! Observability: the decision log, misuse detection, log rate limits, token fingerprints
//! and once-per-episode logging.

pub mod anomaly;
pub mod decision_log;
pub mod episode;
pub mod fingerprint;
pub mod log_limit;
