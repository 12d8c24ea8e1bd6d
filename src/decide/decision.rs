//! What the filter does with a request: let it through, or answer it with an RFC 6750 error.

use crate::observe::fingerprint::hex;
use std::fmt;

/// Sent with 503s: long enough for a configuration or key fetch to finish.
const RETRY_AFTER_SECONDS: &str = "5";

/// Why a request was refused. One variant per cause, so counters and logs can tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// The route needs a token and the request carries none.
    MissingToken,
    /// More than one credential: two headers, two sources, or a comma-joined header.
    MultipleTokens,
    /// A credential where a provider reads one, but not readable (`Bearer<TAB>x`, `Bearer`
    /// alone, a configured cookie or parameter without a value, `?JWT_A=` for `jwt_a`):
    /// refused, since taken for "no token" its bytes would go upstream unchecked.
    MalformedCredential,
    /// Not a compact JWS, or its header or payload is not valid JSON of the expected shape.
    MalformedToken,
    /// `alg: none` in any spelling: an unsigned token.
    UnsignedToken,
    /// An algorithm the provider does not accept (its `algorithms` list; HMAC is off by
    /// default, which is what stops RSA/HMAC confusion).
    AlgorithmNotAllowed,
    /// A `crit` header names an extension this filter does not implement (RFC 7515 §4.1.11).
    UnknownCriticalHeader,
    /// An algorithm this filter does not verify.
    UnsupportedAlgorithm,
    /// `iss` missing or not the issuer of any provider that may serve this route.
    IssuerNotAccepted,
    /// No key of the provider has the token's `kid`.
    UnknownKeyId,
    /// A key has the token's `kid` but is for another algorithm.
    KeyAlgorithmMismatch,
    /// The signature does not verify with the provider's keys.
    BadSignature,
    /// `exp` is in the past (beyond the clock skew).
    Expired,
    /// The provider requires `exp` and the token has none.
    MissingExpiration,
    /// `nbf` is in the future (beyond the clock skew).
    NotYetValid,
    /// `iat` is in the future (beyond the clock skew).
    IssuedInFuture,
    /// `exp - iat` exceeds the provider's `max_lifetime_seconds`, or cannot be computed.
    LifetimeTooLong,
    /// `aud` does not name any of the provider's audiences.
    AudienceNotAccepted,
    /// `sub` does not match the provider's `subjects` matcher.
    SubjectNotAccepted,
    /// `typ` is not one of the provider's `token_types` (RFC 8725 §3.11).
    TokenTypeNotAccepted,
    /// An ID token or a refresh token presented as an access token.
    NotAnAccessToken,
    /// The token lacks a scope the route requires (RFC 6750 §3.1: 403).
    InsufficientScope,
    /// The request matches no rule; unmatched routes are refused rather than left open.
    NoMatchingRule,
    /// The filter cannot decide right now (no configuration, no clock); the token may be fine.
    Unavailable,
    /// The token is revoked: by the config, the polled list or a revocation header.
    Revoked,
    /// RFC 7662: the identity provider says the token is not active (revoked, expired, unknown).
    InactiveToken,
    /// Token Status List: the token's status is SUSPENDED (0x02).
    Suspended,
    /// Token Status List: the status list URI is on no configured authority (never fetched).
    StatusListNotAllowed,
    /// Token Status List: malformed `status` claim, index outside the list, or a status
    /// other than VALID, INVALID and SUSPENDED.
    StatusUnknown,
    /// The revocation list is older than `max_stale_seconds` (or was never fetched) and
    /// `on_stale` is `deny`: the token may be fine, but cannot be shown not to be revoked.
    RevocationListStale,
    /// The etcd revocation store was not in sync for over `max_stale_seconds` (or never
    /// read) and its `on_stale` is `deny`.
    RevocationStoreStale,
    /// Misuse detection (`anomaly`, action `deny` or `revoke`): the token was used from more
    /// addresses, or more often, than the window allows.
    Anomaly,
    /// `require_tls`: a credential arrived on a plaintext connection (RFC 6750 §5.3).
    InsecureTransport,
    /// A jwt_authn companion: the token in the request is not the one jwt_authn verified (its
    /// claims differ from the payload jwt_authn wrote).
    NotTheVerifiedToken,
    /// An `access_token` query parameter that no provider reads (`from_params`): refused
    /// rather than ignored, so the token does not travel on to the upstream in the URL.
    TokenInQuery,
}

/// The RFC 6750 error code that goes in `WWW-Authenticate` and the JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidToken,
    AccessDenied,
    TemporarilyUnavailable,
    InsufficientScope,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::InsufficientScope => "insufficient_scope",
        }
    }
}

impl DenyReason {
    /// Every reason, for defining one counter each up front.
    pub const ALL: [DenyReason; 35] = [
        DenyReason::MissingToken,
        DenyReason::MultipleTokens,
        DenyReason::MalformedCredential,
        DenyReason::MalformedToken,
        DenyReason::UnsignedToken,
        DenyReason::AlgorithmNotAllowed,
        DenyReason::UnknownCriticalHeader,
        DenyReason::UnsupportedAlgorithm,
        DenyReason::IssuerNotAccepted,
        DenyReason::UnknownKeyId,
        DenyReason::KeyAlgorithmMismatch,
        DenyReason::BadSignature,
        DenyReason::Expired,
        DenyReason::MissingExpiration,
        DenyReason::NotYetValid,
        DenyReason::IssuedInFuture,
        DenyReason::LifetimeTooLong,
        DenyReason::AudienceNotAccepted,
        DenyReason::SubjectNotAccepted,
        DenyReason::TokenTypeNotAccepted,
        DenyReason::NotAnAccessToken,
        DenyReason::InsufficientScope,
        DenyReason::NoMatchingRule,
        DenyReason::Unavailable,
        DenyReason::Revoked,
        DenyReason::RevocationListStale,
        DenyReason::RevocationStoreStale,
        DenyReason::InactiveToken,
        DenyReason::Suspended,
        DenyReason::StatusListNotAllowed,
        DenyReason::StatusUnknown,
        DenyReason::Anomaly,
        DenyReason::InsecureTransport,
        DenyReason::NotTheVerifiedToken,
        DenyReason::TokenInQuery,
    ];

    /// Stable short name, used in counter names and log lines.
    pub fn code(self) -> &'static str {
        match self {
            DenyReason::MissingToken => "missing",
            DenyReason::MultipleTokens => "multiple",
            DenyReason::MalformedCredential => "malformed_credential",
            DenyReason::MalformedToken => "malformed",
            DenyReason::UnsignedToken => "alg_none",
            DenyReason::AlgorithmNotAllowed => "alg_not_allowed",
            DenyReason::UnknownCriticalHeader => "crit",
            DenyReason::UnsupportedAlgorithm => "alg_unsupported",
            DenyReason::IssuerNotAccepted => "issuer",
            DenyReason::UnknownKeyId => "unknown_kid",
            DenyReason::KeyAlgorithmMismatch => "key_alg_mismatch",
            DenyReason::BadSignature => "signature",
            DenyReason::Expired => "expired",
            DenyReason::MissingExpiration => "missing_exp",
            DenyReason::NotYetValid => "not_yet_valid",
            DenyReason::IssuedInFuture => "issued_in_future",
            DenyReason::LifetimeTooLong => "lifetime",
            DenyReason::AudienceNotAccepted => "audience",
            DenyReason::SubjectNotAccepted => "subject",
            DenyReason::TokenTypeNotAccepted => "type",
            DenyReason::NotAnAccessToken => "not_access_token",
            DenyReason::InsufficientScope => "scope",
            DenyReason::NoMatchingRule => "no_rule",
            DenyReason::Unavailable => "unavailable",
            DenyReason::Revoked => "revoked",
            DenyReason::RevocationListStale => "revocation_list_stale",
            DenyReason::RevocationStoreStale => "revocation_store_stale",
            DenyReason::InactiveToken => "inactive",
            DenyReason::Suspended => "suspended",
            DenyReason::StatusListNotAllowed => "status_list_not_allowed",
            DenyReason::StatusUnknown => "status_unknown",
            DenyReason::Anomaly => "anomaly",
            DenyReason::InsecureTransport => "insecure_transport",
            DenyReason::NotTheVerifiedToken => "not_the_verified_token",
            DenyReason::TokenInQuery => "query_token",
        }
    }

    /// Short, token-free text for `error_description`.
    pub fn description(self) -> &'static str {
        match self {
            DenyReason::MissingToken => "bearer token required",
            DenyReason::MultipleTokens => "more than one credential in the request",
            DenyReason::MalformedCredential => "credential is malformed",
            DenyReason::MalformedToken => "token is malformed",
            DenyReason::UnsignedToken => "unsigned tokens are not accepted",
            DenyReason::AlgorithmNotAllowed => "token algorithm not accepted",
            DenyReason::UnknownCriticalHeader => "unsupported critical header parameter",
            DenyReason::UnsupportedAlgorithm => "token algorithm not supported",
            DenyReason::IssuerNotAccepted => "issuer not accepted",
            DenyReason::UnknownKeyId => "signing key not found",
            DenyReason::KeyAlgorithmMismatch => "token algorithm does not match the key",
            DenyReason::BadSignature => "signature verification failed",
            DenyReason::Expired => "token expired",
            DenyReason::MissingExpiration => "token has no expiration",
            DenyReason::NotYetValid => "token not yet valid",
            DenyReason::IssuedInFuture => "token issued in the future",
            DenyReason::LifetimeTooLong => "token lifetime exceeds the allowed maximum",
            DenyReason::AudienceNotAccepted => "audience not accepted",
            DenyReason::SubjectNotAccepted => "subject not accepted",
            DenyReason::TokenTypeNotAccepted => "token type not accepted",
            DenyReason::NotAnAccessToken => "not an access token",
            DenyReason::InsufficientScope => "the token lacks a required scope",
            DenyReason::NoMatchingRule => "no rule matches this request",
            DenyReason::Unavailable => "authorization temporarily unavailable",
            DenyReason::Revoked => "token revoked",
            DenyReason::RevocationListStale | DenyReason::RevocationStoreStale => {
                "revocation status temporarily unavailable"
            }
            DenyReason::InactiveToken => "token is not active",
            DenyReason::Suspended => "token suspended",
            DenyReason::StatusListNotAllowed => "token status list not accepted",
            DenyReason::StatusUnknown => "token status unknown",
            DenyReason::Anomaly => "token use anomaly detected",
            DenyReason::InsecureTransport => "credentials must be sent over TLS",
            DenyReason::NotTheVerifiedToken => "token is not the one that was verified",
            DenyReason::TokenInQuery => "tokens in the query string are not accepted",
        }
    }

    /// `None` for a request without credentials: RFC 6750 §3.1 says to send no error code then.
    pub fn error_code(self) -> Option<ErrorCode> {
        match self {
            DenyReason::MissingToken => None,
            DenyReason::MultipleTokens
            | DenyReason::MalformedCredential
            | DenyReason::InsecureTransport
            | DenyReason::TokenInQuery => Some(ErrorCode::InvalidRequest),
            DenyReason::NoMatchingRule => Some(ErrorCode::AccessDenied),
            DenyReason::Unavailable
            | DenyReason::RevocationListStale
            | DenyReason::RevocationStoreStale => Some(ErrorCode::TemporarilyUnavailable),
            DenyReason::InsufficientScope => Some(ErrorCode::InsufficientScope),
            _ => Some(ErrorCode::InvalidToken),
        }
    }

    pub fn status(self) -> u32 {
        match self.error_code() {
            Some(ErrorCode::InvalidRequest) => 400,
            Some(ErrorCode::AccessDenied | ErrorCode::InsufficientScope) => 403,
            Some(ErrorCode::TemporarilyUnavailable) => 503,
            Some(ErrorCode::InvalidToken) | None => 401,
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A refusal, ready to send: status, headers and body are all derived from the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: DenyReason,
    /// Provider whose check failed, when one was chosen.
    pub provider: Option<String>,
    /// Short SHA-256 fingerprint of the token, when there was one. Never the token itself.
    pub token_fingerprint: Option<String>,
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The token, when its signature verified (for logs; never set from unverified claims).
    pub identity: Option<Box<TokenIdentity>>,
    /// Where the revocation came from, for `Revoked`, `Suspended` and `InactiveToken`.
    pub revoked_by: Option<RevocationSource>,
}

impl Denial {
    /// RFC 6750 §3: an `insufficient_scope` challenge names the scope needed.
    pub fn with_required_scope(mut self, realm: &str, scopes: &[String]) -> Self {
        if let Some((_, challenge)) = self
            .headers
            .iter_mut()
            .find(|(n, _)| n == "www-authenticate")
        {
            *challenge = format!(
                "{}, scope={}",
                challenge_for(self.reason, realm),
                quoted(&scopes.join(" "))
            );
        }
        self
    }

    pub fn new(
        reason: DenyReason,
        realm: &str,
        provider: Option<String>,
        token_fingerprint: Option<String>,
    ) -> Self {
        let mut headers = Vec::with_capacity(2);
        match reason {
            // Not about the credentials: a challenge would wrongly suggest a new token helps.
            DenyReason::NoMatchingRule => {}
            DenyReason::Unavailable
            | DenyReason::RevocationListStale
            | DenyReason::RevocationStoreStale => {
                headers.push(("retry-after".to_owned(), RETRY_AFTER_SECONDS.to_owned()))
            }
            _ => headers.push(("www-authenticate".to_owned(), challenge_for(reason, realm))),
        }
        headers.push(("content-type".to_owned(), "application/json".to_owned()));
        Denial {
            reason,
            provider,
            token_fingerprint,
            status: reason.status(),
            headers,
            body: body(reason),
            identity: None,
            revoked_by: None,
        }
    }
}

// The challenge and the body are written into one buffer each, not through `format!` and
// `serde_json::to_string`: this runs for every denial, also for the ones whose decision line
// the rate limit drops (a flood of bad tokens), and the formatting machinery cost more than
// the rest of the denial together.
fn challenge_for(reason: DenyReason, realm: &str) -> String {
    let description = reason.description();
    let mut out = String::with_capacity(64 + realm.len() + description.len());
    out.push_str("Bearer realm=");
    push_quoted(&mut out, realm);
    if let Some(code) = reason.error_code() {
        out.push_str(", error=\"");
        out.push_str(code.as_str());
        out.push_str("\", error_description=\"");
        out.push_str(description);
        out.push('"');
    }
    out
}

fn body(reason: DenyReason) -> String {
    let error = reason
        .error_code()
        .map_or("unauthorized", ErrorCode::as_str);
    let description = reason.description();
    let mut out = String::with_capacity(48 + error.len() + description.len());
    out.push_str("{\"error\":");
    push_json_string(&mut out, error);
    out.push_str(",\"error_description\":");
    push_json_string(&mut out, description);
    out.push('}');
    out
}

/// An RFC 7230 quoted-string; the realm comes from config, so escape what needs it.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    push_quoted(&mut out, value);
    out
}

fn push_quoted(out: &mut String, value: &str) {
    out.push('"');
    push_escaped(
        out,
        value,
        |b| matches!(b, b'"' | b'\\'),
        |out, b| {
            out.push('\\');
            out.push(char::from(b));
        },
    );
    out.push('"');
}

/// A JSON string (RFC 8259 §7): quotes, backslashes and control characters escaped, as
/// serde_json escapes them.
fn push_json_string(out: &mut String, value: &str) {
    let special = |b: u8| b == b'"' || b == b'\\' || b < 0x20;
    out.push('"');
    push_escaped(out, value, special, |out, b| match b {
        b'\n' => out.push_str("\\n"),
        b'\r' => out.push_str("\\r"),
        b'\t' => out.push_str("\\t"),
        0x08 => out.push_str("\\b"),
        0x0c => out.push_str("\\f"),
        b'"' | b'\\' => {
            out.push('\\');
            out.push(char::from(b));
        }
        _ => {
            out.push_str("\\u00");
            out.push_str(&hex(&[b]));
        }
    });
    out.push('"');
}

/// `value` with each ASCII byte that `special` picks written by `escape`: the runs between
/// them are copied whole (a character at a time was most of a denial's cost).
fn push_escaped(
    out: &mut String,
    value: &str,
    special: impl Fn(u8) -> bool,
    escape: impl Fn(&mut String, u8),
) {
    let mut rest = value;
    while let Some(at) = rest.bytes().position(&special) {
        // `at` is an ASCII byte, so both sides are on character boundaries.
        out.push_str(rest.get(..at).unwrap_or_default());
        if let Some(&byte) = rest.as_bytes().get(at) {
            escape(out, byte);
        }
        rest = rest.get(at + 1..).unwrap_or_default();
    }
    out.push_str(rest);
}

/// The token behind a decision, for the decision log, filter state and misuse detection.
/// Claims are set only from a token whose signature verified (or that the IdP vouched for):
/// a log line never repeats what an attacker wrote into a token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenIdentity {
    /// SHA-256 of the token as sent: its log fingerprint (the exact bytes presented).
    pub sha256: [u8; 32],
    /// The token identity (`token::id`): what misuse detection counts by, so a signature twin
    /// is the same token to it.
    pub id: [u8; 32],
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub jti: Option<String>,
}

impl TokenIdentity {
    /// First 16 hex characters of the token's SHA-256: what logs show instead of the token.
    pub fn fingerprint(&self) -> String {
        crate::observe::fingerprint::fingerprint(&self.sha256)
    }
}

/// Where a revocation that refused a request came from (one counter each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationSource {
    /// `revocation.jti` / `token_sha256` / `subjects` / `issued_before` in the plugin config.
    Config,
    /// A revocation response header from an upstream.
    Header,
    /// The polled revocation list.
    List,
    /// The etcd revocation store (`revocation.etcd`).
    Etcd,
    /// The token's Token Status List (revoked or suspended).
    StatusList,
    /// The identity provider's introspection answer (`active: false`).
    Introspection,
    /// Misuse detection with `action: revoke`.
    Anomaly,
}

impl RevocationSource {
    pub const ALL: [RevocationSource; 7] = [
        RevocationSource::Config,
        RevocationSource::Header,
        RevocationSource::List,
        RevocationSource::Etcd,
        RevocationSource::StatusList,
        RevocationSource::Introspection,
        RevocationSource::Anomaly,
    ];

    pub fn code(self) -> &'static str {
        match self {
            RevocationSource::Config => "config",
            RevocationSource::Header => "header",
            RevocationSource::List => "list",
            RevocationSource::Etcd => "etcd",
            RevocationSource::StatusList => "status_list",
            RevocationSource::Introspection => "introspection",
            RevocationSource::Anomaly => "anomaly",
        }
    }
}

/// Changes to an allowed request before it goes upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upstream {
    /// Removed first: every credential header the decision used (unless its provider
    /// forwards it; `cookie` when a cookie credential is taken out) and every header
    /// bearer-guard writes, so a client can never supply one itself.
    pub remove_headers: Vec<String>,
    /// Then set (replacing any value).
    pub set_headers: Vec<(String, String)>,
    /// A new `:path`, when query-parameter credentials are taken out (all of them at once).
    pub path: Option<String>,
}

/// Why a denial is better given later: after something is fetched, the request decides again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitFor {
    /// This provider's keys are (re)fetched.
    Keys(usize),
    /// The first revocation list fetch.
    RevocationList,
    /// The provider (index) is asked about the token (RFC 7662).
    Introspection(usize, String),
    /// The status list at this URI, signed by this provider (index), is fetched.
    StatusList(usize, String),
}

/// What the adapter applies to the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let the request through. `provider` is `None` on a public route.
    Allow {
        provider: Option<String>,
        upstream: Upstream,
        /// The token that authorized it, when a revocation header may later name it (`self`).
        token: Option<Box<Authorized>>,
        /// The token, when the decision log, filter state or misuse detection needs it.
        identity: Option<Box<TokenIdentity>>,
    },
    Deny(Denial),
    /// Pause the request until the provider's keys are fetched, then decide again
    /// (`Guard::decide_after_wait`).
    WaitForKeys {
        provider: usize,
    },
    /// Pause the request until the first revocation list fetch answers, then decide again.
    WaitForRevocationList,
    /// Pause the request, ask the provider's introspection endpoint about `token`, cache the
    /// answer, then decide again.
    Introspect {
        provider: usize,
        token: String,
    },
    /// Pause the request until the status list at `uri` (signed by `provider`) is fetched.
    WaitForStatusList {
        provider: usize,
        uri: String,
    },
}

/// The token that authorized a request, for a `self` revocation in its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    pub provider: String,
    pub jti: Option<String>,
    pub sub: Option<String>,
    /// SHA-256 of the token as sent (the key of a cached introspection answer).
    pub token_sha256: [u8; 32],
    /// The token identity (`token::id`): what a `self` revocation revokes, so the token's
    /// signature twins are revoked with it.
    pub id: [u8; 32],
    /// The provider's clock skew and `max_lifetime_seconds`, for a `sub=` cutoff.
    pub clock_skew_seconds: i64,
    pub max_lifetime_seconds: Option<i64>,
    pub exp: Option<i64>,
    /// Decided by introspection: a revocation also drops the cached answer.
    pub introspected: bool,
    /// The token itself, kept only while the request lasts and only when revocations are
    /// forwarded to the identity provider (RFC 7009 needs the token). Never logged.
    pub token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_token_gets_a_challenge_without_error_code() {
        let d = Denial::new(DenyReason::MissingToken, "bearer-guard", None, None);
        assert_eq!(d.status, 401);
        assert_eq!(
            d.headers[0],
            (
                "www-authenticate".to_owned(),
                "Bearer realm=\"bearer-guard\"".to_owned()
            )
        );
    }

    /// The escaper writes what serde_json writes, control characters included.
    #[test]
    fn json_strings_are_escaped_as_serde_json_escapes_them() {
        for text in [
            "plain",
            "a \"quoted\" word",
            "back\\slash",
            "line\nfeed\r\t\u{8}\u{c}\u{1}\u{1f}",
            "é ✓",
            "",
            "nul \u{0} and del \u{7f}",
            "\"\\\"",
        ] {
            let mut out = String::new();
            push_json_string(&mut out, text);
            assert_eq!(out, serde_json::to_string(text).unwrap(), "{text:?}");
        }
    }

    /// The body, written directly, is the JSON object it always was, byte for byte.
    #[test]
    fn every_body_is_the_json_object() {
        for reason in DenyReason::ALL {
            let error = reason
                .error_code()
                .map_or("unauthorized", ErrorCode::as_str);
            let expected =
                serde_json::json!({ "error": error, "error_description": reason.description() });
            assert_eq!(body(reason), expected.to_string(), "{reason:?}");
        }
    }

    #[test]
    fn invalid_token_gets_error_and_description() {
        let d = Denial::new(DenyReason::Expired, "api", None, None);
        assert_eq!(d.status, 401);
        assert_eq!(
            d.headers[0].1,
            "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"token expired\""
        );
        let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
        assert_eq!(body["error"], "invalid_token");
        assert_eq!(body["error_description"], "token expired");
    }

    #[test]
    fn multiple_credentials_are_a_bad_request() {
        let d = Denial::new(DenyReason::MultipleTokens, "r", None, None);
        assert_eq!(d.status, 400);
        assert!(d.headers[0].1.contains("error=\"invalid_request\""));
    }

    #[test]
    fn unmatched_route_is_forbidden_without_challenge() {
        let d = Denial::new(DenyReason::NoMatchingRule, "r", None, None);
        assert_eq!(d.status, 403);
        assert!(d.headers.iter().all(|(n, _)| n != "www-authenticate"));
    }

    #[test]
    fn unavailable_is_503_with_retry_after() {
        let d = Denial::new(DenyReason::Unavailable, "r", None, None);
        assert_eq!(d.status, 503);
        assert_eq!(d.headers[0], ("retry-after".to_owned(), "5".to_owned()));
    }

    #[test]
    fn insufficient_scope_is_403_naming_the_scope() {
        let d = Denial::new(DenyReason::InsufficientScope, "r", None, None)
            .with_required_scope("r", &["orders:read".into(), "orders:write".into()]);
        assert_eq!(d.status, 403);
        assert_eq!(
            d.headers[0].1,
            "Bearer realm=\"r\", error=\"insufficient_scope\", error_description=\"the token lacks a required scope\", scope=\"orders:read orders:write\""
        );
    }

    #[test]
    fn realm_is_escaped() {
        let d = Denial::new(DenyReason::MissingToken, "a\"b\\c", None, None);
        assert_eq!(d.headers[0].1, "Bearer realm=\"a\\\"b\\\\c\"");
    }

    #[test]
    fn reason_codes_are_unique() {
        let mut codes: Vec<_> = DenyReason::ALL.iter().map(|r| r.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), DenyReason::ALL.len());
    }
}
