//! The decision: the guard that allows or denies a request, its verified-token cache, the
//! decision it returns, and the request's header map.

pub mod cache;
pub mod decision;
pub mod guard;
pub mod header_map;
