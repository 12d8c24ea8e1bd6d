//! The etcd revocation store: its config (`config`), the key layout and values operators and
//! proxies write under a prefix (`layout`), what a reader holds of the prefix (`held`), and
//! etcd's v3 messages (`proto`).

pub mod config;
pub mod held;
pub mod layout;
pub mod proto;
