//! The etcd revocation store (issue 17, in progress; not configurable yet): the key layout
//! and values operators and proxies write under a prefix (`layout`), and etcd's v3 messages
//! for reading the prefix and watching it (`proto`).

pub mod layout;
pub mod proto;
