//! Route policy: rules and their matchers, what goes upstream, and the client address.

pub mod client_ip;
pub mod forward;
pub mod matcher;
pub mod rules;
