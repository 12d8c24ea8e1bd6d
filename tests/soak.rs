//! Soak: a long mixed load (valid, invalid, revoked, misused tokens) on a real Envoy with two
//! workers while the filter is reconfigured again and again through a dynamic listener read
//! from a watched file. Every request's answer is checked: no 5xx, nothing that should be
//! refused reaches the upstream, no run-time revocation is lost across reconfigurations, and
//! Envoy's memory after warm-up stays within 5%.
//!
//! `make test` runs a short version; `make soak` runs 1,000,000 requests and 100
//! reconfigurations (`SOAK_REQUESTS`, `SOAK_RECONFIGURATIONS`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;
use support::testkit;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::envoy::Envoy;
use support::http;
use support::ports::free_port;
use support::wasm_health::wasm_health_problems;
use testkit::{keys, mint, unix_now, Signer, ISSUER};

const STAT: &str = "wasmcustom.bearer_guard.";
/// Load threads; Envoy runs two workers (`--concurrency 2`).
const CLIENTS: usize = 4;
const WORKERS: u32 = 2;
/// Requests per connection before a client reconnects, so reconfigurations reach it and its
/// requests spread over both workers.
const REQUESTS_PER_CONNECTION: u64 = 500;
/// Each client revokes a fresh token at run time (`x-revoke-token: self`) this often.
const RUNTIME_REVOCATION_EVERY: u64 = 400;
/// Envoy's RSS may grow this much after warm-up.
const MAX_RSS_GROWTH: f64 = 0.05;
const DRAIN_SECONDS: u64 = 1;

const REVOKED: &str = "error_description=\"token revoked\"";
const ANOMALY: &str = "error_description=\"token use anomaly detected\"";

struct Settings {
    requests: u64,
    reconfigurations: u32,
}

fn settings() -> Settings {
    let number = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
            })
            .unwrap_or(default)
    };
    Settings {
        requests: number("SOAK_REQUESTS", 40_000),
        reconfigurations: u32::try_from(number("SOAK_RECONFIGURATIONS", 10)).unwrap(),
    }
}

#[test]
fn mixed_load_and_reconfigurations_lose_nothing_and_leak_nothing() {
    let settings = settings();
    let upstream = CountingUpstream::start();
    let lds = ListenerFile::new(free_port());
    lds.write(0);
    let envoy = Envoy::start_with_args(
        &bootstrap(&lds, upstream.port),
        "guarded",
        WORKERS,
        &[
            "--drain-time-s",
            &DRAIN_SECONDS.to_string(),
            "--drain-strategy",
            "immediate",
        ],
    )
    .unwrap();
    let tokens = Arc::new(Tokens::mint());
    let tally = Arc::new(Tally::default());

    // Warm-up: every kind of request on both workers, a few reconfigurations, then the baseline.
    let warm_up = (settings.requests / 20).max(2_000);
    run_load(envoy.port, warm_up, &tokens, &tally, 1_000_000);
    let warm_reconfigurations = settings.reconfigurations.min(5);
    for generation in 1..=warm_reconfigurations {
        reconfigure(&envoy, &lds, generation);
    }
    settle();
    let rss_after_warm_up = rss_kib(envoy.pid());
    let warm_up_tally = tally.snapshot();

    // The soak: the load and the remaining reconfigurations at the same time.
    let started = Instant::now();
    let reconfigurer = {
        let lds = lds.clone();
        let port = envoy.port;
        let count = settings.reconfigurations;
        std::thread::spawn(move || {
            for generation in warm_reconfigurations + 1..=count {
                reconfigure_at(port, &lds, generation);
            }
        })
    };
    run_load(envoy.port, settings.requests, &tokens, &tally, 2_000_000);
    reconfigurer.join().unwrap();
    let elapsed = started.elapsed();
    settle();
    let rss_at_end = rss_kib(envoy.pid());

    // Every token revoked at run time, on any worker, before any reconfiguration, stays refused.
    let revoked = tokens.runtime_revoked.lock().unwrap().clone();
    let mut client = Client::new(envoy.port);
    for token in &revoked {
        let reply = client.get("/must-deny/after-soak", Some(token));
        assert!(
            reply.status == 401 && reply.challenge.contains(REVOKED),
            "a token revoked at run time is served again after the soak: {} {}",
            reply.status,
            reply.challenge
        );
    }

    let total = tally.snapshot();
    let growth = (rss_at_end as f64 - rss_after_warm_up as f64) / rss_after_warm_up as f64;
    println!(
        "soak: {} requests ({} after warm-up) in {:.1} s ({:.0} req/s), {} reconfigurations, \
         {} run-time revocations, {} misused tokens, {} reconnects; RSS {} KiB after warm-up, \
         {} KiB at the end ({:+.2}%); outcomes {:?}",
        total.requests,
        total.requests - warm_up_tally.requests,
        elapsed.as_secs_f64(),
        (total.requests - warm_up_tally.requests) as f64 / elapsed.as_secs_f64(),
        settings.reconfigurations,
        revoked.len(),
        total.misused_tokens,
        total.reconnects,
        rss_after_warm_up,
        rss_at_end,
        growth * 100.0,
        total,
    );
    assert_eq!(total.unexpected, 0, "unexpected answers: {total:?}");
    assert_eq!(total.server_errors, 0, "5xx answers: {total:?}");
    assert_eq!(
        total.wrongly_allowed, 0,
        "refusals expected, 200 seen: {total:?}"
    );
    assert_eq!(
        upstream.must_deny.load(Ordering::SeqCst),
        0,
        "the upstream saw requests the filter had to refuse"
    );
    assert_eq!(envoy.counter("http.guarded.downstream_rq_5xx"), 0);
    let probes = PROBES_SERVED.load(Ordering::SeqCst);
    let allowed = envoy.counter_eventually(&format!("{STAT}allowed"), total.allowed + probes);
    assert_eq!(
        allowed,
        total.allowed + probes,
        "the filter's allowed counter"
    );
    assert_eq!(
        upstream.served.load(Ordering::SeqCst),
        total.allowed + probes
    );
    assert!(revoked.len() as u64 >= settings.requests / RUNTIME_REVOCATION_EVERY / 2);
    // Reconfigurations create plugin contexts, so VM counts are not compared.
    let problems = wasm_health_problems(&envoy, &envoy.log(), None);
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(
        growth < MAX_RSS_GROWTH,
        "Envoy's RSS grew {:.2}% after warm-up ({rss_after_warm_up} -> {rss_at_end} KiB)",
        growth * 100.0
    );
}

/// One load phase: `requests` spread over the clients; `serial_base` keeps tokens unique
/// between phases.
fn run_load(port: u16, requests: u64, tokens: &Arc<Tokens>, tally: &Arc<Tally>, serial_base: u64) {
    let next = Arc::new(AtomicU64::new(0));
    let clients: Vec<JoinHandle<()>> = (0..CLIENTS)
        .map(|client_index| {
            let tokens = Arc::clone(tokens);
            let tally = Arc::clone(tally);
            let next = Arc::clone(&next);
            std::thread::spawn(move || {
                let mut load = Load {
                    client: Client::new(port),
                    tokens,
                    tally,
                    serial: serial_base + client_index as u64 * 100_000,
                    anomaly: None,
                };
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= requests {
                        break;
                    }
                    load.one(n);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
}

/// What one load thread does, request by request.
struct Load {
    client: Client,
    tokens: Arc<Tokens>,
    tally: Arc<Tally>,
    serial: u64,
    /// The misused token this client is walking through addresses with, and its next step.
    anomaly: Option<(String, u8)>,
}

/// Outcome a request must have.
#[derive(Clone, Copy)]
enum Expect {
    Allowed,
    Refused(u16, &'static str),
}

impl Load {
    fn one(&mut self, n: u64) {
        if n.is_multiple_of(REQUESTS_PER_CONNECTION) {
            self.client.reconnect();
        }
        if n % RUNTIME_REVOCATION_EVERY == 7 {
            self.revoke_at_run_time();
            return;
        }
        match n % 100 {
            0..=69 => {
                let token = self.tokens.valid(n).to_owned();
                self.check("/ok/valid", Some(&token), Expect::Allowed);
            }
            70..=84 => {
                let (token, description) = self.tokens.invalid(n);
                let token = token.map(str::to_owned);
                self.check(
                    "/must-deny/invalid",
                    token.as_deref(),
                    Expect::Refused(401, description),
                );
            }
            85..=91 => {
                let token = self.tokens.config_revoked(n).to_owned();
                self.check(
                    "/must-deny/revoked",
                    Some(&token),
                    Expect::Refused(401, REVOKED),
                );
            }
            92..=97 => {
                // A token another client (another worker, maybe under an older config)
                // revoked at run time.
                let token = self.tokens.runtime_revoked_sample(n);
                match token {
                    Some(token) => self.check(
                        "/must-deny/runtime-revoked",
                        Some(&token),
                        Expect::Refused(401, REVOKED),
                    ),
                    None => {
                        let token = self.tokens.valid(n).to_owned();
                        self.check("/ok/valid", Some(&token), Expect::Allowed);
                    }
                }
            }
            _ => self.misuse_step(),
        }
    }

    fn check(&mut self, path: &str, token: Option<&str>, expect: Expect) {
        let reply = self.client.get(path, token);
        self.tally.record(&reply, expect);
        let reconnects = std::mem::take(&mut self.client.reconnects);
        self.tally
            .reconnects
            .fetch_add(reconnects, Ordering::Relaxed);
    }

    /// A fresh token: used, revoked by the upstream's answer to /logout, then refused.
    fn revoke_at_run_time(&mut self) {
        let jti = format!("runtime-{}", self.next_serial());
        let token = self.tokens.fresh(&jti);
        self.check("/ok/before-logout", Some(&token), Expect::Allowed);
        self.check("/ok/logout", Some(&token), Expect::Allowed);
        self.check(
            "/must-deny/after-logout",
            Some(&token),
            Expect::Refused(401, REVOKED),
        );
        self.tokens.runtime_revoked.lock().unwrap().push(token);
    }

    /// One step of a stolen token's walk: five addresses are served, the sixth trips the
    /// detector (`action: revoke`), and the token stays revoked from the first address too.
    fn misuse_step(&mut self) {
        let (token, step) = match self.anomaly.take() {
            Some(current) => current,
            None => {
                self.tally.misused_tokens.fetch_add(1, Ordering::Relaxed);
                let jti = format!("stolen-{}", self.next_serial());
                (self.tokens.fresh(&jti), 0)
            }
        };
        let (source, path, expect) = match step {
            0..=4 => (2 + step, "/ok/stolen", Expect::Allowed),
            5 => (7, "/must-deny/stolen", Expect::Refused(401, ANOMALY)),
            _ => (
                2,
                "/must-deny/stolen-revoked",
                Expect::Refused(401, REVOKED),
            ),
        };
        let response = http::get_from(
            &format!("127.0.0.{source}"),
            self.client.port,
            path,
            &[("authorization", &format!("Bearer {token}"))],
        );
        let reply = Reply {
            status: response.status,
            challenge: response
                .header("www-authenticate")
                .unwrap_or_default()
                .to_owned(),
        };
        self.tally.record(&reply, expect);
        if step < 6 {
            self.anomaly = Some((token, step + 1));
        }
    }

    fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }
}

/// The tokens of the mix, minted once (fresh ones as needed: HS256 is cheap to sign).
struct Tokens {
    valid: Vec<String>,
    invalid: Vec<(Option<String>, &'static str)>,
    config_revoked: Vec<String>,
    runtime_revoked: Mutex<Vec<String>>,
}

fn claims(jti: &str) -> Value {
    let now = unix_now();
    json!({
        "iss": ISSUER, "aud": "orders-api", "sub": format!("user-{jti}"),
        "iat": now - 10, "exp": now + 7200, "jti": jti,
    })
}

fn hs256(claims: &Value) -> String {
    mint(Signer::Hs256(&keys().hmac_secret), Some("hmac-1"), claims)
}

impl Tokens {
    fn mint() -> Tokens {
        let k = keys();
        let mut valid = Vec::new();
        for i in 0..20 {
            valid.push(mint(
                Signer::Rs256(&k.rsa),
                Some("rsa-1"),
                &claims(&format!("rs-{i}")),
            ));
            valid.push(mint(
                Signer::Es256(&k.ec),
                Some("ec-1"),
                &claims(&format!("es-{i}")),
            ));
            valid.push(hs256(&claims(&format!("hs-{i}"))));
        }
        let mut expired = claims("expired");
        expired["exp"] = json!(unix_now() - 3600);
        let mut wrong_audience = claims("wrong-audience");
        wrong_audience["aud"] = json!("billing-api");
        let mut forged = hs256(&claims("forged"));
        forged.truncate(forged.len() - 4);
        forged.push_str("AAAA");
        let other_key = mint(
            Signer::Rs256(&k.rsa_other),
            Some("rsa-1"),
            &claims("other-key"),
        );
        let invalid = vec![
            (Some(hs256(&expired)), "error_description=\"token expired\""),
            (
                Some(hs256(&wrong_audience)),
                "error_description=\"audience not accepted\"",
            ),
            (
                Some(forged),
                "error_description=\"signature verification failed\"",
            ),
            (
                Some(other_key),
                "error_description=\"signature verification failed\"",
            ),
            (
                Some("not-a-token".to_owned()),
                "error_description=\"token is malformed\"",
            ),
            (None, "Bearer realm="),
        ];
        let config_revoked = (0..10)
            .map(|i| hs256(&claims(&format!("config-revoked-{i}"))))
            .collect();
        Tokens {
            valid,
            invalid,
            config_revoked,
            runtime_revoked: Mutex::new(Vec::new()),
        }
    }

    fn valid(&self, n: u64) -> &str {
        &self.valid[(n / 100) as usize % self.valid.len()]
    }

    fn invalid(&self, n: u64) -> (Option<&str>, &'static str) {
        let (token, description) = &self.invalid[n as usize % self.invalid.len()];
        (token.as_deref(), description)
    }

    fn config_revoked(&self, n: u64) -> &str {
        &self.config_revoked[(n / 100) as usize % self.config_revoked.len()]
    }

    fn runtime_revoked_sample(&self, n: u64) -> Option<String> {
        let revoked = self.runtime_revoked.lock().unwrap();
        (!revoked.is_empty()).then(|| revoked[(n / 100) as usize % revoked.len()].clone())
    }

    fn fresh(&self, jti: &str) -> String {
        hs256(&claims(jti))
    }
}

/// Outcomes, counted as they come.
#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    allowed: AtomicU64,
    refused: AtomicU64,
    server_errors: AtomicU64,
    wrongly_allowed: AtomicU64,
    unexpected: AtomicU64,
    misused_tokens: AtomicU64,
    reconnects: AtomicU64,
    first_unexpected: Mutex<Option<String>>,
}

#[derive(Debug, Clone, Copy)]
#[allow(dead_code)] // read through Debug in the report
struct Snapshot {
    requests: u64,
    allowed: u64,
    refused: u64,
    server_errors: u64,
    wrongly_allowed: u64,
    unexpected: u64,
    misused_tokens: u64,
    reconnects: u64,
}

impl Tally {
    fn record(&self, reply: &Reply, expect: Expect) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if reply.status == 200 {
            self.allowed.fetch_add(1, Ordering::Relaxed);
        } else if (400..500).contains(&reply.status) {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        if reply.status >= 500 {
            self.server_errors.fetch_add(1, Ordering::Relaxed);
        }
        let as_expected = match expect {
            Expect::Allowed => reply.status == 200,
            Expect::Refused(status, challenge) => {
                if reply.status == 200 {
                    self.wrongly_allowed.fetch_add(1, Ordering::Relaxed);
                }
                reply.status == status && reply.challenge.contains(challenge)
            }
        };
        if !as_expected {
            self.unexpected.fetch_add(1, Ordering::Relaxed);
            let mut first = self.first_unexpected.lock().unwrap();
            if first.is_none() {
                let wanted = match expect {
                    Expect::Allowed => "200".to_owned(),
                    Expect::Refused(status, challenge) => format!("{status} {challenge}"),
                };
                *first = Some(format!(
                    "wanted {wanted}, got {} {}",
                    reply.status, reply.challenge
                ));
                eprintln!(
                    "soak: first unexpected answer: {}",
                    first.as_deref().unwrap_or("")
                );
            }
        }
    }

    fn snapshot(&self) -> Snapshot {
        let read = |counter: &AtomicU64| counter.load(Ordering::SeqCst);
        Snapshot {
            requests: read(&self.requests),
            allowed: read(&self.allowed),
            refused: read(&self.refused),
            server_errors: read(&self.server_errors),
            wrongly_allowed: read(&self.wrongly_allowed),
            unexpected: read(&self.unexpected),
            misused_tokens: read(&self.misused_tokens),
            reconnects: read(&self.reconnects),
        }
    }
}

/// A keep-alive HTTP/1.1 client (one request in flight), reconnecting when Envoy closes.
struct Client {
    port: u16,
    connection: Option<BufReader<TcpStream>>,
    reconnects: u64,
}

struct Reply {
    status: u16,
    challenge: String,
}

impl Client {
    fn new(port: u16) -> Client {
        Client {
            port,
            connection: None,
            reconnects: 0,
        }
    }

    fn reconnect(&mut self) {
        self.connection = None;
    }

    fn get(&mut self, path: &str, token: Option<&str>) -> Reply {
        let mut request = format!("GET {path} HTTP/1.1\r\nhost: soak.local\r\n");
        if let Some(token) = token {
            request.push_str(&format!("authorization: Bearer {token}\r\n"));
        }
        request.push_str("\r\n");
        // A connection Envoy closed between two requests (a drain after a reconfiguration)
        // fails on first use: the request never reached the filter, so sending it again on a
        // new connection is safe.
        for attempt in 0..3 {
            let reused = self.connection.is_some();
            match self.exchange(&request) {
                Ok(reply) => return reply,
                Err(error) if reused || attempt == 0 => {
                    self.connection = None;
                    self.reconnects += 1;
                    if !reused {
                        eprintln!("soak: {path}: {error}; retrying");
                    }
                }
                Err(error) => panic!("GET {path}: {error}"),
            }
        }
        panic!("GET {path}: no answer after three connections");
    }

    fn exchange(&mut self, request: &str) -> std::io::Result<Reply> {
        if self.connection.is_none() {
            let stream = TcpStream::connect(("127.0.0.1", self.port))?;
            stream.set_read_timeout(Some(Duration::from_secs(15)))?;
            stream.set_nodelay(true)?;
            self.connection = Some(BufReader::new(stream));
        }
        let connection = self.connection.as_mut().unwrap();
        connection.get_mut().write_all(request.as_bytes())?;
        let mut line = String::new();
        if connection.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let (mut length, mut close, mut challenge) = (0usize, false, String::new());
        loop {
            line.clear();
            connection.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or((header, ""));
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().unwrap_or(0),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                "www-authenticate" => challenge = value.to_owned(),
                "transfer-encoding" => {
                    return Err(std::io::Error::other("chunked answers are not expected"))
                }
                _ => {}
            }
        }
        let mut body = vec![0; length];
        connection.read_exact(&mut body)?;
        if close {
            self.connection = None;
        }
        Ok(Reply { status, challenge })
    }
}

/// An upstream that counts what it serves and flags any request the filter had to refuse
/// (paths under /must-deny/). /ok/logout answers with `x-revoke-token: self`.
struct CountingUpstream {
    port: u16,
    served: Arc<AtomicU64>,
    must_deny: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl CountingUpstream {
    fn start() -> CountingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = Arc::new(AtomicU64::new(0));
        let must_deny = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (served, must_deny, stop) = (
                Arc::clone(&served),
                Arc::clone(&must_deny),
                Arc::clone(&stop),
            );
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (served, must_deny) = (Arc::clone(&served), Arc::clone(&must_deny));
                    std::thread::spawn(move || serve(stream, &served, &must_deny));
                }
            })
        };
        CountingUpstream {
            port,
            served,
            must_deny,
            stop,
            acceptor: Some(acceptor),
        }
    }
}

fn serve(stream: TcpStream, served: &AtomicU64, must_deny: &AtomicU64) {
    let mut writer = match stream.try_clone() {
        Ok(writer) => writer,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split(' ').nth(1).unwrap_or("").to_owned();
        let mut length = 0usize;
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        served.fetch_add(1, Ordering::SeqCst);
        if path.starts_with("/must-deny/") {
            must_deny.fetch_add(1, Ordering::SeqCst);
        }
        let revoke = if path.starts_with("/ok/logout") {
            "x-revoke-token: self\r\n"
        } else {
            ""
        };
        let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n{revoke}\r\nok");
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

impl Drop for CountingUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// The listener Envoy reads from a watched directory (LDS from a file): written to a
/// temporary name and moved into place, which is what Envoy's watch reacts to.
#[derive(Clone)]
struct ListenerFile {
    dir: Arc<TempDir>,
    port: u16,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl ListenerFile {
    fn new(port: u16) -> ListenerFile {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "bearer-guard-soak-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        ListenerFile {
            dir: Arc::new(TempDir(dir)),
            port,
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.0.join("listeners.yaml")
    }

    /// Generation `g`'s plugin config: the same policy, plus `reconfig-g` revoked in config.
    fn write(&self, generation: u32) {
        let listener = support::envoy::fill_template(
            "envoy/soak-listener.yaml.tmpl",
            &plugin_config(generation),
            0,
            &[("PORT", &self.port.to_string())],
        );
        support::envoy::write_watched(&self.path(), &listener);
    }

    fn dir(&self) -> &Path {
        &self.dir.0
    }
}

fn plugin_config(generation: u32) -> Value {
    let mut config = testkit::config_json(json!({}), None);
    config["providers"]["corp"]["local_jwks"] = testkit::jwks_all_algorithms();
    config["providers"]["corp"]["algorithms"] = json!(["RS256", "ES256", "HS256"]);
    let mut revoked: Vec<String> = (0..10).map(|i| format!("config-revoked-{i}")).collect();
    revoked.push(format!("reconfig-{generation}"));
    config["revocation"] = json!({ "jti": revoked });
    config["anomaly"] = json!({
        "window_seconds": 600,
        "max_distinct_ips": 5,
        "max_requests": 100_000_000u64,
        "action": "revoke"
    });
    config
}

fn bootstrap(lds: &ListenerFile, upstream_port: u16) -> String {
    support::envoy::fill_template(
        "envoy/soak.yaml.tmpl",
        &json!({}),
        upstream_port,
        &[
            ("LDS_PATH", &lds.path().display().to_string()),
            ("LDS_DIR", &lds.dir().display().to_string()),
        ],
    )
}

fn reconfigure(envoy: &Envoy, lds: &ListenerFile, generation: u32) {
    reconfigure_at(envoy.port, lds, generation);
}

/// Probe requests the upstream served (they count in the filter's `allowed`, not in the tally).
static PROBES_SERVED: AtomicU64 = AtomicU64::new(0);

/// Writes generation `g` and waits until a new connection is served by it: `reconfig-g` is
/// refused and the previous generation's token is served again.
fn reconfigure_at(port: u16, lds: &ListenerFile, generation: u32) {
    lds.write(generation);
    let this = hs256(&claims(&format!("reconfig-{generation}")));
    let previous = hs256(&claims(&format!("reconfig-{}", generation - 1)));
    let applied = support::within(Duration::from_secs(20), || {
        let mut client = Client::new(port);
        let now = client.get("/probe/reconfig", Some(&this));
        let before = client.get("/probe/reconfig", Some(&previous));
        let served = [&now, &before].iter().filter(|r| r.status == 200).count();
        PROBES_SERVED.fetch_add(served as u64, Ordering::SeqCst);
        now.status == 401 && before.status == 200
    });
    assert!(applied.is_some(), "generation {generation} was not applied");
    std::thread::sleep(Duration::from_millis(300));
}

/// Old listeners drain (`--drain-time-s`) before memory is read.
fn settle() {
    std::thread::sleep(Duration::from_secs(DRAIN_SECONDS + 2));
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
