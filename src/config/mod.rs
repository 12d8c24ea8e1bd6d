//! Plugin configuration: JSON in, typed and ready-to-use config out, or an error naming the key.

pub mod endpoint;
pub mod error;
pub mod json_path;
pub mod remote_jwks;

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::config::endpoint::{compile_client, ClientAuth, RawClient};
use crate::config::error::ConfigError;
use crate::config::remote_jwks::{compile_remote_jwks, RawRemoteJwks};
pub use crate::config::remote_jwks::{JwksLocation, RemoteJwks};
use crate::idp::introspection::{self, IntrospectionConfig};
use crate::keys::jwks::{self, KeySet};
use crate::keys::material::KeyMaterial;
use crate::observe::anomaly::{AnomalyAction, AnomalyConfig, RawAnomaly};
use crate::observe::decision_log::{LogConfig, LogDecisions, RawLog};
use crate::policy::forward::{ClaimHeader, ForwardPolicy};
use crate::policy::hosts::Hosts;
use crate::policy::matcher::{RawStringMatch, StringMatch};
use crate::policy::mode::Mode;
use crate::policy::rules::{PathMatch, Requirement, Rule, Rules};
use crate::revocation::config::{self as revocation_config, RevocationConfig};
use crate::token::algorithm::Algorithm;
use crate::token::claims::TimePolicy;
use crate::token::extract::TokenSource;
use crate::token::extract::{distinct, is_header_name, is_token};

pub const DEFAULT_REALM: &str = "bearer-guard";
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 60;
pub const DEFAULT_JWT_CACHE_SIZE: usize = 1000;

/// Where RSA and ECDSA signatures are verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum CryptoMode {
    /// Through the host (Envoy's BoringSSL) when its start-up self-test passes, else in wasm.
    #[default]
    Auto,
    /// Always in wasm (portable, much slower for RSA/ECDSA); for other hosts and for tests.
    Wasm,
}

/// Ready-to-use configuration. Built once in `on_configure`; requests only read it.
#[derive(Debug, Clone)]
pub struct Config {
    pub realm: String,
    /// Inserted into every stat name (`bearer_guard.<stat_prefix>.allowed`), so two filter
    /// configs in one Envoy count apart; `None`: `bearer_guard.allowed`.
    pub stat_prefix: Option<String>,
    pub providers: Vec<Provider>,
    pub rules: Rules,
    /// What a denial does where no rule says (`rules[i].mode`), and for a request that matches
    /// no rule: answered (`enforce`) or let through, counted and logged (`shadow`).
    pub mode: Mode,
    /// Verified tokens remembered per worker VM; 0 disables the cache.
    pub jwt_cache_size: usize,
    pub crypto: CryptoMode,
    /// Let CORS preflight requests through without a token (default true, as jwt_authn).
    pub bypass_cors_preflight: bool,
    /// Every header any provider writes upstream, and the revocation header; removed from
    /// every incoming request.
    pub written_headers: Vec<String>,
    /// `None`: no `revocation` key, no revocation checks.
    pub revocation: Option<RevocationConfig>,
    pub log: LogConfig,
    /// `None`: no misuse detection.
    pub anomaly: Option<AnomalyConfig>,
    /// Proxies in front of this one whose X-Forwarded-For entries are trusted (0: the
    /// connection's peer is the client).
    pub xff_num_trusted_hops: u32,
}

impl Config {
    /// Whether any provider refuses credentials sent without TLS (the adapter then reads the
    /// connection's TLS state).
    pub fn requires_tls(&self) -> bool {
        self.providers.iter().any(|p| p.require_tls)
    }

    /// Whether a provider is a jwt_authn companion: only then is the request's dynamic
    /// metadata read.
    pub fn reads_jwt_authn(&self) -> bool {
        self.providers.iter().any(|p| p.jwt_authn.is_some())
    }

    /// Whether anything is judged in shadow mode (the top level or a rule).
    pub fn shadows(&self) -> bool {
        self.mode == Mode::Shadow || self.rules.modes().any(|m| m == Some(Mode::Shadow))
    }

    /// Whether allowed requests need the token's identity (iss, sub, jti, fingerprint):
    /// for `log.decisions: all`, filter state or misuse detection.
    pub fn wants_identity(&self) -> bool {
        self.log.decisions == LogDecisions::All || self.log.filter_state || self.anomaly.is_some()
    }

    /// Whether a denial's token fingerprint and identity go anywhere: the decision log
    /// (`denied`, the default, or `all`) or filter state. Otherwise a denial hashes nothing.
    pub fn reports_denials(&self) -> bool {
        self.log.decisions != LogDecisions::None || self.log.filter_state
    }
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    /// `None`: the provider takes tokens without `iss` only.
    pub issuer: Option<String>,
    /// Companion mode: its tokens are the payloads jwt_authn verified, not credentials it
    /// verifies itself (`keys` is empty).
    pub jwt_authn: Option<JwtAuthnCompanion>,
    /// Empty: `aud` is not checked.
    pub audiences: Vec<String>,
    pub keys: KeySet,
    pub sources: Vec<TokenSource>,
    pub forward: ForwardPolicy,
    /// Keys fetched through an Envoy cluster; `keys` is then empty until the first fetch.
    pub remote_jwks: Option<RemoteJwks>,
    pub time: TimePolicy,
    /// Algorithms this provider's tokens may use; checked before any key is touched.
    pub algorithms: Vec<Algorithm>,
    pub token_types: TokenTypePolicy,
    pub subjects: Option<StringMatch>,
    /// RFC 7662: opaque tokens (and JWTs, with `introspect_jwt`) are asked about.
    pub introspection: Option<IntrospectionConfig>,
    /// Its credentials are refused on a plaintext connection (RFC 6750 §5.3).
    pub require_tls: bool,
    /// The names of every provider with this one's issuer (itself included): revocation
    /// entries scoped to any of them apply to this provider's tokens, since `jti` and `sub`
    /// are unique per issuer, not per provider.
    pub revocation_scopes: Vec<String>,
}

/// A companion provider's payload: jwt_authn's `payload_in_metadata` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtAuthnCompanion {
    pub payload_in_metadata: String,
}

impl Provider {
    /// Whether a token that says `iss` (or nothing) may be this provider's.
    pub fn issues(&self, iss: Option<&str>) -> bool {
        self.issuer.as_deref() == iss
    }
}

/// Which `typ` header values are accepted (RFC 8725 §3.11, RFC 9068 §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenTypePolicy {
    /// Normalised: lower case, without an `application/` prefix (RFC 7515 §4.1.9).
    pub accepted: Vec<String>,
    /// Whether a token without `typ` is refused.
    pub required: bool,
}

impl TokenTypePolicy {
    pub fn accepts(&self, typ: Option<&str>) -> bool {
        match typ {
            None => !self.required,
            Some(typ) => self.accepted.contains(&normalize_token_type(typ)),
        }
    }
}

pub fn normalize_token_type(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_owned(),
        None => lower,
    }
}

pub const DEFAULT_TOKEN_TYPES: [&str; 2] = ["JWT", "at+jwt"];

/// The parsed config and anything worth a log line (skipped JWKS keys).
#[derive(Debug)]
pub struct Configured {
    pub config: Config,
    pub warnings: Vec<String>,
}

// The serde shapes of the plugin config. With the `cli` feature they also derive the JSON
// Schema (`schema/bearer-guard.config.schema.json`): the doc comments are its descriptions, and
// `extend("default" = ...)` states the defaults the compile step applies.

/// bearer-guard plugin configuration (the JSON string in Envoy's `configuration` or an Istio
/// WasmPlugin's `pluginConfig`). The filter's own parser (`bearer-guard check-config`) also
/// checks what a schema cannot: cross-references, URIs, header names and key material.
#[derive(Deserialize)]
#[cfg_attr(
    feature = "cli",
    derive(schemars::JsonSchema),
    schemars(rename = "BearerGuardConfig")
)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// Token issuers this filter accepts, by name (letters, digits, `_`, `-`: names are part of
    /// stat names). At least one.
    #[cfg_attr(
        feature = "cli",
        schemars(extend("minProperties" = 1, "propertyNames" = { "pattern": "^[A-Za-z0-9_-]+$" }))
    )]
    providers: BTreeMap<String, RawProvider>,
    /// Which requests need which provider. First match wins; a request that matches no rule is
    /// refused (403). Absent: every request needs a valid token from some provider.
    #[serde(default)]
    rules: Option<Vec<RawRule>>,
    /// What a denial does: `enforce` (it is answered) or `shadow` (it is counted as
    /// `shadow_denied.<reason>` and logged with `"shadow": true`, and the request goes upstream
    /// as the client sent it). A rule's own `mode` overrides this for the requests it matches;
    /// a request that matches no rule is judged under this one.
    #[serde(default)]
    #[cfg_attr(feature = "cli", schemars(extend("default" = "enforce")))]
    mode: Mode,
    /// `realm` in `WWW-Authenticate`.
    #[serde(default)]
    #[cfg_attr(feature = "cli", schemars(extend("default" = DEFAULT_REALM)))]
    realm: Option<String>,
    /// Inserted into every stat name of this filter config (`bearer_guard.<stat_prefix>.
    /// allowed`), so two bearer-guard filters in one Envoy have separate stats (letters,
    /// digits, `_`, `-`). Absent: `bearer_guard.allowed`.
    #[serde(default)]
    #[cfg_attr(feature = "cli", schemars(regex(pattern = r"^[A-Za-z0-9_-]+$")))]
    stat_prefix: Option<String>,
    /// Verified tokens remembered per worker VM; `0` disables the cache.
    #[serde(default)]
    #[cfg_attr(feature = "cli", schemars(extend("default" = DEFAULT_JWT_CACHE_SIZE)))]
    jwt_cache_size: Option<usize>,
    /// Where RSA and ECDSA signatures are verified: `auto` (the host's BoringSSL when its
    /// start-up self-test passes, else wasm) or `wasm`.
    #[serde(default)]
    #[cfg_attr(feature = "cli", schemars(extend("default" = "auto")))]
    crypto: CryptoMode,
    /// Let CORS preflights (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
    /// through without a token.
    #[serde(default)]
    #[cfg_attr(feature = "cli", schemars(extend("default" = true)))]
    bypass_cors_preflight: Option<bool>,
    /// Revocation: static entries, the revocation response header, the polled list, publishing,
    /// RFC 7009 and Token Status Lists. Absent: no revocation checks.
    // Checked by `revocation::config`, which names its own keys in errors.
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(with = "Option<revocation_config::RevocationSchema>")
    )]
    revocation: Option<Value>,
    /// The JSON decision log and filter state.
    #[serde(default)]
    log: RawLog,
    /// Misuse detection per token. Absent: off.
    #[serde(default)]
    anomaly: Option<RawAnomaly>,
    /// Proxies in front whose `X-Forwarded-For` entries are trusted for the client address,
    /// and whose `x-forwarded-proto: https` counts as TLS for `require_tls`.
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(range(max = 16), extend("default" = 0))
    )]
    xff_num_trusted_hops: Option<u32>,
    /// Refuse a credential that arrives on a plaintext connection (400 `invalid_request`,
    /// RFC 6750 §5.3). Recommended in production.
    #[serde(default)]
    require_tls: bool,
}

/// A token issuer (`providers.<name>`).
#[derive(Deserialize)]
#[cfg_attr(
    feature = "cli",
    derive(schemars::JsonSchema),
    schemars(rename = "Provider")
)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    /// Must equal the token's `iss` exactly. Also how a provider is chosen: the token's
    /// (unverified) `iss` picks the provider, whose keys then verify it. Absent: the provider
    /// takes only tokens without `iss` (jwt_authn's takes any `iss`; see the migration guide).
    #[serde(default)]
    #[cfg_attr(feature = "cli", schemars(length(min = 1)))]
    issuer: Option<String>,
    /// Companion mode: tokens Envoy's `jwt_authn` (Istio's RequestAuthentication) verified
    /// earlier in the chain, read from its dynamic metadata; no keys of its own. Revocation,
    /// introspection, status lists, scopes and misuse detection apply as to any token.
    #[serde(default)]
    jwt_authn: Option<RawJwtAuthn>,
    /// When non-empty, the token's `aud` (string or array) must contain one of them.
    #[serde(default)]
    audiences: Vec<String>,
    /// The provider's keys: `{"keys": [...]}` or `{"inline_string": "<JWKS JSON>"}`. Exactly one
    /// of `local_jwks` and `remote_jwks` (or neither, with `introspection`).
    #[serde(default)]
    local_jwks: Option<RawLocalJwks>,
    /// Keys fetched through an Envoy cluster and refreshed in the background.
    #[serde(default)]
    remote_jwks: Option<RawRemoteJwks>,
    /// Headers that carry tokens. Without any `from_*`: `Authorization: Bearer <token>`.
    #[serde(default)]
    from_headers: Option<Vec<RawHeaderSource>>,
    /// Cookies that carry tokens.
    #[serde(default)]
    from_cookies: Option<Vec<String>>,
    /// Query parameters that carry tokens (RFC 6750 §2.3 discourages this).
    #[serde(default)]
    from_params: Option<Vec<String>>,
    /// Keep the credential in the upstream request (by default it is removed).
    #[serde(default)]
    forward: bool,
    /// Header that receives the verified payload (base64url, as in the token).
    #[serde(default)]
    forward_payload_header: Option<String>,
    /// Copy claims into upstream headers (scalars only; nested claims with dots).
    #[serde(default)]
    claim_to_headers: Option<Vec<RawClaimHeader>>,
    /// Tolerance applied to `exp`, `nbf`, and `iat` in the future.
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(extend("default" = DEFAULT_CLOCK_SKEW_SECONDS))
    )]
    clock_skew_seconds: Option<u64>,
    /// Reject tokens without `exp`.
    #[serde(default)]
    #[cfg_attr(feature = "cli", schemars(extend("default" = true)))]
    require_expiration: Option<bool>,
    /// When > 0, `exp - iat` must not exceed it (a token without `iat` or `exp` is then
    /// rejected); `0`: no limit.
    #[serde(default)]
    max_lifetime_seconds: u64,
    /// Algorithms accepted for this provider, checked before any key is touched. Default: every
    /// asymmetric one; HS256/384/512 only when listed, and only with `oct` keys.
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(
            length(min = 1),
            inner(regex(pattern = r"^(RS|PS|ES|HS)(256|384|512)$|^EdDSA$")),
            extend("default" = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"])
        )
    )]
    algorithms: Option<Vec<String>>,
    /// Accepted `typ` header values (RFC 8725 §3.11), case-insensitive, `application/` prefix
    /// optional.
    #[serde(default)]
    #[cfg_attr(feature = "cli", schemars(extend("default" = DEFAULT_TOKEN_TYPES)))]
    token_types: Option<Vec<String>>,
    /// Refuse tokens without `typ` (with `token_types: ["at+jwt"]` for strict RFC 9068).
    #[serde(default)]
    require_token_type: bool,
    /// The token's `sub` must match.
    #[serde(default)]
    subjects: Option<RawStringMatch>,
    /// RFC 7662 introspection endpoint: opaque tokens (and JWTs with `introspect_jwt`) are
    /// asked about. With it a provider may have no JWKS.
    #[serde(default)]
    introspection: Option<RawIntrospection>,
    /// This provider's credentials only over TLS. Default: the top-level `require_tls`.
    #[serde(default)]
    require_tls: Option<bool>,
}

/// Where jwt_authn wrote the verified payload (`providers.<name>.jwt_authn`).
#[derive(Deserialize)]
#[cfg_attr(
    feature = "cli",
    derive(schemars::JsonSchema),
    schemars(rename = "JwtAuthnCompanion")
)]
#[serde(deny_unknown_fields)]
struct RawJwtAuthn {
    /// jwt_authn's `payload_in_metadata` for the provider (Istio sets it to the issuer): the
    /// key under `envoy.filters.http.jwt_authn` in the request's dynamic metadata.
    #[cfg_attr(feature = "cli", schemars(length(min = 1)))]
    payload_in_metadata: String,
}

/// RFC 7662 introspection (`providers.<name>.introspection`).
#[derive(Deserialize)]
#[cfg_attr(
    feature = "cli",
    derive(schemars::JsonSchema),
    schemars(rename = "Introspection")
)]
#[serde(deny_unknown_fields)]
struct RawIntrospection {
    /// Envoy cluster of the endpoint.
    cluster: String,
    /// `http(s)://host[:port]/path`: gives the call's `:authority` and `:path`.
    uri: String,
    /// The proxy's client at the IdP.
    client_id: String,
    #[serde(default)]
    client_secret: String,
    /// How the client authenticates (RFC 6749 §2.3.1).
    #[serde(default)]
    #[cfg_attr(feature = "cli", schemars(extend("default" = "client_secret_basic")))]
    auth: ClientAuth,
    /// Call timeout; the request waits at most this (+2 s).
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(range(min = 1), extend("default" = crate::config::endpoint::DEFAULT_TIMEOUT_MS))
    )]
    timeout_ms: Option<u64>,
    /// How long an "active" answer is reused, never past the token's `exp`.
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(extend("default" = introspection::DEFAULT_CACHE_SECONDS))
    )]
    cache_seconds: Option<u64>,
    /// How long an "inactive" answer is reused.
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(extend("default" = introspection::DEFAULT_NEGATIVE_CACHE_SECONDS))
    )]
    negative_cache_seconds: Option<u64>,
    /// Also ask about this provider's JWTs (after their signature and claims pass).
    #[serde(default)]
    introspect_jwt: bool,
}

/// Keys in the config: exactly one of `keys` and `inline_string`.
#[derive(Deserialize)]
#[cfg_attr(
    feature = "cli",
    derive(schemars::JsonSchema),
    schemars(rename = "LocalJwks")
)]
#[serde(deny_unknown_fields)]
struct RawLocalJwks {
    /// A whole JWKS as a JSON string.
    #[serde(default)]
    inline_string: Option<String>,
    /// JWKs (RFC 7517). Keys that cannot be used are skipped with a warning.
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(with = "Option<Vec<serde_json::Map<String, Value>>>")
    )]
    keys: Option<Vec<Value>>,
}

/// A header that carries tokens.
#[derive(Deserialize)]
#[cfg_attr(
    feature = "cli",
    derive(schemars::JsonSchema),
    schemars(rename = "HeaderSource")
)]
#[serde(deny_unknown_fields)]
struct RawHeaderSource {
    /// Header name, case-insensitive.
    name: String,
    /// Text before the token (e.g. `Bearer `), matched ASCII case-insensitively.
    #[serde(default)]
    value_prefix: String,
}

/// A claim copied into an upstream header.
#[derive(Deserialize)]
#[cfg_attr(
    feature = "cli",
    derive(schemars::JsonSchema),
    schemars(rename = "ClaimHeader")
)]
#[serde(deny_unknown_fields)]
struct RawClaimHeader {
    /// Claim name, nested with dots (`org.id`).
    claim_name: String,
    header_name: String,
}

/// A route rule (`rules[i]`).
#[derive(Deserialize)]
#[cfg_attr(
    feature = "cli",
    derive(schemars::JsonSchema),
    schemars(rename = "Rule")
)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(rename = "match")]
    matcher: RawMatch,
    /// What the route needs. Absent: the route is public.
    #[serde(default)]
    requires: Option<RawRequires>,
    /// Scopes every accepted token must carry (from `scope` or `scp`); else 403
    /// `insufficient_scope`.
    #[serde(default)]
    scopes: Option<Vec<String>>,
    /// `enforce` or `shadow` for the requests this rule matches. Absent: the top-level `mode`.
    #[serde(default)]
    mode: Option<Mode>,
}

/// Which requests a rule matches: exactly one of `prefix`, `path` and `regex`, plus optional
/// methods, headers and hosts. The query string is ignored.
#[derive(Deserialize)]
#[cfg_attr(
    feature = "cli",
    derive(schemars::JsonSchema),
    schemars(rename = "Match")
)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    /// Path prefix, starting with `/`.
    #[serde(default)]
    #[cfg_attr(feature = "cli", schemars(regex(pattern = r"^/")))]
    prefix: Option<String>,
    /// Exact path, starting with `/`.
    #[serde(default)]
    #[cfg_attr(feature = "cli", schemars(regex(pattern = r"^/")))]
    path: Option<String>,
    /// Must match the whole path (regex-lite syntax, linear-time matching).
    #[serde(default)]
    regex: Option<String>,
    /// HTTP methods, case-insensitive. Absent: any method.
    #[serde(default)]
    #[cfg_attr(feature = "cli", schemars(length(min = 1)))]
    methods: Option<Vec<String>>,
    /// Every listed header must be present with exactly this value.
    #[serde(default)]
    headers: Option<Vec<RawHeaderMatch>>,
    /// The request's `:authority`, without its port and ASCII case-insensitively, must be one
    /// of these: a host (`api.example.com`) or `*.` and a domain (`*.example.com`: one or more
    /// labels before it, not the domain itself). Absent: any host.
    #[serde(default)]
    #[cfg_attr(feature = "cli", schemars(length(min = 1)))]
    hosts: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[cfg_attr(
    feature = "cli",
    derive(schemars::JsonSchema),
    schemars(rename = "HeaderMatch")
)]
#[serde(deny_unknown_fields)]
struct RawHeaderMatch {
    name: String,
    exact: String,
}

/// A requirement (jwt_authn's `JwtRequirement`): exactly one of its keys.
#[derive(Deserialize)]
#[cfg_attr(
    feature = "cli",
    derive(schemars::JsonSchema),
    schemars(rename = "Requirement")
)]
#[serde(deny_unknown_fields)]
struct RawRequires {
    /// A valid token of that provider.
    #[serde(default)]
    provider_name: Option<String>,
    /// A valid token of that provider, with these audiences instead of the provider's.
    #[serde(default)]
    provider_and_audiences: Option<RawProviderAndAudiences>,
    /// At least one of the requirements (the most specific failure is reported).
    #[serde(default)]
    requires_any: Option<RawRequirementList>,
    /// All of the requirements (each from its provider's own token source).
    #[serde(default)]
    requires_all: Option<RawRequirementList>,
    /// `{}`: no token is fine; a token that is present must be valid for some provider.
    #[serde(default)]
    #[cfg_attr(feature = "cli", schemars(with = "Option<Value>"))]
    allow_missing: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[cfg_attr(
    feature = "cli",
    derive(schemars::JsonSchema),
    schemars(rename = "ProviderAndAudiences")
)]
#[serde(deny_unknown_fields)]
struct RawProviderAndAudiences {
    provider_name: String,
    audiences: Vec<String>,
}

#[derive(Deserialize)]
#[cfg_attr(
    feature = "cli",
    derive(schemars::JsonSchema),
    schemars(rename = "RequirementList")
)]
#[serde(deny_unknown_fields)]
struct RawRequirementList {
    /// At least two.
    #[cfg_attr(feature = "cli", schemars(length(min = 2)))]
    requirements: Vec<RawRequires>,
}

/// The plugin configuration's JSON Schema, generated from the serde types the parser uses
/// (settings and clean-up are the CLI's, `cli::schema`).
#[cfg(feature = "cli")]
pub fn json_schema(generator: schemars::SchemaGenerator) -> schemars::Schema {
    generator.into_root_schema_for::<RawConfig>()
}

impl Config {
    /// The names of the providers whose `issuer` is `issuer`: the scopes an entry made for
    /// that issuer (etcd's `iss/<issuer>/`) is held under.
    pub fn provider_names_of_issuer(&self, issuer: &str) -> Vec<String> {
        self.providers
            .iter()
            .filter(|p| p.issues(Some(issuer)))
            .map(|p| p.name.clone())
            .collect()
    }

    /// The `issuer` under which what provider `name` learns may be written for every proxy
    /// (etcd's `iss/<issuer>/`): only when every provider with that `iss` string shares its
    /// keys (`revocation_scopes`). Otherwise another key holder's tokens carry the same `iss`,
    /// and an entry for the issuer would let one holder revoke the other's `jti`s.
    pub fn shared_issuer_of(&self, name: &str) -> Option<String> {
        let provider = self.providers.iter().find(|p| p.name == name)?;
        // Tokens without `iss` have no issuer to write under.
        let issuer = provider.issuer.as_ref()?;
        let of_issuer = self.provider_names_of_issuer(issuer);
        of_issuer
            .iter()
            .all(|n| provider.revocation_scopes.contains(n))
            .then(|| issuer.clone())
    }

    /// How long past its `exp` a token may still be accepted (the largest clock skew), plus
    /// a margin: revocation entries are kept at least this long past `exp`.
    pub fn expiry_grace_seconds(&self) -> i64 {
        let skew = self
            .providers
            .iter()
            .map(|p| p.time.clock_skew_seconds)
            .max()
            .unwrap_or(0);
        i64::try_from(skew)
            .unwrap_or(i64::MAX)
            .saturating_add(60)
            .max(600)
    }

    pub fn from_json(bytes: &[u8]) -> Result<Configured, ConfigError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| ConfigError::new("", format!("not UTF-8: {e}")))?;
        compile(read_raw(text)?)
    }
}

/// The config's JSON as its raw types. This and the `compile_*` steps are `inline(never)`:
/// inlined into one another they made functions of 20 KB that V8 needs 7 MB of zone memory
/// each to compile (with TurboFan, when Envoy loads the module), memory Envoy's allocator keeps
/// afterwards. Split, they cost 4 MB less RSS; they run once per configuration.
#[inline(never)]
fn read_raw(text: &str) -> Result<RawConfig, ConfigError> {
    serde_json::from_slice(text.as_bytes()).map_err(|e| {
        ConfigError::new(
            json_path::path_at(text, e.line(), e.column()),
            e.to_string(),
        )
    })
}

/// The whole config: providers first (rules and revocation refer to them by name), then the
/// sections that depend on them, then the headers every request is cleaned of.
#[inline(never)]
fn compile(raw: RawConfig) -> Result<Configured, ConfigError> {
    let mut warnings = Vec::new();
    let providers = compile_providers(raw.providers, raw.require_tls, &mut warnings)?;
    let rules = match raw.rules {
        None => Rules::require_any_provider(),
        Some(rules) => compile_rules(rules, &providers, raw.mode, &mut warnings)?,
    };
    let realm = raw.realm.unwrap_or_else(|| DEFAULT_REALM.to_owned());
    if realm.chars().any(char::is_control) {
        return Err(ConfigError::new(
            "realm",
            "must not contain control characters",
        ));
    }
    let revocation = raw
        .revocation
        .map(|value| compile_revocation(value, &providers))
        .transpose()?;
    if revocation.as_ref().is_some_and(|r| r.status_list.is_some()) {
        warn_companions_without_status_list_keys(&providers, &mut warnings);
    }
    let anomaly = compile_anomaly(raw.anomaly, revocation.is_some())?;
    let xff_num_trusted_hops = raw.xff_num_trusted_hops.unwrap_or(0);
    if xff_num_trusted_hops > 16 {
        return Err(ConfigError::new("xff_num_trusted_hops", "must be 0..=16"));
    }
    let written_headers = written_headers(&providers, revocation.as_ref());
    let stat_prefix = raw.stat_prefix;
    if stat_prefix.as_deref().is_some_and(|p| {
        p.is_empty()
            || !p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    }) {
        return Err(ConfigError::new(
            "stat_prefix",
            "letters, digits, '_' and '-' only (it becomes part of stat names)",
        ));
    }
    Ok(Configured {
        config: Config {
            realm,
            stat_prefix,
            providers,
            rules,
            mode: raw.mode,
            jwt_cache_size: raw.jwt_cache_size.unwrap_or(DEFAULT_JWT_CACHE_SIZE),
            crypto: raw.crypto,
            bypass_cors_preflight: raw.bypass_cors_preflight.unwrap_or(true),
            written_headers,
            revocation,
            log: raw.log.compile(),
            anomaly,
            xff_num_trusted_hops,
        },
        warnings,
    })
}

/// `providers`: each compiled on its own, then what holds across them (shared revocation
/// scopes, at most one introspecting provider).
fn compile_providers(
    raw: BTreeMap<String, RawProvider>,
    default_require_tls: bool,
    warnings: &mut Vec<String>,
) -> Result<Vec<Provider>, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::new(
            "providers",
            "at least one provider is required",
        ));
    }
    let mut providers = Vec::with_capacity(raw.len());
    for (name, provider) in raw {
        providers.push(compile_provider(
            name,
            provider,
            default_require_tls,
            warnings,
        )?);
    }
    share_revocation_scopes(&mut providers, warnings);
    // An opaque token names no issuer: with two introspecting providers it would be sent to
    // an IdP that did not issue it (a credential leak).
    let introspecting: Vec<&str> = providers
        .iter()
        .filter(|p| p.introspection.is_some())
        .map(|p| p.name.as_str())
        .collect();
    if let [_, second, ..] = introspecting.as_slice() {
        return Err(ConfigError::new(
            format!("providers.{second}.introspection"),
            "only one provider may use introspection (opaque tokens carry no issuer to choose by)",
        ));
    }
    // A payload is chosen by its key, then its `iss` (Istio writes every issuer's under one
    // key): two companions of one key and one issuer would both claim it, with no order a
    // reader could see.
    for (i, provider) in providers.iter().enumerate() {
        let Some(companion) = &provider.jwt_authn else {
            continue;
        };
        if let Some(earlier) = providers
            .iter()
            .take(i)
            .find(|p| p.jwt_authn.as_ref() == Some(companion) && p.issuer == provider.issuer)
        {
            return Err(ConfigError::new(
                format!("providers.{}.jwt_authn.payload_in_metadata", provider.name),
                format!(
                    "provider {} already reads this payload for the same issuer",
                    earlier.name
                ),
            ));
        }
    }
    Ok(providers)
}

/// `revocation` (checked by `revocation::config`), plus what the revocation header's
/// entries are bounded by: the providers' largest clock skew and token lifetime.
#[inline(never)]
fn compile_revocation(
    value: Value,
    providers: &[Provider],
) -> Result<RevocationConfig, ConfigError> {
    let names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
    let mut revocation = revocation_config::compile(value, &names)?;
    let policy = &mut revocation.header_policy;
    policy.max_clock_skew_seconds = providers
        .iter()
        .map(|p| i64::try_from(p.time.clock_skew_seconds).unwrap_or(i64::MAX))
        .max()
        .unwrap_or(0);
    policy.max_lifetime_seconds = providers
        .iter()
        .map(|p| p.time.max_lifetime_seconds)
        .collect::<Option<Vec<u64>>>()
        .and_then(|l| l.into_iter().max())
        .map(|l| i64::try_from(l).unwrap_or(i64::MAX));
    Ok(revocation)
}

/// A Status List Token is signed by the issuer; a jwt_authn companion has no keys, so its
/// tokens' lists are verified with those of a provider of the same issuer. Without one, every
/// such list is refused and `on_stale` decides: said at start, not at the first request.
fn warn_companions_without_status_list_keys(providers: &[Provider], warnings: &mut Vec<String>) {
    for (index, companion) in providers.iter().enumerate() {
        if status_list_signer(providers, index).is_none() {
            warnings.push(format!(
                "providers.{}: a jwt_authn companion has no keys; the status lists its tokens \
                 name can only be verified with the keys of a provider of the same issuer \
                 (add one with its JWKS)",
                companion.name
            ));
        }
    }
}

/// Whose keys verify the Status List Tokens provider `index`'s tokens name: its own, or for a
/// jwt_authn companion (no keys of its own) the first provider of its issuer that has keys.
pub fn status_list_signer(providers: &[Provider], index: usize) -> Option<usize> {
    let referenced_by = providers.get(index)?;
    if referenced_by.jwt_authn.is_none() {
        return Some(index);
    }
    providers
        .iter()
        .position(|p| p.jwt_authn.is_none() && p.issuer == referenced_by.issuer)
}

/// `anomaly`: its own keys are checked by `observe::anomaly`; the `revoke` action also needs
/// somewhere to record revocations.
fn compile_anomaly(
    raw: Option<RawAnomaly>,
    has_revocation: bool,
) -> Result<Option<AnomalyConfig>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let anomaly = raw
        .compile()
        .map_err(|(key, reason)| ConfigError::new(format!("anomaly.{key}"), reason))?;
    if anomaly.action == AnomalyAction::Revoke && !has_revocation {
        return Err(ConfigError::new(
            "anomaly.action",
            "`revoke` records revocations: it needs a `revocation` object (`{}` will do)",
        ));
    }
    Ok(Some(anomaly))
}

/// Every header a provider writes upstream, and the revocation header, once each: a client
/// must not be able to send them itself.
fn written_headers(providers: &[Provider], revocation: Option<&RevocationConfig>) -> Vec<String> {
    let mut written_headers: Vec<String> = Vec::new();
    let revocation_header = revocation.and_then(|r| r.response_header.as_deref());
    for name in providers
        .iter()
        .flat_map(|p| p.forward.written_headers())
        .chain(revocation_header)
    {
        if !written_headers.iter().any(|n| n == name) {
            written_headers.push(name.to_owned());
        }
    }
    written_headers
}

/// Providers of one issuer share revocations: each gets the names of all of them. "One
/// issuer" means the same `iss` and the same keys (the same remote JWKS, the same local keys,
/// the same introspection endpoint): a provider whose key holder is someone else, under the
/// same `iss` string, could otherwise mint a token with a victim's `jti` and revoke it with
/// `self` (the issuer's `jti` space is only the issuer's when its keys are).
///
/// A jwt_authn companion has no keys: jwt_authn's, for its issuer, vouch for its tokens. When
/// the providers with keys for that issuer here all hold the same ones, those are the
/// issuer's keys as far as this config says (their keys also verify the companion's status
/// lists), and the companion shares their revocations: a logout seen through either reaches
/// the token on both, under `requires_any` too. With keys of more than one holder for the
/// issuer, it shares with none of them (the warning says so).
fn share_revocation_scopes(providers: &mut [Provider], warnings: &mut Vec<String>) {
    let own: Vec<[u8; 32]> = providers.iter().map(trust_anchor).collect();
    let anchors: Vec<(Option<String>, [u8; 32], String)> = providers
        .iter()
        .zip(&own)
        .map(|(p, anchor)| {
            let keyed_anchors = || {
                providers
                    .iter()
                    .zip(&own)
                    .filter(|(k, _)| k.jwt_authn.is_none() && k.issuer == p.issuer)
                    .map(|(_, a)| *a)
            };
            let issuers_keys = keyed_anchors()
                .next()
                .filter(|first| p.jwt_authn.is_some() && keyed_anchors().all(|a| a == *first));
            (
                p.issuer.clone(),
                issuers_keys.unwrap_or(*anchor),
                p.name.clone(),
            )
        })
        .collect();
    for (provider, (_, anchor, _)) in providers.iter_mut().zip(&anchors) {
        provider.revocation_scopes = anchors
            .iter()
            .filter(|(issuer, other, _)| *issuer == provider.issuer && other == anchor)
            .map(|(_, _, name)| name.clone())
            .collect();
    }
    for (i, (issuer, anchor, name)) in anchors.iter().enumerate() {
        let apart = anchors
            .iter()
            .skip(i + 1)
            .filter(|(other_issuer, other, _)| other_issuer == issuer && other != anchor);
        for (_, _, other) in apart {
            warnings.push(format!(
                "providers {name} and {other} have the same issuer but different keys: they do \
                 not share revocations (a jti is only the issuer's where its keys are)"
            ));
        }
    }
}

/// What vouches for a provider's tokens: its remote JWKS location, local keys and
/// introspection endpoint, as one digest (HMAC secrets enter only hashed).
fn trust_anchor(provider: &Provider) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut keys: Vec<Vec<u8>> = provider
        .keys
        .keys
        .iter()
        .map(|key| match &key.material {
            KeyMaterial::Hmac(secret) => Sha256::digest(secret).to_vec(),
            _ => key.spki_der.clone(),
        })
        .collect();
    keys.sort_unstable();
    let mut hash = Sha256::new();
    let mut part = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    if let Some(remote) = &provider.remote_jwks {
        part(remote.authority.as_bytes());
        part(remote.path.as_bytes());
        // The same URI read as a JWKS or as a discovery document vouches for different keys.
        part(&[u8::from(matches!(
            remote.location,
            JwksLocation::Discovery { .. }
        ))]);
    }
    part(&[u8::from(provider.remote_jwks.is_some())]);
    // A companion's tokens are vouched for by the jwt_authn provider behind its key.
    if let Some(companion) = &provider.jwt_authn {
        part(b"jwt_authn");
        part(companion.payload_in_metadata.as_bytes());
    }
    for key in &keys {
        part(key);
    }
    if let Some(introspection) = &provider.introspection {
        let endpoint = &introspection.client.endpoint;
        part(endpoint.authority.as_bytes());
        part(endpoint.path.as_bytes());
    }
    hash.finalize().into()
}

/// `providers.<name>`: each concern (name, token sources and forwarding, identity, keys,
/// algorithms, subjects) compiled by its own step, in the order their errors are reported.
#[inline(never)]
fn compile_provider(
    name: String,
    raw: RawProvider,
    default_require_tls: bool,
    warnings: &mut Vec<String>,
) -> Result<Provider, ConfigError> {
    check_provider_name(&name)?;
    let at = |key: &str| format!("providers.{name}.{key}");
    let sources = compile_sources(&raw, &at)?;
    let forward = compile_forward(&raw, &at)?;
    check_written_headers_not_read(&forward, &sources, &at)?;
    let time = time_policy(&raw);
    if raw.issuer.as_deref() == Some("") {
        return Err(ConfigError::new(
            at("issuer"),
            "must not be empty (leave it out for tokens without `iss`)",
        ));
    }
    let jwt_authn = compile_jwt_authn(&raw, &at)?;
    if raw.audiences.iter().any(String::is_empty) {
        return Err(ConfigError::new(
            at("audiences"),
            "must not contain empty strings",
        ));
    }
    let introspection = raw
        .introspection
        .map(|i| compile_introspection(i, &at))
        .transpose()?;
    let (keys, remote_jwks) = compile_keys(
        raw.local_jwks,
        raw.remote_jwks,
        raw.issuer.as_deref(),
        introspection.is_some() || jwt_authn.is_some(),
        &at,
        warnings,
    )?;
    let algorithms = compile_algorithms(raw.algorithms, &at)?;
    warn_unused_hmac_keys(&keys, &algorithms, &at, warnings);
    let subjects = match raw.subjects {
        None => None,
        Some(raw) => Some(
            raw.compile()
                .map_err(|why| ConfigError::new(at("subjects"), why))?,
        ),
    };
    Ok(Provider {
        issuer: raw.issuer,
        jwt_authn,
        audiences: raw.audiences,
        keys,
        sources,
        forward,
        remote_jwks,
        time,
        algorithms,
        token_types: compile_token_types(raw.token_types, raw.require_token_type),
        subjects,
        introspection,
        require_tls: raw.require_tls.unwrap_or(default_require_tls),
        revocation_scopes: vec![name.clone()],
        name,
    })
}

/// `jwt_authn`: the key jwt_authn writes the payload under. jwt_authn verified the signature,
/// so keys and the checks that read the token's header (`algorithms`, `typ`) are its own and
/// refused here rather than silently unused; introspection is only of JWTs.
#[inline(never)]
fn compile_jwt_authn(
    raw: &RawProvider,
    at: &dyn Fn(&str) -> String,
) -> Result<Option<JwtAuthnCompanion>, ConfigError> {
    let Some(companion) = &raw.jwt_authn else {
        return Ok(None);
    };
    if companion.payload_in_metadata.is_empty() {
        return Err(ConfigError::new(
            at("jwt_authn.payload_in_metadata"),
            "must not be empty",
        ));
    }
    let theirs = [
        ("local_jwks", raw.local_jwks.is_some()),
        ("remote_jwks", raw.remote_jwks.is_some()),
        ("algorithms", raw.algorithms.is_some()),
        ("token_types", raw.token_types.is_some()),
        ("require_token_type", raw.require_token_type),
    ];
    if let Some((key, _)) = theirs.iter().find(|(_, set)| *set) {
        return Err(ConfigError::new(
            at(key),
            "a jwt_authn companion has no keys and never sees the token's header: jwt_authn \
             verified it; set this on jwt_authn's provider",
        ));
    }
    if raw
        .introspection
        .as_ref()
        .is_some_and(|i| !i.introspect_jwt)
    {
        return Err(ConfigError::new(
            at("introspection.introspect_jwt"),
            "a jwt_authn companion's tokens are JWTs: set `introspect_jwt: true`",
        ));
    }
    Ok(Some(JwtAuthnCompanion {
        payload_in_metadata: companion.payload_in_metadata.clone(),
    }))
}

/// A provider's name is a map key, so serde cannot check it; it is part of stat names
/// (`bearer_guard.provider.<name>.allowed`): no dots.
fn check_provider_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::new(
            "providers",
            "provider names must not be empty",
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ConfigError::new(
            format!("providers.{name}"),
            "provider names may use letters, digits, `_` and `-` only (they appear in stat names)",
        ));
    }
    Ok(())
}

/// A header the filter writes upstream must not be one it reads tokens from: the written
/// value would stand where the next hop looks for a credential.
fn check_written_headers_not_read(
    forward: &ForwardPolicy,
    sources: &[TokenSource],
    at: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    for (i, name) in forward.written_headers().enumerate() {
        let reads = sources.iter().any(|s| match s {
            TokenSource::Header { name: source, .. } => **source == *name,
            TokenSource::Cookie { .. } => name == "cookie",
            TokenSource::Param { .. } => false,
        });
        if reads {
            return Err(ConfigError::new(
                at("claim_to_headers"),
                format!("header {name:?} (written header {i}) is also where tokens are read"),
            ));
        }
    }
    Ok(())
}

/// Where a provider's keys come from: local keys (parsed now), a remote JWKS (no keys until
/// the first fetch) or, with introspection, none at all.
#[inline(never)]
fn compile_keys(
    local_jwks: Option<RawLocalJwks>,
    remote_jwks: Option<RawRemoteJwks>,
    issuer: Option<&str>,
    introspects: bool,
    at: &dyn Fn(&str) -> String,
    warnings: &mut Vec<String>,
) -> Result<(KeySet, Option<RemoteJwks>), ConfigError> {
    match (local_jwks, remote_jwks) {
        (Some(local), None) => Ok((compile_local_jwks(local, at, warnings)?, None)),
        (None, Some(remote)) => Ok((
            KeySet::default(),
            Some(compile_remote_jwks(remote, issuer, at)?),
        )),
        // Opaque tokens only: introspection alone decides.
        (None, None) if introspects => Ok((KeySet::default(), None)),
        _ => Err(ConfigError::new(
            at("local_jwks"),
            "set exactly one of \"local_jwks\" or \"remote_jwks\" (or only \"introspection\")",
        )),
    }
}

/// `local_jwks`: unusable keys are skipped with a warning, but a set left with none is an
/// error (every token of the provider would be refused).
#[inline(never)]
fn compile_local_jwks(
    local: RawLocalJwks,
    at: &dyn Fn(&str) -> String,
    warnings: &mut Vec<String>,
) -> Result<KeySet, ConfigError> {
    let parsed = match (local.inline_string, local.keys) {
        (Some(text), None) => jwks::parse_jwks_str(&text)
            .map_err(|e| ConfigError::new(at("local_jwks.inline_string"), e.to_string()))?,
        (None, Some(keys)) => jwks::parse_keys(&keys),
        _ => {
            return Err(ConfigError::new(
                at("local_jwks"),
                "set exactly one of \"inline_string\" or \"keys\"",
            ))
        }
    };
    for (index, skip) in &parsed.skipped {
        warnings.push(format!("{}: key {index} skipped: {skip}", at("local_jwks")));
    }
    if parsed.key_set.keys.is_empty() {
        let why = parsed
            .skipped
            .iter()
            .map(|(i, s)| format!("key {i}: {s}"))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(ConfigError::new(
            at("local_jwks"),
            format!(
                "no usable verification key ({})",
                if why.is_empty() {
                    "empty key set"
                } else {
                    &why
                }
            ),
        ));
    }
    Ok(parsed.key_set)
}

/// `algorithms`, checked before any key is touched: by default every asymmetric one, HMAC
/// only when listed.
fn compile_algorithms(
    raw: Option<Vec<String>>,
    at: &dyn Fn(&str) -> String,
) -> Result<Vec<Algorithm>, ConfigError> {
    match raw {
        None => Ok(Algorithm::ALL
            .into_iter()
            .filter(|a| !a.is_symmetric())
            .collect()),
        Some(names) if names.is_empty() => {
            Err(ConfigError::new(at("algorithms"), "must not be empty"))
        }
        Some(names) => names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                Algorithm::from_name(name).ok_or_else(|| {
                    ConfigError::new(
                        at(&format!("algorithms[{i}]")),
                        format!("{name:?} is not a supported algorithm (RS256/384/512, PS256/384/512, ES256/384/512, EdDSA, HS256/384/512)"),
                    )
                })
            })
            .collect(),
    }
}

/// `oct` keys without an HS algorithm are never used: likely a forgotten `algorithms` entry.
fn warn_unused_hmac_keys(
    keys: &KeySet,
    algorithms: &[Algorithm],
    at: &dyn Fn(&str) -> String,
    warnings: &mut Vec<String>,
) {
    let has_hmac_keys = keys
        .keys
        .iter()
        .any(|k| matches!(k.material, KeyMaterial::Hmac(_)));
    if has_hmac_keys && !algorithms.iter().any(|a| a.is_symmetric()) {
        warnings.push(format!(
            "{}: oct (HMAC) keys are unused: HS256/384/512 are not in \"algorithms\"",
            at("local_jwks")
        ));
    }
}

/// `clock_skew_seconds`, `require_expiration` and `max_lifetime_seconds`, defaults applied
/// (a zero lifetime means no limit).
fn time_policy(raw: &RawProvider) -> TimePolicy {
    TimePolicy {
        clock_skew_seconds: raw.clock_skew_seconds.unwrap_or(DEFAULT_CLOCK_SKEW_SECONDS),
        require_expiration: raw.require_expiration.unwrap_or(true),
        max_lifetime_seconds: (raw.max_lifetime_seconds > 0).then_some(raw.max_lifetime_seconds),
    }
}

/// `token_types` and `require_token_type`, normalised once here so requests compare as is.
fn compile_token_types(accepted: Option<Vec<String>>, required: bool) -> TokenTypePolicy {
    let accepted = accepted.unwrap_or_else(|| {
        DEFAULT_TOKEN_TYPES
            .iter()
            .map(|t| (*t).to_owned())
            .collect()
    });
    TokenTypePolicy {
        accepted: accepted.iter().map(|t| normalize_token_type(t)).collect(),
        required,
    }
}

#[inline(never)]
fn compile_introspection(
    raw: RawIntrospection,
    at: &dyn Fn(&str) -> String,
) -> Result<IntrospectionConfig, ConfigError> {
    let client = compile_client(
        RawClient {
            cluster: raw.cluster,
            uri: raw.uri,
            client_id: raw.client_id,
            client_secret: raw.client_secret,
            auth: raw.auth,
            timeout_ms: raw.timeout_ms,
        },
        &|key| at(&format!("introspection.{key}")),
    )?;
    Ok(IntrospectionConfig {
        client,
        cache_seconds: raw
            .cache_seconds
            .unwrap_or(introspection::DEFAULT_CACHE_SECONDS),
        negative_cache_seconds: raw
            .negative_cache_seconds
            .unwrap_or(introspection::DEFAULT_NEGATIVE_CACHE_SECONDS),
        introspect_jwt: raw.introspect_jwt,
    })
}

/// Without any `from_*`, tokens come from `Authorization: Bearer` (as in jwt_authn).
#[inline(never)]
fn compile_sources(
    raw: &RawProvider,
    at: &dyn Fn(&str) -> String,
) -> Result<Vec<TokenSource>, ConfigError> {
    let mut sources = Vec::new();
    for (i, h) in raw.from_headers.iter().flatten().enumerate() {
        if !is_header_name(&h.name) {
            return Err(ConfigError::new(
                at(&format!("from_headers[{i}].name")),
                "must be a valid HTTP header name",
            ));
        }
        sources.push(TokenSource::header(&h.name, &h.value_prefix));
    }
    for (i, name) in raw.from_cookies.iter().flatten().enumerate() {
        if !is_token(name) {
            return Err(ConfigError::new(
                at(&format!("from_cookies[{i}]")),
                "must be a valid cookie name",
            ));
        }
        sources.push(TokenSource::Cookie {
            name: name.as_str().into(),
        });
    }
    for (i, name) in raw.from_params.iter().flatten().enumerate() {
        if name.is_empty() || name.contains(['&', '=', '#', '?']) {
            return Err(ConfigError::new(
                at(&format!("from_params[{i}]")),
                "must be a query parameter name",
            ));
        }
        sources.push(TokenSource::Param {
            name: name.as_str().into(),
        });
    }
    // A place listed twice is one place (the request path reads each source once).
    let sources = distinct(&sources);
    let any_configured =
        raw.from_headers.is_some() || raw.from_cookies.is_some() || raw.from_params.is_some();
    match (any_configured, sources.is_empty()) {
        (false, _) => Ok(vec![TokenSource::authorization_bearer()]),
        (true, true) => Err(ConfigError::new(
            at("from_headers"),
            "from_headers, from_cookies and from_params are all empty: no token could ever be found",
        )),
        (true, false) => Ok(sources),
    }
}

#[inline(never)]
fn compile_forward(
    raw: &RawProvider,
    at: &dyn Fn(&str) -> String,
) -> Result<ForwardPolicy, ConfigError> {
    let writable = |name: &str, key: String| {
        if is_header_name(name) && !RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            Ok(name.to_ascii_lowercase())
        } else {
            Err(ConfigError::new(
                key,
                format!("{name:?} is not a header bearer-guard may write"),
            ))
        }
    };
    let payload_header = match &raw.forward_payload_header {
        None => None,
        Some(name) => Some(writable(name, at("forward_payload_header"))?),
    };
    let mut claim_headers = Vec::new();
    for (i, c) in raw.claim_to_headers.iter().flatten().enumerate() {
        let claim_path: Vec<String> = c.claim_name.split('.').map(str::to_owned).collect();
        if claim_path.iter().any(String::is_empty) {
            return Err(ConfigError::new(
                at(&format!("claim_to_headers[{i}].claim_name")),
                "must be a claim name, nested with dots (e.g. \"org.id\")",
            ));
        }
        claim_headers.push(ClaimHeader {
            claim_path,
            header: writable(
                &c.header_name,
                at(&format!("claim_to_headers[{i}].header_name")),
            )?,
        });
    }
    Ok(ForwardPolicy {
        forward: raw.forward,
        payload_header,
        claim_headers,
    })
}

/// Headers that routing or the connection depend on: never written from token claims.
const RESERVED_HEADERS: [&str; 9] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "cookie",
    "x-forwarded-for",
    "x-forwarded-proto",
];

/// `rules`, in their order (the first match wins).
#[inline(never)]
fn compile_rules(
    raw: Vec<RawRule>,
    providers: &[Provider],
    top_level: Mode,
    warnings: &mut Vec<String>,
) -> Result<Rules, ConfigError> {
    let rules = raw
        .into_iter()
        .enumerate()
        .map(|(i, rule)| compile_rule(rule, providers, &|key| format!("rules[{i}].{key}")))
        .collect::<Result<Vec<Rule>, ConfigError>>()?;
    warnings.extend(shadow_warnings(&rules, top_level));
    Ok(Rules::new(rules))
}

/// A shadowed rule that matches on request headers, ahead of an enforced rule: a client picks
/// its headers, so any client that sends them is judged by the shadowed rule (first match
/// wins) and its denial lets it through where the enforced rule would have refused it.
fn shadow_warnings(rules: &[Rule], top_level: Mode) -> Vec<String> {
    let enforced = |rule: &Rule| Mode::of(rule.mode, top_level) == Mode::Enforce;
    rules
        .iter()
        .enumerate()
        .filter(|(_, rule)| !enforced(rule) && !rule.headers.is_empty())
        .filter_map(|(i, _)| {
            let later = rules.iter().skip(i + 1).position(enforced)?;
            Some(format!(
                "rules[{i}] is shadowed and matches on request headers, ahead of the enforced \
                 rules[{}]: a client that sends those headers is only shadowed there (first \
                 match wins)",
                i + 1 + later
            ))
        })
        .collect()
}

/// `rules[i]`: its match (path, methods, headers), what it requires, and its scopes.
#[inline(never)]
fn compile_rule(
    rule: RawRule,
    providers: &[Provider],
    at: &dyn Fn(&str) -> String,
) -> Result<Rule, ConfigError> {
    let path = compile_path_match(
        rule.matcher.prefix,
        rule.matcher.path,
        rule.matcher.regex,
        at,
    )?;
    let methods = compile_methods(rule.matcher.methods, at)?;
    let requirement = match rule.requires {
        None => Requirement::Public,
        Some(requires) => compile_requirement(requires, providers, &at("requires"))?,
    };
    let mut headers = Vec::new();
    for (h, header) in rule.matcher.headers.into_iter().flatten().enumerate() {
        if !is_header_name(&header.name) {
            return Err(ConfigError::new(
                at(&format!("match.headers[{h}].name")),
                "must be a valid HTTP header name",
            ));
        }
        headers.push((header.name.to_ascii_lowercase(), header.exact));
    }
    let hosts = match rule.matcher.hosts {
        None => None,
        Some(patterns) => Some(
            Hosts::parse(&patterns)
                .map_err(|(h, why)| ConfigError::new(at(&format!("match.hosts[{h}]")), why))?,
        ),
    };
    let scopes = rule.scopes.unwrap_or_default();
    if scopes.iter().any(|s| s.is_empty() || s.contains(' ')) {
        return Err(ConfigError::new(
            at("scopes"),
            "scopes are non-empty and without spaces",
        ));
    }
    if !scopes.is_empty() && requirement == Requirement::Public {
        return Err(ConfigError::new(
            at("scopes"),
            "a public rule (no \"requires\") cannot require scopes",
        ));
    }
    Ok(Rule {
        path,
        methods,
        headers,
        hosts,
        requirement,
        scopes,
        mode: rule.mode,
    })
}

/// `match.prefix`, `match.path` or `match.regex`: exactly one, and a literal path is absolute.
fn compile_path_match(
    prefix: Option<String>,
    path: Option<String>,
    regex: Option<String>,
    at: &dyn Fn(&str) -> String,
) -> Result<PathMatch, ConfigError> {
    match (prefix, path, regex) {
        (Some(prefix), None, None) if prefix.starts_with('/') => Ok(PathMatch::Prefix(prefix)),
        (None, Some(path), None) if path.starts_with('/') => Ok(PathMatch::Exact(path)),
        (None, None, Some(regex)) => {
            PathMatch::regex(&regex).map_err(|e| ConfigError::new(at("match.regex"), e.to_string()))
        }
        (Some(_), None, None) => Err(ConfigError::new(
            at("match.prefix"),
            "must start with \"/\"",
        )),
        (None, Some(_), None) => Err(ConfigError::new(at("match.path"), "must start with \"/\"")),
        _ => Err(ConfigError::new(
            at("match"),
            "set exactly one of \"prefix\", \"path\" or \"regex\"",
        )),
    }
}

/// `match.methods`, upper-cased once here; absent means any method, empty is a mistake.
fn compile_methods(
    raw: Option<Vec<String>>,
    at: &dyn Fn(&str) -> String,
) -> Result<Option<Vec<String>>, ConfigError> {
    match raw {
        None => Ok(None),
        Some(methods) if methods.is_empty() => Err(ConfigError::new(
            at("match.methods"),
            "must not be empty when set",
        )),
        Some(methods) => {
            if let Some(bad) = methods.iter().find(|m| !is_token(m)) {
                return Err(ConfigError::new(
                    at("match.methods"),
                    format!("{bad:?} is not an HTTP method"),
                ));
            }
            Ok(Some(
                methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            ))
        }
    }
}

/// `requires` (jwt_authn's `JwtRequirement`): exactly one kind, nested for any/all.
fn compile_requirement(
    raw: RawRequires,
    providers: &[Provider],
    at: &str,
) -> Result<Requirement, ConfigError> {
    let provider_index = |name: &str, key: String| {
        providers
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| ConfigError::new(key, format!("no provider named {name:?}")))
    };
    let nested = |list: RawRequirementList, key: &str| -> Result<Vec<Requirement>, ConfigError> {
        if list.requirements.len() < 2 {
            return Err(ConfigError::new(
                format!("{at}.{key}.requirements"),
                "needs at least two requirements",
            ));
        }
        list.requirements
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                compile_requirement(r, providers, &format!("{at}.{key}.requirements[{i}]"))
            })
            .collect()
    };
    match (
        raw.provider_name,
        raw.provider_and_audiences,
        raw.requires_any,
        raw.requires_all,
        raw.allow_missing,
    ) {
        (Some(name), None, None, None, None) => Ok(Requirement::Provider {
            index: provider_index(&name, format!("{at}.provider_name"))?,
            audiences: None,
        }),
        (None, Some(pa), None, None, None) => Ok(Requirement::Provider {
            index: provider_index(&pa.provider_name, format!("{at}.provider_and_audiences.provider_name"))?,
            audiences: Some(pa.audiences),
        }),
        (None, None, Some(any), None, None) => Ok(Requirement::Any(nested(any, "requires_any")?)),
        (None, None, None, Some(all), None) => Ok(Requirement::All(nested(all, "requires_all")?)),
        (None, None, None, None, Some(_)) => Ok(Requirement::AllowMissing),
        _ => Err(ConfigError::new(
            at,
            "set exactly one of provider_name, provider_and_audiences, requires_any, requires_all, allow_missing",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;
    use serde_json::json;

    fn parse(value: serde_json::Value) -> Result<Configured, ConfigError> {
        Config::from_json(value.to_string().as_bytes())
    }

    #[test]
    fn minimal_provider_gets_documented_defaults() {
        let config = parse(json!({
            "providers": { "corp": { "issuer": "i", "local_jwks": testkit::jwks() } }
        }))
        .unwrap()
        .config;
        assert_eq!(config.realm, "bearer-guard");
        assert_eq!(config.jwt_cache_size, 1000);
        assert_eq!(config.crypto, CryptoMode::Auto);
        let p = &config.providers[0];
        assert_eq!(p.name, "corp");
        assert!(p.audiences.is_empty());
        assert_eq!(
            p.sources,
            vec![TokenSource::header("authorization", "Bearer ")]
        );
        assert_eq!(
            p.time,
            TimePolicy {
                clock_skew_seconds: 60,
                require_expiration: true,
                max_lifetime_seconds: None
            }
        );
        assert_eq!(p.keys.keys.len(), 5);
        assert_eq!(config.rules, Rules::require_any_provider());
    }

    #[test]
    fn jwks_as_inline_string_or_object() {
        let as_string = json!({ "inline_string": testkit::jwks().to_string() });
        let config = parse(testkit::config_json(
            json!({ "local_jwks": as_string }),
            None,
        ))
        .unwrap();
        assert_eq!(config.config.providers[0].keys.keys.len(), 5);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse(testkit::config_json(json!({ "audience": ["x"] }), None)).unwrap_err();
        assert_eq!(err.key, "providers.corp.audience");
        assert!(err.reason.contains("unknown field `audience`"), "{err}");
        let err = parse(json!({ "providers": {}, "extra": 1 })).unwrap_err();
        assert!(err.reason.contains("unknown field `extra`"), "{err}");
    }

    #[test]
    fn wrong_types_name_the_key() {
        let err = parse(testkit::config_json(
            json!({ "clock_skew_seconds": "60" }),
            None,
        ))
        .unwrap_err();
        assert_eq!(err.key, "providers.corp.clock_skew_seconds");
        let err = parse(testkit::config_json(
            json!({ "clock_skew_seconds": -1 }),
            None,
        ))
        .unwrap_err();
        assert_eq!(err.key, "providers.corp.clock_skew_seconds");
    }

    #[test]
    fn mode_is_enforce_by_default_and_a_rule_may_override_it() {
        let rule = |mode: Option<&str>| {
            let mut rule =
                json!({ "match": { "prefix": "/" }, "requires": { "provider_name": "corp" } });
            if let Some(mode) = mode {
                rule["mode"] = json!(mode);
            }
            rule
        };
        let plain = parse(testkit::config_json(json!({}), None)).unwrap().config;
        assert_eq!(plain.mode, Mode::Enforce);
        assert!(!plain.shadows());
        let rules = json!([rule(None), rule(Some("shadow")), rule(Some("enforce"))]);
        let config = parse(testkit::config_json(json!({}), Some(rules)))
            .unwrap()
            .config;
        assert_eq!(
            config.rules.modes().collect::<Vec<_>>(),
            [None, Some(Mode::Shadow), Some(Mode::Enforce)]
        );
        assert!(config.shadows());
        let mut top = testkit::config_json(json!({}), None);
        top["mode"] = json!("shadow");
        let top = parse(top).unwrap().config;
        assert_eq!(top.mode, Mode::Shadow);
        assert!(top.shadows());

        // A typo is an error naming the key, never a silent enforce (or shadow).
        let rules = json!([rule(None), rule(None), rule(Some("audit"))]);
        let err = parse(testkit::config_json(json!({}), Some(rules))).unwrap_err();
        assert_eq!(err.key, "rules[2].mode");
        assert!(err.reason.contains("enforce"), "{}", err.reason);
        let mut bad = testkit::config_json(json!({}), None);
        bad["mode"] = json!("Shadow");
        assert_eq!(parse(bad).unwrap_err().key, "mode");
    }

    #[test]
    fn a_shadowed_rule_on_request_headers_ahead_of_an_enforced_one_is_warned_about() {
        let rules = json!([
            { "match": { "prefix": "/", "headers": [{ "name": "x-canary", "exact": "1" }] },
              "requires": { "provider_name": "corp" }, "mode": "shadow" },
            { "match": { "prefix": "/beta" }, "requires": { "provider_name": "corp" }, "mode": "shadow" },
            { "match": { "prefix": "/" }, "requires": { "provider_name": "corp" } },
        ]);
        let warnings = parse(testkit::config_json(json!({}), Some(rules.clone())))
            .unwrap()
            .warnings;
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("rules[0] is shadowed"),
            "{warnings:?}"
        );
        assert!(warnings[0].contains("rules[2]"), "{warnings:?}");
        assert!(!warnings[0].contains("  "), "{warnings:?}");
        // Everything shadowed: nothing is enforced behind it.
        let mut all = testkit::config_json(json!({}), Some(rules));
        all["mode"] = json!("shadow");
        all["rules"][2]["mode"] = json!("shadow");
        assert!(parse(all).unwrap().warnings.is_empty());
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let cases = [
            (json!({ "providers": {} }), "providers"),
            (
                testkit::config_json(json!({ "issuer": "" }), None),
                "providers.corp.issuer",
            ),
            (
                testkit::config_json(json!({ "local_jwks": {} }), None),
                "providers.corp.local_jwks",
            ),
            (
                testkit::config_json(json!({ "local_jwks": { "keys": [] } }), None),
                "providers.corp.local_jwks",
            ),
            (
                testkit::config_json(json!({ "local_jwks": { "inline_string": "{" } }), None),
                "providers.corp.local_jwks.inline_string",
            ),
            (
                testkit::config_json(json!({ "from_headers": [{ "name": "bad header" }] }), None),
                "providers.corp.from_headers[0].name",
            ),
            (
                testkit::config_json(json!({}), Some(json!([{ "match": {} }]))),
                "rules[0].match",
            ),
            (
                testkit::config_json(json!({}), Some(json!([{ "match": { "regex": "/a(" } }]))),
                "rules[0].match.regex",
            ),
            (
                {
                    let mut config = testkit::config_json(json!({}), None);
                    config["stat_prefix"] = json!("a.b");
                    config
                },
                "stat_prefix",
            ),
            (
                testkit::config_json(
                    json!({}),
                    Some(json!([{ "match": { "prefix": "/", "hosts": ["a.com", "b.com:443"] } }])),
                ),
                "rules[0].match.hosts[1]",
            ),
            (
                testkit::config_json(json!({ "forward_payload_header": "Host" }), None),
                "providers.corp.forward_payload_header",
            ),
            (
                testkit::config_json(
                    json!({ "claim_to_headers": [{ "claim_name": "a..b", "header_name": "x-a" }] }),
                    None,
                ),
                "providers.corp.claim_to_headers[0].claim_name",
            ),
            (
                testkit::config_json(
                    json!({ "claim_to_headers": [{ "claim_name": "sub", "header_name": "authorization" }] }),
                    None,
                ),
                "providers.corp.claim_to_headers",
            ),
            (
                testkit::config_json(json!({ "from_headers": [], "from_cookies": [] }), None),
                "providers.corp.from_headers",
            ),
            (
                testkit::config_json(json!({ "algorithms": ["RS256", "none"] }), None),
                "providers.corp.algorithms[1]",
            ),
            (
                testkit::config_json(json!({ "subjects": { "exact": "a", "suffix": "b" } }), None),
                "providers.corp.subjects",
            ),
            (
                testkit::config_json(
                    json!({}),
                    Some(
                        json!([{ "match": { "prefix": "/" }, "requires": { "requires_any": { "requirements": [
                        { "provider_name": "corp" }, { "provider_name": "corp", "allow_missing": {} } ] } } }]),
                    ),
                ),
                "rules[0].requires.requires_any.requirements[1]",
            ),
            (
                testkit::config_json(
                    json!({}),
                    Some(
                        json!([{ "match": { "prefix": "/" }, "requires": { "requires_all": { "requirements": [
                        { "provider_name": "corp" } ] } } }]),
                    ),
                ),
                "rules[0].requires.requires_all.requirements",
            ),
            (
                testkit::config_json(
                    json!({}),
                    Some(json!([{ "match": { "prefix": "/" }, "scopes": ["a"] }])),
                ),
                "rules[0].scopes",
            ),
            (
                testkit::config_json(json!({}), Some(json!([{ "match": { "prefix": "x" } }]))),
                "rules[0].match.prefix",
            ),
            (
                testkit::config_json(
                    json!({}),
                    Some(
                        json!([{ "match": { "prefix": "/" }, "requires": { "provider_name": "nope" } }]),
                    ),
                ),
                "rules[0].requires.provider_name",
            ),
            (
                testkit::config_json(
                    json!({}),
                    Some(json!([{ "match": { "prefix": "/", "methods": ["GE T"] } }])),
                ),
                "rules[0].match.methods",
            ),
        ];
        for (config, key) in cases {
            let err = parse(config).unwrap_err();
            assert_eq!(err.key, key, "{err}");
        }
    }

    #[test]
    fn crypto_mode_and_cache_size() {
        let mut config = testkit::config_json(json!({}), None);
        config["crypto"] = json!("wasm");
        config["jwt_cache_size"] = json!(0);
        let parsed = parse(config.clone()).unwrap().config;
        assert_eq!(parsed.crypto, CryptoMode::Wasm);
        assert_eq!(parsed.jwt_cache_size, 0);
        config["crypto"] = json!("gpu");
        let err = parse(config).unwrap_err();
        assert_eq!(err.key, "crypto");
        assert!(err.reason.contains("unknown variant `gpu`"), "{err}");
    }

    #[test]
    fn not_json_at_all() {
        let err = Config::from_json(b"providers: {}").unwrap_err();
        assert!(
            err.to_string().starts_with("invalid configuration"),
            "{err}"
        );
    }

    #[test]
    fn unusable_keys_are_skipped_with_a_warning() {
        let mut jwks = testkit::jwks();
        jwks["keys"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB" }));
        jwks["keys"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "kty": "EC", "crv": "P-384", "x": "AA", "y": "AA" }));
        let configured = parse(testkit::config_json(json!({ "local_jwks": jwks }), None)).unwrap();
        assert_eq!(configured.config.providers[0].keys.keys.len(), 5);
        assert_eq!(configured.warnings.len(), 2, "{:?}", configured.warnings);
        assert!(configured.warnings[0].contains("key 5 skipped"));
    }

    #[test]
    fn one_provider_at_most_introspects() {
        let introspection =
            json!({ "cluster": "idp", "uri": "http://idp/i", "client_id": "proxy" });
        let err = parse(json!({ "providers": {
            "a": { "issuer": "a", "introspection": introspection },
            "b": { "issuer": "b", "introspection": introspection }
        }}))
        .unwrap_err();
        assert_eq!(err.key, "providers.b.introspection");
        let one = parse(json!({ "providers": {
            "a": { "issuer": "a", "introspection": introspection },
            "b": { "issuer": "b", "local_jwks": testkit::jwks() }
        }}))
        .unwrap()
        .config;
        assert_eq!(one.expiry_grace_seconds(), 600);
        let err = parse(json!({ "providers": { "a": { "issuer": "a" } } })).unwrap_err();
        assert_eq!(err.key, "providers.a.local_jwks");
    }
}
