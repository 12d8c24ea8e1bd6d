//! Checks of a token's registered claims against a provider, at an injected `now`.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use crate::decide::decision::DenyReason;
use crate::policy::matcher::StringMatch;

/// `aud` may be one string or an array of strings (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains_any(&self, accepted: &[String]) -> bool {
        match self {
            Audience::One(aud) => accepted.contains(aud),
            Audience::Many(auds) => auds.iter().any(|aud| accepted.contains(aud)),
        }
    }
}

/// A visitor rather than `#[serde(untagged)]`: no buffering of the value, and a clear error.
impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AudienceVisitor;
        impl<'de> Visitor<'de> for AudienceVisitor {
            type Value = Audience;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Audience, E> {
                Ok(Audience::One(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Audience, A::Error> {
                let mut all = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
                while let Some(aud) = seq.next_element::<String>()? {
                    all.push(aud);
                }
                Ok(Audience::Many(all))
            }
        }
        deserializer.deserialize_any(AudienceVisitor)
    }
}

/// RFC 7519 NumericDate: seconds since the epoch, an integer or a finite number (its
/// fraction is dropped). Anything else makes the token malformed. Revocation entries use it too.
pub(crate) struct NumericDate(pub(crate) i64);

pub(crate) struct NumericDateVisitor;

impl Visitor<'_> for NumericDateVisitor {
    type Value = NumericDate;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a NumericDate (seconds since the epoch)")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumericDate, E> {
        Ok(NumericDate(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumericDate, E> {
        i64::try_from(v)
            .map(NumericDate)
            .map_err(|_| E::custom("NumericDate out of range"))
    }
    #[allow(clippy::cast_possible_truncation)] // range-checked just before
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumericDate, E> {
        if v.is_finite() && v >= i64::MIN as f64 && v < i64::MAX as f64 {
            Ok(NumericDate(v.floor() as i64))
        } else {
            Err(E::custom("NumericDate out of range"))
        }
    }
}

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NumericDateVisitor)
    }
}

fn numeric_date<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    Ok(Option::<NumericDate>::deserialize(deserializer)?.map(|d| d.0))
}

/// How a provider judges the time claims (its `clock_skew_seconds`, `require_expiration`,
/// `max_lifetime_seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimePolicy {
    pub clock_skew_seconds: u64,
    pub require_expiration: bool,
    /// `None`: no limit on `exp - iat`.
    pub max_lifetime_seconds: Option<u64>,
}

/// The registered claims bearer-guard reads from a token's payload; others are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PayloadClaims {
    #[serde(default)]
    pub iss: Option<String>,
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub aud: Option<Audience>,
    #[serde(default)]
    pub jti: Option<String>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub exp: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub nbf: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub iat: Option<i64>,
    /// OpenID Connect ID-token claims: their presence marks a token that is not an access token.
    #[serde(default, deserialize_with = "present")]
    pub nonce: bool,
    #[serde(default, deserialize_with = "present")]
    pub at_hash: bool,
    #[serde(default, deserialize_with = "present")]
    pub c_hash: bool,
    /// AWS Cognito marks its tokens `id`, `access` or `refresh`.
    #[serde(default)]
    pub token_use: Option<String>,
    /// A `typ` claim in the payload: Keycloak writes `ID`, `Bearer` or `Refresh`.
    #[serde(default, rename = "typ")]
    pub payload_typ: Option<String>,
    /// An introspection answer's `token_type` (RFC 7662 §2.2); some IdPs answer about refresh
    /// and ID tokens too, and say so here.
    #[serde(default)]
    pub token_type: Option<String>,
    /// RFC 8693 §4.2 / RFC 9068 §2.2.3: space-delimited scopes; also as the array jwt_authn
    /// writes into metadata with `normalize_payload_in_metadata` (as Istio configures it).
    #[serde(default)]
    pub scope: Option<Audience>,
    /// The array form some providers use (Okta, Azure AD `scp`).
    #[serde(default)]
    pub scp: Option<Audience>,
}

/// Scopes from a space-delimited string or an array of them.
fn scope_list(claim: Option<Audience>) -> impl Iterator<Item = String> {
    let list = match claim {
        Some(Audience::One(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Audience::Many(list)) => list,
        None => Vec::new(),
    };
    list.into_iter()
}

fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    de::IgnoredAny::deserialize(deserializer).map(|_| true)
}

impl PayloadClaims {
    /// RFC 9068 §4 and RFC 8725 §3.11: an ID token or a refresh token must not pass for an
    /// access token, whatever its header `typ` says (`JWT` is what most ID tokens carry).
    /// - `at_hash` and `c_hash` exist only in ID tokens (OpenID Connect Core §3.1.3.6,
    ///   §3.3.2.11): an ID token whatever its `typ`.
    /// - `nonce` too, unless the issuer typed the token as an access token: RFC 9068's
    ///   `at+jwt`, or Keycloak's payload `typ: Bearer` (Keycloak copies the login's `nonce`
    ///   into its access tokens).
    /// - Cognito's `token_use`, Keycloak's payload `typ` (`ID`, `Refresh`), a header `typ` or an
    ///   introspection `token_type` naming a refresh or ID token.
    pub fn is_not_an_access_token(&self, typ: Option<&str>) -> bool {
        let lower = |s: &Option<String>| s.as_deref().map(str::to_ascii_lowercase);
        let header_typ = typ.map(str::to_ascii_lowercase);
        let payload_typ = lower(&self.payload_typ);
        let typed_as_access = header_typ
            .as_deref()
            .is_some_and(|t| t == "at+jwt" || t == "application/at+jwt")
            || payload_typ.as_deref() == Some("bearer");
        let id_token = self.at_hash
            || self.c_hash
            || (self.nonce && !typed_as_access)
            || payload_typ.as_deref() == Some("id")
            || self.token_use.as_deref() == Some("id");
        let names_other = |t: &str| t.contains("refresh") || t.contains("id_token");
        let refresh = header_typ.as_deref().is_some_and(|t| t.contains("refresh"))
            || payload_typ.as_deref() == Some("refresh")
            || self.token_use.as_deref() == Some("refresh")
            || lower(&self.token_type).as_deref().is_some_and(names_other);
        id_token || refresh
    }

    pub fn split(self) -> (StringClaims, TimeClaims) {
        (
            StringClaims {
                iss: self.iss,
                sub: self.sub,
                aud: self.aud,
                jti: self.jti,
                scopes: scope_list(self.scope).chain(scope_list(self.scp)).collect(),
            },
            TimeClaims {
                exp: self.exp,
                nbf: self.nbf,
                iat: self.iat,
            },
        )
    }
}

/// The string claims bearer-guard looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StringClaims {
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub aud: Option<Audience>,
    pub jti: Option<String>,
    /// From `scope` and `scp`.
    pub scopes: Vec<String>,
}

/// Time claims as Unix seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeClaims {
    pub exp: Option<i64>,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
}

/// RFC 7519 §4.1.4: the token is valid only *before* `exp`; skew widens every bound by the
/// same amount. So with skew s: expired when `now >= exp + s`, premature when `now + s < nbf`.
pub fn check_times(times: TimeClaims, policy: TimePolicy, now: i64) -> Result<(), DenyReason> {
    let skew = i64::try_from(policy.clock_skew_seconds).unwrap_or(i64::MAX);
    match times.exp {
        Some(exp) if now >= exp.saturating_add(skew) => return Err(DenyReason::Expired),
        None if policy.require_expiration => return Err(DenyReason::MissingExpiration),
        _ => {}
    }
    if let Some(nbf) = times.nbf {
        if now.saturating_add(skew) < nbf {
            return Err(DenyReason::NotYetValid);
        }
    }
    if let Some(iat) = times.iat {
        if iat > now.saturating_add(skew) {
            return Err(DenyReason::IssuedInFuture);
        }
    }
    if let Some(max) = policy.max_lifetime_seconds {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        match (times.iat, times.exp) {
            (Some(iat), Some(exp)) if exp.saturating_sub(iat) <= max => {}
            // Without both claims the lifetime is unknown, so it cannot be shown to be within bounds.
            _ => return Err(DenyReason::LifetimeTooLong),
        }
    }
    Ok(())
}

pub fn check_scopes(granted: &[String], required: &[String]) -> Result<(), DenyReason> {
    if required.iter().all(|r| granted.contains(r)) {
        Ok(())
    } else {
        Err(DenyReason::InsufficientScope)
    }
}

pub fn check_subject(sub: Option<&str>, matcher: Option<&StringMatch>) -> Result<(), DenyReason> {
    match matcher {
        None => Ok(()),
        Some(m) if sub.is_some_and(|sub| m.matches(sub)) => Ok(()),
        Some(_) => Err(DenyReason::SubjectNotAccepted),
    }
}

pub fn check_audience(aud: Option<&Audience>, accepted: &[String]) -> Result<(), DenyReason> {
    if accepted.is_empty() || aud.is_some_and(|aud| aud.contains_any(accepted)) {
        Ok(())
    } else {
        Err(DenyReason::AudienceNotAccepted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn policy(skew: u64) -> TimePolicy {
        TimePolicy {
            clock_skew_seconds: skew,
            require_expiration: true,
            max_lifetime_seconds: None,
        }
    }

    fn exp(exp: i64) -> TimeClaims {
        TimeClaims {
            exp: Some(exp),
            ..TimeClaims::default()
        }
    }

    #[test]
    fn exp_edges_with_skew() {
        let p = policy(60);
        assert_eq!(check_times(exp(NOW - 60), p, NOW), Err(DenyReason::Expired));
        assert_eq!(check_times(exp(NOW - 61), p, NOW), Err(DenyReason::Expired));
        assert_eq!(check_times(exp(NOW - 59), p, NOW), Ok(()));
        assert_eq!(check_times(exp(NOW + 3600), p, NOW), Ok(()));
    }

    #[test]
    fn exp_edges_without_skew() {
        let p = policy(0);
        assert_eq!(check_times(exp(NOW), p, NOW), Err(DenyReason::Expired));
        assert_eq!(check_times(exp(NOW + 1), p, NOW), Ok(()));
    }

    #[test]
    fn missing_exp_follows_require_expiration() {
        let mut p = policy(60);
        let none = TimeClaims::default();
        assert_eq!(
            check_times(none, p, NOW),
            Err(DenyReason::MissingExpiration)
        );
        p.require_expiration = false;
        assert_eq!(check_times(none, p, NOW), Ok(()));
    }

    #[test]
    fn nbf_edges_with_skew() {
        let p = policy(60);
        let t = |nbf| TimeClaims {
            nbf: Some(nbf),
            ..exp(NOW + 3600)
        };
        assert_eq!(check_times(t(NOW + 60), p, NOW), Ok(()));
        assert_eq!(
            check_times(t(NOW + 61), p, NOW),
            Err(DenyReason::NotYetValid)
        );
        assert_eq!(check_times(t(NOW - 1000), p, NOW), Ok(()));
    }

    #[test]
    fn iat_in_the_future_beyond_skew() {
        let p = policy(60);
        let t = |iat| TimeClaims {
            iat: Some(iat),
            ..exp(NOW + 3600)
        };
        assert_eq!(check_times(t(NOW + 60), p, NOW), Ok(()));
        assert_eq!(
            check_times(t(NOW + 61), p, NOW),
            Err(DenyReason::IssuedInFuture)
        );
    }

    #[test]
    fn max_lifetime_bounds_exp_minus_iat() {
        let mut p = policy(60);
        p.max_lifetime_seconds = Some(3600);
        let t = |iat: Option<i64>, exp: i64| TimeClaims {
            iat,
            exp: Some(exp),
            nbf: None,
        };
        assert_eq!(check_times(t(Some(NOW), NOW + 3600), p, NOW), Ok(()));
        assert_eq!(
            check_times(t(Some(NOW), NOW + 3601), p, NOW),
            Err(DenyReason::LifetimeTooLong)
        );
        assert_eq!(
            check_times(t(None, NOW + 10), p, NOW),
            Err(DenyReason::LifetimeTooLong)
        );
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let p = policy(u64::MAX);
        assert_eq!(check_times(exp(i64::MAX), p, NOW), Ok(()));
        assert_eq!(
            check_times(exp(i64::MIN), policy(0), NOW),
            Err(DenyReason::Expired)
        );
    }

    #[test]
    fn payload_claims_accept_numeric_dates_and_reject_others() {
        let parse = |json: &str| serde_json::from_str::<PayloadClaims>(json);
        let c =
            parse(r#"{"exp": 10, "nbf": 5.9, "iat": null, "aud": ["a"], "x": {"y": 1}}"#).unwrap();
        assert_eq!((c.exp, c.nbf, c.iat), (Some(10), Some(5), None));
        assert_eq!(c.aud, Some(Audience::Many(vec!["a".into()])));
        for bad in [
            r#"{"exp": "10"}"#,
            r#"{"exp": 1e300}"#,
            r#"{"exp": 18446744073709551615}"#,
            r#"{"exp": true}"#,
            r#"{"aud": 7}"#,
            r#"{"aud": [7]}"#,
            r#"{"iss": 1}"#,
            r#"{"exp": 1, "exp": 2}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn id_and_refresh_tokens_are_not_access_tokens() {
        let parse = |json: &str| serde_json::from_str::<PayloadClaims>(json).unwrap();
        assert!(parse(r#"{"nonce": "n"}"#).is_not_an_access_token(None));
        assert!(parse(r#"{"at_hash": "h"}"#).is_not_an_access_token(None));
        assert!(!parse(r#"{"nonce": "n"}"#).is_not_an_access_token(Some("at+jwt")));
        // ID tokens typed `JWT` (most IdPs) are ID tokens all the same.
        for id_token in [
            r#"{"nonce": "n"}"#,
            r#"{"at_hash": "h"}"#,
            r#"{"c_hash": "c"}"#,
        ] {
            assert!(
                parse(id_token).is_not_an_access_token(Some("JWT")),
                "{id_token}"
            );
        }
        assert!(parse(r#"{"at_hash": "h"}"#).is_not_an_access_token(Some("at+jwt")));
        assert!(parse(r#"{"typ": "ID"}"#).is_not_an_access_token(Some("JWT")));
        assert!(parse(r#"{"token_use": "id"}"#).is_not_an_access_token(None));
        assert!(parse(r#"{"typ": "Refresh"}"#).is_not_an_access_token(Some("JWT")));
        // Keycloak's access tokens carry the login's nonce and say `typ: Bearer`.
        assert!(!parse(r#"{"nonce": "n", "typ": "Bearer"}"#).is_not_an_access_token(Some("JWT")));
        // Introspection answers about refresh or ID tokens.
        for answer in [
            r#"{"active": true, "token_type": "refresh_token"}"#,
            r#"{"active": true, "token_type": "urn:ietf:params:oauth:token-type:refresh_token"}"#,
            r#"{"active": true, "token_type": "urn:ietf:params:oauth:token-type:id_token"}"#,
        ] {
            assert!(parse(answer).is_not_an_access_token(None), "{answer}");
        }
        assert!(!parse(r#"{"active": true, "token_type": "Bearer"}"#).is_not_an_access_token(None));
        assert!(parse(r#"{}"#).is_not_an_access_token(Some("refresh+jwt")));
        assert!(parse(r#"{"token_use": "refresh"}"#).is_not_an_access_token(Some("JWT")));
        assert!(!parse(r#"{"token_use": "access"}"#).is_not_an_access_token(None));
    }

    #[test]
    fn scopes_from_scope_and_scp() {
        let parse = |json: &str| {
            serde_json::from_str::<PayloadClaims>(json)
                .unwrap()
                .split()
                .0
        };
        assert_eq!(parse(r#"{"scope": "a b  c"}"#).scopes, ["a", "b", "c"]);
        assert_eq!(parse(r#"{"scp": ["x", "y"]}"#).scopes, ["x", "y"]);
        assert_eq!(parse(r#"{"scp": "z w"}"#).scopes, ["z", "w"]);
        let granted = parse(r#"{"scope": "orders:read orders:write"}"#).scopes;
        assert_eq!(check_scopes(&granted, &["orders:read".into()]), Ok(()));
        assert_eq!(
            check_scopes(&granted, &["orders:read".into(), "admin".into()]),
            Err(DenyReason::InsufficientScope)
        );
    }

    #[test]
    fn subject_matcher() {
        let m = StringMatch::Prefix("svc-".into());
        assert_eq!(check_subject(Some("svc-a"), Some(&m)), Ok(()));
        assert_eq!(
            check_subject(Some("bob"), Some(&m)),
            Err(DenyReason::SubjectNotAccepted)
        );
        assert_eq!(
            check_subject(None, Some(&m)),
            Err(DenyReason::SubjectNotAccepted)
        );
        assert_eq!(check_subject(None, None), Ok(()));
    }

    #[test]
    fn audience_string_or_array() {
        let accepted = vec!["orders-api".to_owned()];
        let one = Audience::One("orders-api".into());
        let many = Audience::Many(vec!["x".into(), "orders-api".into()]);
        let other = Audience::Many(vec!["x".into()]);
        assert_eq!(check_audience(Some(&one), &accepted), Ok(()));
        assert_eq!(check_audience(Some(&many), &accepted), Ok(()));
        assert_eq!(
            check_audience(Some(&other), &accepted),
            Err(DenyReason::AudienceNotAccepted)
        );
        assert_eq!(
            check_audience(None, &accepted),
            Err(DenyReason::AudienceNotAccepted)
        );
        assert_eq!(check_audience(None, &[]), Ok(()));
    }
}
