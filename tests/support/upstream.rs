//! A real HTTP/1.1 upstream on a free loopback port that records every request it receives.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The body as received (by `content-length`), read lossily as text.
    pub body: String,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct Upstream {
    pub port: u16,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    response: Arc<Mutex<(u16, String)>>,
    routes: Arc<Mutex<Vec<Route>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

/// Extra response headers for requests whose path starts with `prefix`.
#[derive(Debug, Clone)]
struct Route {
    prefix: String,
    /// Raw bytes: a test may answer with a value that is not UTF-8.
    headers: Vec<(String, Vec<u8>)>,
}

pub const UPSTREAM_BODY: &str = "hello from the test upstream";

impl Upstream {
    pub fn start() -> Upstream {
        Upstream::serving(200, UPSTREAM_BODY)
    }

    /// An upstream that answers every request with this status and body (e.g. a JWKS).
    pub fn serving(status: u16, body: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let response = Arc::new(Mutex::new((status, body.to_owned())));
        let routes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let seen = Arc::clone(&seen);
            let stop = Arc::clone(&stop);
            let response = Arc::clone(&response);
            let routes = Arc::clone(&routes);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        let seen = Arc::clone(&seen);
                        let response = Arc::clone(&response);
                        let routes = Arc::clone(&routes);
                        std::thread::spawn(move || serve(stream, &seen, &response, &routes));
                    }
                }
            })
        };
        Upstream {
            port,
            seen,
            response,
            routes,
            stop,
            acceptor: Some(acceptor),
        }
    }

    pub fn set_response(&self, status: u16, body: &str) {
        *self.response.lock().unwrap() = (status, body.to_owned());
    }

    /// Requests under `prefix` get these response headers too (e.g. a logout endpoint
    /// answering with a revocation header).
    pub fn add_response_headers(&self, prefix: &str, headers: &[(&str, &str)]) {
        self.routes.lock().unwrap().push(Route {
            prefix: prefix.to_owned(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
                .collect(),
        });
    }

    /// Like `add_response_headers`, with values written byte for byte (e.g. not UTF-8).
    pub fn add_raw_response_headers(&self, prefix: &str, headers: &[(&str, &[u8])]) {
        self.routes.lock().unwrap().push(Route {
            prefix: prefix.to_owned(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.to_vec()))
                .collect(),
        });
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests that carried `x-test-case: <case>`.
    pub fn seen_case(&self, case: &str) -> Vec<SeenRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.header("x-test-case") == Some(case))
            .collect()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Serves keep-alive requests on one connection until the peer closes it.
fn serve(
    stream: TcpStream,
    seen: &Mutex<Vec<SeenRequest>>,
    response: &Mutex<(u16, String)>,
    routes: &Mutex<Vec<Route>>,
) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    // Lines are read as bytes: a header value that is not UTF-8 (Envoy passes such bytes
    // through) is recorded lossily rather than ending the connection.
    let read_line = |reader: &mut BufReader<TcpStream>| -> Option<String> {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(String::from_utf8_lossy(&line).into_owned()),
        }
    };
    loop {
        let Some(request_line) = read_line(&mut reader) else {
            return;
        };
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        loop {
            let Some(line) = read_line(&mut reader) else {
                return;
            };
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let extra: Vec<u8> = routes
            .lock()
            .unwrap()
            .iter()
            .filter(|r| path.starts_with(&r.prefix))
            .flat_map(|r| r.headers.iter())
            .flat_map(|(n, v)| [format!("{n}: ").as_bytes(), v, b"\r\n"].concat())
            .collect();
        seen.lock().unwrap().push(SeenRequest {
            method,
            path,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        let (status, body) = response.lock().unwrap().clone();
        let response = [
            format!("HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\n").as_bytes(),
            &extra,
            format!("content-length: {}\r\n\r\n{body}", body.len()).as_bytes(),
        ]
        .concat();
        if writer.write_all(&response).is_err() {
            return;
        }
    }
}
