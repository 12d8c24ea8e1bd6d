//! The Grafana dashboard (`envoy/grafana/bearer-guard-dashboard.json`): which metric and label
//! names its queries use, so a test can check them against a real Envoy's `/stats/prometheus`.

use std::collections::BTreeSet;

use serde_json::Value;

/// Every `bearer_guard_*` name (metric or label) in the dashboard's queries.
pub fn names() -> BTreeSet<String> {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(super::repo_path(
            "envoy/grafana/bearer-guard-dashboard.json",
        ))
        .unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "{exprs:?}");
    let mut names = BTreeSet::new();
    for expr in &exprs {
        for (at, _) in expr.match_indices("bearer_guard_") {
            let name: String = expr[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    names
}

/// Asserts Envoy exports each of `names` as a metric or a label.
pub fn assert_exported(prometheus: &str, names: &BTreeSet<String>) {
    for name in names {
        let metric = prometheus.contains(&format!("# TYPE {name} "));
        let label = prometheus.contains(&format!("{name}=\""));
        assert!(
            metric || label,
            "dashboard uses {name}, which Envoy does not export"
        );
    }
}

/// Whether a name is a shadow-mode counter's: those exist only in a config that shadows
/// something (`tests/shadow.rs` checks them).
pub fn is_shadow(name: &str) -> bool {
    name.contains("shadow_denied")
}

fn collect_exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "query", Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}
