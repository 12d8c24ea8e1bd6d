//! The module's exports (`exports.json`, which `make build` hands to `wasm-metadce`) against
//! the SDK callbacks the filter implements. A callback whose export is dropped is never
//! called: Envoy skips what a module does not export. So every callback implemented here must
//! keep the exports the SDK dispatches it from, and an export kept for nothing costs a call
//! into the VM on every request that reaches it.

use std::collections::BTreeSet;

/// Where the SDK's traits are implemented: every other source file must implement none (a new
/// one is read here, or its callbacks would go unseen).
const IMPLEMENTING: [&str; 2] = ["src/filter/http.rs", "src/filter/root.rs"];

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

/// An `impl` of one of the SDK's traits, however written: indented, generic, by path.
fn sdk_impl() -> regex_lite::Regex {
    regex_lite::Regex::new(
        r"^(\s*)impl(<[^>]*>)?\s+(\w+::)*(Context|RootContext|HttpContext|StreamContext)\s+for\b",
    )
    .unwrap()
}

/// The `fn on_...` names inside the SDK trait impls of a source file (a block ends at the
/// first `}` at its `impl`'s indentation, as rustfmt writes them).
fn implemented_callbacks(source: &str) -> Vec<String> {
    let opening = sdk_impl();
    let callback = regex_lite::Regex::new(r"\bfn\s+(on_\w+)").unwrap();
    let mut closing: Option<String> = None;
    let mut found = Vec::new();
    for line in source.lines() {
        if let Some(indent) = opening.captures(line).map(|c| c[1].to_owned()) {
            closing = Some(format!("{indent}}}"));
            continue;
        }
        if closing.as_deref() == Some(line) {
            closing = None;
        }
        if closing.is_some() {
            if let Some(name) = callback.captures(line) {
                found.push(name[1].to_owned());
            }
        }
    }
    found
}

/// Every `.rs` file under `src/`, as (path from the crate root, text).
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let name = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((name, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    walk(&root.join("src"), root, &mut out);
    out.sort();
    out
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
    let opening = sdk_impl();
    let mut implementing = Vec::new();
    for (file, source) in sources() {
        // This file's own examples are not the filter's.
        if file.ends_with("exports_tests.rs") || !source.lines().any(|l| opening.is_match(l)) {
            continue;
        }
        implementing.push(file.clone());
        for callback in implemented_callbacks(&source) {
            let Some((_, exports)) = DISPATCHED.iter().find(|(name, _)| *name == callback) else {
                panic!("{file}: `{callback}` is not in DISPATCHED: add the exports the SDK calls it from");
            };
            needed.extend(exports.iter().map(|e| (*e).to_owned()));
        }
    }
    assert_eq!(
        implementing, IMPLEMENTING,
        "the files that implement the SDK's traits"
    );
    needed
}

#[test]
fn the_module_exports_exactly_the_callbacks_the_filter_implements() {
    assert_eq!(kept_exports(), needed_exports());
}

#[test]
fn the_callback_scan_sees_what_the_filter_implements() {
    // If the scan stopped seeing these, the test above would pass with a shorter list.
    let read = |file: &str| {
        let source =
            std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file));
        implemented_callbacks(&source.unwrap())
    };
    let http = read(IMPLEMENTING[0]);
    for callback in ["on_http_request_headers", "on_http_response_headers"] {
        assert!(http.iter().any(|c| c == callback), "{callback}: {http:?}");
    }
    let root = read(IMPLEMENTING[1]);
    for callback in ["on_configure", "on_tick", "on_grpc_stream_message"] {
        assert!(root.iter().any(|c| c == callback), "{callback}: {root:?}");
    }
    // A callback implemented later, however its impl is written, would need its export back.
    for written in [
        "impl HttpContext for X {\n    fn on_http_request_body(&mut self) {}\n}\n",
        "impl proxy_wasm::traits::HttpContext for X {\n    fn on_http_request_body(&mut self) {}\n}\n",
        "mod m {\n    impl<T> HttpContext for X<T> {\n        fn on_http_request_body(&mut self) {}\n    }\n}\n",
    ] {
        assert_eq!(implemented_callbacks(written), vec!["on_http_request_body"], "{written}");
    }
    // Methods of other impls are not callbacks.
    assert!(implemented_callbacks("impl Other for X {\n    fn on_tick(&self) {}\n}\n").is_empty());
}
