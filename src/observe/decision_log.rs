//! The decision log: one JSON object per line through the proxy's log, and the same fields
//! as Envoy filter state for the operator's access log. Never the token, its signature or the
//! query string: the token appears only as the first 16 hex characters of its SHA-256.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::decide::decision::{RevocationSource, TokenIdentity};

/// Longest user agent written; the rest is cut (a header can be 60 KB).
pub const USER_AGENT_MAX_CHARS: usize = 128;
/// Longest path and authority written.
pub const PATH_MAX_CHARS: usize = 512;
pub const DEFAULT_MAX_LINES_PER_SECOND: u32 = 100;

/// Which decisions get a JSON log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum LogDecisions {
    None,
    #[default]
    Denied,
    All,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub decisions: LogDecisions,
    /// Write the fields to filter state for the access log. Off by default: each field is a
    /// host call, about a quarter of the cached path's throughput (`make bench`).
    pub filter_state: bool,
    /// Per worker; 0 = no limit. Lines over the limit are counted and reported, not written.
    pub max_lines_per_second: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            decisions: LogDecisions::Denied,
            filter_state: false,
            max_lines_per_second: DEFAULT_MAX_LINES_PER_SECOND,
        }
    }
}

/// The plugin config's `log` object.
#[derive(Debug, Deserialize, Default)]
#[cfg_attr(
    feature = "cli",
    derive(schemars::JsonSchema),
    schemars(rename = "Log")
)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// Which decisions get a JSON log line: `none`, `denied` or `all`.
    #[serde(default)]
    #[cfg_attr(feature = "cli", schemars(extend("default" = "denied")))]
    decisions: LogDecisions,
    /// Write the decision's fields to Envoy filter state (`wasm.bearer_guard.<field>`) for the
    /// access log. Each field is a host call.
    #[serde(default)]
    #[cfg_attr(feature = "cli", schemars(extend("default" = false)))]
    filter_state: Option<bool>,
    /// Decision log lines per second per worker; `0`: no limit.
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(extend("default" = DEFAULT_MAX_LINES_PER_SECOND))
    )]
    max_lines_per_second: Option<u32>,
}

impl RawLog {
    pub fn compile(self) -> LogConfig {
        LogConfig {
            decisions: self.decisions,
            filter_state: self.filter_state.unwrap_or(false),
            max_lines_per_second: self
                .max_lines_per_second
                .unwrap_or(DEFAULT_MAX_LINES_PER_SECOND),
        }
    }
}

impl LogConfig {
    /// Whether a decision gets a log line.
    pub fn logs(&self, allowed: bool) -> bool {
        match self.decisions {
            LogDecisions::None => false,
            LogDecisions::Denied => !allowed,
            LogDecisions::All => true,
        }
    }
}

/// One decision as the log and the access log see it.
#[derive(Debug, Clone, Default)]
pub struct Record<'a> {
    /// Unix time in milliseconds.
    pub time_ms: i64,
    pub allowed: bool,
    /// `None` when allowed.
    pub reason: Option<&'static str>,
    /// For a denial: the status it was (or, shadowed, would have been) answered with.
    pub status: Option<u32>,
    /// A denial that shadow mode let through: logged as a denial, at the same `log.decisions`.
    pub shadow: bool,
    pub provider: Option<&'a str>,
    pub identity: Option<&'a TokenIdentity>,
    /// A token fingerprint without verified claims (a denial before the signature).
    pub token_fp: Option<&'a str>,
    pub revoked_by: Option<RevocationSource>,
    /// Set when misuse detection flagged the request: which limit.
    pub anomaly: Option<&'static str>,
    pub client_ip: Option<&'a str>,
    pub method: &'a str,
    /// `:path`; the query string and fragment are cut here.
    pub path: &'a str,
    pub authority: &'a str,
    pub user_agent: Option<&'a str>,
}

impl Record<'_> {
    fn fields(&self) -> Vec<(&'static str, Value)> {
        let text = |v: Option<&str>| v.map_or(Value::Null, |s| Value::String(s.to_owned()));
        let claim = |pick: fn(&TokenIdentity) -> Option<&String>| {
            self.identity
                .and_then(pick)
                .map_or(Value::Null, |s| Value::String(s.clone()))
        };
        let fingerprint = self
            .identity
            .map(TokenIdentity::fingerprint)
            .or_else(|| self.token_fp.map(str::to_owned));
        vec![
            ("time", Value::String(rfc3339_millis(self.time_ms))),
            (
                "decision",
                Value::String(if self.allowed { "allow" } else { "deny" }.to_owned()),
            ),
            ("reason", text(self.reason)),
            ("status", self.status.map_or(Value::Null, Value::from)),
            ("shadow", Value::Bool(self.shadow)),
            ("provider", text(self.provider)),
            ("iss", claim(|i| i.iss.as_ref())),
            ("sub", claim(|i| i.sub.as_ref())),
            ("jti", claim(|i| i.jti.as_ref())),
            ("token_fp", fingerprint.map_or(Value::Null, Value::String)),
            (
                "revoked_by",
                text(self.revoked_by.map(RevocationSource::code)),
            ),
            ("anomaly", text(self.anomaly)),
            ("client_ip", text(self.client_ip)),
            ("method", Value::String(cut(self.method, 16))),
            (
                "path",
                Value::String(cut(path_without_query(self.path), PATH_MAX_CHARS)),
            ),
            (
                "authority",
                Value::String(cut(self.authority, PATH_MAX_CHARS)),
            ),
            (
                "user_agent",
                self.user_agent.map_or(Value::Null, |ua| {
                    Value::String(cut(ua, USER_AGENT_MAX_CHARS))
                }),
            ),
        ]
    }

    /// The log line: a JSON object, keys in a fixed order, strings escaped by serde_json
    /// (a CR/LF in a header cannot start a forged line).
    pub fn to_json_line(&self) -> String {
        let map: Map<String, Value> = self
            .fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        Value::Object(map).to_string()
    }

    /// Filter state: the token and decision fields (method, path, authority and user agent
    /// are in Envoy's own access log already). Absent fields are not written. Built directly,
    /// not from `fields()`: this runs for every request when enabled.
    pub fn filter_state(&self) -> Vec<(&'static str, String)> {
        let fingerprint = self
            .identity
            .map(TokenIdentity::fingerprint)
            .or_else(|| self.token_fp.map(str::to_owned));
        let claim =
            |pick: fn(&TokenIdentity) -> Option<&String>| self.identity.and_then(pick).cloned();
        let decision = if self.allowed { "allow" } else { "deny" };
        [
            ("bearer_guard.decision", Some(decision.to_owned())),
            ("bearer_guard.reason", self.reason.map(str::to_owned)),
            (
                "bearer_guard.shadow",
                self.shadow.then(|| "true".to_owned()),
            ),
            ("bearer_guard.provider", self.provider.map(str::to_owned)),
            ("bearer_guard.iss", claim(|i| i.iss.as_ref())),
            ("bearer_guard.sub", claim(|i| i.sub.as_ref())),
            ("bearer_guard.jti", claim(|i| i.jti.as_ref())),
            ("bearer_guard.token_fp", fingerprint),
            (
                "bearer_guard.revoked_by",
                self.revoked_by.map(|s| s.code().to_owned()),
            ),
            ("bearer_guard.anomaly", self.anomaly.map(str::to_owned)),
            ("bearer_guard.client_ip", self.client_ip.map(str::to_owned)),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.map(|v| (key, v)))
        .collect()
    }
}

/// Query strings may carry secrets; logs get the path only.
pub fn path_without_query(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or_default()
}

fn cut(value: &str, max_chars: usize) -> String {
    value.chars().take(max_chars).collect()
}

/// `2026-11-29T17:45:03.120Z`.
pub fn rfc3339_millis(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let millis = unix_ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_796_060_703_120),
            "2026-11-30T17:45:03.120Z"
        );
        assert_eq!(
            rfc3339_millis(4_102_444_799_999),
            "2099-12-31T23:59:59.999Z"
        );
    }

    fn identity() -> TokenIdentity {
        TokenIdentity {
            sha256: [0xab; 32],
            id: [0xcd; 32],
            iss: Some("https://idp".into()),
            sub: Some("alice".into()),
            jti: Some("j-1".into()),
        }
    }

    #[test]
    fn a_line_has_every_field_and_no_query_string() {
        let id = identity();
        let record = Record {
            time_ms: 1_000,
            allowed: false,
            reason: Some("revoked"),
            status: Some(401),
            provider: Some("corp"),
            identity: Some(&id),
            revoked_by: Some(RevocationSource::Header),
            client_ip: Some("127.0.0.2"),
            method: "GET",
            path: "/orders?access_token=secret#frag",
            authority: "api.example",
            user_agent: Some(&"x".repeat(500)),
            ..Record::default()
        };
        let line: Value = serde_json::from_str(&record.to_json_line()).unwrap();
        assert_eq!(line["time"], "1970-01-01T00:00:01.000Z");
        assert_eq!(line["decision"], "deny");
        assert_eq!(line["reason"], "revoked");
        assert_eq!(line["status"], 401);
        assert_eq!(line["sub"], "alice");
        assert_eq!(line["token_fp"], "abababababababab");
        assert_eq!(line["revoked_by"], "header");
        assert_eq!(line["path"], "/orders");
        assert_eq!(
            line["user_agent"].as_str().unwrap().len(),
            USER_AGENT_MAX_CHARS
        );
        assert!(!record.to_json_line().contains("secret"));
        let state = record.filter_state();
        assert!(state.contains(&("bearer_guard.decision", "deny".into())));
        assert!(state.contains(&("bearer_guard.sub", "alice".into())));
        assert!(state.contains(&("bearer_guard.client_ip", "127.0.0.2".into())));
        assert_eq!(state.len(), 9);
        assert!(state.iter().all(|(k, _)| *k != "bearer_guard.anomaly"));
        assert!(state.iter().all(|(k, _)| *k != "bearer_guard.shadow"));
        assert_eq!(line["shadow"], false);
    }

    #[test]
    fn a_shadowed_denial_is_a_denial_that_says_shadow() {
        let record = Record {
            allowed: false,
            reason: Some("expired"),
            status: Some(401),
            shadow: true,
            method: "GET",
            path: "/orders",
            authority: "api.example",
            ..Record::default()
        };
        let line: Value = serde_json::from_str(&record.to_json_line()).unwrap();
        assert_eq!(line["decision"], "deny");
        assert_eq!(line["reason"], "expired");
        assert_eq!(line["status"], 401);
        assert_eq!(line["shadow"], true);
        let state = record.filter_state();
        assert!(state.contains(&("bearer_guard.decision", "deny".into())));
        assert!(state.contains(&("bearer_guard.shadow", "true".into())));
    }

    #[test]
    fn control_characters_cannot_forge_a_second_line() {
        let record = Record {
            user_agent: Some("curl\n{\"decision\":\"allow\"}"),
            method: "GET",
            path: "/",
            authority: "a",
            ..Record::default()
        };
        assert_eq!(record.to_json_line().lines().count(), 1);
    }

    #[test]
    fn the_log_level_picks_decisions() {
        let config = |decisions| LogConfig {
            decisions,
            ..LogConfig::default()
        };
        assert!(!config(LogDecisions::None).logs(false));
        assert!(config(LogDecisions::Denied).logs(false));
        assert!(!config(LogDecisions::Denied).logs(true));
        assert!(config(LogDecisions::All).logs(true));
    }
}
