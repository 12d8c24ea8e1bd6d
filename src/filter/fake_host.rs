//! A recording host for the unit tests: what the filter did (headers set and removed, local
//! responses, resumes, calls dispatched, metrics, log lines) is kept for the test to assert,
//! and what the host would say (the clock, properties, request and response headers, the
//! answer to a call, shared data with compare-and-swap) is the test's to set. Shared data is
//! shared between fakes made with `worker`: two VMs of one process.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType, Status};

use super::host::{GrpcMethod, Host, HttpCall, MaybeBytes};
use crate::decide::header_map;

/// A local response the filter sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// An HTTP call the filter dispatched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub token: u32,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl Call {
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }
}

/// What the filter did over gRPC, as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grpc {
    Call {
        token: u32,
        method: String,
        metadata: Vec<(String, Vec<u8>)>,
        message: Vec<u8>,
    },
    Open {
        token: u32,
        method: String,
        metadata: Vec<(String, Vec<u8>)>,
    },
    Send {
        token: u32,
        message: Vec<u8>,
    },
    Cancel {
        token: u32,
    },
}

/// One request's stream.
#[derive(Debug, Default)]
struct Stream {
    request_headers: Vec<(String, String)>,
    response_headers: Vec<(String, String)>,
    local_response: Option<LocalResponse>,
    resumed: usize,
}

/// Header pairs as the test wrote them.
type Pairs = Vec<(String, String)>;

#[derive(Default)]
struct Shared {
    values: HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
}

#[derive(Default)]
struct Vm {
    now_ms: i64,
    plugin_configuration: Option<Vec<u8>>,
    properties: HashMap<String, Vec<u8>>,
    effective: u32,
    streams: HashMap<u32, Stream>,
    calls: Vec<Call>,
    next_call: u32,
    /// Dispatching fails with this (an unknown cluster: `BadArgument`).
    refuse_calls: Option<Status>,
    /// The response of the call being answered: headers and body.
    call_response: Option<(Pairs, Vec<u8>)>,
    /// gRPC calls, streams opened, messages sent and streams cancelled, in order.
    grpc: Vec<Grpc>,
    /// Opening a stream or calling fails with this (Envoy: `BadArgument` for a cluster it
    /// cannot make a gRPC client for).
    refuse_grpc: Option<Status>,
    /// What the gRPC call or stream being answered carries: its message and status.
    grpc_message: Option<Vec<u8>>,
    grpc_status: (u32, Option<String>),
    metrics: Vec<(MetricType, String, i64)>,
    logs: Vec<(LogLevel, String)>,
    /// Every `Host` call, in order, as a short label (`now`, `headers(request)`,
    /// `property(source.address)`, ...): what a request costs in crossings into the host.
    host_calls: Vec<String>,
    /// Reading the request's header map fails with this (a host that cannot hand it over).
    refuse_request_headers: Option<Status>,
    /// Every shared-data read of this VM: the key and how many bytes it copied in.
    shared_reads: Vec<(String, usize)>,
}

pub struct FakeHost {
    vm: RefCell<Vm>,
    shared: Rc<RefCell<Shared>>,
}

fn find<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn owned_metadata(pairs: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), v.to_vec()))
        .collect()
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

impl FakeHost {
    /// A VM at `now` (unix seconds) with this plugin configuration.
    pub fn new(config: &serde_json::Value, now: i64) -> Rc<Self> {
        let host = FakeHost {
            vm: RefCell::default(),
            shared: Rc::default(),
        };
        host.configure(config, now);
        Rc::new(host)
    }

    /// Another VM (worker) of the same process: its own streams and calls, the same shared
    /// data.
    pub fn worker(&self, config: &serde_json::Value, now: i64) -> Rc<Self> {
        let host = FakeHost {
            vm: RefCell::default(),
            shared: self.shared.clone(),
        };
        host.configure(config, now);
        Rc::new(host)
    }

    fn configure(&self, config: &serde_json::Value, now: i64) {
        let mut vm = self.vm.borrow_mut();
        vm.plugin_configuration = Some(config.to_string().into_bytes());
        vm.now_ms = now * 1000;
        vm.next_call = 1;
    }

    /// Moves this VM's clock on by `ms` milliseconds.
    pub fn advance_ms(&self, ms: i64) {
        self.vm.borrow_mut().now_ms += ms;
    }

    pub fn set_now(&self, now: i64) {
        self.vm.borrow_mut().now_ms = now * 1000;
    }

    /// A property the host has (`["source", "address"]`).
    pub fn set_property(&self, path: &[&str], value: impl AsRef<[u8]>) {
        let key = path.join("\0");
        self.vm
            .borrow_mut()
            .properties
            .insert(key, value.as_ref().to_vec());
    }

    /// A request arrives on `context` (which becomes the effective one).
    pub fn start_request(&self, context: u32, headers: &[(&str, &str)]) {
        let mut vm = self.vm.borrow_mut();
        vm.effective = context;
        let stream = vm.streams.entry(context).or_default();
        stream.request_headers = owned(headers);
    }

    /// The upstream's response headers arrive on `context`.
    pub fn start_response(&self, context: u32, headers: &[(&str, &str)]) {
        let mut vm = self.vm.borrow_mut();
        vm.effective = context;
        vm.streams.entry(context).or_default().response_headers = owned(headers);
    }

    /// The filter's calls into `context` from here on (as the SDK's dispatcher sets it).
    pub fn enter(&self, context: u32) {
        self.vm.borrow_mut().effective = context;
    }

    /// The request headers of `context` as the upstream gets them.
    pub fn request_headers(&self, context: u32) -> Pairs {
        self.stream_headers(context, |s| &s.request_headers)
    }

    /// The response headers of `context` as the client gets them.
    pub fn response_headers(&self, context: u32) -> Pairs {
        self.stream_headers(context, |s| &s.response_headers)
    }

    fn stream_headers(&self, context: u32, which: fn(&Stream) -> &Pairs) -> Pairs {
        let vm = self.vm.borrow();
        vm.streams
            .get(&context)
            .map(which)
            .cloned()
            .unwrap_or_default()
    }

    pub fn local_response(&self, context: u32) -> Option<LocalResponse> {
        let vm = self.vm.borrow();
        vm.streams.get(&context)?.local_response.clone()
    }

    pub fn resumed(&self, context: u32) -> usize {
        let vm = self.vm.borrow();
        vm.streams.get(&context).map_or(0, |s| s.resumed)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.vm.borrow().calls.clone()
    }

    /// Dispatching fails with `status` from here on (`None`: calls are sent again).
    pub fn refuse_calls(&self, status: Option<Status>) {
        self.vm.borrow_mut().refuse_calls = status;
    }

    /// The response the next call answered carries (`status` `None`: no response at all).
    /// Returns the body size, as the host passes it.
    pub fn set_call_response(&self, status: Option<u16>, headers: &[(&str, &str)], body: &str) {
        let mut all = owned(headers);
        let response = status.map(|status| {
            all.insert(0, (":status".to_owned(), status.to_string()));
            (all, body.as_bytes().to_vec())
        });
        self.vm.borrow_mut().call_response = response;
    }

    /// Everything sent over gRPC so far.
    pub fn grpc(&self) -> Vec<Grpc> {
        self.vm.borrow().grpc.clone()
    }

    /// gRPC calls and stream opens fail with `status` from here on (`None`: they work).
    pub fn refuse_grpc(&self, status: Option<Status>) {
        self.vm.borrow_mut().refuse_grpc = status;
    }

    /// What the next gRPC answer (a call's response, a stream message or close) carries.
    pub fn set_grpc_answer(&self, status: u32, message: Option<&[u8]>) {
        let mut vm = self.vm.borrow_mut();
        vm.grpc_message = message.map(<[u8]>::to_vec);
        vm.grpc_status = (status, None);
    }

    /// Log lines at `level`.
    pub fn logs(&self, level: LogLevel) -> Vec<String> {
        let vm = self.vm.borrow();
        let at = |l: &LogLevel| *l as u32 == level as u32;
        vm.logs
            .iter()
            .filter(|(l, _)| at(l))
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// Log lines (any level) that contain `text`.
    pub fn logged(&self, text: &str) -> Vec<String> {
        let vm = self.vm.borrow();
        vm.logs
            .iter()
            .filter(|(_, m)| m.contains(text))
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// A metric's value by name (counters as incremented, gauges as last recorded).
    pub fn metric(&self, name: &str) -> Option<i64> {
        let vm = self.vm.borrow();
        vm.metrics.iter().find(|(_, n, _)| n == name).map(|m| m.2)
    }

    /// Reading the request's header map as a whole fails with `status` from here on (`None`:
    /// it works).
    pub fn refuse_request_headers(&self, status: Option<Status>) {
        self.vm.borrow_mut().refuse_request_headers = status;
    }

    /// The `Host` calls made since the last `take_host_calls` (or since the VM started).
    pub fn take_host_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.vm.borrow_mut().host_calls)
    }

    /// This VM's shared-data reads since the last call: each key and the bytes it copied in.
    pub fn take_shared_reads(&self) -> Vec<(String, usize)> {
        std::mem::take(&mut self.vm.borrow_mut().shared_reads)
    }

    /// The shared-data keys of the process that contain `part`, with their values.
    pub fn shared_values(&self, part: &str) -> Vec<(String, Vec<u8>)> {
        let shared = self.shared.borrow();
        let mut found: Vec<_> = shared
            .values
            .iter()
            .filter(|(key, _)| key.contains(part))
            .map(|(key, (value, _))| (key.clone(), value.clone()))
            .collect();
        found.sort();
        found
    }

    /// Another writer (or none) put `value` under `key`.
    pub fn put_shared(&self, key: &str, value: &[u8]) {
        let mut shared = self.shared.borrow_mut();
        shared.next_cas += 1;
        let cas = shared.next_cas;
        shared.values.insert(key.to_owned(), (value.to_vec(), cas));
    }

    fn note(&self, call: impl Into<String>) {
        self.vm.borrow_mut().host_calls.push(call.into());
    }

    /// gRPC tokens share the HTTP calls' counter (Envoy's do too).
    fn next_grpc_token(&self) -> Result<u32, Status> {
        let mut vm = self.vm.borrow_mut();
        if let Some(status) = vm.refuse_grpc {
            return Err(status);
        }
        let token = vm.next_call;
        vm.next_call += 1;
        Ok(token)
    }

    fn with_stream<T>(&self, change: impl FnOnce(&mut Stream) -> T) -> T {
        let mut vm = self.vm.borrow_mut();
        let effective = vm.effective;
        change(vm.streams.entry(effective).or_default())
    }

    fn map(&self, map: MapType) -> Result<Vec<(String, String)>, Status> {
        let vm = self.vm.borrow();
        let stream = vm.streams.get(&vm.effective);
        match map {
            MapType::HttpRequestHeaders => Ok(stream.map(|s| s.request_headers.clone())),
            MapType::HttpResponseHeaders => Ok(stream.map(|s| s.response_headers.clone())),
            // Envoy's answer for the response headers of a call that failed.
            MapType::HttpCallResponseHeaders => vm
                .call_response
                .as_ref()
                .map(|(headers, _)| Some(headers.clone()))
                .ok_or(Status::BadArgument),
            _ => Err(Status::BadArgument),
        }
        .map(Option::unwrap_or_default)
    }

    fn edit_map(&self, map: MapType, edit: impl FnOnce(&mut Vec<(String, String)>)) {
        self.with_stream(|stream| match map {
            MapType::HttpRequestHeaders => edit(&mut stream.request_headers),
            MapType::HttpResponseHeaders => edit(&mut stream.response_headers),
            _ => {}
        });
    }
}

/// A header map's short name in a host-call label.
fn map_name(map: MapType) -> &'static str {
    match map {
        MapType::HttpRequestHeaders => "request",
        MapType::HttpResponseHeaders => "response",
        MapType::HttpCallResponseHeaders => "call_response",
        _ => "other",
    }
}

fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Trace => "trace",
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
        LogLevel::Critical => "critical",
    }
}

impl Host for FakeHost {
    fn now(&self) -> Result<SystemTime, Status> {
        self.note("now");
        let ms = u64::try_from(self.vm.borrow().now_ms).map_err(|_| Status::InternalFailure)?;
        Ok(UNIX_EPOCH + Duration::from_millis(ms))
    }

    fn log(&self, level: LogLevel, message: &str) {
        self.note(format!("log({})", level_name(level)));
        self.vm.borrow_mut().logs.push((level, message.to_owned()));
    }

    fn set_tick_period(&self, _period: Duration) -> Result<(), Status> {
        self.note("set_tick_period");
        Ok(())
    }

    fn buffer(&self, kind: BufferType, start: usize, max: usize) -> MaybeBytes {
        self.note(format!("buffer({kind:?})"));
        let vm = self.vm.borrow();
        let whole = match kind {
            BufferType::PluginConfiguration => vm.plugin_configuration.clone(),
            BufferType::HttpCallResponseBody => vm.call_response.as_ref().map(|r| r.1.clone()),
            BufferType::GrpcReceiveBuffer => vm.grpc_message.clone(),
            _ => None,
        };
        Ok(whole.map(|bytes| bytes.into_iter().skip(start).take(max).collect()))
    }

    fn headers(&self, map: MapType) -> Result<Vec<u8>, Status> {
        self.note(format!("headers({})", map_name(map)));
        let refused = self.vm.borrow().refuse_request_headers;
        if let (MapType::HttpRequestHeaders, Some(status)) = (map, refused) {
            return Err(status);
        }
        let pairs = self.map(map)?;
        Ok(header_map::serialize(&header_map::as_str_pairs(&pairs)))
    }

    fn header(&self, map: MapType, name: &str) -> MaybeBytes {
        self.note(format!("header({}, {name})", map_name(map)));
        let pairs = self.map(map)?;
        Ok(find(&pairs, name).map(|v| v.as_bytes().to_vec()))
    }

    fn set_header(&self, map: MapType, name: &str, value: &str) -> Result<(), Status> {
        self.note(format!("set_header({}, {name})", map_name(map)));
        self.edit_map(map, |pairs| {
            pairs.retain(|(n, _)| n != name);
            pairs.push((name.to_owned(), value.to_owned()));
        });
        Ok(())
    }

    fn remove_header(&self, map: MapType, name: &str) -> Result<(), Status> {
        self.note(format!("remove_header({}, {name})", map_name(map)));
        self.edit_map(map, |pairs| {
            pairs.retain(|(n, _)| !n.eq_ignore_ascii_case(name))
        });
        Ok(())
    }

    fn property(&self, path: &[&str]) -> MaybeBytes {
        self.note(format!("property({})", path.join(".")));
        Ok(self.vm.borrow().properties.get(&path.join("\0")).cloned())
    }

    fn set_filter_state(&self, key: &str, value: &[u8]) -> Result<(), Status> {
        self.note(format!("set_filter_state({key})"));
        let key = format!("filter_state\0{key}");
        self.vm.borrow_mut().properties.insert(key, value.to_vec());
        Ok(())
    }

    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
        self.note("shared_data");
        let found = match self.shared.borrow().values.get(key) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        };
        let bytes = found.0.as_ref().map_or(0, Vec::len);
        self.vm
            .borrow_mut()
            .shared_reads
            .push((key.to_owned(), bytes));
        Ok(found)
    }

    /// Envoy's rule: with a CAS, an existing value must still have it; a missing key is
    /// created whatever CAS is given.
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
        self.note("set_shared_data");
        let mut shared = self.shared.borrow_mut();
        if let (Some(cas), Some((_, current))) = (cas, shared.values.get(key)) {
            if cas != *current {
                return Err(Status::CasMismatch);
            }
        }
        shared.next_cas += 1;
        let next = shared.next_cas;
        shared.values.insert(key.to_owned(), (value.to_vec(), next));
        Ok(())
    }

    fn dispatch_http_call(&self, call: &HttpCall) -> Result<u32, Status> {
        self.note(format!("dispatch_http_call({})", call.cluster));
        let mut vm = self.vm.borrow_mut();
        if let Some(status) = vm.refuse_calls {
            return Err(status);
        }
        let token = vm.next_call;
        vm.next_call += 1;
        vm.calls.push(Call {
            token,
            cluster: call.cluster.to_owned(),
            headers: owned(call.headers),
            body: call.body.map(<[u8]>::to_vec),
        });
        Ok(token)
    }

    fn dispatch_grpc_call(
        &self,
        method: &GrpcMethod,
        message: &[u8],
        _timeout_ms: u64,
    ) -> Result<u32, Status> {
        self.note("dispatch_grpc_call");
        let token = self.next_grpc_token()?;
        self.vm.borrow_mut().grpc.push(Grpc::Call {
            token,
            method: format!("{}/{}", method.service, method.method),
            metadata: owned_metadata(method.metadata),
            message: message.to_vec(),
        });
        Ok(token)
    }

    fn open_grpc_stream(&self, method: &GrpcMethod) -> Result<u32, Status> {
        self.note("open_grpc_stream");
        let token = self.next_grpc_token()?;
        self.vm.borrow_mut().grpc.push(Grpc::Open {
            token,
            method: format!("{}/{}", method.service, method.method),
            metadata: owned_metadata(method.metadata),
        });
        Ok(token)
    }

    fn send_grpc_stream_message(&self, stream: u32, message: &[u8]) -> Result<(), Status> {
        self.note("send_grpc_stream_message");
        self.vm.borrow_mut().grpc.push(Grpc::Send {
            token: stream,
            message: message.to_vec(),
        });
        Ok(())
    }

    fn cancel_grpc_stream(&self, stream: u32) -> Result<(), Status> {
        self.note("cancel_grpc_stream");
        self.vm
            .borrow_mut()
            .grpc
            .push(Grpc::Cancel { token: stream });
        Ok(())
    }

    fn grpc_status(&self) -> (u32, Option<String>) {
        self.note("grpc_status");
        self.vm.borrow().grpc_status.clone()
    }

    fn resume_request(&self) -> Result<(), Status> {
        self.note("resume_request");
        self.with_stream(|stream| stream.resumed += 1);
        Ok(())
    }

    fn send_response(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), Status> {
        self.note(format!("send_response({status})"));
        let response = LocalResponse {
            status,
            headers: owned(headers),
            body: String::from_utf8_lossy(body).into_owned(),
        };
        self.with_stream(|stream| stream.local_response = Some(response));
        Ok(())
    }

    fn set_effective_context(&self, context: u32) -> Result<(), Status> {
        self.note("set_effective_context");
        self.enter(context);
        Ok(())
    }

    /// No foreign functions: signatures are verified in wasm.
    fn foreign_function(&self, name: &str, _arguments: &[u8]) -> MaybeBytes {
        self.note(format!("foreign_function({name})"));
        Err(Status::NotFound)
    }

    fn define_metric(&self, kind: MetricType, name: &str) -> Result<u32, Status> {
        self.note("define_metric");
        let mut vm = self.vm.borrow_mut();
        vm.metrics.push((kind, name.to_owned(), 0));
        u32::try_from(vm.metrics.len() - 1).map_err(|_| Status::InternalFailure)
    }

    fn record_metric(&self, id: u32, value: u64) -> Result<(), Status> {
        self.note("record_metric");
        let mut vm = self.vm.borrow_mut();
        let metric = vm.metrics.get_mut(id as usize).ok_or(Status::NotFound)?;
        metric.2 = i64::try_from(value).unwrap_or(i64::MAX);
        Ok(())
    }

    fn increment_metric(&self, id: u32, offset: i64) -> Result<(), Status> {
        self.note("increment_metric");
        let mut vm = self.vm.borrow_mut();
        let metric = vm.metrics.get_mut(id as usize).ok_or(Status::NotFound)?;
        metric.2 += offset;
        Ok(())
    }
}
