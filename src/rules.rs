//! Route rules: which requests need which provider. First match wins; no match is a denial.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// No token needed.
    Public,
    /// A valid token of this provider (index into `Config::providers`).
    Provider(usize),
    /// A valid token of any configured provider.
    AnyProvider,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub path: PathMatch,
    /// Upper-case; `None` matches every method.
    pub methods: Option<Vec<String>>,
    pub requirement: Requirement,
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
            requirement: Requirement::AnyProvider,
        }])
    }

    /// `None` when no rule matches. `path` is the request's `:path`; its query is ignored.
    pub fn requirement_for(&self, method: &str, path: &str) -> Option<Requirement> {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        self.rules
            .iter()
            .find(|rule| rule.matches(method, path))
            .map(|rule| rule.requirement)
    }
}

impl Rule {
    fn matches(&self, method: &str, path: &str) -> bool {
        let path_ok = match &self.path {
            PathMatch::Prefix(prefix) => path.starts_with(prefix.as_str()),
            PathMatch::Exact(exact) => path == exact,
        };
        path_ok
            && self
                .methods
                .as_ref()
                .is_none_or(|methods| methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(path: PathMatch, methods: Option<&[&str]>, requirement: Requirement) -> Rule {
        Rule {
            path,
            methods: methods.map(|m| m.iter().map(|s| (*s).to_owned()).collect()),
            requirement,
        }
    }

    #[test]
    fn first_match_wins_and_query_is_ignored() {
        let rules = Rules::new(vec![
            rule(
                PathMatch::Prefix("/healthz".into()),
                None,
                Requirement::Public,
            ),
            rule(
                PathMatch::Prefix("/".into()),
                None,
                Requirement::Provider(0),
            ),
        ]);
        assert_eq!(
            rules.requirement_for("GET", "/healthz?x=1"),
            Some(Requirement::Public)
        );
        assert_eq!(
            rules.requirement_for("GET", "/healthz/live"),
            Some(Requirement::Public)
        );
        assert_eq!(
            rules.requirement_for("GET", "/orders"),
            Some(Requirement::Provider(0))
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
            rules.requirement_for("POST", "/login"),
            Some(Requirement::Public)
        );
        assert_eq!(
            rules.requirement_for("post", "/login?next=/"),
            Some(Requirement::Public)
        );
        assert_eq!(rules.requirement_for("GET", "/login"), None);
        assert_eq!(rules.requirement_for("POST", "/login/x"), None);
    }

    #[test]
    fn query_cannot_smuggle_a_public_prefix() {
        let rules = Rules::new(vec![rule(
            PathMatch::Prefix("/public".into()),
            None,
            Requirement::Public,
        )]);
        assert_eq!(rules.requirement_for("GET", "/private?/public"), None);
    }

    #[test]
    fn default_requires_any_provider_everywhere() {
        let rules = Rules::require_any_provider();
        assert_eq!(
            rules.requirement_for("GET", "/"),
            Some(Requirement::AnyProvider)
        );
        assert_eq!(
            rules.requirement_for("DELETE", "/a/b"),
            Some(Requirement::AnyProvider)
        );
    }
}
