//! bearer-guard: a proxy-wasm filter that verifies bearer JWTs in Envoy's request path.
//!
//! Everything but [`filter`] is a plain-Rust core with no host ABI: it parses configuration,
//! finds and verifies tokens, and returns a [`decision::Decision`]. [`filter`] is the only
//! module that talks to the proxy.

pub mod algorithm;
pub mod anomaly;
pub mod cache;
pub mod claims;
pub mod client_ip;
pub mod config;
pub mod config_error;
pub mod decision;
pub mod decision_log;
pub mod endpoint;
pub mod episode;
pub mod extract;
pub mod filter;
pub mod fingerprint;
pub mod forward;
pub mod guard;
pub mod header_map;
pub mod host_crypto;
pub mod introspection;
pub mod json_path;
pub mod jwks;
pub mod jwks_fetch;
pub mod key_material;
pub mod log_limit;
pub mod matcher;
pub mod revocation;
pub mod revocation_config;
pub mod revocation_doc;
pub mod revocation_learned;
pub mod revocation_list;
pub mod revocation_publish;
pub mod rules;
#[cfg(any(test, feature = "cli"))]
pub mod signing;
pub mod status_list;
pub mod token_id;
pub mod verify;

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(test)]
mod testkit;
