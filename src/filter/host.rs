//! The host as the filter's flow sees it: every call it makes to the proxy, behind one trait,
//! so the flow runs against Envoy (`WasmHost`) or a recording fake in the unit tests
//! (`fake_host`), the way rustls takes its clock and wasm-shim its resolver.

use std::time::{Duration, SystemTime};

use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType, Status};

/// Bytes the host hands over, if it has any; or its status.
pub type MaybeBytes = Result<Option<Vec<u8>>, Status>;

/// An HTTP call to a cluster: a fetch, an introspection, a POST to the list service or IdP.
pub struct HttpCall<'a> {
    pub cluster: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: Option<&'a [u8]>,
    pub timeout_ms: u64,
}

/// A gRPC method of a cluster (etcd's): a unary call or a stream. `metadata` goes with it
/// (etcd's auth `token`).
pub struct GrpcMethod<'a> {
    pub cluster: &'a str,
    pub service: &'a str,
    pub method: &'a str,
    pub metadata: &'a [(&'a str, &'a [u8])],
}

/// What the filter asks of the proxy. Every call returns the host's status; none panics.
pub trait Host {
    /// The host's clock.
    fn now(&self) -> Result<SystemTime, Status>;
    fn log(&self, level: LogLevel, message: &str);
    fn set_tick_period(&self, period: Duration) -> Result<(), Status>;
    /// Up to `max` bytes of a buffer from `start`; `None` when there is none.
    fn buffer(&self, kind: BufferType, start: usize, max: usize) -> MaybeBytes;
    /// A header map as the host serializes it (one buffer, read in place with
    /// `header_map::deserialize`).
    fn headers(&self, map: MapType) -> Result<Vec<u8>, Status>;
    /// One header's (first) value; `None` when there is none.
    fn header(&self, map: MapType, name: &str) -> MaybeBytes;
    fn set_header(&self, map: MapType, name: &str, value: &str) -> Result<(), Status>;
    fn remove_header(&self, map: MapType, name: &str) -> Result<(), Status>;
    /// A property (`["source", "address"]`); `None` when the host has none.
    fn property(&self, path: &[&str]) -> MaybeBytes;
    /// Sets `wasm.<key>` in the stream's filter state.
    fn set_filter_state(&self, key: &str, value: &[u8]) -> Result<(), Status>;
    /// A shared-data value and its CAS; `(None, None)` when the key does not exist.
    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status>;
    /// Sets a shared-data value; with `cas`, only if nobody changed it since (`CasMismatch`).
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status>;
    /// Sends an HTTP call; its response comes to the context that sent it, by the token.
    fn dispatch_http_call(&self, call: &HttpCall) -> Result<u32, Status>;
    /// A unary gRPC call with one serialized message; its answer comes to
    /// `on_grpc_call_response` by the token (the message in `GrpcReceiveBuffer`).
    fn dispatch_grpc_call(
        &self,
        method: &GrpcMethod,
        message: &[u8],
        timeout_ms: u64,
    ) -> Result<u32, Status>;
    /// Opens a gRPC stream; its messages come to `on_grpc_stream_message` by the token.
    fn open_grpc_stream(&self, method: &GrpcMethod) -> Result<u32, Status>;
    fn send_grpc_stream_message(&self, stream: u32, message: &[u8]) -> Result<(), Status>;
    /// Ends a stream from this side (a reset: etcd forgets its watches).
    fn cancel_grpc_stream(&self, stream: u32) -> Result<(), Status>;
    /// The gRPC status of the call or stream being answered or closed, and its message.
    fn grpc_status(&self) -> (u32, Option<String>);
    /// Resumes the paused request of the effective context.
    fn resume_request(&self) -> Result<(), Status>;
    /// Answers the request of the effective context locally.
    fn send_response(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), Status>;
    /// Makes `context` the one later calls act on; fails when its stream is gone.
    fn set_effective_context(&self, context: u32) -> Result<(), Status>;
    /// A foreign function of the host (`NotFound` when it has none of that name).
    fn foreign_function(&self, name: &str, arguments: &[u8]) -> MaybeBytes;
    fn define_metric(&self, kind: MetricType, name: &str) -> Result<u32, Status>;
    fn record_metric(&self, id: u32, value: u64) -> Result<(), Status>;
    fn increment_metric(&self, id: u32, offset: i64) -> Result<(), Status>;

    fn info(&self, message: &str) {
        self.log(LogLevel::Info, message);
    }

    fn warn(&self, message: &str) {
        self.log(LogLevel::Warn, message);
    }

    fn error(&self, message: &str) {
        self.log(LogLevel::Error, message);
    }
}

/// A header of the current HTTP call's response; `None` when there is none, or no response
/// (the call failed: Envoy says `BadArgument`), or it is not UTF-8.
pub fn call_response_header(host: &dyn Host, name: &str) -> Option<String> {
    let bytes = host.header(MapType::HttpCallResponseHeaders, name).ok()??;
    String::from_utf8(bytes).ok()
}
