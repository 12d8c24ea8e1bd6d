//! The sans-IO state machine that keeps a prefix of etcd in sync (to be written).
