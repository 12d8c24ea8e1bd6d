//! The `revocation` config key: static entries, the revocation header, the polled list and
//! the publish endpoint, parsed once into ready-to-use values.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::endpoint::{
    compile_client, split_uri, ClientAuth, ClientEndpoint, Endpoint, RawClient,
};
use crate::config::error::ConfigError;
use crate::revocation::doc::{self, Source};
use crate::revocation::etcd::config::{compile_etcd, EtcdConfig, RawEtcd};
use crate::revocation::learned::HeaderPolicy;
use crate::revocation::set::RevocationSet;

pub const DEFAULT_RESPONSE_HEADER: &str = "x-revoke-token";
pub const DEFAULT_LIST_REFRESH_SECONDS: u64 = 30;
pub const DEFAULT_LIST_MAX_STALE_SECONDS: u64 = 300;
pub const DEFAULT_FETCH_TIMEOUT_MS: u64 = 5000;
pub const DEFAULT_PUBLISH_QUEUE_SIZE: usize = 10_000;
pub const DEFAULT_PUBLISH_MAX_ATTEMPTS: u32 = 20;

/// What to do with an otherwise valid token while the list cannot be relied on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum OnStale {
    /// 503 with Retry-After: fail closed.
    #[default]
    Deny,
    /// Let it through, counted and logged.
    Allow,
}

#[derive(Debug, Clone)]
pub struct RevocationConfig {
    /// Entries from the config itself.
    pub static_set: RevocationSet,
    /// Lower-case name of the upstream response header that revokes; `None`: disabled.
    pub response_header: Option<String>,
    /// Which of its directives upstreams may use (`response_header_directives`); the skew and
    /// lifetime fields are filled from the providers by the config's compile step.
    pub header_policy: HeaderPolicy,
    pub list: Option<ListConfig>,
    pub publish: Option<PublishConfig>,
    /// RFC 7009: header-triggered revocations of a token are also sent to the IdP.
    pub idp: Option<IdpRevocation>,
    /// Token Status List: tokens with a `status.status_list` claim are checked against it.
    pub status_list: Option<StatusListConfig>,
    /// The etcd store: read, watched, and written with every revocation learned here.
    pub etcd: Option<EtcdConfig>,
    /// Changing it clears what was learned at run time (the revocation header, misuse detection)
    /// on the next configure; the polled list is the list service's and is kept.
    pub learned_generation: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListConfig {
    pub endpoint: Endpoint,
    pub timeout_ms: u64,
    pub refresh_seconds: u64,
    pub max_stale_seconds: u64,
    pub on_stale: OnStale,
    /// A whole list may drop held entries whose token is still valid (un-revoke them).
    pub allow_removal: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishConfig {
    pub endpoint: Endpoint,
    pub timeout_ms: u64,
    pub queue_size: usize,
    pub max_attempts: u32,
}

pub const DEFAULT_STATUS_LIST_TTL_SECONDS: u64 = 300;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusListConfig {
    /// Status list URI authority -> Envoy cluster. Lists anywhere else are never fetched.
    pub clusters: Vec<(String, String)>,
    pub timeout_ms: u64,
    /// Cache time for a list token without `ttl` (and the bound on a `ttl`).
    pub default_ttl_seconds: u64,
    /// A list not refreshed this long after it was due is stale.
    pub max_stale_seconds: u64,
    pub on_stale: OnStale,
}

impl StatusListConfig {
    /// The cluster for a status list URI, and its `:authority` and `:path`.
    pub fn endpoint(&self, uri: &str) -> Option<Endpoint> {
        let authority = split_uri("-", uri).ok()?.authority;
        let cluster = self.clusters.iter().find(|(a, _)| *a == authority)?;
        split_uri(&cluster.1, uri).ok()
    }
}

/// Token Status List (`revocation.status_list`).
#[derive(Deserialize)]
#[cfg_attr(
    feature = "cli",
    derive(schemars::JsonSchema),
    schemars(rename = "StatusList")
)]
#[serde(deny_unknown_fields)]
struct RawStatusList {
    /// Status list URI authority -> Envoy cluster: the only places lists are fetched from. A
    /// token whose `status.status_list.uri` is elsewhere is refused.
    #[cfg_attr(feature = "cli", schemars(extend("minProperties" = 1)))]
    clusters: std::collections::BTreeMap<String, String>,
    /// Fetch timeout.
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(range(min = 1), extend("default" = DEFAULT_FETCH_TIMEOUT_MS))
    )]
    timeout_ms: Option<u64>,
    /// Refetch period of a list token without `ttl` (with `ttl`: `ttl`, at most a day).
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(range(min = 1), extend("default" = DEFAULT_STATUS_LIST_TTL_SECONDS))
    )]
    default_ttl_seconds: Option<u64>,
    /// A list not refreshed this long after it was due (or past its `exp`) is stale.
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(extend("default" = DEFAULT_LIST_MAX_STALE_SECONDS))
    )]
    max_stale_seconds: Option<u64>,
    /// As `list.on_stale`, for tokens whose status list is stale or was never fetched.
    #[serde(default)]
    #[cfg_attr(feature = "cli", schemars(extend("default" = "deny")))]
    on_stale: OnStale,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpRevocation {
    pub client: ClientEndpoint,
    pub queue_size: usize,
    pub max_attempts: u32,
}

/// RFC 7009 revocation at the IdP (`revocation.idp`): a token revoked by `self` in the
/// revocation header is also revoked there. Requires `response_header`.
#[derive(Deserialize)]
#[cfg_attr(
    feature = "cli",
    derive(schemars::JsonSchema),
    schemars(rename = "IdpRevocation")
)]
#[serde(deny_unknown_fields)]
struct RawIdp {
    /// Envoy cluster of the endpoint.
    cluster: String,
    /// `http(s)://host[:port]/path` of the RFC 7009 endpoint.
    uri: String,
    /// The proxy's client at the IdP.
    client_id: String,
    #[serde(default)]
    client_secret: String,
    /// How the client authenticates (RFC 6749 §2.3.1).
    #[serde(default)]
    #[cfg_attr(feature = "cli", schemars(extend("default" = "client_secret_basic")))]
    auth: ClientAuth,
    /// Call timeout.
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(
            range(min = 1),
            extend("default" = crate::config::endpoint::DEFAULT_TIMEOUT_MS)
        )
    )]
    timeout_ms: Option<u64>,
    /// Tokens waiting to be sent per worker (the oldest is dropped when full).
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(range(min = 1), extend("default" = DEFAULT_PUBLISH_QUEUE_SIZE))
    )]
    queue_size: Option<usize>,
    /// Attempts per token (backoff 1 ... 30 s).
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(range(min = 1), extend("default" = DEFAULT_PUBLISH_MAX_ATTEMPTS))
    )]
    max_attempts: Option<u32>,
}

#[derive(Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawOptions {
    /// Upstream response header that revokes (`self`, `jti=<id>`, `sub=<subject>`); `null`
    /// disables it. Removed from every response and every incoming request.
    // Absent: the default name; `null`: disabled (so `null` must not read as absent).
    #[serde(default, deserialize_with = "present_value")]
    #[cfg_attr(
        feature = "cli",
        schemars(
            schema_with = "header_or_null",
            extend("default" = DEFAULT_RESPONSE_HEADER)
        )
    )]
    response_header: Option<Value>,
    /// What upstreams may revoke through `response_header`: `self` (the token that authorized
    /// the request), `jti` (any token of that issuer with the given `jti`), `sub` (every token
    /// of the subject issued so far). Least privilege by default: an upstream can end the
    /// session it served, not anybody else's.
    #[serde(default)]
    #[cfg_attr(feature = "cli", schemars(extend("default" = ["self"])))]
    response_header_directives: Option<Vec<HeaderDirective>>,
    /// The polled revocation list.
    #[serde(default)]
    list: Option<RawList>,
    /// Where every header-triggered revocation is POSTed, so other proxies see it at their
    /// next poll. Requires `response_header`.
    #[serde(default)]
    publish: Option<RawPublish>,
    /// Revocations learned at run time survive a config reload; change this number to clear
    /// them.
    #[serde(default)]
    learned_generation: u64,
    #[serde(default)]
    idp: Option<RawIdp>,
    #[serde(default)]
    status_list: Option<RawStatusList>,
    /// The mesh's revocation store: an etcd v3 cluster, read once, then watched.
    #[serde(default)]
    etcd: Option<RawEtcd>,
}

/// The polled revocation list (`revocation.list`).
#[derive(Deserialize)]
#[cfg_attr(
    feature = "cli",
    derive(schemars::JsonSchema),
    schemars(rename = "RevocationList")
)]
#[serde(deny_unknown_fields)]
struct RawList {
    /// Envoy cluster of the revocation list service.
    cluster: String,
    /// `http(s)://host[:port]/path`: gives the poll's `:authority` and `:path`.
    uri: String,
    /// Poll timeout.
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(range(min = 1), extend("default" = DEFAULT_FETCH_TIMEOUT_MS))
    )]
    timeout_ms: Option<u64>,
    /// Poll period.
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(range(min = 1), extend("default" = DEFAULT_LIST_REFRESH_SECONDS))
    )]
    refresh_seconds: Option<u64>,
    /// After this long without a successful poll (200 or 304) the list is stale; at least
    /// `refresh_seconds`.
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(extend("default" = DEFAULT_LIST_MAX_STALE_SECONDS))
    )]
    max_stale_seconds: Option<u64>,
    /// Stale (or never fetched) list: `deny` answers an otherwise valid token with 503 +
    /// `Retry-After`; `allow` lets it through, counted and logged.
    #[serde(default)]
    #[cfg_attr(feature = "cli", schemars(extend("default" = "deny")))]
    on_stale: OnStale,
    /// `false`: a whole list that leaves out revoked entries whose token may still be valid
    /// (no `exp`, or not yet past it) does not un-revoke them (a rolled-back or stale list
    /// service; counted as `revocation.list_rollback`). `true`: the list service may
    /// un-revoke by leaving an entry out.
    #[serde(default)]
    #[cfg_attr(feature = "cli", schemars(extend("default" = false)))]
    allow_removal: bool,
}

/// Publishing learned revocations (`revocation.publish`).
#[derive(Deserialize)]
#[cfg_attr(
    feature = "cli",
    derive(schemars::JsonSchema),
    schemars(rename = "RevocationPublish")
)]
#[serde(deny_unknown_fields)]
struct RawPublish {
    /// Envoy cluster of the list service.
    cluster: String,
    /// `http(s)://host[:port]/path` the entries are POSTed to.
    uri: String,
    /// POST timeout.
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(range(min = 1), extend("default" = DEFAULT_FETCH_TIMEOUT_MS))
    )]
    timeout_ms: Option<u64>,
    /// Entries waiting to be published, per worker; when full the oldest is dropped.
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(range(min = 1), extend("default" = DEFAULT_PUBLISH_QUEUE_SIZE))
    )]
    queue_size: Option<usize>,
    /// Attempts per batch (backoff 1, 2, 4, ... 30 s) before it is dropped.
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(range(min = 1), extend("default" = DEFAULT_PUBLISH_MAX_ATTEMPTS))
    )]
    max_attempts: Option<u32>,
}

/// The `revocation` object for the JSON Schema: the options above and, beside them, static
/// entries in the revocation document's shape (which `compile` splits off and streams).
#[cfg(feature = "cli")]
#[derive(schemars::JsonSchema)]
#[schemars(rename = "Revocation", deny_unknown_fields)]
#[allow(dead_code)] // describes a shape; never built
pub(crate) struct RevocationSchema {
    #[schemars(flatten)]
    options: RawOptions,
    #[schemars(flatten)]
    entries: doc::schema::Entries,
    /// The same entries, scoped to one provider (`jti` and `sub` are only unique per
    /// issuer). Names must be configured providers.
    providers: Option<std::collections::BTreeMap<String, doc::schema::Entries>>,
}

/// `response_header`: a name, or `null` (which the schema's Option clean-up must not drop).
#[cfg(feature = "cli")]
fn header_or_null(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "oneOf": [{ "type": "string" }, { "type": "null" }] })
}

fn present_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

const OPTION_KEYS: [&str; 8] = [
    "response_header",
    "response_header_directives",
    "list",
    "publish",
    "learned_generation",
    "idp",
    "status_list",
    "etcd",
];

/// `provider_names`: the configured providers, which scoped entries must name.
pub fn compile(value: Value, provider_names: &[&str]) -> Result<RevocationConfig, ConfigError> {
    let Value::Object(mut object) = value else {
        return Err(ConfigError::new("revocation", "must be an object"));
    };
    let mut options = Map::new();
    for key in OPTION_KEYS {
        if let Some(v) = object.remove(key) {
            options.insert(key.to_owned(), v);
        }
    }
    let raw: RawOptions = serde_json::from_value(Value::Object(options))
        .map_err(|e| ConfigError::new("revocation", e.to_string()))?;
    let static_set = compile_static_entries(object, provider_names)?;
    let response_header = compile_response_header(raw.response_header)?;
    let header_policy = header_policy(raw.response_header_directives.as_deref());
    let list = raw.list.map(compile_list).transpose()?;
    let publish = raw.publish.map(compile_publish).transpose()?;
    let idp = raw.idp.map(compile_idp).transpose()?;
    let status_list = raw.status_list.map(compile_status_list).transpose()?;
    let etcd = raw.etcd.map(compile_etcd).transpose()?;
    if idp.is_some() && response_header.is_none() {
        return Err(ConfigError::new(
            "revocation.idp",
            "forwards what the response header revokes, but response_header is disabled",
        ));
    }
    if publish.is_some() && response_header.is_none() {
        return Err(ConfigError::new(
            "revocation.publish",
            "publishes what the response header revokes, but response_header is disabled",
        ));
    }
    Ok(RevocationConfig {
        static_set,
        response_header,
        header_policy,
        list,
        publish,
        idp,
        status_list,
        etcd,
        learned_generation: raw.learned_generation,
    })
}

/// What is left of `revocation` once the options are taken out: static entries, in the
/// revocation document's shape, whose provider scopes must be configured providers.
fn compile_static_entries(
    entries: Map<String, Value>,
    provider_names: &[&str],
) -> Result<RevocationSet, ConfigError> {
    // Static entries never expire by `exp` here: the config has no clock.
    let parsed = doc::parse_value(&Value::Object(entries), Source::Config, i64::MIN)
        .map_err(|e| ConfigError::new("revocation", e))?;
    let static_set = parsed.builder.build("", "");
    for scope in parsed
        .scopes
        .iter()
        .map(String::as_str)
        .chain(static_set.cutoff_scopes())
        .filter(|s| !s.is_empty())
    {
        if !provider_names.contains(&scope) {
            return Err(ConfigError::new(
                format!("revocation.providers.{scope}"),
                "names no configured provider",
            ));
        }
    }
    Ok(static_set)
}

/// `response_header`: absent is the default name, `null` disables it, else a lower-cased
/// header name (not a pseudo-header).
fn compile_response_header(raw: Option<Value>) -> Result<Option<String>, ConfigError> {
    match raw {
        None => Ok(Some(DEFAULT_RESPONSE_HEADER.to_owned())),
        Some(Value::Null) => Ok(None),
        Some(Value::String(name))
            if crate::token::extract::is_header_name(&name) && !name.starts_with(':') =>
        {
            Ok(Some(name.to_ascii_lowercase()))
        }
        Some(_) => Err(ConfigError::new(
            "revocation.response_header",
            "must be a header name, or null to disable",
        )),
    }
}

/// `revocation.list`: the poll's endpoint and timing; stale no sooner than one poll period.
fn compile_list(l: RawList) -> Result<ListConfig, ConfigError> {
    let refresh_seconds = positive(
        l.refresh_seconds.unwrap_or(DEFAULT_LIST_REFRESH_SECONDS),
        "revocation.list.refresh_seconds",
    )?;
    let max_stale_seconds = l
        .max_stale_seconds
        .unwrap_or(DEFAULT_LIST_MAX_STALE_SECONDS);
    if max_stale_seconds < refresh_seconds {
        return Err(ConfigError::new(
            "revocation.list.max_stale_seconds",
            "must be at least refresh_seconds",
        ));
    }
    Ok(ListConfig {
        endpoint: endpoint(&l.cluster, &l.uri, "revocation.list")?,
        timeout_ms: timeout_ms(l.timeout_ms, "revocation.list.timeout_ms")?,
        refresh_seconds,
        max_stale_seconds,
        on_stale: l.on_stale,
        allow_removal: l.allow_removal,
    })
}

/// `revocation.publish`: where learned revocations are POSTed, and its outgoing queue.
fn compile_publish(p: RawPublish) -> Result<PublishConfig, ConfigError> {
    Ok(PublishConfig {
        endpoint: endpoint(&p.cluster, &p.uri, "revocation.publish")?,
        timeout_ms: timeout_ms(p.timeout_ms, "revocation.publish.timeout_ms")?,
        queue_size: queue_size(p.queue_size, "revocation.publish.queue_size")?,
        max_attempts: max_attempts(p.max_attempts),
    })
}

/// `revocation.idp`: the RFC 7009 client, and its outgoing queue.
fn compile_idp(i: RawIdp) -> Result<IdpRevocation, ConfigError> {
    Ok(IdpRevocation {
        client: compile_client(
            RawClient {
                cluster: i.cluster,
                uri: i.uri,
                client_id: i.client_id,
                client_secret: i.client_secret,
                auth: i.auth,
                timeout_ms: i.timeout_ms,
            },
            &|key| format!("revocation.idp.{key}"),
        )?,
        queue_size: queue_size(i.queue_size, "revocation.idp.queue_size")?,
        max_attempts: max_attempts(i.max_attempts),
    })
}

/// `revocation.status_list`: the authorities lists may be fetched from (nothing else is
/// fetched), and their timing.
fn compile_status_list(s: RawStatusList) -> Result<StatusListConfig, ConfigError> {
    if s.clusters.is_empty() {
        return Err(ConfigError::new(
            "revocation.status_list.clusters",
            "must map at least one status list authority to a cluster",
        ));
    }
    if let Some((authority, _)) = s
        .clusters
        .iter()
        .find(|(a, c)| a.is_empty() || c.is_empty())
    {
        return Err(ConfigError::new(
            format!("revocation.status_list.clusters.{authority}"),
            "authority and cluster must not be empty",
        ));
    }
    Ok(StatusListConfig {
        clusters: s.clusters.into_iter().collect(),
        timeout_ms: timeout_ms(s.timeout_ms, "revocation.status_list.timeout_ms")?,
        default_ttl_seconds: positive(
            s.default_ttl_seconds
                .unwrap_or(DEFAULT_STATUS_LIST_TTL_SECONDS),
            "revocation.status_list.default_ttl_seconds",
        )?,
        max_stale_seconds: s
            .max_stale_seconds
            .unwrap_or(DEFAULT_LIST_MAX_STALE_SECONDS),
        on_stale: s.on_stale,
    })
}

/// A directive of the revocation response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum HeaderDirective {
    #[serde(rename = "self")]
    SelfToken,
    Jti,
    Sub,
}

/// `None` (absent): `self` only.
fn header_policy(directives: Option<&[HeaderDirective]>) -> HeaderPolicy {
    let Some(directives) = directives else {
        return HeaderPolicy::self_only();
    };
    HeaderPolicy {
        allow_self: directives.contains(&HeaderDirective::SelfToken),
        allow_jti: directives.contains(&HeaderDirective::Jti),
        allow_sub: directives.contains(&HeaderDirective::Sub),
        ..HeaderPolicy::self_only()
    }
}

/// An outgoing queue's attempts per batch: the default when unset, at least one.
fn max_attempts(configured: Option<u32>) -> u32 {
    configured.unwrap_or(DEFAULT_PUBLISH_MAX_ATTEMPTS).max(1)
}

fn queue_size(configured: Option<usize>, key: &str) -> Result<usize, ConfigError> {
    match configured {
        Some(0) => Err(ConfigError::new(key, "must be positive")),
        Some(size) => Ok(size),
        None => Ok(DEFAULT_PUBLISH_QUEUE_SIZE),
    }
}

/// A poll, POST or fetch timeout: the default when unset, never zero.
pub(crate) fn timeout_ms(configured: Option<u64>, key: &str) -> Result<u64, ConfigError> {
    positive(configured.unwrap_or(DEFAULT_FETCH_TIMEOUT_MS), key)
}

pub(crate) fn positive(value: u64, key: &str) -> Result<u64, ConfigError> {
    if value == 0 {
        return Err(ConfigError::new(key, "must be positive"));
    }
    Ok(value)
}

fn endpoint(cluster: &str, uri: &str, key: &str) -> Result<Endpoint, ConfigError> {
    if cluster.is_empty() {
        return Err(ConfigError::new(
            format!("{key}.cluster"),
            "must not be empty",
        ));
    }
    split_uri(cluster, uri).map_err(|reason| ConfigError::new(format!("{key}.uri"), reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::set::Probe;
    use serde_json::json;

    fn compile_json(value: Value) -> Result<RevocationConfig, ConfigError> {
        compile(value, &["corp", "partner"])
    }

    #[test]
    fn defaults() {
        let config = compile_json(json!({})).unwrap();
        assert_eq!(config.response_header.as_deref(), Some("x-revoke-token"));
        assert!(config.list.is_none() && config.publish.is_none());
        assert!(config.static_set.is_empty());
        assert_eq!(config.learned_generation, 0);
        let config = compile_json(json!({
            "list": { "cluster": "rev", "uri": "http://rev/v1/list" },
            "publish": { "cluster": "rev", "uri": "http://rev/v1/list" }
        }))
        .unwrap();
        let list = config.list.unwrap();
        assert_eq!(
            (
                list.refresh_seconds,
                list.max_stale_seconds,
                list.timeout_ms,
                list.on_stale
            ),
            (30, 300, 5000, OnStale::Deny)
        );
        assert_eq!(list.endpoint.authority, "rev");
        assert_eq!(list.endpoint.path, "/v1/list");
        let publish = config.publish.unwrap();
        assert_eq!((publish.queue_size, publish.max_attempts), (10_000, 20));
    }

    #[test]
    fn static_entries_and_scopes() {
        let config = compile_json(json!({
            "jti": ["j1"],
            "subjects": { "alice": 100 },
            "issued_before": 50,
            "providers": { "corp": { "jti": ["j2"] } },
            "response_header": "X-Logout",
        }))
        .unwrap();
        let set = &config.static_set;
        assert!(set.revokes(&Probe::new("partner", Some("j1"), None, Some(60), None)));
        assert!(set.revokes(&Probe::new("corp", Some("j2"), None, Some(60), None)));
        assert!(!set.revokes(&Probe::new("partner", Some("j2"), None, Some(60), None)));
        assert!(set.revokes(&Probe::new("x", None, None, Some(50), None)));
        assert_eq!(config.response_header.as_deref(), Some("x-logout"));
        assert!(compile_json(json!({ "response_header": null }))
            .unwrap()
            .response_header
            .is_none());
    }

    #[test]
    fn errors_name_the_key() {
        let key = |value: Value| compile_json(value).unwrap_err().key;
        assert_eq!(
            key(json!({ "providers": { "nope": { "jti": ["x"] } } })),
            "revocation.providers.nope"
        );
        assert_eq!(key(json!({ "jti": "x" })), "revocation");
        assert_eq!(
            key(json!({ "response_header": 5 })),
            "revocation.response_header"
        );
        assert_eq!(
            key(json!({ "list": { "cluster": "c", "uri": "ftp://x" } })),
            "revocation.list.uri"
        );
        assert_eq!(
            key(
                json!({ "list": { "cluster": "c", "uri": "http://x/", "refresh_seconds": 60, "max_stale_seconds": 10 } })
            ),
            "revocation.list.max_stale_seconds"
        );
        assert_eq!(
            key(json!({ "list": { "cluster": "", "uri": "http://x/" } })),
            "revocation.list.cluster"
        );
        assert_eq!(
            key(
                json!({ "response_header": null, "publish": { "cluster": "c", "uri": "http://x/" } })
            ),
            "revocation.publish"
        );
        let err = compile_json(
            json!({ "list": { "cluster": "c", "uri": "http://x/", "on_stale": "maybe" } }),
        )
        .unwrap_err();
        assert!(err.reason.contains("unknown variant `maybe`"), "{err}");
        assert!(compile_json(json!([])).is_err());
    }
}
