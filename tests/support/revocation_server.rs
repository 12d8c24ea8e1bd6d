//! The reference revocation list service (`examples/revocation_server.py`) as a real process
//! on a free loopback port. Dropping the guard kills it by pid.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use super::{http, repo_path};

pub struct RevocationServer {
    child: Child,
    pub port: u16,
}

impl RevocationServer {
    pub fn start() -> RevocationServer {
        RevocationServer::start_with(&[])
    }

    pub fn start_with(args: &[&str]) -> RevocationServer {
        let mut child = Command::new(python())
            .arg(repo_path("examples/revocation_server.py"))
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        // "listening on http://127.0.0.1:<port>/v1/list"
        let port = line
            .trim()
            .rsplit_once(':')
            .and_then(|(_, rest)| rest.split('/').next())
            .and_then(|p| p.parse().ok());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("revocation server did not start: {line:?}");
        };
        RevocationServer { child, port }
    }

    /// POSTs a revocation document, as an operator would.
    pub fn revoke(&self, document: &serde_json::Value) {
        let response = http::post_json(self.port, "/v1/list", &document.to_string());
        assert_eq!(response.status, 200, "{}", response.body);
    }

    /// Every later GET of the list answers `status` (0: serve normally again).
    pub fn fail_with(&self, status: u16) {
        let body = serde_json::json!({ "status": status }).to_string();
        let response = http::post_json(self.port, "/admin/fail", &body);
        assert_eq!(response.status, 200, "{}", response.body);
    }

    pub fn stats(&self) -> serde_json::Value {
        http::get(self.port, "/admin/stats", &[]).json()
    }

    /// The current list document.
    pub fn list(&self) -> serde_json::Value {
        http::get(self.port, "/v1/list", &[]).json()
    }
}

/// The interpreter itself, not a wrapper (pyenv's shim) whose pid would not be the server's.
fn python() -> String {
    static PYTHON: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let output = Command::new("python3")
                .args(["-c", "import sys; print(sys.executable)"])
                .output()
                .unwrap();
            String::from_utf8(output.stdout).unwrap().trim().to_owned()
        })
        .clone()
}

impl Drop for RevocationServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
