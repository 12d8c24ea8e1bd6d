//! The real host: Envoy through the proxy-wasm ABI, each call delegated to the non-panicking
//! direct call in `host` (and the SDK's `dispatch_http_call`, which registers the callout).

use std::time::{Duration, SystemTime};

use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType, Status};

use super::abi;
use super::host::{GrpcMethod, Host, HttpCall, MaybeBytes};

/// Zero-sized: the state is the host's.
#[derive(Debug, Clone, Copy, Default)]
pub struct WasmHost;

impl Host for WasmHost {
    fn now(&self) -> Result<SystemTime, Status> {
        abi::now()
    }

    fn log(&self, level: LogLevel, message: &str) {
        abi::log(level, message);
    }

    fn set_tick_period(&self, period: Duration) -> Result<(), Status> {
        abi::set_tick_period(period)
    }

    fn buffer(&self, kind: BufferType, start: usize, max: usize) -> MaybeBytes {
        abi::buffer(kind, start, max)
    }

    fn headers(&self, map: MapType) -> Result<Vec<u8>, Status> {
        abi::headers(map)
    }

    fn header(&self, map: MapType, name: &str) -> MaybeBytes {
        abi::header(map, name)
    }

    fn set_header(&self, map: MapType, name: &str, value: &str) -> Result<(), Status> {
        abi::set_header(map, name, value)
    }

    fn remove_header(&self, map: MapType, name: &str) -> Result<(), Status> {
        abi::remove_header(map, name)
    }

    fn property(&self, path: &[&str]) -> MaybeBytes {
        abi::property(path)
    }

    fn set_filter_state(&self, key: &str, value: &[u8]) -> Result<(), Status> {
        abi::set_filter_state(key, value)
    }

    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
        abi::shared_data(key)
    }

    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
        abi::set_shared_data(key, value, cas)
    }

    /// The SDK's call: it registers the callout with its dispatcher, which routes the
    /// response to the context that sent it (see the module doc of `host`).
    fn dispatch_http_call(&self, call: &HttpCall) -> Result<u32, Status> {
        let headers = call.headers.to_vec();
        let timeout = Duration::from_millis(call.timeout_ms);
        proxy_wasm::hostcalls::dispatch_http_call(call.cluster, headers, call.body, vec![], timeout)
    }

    /// The SDK's gRPC calls register the token with its dispatcher (as for HTTP calls); the
    /// vendored SDK returns an unexpected status instead of panicking
    /// (`vendor/proxy-wasm/PATCHES.md`).
    fn dispatch_grpc_call(
        &self,
        method: &GrpcMethod,
        message: &[u8],
        timeout_ms: u64,
    ) -> Result<u32, Status> {
        proxy_wasm::hostcalls::dispatch_grpc_call(
            method.cluster,
            method.service,
            method.method,
            method.metadata.to_vec(),
            Some(message),
            Duration::from_millis(timeout_ms),
        )
    }

    fn open_grpc_stream(&self, method: &GrpcMethod) -> Result<u32, Status> {
        proxy_wasm::hostcalls::open_grpc_stream(
            method.cluster,
            method.service,
            method.method,
            method.metadata.to_vec(),
        )
    }

    fn send_grpc_stream_message(&self, stream: u32, message: &[u8]) -> Result<(), Status> {
        proxy_wasm::hostcalls::send_grpc_stream_message(stream, Some(message), false)
    }

    fn cancel_grpc_stream(&self, stream: u32) -> Result<(), Status> {
        proxy_wasm::hostcalls::cancel_grpc_stream(stream)
    }

    fn grpc_status(&self) -> (u32, Option<String>) {
        // A host that has no status to give: UNKNOWN (2), not a panic.
        proxy_wasm::hostcalls::get_grpc_status().unwrap_or((2, None))
    }

    fn resume_request(&self) -> Result<(), Status> {
        abi::resume_request()
    }

    fn send_response(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), Status> {
        abi::send_response(status, headers, body)
    }

    fn set_effective_context(&self, context: u32) -> Result<(), Status> {
        abi::set_effective_context(context)
    }

    fn foreign_function(&self, name: &str, arguments: &[u8]) -> MaybeBytes {
        abi::foreign_function(name, arguments)
    }

    fn define_metric(&self, kind: MetricType, name: &str) -> Result<u32, Status> {
        abi::define_metric(kind, name)
    }

    fn record_metric(&self, id: u32, value: u64) -> Result<(), Status> {
        abi::record_metric(id, value)
    }

    fn increment_metric(&self, id: u32, offset: i64) -> Result<(), Status> {
        abi::increment_metric(id, offset)
    }
}
