//! Verification keys: JWKS parsing and fetching, decoded key material, and the host's
//! signature verifier.

pub mod fetch;
pub mod host_crypto;
pub mod jwks;
pub mod material;
