//! Route rules: which requests need which provider. First match wins; no match is a denial.

use super::hosts::Hosts;
use super::mode::Mode;

#[derive(Debug, Clone)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
    /// Matches the whole path (as Envoy's `safe_regex`); regex-lite runs in linear time.
    Regex(regex_lite::Regex),
}

impl PartialEq for PathMatch {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (PathMatch::Prefix(a), PathMatch::Prefix(b))
            | (PathMatch::Exact(a), PathMatch::Exact(b)) => a == b,
            (PathMatch::Regex(a), PathMatch::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl Eq for PathMatch {}

impl PathMatch {
    /// `pattern` must match the whole path.
    pub fn regex(pattern: &str) -> Result<Self, regex_lite::Error> {
        regex_lite::Regex::new(&format!("^(?:{pattern})$")).map(PathMatch::Regex)
    }
}

/// What a matched route needs (jwt_authn's `JwtRequirement`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// No token needed.
    Public,
    /// A valid token of this provider (index into `Config::providers`); `audiences`
    /// replaces the provider's own list for this route (`provider_and_audiences`).
    Provider {
        index: usize,
        audiences: Option<Vec<String>>,
    },
    /// A valid token of any configured provider.
    AnyProvider,
    /// At least one of these.
    Any(Vec<Requirement>),
    /// All of these (each from its provider's own token source).
    All(Vec<Requirement>),
    /// No token is fine; a token that is present must be valid (for any provider).
    AllowMissing,
}

/// What the rule needs and which scopes every accepted token must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRequirement {
    pub requirement: Requirement,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub path: PathMatch,
    /// Upper-case; `None` matches every method.
    pub methods: Option<Vec<String>>,
    /// Lower-case names with their exact values; all must be present.
    pub headers: Vec<(String, String)>,
    /// The request's `:authority` (without port) must be one of these; `None`: any host.
    pub hosts: Option<Hosts>,
    pub requirement: Requirement,
    pub scopes: Vec<String>,
    /// The rule's own `mode`; `None`: the top-level `mode`.
    pub mode: Option<Mode>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    rules: Vec<Rule>,
}

impl Rules {
    pub fn new(rules: Vec<Rule>) -> Self {
        Rules { rules }
    }

    /// Without `rules` in the config, every request needs a token from some provider.
    pub fn require_any_provider() -> Self {
        Rules::new(vec![Rule {
            path: PathMatch::Prefix("/".to_owned()),
            methods: None,
            headers: Vec::new(),
            hosts: None,
            requirement: Requirement::AnyProvider,
            scopes: Vec::new(),
            mode: None,
        }])
    }

    /// `None` when no rule matches. `path` is the request's `:path`; its query is ignored.
    pub fn requirement_for(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Option<(&Requirement, &[String])> {
        self.rule_for(method, path, headers)
            .map(|rule| (&rule.requirement, rule.scopes.as_slice()))
    }

    /// Each rule's own `mode`, in order.
    pub fn modes(&self) -> impl Iterator<Item = Option<Mode>> + '_ {
        self.rules.iter().map(|rule| rule.mode)
    }

    /// The first rule that matches (`None`: none does). `path` is the request's `:path`; its
    /// query is ignored.
    pub fn rule_for(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Option<&Rule> {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        self.rules
            .iter()
            .find(|rule| rule.matches(method, path, headers))
    }
}

impl Rule {
    fn matches(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> bool {
        let path_ok = match &self.path {
            PathMatch::Prefix(prefix) => path.starts_with(prefix.as_str()),
            PathMatch::Exact(exact) => path == exact,
            PathMatch::Regex(regex) => regex.is_match(path),
        };
        path_ok
            && self
                .methods
                .as_ref()
                .is_none_or(|methods| methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
            && self.headers.iter().all(|(name, value)| {
                headers
                    .iter()
                    .any(|(n, v)| n.eq_ignore_ascii_case(name) && v == value)
            })
            && self.hosts.as_ref().is_none_or(|hosts| {
                // HTTP/2 and Envoy's HTTP/1.1 codec both give `:authority` (from `Host`).
                headers
                    .iter()
                    .find(|(n, _)| *n == ":authority")
                    .is_some_and(|(_, authority)| hosts.matches(authority))
            })
    }
}

/// A CORS preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) carries no
/// credentials by design (Fetch standard), so it is let through when configured.
pub fn is_cors_preflight(method: &str, headers: &[(&str, &str)]) -> bool {
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    method.eq_ignore_ascii_case("OPTIONS") && has("origin") && has("access-control-request-method")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(path: PathMatch, methods: Option<&[&str]>, requirement: Requirement) -> Rule {
        Rule {
            path,
            methods: methods.map(|m| m.iter().map(|s| (*s).to_owned()).collect()),
            headers: Vec::new(),
            hosts: None,
            requirement,
            scopes: Vec::new(),
            mode: None,
        }
    }

    fn provider(index: usize) -> Requirement {
        Requirement::Provider {
            index,
            audiences: None,
        }
    }

    fn requirement_for<'r>(rules: &'r Rules, method: &str, path: &str) -> Option<&'r Requirement> {
        rules.requirement_for(method, path, &[]).map(|(r, _)| r)
    }

    #[test]
    fn first_match_wins_and_query_is_ignored() {
        let rules = Rules::new(vec![
            rule(
                PathMatch::Prefix("/healthz".into()),
                None,
                Requirement::Public,
            ),
            rule(PathMatch::Prefix("/".into()), None, provider(0)),
        ]);
        assert_eq!(
            requirement_for(&rules, "GET", "/healthz?x=1"),
            Some(&Requirement::Public)
        );
        assert_eq!(
            requirement_for(&rules, "GET", "/healthz/live"),
            Some(&Requirement::Public)
        );
        assert_eq!(
            requirement_for(&rules, "GET", "/orders"),
            Some(&provider(0))
        );
    }

    #[test]
    fn exact_paths_and_methods() {
        let rules = Rules::new(vec![rule(
            PathMatch::Exact("/login".into()),
            Some(&["POST"]),
            Requirement::Public,
        )]);
        assert_eq!(
            requirement_for(&rules, "POST", "/login"),
            Some(&Requirement::Public)
        );
        assert_eq!(
            requirement_for(&rules, "post", "/login?next=/"),
            Some(&Requirement::Public)
        );
        assert_eq!(requirement_for(&rules, "GET", "/login"), None);
        assert_eq!(requirement_for(&rules, "POST", "/login/x"), None);
    }

    #[test]
    fn a_rule_for_some_hosts_matches_the_authority_only() {
        let hosts = |p: &[&str]| {
            let owned: Vec<String> = p.iter().map(|s| (*s).to_owned()).collect();
            Some(Hosts::parse(&owned).unwrap())
        };
        let rules = Rules::new(vec![
            Rule {
                hosts: hosts(&["api.example.com"]),
                ..rule(PathMatch::Prefix("/".into()), None, provider(0))
            },
            Rule {
                hosts: hosts(&["*.public.example.com"]),
                ..rule(PathMatch::Prefix("/".into()), None, Requirement::Public)
            },
        ]);
        let at = |authority: &str| {
            let headers = vec![(":authority", authority)];
            rules
                .requirement_for("GET", "/x", &headers)
                .map(|(r, _)| r.clone())
        };
        assert_eq!(at("API.example.com:8443"), Some(provider(0)));
        assert_eq!(at("docs.public.example.com"), Some(Requirement::Public));
        assert_eq!(at("public.example.com"), None, "not the domain itself");
        assert_eq!(at("evil.com"), None);
        let no_authority = rules.requirement_for("GET", "/x", &[]);
        assert!(
            no_authority.is_none(),
            "no :authority: no host rule matches"
        );
        // A `host` header is not `:authority` (Envoy gives every request an `:authority`).
        let host_only = vec![("host", "api.example.com")];
        assert!(rules.requirement_for("GET", "/x", &host_only).is_none());
    }

    #[test]
    fn query_cannot_smuggle_a_public_prefix() {
        let rules = Rules::new(vec![rule(
            PathMatch::Prefix("/public".into()),
            None,
            Requirement::Public,
        )]);
        assert_eq!(requirement_for(&rules, "GET", "/private?/public"), None);
    }

    #[test]
    fn regex_matches_the_whole_path() {
        let rules = Rules::new(vec![rule(
            PathMatch::regex("/orders/[0-9]+").unwrap(),
            None,
            Requirement::Public,
        )]);
        assert!(requirement_for(&rules, "GET", "/orders/42?x=1").is_some());
        assert!(requirement_for(&rules, "GET", "/orders/42/items").is_none());
        assert!(requirement_for(&rules, "GET", "/v1/orders/42").is_none());
        assert!(PathMatch::regex("(").is_err());
    }

    #[test]
    fn header_conditions_and_cors_preflight() {
        let mut with_header = rule(PathMatch::Prefix("/".into()), None, Requirement::Public);
        with_header.headers = vec![("x-tenant".into(), "blue".into())];
        let rules = Rules::new(vec![with_header]);
        let h = |v| vec![("X-Tenant", v)];
        assert!(rules.requirement_for("GET", "/", &h("blue")).is_some());
        assert!(rules.requirement_for("GET", "/", &h("red")).is_none());
        assert!(rules.requirement_for("GET", "/", &[]).is_none());
        let preflight = vec![
            ("origin", "https://app"),
            ("access-control-request-method", "POST"),
        ];
        assert!(is_cors_preflight("OPTIONS", &preflight));
        assert!(!is_cors_preflight("GET", &preflight));
        assert!(!is_cors_preflight("OPTIONS", &preflight[..1]));
    }

    #[test]
    fn default_requires_any_provider_everywhere() {
        let rules = Rules::require_any_provider();
        assert_eq!(
            requirement_for(&rules, "GET", "/"),
            Some(&Requirement::AnyProvider)
        );
        assert_eq!(
            requirement_for(&rules, "DELETE", "/a/b"),
            Some(&Requirement::AnyProvider)
        );
    }
}
