//! Tokens: finding the credential in a request, parsing a JWS, its algorithm and claims,
//! and the identity revocation knows it by.

pub mod algorithm;
pub mod base64url;
pub mod claims;
pub mod extract;
pub mod id;
pub mod jwt_authn;
pub mod scan;
pub mod verify;
