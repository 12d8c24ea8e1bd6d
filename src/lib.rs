//! bearer-guard: a proxy-wasm filter that verifies bearer JWTs in Envoy's request path.
//!
//! Everything but [`filter`] is a plain-Rust core with no host ABI: it parses configuration,
//! finds and verifies tokens, and returns a [`decide::decision::Decision`]. [`filter`] is the
//! only module that talks to the proxy.

pub mod config;
pub mod decide;
pub mod filter;
pub mod idp;
pub mod keys;
pub mod mix;
pub mod observe;
pub mod percent;
pub mod policy;
pub mod remote;
pub mod revocation;
#[cfg(any(test, feature = "cli"))]
pub mod signing;
pub mod token;

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(test)]
mod testkit;
