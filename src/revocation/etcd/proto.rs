//! etcd v3's KV and Watch messages (to be written).
