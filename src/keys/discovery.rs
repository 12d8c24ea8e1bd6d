//! OpenID Connect Discovery 1.0: the provider's configuration document (§3) says where its
//! JWKS is (`jwks_uri`), and it is believed only if its `issuer` is exactly the provider's
//! (§4.3), so that a document served for one issuer cannot hand its keys to another.

use serde::Deserialize;

use crate::config::endpoint::split_uri;

use super::fetch::{accept_status, within_limit, FetchError};

/// Discovery documents are a few kilobytes; a larger one is refused, not parsed.
pub const MAX_DISCOVERY_BYTES: usize = 64 * 1024;

/// How much of a mismatching `issuer` a log line shows (it is the remote document's text).
const SHOWN_ISSUER_CHARS: usize = 200;

/// Where the JWKS is: the `:authority` and `:path` of its GET. Where that GET goes is the
/// configured cluster's business: a document can name a path and a host name, never another
/// upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksUri {
    pub authority: String,
    pub path: String,
}

/// The two members this filter reads; the others are ignored. serde refuses a duplicate
/// member, so a document cannot carry an issuer for a reader that takes the first one and
/// another for one that takes the last.
#[derive(Deserialize)]
struct Document {
    issuer: String,
    jwks_uri: String,
}

/// A discovery GET's answer becomes a JWKS location only if it is a 200, at most
/// `MAX_DISCOVERY_BYTES`, a JSON object with string `issuer` and `jwks_uri`, its issuer is
/// `issuer` byte for byte (no trailing-slash or case leniency), and its `jwks_uri` can be
/// fetched.
pub fn accept_discovery(
    status: Option<&str>,
    body: &[u8],
    issuer: &str,
) -> Result<JwksUri, FetchError> {
    accept_status(status)?;
    within_limit(body, MAX_DISCOVERY_BYTES)?;
    let document: Document = serde_json::from_slice(body)
        .map_err(|e| FetchError::NotADiscoveryDocument(e.to_string()))?;
    if document.issuer != issuer {
        let shown: String = document.issuer.chars().take(SHOWN_ISSUER_CHARS).collect();
        return Err(FetchError::IssuerMismatch {
            configured: issuer.to_owned(),
            found: format!("{shown:?}"),
        });
    }
    jwks_uri(&document.jwks_uri)
}

/// `http(s)://host[:port]/path[?query]` -> authority and path. The scheme only says the URL
/// is one (the cluster decides TLS); userinfo, a fragment and anything but printable ASCII
/// are refused: they have no place in a request's `:authority` or `:path`.
fn jwks_uri(uri: &str) -> Result<JwksUri, FetchError> {
    if !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(FetchError::BadJwksUri(
            "has a space, a control character or non-ASCII",
        ));
    }
    let endpoint = split_uri("", uri).map_err(FetchError::BadJwksUri)?;
    if endpoint.authority.contains('@') {
        return Err(FetchError::BadJwksUri("has userinfo"));
    }
    if endpoint.authority.contains(['?', '#', '\\']) || endpoint.path.contains('#') {
        return Err(FetchError::BadJwksUri(
            "has a fragment, or a query or backslash in its host",
        ));
    }
    Ok(JwksUri {
        authority: endpoint.authority,
        path: endpoint.path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ISSUER: &str = "https://idp.example.com";

    fn document(issuer: &str, jwks_uri: &str) -> Vec<u8> {
        json!({
            "issuer": issuer,
            "jwks_uri": jwks_uri,
            "token_endpoint": "https://idp.example.com/token",
            "id_token_signing_alg_values_supported": ["RS256"]
        })
        .to_string()
        .into_bytes()
    }

    fn accept(body: &[u8]) -> Result<JwksUri, FetchError> {
        accept_discovery(Some("200"), body, ISSUER)
    }

    #[test]
    fn the_jwks_uri_of_the_providers_own_document() {
        let found = accept(&document(
            ISSUER,
            "https://keys.example.com:8443/oauth/jwks?v=2",
        ));
        assert_eq!(
            found.unwrap(),
            JwksUri {
                authority: "keys.example.com:8443".into(),
                path: "/oauth/jwks?v=2".into()
            }
        );
        let plain = accept(&document(ISSUER, "http://127.0.0.1:9000")).unwrap();
        assert_eq!(
            (plain.authority.as_str(), plain.path.as_str()),
            ("127.0.0.1:9000", "/")
        );
    }

    #[test]
    fn attack_another_issuers_document_is_refused_even_nearly_the_same() {
        for other in [
            "https://idp.example.com/",
            "https://IDP.example.com",
            "HTTPS://idp.example.com",
            "https://idp.example.com ",
            "https://idp.example.com/tenant-b",
            "http://idp.example.com",
            "",
        ] {
            let refused = accept(&document(other, "https://idp.example.com/jwks"));
            assert_eq!(
                refused,
                Err(FetchError::IssuerMismatch {
                    configured: ISSUER.into(),
                    found: format!("{other:?}")
                }),
                "{other:?}"
            );
        }
        let line = accept(&document("https://evil.example", "https://x/jwks"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            line,
            "issuer mismatch: the discovery document's issuer is \"https://evil.example\", the \
             provider's is \"https://idp.example.com\" (they must be identical, OpenID Connect \
             Discovery 1.0 §4.3)"
        );
    }

    #[test]
    fn attack_a_mismatching_issuer_is_shown_escaped_and_cut() {
        let long = format!("https://evil.example/\n{}", "a".repeat(10_000));
        let Err(FetchError::IssuerMismatch { found, .. }) = accept(&document(&long, "https://x/"))
        else {
            panic!("refused as a mismatch");
        };
        assert!(!found.contains('\n') && found.contains("\\n"), "{found}");
        assert!(found.len() < 250, "{} chars", found.len());
    }

    #[test]
    fn attack_a_jwks_uri_that_is_no_fetchable_url_is_refused() {
        for (uri, why) in [
            (
                "ftp://idp.example.com/jwks",
                "must start with https:// or http://",
            ),
            ("file:///etc/passwd", "must start with https:// or http://"),
            (
                "//idp.example.com/jwks",
                "must start with https:// or http://",
            ),
            ("/jwks", "must start with https:// or http://"),
            (
                "HTTPS://idp.example.com/jwks",
                "must start with https:// or http://",
            ),
            ("https:///jwks", "has no host"),
            ("https://user:pass@idp.example.com/jwks", "has userinfo"),
            ("https://idp.example.com@evil.example/jwks", "has userinfo"),
            (
                "https://idp.example.com/jwks#k",
                "has a fragment, or a query or backslash in its host",
            ),
            (
                "https://idp.example.com?/jwks",
                "has a fragment, or a query or backslash in its host",
            ),
            ("https://evil.example\\@idp.example.com/", "has userinfo"),
            (
                "https://idp.example.com/jw ks",
                "has a space, a control character or non-ASCII",
            ),
            (
                "https://idp.example.com/jwks\r\nx-injected: 1",
                "has a space, a control character or non-ASCII",
            ),
            (
                "https://idp.example.com/jwks\u{e9}",
                "has a space, a control character or non-ASCII",
            ),
        ] {
            assert_eq!(
                accept(&document(ISSUER, uri)),
                Err(FetchError::BadJwksUri(why)),
                "{uri:?}"
            );
        }
    }

    #[test]
    fn attack_a_document_that_is_not_one_is_refused_like_a_bad_jwks() {
        let not_a_document =
            |body: &[u8]| matches!(accept(body), Err(FetchError::NotADiscoveryDocument(_)));
        assert!(not_a_document(b"<html>moved</html>"));
        assert!(not_a_document(b"[]"));
        assert!(not_a_document(
            json!({ "issuer": ISSUER }).to_string().as_bytes()
        ));
        assert!(not_a_document(
            json!({ "jwks_uri": "https://x/" }).to_string().as_bytes()
        ));
        assert!(not_a_document(
            json!({ "issuer": ISSUER, "jwks_uri": ["https://x/"] })
                .to_string()
                .as_bytes()
        ));
        assert!(not_a_document(&[0xff, 0xfe]));
        // Two issuers: one reader takes the first, another the last; this one takes neither.
        let twice = format!(
            r#"{{"issuer":"https://evil.example","issuer":"{ISSUER}","jwks_uri":"https://x/"}}"#
        );
        assert!(not_a_document(twice.as_bytes()));
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(
            accept(deep.as_bytes()),
            Err(FetchError::TooLarge { .. })
        ));
        let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
        assert!(
            not_a_document(deep.as_bytes()),
            "nesting is bounded, no stack overflow"
        );
    }

    #[test]
    fn attack_a_huge_document_or_an_answer_that_is_not_a_200_is_refused() {
        let mut huge = document(ISSUER, "https://idp.example.com/jwks");
        huge.pop();
        huge.extend_from_slice(br#","padding":""#);
        huge.resize(MAX_DISCOVERY_BYTES + 10, b'a');
        huge.extend_from_slice(br#""}"#);
        assert_eq!(
            accept(&huge),
            Err(FetchError::TooLarge {
                size: MAX_DISCOVERY_BYTES + 12,
                limit: MAX_DISCOVERY_BYTES
            })
        );
        let good = document(ISSUER, "https://idp.example.com/jwks");
        for status in ["301", "302", "304", "404", "500", "204"] {
            assert_eq!(
                accept_discovery(Some(status), &good, ISSUER),
                Err(FetchError::Status(status.into())),
                "{status}"
            );
        }
        assert_eq!(
            accept_discovery(None, b"", ISSUER),
            Err(FetchError::NoResponse)
        );
    }
}
