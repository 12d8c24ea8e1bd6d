//! RFC 7662 token introspection, the pure side: the request to send, what a response means,
//! and the per-process cache of answers as it is kept in shared data (a fixed number of
//! slots, so memory is bounded by live answers, not by every token ever seen).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;

use crate::config::endpoint::{ClientAuth, ClientEndpoint};
use crate::percent;
use crate::token::claims::{PayloadClaims, StringClaims, TimeClaims};

pub const DEFAULT_CACHE_SECONDS: u64 = 30;
pub const DEFAULT_NEGATIVE_CACHE_SECONDS: u64 = 5;
/// Introspection calls one worker has in flight at most; past it requests get 503.
pub const MAX_CALLS_IN_FLIGHT: usize = 256;
/// Responses larger than this are refused (an introspection answer is a few hundred bytes).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntrospectionConfig {
    pub client: ClientEndpoint,
    pub cache_seconds: u64,
    pub negative_cache_seconds: u64,
    /// Introspect JWTs of this provider too (after their signature and claims pass).
    pub introspect_jwt: bool,
}

/// Headers and body of a POST carrying `token` to a client endpoint (introspection or
/// RFC 7009 revocation: both take `token` and `token_type_hint`).
pub fn token_post(client: &ClientEndpoint, token: &str) -> (Vec<(String, String)>, String) {
    let mut headers = vec![
        (":method".to_owned(), "POST".to_owned()),
        (":path".to_owned(), client.endpoint.path.clone()),
        (":authority".to_owned(), client.endpoint.authority.clone()),
        (
            "content-type".to_owned(),
            "application/x-www-form-urlencoded".to_owned(),
        ),
        ("accept".to_owned(), "application/json".to_owned()),
    ];
    let mut body = format!(
        "token={}&token_type_hint=access_token",
        percent::encode(token)
    );
    match client.auth {
        ClientAuth::ClientSecretBasic => {
            // RFC 6749 §2.3.1: id and secret are form-encoded before Basic encoding.
            let pair = format!(
                "{}:{}",
                percent::encode(&client.client_id),
                percent::encode(&client.client_secret)
            );
            headers.push((
                "authorization".to_owned(),
                format!("Basic {}", STANDARD.encode(pair)),
            ));
        }
        ClientAuth::ClientSecretPost => {
            body.push_str(&format!(
                "&client_id={}&client_secret={}",
                percent::encode(&client.client_id),
                percent::encode(&client.client_secret)
            ));
        }
    }
    (headers, body)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntrospectionError {
    NoResponse,
    Status(String),
    TooLarge(usize),
    NotAnAnswer(String),
}

impl std::fmt::Display for IntrospectionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IntrospectionError::NoResponse => {
                f.write_str("no response (timeout or connection failure)")
            }
            IntrospectionError::Status(status) => write!(f, "HTTP status {status}"),
            IntrospectionError::TooLarge(n) => {
                write!(f, "body of {n} bytes exceeds {MAX_RESPONSE_BYTES}")
            }
            IntrospectionError::NotAnAnswer(why) => write!(f, "not an introspection answer: {why}"),
        }
    }
}

/// An answer, as cached: until when it may be used, and for an active token its claims
/// (the response JSON itself, parsed again on use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub cache_until: i64,
    pub active: bool,
    /// The response body: the claims of an active token (RFC 7662 §2.2 uses JWT claim names).
    pub claims_json: String,
}

#[derive(Deserialize)]
struct ActiveFlag {
    active: bool,
}

/// A 200 with `{"active": ...}` becomes an answer cached for `cache_seconds` (never past the
/// token's `exp`), or `negative_cache_seconds` when inactive.
pub fn accept_response(
    status: Option<&str>,
    body: &[u8],
    config: &IntrospectionConfig,
    now: i64,
) -> Result<Answer, IntrospectionError> {
    match status {
        None => return Err(IntrospectionError::NoResponse),
        Some("200") => {}
        Some(other) => return Err(IntrospectionError::Status(other.to_owned())),
    }
    if body.len() > MAX_RESPONSE_BYTES {
        return Err(IntrospectionError::TooLarge(body.len()));
    }
    let text =
        std::str::from_utf8(body).map_err(|e| IntrospectionError::NotAnAnswer(e.to_string()))?;
    let flag: ActiveFlag = serde_json::from_slice(text.as_bytes())
        .map_err(|e| IntrospectionError::NotAnAnswer(e.to_string()))?;
    let seconds = |s: u64| i64::try_from(s).unwrap_or(i64::MAX);
    if !flag.active {
        return Ok(Answer {
            cache_until: now.saturating_add(seconds(config.negative_cache_seconds)),
            active: false,
            claims_json: String::new(),
        });
    }
    let (_, times) = claims_of(text).map_err(IntrospectionError::NotAnAnswer)?;
    let mut cache_until = now.saturating_add(seconds(config.cache_seconds));
    if let Some(exp) = times.exp {
        cache_until = cache_until.min(exp);
    }
    Ok(Answer {
        cache_until,
        active: true,
        claims_json: text.to_owned(),
    })
}

/// The claims of an active answer, read like a JWT payload.
pub fn claims_of(claims_json: &str) -> Result<(StringClaims, TimeClaims), String> {
    let claims: PayloadClaims =
        serde_json::from_slice(claims_json.as_bytes()).map_err(|e| e.to_string())?;
    Ok(claims.split())
}

/// An answer about a refresh or ID token (`token_type`, Cognito's `token_use`, ...): the IdP
/// vouches for the token, but not as an access token.
pub fn answers_for_another_kind_of_token(claims_json: &str) -> bool {
    serde_json::from_slice::<PayloadClaims>(claims_json.as_bytes())
        .is_ok_and(|claims| claims.is_not_an_access_token(None))
}

/// Shared data keys: 4096 slots, chosen by the token's SHA-256.
pub const SLOT_COUNT: usize = 4096;
/// Answers kept per slot; past it the one that expires first goes.
const SLOT_CAPACITY: usize = 64;

pub fn slot_of(digest: &[u8; 32]) -> usize {
    ((usize::from(digest[0]) << 4) | usize::from(digest[1] >> 4)) % SLOT_COUNT
}

/// A slot: `(digest, answer)` entries, encoded as lines of
/// `<hex digest> <cache_until> <0|1> <json without newlines>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Slot {
    entries: Vec<([u8; 32], Answer)>,
}

impl Slot {
    pub fn decode(bytes: &[u8]) -> Self {
        let text = String::from_utf8_lossy(bytes);
        let entries = text
            .lines()
            .filter_map(|line| {
                let mut parts = line.splitn(4, ' ');
                let digest = crate::observe::fingerprint::hex_to_digest(parts.next()?)?;
                let cache_until = parts.next()?.parse().ok()?;
                let active = parts.next()? == "1";
                let claims_json = parts.next().unwrap_or_default().to_owned();
                Some((
                    digest,
                    Answer {
                        cache_until,
                        active,
                        claims_json,
                    },
                ))
            })
            .collect();
        Slot { entries }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::new();
        for (digest, answer) in &self.entries {
            out.push_str(&format!(
                "{} {} {} {}\n",
                crate::observe::fingerprint::digest_to_hex(digest),
                answer.cache_until,
                u8::from(answer.active),
                answer.claims_json.replace(['\n', '\r'], " ")
            ));
        }
        out.into_bytes()
    }

    /// A usable answer for this token.
    pub fn lookup(&self, digest: &[u8; 32], now: i64) -> Option<&Answer> {
        self.entries
            .iter()
            .find(|(d, a)| d == digest && a.cache_until > now)
            .map(|(_, a)| a)
    }

    /// Stores an answer; drops expired ones and, past the capacity, the soonest to expire.
    pub fn insert(&mut self, digest: [u8; 32], answer: Answer, now: i64) {
        self.entries
            .retain(|(d, a)| *d != digest && a.cache_until > now);
        self.entries.push((digest, answer));
        if self.entries.len() > SLOT_CAPACITY {
            self.entries
                .sort_by_key(|(_, a)| std::cmp::Reverse(a.cache_until));
            self.entries.truncate(SLOT_CAPACITY);
        }
    }

    /// Forgets a token's answer (it was revoked by a response header).
    pub fn remove(&mut self, digest: &[u8; 32]) {
        self.entries.retain(|(d, _)| d != digest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::endpoint::Endpoint;

    fn config() -> IntrospectionConfig {
        IntrospectionConfig {
            client: ClientEndpoint {
                endpoint: Endpoint {
                    cluster: "idp".into(),
                    authority: "idp.local".into(),
                    path: "/token/introspection".into(),
                },
                client_id: "proxy client".into(),
                client_secret: "s:cret".into(),
                auth: ClientAuth::ClientSecretBasic,
                timeout_ms: 1000,
            },
            cache_seconds: 30,
            negative_cache_seconds: 5,
            introspect_jwt: false,
        }
    }

    #[test]
    fn requests_authenticate_the_client() {
        let (headers, body) = token_post(&config().client, "a+b/c=");
        assert_eq!(body, "token=a%2Bb%2Fc%3D&token_type_hint=access_token");
        let auth = headers.iter().find(|(n, _)| n == "authorization").unwrap();
        // "proxy%20client:s%3Acret"
        assert_eq!(
            auth.1,
            format!("Basic {}", STANDARD.encode("proxy%20client:s%3Acret"))
        );
        let mut post = config();
        post.client.auth = ClientAuth::ClientSecretPost;
        let (headers, body) = token_post(&post.client, "t");
        assert!(headers.iter().all(|(n, _)| n != "authorization"));
        assert!(body.ends_with("&client_id=proxy%20client&client_secret=s%3Acret"));
    }

    #[test]
    fn answers_and_their_cache_lifetime() {
        let c = config();
        let active = accept_response(
            Some("200"),
            br#"{"active":true,"sub":"alice","exp":1010,"scope":"a b","client_id":"c"}"#,
            &c,
            1000,
        )
        .unwrap();
        assert!(active.active);
        assert_eq!(active.cache_until, 1010, "never past exp");
        let (claims, times) = claims_of(&active.claims_json).unwrap();
        assert_eq!(claims.sub.as_deref(), Some("alice"));
        assert_eq!(claims.scopes, vec!["a", "b"]);
        assert_eq!(times.exp, Some(1010));
        let long =
            accept_response(Some("200"), br#"{"active":true,"exp":99999}"#, &c, 1000).unwrap();
        assert_eq!(long.cache_until, 1030);
        let inactive = accept_response(Some("200"), br#"{"active":false}"#, &c, 1000).unwrap();
        assert!(!inactive.active);
        assert_eq!(inactive.cache_until, 1005);
        assert_eq!(
            accept_response(Some("503"), b"", &c, 0).unwrap_err(),
            IntrospectionError::Status("503".into())
        );
        assert_eq!(
            accept_response(None, b"", &c, 0).unwrap_err(),
            IntrospectionError::NoResponse
        );
        assert!(matches!(
            accept_response(Some("200"), br#"{"sub":"x"}"#, &c, 0),
            Err(IntrospectionError::NotAnAnswer(_))
        ));
        assert!(matches!(
            accept_response(Some("200"), br#"{"active":true,"exp":"soon"}"#, &c, 0),
            Err(IntrospectionError::NotAnAnswer(_))
        ));
    }

    #[test]
    fn slots_round_trip_expire_and_stay_bounded() {
        let answer = |until, active| Answer {
            cache_until: until,
            active,
            claims_json: if active {
                "{\"active\":true,\n\"sub\":\"a b\"}".into()
            } else {
                String::new()
            },
        };
        let mut slot = Slot::default();
        slot.insert([1; 32], answer(100, true), 0);
        slot.insert([2; 32], answer(50, false), 0);
        let again = Slot::decode(&slot.encode());
        assert_eq!(
            again.lookup(&[1; 32], 99).unwrap().claims_json,
            "{\"active\":true, \"sub\":\"a b\"}"
        );
        assert!(!again.lookup(&[2; 32], 10).unwrap().active);
        assert!(again.lookup(&[1; 32], 100).is_none(), "expired");
        assert!(again.lookup(&[3; 32], 0).is_none());
        let mut bounded = Slot::default();
        for i in 0..100u8 {
            bounded.insert([i; 32], answer(1000 + i64::from(i), true), 0);
        }
        assert_eq!(bounded.entries.len(), SLOT_CAPACITY);
        assert!(
            bounded.lookup(&[99; 32], 0).is_some(),
            "the longest-lived stay"
        );
        bounded.remove(&[99; 32]);
        assert!(bounded.lookup(&[99; 32], 0).is_none());
        assert!(slot_of(&[0xff; 32]) < SLOT_COUNT);
        assert_eq!(Slot::decode(b"garbage\n"), Slot::default());
    }
}
