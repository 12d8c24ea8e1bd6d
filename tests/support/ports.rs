//! Loopback ports for servers that must be told their port before they bind it (etcd members,
//! Envoy listeners written into a config, a registry).
//!
//! Chosen below the kernel's ephemeral range. A port taken from that range (bind to 0, then
//! release) can become any outgoing connection's source port before the server binds it: an
//! Envoy listener's port was once taken so while probes connected every 20 ms. Outside the
//! range only an explicit bind can take it, and this process never hands a port out twice.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::BuildHasher;
use std::net::TcpListener;
use std::sync::Mutex;

/// Below this, ports are left to well-known services.
const LOWEST: u16 = 10_000;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// The low end of the kernel's ephemeral range (`ip_local_port_range`), 32768 if unreadable.
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// `n` distinct loopback ports that nothing listens on now, below the ephemeral range (or
/// from it, if the range leaves too little room below it).
pub fn free_ports(n: usize) -> Vec<u16> {
    let high = ephemeral_low();
    if high <= LOWEST + 1_000 {
        return ephemeral_ports(n);
    }
    let span = u64::from(high - LOWEST);
    let mut at = RandomState::new().hash_one(std::process::id()) % span;
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed_out = guard.get_or_insert_with(HashSet::new);
    // All bound at once, so none repeats; released when they are returned.
    let mut held = Vec::with_capacity(n);
    for _ in 0..span {
        if held.len() == n {
            break;
        }
        let port = LOWEST + u16::try_from(at).unwrap();
        at = (at + 1) % span;
        if handed_out.contains(&port) {
            continue;
        }
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            handed_out.insert(port);
            held.push(listener);
        }
    }
    assert_eq!(held.len(), n, "no {n} free ports below {high}");
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

pub fn free_port() -> u16 {
    free_ports(1)[0]
}

fn ephemeral_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}
