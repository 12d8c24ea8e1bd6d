//! A raw HTTP/1.1 client: full control over repeated and odd headers, which client
//! libraries normalise away.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

pub fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    request(port, "GET", path, headers)
}

pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    try_request(port, method, path, headers)
        .unwrap_or_else(|e| panic!("{method} {path} on port {port}: {e}"))
}

/// A form POST (`application/x-www-form-urlencoded`).
pub fn post_form(port: u16, path: &str, headers: &[(&str, &str)], form: &str) -> Response {
    post(
        port,
        path,
        headers,
        "application/x-www-form-urlencoded",
        form,
    )
}

pub fn post_json(port: u16, path: &str, json: &str) -> Response {
    post(port, path, &[], "application/json", json)
}

/// A POST with a `content-length` body of the given type.
pub fn post(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    content_type: &str,
    body: &str,
) -> Response {
    let length = body.len().to_string();
    let mut all = headers.to_vec();
    all.push(("content-type", content_type));
    all.push(("content-length", &length));
    send(port, "POST", path, &all, body.as_bytes())
        .unwrap_or_else(|e| panic!("POST {path} on port {port}: {e}"))
}

pub fn try_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    send(port, method, path, headers, b"")
}

/// A GET from a given loopback source address (127.0.0.2, ...): what a client elsewhere
/// looks like to Envoy.
pub fn get_from(source: &str, port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    let stream = connect_from(source, port)
        .unwrap_or_else(|e| panic!("connect from {source} to port {port}: {e}"));
    exchange(stream, "GET", path, headers, b"")
        .unwrap_or_else(|e| panic!("GET {path} from {source} on port {port}: {e}"))
}

fn connect_from(source: &str, port: u16) -> std::io::Result<TcpStream> {
    use socket2::{Domain, SockAddr, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    let local: std::net::SocketAddr = format!("{source}:0")
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    socket.bind(&SockAddr::from(local))?;
    let remote: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    socket.connect(&SockAddr::from(remote))?;
    Ok(socket.into())
}

fn send(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    exchange(stream, method, path, headers, body)
}

fn exchange(
    mut stream: TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    // `test.local` unless the caller gives its own `host`.
    let host = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("host"))
        .map_or("test.local", |(_, value)| *value);
    let mut raw = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\n");
    let headers = headers
        .iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("host"));
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("connection: close\r\n\r\n");
    stream.write_all(raw.as_bytes())?;
    stream.write_all(body)?;
    // Read until the message is complete rather than to EOF: after a local reply Envoy holds
    // the connection open for its delayed-close timeout.
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while !is_complete(&bytes) {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
    }
    Ok(parse(&String::from_utf8_lossy(&bytes)))
}

fn is_complete(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let head = head.to_ascii_lowercase();
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with("0\r\n\r\n");
    }
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|length| body.len() >= length)
}

fn parse(text: &str) -> Response {
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete HTTP response: {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    Response {
        status,
        body: if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
        headers,
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size_line, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {size_line:?}"));
        if size == 0 {
            break;
        }
        body.push_str(&after[..size]);
        rest = &after[size..];
        rest = rest.strip_prefix("\r\n").unwrap_or(rest);
    }
    body
}

/// A request written byte for byte: header values may hold control characters or bytes that
/// are not UTF-8 (what a hostile client can put on the wire). `Err` when the connection fails
/// or ends without a complete response (e.g. Envoy resets it).
pub fn raw_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &[u8])],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    let mut raw = format!("{method} {path} HTTP/1.1\r\nhost: test.local\r\n").into_bytes();
    for (name, value) in headers {
        raw.extend_from_slice(name.as_bytes());
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(value);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"connection: close\r\n\r\n");
    // Envoy may answer (400, 431) and close before it has read everything: a failed write
    // still leaves its answer to read.
    let written = stream.write_all(&raw);
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while !is_complete(&bytes) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if bytes.is_empty() => return Err(written.err().unwrap_or(e)),
            Err(_) => break,
        }
    }
    if !String::from_utf8_lossy(&bytes).contains("\r\n\r\n") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("no complete response ({} bytes)", bytes.len()),
        ));
    }
    Ok(parse(&String::from_utf8_lossy(&bytes)))
}
