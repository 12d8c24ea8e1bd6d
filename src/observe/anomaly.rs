//! Misuse detection: one token used from too many client addresses, or too often, within a
//! window. The counts live in shared data (the adapter updates a slot by compare-and-swap so
//! every worker of the process counts into the same window); this module is the bookkeeping
//! on a slot's bytes, with the time passed in.
//!
//! Memory is bounded: tokens hash into `slots` slots of at most `ENTRIES_PER_SLOT` windows;
//! a full slot evicts the window that started first.

use serde::Deserialize;

/// Windows per shared-data slot: a request copies one slot (a few hundred bytes).
pub const ENTRIES_PER_SLOT: usize = 16;
const MAGIC: &[u8; 4] = b"BGA1";
const ENTRY_HEADER_BYTES: usize = 8 + 8 + 4 + 1 + 1;
const FLAG_REPORTED: u8 = 1;

pub const DEFAULT_WINDOW_SECONDS: u32 = 60;
pub const DEFAULT_MAX_DISTINCT_IPS: u8 = 5;
pub const DEFAULT_MAX_REQUESTS: u32 = 600;
pub const DEFAULT_MAX_TOKENS: u32 = 100_000;
pub const MAX_DISTINCT_IPS_LIMIT: u8 = 64;

/// What happens when a token goes over a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum AnomalyAction {
    /// Let the request through; log the token once per window and count it.
    #[default]
    Log,
    /// Refuse the requests over a limit (401 `invalid_token`, reason `anomaly`).
    Deny,
    /// Revoke the token (learned by every worker, published when publishing is on) and
    /// refuse the request.
    Revoke,
}

impl AnomalyAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyAction::Log => "log",
            AnomalyAction::Deny => "deny",
            AnomalyAction::Revoke => "revoke",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnomalyConfig {
    // The limits are private: the slot keys' prefix is written from them once, so they
    // cannot change after `new` (a changed limit with a stale prefix would mix windows).
    window_seconds: u32,
    max_distinct_ips: u8,
    max_requests: u32,
    pub action: AnomalyAction,
    /// Tokens tracked at once, per process (rounded up to whole slots).
    max_tokens: u32,
    /// The slot keys' start, written once from the limits (see `slot_key`).
    key_prefix: String,
}

impl AnomalyConfig {
    pub fn new(
        window_seconds: u32,
        max_distinct_ips: u8,
        max_requests: u32,
        action: AnomalyAction,
        max_tokens: u32,
    ) -> Self {
        AnomalyConfig {
            window_seconds,
            max_distinct_ips,
            max_requests,
            action,
            max_tokens,
            key_prefix: format!(
                "bearer_guard.anomaly.{window_seconds}-{max_distinct_ips}-{max_requests}-{max_tokens}."
            ),
        }
    }

    pub fn slots(&self) -> u32 {
        self.max_tokens.div_ceil(ENTRIES_PER_SLOT as u32).max(1)
    }

    /// The shared-data key of the slot a token's window lives in. The limits are part of
    /// the key: filter configurations with other limits (another listener, a reload that
    /// changes them) never read each other's windows.
    ///
    /// The limits' part is written once: this runs on every request with a token, and
    /// `format!` took 0.46 of the 1.64 us misuse detection added to a cache hit in V8
    /// (`make wasm-cost`).
    pub fn slot_key(&self, token: u64) -> String {
        let slot = token % u64::from(self.slots());
        let mut key = String::with_capacity(self.key_prefix.len() + 20);
        key.push_str(&self.key_prefix);
        push_decimal(&mut key, slot);
        key
    }
}

/// `n` in decimal, as `Display` writes it.
fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        if let Some(digit) = digits.get_mut(start) {
            // `n % 10` is below 10: the cast keeps it whole.
            *digit = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || start == 0 {
            break;
        }
    }
    let digits = digits.get(start..).unwrap_or_default();
    out.push_str(std::str::from_utf8(digits).unwrap_or_default());
}

/// The plugin config's `anomaly` object.
#[derive(Debug, Deserialize)]
#[cfg_attr(
    feature = "cli",
    derive(schemars::JsonSchema),
    schemars(rename = "Anomaly")
)]
#[serde(deny_unknown_fields)]
pub struct RawAnomaly {
    /// Misuse detection window per token.
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(range(min = 1, max = 86_400), extend("default" = DEFAULT_WINDOW_SECONDS))
    )]
    window_seconds: Option<u32>,
    /// Client addresses a token may be used from per window.
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(
            range(min = 1, max = MAX_DISTINCT_IPS_LIMIT),
            extend("default" = DEFAULT_MAX_DISTINCT_IPS)
        )
    )]
    max_distinct_ips: Option<u8>,
    /// Requests a token may make per window.
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(range(min = 1), extend("default" = DEFAULT_MAX_REQUESTS))
    )]
    max_requests: Option<u32>,
    /// What happens over a limit; `revoke` needs a `revocation` object (`{}` will do).
    #[serde(default)]
    #[cfg_attr(feature = "cli", schemars(extend("default" = "log")))]
    action: AnomalyAction,
    /// Tokens tracked at once per proxy, at most (slots of 16, chosen by hash).
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(range(min = 1, max = 10_000_000), extend("default" = DEFAULT_MAX_TOKENS))
    )]
    max_tokens: Option<u32>,
}

impl RawAnomaly {
    /// `Err((key, reason))`, the key relative to `anomaly`.
    pub fn compile(self) -> Result<AnomalyConfig, (&'static str, String)> {
        let window_seconds = self.window_seconds.unwrap_or(DEFAULT_WINDOW_SECONDS);
        if !(1..=86_400).contains(&window_seconds) {
            return Err(("window_seconds", "must be 1..=86400".to_owned()));
        }
        let max_distinct_ips = self.max_distinct_ips.unwrap_or(DEFAULT_MAX_DISTINCT_IPS);
        if !(1..=MAX_DISTINCT_IPS_LIMIT).contains(&max_distinct_ips) {
            return Err((
                "max_distinct_ips",
                format!("must be 1..={MAX_DISTINCT_IPS_LIMIT}"),
            ));
        }
        let max_requests = self.max_requests.unwrap_or(DEFAULT_MAX_REQUESTS);
        if max_requests == 0 {
            return Err(("max_requests", "must be at least 1".to_owned()));
        }
        let max_tokens = self.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
        if !(1..=10_000_000).contains(&max_tokens) {
            return Err(("max_tokens", "must be 1..=10000000".to_owned()));
        }
        Ok(AnomalyConfig::new(
            window_seconds,
            max_distinct_ips,
            max_requests,
            self.action,
            max_tokens,
        ))
    }
}

/// Which limit a request went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    DistinctIps,
    Requests,
}

impl Exceeded {
    pub fn as_str(self) -> &'static str {
        match self {
            Exceeded::DistinctIps => "max_distinct_ips",
            Exceeded::Requests => "max_requests",
        }
    }
}

/// One request counted into its token's window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The slot to write back (by compare-and-swap).
    pub slot: Vec<u8>,
    pub exceeded: Option<Exceeded>,
    /// The first request over a limit in this window: log, count and revoke once.
    pub first_report: bool,
    /// Another token's window was evicted to make room.
    pub evicted: bool,
    pub requests: u32,
    pub distinct_ips: usize,
}

/// What the adapter does with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    Allow,
    Deny,
    /// Revoke the token, then refuse the request.
    RevokeAndDeny,
}

impl Observed {
    pub fn response(&self, action: AnomalyAction) -> Response {
        match (self.exceeded, action) {
            (None, _) | (Some(_), AnomalyAction::Log) => Response::Allow,
            (Some(_), AnomalyAction::Deny) => Response::Deny,
            (Some(_), AnomalyAction::Revoke) if self.first_report => Response::RevokeAndDeny,
            // Revoked already (the revocation stops it before this point once learned).
            (Some(_), AnomalyAction::Revoke) => Response::Deny,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Window {
    token: u64,
    started: i64,
    requests: u32,
    flags: u8,
    ips: Vec<u64>,
}

/// The token's key in the slots: the first 8 bytes of its SHA-256.
pub fn token_key(sha256: &[u8; 32]) -> u64 {
    let mut head = [0u8; 8];
    head.copy_from_slice(sha256.get(..8).unwrap_or(&[0; 8]));
    u64::from_le_bytes(head)
}

/// A client address as a slot stores it (FNV-1a 64).
pub fn ip_key(ip: &str) -> u64 {
    ip.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Window {
    /// An empty window of `token` starting at `now`.
    fn new(token: u64, now: i64) -> Window {
        Window {
            token,
            started: now,
            requests: 0,
            flags: 0,
            ips: Vec::new(),
        }
    }

    /// When the window is over: the token's next request starts a new one.
    fn end(&self, config: &AnomalyConfig) -> i64 {
        self.started
            .saturating_add(i64::from(config.window_seconds))
    }

    /// Counts one request from `ip` at `now`: the limit it went over, if any, and whether it
    /// is the window's first request over a limit.
    fn count(&mut self, ip: u64, now: i64, config: &AnomalyConfig) -> (Option<Exceeded>, bool) {
        if now >= self.end(config) {
            *self = Window::new(self.token, now);
        }
        let mut exceeded = None;
        self.requests = self.requests.saturating_add(1);
        if !self.ips.contains(&ip) {
            if self.ips.len() < usize::from(config.max_distinct_ips) {
                self.ips.push(ip);
            } else {
                // Not remembered: the first addresses keep working under `deny`.
                exceeded = Some(Exceeded::DistinctIps);
            }
        }
        if exceeded.is_none() && self.requests > config.max_requests {
            exceeded = Some(Exceeded::Requests);
        }
        let first_report = exceeded.is_some() && self.flags & FLAG_REPORTED == 0;
        if first_report {
            self.flags |= FLAG_REPORTED;
        }
        (exceeded, first_report)
    }
}

/// Counts one request of `token` from `ip` at `now` into the slot's bytes (`None`: the slot
/// was never written). Unreadable bytes start an empty slot.
pub fn observe(
    slot: Option<&[u8]>,
    token: u64,
    ip: u64,
    now: i64,
    config: &AnomalyConfig,
) -> Observed {
    let mut windows = slot.and_then(decode).unwrap_or_default();
    let (index, evicted) = window_of(&mut windows, token, now, config);
    let (exceeded, first_report, requests, distinct_ips) = match windows.get_mut(index) {
        Some(window) => {
            let (exceeded, first_report) = window.count(ip, now, config);
            (exceeded, first_report, window.requests, window.ips.len())
        }
        None => (None, false, 0, 0),
    };
    Observed {
        slot: encode(&windows),
        exceeded,
        first_report,
        evicted,
        requests,
        distinct_ips,
    }
}

/// The index of `token`'s window in the slot, a new one if it has none; and whether another
/// token's window was evicted to make room for it.
fn window_of(
    windows: &mut Vec<Window>,
    token: u64,
    now: i64,
    config: &AnomalyConfig,
) -> (usize, bool) {
    if let Some(index) = windows.iter().position(|w| w.token == token) {
        return (index, false);
    }
    let mut evicted = false;
    // Over windows are worth nothing: make room from them first, then the oldest.
    windows.retain(|w| now < w.end(config));
    if windows.len() >= ENTRIES_PER_SLOT {
        // A flagged window goes last: evicting it would forget the addresses that
        // make the next one stand out.
        if let Some(oldest) = windows
            .iter()
            .enumerate()
            .min_by_key(|(_, w)| (w.flags & FLAG_REPORTED != 0, w.started))
            .map(|(i, _)| i)
        {
            windows.swap_remove(oldest);
            evicted = true;
        }
    }
    windows.push(Window::new(token, now));
    (windows.len() - 1, evicted)
}

fn encode(windows: &[Window]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(
        MAGIC.len()
            + windows
                .iter()
                .map(|w| ENTRY_HEADER_BYTES + 8 * w.ips.len())
                .sum::<usize>(),
    );
    bytes.extend_from_slice(MAGIC);
    for w in windows {
        bytes.extend_from_slice(&w.token.to_le_bytes());
        bytes.extend_from_slice(&w.started.to_le_bytes());
        bytes.extend_from_slice(&w.requests.to_le_bytes());
        bytes.push(w.flags);
        bytes.push(u8::try_from(w.ips.len()).unwrap_or(u8::MAX));
        for ip in &w.ips {
            bytes.extend_from_slice(&ip.to_le_bytes());
        }
    }
    bytes
}

fn decode(bytes: &[u8]) -> Option<Vec<Window>> {
    let mut rest = bytes.strip_prefix(MAGIC)?;
    let mut windows = Vec::new();
    while !rest.is_empty() {
        let header = rest.get(..ENTRY_HEADER_BYTES)?;
        let word = |at: usize| -> Option<[u8; 8]> { header.get(at..at + 8)?.try_into().ok() };
        let token = u64::from_le_bytes(word(0)?);
        let started = i64::from_le_bytes(word(8)?);
        let requests = u32::from_le_bytes(header.get(16..20)?.try_into().ok()?);
        let flags = *header.get(20)?;
        let count = usize::from(*header.get(21)?);
        let ips_end = ENTRY_HEADER_BYTES + 8 * count;
        let ips = rest
            .get(ENTRY_HEADER_BYTES..ips_end)?
            .chunks_exact(8)
            .map(|c| c.try_into().ok().map(u64::from_le_bytes))
            .collect::<Option<Vec<u64>>>()?;
        windows.push(Window {
            token,
            started,
            requests,
            flags,
            ips,
        });
        rest = rest.get(ips_end..)?;
    }
    Some(windows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(action: AnomalyAction) -> AnomalyConfig {
        AnomalyConfig::new(60, 5, 10, action, 1_000)
    }

    /// Runs requests through one slot, as the adapter does.
    fn run(
        slot: &mut Option<Vec<u8>>,
        token: u64,
        ip: &str,
        now: i64,
        c: &AnomalyConfig,
    ) -> Observed {
        let observed = observe(slot.as_deref(), token, ip_key(ip), now, c);
        *slot = Some(observed.slot.clone());
        observed
    }

    #[test]
    fn the_sixth_address_exceeds_five_and_the_first_five_keep_working() {
        let c = config(AnomalyAction::Deny);
        let mut slot = None;
        for i in 2..=6 {
            let o = run(&mut slot, 7, &format!("127.0.0.{i}"), 100, &c);
            assert_eq!(o.exceeded, None);
            assert_eq!(o.distinct_ips, usize::try_from(i - 1).unwrap());
        }
        let sixth = run(&mut slot, 7, "127.0.0.7", 101, &c);
        assert_eq!(sixth.exceeded, Some(Exceeded::DistinctIps));
        assert!(sixth.first_report);
        assert_eq!(sixth.response(AnomalyAction::Deny), Response::Deny);
        assert_eq!(sixth.response(AnomalyAction::Log), Response::Allow);
        assert_eq!(
            sixth.response(AnomalyAction::Revoke),
            Response::RevokeAndDeny
        );
        let again = run(&mut slot, 7, "127.0.0.7", 102, &c);
        assert_eq!(again.exceeded, Some(Exceeded::DistinctIps));
        assert!(!again.first_report, "reported once per window");
        assert_eq!(again.response(AnomalyAction::Revoke), Response::Deny);
        assert_eq!(run(&mut slot, 7, "127.0.0.2", 103, &c).exceeded, None);
    }

    #[test]
    fn requests_over_the_maximum_exceed_until_the_window_ends() {
        let c = config(AnomalyAction::Deny);
        let mut slot = None;
        for n in 1..=10 {
            assert_eq!(run(&mut slot, 1, "10.0.0.1", 100, &c).requests, n);
        }
        let over = run(&mut slot, 1, "10.0.0.1", 159, &c);
        assert_eq!(over.exceeded, Some(Exceeded::Requests));
        assert!(over.first_report);
        let next_window = run(&mut slot, 1, "10.0.0.1", 160, &c);
        assert_eq!(next_window.exceeded, None);
        assert_eq!(next_window.requests, 1);
    }

    #[test]
    fn tokens_sharing_a_slot_count_apart() {
        let c = config(AnomalyAction::Deny);
        let mut slot = None;
        for _ in 0..10 {
            run(&mut slot, 1, "10.0.0.1", 100, &c);
        }
        let other = run(&mut slot, 2, "10.0.0.1", 100, &c);
        assert_eq!((other.requests, other.exceeded), (1, None));
        assert_eq!(run(&mut slot, 1, "10.0.0.1", 100, &c).requests, 11);
    }

    #[test]
    fn a_full_slot_evicts_the_window_that_started_first() {
        let c = config(AnomalyAction::Log);
        let mut slot = None;
        for token in 0..ENTRIES_PER_SLOT as u64 {
            let at = 100 + i64::try_from(token).unwrap();
            assert!(!run(&mut slot, token, "10.0.0.1", at, &c).evicted);
        }
        let newcomer = run(&mut slot, 99, "10.0.0.1", 120, &c);
        assert!(newcomer.evicted);
        assert_eq!(decode(&newcomer.slot).unwrap().len(), ENTRIES_PER_SLOT);
        // Token 0 (the oldest window) starts over; token 1 kept its count.
        assert_eq!(run(&mut slot, 1, "10.0.0.1", 121, &c).requests, 2);
        // Over windows make room without evicting a live one.
        let later = run(&mut slot, 500, "10.0.0.1", 1_000, &c);
        assert!(!later.evicted);
        assert_eq!(decode(&later.slot).unwrap().len(), 1);
    }

    #[test]
    fn flagged_windows_are_evicted_last() {
        let c = config(AnomalyAction::Deny);
        let mut slot = None;
        for _ in 0..11 {
            run(&mut slot, 0, "10.0.0.1", 100, &c);
        }
        for token in 1..ENTRIES_PER_SLOT as u64 {
            run(&mut slot, token, "10.0.0.1", 101, &c);
        }
        assert!(run(&mut slot, 99, "10.0.0.1", 102, &c).evicted);
        // Token 0 started first but is flagged: still over its limit.
        assert_eq!(
            run(&mut slot, 0, "10.0.0.1", 103, &c).exceeded,
            Some(Exceeded::Requests)
        );
    }

    #[test]
    fn decimals_are_written_as_display_writes_them() {
        for n in [
            0,
            7,
            9,
            10,
            99,
            100,
            86_400,
            4_000_000_000,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut out = "x".to_owned();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}"));
        }
    }

    #[test]
    fn keys_differ_by_limits() {
        let a = config(AnomalyAction::Deny);
        let b = AnomalyConfig::new(
            a.window_seconds,
            a.max_distinct_ips,
            11,
            a.action,
            a.max_tokens,
        );
        assert_eq!(
            a.slot_key(5),
            format!(
                "bearer_guard.anomaly.{}-{}-{}-{}.5",
                a.window_seconds, a.max_distinct_ips, a.max_requests, a.max_tokens
            )
        );
        assert_ne!(a.slot_key(5), b.slot_key(5));
        assert_eq!(a.slot_key(5), a.slot_key(5 + u64::from(a.slots())));
    }

    #[test]
    fn unreadable_slots_start_empty_and_slots_round_trip() {
        let c = config(AnomalyAction::Log);
        let o = observe(Some(b"garbage"), 5, ip_key("::1"), 100, &c);
        assert_eq!(o.requests, 1);
        let truncated = &o.slot[..o.slot.len() - 3];
        assert_eq!(decode(truncated), None);
        assert_eq!(decode(&o.slot).unwrap().len(), 1);
    }

    #[test]
    fn config_bounds_are_checked() {
        let raw = |v: serde_json::Value| serde_json::from_value::<RawAnomaly>(v).unwrap().compile();
        let c = raw(serde_json::json!({})).unwrap();
        assert_eq!(
            (
                c.window_seconds,
                c.max_distinct_ips,
                c.max_requests,
                c.action
            ),
            (60, 5, 600, AnomalyAction::Log)
        );
        assert_eq!(c.slots(), 6_250);
        assert_eq!(
            raw(serde_json::json!({"window_seconds": 0})).unwrap_err().0,
            "window_seconds"
        );
        assert_eq!(
            raw(serde_json::json!({"max_distinct_ips": 0}))
                .unwrap_err()
                .0,
            "max_distinct_ips"
        );
        assert_eq!(
            raw(serde_json::json!({"max_requests": 0})).unwrap_err().0,
            "max_requests"
        );
        assert_eq!(
            raw(serde_json::json!({"max_tokens": 0})).unwrap_err().0,
            "max_tokens"
        );
        assert!(
            serde_json::from_value::<RawAnomaly>(serde_json::json!({"action": "block"})).is_err()
        );
    }
}
