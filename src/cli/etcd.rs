//! etcd v3's JSON gateway (`/v3/...` on the client port), the calls the CLI makes: put,
//! delete, range, lease grant and time-to-live, authenticate. Plain HTTP/1.1 over a std
//! `TcpStream`, one connection per call (`Connection: close`), so the CLI needs no HTTP or
//! gRPC crate. Keys and values travel base64 and 64-bit numbers as strings, as the gateway
//! writes them. An endpoint that cannot be reached hands the call to the next one; an answer
//! from etcd that is an error ends it, naming the endpoint and never a password or token.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use base64::{engine::general_purpose::STANDARD, Engine};
use serde_json::{json, Value};

use super::CliError;
use crate::revocation::etcd::proto::prefix_range_end;

/// Connecting, sending and each read: a member that hangs is as good as down.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The port etcd's clients use when an endpoint names none.
const DEFAULT_PORT: u16 = 2379;
/// Keys per range call: a page well under etcd's default 1.5 MiB request limit's answers.
const PAGE_KEYS: u32 = 500;
/// An answer larger than this is not etcd's (a page of 500 keys is far smaller).
const MAX_RESPONSE_BYTES: u64 = 64 << 20;
/// Enough of an error message for an operator; the rest is noise.
const MAX_MESSAGE_CHARS: usize = 300;

/// One `--etcd` endpoint: as given (for messages) and the `host:port` dialled.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    given: String,
    authority: String,
}

/// A key as etcd holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// The lease's ID (decimal, as the gateway writes it); `None`: no lease.
    pub lease: Option<String>,
}

/// The etcd cluster behind `--etcd`, logged in when `--user` was given.
pub struct Gateway {
    endpoints: Vec<Endpoint>,
    /// The endpoint that answered last: later calls start there.
    current: usize,
    /// What `authenticate` returned, sent as `Authorization` on every later call.
    auth_token: Option<String>,
    /// Kept only to scrub it from any message etcd sends back.
    password: Option<String>,
}

/// How one call failed.
enum CallError {
    /// No connection, or it broke before the answer: the next endpoint may do better.
    Unreachable(io::Error),
    /// An answer that is an error, or not etcd's: final.
    Answered(String),
}

impl Gateway {
    /// The endpoints of `--etcd` (comma-separated) and, with `--user NAME:PASSWORD`, a login.
    pub fn open(endpoints: &str, user: Option<&str>) -> Result<Gateway, CliError> {
        let mut gateway = Gateway {
            endpoints: parse_endpoints(endpoints)?,
            current: 0,
            auth_token: None,
            password: None,
        };
        if let Some(user) = user {
            gateway.authenticate(user)?;
        }
        Ok(gateway)
    }

    /// The endpoints, for messages.
    pub fn describe(&self) -> String {
        let given: Vec<&str> = self.endpoints.iter().map(|e| e.given.as_str()).collect();
        given.join(",")
    }

    fn authenticate(&mut self, user: &str) -> Result<(), CliError> {
        let (name, password) = user
            .split_once(':')
            .filter(|(name, _)| !name.is_empty())
            .ok_or_else(|| CliError::Usage("--user takes NAME:PASSWORD".to_owned()))?;
        self.password = Some(password.to_owned());
        let answer = self.call(
            "/v3/auth/authenticate",
            &json!({ "name": name, "password": password }),
        )?;
        let token = answer
            .get("token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| self.unexpected("authenticate"))?;
        self.auth_token = Some(token.to_owned());
        Ok(())
    }

    /// A lease of `ttl` seconds; its ID. etcd may round a short TTL up to its minimum.
    pub fn grant_lease(&mut self, ttl: i64) -> Result<String, CliError> {
        let answer = self.call("/v3/lease/grant", &json!({ "TTL": ttl }))?;
        number(answer.get("ID"))
            .map(|id| id.to_string())
            .ok_or_else(|| self.unexpected("lease grant"))
    }

    /// The seconds left on a lease; `None` when it has ended (or never was).
    pub fn lease_ttl(&mut self, lease: &str) -> Result<Option<i64>, CliError> {
        let answer = self.call("/v3/lease/timetolive", &json!({ "ID": lease }))?;
        // -1: expired or unknown.
        Ok(number(answer.get("TTL")).filter(|ttl| *ttl >= 0))
    }

    pub fn put(&mut self, key: &[u8], value: &[u8], lease: Option<&str>) -> Result<(), CliError> {
        let mut body = json!({ "key": STANDARD.encode(key), "value": STANDARD.encode(value) });
        if let (Some(lease), Some(object)) = (lease, body.as_object_mut()) {
            object.insert("lease".to_owned(), json!(lease));
        }
        self.call("/v3/kv/put", &body).map(|_| ())
    }

    /// Deletes one key; true when it was there.
    pub fn delete(&mut self, key: &[u8]) -> Result<bool, CliError> {
        let answer = self.call(
            "/v3/kv/deleterange",
            &json!({ "key": STANDARD.encode(key) }),
        )?;
        Ok(number(answer.get("deleted")).unwrap_or(0) > 0)
    }

    /// One key, if it is there.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<StoredKey>, CliError> {
        let answer = self.call("/v3/kv/range", &json!({ "key": STANDARD.encode(key) }))?;
        Ok(self.stored_keys(&answer)?.into_iter().next())
    }

    /// Every key under `prefix`, in key order, read page by page at one revision (so the
    /// pages make one snapshot even while others write).
    pub fn under_prefix(&mut self, prefix: &[u8]) -> Result<Vec<StoredKey>, CliError> {
        let range_end = STANDARD.encode(prefix_range_end(prefix));
        let mut keys = Vec::new();
        let mut start = prefix.to_vec();
        let mut revision = None;
        loop {
            let mut request = json!({
                "key": STANDARD.encode(&start),
                "range_end": range_end,
                "limit": PAGE_KEYS,
            });
            if let (Some(revision), Some(object)) = (revision, request.as_object_mut()) {
                object.insert("revision".to_owned(), json!(revision));
            }
            let answer = self.call("/v3/kv/range", &request)?;
            revision = revision.or_else(|| number(answer.pointer("/header/revision")));
            let page = self.stored_keys(&answer)?;
            let more = answer.get("more").and_then(Value::as_bool).unwrap_or(false);
            match page.last() {
                // The next page starts just after the last key: that key plus a zero byte.
                Some(last) if more => start = [last.key.as_slice(), &[0]].concat(),
                _ => {
                    keys.extend(page);
                    return Ok(keys);
                }
            }
            keys.extend(page);
        }
    }

    /// A range answer's `kvs`, decoded.
    fn stored_keys(&self, answer: &Value) -> Result<Vec<StoredKey>, CliError> {
        let Some(kvs) = answer.get("kvs") else {
            // The gateway leaves out empty fields: no `kvs`, no keys.
            return Ok(Vec::new());
        };
        let kvs = kvs.as_array().ok_or_else(|| self.unexpected("range"))?;
        kvs.iter()
            .map(|kv| stored_key(kv).ok_or_else(|| self.unexpected("range")))
            .collect()
    }

    /// POSTs `body` to `path`, on the current endpoint and then on the others while they
    /// cannot be reached. Every call made here is safe to send again (a lease granted twice
    /// leaves one unused, which ends by itself).
    fn call(&mut self, path: &str, body: &Value) -> Result<Value, CliError> {
        let body = body.to_string();
        let mut unreachable = Vec::new();
        for offset in 0..self.endpoints.len() {
            let at = (self.current + offset) % self.endpoints.len();
            let Some(endpoint) = self.endpoints.get(at) else {
                continue;
            };
            match call_once(endpoint, path, &body, self.auth_token.as_deref()) {
                Ok(answer) => {
                    self.current = at;
                    return Ok(answer);
                }
                Err(CallError::Answered(why)) => {
                    return Err(CliError::Input(format!(
                        "etcd at {}: {}{}",
                        endpoint.given,
                        self.scrubbed(&why),
                        self.login_hint(&why)
                    )));
                }
                Err(CallError::Unreachable(e)) => {
                    unreachable.push(format!("{}: {e}", endpoint.given));
                }
            }
        }
        Err(CliError::Input(format!(
            "cannot reach etcd ({})",
            unreachable.join("; ")
        )))
    }

    fn unexpected(&self, call: &str) -> CliError {
        let endpoint = self
            .endpoints
            .get(self.current)
            .map_or("etcd", |e| e.given.as_str());
        CliError::Input(format!(
            "etcd at {endpoint}: unexpected answer to {call} (is it etcd v3's client port?)"
        ))
    }

    /// etcd with auth enabled calls a request without a login one without a user name.
    fn login_hint(&self, why: &str) -> &'static str {
        if self.auth_token.is_none() && why.contains("user name is empty") {
            " (etcd has auth enabled: give --user NAME:PASSWORD)"
        } else {
            ""
        }
    }

    /// A message without the password or the auth token in it, should etcd ever echo one.
    fn scrubbed(&self, message: &str) -> String {
        let mut message = message.to_owned();
        for secret in [&self.password, &self.auth_token].into_iter().flatten() {
            if !secret.is_empty() {
                message = message.replace(secret.as_str(), "[redacted]");
            }
        }
        message
    }
}

/// `ENDPOINT[,ENDPOINT...]`: `http://HOST:PORT` or `HOST:PORT` (port 2379 when left out).
fn parse_endpoints(text: &str) -> Result<Vec<Endpoint>, CliError> {
    let endpoints = text
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(parse_endpoint)
        .collect::<Result<Vec<_>, _>>()?;
    if endpoints.is_empty() {
        return Err(CliError::Usage(
            "--etcd takes ENDPOINT[,ENDPOINT...], e.g. http://127.0.0.1:2379".to_owned(),
        ));
    }
    Ok(endpoints)
}

fn parse_endpoint(given: &str) -> Result<Endpoint, CliError> {
    if given.starts_with("https://") {
        return Err(CliError::Usage(format!(
            "--etcd {given}: TLS is not supported; give a plain-HTTP client URL (http://HOST:PORT)"
        )));
    }
    let authority = given
        .strip_prefix("http://")
        .unwrap_or(given)
        .trim_end_matches('/');
    if authority.is_empty() || authority.contains(['/', '@', '?', '#', ' ']) {
        return Err(CliError::Usage(format!(
            "--etcd {given}: not an endpoint (http://HOST:PORT or HOST:PORT)"
        )));
    }
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok());
    let authority = if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:{DEFAULT_PORT}")
    };
    Ok(Endpoint {
        given: given.to_owned(),
        authority,
    })
}

/// One request on a connection of its own, and the answer's JSON.
fn call_once(
    endpoint: &Endpoint,
    path: &str,
    body: &str,
    auth_token: Option<&str>,
) -> Result<Value, CallError> {
    let mut stream = connect(&endpoint.authority).map_err(CallError::Unreachable)?;
    let request = request_text(&endpoint.authority, path, body, auth_token);
    stream
        .write_all(request.as_bytes())
        .map_err(CallError::Unreachable)?;
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE_BYTES)
        .read_to_end(&mut raw)
        .map_err(CallError::Unreachable)?;
    if raw.is_empty() {
        return Err(CallError::Unreachable(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "closed without an answer",
        )));
    }
    let (status, body) = parse_response(&raw).map_err(CallError::Answered)?;
    answer_json(status, &body).map_err(CallError::Answered)
}

/// The first address of `authority` that takes a connection within the timeout.
fn connect(authority: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    let addresses: Vec<SocketAddr> = authority.to_socket_addrs()?.collect();
    for address in addresses {
        match TcpStream::connect_timeout(&address, TIMEOUT) {
            Ok(stream) => {
                stream.set_read_timeout(Some(TIMEOUT))?;
                stream.set_write_timeout(Some(TIMEOUT))?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn request_text(authority: &str, path: &str, body: &str, auth_token: Option<&str>) -> String {
    let authorization = auth_token.map_or(String::new(), |t| format!("Authorization: {t}\r\n"));
    format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{authorization}Connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// An HTTP/1.1 answer read to its end: the status and the body (de-chunked).
fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let not_http = || "not an HTTP answer (is it etcd's client port?)".to_owned();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(not_http)?;
    let head = std::str::from_utf8(raw.get(..split).unwrap_or_default()).map_err(|_| not_http())?;
    let body = raw.get(split + 4..).unwrap_or_default();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(not_http)?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        }
    }
    let body = if chunked {
        dechunk(body).ok_or_else(|| "a broken chunked answer".to_owned())?
    } else {
        length.and_then(|n| body.get(..n)).unwrap_or(body).to_vec()
    };
    Ok((status, body))
}

/// A chunked body's bytes (RFC 9112 7.1); the trailers after the last chunk are dropped.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_line = std::str::from_utf8(rest.get(..line_end)?).ok()?;
        let size_hex = size_line.split(';').next()?.trim();
        let size = usize::from_str_radix(size_hex, 16).ok()?;
        rest = rest.get(line_end + 2..)?;
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// A 200's JSON; anything else says why, in etcd's words where it gave some.
fn answer_json(status: u16, body: &[u8]) -> Result<Value, String> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let error = json.as_ref().and_then(error_message);
    match (status, json, error) {
        (200, Some(json), None) => Ok(json),
        (_, _, Some(message)) => Err(format!("{message} (HTTP {status})")),
        (200, _, None) => Err("an answer that is not JSON (is it etcd's client port?)".into()),
        (_, _, None) => Err(format!(
            "HTTP {status} (is it etcd v3.4 or later's client port?)"
        )),
    }
}

/// etcd's `message` (or `error`) of an error answer, cut short and on one line.
fn error_message(json: &Value) -> Option<String> {
    let message = ["message", "error"]
        .iter()
        .find_map(|field| json.get(field).and_then(Value::as_str))
        .filter(|m| !m.is_empty())?;
    Some(
        message
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(MAX_MESSAGE_CHARS)
            .collect(),
    )
}

/// One of `kvs`: key and value base64 (a key set to "" has no `value`), `lease` a string.
fn stored_key(kv: &Value) -> Option<StoredKey> {
    let decode = |field: &str| match kv.get(field) {
        None => Some(Vec::new()),
        Some(text) => STANDARD.decode(text.as_str()?).ok(),
    };
    let lease = number(kv.get("lease")).filter(|id| *id != 0);
    Some(StoredKey {
        key: decode("key")?,
        value: decode("value")?,
        lease: lease.map(|id| id.to_string()),
    })
}

/// A 64-bit number as the gateway writes it (a string), or as a JSON number.
fn number(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::String(text) => text.parse().ok(),
        other => other.as_i64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_with_or_without_scheme_and_port() {
        let parsed = parse_endpoints("http://127.0.0.1:2379, 127.0.0.1:2380/,etcd").unwrap();
        let authorities: Vec<&str> = parsed.iter().map(|e| e.authority.as_str()).collect();
        assert_eq!(
            authorities,
            ["127.0.0.1:2379", "127.0.0.1:2380", "etcd:2379"]
        );
        assert_eq!(parsed[1].given, "127.0.0.1:2380/");
        for bad in [
            "",
            ",",
            "https://127.0.0.1:2379",
            "http://h:1/v3",
            "u:p@h:1",
        ] {
            assert!(
                matches!(parse_endpoints(bad), Err(CliError::Usage(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn answers_with_a_length_or_in_chunks() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}extra";
        assert_eq!(parse_response(plain).unwrap(), (200, b"{}".to_vec()));
        let chunked = b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: Chunked\r\n\r\n\
                        3\r\n{\"a\r\n4;x=y\r\n\":1}\r\n0\r\nGrpc-Trailer: x\r\n\r\n";
        assert_eq!(
            parse_response(chunked).unwrap(),
            (404, br#"{"a":1}"#.to_vec())
        );
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
    }

    #[test]
    fn errors_are_etcds_words_or_the_status() {
        let lease = br#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#;
        assert_eq!(
            answer_json(404, lease).unwrap_err(),
            "etcdserver: requested lease not found (HTTP 404)"
        );
        assert_eq!(
            answer_json(404, b"Not Found\n").unwrap_err(),
            "HTTP 404 (is it etcd v3.4 or later's client port?)"
        );
        assert!(answer_json(200, b"<html>").is_err());
        assert!(answer_json(200, br#"{"error":"x"}"#).is_err());
        assert_eq!(answer_json(200, br#"{"a":1}"#).unwrap(), json!({"a":1}));
        let long = json!({ "message": format!("a\nb{}", "x".repeat(1000)) });
        let message = error_message(&long).unwrap();
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS);
        assert!(message.starts_with("a b"));
    }

    #[test]
    fn range_answers_decode_keys_values_and_leases() {
        let kv = json!({ "key": "L3AvYQ==", "value": "e30=", "lease": "7587" });
        assert_eq!(
            stored_key(&kv),
            Some(StoredKey {
                key: b"/p/a".to_vec(),
                value: b"{}".to_vec(),
                lease: Some("7587".into()),
            })
        );
        let bare = stored_key(&json!({ "key": "L3AvYQ==" })).unwrap();
        assert_eq!((bare.value, bare.lease), (Vec::new(), None));
        assert_eq!(stored_key(&json!({ "key": "!!" })), None);
        assert_eq!(number(Some(&json!("-1"))), Some(-1));
        assert_eq!(number(Some(&json!(30))), Some(30));
        assert_eq!(number(Some(&json!("x"))), None);
    }

    #[test]
    fn messages_never_carry_the_password_or_the_auth_token() {
        let gateway = Gateway {
            endpoints: parse_endpoints("127.0.0.1:1").unwrap(),
            current: 0,
            auth_token: Some("tok.42".into()),
            password: Some("s3cret".into()),
        };
        assert_eq!(
            gateway.scrubbed("bad s3cret for tok.42"),
            "bad [redacted] for [redacted]"
        );
    }

    #[test]
    fn an_unreachable_endpoint_is_named() {
        // Port 1 on loopback: nothing listens there.
        let Err(CliError::Input(why)) = Gateway::open("127.0.0.1:1", Some("root:pw")) else {
            panic!("reached port 1");
        };
        assert!(why.starts_with("cannot reach etcd (127.0.0.1:1: "), "{why}");
        assert!(!why.contains("pw"), "{why}");
    }
}
