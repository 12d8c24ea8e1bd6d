//! A real Envoy process running the built filter. Dropping the guard kills it by pid.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{envoy_path, http, repo_path, wasm_path};

const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Envoy {
    child: Child,
    dir: PathBuf,
    pub admin_port: u16,
    /// Port of the listener named `guarded` (the filter's listener).
    pub port: u16,
}

/// Why Envoy did not come up, with its log for the test's message.
pub struct StartFailure {
    pub exit_code: Option<i32>,
    pub log: String,
}

/// Envoy's start-up banner is long; the end of the log is where the reason is.
impl std::fmt::Debug for StartFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tail: Vec<&str> = self.log.lines().rev().take(40).collect();
        writeln!(f, "envoy exit code {:?}; last log lines:", self.exit_code)?;
        for line in tail.iter().rev() {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// A fresh scratch directory per Envoy; removed when the guard drops.
fn scratch_dir() -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "bearer-guard-test-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `envoy/test.yaml.tmpl` with the filter's JSON configuration and the upstream's port.
pub fn test_config(plugin_config: &serde_json::Value, upstream_port: u16) -> String {
    let port = upstream_port.to_string();
    fill_template(
        "envoy/test.yaml.tmpl",
        plugin_config,
        upstream_port,
        &[("IDP_PORT", &port)],
    )
}

/// `test_config` with the `idp` cluster pointing at `idp_port`.
pub fn test_config_with_idp(
    plugin_config: &serde_json::Value,
    upstream_port: u16,
    idp_port: u16,
) -> String {
    let port = idp_port.to_string();
    fill_template(
        "envoy/test.yaml.tmpl",
        plugin_config,
        upstream_port,
        &[("IDP_PORT", &port)],
    )
}

/// A template under `envoy/` with the common placeholders and `extra` ones filled.
pub fn fill_template(
    template: &str,
    plugin_config: &serde_json::Value,
    upstream_port: u16,
    extra: &[(&str, &str)],
) -> String {
    let mut text = std::fs::read_to_string(repo_path(template)).unwrap();
    // A JSON string literal is also a valid YAML double-quoted scalar.
    let as_yaml_string = serde_json::to_string(&plugin_config.to_string()).unwrap();
    text = text
        .replace("{{WASM_PATH}}", &wasm_path().display().to_string())
        .replace("{{PLUGIN_CONFIG}}", &as_yaml_string)
        .replace("{{UPSTREAM_PORT}}", &upstream_port.to_string());
    for (name, value) in extra {
        text = text.replace(&format!("{{{{{name}}}}}"), value);
    }
    // Clusters a test does not use point at the upstream (they must still parse).
    text.replace("{{REVOCATION_PORT}}", &upstream_port.to_string())
        .replace("{{ETCD_ENDPOINTS}}", &lb_endpoints(&[upstream_port]))
        .replace("{{ACCESS_LOG}}", "/dev/null")
}

/// A YAML flow list of a cluster's `lb_endpoints`, one per loopback port (e.g. the `etcd`
/// cluster's `{{ETCD_ENDPOINTS}}`: every member's client port).
pub fn lb_endpoints(ports: &[u16]) -> String {
    let endpoints: Vec<String> = ports
        .iter()
        .map(|port| {
            format!(
                "{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }} }}"
            )
        })
        .collect();
    format!("[{}]", endpoints.join(", "))
}

/// Writes a file Envoy watches (LDS from a path) the way Envoy notices: a new file moved over
/// the old one.
pub fn write_watched(path: &Path, text: &str) {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, text).unwrap();
    std::fs::rename(&staged, path).unwrap();
}

impl Envoy {
    /// Starts Envoy with this bootstrap YAML and waits until the `guarded` listener serves.
    pub fn start(config_yaml: &str) -> Result<Envoy, StartFailure> {
        Envoy::start_with_listener(config_yaml, "guarded")
    }

    pub fn start_with_listener(config_yaml: &str, listener: &str) -> Result<Envoy, StartFailure> {
        Envoy::start_with(config_yaml, listener, 2)
    }

    /// `concurrency`: worker threads (each runs its own copy of the filter's VM).
    pub fn start_with(
        config_yaml: &str,
        listener: &str,
        concurrency: u32,
    ) -> Result<Envoy, StartFailure> {
        Envoy::start_with_args(config_yaml, listener, concurrency, &[])
    }

    /// `start_with` plus Envoy command-line options (e.g. `--drain-time-s`).
    pub fn start_with_args(
        config_yaml: &str,
        listener: &str,
        concurrency: u32,
        extra_args: &[&str],
    ) -> Result<Envoy, StartFailure> {
        let dir = scratch_dir();
        let config_path = dir.join("envoy.yaml");
        std::fs::write(&config_path, config_yaml).unwrap();
        let admin_file = dir.join("admin-address");
        let log_path = dir.join("envoy.log");
        let child = Command::new(envoy_path())
            .arg("-c")
            .arg(&config_path)
            .args([
                "--concurrency",
                &concurrency.to_string(),
                "--disable-hot-restart",
            ])
            .args(["--log-level", "info", "--component-log-level", "wasm:debug"])
            .args(extra_args)
            .arg("--admin-address-path")
            .arg(&admin_file)
            .current_dir(repo_path(""))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Envoy's log goes to stderr, line by line; a --log-path file is flushed only now and then.
            .stderr(std::fs::File::create(&log_path).unwrap())
            // Own process group: a Ctrl-C to the test runner does not orphan it mid-test.
            .process_group(0)
            .spawn()
            .unwrap();
        let mut envoy = Envoy {
            child,
            dir,
            admin_port: 0,
            port: 0,
        };
        match envoy.wait_until_serving(&admin_file, listener) {
            Ok(()) => Ok(envoy),
            Err(exit_code) => Err(StartFailure {
                exit_code,
                log: envoy.log(),
            }),
        }
    }

    /// `Err(exit code)` when Envoy exits or does not come up in time.
    fn wait_until_serving(&mut self, admin_file: &Path, listener: &str) -> Result<(), Option<i32>> {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(status.code());
            }
            if self.admin_port == 0 {
                if let Ok(address) = std::fs::read_to_string(admin_file) {
                    if let Some(port) = address
                        .trim()
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok())
                    {
                        self.admin_port = port;
                    }
                }
            }
            if self.admin_port != 0 && self.admin("/ready").trim() == "LIVE" {
                if let Some(port) = self.listener_port(listener) {
                    self.port = port;
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(None)
    }

    pub fn listener_port(&self, name: &str) -> Option<u16> {
        let listeners: serde_json::Value =
            serde_json::from_str(&self.admin("/listeners?format=json")).ok()?;
        listeners["listener_statuses"]
            .as_array()?
            .iter()
            .find(|l| l["name"] == name)?["local_address"]["socket_address"]["port_value"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
    }

    /// GET on the admin API; empty on any failure (the caller polls).
    pub fn admin(&self, path: &str) -> String {
        if self.admin_port == 0 {
            return String::new();
        }
        http::try_request(self.admin_port, "GET", path, &[])
            .map(|r| r.body)
            .unwrap_or_default()
    }

    /// Value of one counter from `/stats`, e.g. `wasmcustom.bearer_guard.allowed`.
    pub fn counter(&self, name: &str) -> u64 {
        self.admin(&format!("/stats?filter=^{}$", name.replace('.', "\\.")))
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The counter once it reaches `expected`, or its value after a few seconds: bearer-guard
    /// flushes its counters to Envoy once a second.
    pub fn counter_eventually(&self, name: &str, expected: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let value = self.counter(name);
            if value == expected || Instant::now() > deadline {
                return value;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The counter once it is at least `minimum` (or its value after a few seconds).
    pub fn counter_at_least(&self, name: &str, minimum: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let value = self.counter(name);
            if value >= minimum || Instant::now() > deadline {
                return value;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// bearer-guard's decision log: the JSON objects it wrote through Envoy's log.
    pub fn decision_lines(&self) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter(|l| l.contains("wasm log"))
            .filter_map(|l| l.find('{').map(|at| &l[at..]))
            .filter_map(|json| serde_json::from_str::<serde_json::Value>(json).ok())
            .filter(|v| v.get("decision").is_some())
            .collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A listener `name` whose HTTP filter is bearer-guard with this plugin `name` and config, in
/// the test VM (`vm_id: bearer_guard`): every filter config of one Envoy then shares the
/// process's shared data, as listeners of one Istio sidecar do.
pub fn guarded_listener(
    name: &str,
    plugin_name: &str,
    plugin_config: &serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({
        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
        "name": name,
        "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
        "filter_chains": [{ "filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name,
                "route_config": { "virtual_hosts": [{
                    "name": "all", "domains": ["*"],
                    "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": "upstream" } }]
                }]},
                "http_filters": [
                    { "name": "envoy.filters.http.wasm", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                        "config": {
                            "name": plugin_name, "root_id": "bearer_guard",
                            "vm_config": {
                                "vm_id": "bearer_guard", "runtime": "envoy.wasm.runtime.v8",
                                "code": { "local": { "filename": wasm_path() } }
                            },
                            "failure_policy": "FAIL_CLOSED",
                            "configuration": {
                                "@type": "type.googleapis.com/google.protobuf.StringValue",
                                "value": plugin_config.to_string()
                            }
                        }
                    }},
                    { "name": "envoy.filters.http.router", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                    }}
                ]
            }
        }]}]
    })
}

/// A bootstrap (JSON, which Envoy reads as YAML) with these static listeners, a STATIC
/// cluster per `(name, port)` on 127.0.0.1, and, with `lds`, listeners from that watched file.
pub fn bootstrap(
    listeners: &[serde_json::Value],
    clusters: &[(&str, u16)],
    lds: Option<&Path>,
) -> String {
    let clusters: Vec<serde_json::Value> = clusters
        .iter()
        .map(|(name, port)| {
            serde_json::json!({
                "name": name, "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": { "cluster_name": name, "endpoints": [{ "lb_endpoints": [{
                    "endpoint": { "address": { "socket_address": {
                        "address": "127.0.0.1", "port_value": port
                    }}}
                }]}]}
            })
        })
        .collect();
    // `@type` belongs to an LDS resource, not to a static listener.
    let listeners: Vec<serde_json::Value> = listeners
        .iter()
        .cloned()
        .map(|mut listener| {
            if let Some(fields) = listener.as_object_mut() {
                fields.remove("@type");
            }
            listener
        })
        .collect();
    let mut bootstrap = serde_json::json!({
        "node": { "id": "bearer-guard-test", "cluster": "bearer-guard-test" },
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
        "static_resources": { "listeners": listeners, "clusters": clusters }
    });
    if let Some(lds) = lds {
        let dir = lds.parent().unwrap_or(lds);
        bootstrap["dynamic_resources"] = serde_json::json!({ "lds_config": {
            "resource_api_version": "V3",
            "path_config_source": { "path": lds, "watched_directory": { "path": dir } }
        }});
    }
    bootstrap.to_string()
}
