//! `revocation.etcd`: where the mesh's revocations live (an etcd v3 cluster, reached through
//! an Envoy cluster that speaks HTTP/2 to its client port), parsed once into `EtcdConfig`.

use serde::Deserialize;

use crate::config::error::ConfigError;
use crate::revocation::config::{positive, timeout_ms, OnStale};

pub const DEFAULT_PREFIX: &str = "/bearer-guard/revoked/";
pub const DEFAULT_MAX_STALE_SECONDS: u64 = 300;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// The Envoy cluster of etcd's client port (HTTP/2: etcd speaks gRPC).
    pub cluster: String,
    /// Every revocation is one key under it; ends with `/`.
    pub prefix: String,
    /// For a `Range` page, a lease grant, a put; the watch itself has none.
    pub timeout_ms: u64,
    /// After this long without a completed read or a live watch, `on_stale` decides.
    pub max_stale_seconds: u64,
    pub on_stale: OnStale,
    /// etcd's own authentication (`Auth/Authenticate`), if enabled there.
    pub credentials: Option<Credentials>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// Never prints the password (config dumps and `Debug` of the whole config).
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The etcd revocation store (`revocation.etcd`).
#[derive(Deserialize)]
#[cfg_attr(
    feature = "cli",
    derive(schemars::JsonSchema),
    schemars(rename = "RevocationEtcd")
)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEtcd {
    /// Envoy cluster of etcd's client port; it must speak HTTP/2 (gRPC), e.g.
    /// `typed_extension_protocol_options` with `http2_protocol_options`. TLS is the
    /// cluster's `transport_socket`.
    cluster: String,
    /// Key prefix of the revocations (one key each: `jti/<id>`, `token/<hex>`, `sub/<sub>`,
    /// `issued_before`, and the same under `iss/<issuer>/`); must end with `/`.
    #[serde(default)]
    #[cfg_attr(feature = "cli", schemars(extend("default" = DEFAULT_PREFIX)))]
    prefix: Option<String>,
    /// Timeout of each call to etcd (a read page, a lease grant, a write); the watch stream
    /// has none.
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(
            range(min = 1),
            extend("default" = crate::revocation::config::DEFAULT_FETCH_TIMEOUT_MS)
        )
    )]
    timeout_ms: Option<u64>,
    /// After this long without a word from etcd (a completed read, or any answer on the
    /// watch, which is asked for progress when quiet), what is held is stale and `on_stale`
    /// decides (what is held stays enforced either way).
    #[serde(default)]
    #[cfg_attr(
        feature = "cli",
        schemars(range(min = 1), extend("default" = DEFAULT_MAX_STALE_SECONDS))
    )]
    max_stale_seconds: Option<u64>,
    /// Stale (or never read): `deny` answers an otherwise valid token with 503 +
    /// `Retry-After`; `allow` lets it through, counted and logged.
    #[serde(default)]
    #[cfg_attr(feature = "cli", schemars(extend("default" = "deny")))]
    on_stale: OnStale,
    /// etcd user (etcd's own authentication); with `password`.
    #[serde(default)]
    username: Option<String>,
    /// Its password; with `username`. Never logged.
    #[serde(default)]
    password: Option<String>,
}

pub(crate) fn compile_etcd(raw: RawEtcd) -> Result<EtcdConfig, ConfigError> {
    if raw.cluster.is_empty() {
        return Err(ConfigError::new(
            "revocation.etcd.cluster",
            "must not be empty",
        ));
    }
    let prefix = raw.prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
    if prefix.is_empty() || !prefix.ends_with('/') {
        return Err(ConfigError::new(
            "revocation.etcd.prefix",
            "must end with '/' (keys are <prefix>jti/<id>, ...)",
        ));
    }
    let credentials = match (raw.username, raw.password) {
        (None, None) => None,
        (Some(username), Some(password)) if !username.is_empty() => {
            Some(Credentials { username, password })
        }
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "revocation.etcd.username",
                "must not be empty",
            ))
        }
        (Some(_), None) => {
            return Err(ConfigError::new(
                "revocation.etcd.password",
                "is missing (username is set)",
            ))
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(
                "revocation.etcd.username",
                "is missing (password is set)",
            ))
        }
    };
    Ok(EtcdConfig {
        cluster: raw.cluster,
        prefix,
        timeout_ms: timeout_ms(raw.timeout_ms, "revocation.etcd.timeout_ms")?,
        max_stale_seconds: positive(
            raw.max_stale_seconds.unwrap_or(DEFAULT_MAX_STALE_SECONDS),
            "revocation.etcd.max_stale_seconds",
        )?,
        on_stale: raw.on_stale,
        credentials,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::revocation::config::{compile, OnStale};

    fn etcd(value: serde_json::Value) -> Result<super::EtcdConfig, String> {
        compile(json!({ "etcd": value }), &[])
            .map(|c| c.etcd.expect("etcd configured"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_errors_that_name_the_key() {
        let config = etcd(json!({ "cluster": "etcd" })).unwrap();
        assert_eq!(config.prefix, super::DEFAULT_PREFIX);
        assert_eq!((config.timeout_ms, config.max_stale_seconds), (5000, 300));
        assert_eq!(config.on_stale, OnStale::Deny);
        assert_eq!(config.credentials, None);
        let cases = [
            (json!({ "cluster": "" }), "revocation.etcd.cluster"),
            (
                json!({ "cluster": "e", "prefix": "/no-slash" }),
                "revocation.etcd.prefix",
            ),
            (
                json!({ "cluster": "e", "timeout_ms": 0 }),
                "revocation.etcd.timeout_ms",
            ),
            (
                json!({ "cluster": "e", "max_stale_seconds": 0 }),
                "revocation.etcd.max_stale_seconds",
            ),
            (
                json!({ "cluster": "e", "password": "p" }),
                "revocation.etcd.username",
            ),
            (
                json!({ "cluster": "e", "username": "u" }),
                "revocation.etcd.password",
            ),
            (
                json!({ "cluster": "e", "username": "", "password": "p" }),
                "revocation.etcd.username",
            ),
            (json!({ "cluster": "e", "on_stale": "maybe" }), "revocation"),
            (json!({ "cluster": "e", "endpoints": [] }), "revocation"),
        ];
        for (value, key) in cases {
            let error = etcd(value.clone()).expect_err(&value.to_string());
            assert!(error.contains(key), "{value}: {error}");
        }
        let with_user = etcd(json!({ "cluster": "e", "username": "u", "password": "s3cret" }));
        let debug = format!("{:?}", with_user.unwrap());
        assert!(!debug.contains("s3cret"), "{debug}");
    }
}
