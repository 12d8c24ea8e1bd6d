//! An HTTP server whose behaviour a test switches at run time: a good answer, or one of the
//! ways a remote source fails (down, slow, 500, garbage, 10 MB, wrong content type, a reset in
//! the middle of the body). Dropping it stops its thread and closes its socket.

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

pub struct FaultServer {
    pub port: u16,
    fault: Arc<Mutex<Fault>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FaultServer {
    pub fn start(healthy_body: &str) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let fault = Arc::new(Mutex::new(Fault::Healthy(healthy_body.to_owned())));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (fault, stop) = (fault.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let fault = fault.lock().unwrap().clone();
                            std::thread::spawn(move || answer(stream, &fault));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        FaultServer {
            port,
            fault,
            stop,
            thread: Some(thread),
        }
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }
}

fn answer(mut stream: TcpStream, fault: &Fault) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    // The request head (no body expected).
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let reply = |stream: &mut TcpStream, status: &str, kind: &str, body: &[u8]| {
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body);
    };
    match fault {
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
