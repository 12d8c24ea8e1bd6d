//! A real etcd cluster (Debian's `etcd-server`, v3.4) on free loopback ports, each member with
//! its own data directory and log file in a scratch directory. Dropping the guard kills every
//! member by pid and removes the directory, also when a test fails. Keys are written with
//! `etcdctl` (API v3), as an operator would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long one attempt at starting the cluster may take to become healthy.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts with fresh ports when a member dies at start (a port taken in between, say).
const START_ATTEMPTS: usize = 3;

fn etcd_bin() -> PathBuf {
    std::env::var_os("ETCD_BIN").map_or_else(|| PathBuf::from("etcd"), PathBuf::from)
}

fn etcdctl_bin() -> PathBuf {
    std::env::var_os("ETCDCTL_BIN").map_or_else(|| PathBuf::from("etcdctl"), PathBuf::from)
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
}

impl Member {
    fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The end of this member's log, for a failure message.
    fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(lines).collect();
        let mut text = format!("--- {} ({}) ---\n", self.name, self.log_path.display());
        for line in tail.iter().rev() {
            text.push_str(line);
            text.push('\n');
        }
        text
    }
}

pub struct EtcdCluster {
    dir: PathBuf,
    token: String,
    initial_cluster: String,
    members: Vec<Member>,
}

fn scratch_dir() -> (PathBuf, String) {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let unique = format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let dir = std::env::temp_dir().join(format!("bearer-guard-etcd-{unique}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    (dir, unique)
}

impl EtcdCluster {
    /// Starts a cluster of `members` (1 or more) and waits until every member is healthy.
    /// Panics, with every member's log, when it does not come up.
    pub fn start(members: usize) -> EtcdCluster {
        assert!(members >= 1, "an etcd cluster has at least one member");
        let mut failures = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let mut cluster = EtcdCluster::spawn(members, attempt);
            match cluster.wait_healthy(HEALTHY_TIMEOUT) {
                Ok(()) => return cluster,
                Err(why) => {
                    failures.push_str(&format!("attempt {attempt}: {why}\n{}\n", cluster.logs(40)));
                    // Dropping kills the members and removes their data.
                }
            }
        }
        panic!("etcd cluster of {members} did not become healthy:\n{failures}");
    }

    fn spawn(count: usize, attempt: usize) -> EtcdCluster {
        let (dir, unique) = scratch_dir();
        let ports = super::ports::free_ports(2 * count);
        let members: Vec<Member> = (0..count)
            .map(|i| {
                let name = format!("m{}", i + 1);
                Member {
                    data_dir: dir.join(format!("{name}.etcd")),
                    log_path: dir.join(format!("{name}.log")),
                    name,
                    client_port: ports.get(2 * i).copied().unwrap(),
                    peer_port: ports.get(2 * i + 1).copied().unwrap(),
                    child: None,
                }
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            dir,
            token: format!("bearer-guard-test-{unique}-{attempt}"),
            initial_cluster,
            members,
        };
        for i in 0..count {
            cluster.spawn_member(i);
        }
        cluster
    }

    /// Starts member `i`: a new member of a new cluster, or, when its data directory already
    /// holds one, that member again (etcd then ignores the `--initial-*` flags).
    fn spawn_member(&mut self, i: usize) {
        let member = self.members.get_mut(i).unwrap();
        assert!(member.child.is_none(), "{} is running", member.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log_path)
            .unwrap();
        let client = member.client_url();
        let peer = member.peer_url();
        let child = Command::new(etcd_bin())
            .arg("--name")
            .arg(&member.name)
            .arg("--data-dir")
            .arg(&member.data_dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            // etcd's defaults (100 ms heartbeats, 1 s elections) churn leaders on a loaded
            // 2-core runner, and a write in an election times out: slower, as etcd's tuning
            // guide says for busy hosts.
            .args(["--heartbeat-interval", "250", "--election-timeout", "2500"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // The runner's process group: a Ctrl-C to `cargo test` stops the members too.
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e} (run `make setup`, which installs etcd-server)",
                    etcd_bin().display()
                )
            });
        member.child = Some(child);
    }

    /// Waits until every running member answers `endpoint health`; `Err` when one exits or
    /// the time is up.
    fn wait_healthy(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            for member in &mut self.members {
                if let Some(child) = member.child.as_mut() {
                    if let Some(status) = child.try_wait().unwrap() {
                        member.child = None;
                        return Err(format!("{} exited at start: {status}", member.name));
                    }
                }
            }
            let output = self.etcdctl(&["endpoint", "health"]);
            if output.status.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not healthy after {timeout:?}: {}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs `etcdctl` (API v3) against every running member.
    fn etcdctl(&self, args: &[&str]) -> Output {
        self.etcdctl_on(&self.endpoints(), args)
    }

    /// Runs `etcdctl` (API v3) against `endpoints` (client URLs, comma-separated).
    fn etcdctl_on(&self, endpoints: &str, args: &[&str]) -> Output {
        Command::new(etcdctl_bin())
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .args(["--dial-timeout=2s", "--command-timeout=5s"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", etcdctl_bin().display()))
    }

    /// `etcdctl` that must succeed; its stdout. A command that timed out (a leader election
    /// under load, or after a member was stopped) is tried again, as etcd's own clients do;
    /// every command here is idempotent.
    fn etcdctl_ok(&self, args: &[&str]) -> String {
        let mut output = self.etcdctl(args);
        for _ in 0..3 {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let election = ["timed out", "DeadlineExceeded", "no leader"]
                .iter()
                .any(|sign| stderr.contains(sign));
            if output.status.success() || !election {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
            output = self.etcdctl(args);
        }
        assert!(
            output.status.success(),
            "etcdctl {args:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.logs(20)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Writes `value` (any bytes of text, also empty or not JSON) at `key`.
    pub fn put(&self, key: &str, value: &str) {
        self.etcdctl_ok(&["put", "--", key, value]);
    }

    /// Deletes `key`; true when it existed.
    pub fn del(&self, key: &str) -> bool {
        self.etcdctl_ok(&["del", "--", key]).trim() == "1"
    }

    /// The value at `key`, if any.
    pub fn get(&self, key: &str) -> Option<String> {
        let out = self.etcdctl_ok(&["get", "--", key]);
        // `get` prints the key, then the value, one line each; nothing when there is none.
        let mut lines = out.lines();
        lines.next()?;
        Some(lines.collect::<Vec<_>>().join("\n"))
    }

    /// Runs `etcdctl ARGS` that must succeed (as an administrator would: `user add`,
    /// `auth enable`, ...); its stdout. `user`: `--user NAME:PASSWORD`.
    pub fn ctl(&self, user: Option<&str>, args: &[&str]) -> String {
        let mut all: Vec<&str> = Vec::new();
        let flag = user.map(|u| format!("--user={u}"));
        if let Some(flag) = &flag {
            all.push(flag);
        }
        all.extend_from_slice(args);
        self.etcdctl_ok(&all)
    }

    /// `etcd grpc-proxy` in front of every member, on a free loopback port: it coalesces the
    /// watches of many clients into one per key range. Stopped (by pid) when dropped.
    pub fn start_grpc_proxy(&self) -> GrpcProxy {
        let port = super::ports::free_ports(1).first().copied().unwrap();
        let log_path = self.dir.join("grpc-proxy.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(etcd_bin())
            .args(["grpc-proxy", "start"])
            .arg(format!("--endpoints={}", self.endpoints()))
            .arg(format!("--listen-addr=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let proxy = GrpcProxy {
            port,
            child: Some(child),
            log_path,
        };
        let up = super::within(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            up.is_some(),
            "etcd grpc-proxy did not listen: {}",
            proxy.log()
        );
        proxy
    }

    /// Every member's client port (also those stopped), in member order.
    pub fn client_ports(&self) -> Vec<u16> {
        self.members.iter().map(|m| m.client_port).collect()
    }

    /// The running members' client URLs, comma-separated (`--endpoints`).
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(Member::client_url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The `lb_endpoints` of Envoy's `etcd` cluster: every member (`{{ETCD_ENDPOINTS}}`).
    pub fn envoy_endpoints(&self) -> String {
        super::envoy::lb_endpoints(&self.client_ports())
    }

    /// Freezes member `i` (0-based) with SIGSTOP: its connections stay open and it answers
    /// nothing, as a member on a paused VM or behind a black-holed link. [`Self::thaw_member`]
    /// resumes it; dropping the cluster kills it either way.
    pub fn freeze_member(&self, i: usize) {
        self.signal_member(i, "-STOP");
    }

    pub fn thaw_member(&self, i: usize) {
        self.signal_member(i, "-CONT");
    }

    fn signal_member(&self, i: usize, signal: &str) {
        let member = self.members.get(i).unwrap();
        let pid = member.child.as_ref().unwrap().id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pid} ({})", member.name);
    }

    /// Writes `value` at `key` through member `i` only (the others may be frozen), trying
    /// again while the cluster elects a leader.
    pub fn put_via(&self, i: usize, key: &str, value: &str) {
        let endpoint = self.members.get(i).unwrap().client_url();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let output = self.etcdctl_on(&endpoint, &["put", "--", key, value]);
            if output.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcdctl put via {endpoint} failed: {}\n{}",
                String::from_utf8_lossy(&output.stderr),
                self.logs(20)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Kills member `i` (0-based) by pid; its data stays, for [`EtcdCluster::restart_all`].
    pub fn stop_member(&mut self, i: usize) {
        self.members.get_mut(i).unwrap().kill();
    }

    /// Kills every member: etcd is down.
    pub fn stop_all(&mut self) {
        for member in &mut self.members {
            member.kill();
        }
    }

    /// Starts every stopped member again from its data and waits until all are healthy.
    pub fn restart_all(&mut self) {
        for i in 0..self.members.len() {
            if self.members.get(i).is_some_and(|m| m.child.is_none()) {
                self.spawn_member(i);
            }
        }
        if let Err(why) = self.wait_healthy(HEALTHY_TIMEOUT) {
            panic!("etcd did not come back: {why}\n{}", self.logs(40));
        }
    }

    /// The last `lines` of every member's log.
    pub fn logs(&self, lines: usize) -> String {
        self.members.iter().map(|m| m.log_tail(lines)).collect()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A running `etcd grpc-proxy` (see [`EtcdCluster::start_grpc_proxy`]).
pub struct GrpcProxy {
    pub port: u16,
    child: Option<Child>,
    log_path: PathBuf,
}

impl GrpcProxy {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for GrpcProxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.stop_all();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
