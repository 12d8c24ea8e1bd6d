//! Finds the bearer credential in a request's headers.

/// A header that may carry a token, e.g. `authorization` with prefix `Bearer `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSource {
    /// Lower-case header name.
    pub name: String,
    /// Matched ASCII case-insensitively (auth schemes are case-insensitive, RFC 9110 §11.1).
    pub value_prefix: String,
}

impl HeaderSource {
    pub fn new(name: &str, value_prefix: &str) -> Self {
        HeaderSource {
            name: name.to_ascii_lowercase(),
            value_prefix: value_prefix.to_owned(),
        }
    }

    /// The default of Envoy's jwt_authn and RFC 6750 §2.1.
    pub fn authorization_bearer() -> Self {
        HeaderSource::new("authorization", "Bearer ")
    }

    fn strip_prefix<'v>(&self, value: &'v str) -> Option<&'v str> {
        let head = value.get(..self.value_prefix.len())?;
        if head.eq_ignore_ascii_case(&self.value_prefix) {
            value.get(self.value_prefix.len()..)
        } else {
            None
        }
    }
}

/// What the request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential<'r, 's> {
    None,
    One {
        token: &'r str,
        source: &'s HeaderSource,
    },
    /// More than one credential; RFC 6750 §3.1 makes that `invalid_request`.
    Multiple,
}

/// Looks for credentials in every listed source. Envoy joins repeated headers with commas,
/// and a JWS never contains one, so each comma-separated element counts as a credential.
pub fn find_credential<'r, 's>(
    headers: &'r [(String, String)],
    sources: &[&'s HeaderSource],
) -> Credential<'r, 's> {
    let mut found = Credential::None;
    for (name, value) in headers {
        let relevant: Vec<&HeaderSource> = sources
            .iter()
            .copied()
            .filter(|s| s.name.eq_ignore_ascii_case(name))
            .collect();
        if relevant.is_empty() {
            continue;
        }
        for element in value.split(',') {
            let element = element.trim_start_matches([' ', '\t']);
            let Some((token, source)) = relevant
                .iter()
                .find_map(|s| s.strip_prefix(element).map(|t| (t, *s)))
            else {
                continue;
            };
            if found != Credential::None {
                return Credential::Multiple;
            }
            found = Credential::One {
                token: token.trim_matches([' ', '\t']),
                source,
            };
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn finds_bearer_token_with_any_scheme_case() {
        let bearer = HeaderSource::authorization_bearer();
        for value in ["Bearer abc", "bearer abc", "BEARER abc", "Bearer   abc  "] {
            let h = headers(&[("authorization", value)]);
            assert_eq!(
                find_credential(&h, &[&bearer]),
                Credential::One {
                    token: "abc",
                    source: &bearer
                },
                "{value}"
            );
        }
    }

    #[test]
    fn other_schemes_are_not_credentials() {
        let bearer = HeaderSource::authorization_bearer();
        let h = headers(&[("authorization", "Basic dXNlcjpwYXNz")]);
        assert_eq!(find_credential(&h, &[&bearer]), Credential::None);
        let h = headers(&[("x-other", "Bearer abc")]);
        assert_eq!(find_credential(&h, &[&bearer]), Credential::None);
    }

    #[test]
    fn two_headers_or_joined_values_are_multiple() {
        let bearer = HeaderSource::authorization_bearer();
        let h = headers(&[("authorization", "Bearer a"), ("Authorization", "Bearer b")]);
        assert_eq!(find_credential(&h, &[&bearer]), Credential::Multiple);
        let h = headers(&[("authorization", "Bearer a,Bearer b")]);
        assert_eq!(find_credential(&h, &[&bearer]), Credential::Multiple);
    }

    #[test]
    fn two_sources_are_multiple() {
        let bearer = HeaderSource::authorization_bearer();
        let custom = HeaderSource::new("X-Token", "");
        let h = headers(&[("authorization", "Bearer a"), ("x-token", "b")]);
        assert_eq!(
            find_credential(&h, &[&bearer, &custom]),
            Credential::Multiple
        );
        let h = headers(&[("x-token", "b")]);
        assert_eq!(
            find_credential(&h, &[&bearer, &custom]),
            Credential::One {
                token: "b",
                source: &custom
            }
        );
    }

    #[test]
    fn empty_bearer_value_is_a_credential_to_reject_later() {
        let bearer = HeaderSource::authorization_bearer();
        let h = headers(&[("authorization", "Bearer ")]);
        assert_eq!(
            find_credential(&h, &[&bearer]),
            Credential::One {
                token: "",
                source: &bearer
            }
        );
    }
}
