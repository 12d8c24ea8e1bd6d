//! The etcd cluster the revocation store's tests run against (issue 17): three real etcd
//! members on free loopback ports, each stopped by pid and its data removed, also when a test
//! fails (the Envoy tests of `revocation.etcd` are `tests/etcd.rs`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use support::etcd::EtcdCluster;

const PREFIX: &str = "/bearer-guard/revoked/";

#[test]
fn the_harness_starts_a_three_member_cluster_and_reads_back_what_it_writes() {
    let mut etcd = EtcdCluster::start(3);
    let ports = etcd.client_ports();
    assert_eq!(ports.len(), 3);
    let key = format!("{PREFIX}jti/harness");
    etcd.put(&key, "{}");
    assert_eq!(etcd.get(&key).as_deref(), Some("{}"));
    etcd.put(&key, "not json");
    assert_eq!(etcd.get(&key).as_deref(), Some("not json"));
    // A key whose value is empty, and values starting with `-`, are written as given.
    etcd.put(&format!("{PREFIX}jti/empty"), "");
    assert_eq!(etcd.get(&format!("{PREFIX}jti/empty")).as_deref(), Some(""));
    etcd.put(&format!("{PREFIX}issued_before"), "-1");
    assert_eq!(
        etcd.get(&format!("{PREFIX}issued_before")).as_deref(),
        Some("-1")
    );
    assert!(etcd.del(&key));
    assert!(!etcd.del(&key));
    assert_eq!(etcd.get(&key), None);
    // One member down: the other two still make a quorum.
    etcd.stop_member(0);
    etcd.put(&key, "{}");
    assert_eq!(etcd.get(&key).as_deref(), Some("{}"));
    // All down, then back from their data.
    etcd.stop_all();
    etcd.restart_all();
    assert_eq!(etcd.get(&key).as_deref(), Some("{}"));
    let dir = etcd.dir().to_path_buf();
    assert!(dir.exists());
    drop(etcd);
    assert!(!dir.exists(), "{} was not removed", dir.display());
    for port in ports {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "a member still listens on {port}"
        );
    }
}
