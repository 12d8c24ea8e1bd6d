//! The module's exports (`exports.json`, which `make build` hands to `wasm-metadce`) against
//! the SDK callbacks the filter implements. A callback whose export is dropped is never
//! called: Envoy skips what a module does not export. So every callback implemented here must
//! keep the exports the SDK dispatches it from, and an export kept for nothing costs a call
//! into the VM on every request that reaches it.

use std::collections::BTreeSet;

/// The filter's source files that implement SDK traits.
const SOURCES: [(&str, &str); 2] = [
    ("http.rs", include_str!("http.rs")),
    ("root.rs", include_str!("root.rs")),
];

const GRAPH: &str = include_str!("exports.json");

/// The exports every module needs whatever it implements: its memory and start, the ABI
/// marker, the allocator the host writes through, the contexts' lifecycle (the SDK creates
/// them in `proxy_on_context_create` and drops them in `proxy_on_delete`, where a stream
/// cleans up: see `Drop for GuardHttp`) and the VM's start (once per VM, so free; kept for
/// hosts other than Envoy).
const LIFECYCLE: [&str; 7] = [
    "memory",
    "_initialize",
    "proxy_abi_version_0_2_1",
    "proxy_on_memory_allocate",
    "proxy_on_context_create",
    "proxy_on_delete",
    "proxy_on_vm_start",
];

/// proxy-wasm 0.2.5's trait methods and the exports its dispatcher calls each from
/// (`dispatcher.rs`). A unary gRPC call's answer comes through `proxy_on_grpc_receive` and its
/// failure through `proxy_on_grpc_close`.
const DISPATCHED: [(&str, &[&str]); 24] = [
    ("on_http_call_response", &["proxy_on_http_call_response"]),
    (
        "on_grpc_call_response",
        &["proxy_on_grpc_receive", "proxy_on_grpc_close"],
    ),
    (
        "on_grpc_stream_initial_metadata",
        &["proxy_on_grpc_receive_initial_metadata"],
    ),
    ("on_grpc_stream_message", &["proxy_on_grpc_receive"]),
    (
        "on_grpc_stream_trailing_metadata",
        &["proxy_on_grpc_receive_trailing_metadata"],
    ),
    ("on_grpc_stream_close", &["proxy_on_grpc_close"]),
    ("on_foreign_function", &["proxy_on_foreign_function"]),
    ("on_done", &["proxy_on_done"]),
    ("on_log", &["proxy_on_log"]),
    ("on_vm_start", &["proxy_on_vm_start"]),
    ("on_configure", &["proxy_on_configure"]),
    ("on_tick", &["proxy_on_tick"]),
    ("on_queue_ready", &["proxy_on_queue_ready"]),
    ("on_new_connection", &["proxy_on_new_connection"]),
    ("on_downstream_data", &["proxy_on_downstream_data"]),
    (
        "on_downstream_close",
        &["proxy_on_downstream_connection_close"],
    ),
    ("on_upstream_data", &["proxy_on_upstream_data"]),
    ("on_upstream_close", &["proxy_on_upstream_connection_close"]),
    ("on_http_request_headers", &["proxy_on_request_headers"]),
    ("on_http_request_body", &["proxy_on_request_body"]),
    ("on_http_request_trailers", &["proxy_on_request_trailers"]),
    ("on_http_response_headers", &["proxy_on_response_headers"]),
    ("on_http_response_body", &["proxy_on_response_body"]),
    ("on_http_response_trailers", &["proxy_on_response_trailers"]),
];

/// The `fn on_...` names inside `impl <SDK trait> for ...` blocks of a source file (a block
/// ends at the first `}` in column 0, as rustfmt writes them).
fn implemented_callbacks(source: &str) -> Vec<String> {
    let traits = ["Context", "RootContext", "HttpContext", "StreamContext"];
    let mut inside = false;
    let mut found = Vec::new();
    for line in source.lines() {
        if let Some(rest) = line.strip_prefix("impl ") {
            inside = traits
                .iter()
                .any(|t| rest.starts_with(&format!("{t} for ")));
            continue;
        }
        if line == "}" {
            inside = false;
        }
        if !inside {
            continue;
        }
        if let Some(at) = line.find("fn on_") {
            let name: String = line[at + 3..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
        }
    }
    found
}

fn kept_exports() -> BTreeSet<String> {
    let graph: serde_json::Value = serde_json::from_str(GRAPH).unwrap();
    let nodes = graph.as_array().unwrap();
    let exports: BTreeSet<String> = nodes
        .iter()
        .filter_map(|node| node["export"].as_str().map(str::to_owned))
        .collect();
    // Every export is reached from the root (the host), or metadce drops it.
    let root = nodes.iter().find(|node| node["root"] == true).unwrap();
    let reached: BTreeSet<String> = root["reaches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap().to_owned())
        .collect();
    let named: BTreeSet<String> = nodes
        .iter()
        .filter(|node| node.get("export").is_some())
        .map(|node| node["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(reached, named, "the root must reach every export node");
    exports
}

fn needed_exports() -> BTreeSet<String> {
    let mut needed: BTreeSet<String> = LIFECYCLE.iter().map(|e| (*e).to_owned()).collect();
    for (file, source) in SOURCES {
        let callbacks = implemented_callbacks(source);
        assert!(!callbacks.is_empty(), "no SDK callback found in {file}");
        for callback in callbacks {
            let Some((_, exports)) = DISPATCHED.iter().find(|(name, _)| *name == callback) else {
                panic!("{file}: `{callback}` is not in DISPATCHED: add the exports the SDK calls it from");
            };
            needed.extend(exports.iter().map(|e| (*e).to_owned()));
        }
    }
    needed
}

#[test]
fn the_module_exports_exactly_the_callbacks_the_filter_implements() {
    assert_eq!(kept_exports(), needed_exports());
}

#[test]
fn the_callback_scan_sees_what_the_filter_implements() {
    // If the scan stopped seeing these, the test above would pass with a shorter list.
    let http = implemented_callbacks(SOURCES[0].1);
    for callback in ["on_http_request_headers", "on_http_response_headers"] {
        assert!(http.iter().any(|c| c == callback), "{callback}: {http:?}");
    }
    let root = implemented_callbacks(SOURCES[1].1);
    for callback in ["on_configure", "on_tick", "on_grpc_stream_message"] {
        assert!(root.iter().any(|c| c == callback), "{callback}: {root:?}");
    }
    // A body callback implemented later would need its export back.
    let with_body = "impl HttpContext for X {\n    fn on_http_request_body(&mut self) {}\n}\n";
    assert_eq!(
        implemented_callbacks(with_body),
        vec!["on_http_request_body"]
    );
}
