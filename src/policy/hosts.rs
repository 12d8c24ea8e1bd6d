//! `match.hosts`: a rule for some of the hosts a shared gateway serves. A pattern is a host
//! (`api.example.com`) or a wildcard of one or more labels (`*.example.com`: `a.example.com`,
//! `a.b.example.com`, not `example.com`); the request's `:authority` is compared without its
//! port, ASCII case-insensitively, a trailing dot ignored.

/// One pattern, lower-cased and without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `*.example.com`, held as its suffix `.example.com`.
    Subdomains(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hosts(Vec<HostPattern>);

impl Hosts {
    /// The patterns of `match.hosts`; `Err((index, why))` names the first one that is not a
    /// host or a `*.` wildcard.
    pub fn parse(patterns: &[String]) -> Result<Self, (usize, &'static str)> {
        if patterns.is_empty() {
            return Err((0, "must list at least one host"));
        }
        let parsed = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| pattern(p).map_err(|why| (i, why)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Hosts(parsed))
    }

    /// Whether the request's `:authority` is one of these hosts.
    pub fn matches(&self, authority: &str) -> bool {
        let host = host_of(authority);
        self.0.iter().any(|pattern| match pattern {
            HostPattern::Exact(exact) => host == *exact,
            HostPattern::Subdomains(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
        })
    }
}

fn pattern(raw: &str) -> Result<HostPattern, &'static str> {
    let lower = raw.to_ascii_lowercase();
    let lower = lower.strip_suffix('.').unwrap_or(&lower);
    match lower.strip_prefix('*') {
        Some(suffix) => {
            let name = suffix
                .strip_prefix('.')
                .ok_or("a wildcard is \"*.\" and a domain, e.g. \"*.example.com\"")?;
            valid_host(name)?;
            Ok(HostPattern::Subdomains(suffix.to_owned()))
        }
        None => {
            valid_host(lower)?;
            Ok(HostPattern::Exact(lower.to_owned()))
        }
    }
}

/// A DNS name or an IP literal (IPv6 in brackets), without a port.
fn valid_host(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("must not be empty");
    }
    if host.starts_with('[') {
        let inner = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
        let ok = inner.is_some_and(|inner| {
            !inner.is_empty()
                && inner
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        });
        return if ok {
            Ok(())
        } else {
            Err("an IPv6 literal is \"[\" hex digits and colons \"]\"")
        };
    }
    if host.contains(':') {
        return Err("a host without a port (the port of :authority is not compared)");
    }
    let labels_ok = host.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if labels_ok {
        Ok(())
    } else {
        Err("must be a host name (letters, digits, '-', '_' in dot-separated labels) or \"*.\" and one")
    }
}

/// `:authority` as compared: without its port, lower-cased, without a trailing dot.
fn host_of(authority: &str) -> String {
    let authority = authority.trim();
    let host = if authority.starts_with('[') {
        authority
            .find(']')
            .and_then(|end| authority.get(..=end))
            .unwrap_or(authority)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => authority,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    host.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(patterns: &[&str]) -> Hosts {
        let owned: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
        Hosts::parse(&owned).unwrap()
    }

    #[test]
    fn exact_hosts_and_wildcards_of_one_or_more_labels() {
        let h = hosts(&["API.example.com", "*.Example.Org"]);
        for yes in [
            "api.example.com",
            "API.EXAMPLE.COM:8443",
            "api.example.com.",
            "a.example.org",
            "a.b.example.org:80",
        ] {
            assert!(h.matches(yes), "{yes}");
        }
        for no in [
            "example.org",
            "xexample.org",
            "api.example.com.evil",
            "evil.com",
            "",
            "api.example.co",
            "api.example.com:80:80",
            // A value with a comma or a space names no host (one is never split into two).
            "api.example.com,evil.com",
            "evil.com,api.example.com",
            "api.example.com evil.com",
        ] {
            assert!(!h.matches(no), "{no}");
        }
        let ip = hosts(&["[::1]", "127.0.0.1"]);
        assert!(ip.matches("[::1]:8080") && ip.matches("127.0.0.1:10000"));
        assert!(!ip.matches("[::2]:8080"));
    }

    #[test]
    fn patterns_that_are_not_hosts_are_refused_with_their_index() {
        let refused = |p: &[&str]| {
            let owned: Vec<String> = p.iter().map(|s| (*s).to_owned()).collect();
            Hosts::parse(&owned).unwrap_err()
        };
        assert_eq!(refused(&[]).0, 0);
        assert_eq!(refused(&["ok.com", "api.example.com:443"]).0, 1);
        for bad in [
            "",
            "*",
            "*example.com",
            "a.*.com",
            "a..com",
            "a b.com",
            "*.",
            "[::1",
            "a/b",
        ] {
            assert!(Hosts::parse(&[bad.to_owned()]).is_err(), "{bad:?}");
        }
    }
}
