//! An HTTP server whose behaviour a test switches at run time: a good answer, or one of the
//! ways a remote source fails (down, slow, 500, garbage, 10 MB, wrong content type, a reset in
//! the middle of the body). It answers GET and POST alike and records every request it read
//! (with its body), so a test can see what a POST carried and whether it was answered well.
//! Dropping it stops its thread and closes its socket.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 200 with this body (`application/json`).
    Healthy(String),
    Status500,
    /// 200 with bytes that are not JSON.
    Garbage,
    /// 200 with a 10 MB body.
    Huge,
    /// 200 with an HTML error page (`text/html`), as a captive portal or proxy sends.
    WrongContentType,
    /// Answers after this long (past the caller's timeout).
    Slow(Duration),
    /// Promises a body, sends part of it, then resets the connection.
    ResetMidBody,
    /// Accepts and closes at once without answering (as a crashed process behind a port).
    Down,
}

/// A request the server read, and how it was answered.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// With the query string.
    pub path: String,
    /// Names lowercase.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Answered with `Fault::Healthy` (a good answer), not with a fault.
    pub healthy: bool,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What every connection's thread shares with the server.
#[derive(Default)]
struct State {
    /// Healthy bodies by path (without the query), instead of the `Fault::Healthy` body.
    routes: HashMap<String, String>,
    received: Vec<Received>,
}

pub struct FaultServer {
    pub port: u16,
    fault: Arc<Mutex<Fault>>,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FaultServer {
    pub fn start(healthy_body: &str) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let fault = Arc::new(Mutex::new(Fault::Healthy(healthy_body.to_owned())));
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (fault, state, stop) = (fault.clone(), state.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let fault = fault.lock().unwrap().clone();
                            let state = state.clone();
                            std::thread::spawn(move || answer(stream, &fault, &state));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        FaultServer {
            port,
            fault,
            state,
            stop,
            thread: Some(thread),
        }
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    /// While healthy, requests for `path` (without the query) are answered with `body`.
    pub fn route(&self, path: &str, body: &str) {
        let mut state = self.state.lock().unwrap();
        state.routes.insert(path.to_owned(), body.to_owned());
    }

    /// Every request read so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }
}

/// Reads one request (head and `content-length` body); `None` if the peer went away first.
fn read_request(stream: &mut TcpStream) -> Option<Received> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split_whitespace();
    let method = request_line.next().unwrap_or_default().to_owned();
    let path = request_line.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = bytes[end..].to_vec();
    while body.len() < length {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
    Some(Received {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        healthy: false,
    })
}

fn answer(mut stream: TcpStream, fault: &Fault, state: &Mutex<State>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Some(mut received) = read_request(&mut stream) else {
        return;
    };
    let fault = match fault {
        Fault::Healthy(body) => {
            received.healthy = true;
            let path = received.path.split('?').next().unwrap_or_default();
            let routed = state.lock().unwrap().routes.get(path).cloned();
            Fault::Healthy(routed.unwrap_or_else(|| body.clone()))
        }
        other => other.clone(),
    };
    state.lock().unwrap().received.push(received);
    let reply = |stream: &mut TcpStream, status: &str, kind: &str, body: &[u8]| {
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body);
    };
    match &fault {
        Fault::Healthy(body) => reply(&mut stream, "200 OK", "application/json", body.as_bytes()),
        Fault::Status500 => reply(
            &mut stream,
            "500 Internal Server Error",
            "text/plain",
            b"down",
        ),
        Fault::Garbage => reply(
            &mut stream,
            "200 OK",
            "application/json",
            b"\x00\xff{{not json",
        ),
        Fault::Huge => reply(
            &mut stream,
            "200 OK",
            "application/json",
            &vec![b'['; 10 * 1024 * 1024],
        ),
        Fault::WrongContentType => reply(
            &mut stream,
            "200 OK",
            "text/html",
            b"<html><body>Please log in to the network</body></html>",
        ),
        Fault::Slow(delay) => {
            std::thread::sleep(*delay);
            reply(&mut stream, "200 OK", "application/json", b"{}");
        }
        Fault::ResetMidBody => {
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{\"keys\": [",
            );
            // SO_LINGER 0: the close sends a reset, not a clean end.
            let socket = socket2::SockRef::from(&stream);
            let _ = socket.set_linger(Some(Duration::ZERO));
        }
        Fault::Down => {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
