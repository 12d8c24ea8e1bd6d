//! The client's address: the connection's peer by default; behind `xff_num_trusted_hops`
//! known proxies, the address the outermost of them saw, read from X-Forwarded-For.

/// `source_address` is Envoy's `source.address` (`ip:port` or `[ipv6]:port`); `xff` the
/// X-Forwarded-For header. With N trusted hops the client is the Nth entry from the right
/// (each trusted proxy appended the address it received from); with fewer entries than that
/// the header cannot be trusted and the peer's address is used.
pub fn client_ip<'a>(
    source_address: Option<&'a str>,
    xff: Option<&'a str>,
    trusted_hops: u32,
) -> Option<&'a str> {
    if trusted_hops > 0 {
        let hops = usize::try_from(trusted_hops).unwrap_or(usize::MAX);
        if let Some(xff) = xff {
            let entries: Vec<&str> = xff.split(',').map(str::trim).collect();
            if let Some(entry) = entries
                .len()
                .checked_sub(hops)
                .and_then(|i| entries.get(i))
                .filter(|e| !e.is_empty())
            {
                return Some(entry);
            }
        }
    }
    source_address.map(host_of)
}

/// The address without its port.
fn host_of(address: &str) -> &str {
    if let Some(bracketed) = address.strip_prefix('[') {
        return bracketed.split(']').next().unwrap_or(bracketed);
    }
    match address.rsplit_once(':') {
        // One colon: IPv4 with a port. More: a bare IPv6 address.
        Some((host, _)) if !host.contains(':') => host,
        _ => address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_address_without_its_port() {
        assert_eq!(
            client_ip(Some("127.0.0.2:4711"), None, 0),
            Some("127.0.0.2")
        );
        assert_eq!(client_ip(Some("[::1]:4711"), None, 0), Some("::1"));
        assert_eq!(client_ip(Some("fe80::1"), None, 0), Some("fe80::1"));
        assert_eq!(client_ip(Some("10.0.0.1"), None, 0), Some("10.0.0.1"));
        assert_eq!(client_ip(None, None, 0), None);
    }

    #[test]
    fn forwarded_for_is_ignored_without_trusted_hops() {
        assert_eq!(
            client_ip(Some("127.0.0.1:1"), Some("203.0.113.9"), 0),
            Some("127.0.0.1")
        );
    }

    #[test]
    fn trusted_hops_count_from_the_right() {
        let xff = Some("6.6.6.6, 203.0.113.9, 10.0.0.2");
        assert_eq!(client_ip(Some("10.0.0.1:1"), xff, 1), Some("10.0.0.2"));
        assert_eq!(client_ip(Some("10.0.0.1:1"), xff, 2), Some("203.0.113.9"));
        assert_eq!(client_ip(Some("10.0.0.1:1"), xff, 3), Some("6.6.6.6"));
        // Fewer entries than trusted hops: the header is not what the proxies wrote.
        assert_eq!(client_ip(Some("10.0.0.1:1"), xff, 4), Some("10.0.0.1"));
        assert_eq!(client_ip(Some("10.0.0.1:1"), None, 1), Some("10.0.0.1"));
        assert_eq!(
            client_ip(Some("10.0.0.1:1"), Some(" , "), 1),
            Some("10.0.0.1")
        );
    }
}
