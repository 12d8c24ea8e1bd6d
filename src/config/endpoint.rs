//! HTTP endpoints reached through Envoy clusters (JWKS, lists, status lists, the identity
//! provider), and the confidential client the proxy is at an identity provider endpoint.

use serde::Deserialize;

use crate::config::error::ConfigError;

/// An IdP call's default timeout (introspection, RFC 7009 revocation).
pub const DEFAULT_TIMEOUT_MS: u64 = 1000;

/// An HTTP endpoint reached through an Envoy cluster: the cluster, and the `:authority` and
/// `:path` of the request, split from the configured `uri`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub cluster: String,
    pub authority: String,
    pub path: String,
}

/// `uri` -> authority and path; the reason on error, for the caller to name the key.
pub(crate) fn split_uri(cluster: &str, uri: &str) -> Result<Endpoint, &'static str> {
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))
        .ok_or("must start with https:// or http://")?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (
            rest.get(..slash).unwrap_or_default(),
            rest.get(slash..).unwrap_or("/"),
        ),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err("has no host");
    }
    Ok(Endpoint {
        cluster: cluster.to_owned(),
        authority: authority.to_owned(),
        path: path.to_owned(),
    })
}

/// How the proxy authenticates to the endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
}

/// A confidential client at an identity provider endpoint (introspection, RFC 7009 revocation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientEndpoint {
    pub endpoint: Endpoint,
    pub client_id: String,
    pub client_secret: String,
    pub auth: ClientAuth,
    pub timeout_ms: u64,
}

/// A confidential client at an IdP endpoint, as configured (introspection, `revocation.idp`).
pub(crate) struct RawClient {
    pub cluster: String,
    pub uri: String,
    pub client_id: String,
    pub client_secret: String,
    pub auth: ClientAuth,
    pub timeout_ms: Option<u64>,
}

pub(crate) fn compile_client(
    raw: RawClient,
    at: &dyn Fn(&str) -> String,
) -> Result<ClientEndpoint, ConfigError> {
    if raw.cluster.is_empty() {
        return Err(ConfigError::new(at("cluster"), "must not be empty"));
    }
    if raw.client_id.is_empty() {
        return Err(ConfigError::new(at("client_id"), "must not be empty"));
    }
    let endpoint = split_uri(&raw.cluster, &raw.uri).map_err(|r| ConfigError::new(at("uri"), r))?;
    let timeout_ms = raw.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if timeout_ms == 0 {
        return Err(ConfigError::new(at("timeout_ms"), "must be positive"));
    }
    Ok(ClientEndpoint {
        endpoint,
        client_id: raw.client_id,
        client_secret: raw.client_secret,
        auth: raw.auth,
        timeout_ms,
    })
}
