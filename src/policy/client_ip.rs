//! The client's address: Envoy's downstream address by default; behind
//! `xff_num_trusted_hops` known proxies, the address the outermost of them saw, read from
//! X-Forwarded-For. Always a canonical IP (no port, IPv4-mapped IPv6 as IPv4), so one client
//! is one address whatever its proxies write.

use std::net::{IpAddr, SocketAddr};

/// `source_address` is Envoy's `source.address` (`ip:port` or `[ipv6]:port`); `xff` the
/// X-Forwarded-For header. With N trusted hops the client is the Nth entry from the right
/// (each trusted proxy appended the address it received from); with fewer entries than that,
/// or an entry that is not an address, the header cannot be trusted and Envoy's is used.
pub fn client_ip(
    source_address: Option<&str>,
    xff: Option<&str>,
    trusted_hops: u32,
) -> Option<String> {
    if trusted_hops > 0 {
        let hops = usize::try_from(trusted_hops).unwrap_or(usize::MAX);
        if let Some(xff) = xff {
            let entries: Vec<&str> = xff.split(',').map(str::trim).collect();
            let forwarded = entries
                .len()
                .checked_sub(hops)
                .and_then(|i| entries.get(i))
                .and_then(|entry| parse(entry));
            if let Some(ip) = forwarded {
                return Some(text_of(ip));
            }
        }
    }
    source_address.and_then(parse).map(text_of)
}

/// The address as `Display` writes it. IPv4 (nearly every client) is written octet by octet:
/// with misuse detection on, this runs on every request with a token, and the formatting
/// machinery cost more than the rest of reading the client's address.
fn text_of(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut out = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
    out
}

/// An IP, with or without a port (`1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]:80`).
fn parse(text: &str) -> Option<IpAddr> {
    let ip = text
        .parse::<IpAddr>()
        .or_else(|_| text.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()?;
    Some(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_peer(peer: &str) -> Option<String> {
        client_ip(Some(peer), None, 0)
    }

    fn behind(xff: Option<&str>, hops: u32) -> Option<String> {
        client_ip(Some("10.0.0.1:1"), xff, hops)
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for text in [
            "0.0.0.0",
            "1.2.3.4",
            "9.10.99.100",
            "127.0.0.1",
            "255.255.255.255",
            "::1",
            "2001:db8::1",
            "fe80::1:2:3:4",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(text_of(ip), ip.to_string());
        }
        for octet in 0..=255u8 {
            let ip = IpAddr::from([octet, 255 - octet, octet / 3, 10]);
            assert_eq!(text_of(ip), ip.to_string());
        }
    }

    #[test]
    fn the_peer_address_without_its_port() {
        assert_eq!(from_peer("127.0.0.2:4711").as_deref(), Some("127.0.0.2"));
        assert_eq!(from_peer("[::1]:4711").as_deref(), Some("::1"));
        assert_eq!(from_peer("fe80::1").as_deref(), Some("fe80::1"));
        assert_eq!(from_peer("10.0.0.1").as_deref(), Some("10.0.0.1"));
        assert_eq!(
            from_peer("[::ffff:10.0.0.1]:80").as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(from_peer("envoy_internal"), None);
        assert_eq!(client_ip(None, None, 0), None);
    }

    #[test]
    fn forwarded_for_is_ignored_without_trusted_hops() {
        assert_eq!(behind(Some("203.0.113.9"), 0).as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn trusted_hops_count_from_the_right() {
        let xff = Some("6.6.6.6, 203.0.113.9, 10.0.0.2");
        assert_eq!(behind(xff, 1).as_deref(), Some("10.0.0.2"));
        assert_eq!(behind(xff, 2).as_deref(), Some("203.0.113.9"));
        assert_eq!(behind(xff, 3).as_deref(), Some("6.6.6.6"));
        // Fewer entries than trusted hops: the header is not what the proxies wrote.
        assert_eq!(behind(xff, 4).as_deref(), Some("10.0.0.1"));
        assert_eq!(behind(None, 1).as_deref(), Some("10.0.0.1"));
        assert_eq!(behind(Some(" , "), 1).as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn spellings_of_one_address_are_one_address() {
        assert_eq!(
            behind(Some("203.0.113.9:5678"), 1).as_deref(),
            Some("203.0.113.9")
        );
        assert_eq!(
            behind(Some("[2001:db8::1]:443"), 1).as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(
            behind(Some("::ffff:203.0.113.9"), 1).as_deref(),
            Some("203.0.113.9")
        );
        // Not an address: the header is not trusted.
        assert_eq!(behind(Some("<script>"), 1).as_deref(), Some("10.0.0.1"));
    }
}
