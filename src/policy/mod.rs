//! Route policy: rules and their matchers (paths, methods, headers, hosts), enforce or shadow, what goes upstream, and the client address.

pub mod client_ip;
pub mod forward;
pub mod hosts;
pub mod matcher;
pub mod mode;
pub mod rules;
