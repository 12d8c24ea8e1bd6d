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
    headers: Vec<(String, String)>,
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
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
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
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
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
        let extra: String = routes
            .lock()
            .unwrap()
            .iter()
            .filter(|r| path.starts_with(&r.prefix))
            .flat_map(|r| r.headers.iter())
            .map(|(n, v)| format!("{n}: {v}\r\n"))
            .collect();
        seen.lock().unwrap().push(SeenRequest {
            method,
            path,
            headers,
        });
        let (status, body) = response.lock().unwrap().clone();
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\n{extra}content-length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}
