//! The key layout of the etcd revocation store (to be written).
