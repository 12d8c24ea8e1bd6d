//! What goes upstream once a requirement is met: the filter's own headers scrubbed, claim
//! headers set, and every credential the decision used (or refused) taken out unless its
//! provider forwards it, rewritten into the request once the whole decision is made.

use crate::decide::decision::Upstream;
use crate::decide::guard::Request;
use crate::token::extract::{cookie_header_without, path_without_params, TokenSource};

/// What goes upstream, before it is applied to the request: the headers to remove and to set,
/// and every credential the decision used that its provider does not forward. The `:path`
/// and the `cookie` header are rewritten once, from all of them (`rewrite`): rewritten per
/// credential, the last rewrite would put the others back.
#[derive(Debug, Default)]
pub struct UpstreamPlan {
    pub remove_headers: Vec<String>,
    pub set_headers: Vec<(String, String)>,
    pub strip: Vec<TokenSource>,
    /// Where the credentials this grant accepted were found (stripped or forwarded).
    pub used: Vec<TokenSource>,
}

impl UpstreamPlan {
    /// A public route: only the filter's own headers are scrubbed.
    pub fn public(written_headers: &[String]) -> Self {
        UpstreamPlan {
            remove_headers: written_headers.to_vec(),
            ..UpstreamPlan::default()
        }
    }

    /// A token's grant: written headers scrubbed, the credential to be taken out unless the
    /// provider forwards it, then the token's payload and claim headers set.
    pub fn for_token(
        written_headers: &[String],
        forward: bool,
        source: &TokenSource,
        token_headers: Vec<(String, String)>,
    ) -> Self {
        UpstreamPlan {
            remove_headers: written_headers.to_vec(),
            set_headers: token_headers,
            strip: if forward {
                Vec::new()
            } else {
                vec![source.clone()]
            },
            used: vec![source.clone()],
        }
    }

    /// A jwt_authn payload whose token is not in the request: nothing to take out.
    pub fn for_payload(written_headers: &[String], token_headers: Vec<(String, String)>) -> Self {
        UpstreamPlan {
            remove_headers: written_headers.to_vec(),
            set_headers: token_headers,
            ..UpstreamPlan::default()
        }
    }

    /// `requires_all`: what each part needs, together.
    pub fn merge(&mut self, other: UpstreamPlan) {
        for name in other.remove_headers {
            if !self.remove_headers.contains(&name) {
                self.remove_headers.push(name);
            }
        }
        self.set_headers.extend(other.set_headers);
        for source in other.strip {
            if !self.strip.contains(&source) {
                self.strip.push(source);
            }
        }
        for source in other.used {
            if !self.used.contains(&source) {
                self.used.push(source);
            }
        }
    }

    /// `requires_any`: the credentials of options that were refused never reach the upstream
    /// (it may take a header it finds behind the proxy for a checked one), even for providers
    /// that forward theirs; the credential that was accepted is left as its provider says.
    pub fn strip_rejected(&mut self, rejected: Vec<TokenSource>) {
        for source in rejected {
            if !self.used.contains(&source) && !self.strip.contains(&source) {
                self.strip.push(source);
            }
        }
    }

    /// The request without any of the credentials to strip: header sources removed, cookie
    /// and parameter sources taken out of `cookie` and `:path`, the other cookies and
    /// parameters left as they were.
    pub fn rewrite(self, request: &Request<'_>) -> Upstream {
        let mut upstream = Upstream {
            remove_headers: self.remove_headers,
            set_headers: self.set_headers,
            path: None,
        };
        let (mut cookies, mut params) = (Vec::new(), Vec::new());
        for source in &self.strip {
            match source {
                TokenSource::Header { name, .. } => {
                    if !upstream.remove_headers.iter().any(|h| **h == **name) {
                        upstream.remove_headers.push(name.to_string());
                    }
                }
                TokenSource::Cookie { name } => cookies.push(&**name),
                TokenSource::Param { name } => params.push(&**name),
            }
        }
        if !cookies.is_empty() {
            let all: Vec<&str> = request
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
                .map(|(_, v)| *v)
                .collect();
            upstream.remove_headers.push("cookie".to_owned());
            if let Some(rest) = cookie_header_without(&all.join("; "), &cookies) {
                upstream.set_headers.push(("cookie".to_owned(), rest));
            }
        }
        if !params.is_empty() {
            upstream.path = Some(path_without_params(request.path, &params));
        }
        upstream
    }
}
