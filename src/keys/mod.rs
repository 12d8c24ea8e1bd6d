//! Verification keys: JWKS parsing and fetching (directly, or where the provider's OpenID
//! discovery document says), decoded key material, and the host's signature verifier.

pub mod discovery;
pub mod fetch;
pub mod host_crypto;
pub mod jwks;
pub mod material;
