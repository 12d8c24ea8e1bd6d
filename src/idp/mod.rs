//! Asking the identity provider: RFC 7662 introspection and Token Status Lists.

pub mod introspection;
pub mod status_list;
