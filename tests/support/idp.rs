//! A real OpenID provider (npm `oidc-provider`, `tests/idp/server.mjs`) on a free loopback
//! port. Dropping the guard kills it by pid.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::{http, repo_path};

/// `proxy:proxy-secret`: the resource server's client at the IdP (tests/idp/server.mjs).
pub const PROXY_BASIC: &str = "Basic cHJveHk6cHJveHktc2VjcmV0";

/// How long a starting IdP may take to listen, and how often it is started before giving up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const START_ATTEMPTS: usize = 3;

pub struct Idp {
    child: Child,
    pub port: u16,
}

impl Idp {
    /// Starts the IdP and waits for its "listening <port>" line. A node that has not printed
    /// it within `START_TIMEOUT` is killed and started again (seen once on a loaded runner: a
    /// node process asleep at start, never listening, which would have hung the test run).
    pub fn start() -> Idp {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Idp::start_once() {
                Ok(idp) => return idp,
                Err(why) => failures.push(why),
            }
        }
        panic!("the IdP did not start: {failures:?}");
    }

    fn start_once() -> Result<Idp, String> {
        let mut child = Command::new("node")
            .arg(repo_path("tests/idp/server.mjs"))
            .current_dir(repo_path("tests/idp"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("node: {e} (run `make setup`)"));
        let stdout = child.stdout.take().unwrap();
        // The first line, read apart so that a node that never prints one cannot block.
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let line = receiver.recv_timeout(START_TIMEOUT);
        let port = line.as_ref().ok().and_then(|line| {
            line.trim()
                .strip_prefix("listening ")
                .and_then(|p| p.parse().ok())
        });
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("first line {line:?}"));
        };
        Ok(Idp { child, port })
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An access token for `resource` by client_credentials (RFC 9068 `at+jwt`).
    pub fn token(&self, resource: &str) -> String {
        let form = format!("grant_type=client_credentials&scope=orders%3Aread&resource={resource}");
        let r = http::post_form(
            self.port,
            "/token",
            &[(
                "authorization",
                "Basic b3JkZXJzLWNsaWVudDp0ZXN0LW9ubHktc2VjcmV0",
            )],
            &form,
        );
        assert_eq!(r.status, 200, "token endpoint: {}", r.body);
        r.json()["access_token"].as_str().unwrap().to_owned()
    }

    /// RFC 7662 as the proxy's client (`proxy`, HTTP Basic): is the token active?
    pub fn introspect(&self, token: &str) -> bool {
        let r = http::post_form(
            self.port,
            "/token/introspection",
            &[("authorization", PROXY_BASIC)],
            &format!("token={token}"),
        );
        assert_eq!(r.status, 200, "introspection endpoint: {}", r.body);
        r.json()["active"].as_bool().unwrap()
    }

    /// RFC 7009 at the IdP, as an operator (or the IdP's own logout) would.
    pub fn revoke(&self, token: &str) {
        let r = http::post_form(
            self.port,
            "/token/revocation",
            &[("authorization", PROXY_BASIC)],
            &format!("token={token}&token_type_hint=access_token"),
        );
        assert_eq!(r.status, 200, "revocation endpoint: {}", r.body);
    }

    /// Kills the IdP (by pid), as an outage would.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The IdP switches to a new signing key; the old one leaves its JWKS.
    pub fn rotate_key(&self) {
        let r = http::post_form(self.port, "/rotate", &[], "");
        assert_eq!(r.status, 200, "{}", r.body);
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
