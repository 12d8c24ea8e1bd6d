//! The decision: the guard that allows or denies a request (`guard`), the pipeline one token
//! goes through (`pipeline`), what it holds between requests (`state`), its verified-token
//! cache, the decision it returns, what goes upstream, its trace, and the request's header map.

pub mod cache;
pub mod decision;
pub mod guard;
pub mod header_map;
pub mod pipeline;
#[cfg(test)]
mod shadow_tests;
pub mod state;
pub mod trace;
pub mod upstream;

#[cfg(test)]
mod companion_tests;
