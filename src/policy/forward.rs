//! What goes upstream with an allowed request: the credential (or not), the verified payload,
//! and claims copied into headers.

use serde_json::Value;

/// A claim copied into a request header (`claim_to_headers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimHeader {
    /// `a.b.c` split on dots: nested objects.
    pub claim_path: Vec<String>,
    /// Lower case.
    pub header: String,
}

/// Per provider.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardPolicy {
    /// Keep the credential in the upstream request (default false: it is removed).
    pub forward: bool,
    pub payload_header: Option<String>,
    pub claim_headers: Vec<ClaimHeader>,
}

impl ForwardPolicy {
    /// Every header this provider may write: removed from every incoming request first.
    pub fn written_headers(&self) -> impl Iterator<Item = &str> {
        self.payload_header
            .iter()
            .map(String::as_str)
            .chain(self.claim_headers.iter().map(|c| c.header.as_str()))
    }

    /// Headers for a verified token. `payload_b64` is the token's payload segment as sent;
    /// `payload_json` its decoded bytes (parsed only when claims are copied).
    pub fn upstream_headers(
        &self,
        payload_b64: &str,
        payload_json: &[u8],
    ) -> Vec<(String, String)> {
        let mut headers = Vec::new();
        if let Some(name) = &self.payload_header {
            headers.push((name.clone(), payload_b64.to_owned()));
        }
        if self.claim_headers.is_empty() {
            return headers;
        }
        let Ok(payload) = serde_json::from_slice::<Value>(payload_json) else {
            return headers;
        };
        for claim in &self.claim_headers {
            let value = claim
                .claim_path
                .iter()
                .try_fold(&payload, |v, key| v.get(key.as_str()));
            if let Some(text) = value.and_then(scalar_text) {
                headers.push((claim.header.clone(), text));
            }
        }
        headers
    }
}

/// Scalars only: strings as they are, numbers and booleans as JSON text. A string that could
/// not be a header value (control characters) is left out rather than altered.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.chars().any(char::is_control) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(value.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> ForwardPolicy {
        let claim = |path: &str, header: &str| ClaimHeader {
            claim_path: path.split('.').map(str::to_owned).collect(),
            header: header.to_owned(),
        };
        ForwardPolicy {
            forward: false,
            payload_header: Some("x-jwt-payload".into()),
            claim_headers: vec![
                claim("sub", "x-jwt-sub"),
                claim("org.id", "x-org"),
                claim("admin", "x-admin"),
                claim("n", "x-n"),
                claim("roles", "x-roles"),
                claim("missing", "x-missing"),
                claim("evil", "x-evil"),
            ],
        }
    }

    #[test]
    fn payload_and_scalar_claims_become_headers() {
        let payload = json!({
            "sub": "alice", "org": { "id": "o-1" }, "admin": true, "n": 42,
            "roles": ["a"], "evil": "x\r\nset-cookie: y"
        });
        let headers = policy().upstream_headers("eyJzdWIi", payload.to_string().as_bytes());
        assert_eq!(
            headers,
            vec![
                ("x-jwt-payload".to_owned(), "eyJzdWIi".to_owned()),
                ("x-jwt-sub".to_owned(), "alice".to_owned()),
                ("x-org".to_owned(), "o-1".to_owned()),
                ("x-admin".to_owned(), "true".to_owned()),
                ("x-n".to_owned(), "42".to_owned()),
            ]
        );
    }

    #[test]
    fn written_headers_are_listed_for_removal() {
        let p = policy();
        let names: Vec<&str> = p.written_headers().collect();
        assert_eq!(names.first(), Some(&"x-jwt-payload"));
        assert!(names.contains(&"x-org"));
        assert_eq!(names.len(), 8);
    }
}
