//! Finds the bearer credential in a request: headers, cookies or query parameters.

use std::borrow::Cow;
use std::sync::Arc;

use crate::token::scan::split_ascii;

/// One place a token may be, as configured for a provider. The names are shared (`Arc<str>`,
/// so a `Config` stays `Send`): every grant notes the source its credential came from, and a
/// clone must not copy them (three allocations per request before). Equal is the same place
/// (see the `PartialEq` below).
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// A header, e.g. `authorization` with prefix `Bearer `. The name is lower case; the
    /// prefix is matched ASCII case-insensitively (auth schemes are, RFC 9110 §11.1).
    Header {
        name: Arc<str>,
        value_prefix: Arc<str>,
    },
    /// A cookie, by exact name.
    Cookie { name: Arc<str> },
    /// A query parameter, by exact name (RFC 6750 §2.3 discourages it: only when configured).
    Param { name: Arc<str> },
}

impl TokenSource {
    pub fn header(name: &str, value_prefix: &str) -> Self {
        TokenSource::Header {
            name: name.to_ascii_lowercase().into(),
            value_prefix: value_prefix.into(),
        }
    }

    /// The default of Envoy's jwt_authn and RFC 6750 §2.1.
    pub fn authorization_bearer() -> Self {
        TokenSource::header("authorization", "Bearer ")
    }
}

/// The same place: a header's prefix is matched ASCII case-insensitively, so `Bearer ` and
/// `bearer ` read the same credentials (listed both ways, one token would count as two).
impl PartialEq for TokenSource {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                TokenSource::Header { name, value_prefix },
                TokenSource::Header {
                    name: other_name,
                    value_prefix: other_prefix,
                },
            ) => {
                // The same `Arc` (a source compared with itself, on every request) first.
                name == other_name
                    && (Arc::ptr_eq(value_prefix, other_prefix)
                        || value_prefix.eq_ignore_ascii_case(other_prefix))
            }
            (TokenSource::Cookie { name }, TokenSource::Cookie { name: other })
            | (TokenSource::Param { name }, TokenSource::Param { name: other }) => name == other,
            _ => false,
        }
    }
}

impl Eq for TokenSource {}

/// Each place once, in the order first seen: a place read twice would count one token there
/// as two credentials.
pub fn distinct<'s>(sources: impl IntoIterator<Item = &'s TokenSource>) -> Vec<TokenSource> {
    let mut unique: Vec<TokenSource> = Vec::new();
    for source in sources {
        if !unique.contains(source) {
            unique.push(source.clone());
        }
    }
    unique
}

fn strip_prefix_ignore_case<'v>(value: &'v str, prefix: &str) -> Option<&'v str> {
    let head = value.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        value.get(prefix.len()..)
    } else {
        None
    }
}

/// What the request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential<'r, 's> {
    None,
    One {
        token: Cow<'r, str>,
        source: &'s TokenSource,
    },
    /// More than one credential; RFC 6750 §3.1 makes that `invalid_request`.
    Multiple,
    /// A credential is there but cannot be read: the scheme without its separator or token
    /// (`Bearer<TAB>x`, `Bearerx`, `Bearer`), a configured cookie or parameter without a
    /// value, or a parameter an upstream would read as a configured one (`JWT_A`, `jwt.a`).
    /// Never "no credential": its bytes would go upstream unchecked.
    Unreadable,
}

/// Collects credentials, stopping at the second.
struct Finder<'r, 's> {
    found: Credential<'r, 's>,
}

impl<'r, 's> Finder<'r, 's> {
    /// `false` once a second credential makes the answer `Multiple`.
    fn add(&mut self, token: Cow<'r, str>, source: &'s TokenSource) -> bool {
        if token.is_empty() {
            return self.add_unreadable();
        }
        self.set(Credential::One { token, source })
    }

    /// An unreadable credential still counts as one: beside another it is `Multiple`.
    fn add_unreadable(&mut self) -> bool {
        self.set(Credential::Unreadable)
    }

    fn set(&mut self, found: Credential<'r, 's>) -> bool {
        if self.found != Credential::None {
            self.found = Credential::Multiple;
            return false;
        }
        self.found = found;
        true
    }
}

/// What one comma-separated element of a header a source reads holds.
enum Element<'v> {
    Token(&'v str),
    /// The source's scheme, not followed by its separator and a token.
    Unreadable,
    /// Another scheme (`Basic ...`): not this source's credential.
    Other,
}

/// RFC 6750 §2.1: the scheme, one space (more are tolerated), the token. The scheme is the
/// prefix without its trailing whitespace; what starts with it but does not go on with the
/// whole prefix and a token is a malformed credential of this scheme, not another scheme.
fn read_element<'v>(element: &'v str, value_prefix: &str) -> Element<'v> {
    if let Some(token) = strip_prefix_ignore_case(element, value_prefix) {
        let token = token.trim_matches([' ', '\t']);
        return if token.is_empty() {
            Element::Unreadable
        } else {
            Element::Token(token)
        };
    }
    let scheme = value_prefix.trim_end_matches([' ', '\t']);
    match strip_prefix_ignore_case(element, scheme) {
        Some(_) => Element::Unreadable,
        None => Element::Other,
    }
}

/// Looks for credentials in every listed source. Envoy joins repeated headers with commas,
/// and a JWS never contains one, so each comma-separated element counts as a credential.
pub fn find_credential<'r, 's>(
    headers: &'r [(&'r str, &'r str)],
    path: &'r str,
    sources: &'s [TokenSource],
) -> Credential<'r, 's> {
    let mut finder = Finder {
        found: Credential::None,
    };
    for (name, value) in headers {
        for source in sources {
            let more = match source {
                TokenSource::Header {
                    name: wanted,
                    value_prefix,
                } if wanted.eq_ignore_ascii_case(name) => split_ascii(value, b',').all(|element| {
                    let element = element.trim_start_matches([' ', '\t']);
                    match read_element(element, value_prefix) {
                        Element::Token(token) => finder.add(Cow::Borrowed(token), source),
                        Element::Unreadable => finder.add_unreadable(),
                        Element::Other => true,
                    }
                }),
                TokenSource::Cookie { name: wanted } if name.eq_ignore_ascii_case("cookie") => {
                    cookies(value)
                        .filter(|(n, _)| *n == &**wanted)
                        .all(|(_, v)| finder.add(Cow::Borrowed(v), source))
                }
                _ => true,
            };
            if !more {
                return Credential::Multiple;
            }
        }
    }
    for source in sources {
        if let TokenSource::Param { name: wanted } = source {
            for (name, value) in query_params(path) {
                let more = if name == **wanted {
                    finder.add(value, source)
                } else if read_as(&name, wanted) {
                    finder.add_unreadable()
                } else {
                    true
                };
                if !more {
                    return Credential::Multiple;
                }
            }
        }
    }
    finder.found
}

/// `name=value` pairs of a `cookie` header (RFC 6265 §4.2.1); quotes around a value dropped.
/// A name without `=` is a cookie with an empty value (as many servers read it).
pub fn cookies(header: &str) -> impl Iterator<Item = (&str, &str)> {
    header
        .split(';')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            (name.trim(), value)
        })
}

/// Whether an upstream framework may read the (decoded) parameter `name` as `wanted`
/// without it being exactly `wanted`: ASP.NET compares names case-insensitively, PHP turns
/// `.`, ` ` and `[` into `_`. Only a name that folds onto a configured one: any other name is
/// just another parameter.
pub fn read_as(name: &str, wanted: &str) -> bool {
    fn fold(b: u8) -> u8 {
        match b {
            b'.' | b' ' | b'[' => b'_',
            _ => b.to_ascii_lowercase(),
        }
    }
    name != wanted
        && name.len() == wanted.len()
        && name
            .bytes()
            .zip(wanted.bytes())
            .all(|(a, b)| fold(a) == fold(b))
}

/// Query parameters of a `:path`, names and values percent-decoded (as the upstream's
/// framework will see them: `%61ccess_token` is `access_token`). What cannot be decoded is
/// kept as it is (and then fails as a malformed token).
pub fn query_params(path: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    // A `?` after the fragment starts no query.
    let query = path
        .split('#')
        .next()
        .unwrap_or_default()
        .split_once('?')
        .map_or("", |(_, q)| q);
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (
            percent_decode(name).unwrap_or(Cow::Borrowed(name)),
            percent_decode(value).unwrap_or(Cow::Borrowed(value)),
        )
    })
}

fn percent_decode(value: &str) -> Option<Cow<'_, str>> {
    if !value.contains(['%', '+']) {
        return Some(Cow::Borrowed(value));
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = value.get(i + 1..i + 3)?;
                // `from_str_radix` also takes a sign (`%+4`): two hex digits only.
                if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// The `:path` without these query parameters (for not forwarding tokens sent that way).
pub fn path_without_params(path: &str, params: &[&str]) -> String {
    let Some((base, rest)) = path.split_once('?') else {
        return path.to_owned();
    };
    let (query, fragment) = match rest.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (rest, None),
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            let name = percent_decode(name).unwrap_or(Cow::Borrowed(name));
            !pair.is_empty() && !params.contains(&&*name)
        })
        .collect();
    let mut out = base.to_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// A `cookie` header value without these cookies; `None` when nothing is left.
pub fn cookie_header_without(header: &str, names: &[&str]) -> Option<String> {
    let kept: Vec<&str> = header
        .split(';')
        .map(str::trim)
        .filter(|pair| {
            !pair.is_empty()
                && !pair
                    .split('=')
                    .next()
                    .is_some_and(|name| names.contains(&name.trim()))
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// RFC 9110 token characters: what header names and methods are made of.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

pub(crate) fn is_header_name(s: &str) -> bool {
    is_token(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        pairs.to_vec()
    }

    fn one<'r, 's>(token: &'r str, source: &'s TokenSource) -> Credential<'r, 's> {
        Credential::One {
            token: Cow::Borrowed(token),
            source,
        }
    }

    #[test]
    fn finds_bearer_token_with_any_scheme_case() {
        let bearer = TokenSource::authorization_bearer();
        for value in ["Bearer abc", "bearer abc", "BEARER abc", "Bearer   abc  "] {
            let h = headers(&[("authorization", value)]);
            assert_eq!(
                find_credential(&h, "/", std::slice::from_ref(&bearer)),
                one("abc", &bearer),
                "{value}"
            );
        }
    }

    #[test]
    fn other_schemes_are_not_credentials() {
        let bearer = TokenSource::authorization_bearer();
        let h = headers(&[("authorization", "Basic dXNlcjpwYXNz")]);
        assert_eq!(
            find_credential(&h, "/", std::slice::from_ref(&bearer)),
            Credential::None
        );
        let h = headers(&[("x-other", "Bearer abc")]);
        assert_eq!(
            find_credential(&h, "/", std::slice::from_ref(&bearer)),
            Credential::None
        );
    }

    #[test]
    fn two_headers_or_joined_values_are_multiple() {
        let bearer = TokenSource::authorization_bearer();
        let h = headers(&[("authorization", "Bearer a"), ("Authorization", "Bearer b")]);
        assert_eq!(
            find_credential(&h, "/", std::slice::from_ref(&bearer)),
            Credential::Multiple
        );
        let h = headers(&[("authorization", "Bearer a,Bearer b")]);
        assert_eq!(
            find_credential(&h, "/", std::slice::from_ref(&bearer)),
            Credential::Multiple
        );
    }

    #[test]
    fn two_sources_are_multiple() {
        let bearer = TokenSource::authorization_bearer();
        let custom = TokenSource::header("X-Token", "");
        let h = headers(&[("authorization", "Bearer a"), ("x-token", "b")]);
        assert_eq!(
            find_credential(&h, "/", &[bearer.clone(), custom.clone()]),
            Credential::Multiple
        );
        let h = headers(&[("x-token", "b")]);
        assert_eq!(
            find_credential(&h, "/", &[bearer.clone(), custom.clone()]),
            one("b", &custom)
        );
    }

    #[test]
    fn cookies_and_params() {
        let cookie = TokenSource::Cookie {
            name: "session".into(),
        };
        let param = TokenSource::Param {
            name: "access_token".into(),
        };
        let h = headers(&[("cookie", "theme=dark; session=abc.def.ghi; x=1")]);
        assert_eq!(
            find_credential(&h, "/", std::slice::from_ref(&cookie)),
            one("abc.def.ghi", &cookie)
        );
        let h = headers(&[("cookie", "session=\"q.u.o\"")]);
        assert_eq!(
            find_credential(&h, "/", std::slice::from_ref(&cookie)),
            one("q.u.o", &cookie)
        );
        let h = headers(&[("cookie", "session=a"), ("cookie", "session=b")]);
        assert_eq!(
            find_credential(&h, "/", std::slice::from_ref(&cookie)),
            Credential::Multiple
        );
        assert_eq!(
            find_credential(
                &[],
                "/x?a=1&access_token=t.o.k#frag",
                std::slice::from_ref(&param)
            ),
            one("t.o.k", &param)
        );
        assert_eq!(
            find_credential(
                &[],
                "/x?access_token=a&access_token=b",
                std::slice::from_ref(&param)
            ),
            Credential::Multiple
        );
        // Not configured: a query token is not a credential at all.
        let bearer = TokenSource::authorization_bearer();
        assert_eq!(
            find_credential(&[], "/x?access_token=a", std::slice::from_ref(&bearer)),
            Credential::None
        );
        let h = headers(&[("authorization", "Bearer a")]);
        assert_eq!(
            find_credential(&h, "/x?access_token=a", &[bearer.clone(), param.clone()]),
            Credential::Multiple
        );
    }

    #[test]
    fn percent_encoded_params_are_decoded() {
        let params: Vec<_> = query_params("/p?t=a%2Eb%2ec&u=%zz&v=x+y").collect();
        assert_eq!(params[0], ("t".into(), Cow::Owned("a.b.c".to_owned())));
        assert_eq!(params[1], ("u".into(), Cow::Borrowed("%zz")));
        assert_eq!(params[2], ("v".into(), Cow::Owned("x y".to_owned())));
        let encoded: Vec<_> = query_params("/p?%61ccess%5Ftoken=t").collect();
        assert_eq!(encoded[0].0, "access_token");
        // Found by `make fuzz`: a `?` inside the fragment, and a sign in an escape.
        assert_eq!(query_params("/p#x?access_token=t").count(), 0);
        let signed: Vec<_> = query_params("/p?t=%+4").collect();
        assert_eq!(signed[0].1, "%+4");
    }

    #[test]
    fn credentials_can_be_removed_from_path_and_cookies() {
        assert_eq!(
            path_without_params("/a?x=1&t=tok&y=2", &["t"]),
            "/a?x=1&y=2"
        );
        assert_eq!(path_without_params("/a?t=tok", &["t"]), "/a");
        assert_eq!(path_without_params("/a?x=1&%74=tok", &["t"]), "/a?x=1");
        assert_eq!(path_without_params("/a?t=tok#f", &["t"]), "/a#f");
        assert_eq!(path_without_params("/a", &["t"]), "/a");
        assert_eq!(
            cookie_header_without("a=1; session=tok; b=2", &["session"]).as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(cookie_header_without("session=tok", &["session"]), None);
    }

    #[test]
    fn several_credentials_come_out_at_once() {
        assert_eq!(
            path_without_params("/a?t=1&x=2&u=3&t2=4", &["t", "u"]),
            "/a?x=2&t2=4"
        );
        assert_eq!(
            cookie_header_without("s=1; theme=dark; u=2; s2=3", &["s", "u"]).as_deref(),
            Some("theme=dark; s2=3")
        );
        assert_eq!(cookie_header_without("s=1; u=2", &["s", "u"]), None);
    }

    #[test]
    fn a_malformed_bearer_credential_is_unreadable_not_missing() {
        let bearer = TokenSource::authorization_bearer();
        for value in [
            "Bearer\tforged",
            "Bearerforged",
            "bearer:forged",
            "Bearer\u{a0}forged",
            "Bearer",
            "Bearer ",
            "BEARER   ",
        ] {
            let h = headers(&[("authorization", value)]);
            assert_eq!(
                find_credential(&h, "/", std::slice::from_ref(&bearer)),
                Credential::Unreadable,
                "{value:?}"
            );
        }
        // Another scheme is no bearer credential at all (RFC 6750 does not own it).
        for value in ["Basic dXNlcjpwYXNz", "DPoP x", "Beare x", ""] {
            let h = headers(&[("authorization", value)]);
            assert_eq!(
                find_credential(&h, "/", std::slice::from_ref(&bearer)),
                Credential::None,
                "{value:?}"
            );
        }
        // Beside a readable credential it is a second one.
        let h = headers(&[("authorization", "Bearer a, Bearer")]);
        assert_eq!(
            find_credential(&h, "/", std::slice::from_ref(&bearer)),
            Credential::Multiple
        );
        // A header read without a prefix: an empty value is unreadable.
        let custom = TokenSource::header("x-token", "");
        let h = headers(&[("x-token", "")]);
        assert_eq!(
            find_credential(&h, "/", std::slice::from_ref(&custom)),
            Credential::Unreadable
        );
    }

    #[test]
    fn a_configured_cookie_or_parameter_without_a_value_is_unreadable() {
        let cookie = TokenSource::Cookie { name: "sa".into() };
        for value in ["theme=dark; sa", "sa=; theme=dark", "sa=\"\"", "sa = "] {
            let h = headers(&[("cookie", value)]);
            assert_eq!(
                find_credential(&h, "/", std::slice::from_ref(&cookie)),
                Credential::Unreadable,
                "{value:?}"
            );
        }
        // Cookie names are case-sensitive (RFC 6265): these are other cookies.
        let h = headers(&[("cookie", "Sa=1; sab=2; s=3;; ")]);
        assert_eq!(
            find_credential(&h, "/", std::slice::from_ref(&cookie)),
            Credential::None
        );
        let param = TokenSource::Param {
            name: "jwt_a".into(),
        };
        for path in ["/p?jwt_a=", "/p?x=1&jwt_a", "/p?jwt%5Fa=&x=1"] {
            assert_eq!(
                find_credential(&[], path, std::slice::from_ref(&param)),
                Credential::Unreadable,
                "{path}"
            );
        }
        assert_eq!(
            find_credential(&[], "/p?jwt_a=&jwt_a=t", std::slice::from_ref(&param)),
            Credential::Multiple
        );
    }

    #[test]
    fn a_parameter_an_upstream_reads_as_a_configured_one_is_unreadable() {
        let param = TokenSource::Param {
            name: "jwt_a".into(),
        };
        for path in [
            "/p?JWT_A=t",
            "/p?jwt.a=t",
            "/p?jwt+a=t",
            "/p?jwt%20a=t",
            "/p?jwt[a=t",
        ] {
            assert_eq!(
                find_credential(&[], path, std::slice::from_ref(&param)),
                Credential::Unreadable,
                "{path}"
            );
        }
        // Other names are other parameters.
        for path in ["/p?jwt_ab=t", "/p?jwt=t", "/p?jwt-a=t", "/p?jwt__a=t"] {
            assert_eq!(
                find_credential(&[], path, std::slice::from_ref(&param)),
                Credential::None,
                "{path}"
            );
        }
        assert!(read_as("access.token", "access_token"));
        assert!(read_as("ACCESS_TOKEN", "access_token"));
        assert!(!read_as("access_token", "access_token"));
        assert!(!read_as("access_tokens", "access_token"));
    }
}
