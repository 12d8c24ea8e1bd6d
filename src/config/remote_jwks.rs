//! `providers.<name>.remote_jwks`: where a provider's JWKS is fetched (its own URI, or the
//! `jwks_uri` of the provider's OpenID Provider Configuration) and how often.

use serde::Deserialize;

use crate::config::endpoint::split_uri;
use crate::config::error::ConfigError;

pub const DEFAULT_JWKS_TIMEOUT_MS: u64 = 2000;
pub const DEFAULT_JWKS_CACHE_DURATION_SECONDS: u64 = 600;
pub const DEFAULT_JWKS_REFETCH_MIN_INTERVAL_SECONDS: u64 = 30;

/// Where and how often a provider's JWKS is fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    /// The cluster of the first GET (the JWKS's, or the discovery document's).
    pub cluster: String,
    /// `:authority` and `:path` of the first GET, from the configured `uri` or
    /// `discovery_uri`; `location` says which of the two it is.
    pub authority: String,
    pub path: String,
    pub location: JwksLocation,
    /// Each GET's timeout (with discovery, each of the two).
    pub timeout_ms: u64,
    pub cache_duration_seconds: u64,
    /// Unknown-`kid` refetches are at most this often per provider.
    pub refetch_min_interval_seconds: u64,
}

impl RemoteJwks {
    /// The cluster the JWKS itself is fetched through.
    pub fn jwks_cluster(&self) -> &str {
        match &self.location {
            JwksLocation::Direct => &self.cluster,
            JwksLocation::Discovery { jwks_cluster, .. } => jwks_cluster,
        }
    }
}

/// What the first GET of a JWKS fetch brings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksLocation {
    /// `uri`: the JWKS itself.
    Direct,
    /// `discovery_uri`: the provider's OpenID Provider Configuration (OpenID Connect
    /// Discovery 1.0 §4), whose `issuer` must be the provider's and whose `jwks_uri` is then
    /// fetched through `jwks_cluster`. `issuer`: the provider's (required with discovery).
    Discovery {
        jwks_cluster: String,
        issuer: String,
    },
}

/// A JWKS fetched through an Envoy cluster (`providers.<name>.remote_jwks`): exactly one of
/// `uri` (the JWKS) and `discovery_uri` (the OpenID Provider Configuration that names it).
#[derive(Deserialize)]
#[cfg_attr(
    feature = "cli",
    derive(schemars::JsonSchema),
    schemars(
        rename = "RemoteJwks",
        extend(
            "oneOf" = [{ "required": ["uri"] }, { "required": ["discovery_uri"] }],
            "dependentRequired" = { "jwks_cluster": ["discovery_uri"] }
        )
    )
)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRemoteJwks {
    /// Envoy cluster the JWKS (or, with `discovery_uri`, the discovery document) is fetched
    /// through (it must exist in Envoy's config).
    #[cfg_attr(feature = "cli", schemars(length(min = 1)))]
    cluster: String,
    /// `http(s)://host[:port]/path` of the JWKS: gives the fetch's `:authority` and `:path`.
    #[serde(default)]
    #[cfg_attr(feature = "cli", schemars(regex(pattern = r"^https?://[^/]+")))]
    uri: Option<String>,
    /// Instead of `uri`: `http(s)://host[:port]/path` of the provider's OpenID Provider
    /// Configuration (usually `<issuer>/.well-known/openid-configuration`). Its `issuer` must
    /// equal the provider's `issuer` exactly, else no keys are fetched; its `jwks_uri` gives
    /// the JWKS fetch's `:authority` and `:path`. Read again before every JWKS fetch.
    #[serde(default)]
    #[cfg_attr(feature = "cli", schemars(regex(pattern = r"^https?://[^/]+")))]
    discovery_uri: Option<String>,
    /// With `discovery_uri`: the Envoy cluster the JWKS at `jwks_uri` is fetched through, when
    /// it is served from elsewhere than the discovery document. Default: `cluster`.
    #[serde(default)]
    #[cfg_attr(feature = "cli", schemars(length(min = 1)))]
    jwks_cluster: Option<String>,
    /// Fetch timeout (with discovery, of each of the two GETs); a request waiting for keys
    /// waits at most this (+2 s).
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(range(min = 1), extend("default" = DEFAULT_JWKS_TIMEOUT_MS))
    )]
    timeout_ms: Option<u64>,
    /// Keys are refetched in the background when 90% of this old.
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(extend("default" = DEFAULT_JWKS_CACHE_DURATION_SECONDS))
    )]
    cache_duration_seconds: Option<u64>,
    /// A token with an unknown `kid` triggers a refetch at most this often per provider.
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(extend("default" = DEFAULT_JWKS_REFETCH_MIN_INTERVAL_SECONDS))
    )]
    refetch_min_interval_seconds: Option<u64>,
}

pub(crate) fn compile_remote_jwks(
    raw: RawRemoteJwks,
    issuer: Option<&str>,
    at: &dyn Fn(&str) -> String,
) -> Result<RemoteJwks, ConfigError> {
    if raw.cluster.is_empty() {
        return Err(ConfigError::new(
            at("remote_jwks.cluster"),
            "must not be empty",
        ));
    }
    let (key, uri, location) = locate(
        raw.uri,
        raw.discovery_uri,
        raw.jwks_cluster,
        &raw.cluster,
        issuer,
    )
    .map_err(|(key, reason)| ConfigError::new(at(key), reason))?;
    let endpoint =
        split_uri(&raw.cluster, &uri).map_err(|reason| ConfigError::new(at(key), reason))?;
    let timeout_ms = raw.timeout_ms.unwrap_or(DEFAULT_JWKS_TIMEOUT_MS);
    if timeout_ms == 0 {
        return Err(ConfigError::new(
            at("remote_jwks.timeout_ms"),
            "must be positive",
        ));
    }
    Ok(RemoteJwks {
        cluster: endpoint.cluster,
        authority: endpoint.authority,
        path: endpoint.path,
        location,
        timeout_ms,
        cache_duration_seconds: raw
            .cache_duration_seconds
            .unwrap_or(DEFAULT_JWKS_CACHE_DURATION_SECONDS)
            .max(1),
        refetch_min_interval_seconds: raw
            .refetch_min_interval_seconds
            .unwrap_or(DEFAULT_JWKS_REFETCH_MIN_INTERVAL_SECONDS),
    })
}

/// Which of `uri` and `discovery_uri` is set (exactly one), the key it is under, and what it
/// locates; on error, the key (below the provider) and why.
fn locate(
    uri: Option<String>,
    discovery_uri: Option<String>,
    jwks_cluster: Option<String>,
    cluster: &str,
    issuer: Option<&str>,
) -> Result<(&'static str, String, JwksLocation), (&'static str, &'static str)> {
    match (uri, discovery_uri) {
        (Some(_), Some(_)) => Err((
            "remote_jwks.discovery_uri",
            "set exactly one of \"uri\" and \"discovery_uri\"",
        )),
        (None, None) => Err((
            "remote_jwks.uri",
            "set exactly one of \"uri\" and \"discovery_uri\"",
        )),
        (Some(_), None) if jwks_cluster.is_some() => Err((
            "remote_jwks.jwks_cluster",
            "only with \"discovery_uri\" (with \"uri\", \"cluster\" fetches the JWKS)",
        )),
        (Some(uri), None) => Ok(("remote_jwks.uri", uri, JwksLocation::Direct)),
        (None, Some(_)) if jwks_cluster.as_deref() == Some("") => {
            Err(("remote_jwks.jwks_cluster", "must not be empty"))
        }
        (None, Some(uri)) => Ok((
            "remote_jwks.discovery_uri",
            uri,
            JwksLocation::Discovery {
                jwks_cluster: jwks_cluster.unwrap_or_else(|| cluster.to_owned()),
                issuer: issuer
                    .ok_or((
                        "issuer",
                        "required with remote_jwks.discovery_uri: the discovery document's \
                         issuer must equal it (OpenID Connect Discovery 1.0 §4.3)",
                    ))?
                    .to_owned(),
            },
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigError};
    use crate::testkit;
    use serde_json::{json, Value};

    fn remote(remote_jwks: Value) -> Result<RemoteJwks, ConfigError> {
        let config = json!({ "providers": { "idp": {
            "issuer": "https://idp.example.com", "remote_jwks": remote_jwks
        }}});
        let configured = Config::from_json(config.to_string().as_bytes())?;
        let provider = configured.config.providers.into_iter().next();
        Ok(provider.and_then(|p| p.remote_jwks).expect("a remote JWKS"))
    }

    fn error_key(remote_jwks: Value) -> String {
        remote(remote_jwks).expect_err("refused").key
    }

    #[test]
    fn uri_is_the_jwks_itself_with_documented_defaults() {
        let r = remote(json!({ "cluster": "idp", "uri": "https://idp.example.com/jwks" })).unwrap();
        assert_eq!(r.location, JwksLocation::Direct);
        assert_eq!(
            (r.cluster.as_str(), r.authority.as_str()),
            ("idp", "idp.example.com")
        );
        assert_eq!(r.path, "/jwks");
        assert_eq!(r.timeout_ms, DEFAULT_JWKS_TIMEOUT_MS);
        assert_eq!(
            r.cache_duration_seconds,
            DEFAULT_JWKS_CACHE_DURATION_SECONDS
        );
        assert_eq!(
            r.refetch_min_interval_seconds,
            DEFAULT_JWKS_REFETCH_MIN_INTERVAL_SECONDS
        );
    }

    #[test]
    fn discovery_uri_names_the_discovery_document_and_the_jwks_cluster() {
        let uri = "https://idp.example.com/.well-known/openid-configuration";
        let r = remote(json!({ "cluster": "idp", "discovery_uri": uri })).unwrap();
        assert_eq!(r.path, "/.well-known/openid-configuration");
        assert_eq!(
            r.location,
            JwksLocation::Discovery {
                jwks_cluster: "idp".into(),
                issuer: "https://idp.example.com".into(),
            },
            "the JWKS through the same cluster by default"
        );
        let r = remote(json!({ "cluster": "idp", "discovery_uri": uri, "jwks_cluster": "keys" }))
            .unwrap();
        assert_eq!(
            r.location,
            JwksLocation::Discovery {
                jwks_cluster: "keys".into(),
                issuer: "https://idp.example.com".into(),
            }
        );
        // The document's issuer must equal the provider's: a provider without one cannot use it.
        let config = json!({ "providers": { "idp": { "remote_jwks": {
            "cluster": "idp", "discovery_uri": uri } } } });
        let refused = Config::from_json(config.to_string().as_bytes()).expect_err("no issuer");
        assert_eq!(refused.key, "providers.idp.issuer");
    }

    #[test]
    fn exactly_one_of_uri_and_discovery_uri_and_jwks_cluster_only_with_discovery() {
        let uri = "https://idp.example.com/x";
        let cases = [
            (json!({ "cluster": "idp" }), "providers.idp.remote_jwks.uri"),
            (
                json!({ "cluster": "idp", "uri": uri, "discovery_uri": uri }),
                "providers.idp.remote_jwks.discovery_uri",
            ),
            (
                json!({ "cluster": "idp", "uri": uri, "jwks_cluster": "keys" }),
                "providers.idp.remote_jwks.jwks_cluster",
            ),
            (
                json!({ "cluster": "idp", "discovery_uri": uri, "jwks_cluster": "" }),
                "providers.idp.remote_jwks.jwks_cluster",
            ),
            (
                json!({ "cluster": "idp", "discovery_uri": "ftp://idp.example.com/x" }),
                "providers.idp.remote_jwks.discovery_uri",
            ),
            (
                json!({ "cluster": "idp", "discovery_uri": "https:///x" }),
                "providers.idp.remote_jwks.discovery_uri",
            ),
            (
                json!({ "cluster": "", "discovery_uri": uri }),
                "providers.idp.remote_jwks.cluster",
            ),
            (
                json!({ "cluster": "idp", "discovery_uri": 7 }),
                "providers.idp.remote_jwks.discovery_uri",
            ),
        ];
        for (remote_jwks, key) in cases {
            assert_eq!(error_key(remote_jwks.clone()), key, "{remote_jwks}");
        }
    }

    #[test]
    fn the_same_uri_as_a_jwks_or_as_a_discovery_document_is_not_the_same_trust_anchor() {
        let uri = "https://idp.example.com/keys";
        let config = json!({ "providers": {
            "a": { "issuer": testkit::ISSUER, "remote_jwks": { "cluster": "idp", "uri": uri } },
            "b": { "issuer": testkit::ISSUER,
                   "remote_jwks": { "cluster": "idp", "discovery_uri": uri } }
        }});
        let configured = Config::from_json(config.to_string().as_bytes()).unwrap();
        assert_eq!(configured.config.providers[0].revocation_scopes, ["a"]);
        let warnings = configured.warnings.join("\n");
        assert!(warnings.contains("different keys"), "{warnings}");
    }
}
