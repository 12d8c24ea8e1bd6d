//! Enforce or shadow: what a denial does. In shadow mode every decision is made and counted as
//! usual, but a denial lets the request through (counted and logged as shadowed), so operators
//! can read what enforcing would refuse before they enforce.

use serde::Deserialize;

/// The top-level `mode`, and a rule's `mode` (which overrides it for the requests the rule
/// matches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A denial is answered (401, 403, 400 or 503): the request never reaches the upstream.
    #[default]
    Enforce,
    /// A denial is counted (`shadow_denied.<reason>`) and logged (`"shadow": true`), and the
    /// request goes upstream as the client sent it, cleaned only of the headers bearer-guard
    /// writes.
    Shadow,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Shadow => "shadow",
        }
    }

    /// The mode a request is judged under: its rule's own, else the top level's (also for a
    /// request that matches no rule).
    pub fn of(rule: Option<Mode>, top_level: Mode) -> Mode {
        rule.unwrap_or(top_level)
    }
}
