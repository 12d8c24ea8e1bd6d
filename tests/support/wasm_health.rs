//! Signs of a wasm failure in a running Envoy: in its log and in its own wasm stats.

use std::collections::BTreeMap;

use super::envoy::Envoy;

/// A panic or trap in the filter shows in Envoy's log; none may happen. (The markers of
/// tests/envoy_filter.rs, and the other ways a V8 wasm failure is logged.)
pub fn wasm_failures(log: &str) -> Vec<&str> {
    const MARKERS: [&str; 8] = [
        "panicked at",
        "Wasm VM failed",
        "Function: proxy_on_request_headers failed",
        "Function: proxy_on_",
        "wasm trap",
        "Uncaught ",
        "RuntimeError",
        "Plugin configured to fail closed failed to load",
    ];
    log.lines()
        .filter(|line| {
            MARKERS.iter().any(|m| line.contains(m))
                || ((line.contains("[critical]") || line.contains("[error]"))
                    && line.contains("wasm"))
        })
        .collect()
}

/// Envoy's own wasm stats (not the filter's `wasmcustom.*` counters): name -> value.
pub fn wasm_stats(envoy: &Envoy) -> BTreeMap<String, u64> {
    envoy
        .admin("/stats?filter=wasm")
        .lines()
        .filter_map(|line| line.split_once(": "))
        .filter(|(name, _)| !name.starts_with("wasmcustom."))
        .filter_map(|(name, value)| Some((name.to_owned(), value.trim().parse().ok()?)))
        .collect()
}

/// Stats that count a VM failing or being replaced.
pub fn is_failure_stat(name: &str) -> bool {
    ["fail", "crash", "reload", "abort", "trap"]
        .iter()
        .any(|word| name.contains(word))
}

/// Every sign of a wasm failure, as messages: failure lines in `log` (Envoy's log) and wasm
/// failure stats above 0; with `vms_at_start` (Envoy's wasm stats after start-up) also no wasm
/// stats at all, or a VM created or lost since (a failed VM would be replaced).
pub fn wasm_health_problems(
    envoy: &Envoy,
    log: &str,
    vms_at_start: Option<&BTreeMap<String, u64>>,
) -> Vec<String> {
    let mut problems: Vec<String> = wasm_failures(log)
        .into_iter()
        .map(|line| format!("wasm failure in Envoy's log: {line}"))
        .collect();
    let now = wasm_stats(envoy);
    if vms_at_start.is_some() && !now.keys().any(|name| name.starts_with("wasm.")) {
        problems.push(format!("no wasm stats in /stats?filter=wasm: {now:?}"));
    }
    for (name, value) in &now {
        if is_failure_stat(name) && *value != 0 {
            problems.push(format!("wasm failure stat {name}: {value}"));
        }
        let counts_vms =
            name.ends_with(".created") || name.ends_with(".active") || name.ends_with("vm_count");
        if let Some(before) = vms_at_start.filter(|_| counts_vms) {
            if before.get(name) != Some(value) {
                problems.push(format!("{name}: {:?} -> {value}", before.get(name)));
            }
        }
    }
    problems
}
