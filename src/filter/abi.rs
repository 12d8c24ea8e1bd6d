//! Every host call the filter makes at run time, called directly here, every status returned
//! to the caller. The SDK's wrappers cannot be used on the request path:
//! - nearly all of them `panic!` on a status they do not expect (`set_property` on anything
//!   but OK; `get_map_value` on `BadArgument`, which Envoy returns for the response headers
//!   of an HTTP call that failed, found by `tests/faults.rs`), and a panic takes the worker's
//!   VM down;
//! - `get_map`, `get_map_bytes` and `get_map_value` decode names and values with
//!   `String::from_utf8(..).unwrap()`: one header value that is not UTF-8 (Envoy passes such
//!   bytes through, from a client or an upstream) is a panic;
//! - they declare the host's status as the `Status` enum, which has no variant for several
//!   codes the ABI defines (`InvalidMemoryAccess`, `Unimplemented`, ...): such a code would be
//!   undefined behaviour. Here the status is a `u32`, and unknown codes are `InternalFailure`.
//!
//! Bytes stay bytes: decoding is the caller's (`crate::decide::header_map`) deliberate choice.
//!
//! Not replaced: `dispatch_http_call` (the SDK's dispatcher must register the call's token,
//! or the response would panic in the dispatcher; it panics only on statuses Envoy does not
//! return for it: Envoy answers OK, `BadArgument` or `InternalFailure`), and the SDK's own
//! dispatcher, which unwraps `set_effective_context` before calling back into the filter.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType, Status};

use crate::decide::header_map;

/// Declares the proxy-wasm ABI 0.2.1 imports; off wasm (host builds of the adapter, never
/// run) each is a stub that fails, so `cargo test` on the host compiles and links.
macro_rules! imports {
    ($(fn $name:ident($($arg:ident: $ty:ty),* $(,)?);)*) => {
        #[cfg(target_arch = "wasm32")]
        #[link(wasm_import_module = "env")]
        extern "C" {
            $(fn $name($($arg: $ty),*) -> u32;)*
        }
        $(
            #[cfg(not(target_arch = "wasm32"))]
            #[allow(clippy::too_many_arguments, dead_code)]
            unsafe fn $name($(_: $ty),*) -> u32 {
                Status::InternalFailure as u32
            }
        )*
    };
}

imports! {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize);
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64);
    fn proxy_set_tick_period_milliseconds(period: u32);
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    );
    fn proxy_get_header_map_pairs(map_type: u32, return_data: *mut *mut u8, return_size: *mut usize);
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    );
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    );
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize);
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    );
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    );
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
        return_cas: *mut u32,
    );
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    );
    fn proxy_continue_stream(stream_type: u32);
    fn proxy_send_local_response(
        status_code: u32,
        details_data: *const u8,
        details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    );
    fn proxy_set_effective_context(context_id: u32);
    fn proxy_call_foreign_function(
        name_data: *const u8,
        name_size: usize,
        arguments_data: *const u8,
        arguments_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    );
    fn proxy_define_metric(metric_type: u32, name_data: *const u8, name_size: usize, return_id: *mut u32);
    fn proxy_record_metric(metric_id: u32, value: u64);
    fn proxy_increment_metric(metric_id: u32, offset: i64);
}

/// The host's status code: OK, or the error (codes `Status` has no variant for are
/// `InternalFailure`).
fn check(code: u32) -> Result<(), Status> {
    Err(match code {
        0 => return Ok(()),
        1 => Status::NotFound,
        2 => Status::BadArgument,
        3 => Status::SerializationFailure,
        4 => Status::ParseFailure,
        7 => Status::Empty,
        8 => Status::CasMismatch,
        _ => Status::InternalFailure,
    })
}

/// Bytes the host handed over through a call that returns a buffer: on OK, `size` bytes at
/// `data`, allocated through this module's allocator (`proxy_on_memory_allocate`), which the
/// Vec then owns and frees, exactly as the SDK's own wrappers do. `None` for no buffer.
fn returned(code: u32, data: *mut u8, size: usize) -> Result<Option<Vec<u8>>, Status> {
    check(code)?;
    if data.is_null() {
        return Ok(None);
    }
    // SAFETY: see above; the host wrote `data` and `size` on OK, and nothing else owns them.
    Ok(Some(unsafe { Vec::from_raw_parts(data, size, size) }))
}

/// Not found is no value, not an error.
fn found(result: Result<Option<Vec<u8>>, Status>) -> Result<Option<Vec<u8>>, Status> {
    match result {
        Err(Status::NotFound) => Ok(None),
        other => other,
    }
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // only `main!` (wasm) logs
pub fn log(level: LogLevel, message: &str) {
    // SAFETY: the message is valid for the call; the host copies it. A log line the host
    // refuses is dropped: logging must never affect traffic.
    let _ = unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) };
}

pub fn now() -> Result<SystemTime, Status> {
    let mut nanos: u64 = 0;
    // SAFETY: the host writes one u64 to a valid local.
    check(unsafe { proxy_get_current_time_nanoseconds(&mut nanos) })?;
    Ok(UNIX_EPOCH + Duration::from_nanos(nanos))
}

pub fn set_tick_period(period: Duration) -> Result<(), Status> {
    let millis = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
    // SAFETY: no pointers.
    check(unsafe { proxy_set_tick_period_milliseconds(millis) })
}

/// Up to `max` bytes of a buffer from `start`; `None` when there is none.
pub fn buffer(kind: BufferType, start: usize, max: usize) -> Result<Option<Vec<u8>>, Status> {
    let (mut data, mut size): (*mut u8, usize) = (std::ptr::null_mut(), 0);
    // SAFETY: the host writes a pointer and a size to valid locals (see `returned`).
    let code = unsafe { proxy_get_buffer_bytes(kind as u32, start, max, &mut data, &mut size) };
    found(returned(code, data, size))
}

/// A header map as the host serializes it (read it with `header_map::deserialize`, which
/// does not trust the sizes in it).
pub fn headers(map: MapType) -> Result<Vec<u8>, Status> {
    let (mut data, mut size): (*mut u8, usize) = (std::ptr::null_mut(), 0);
    // SAFETY: the host writes a pointer and a size to valid locals (see `returned`).
    let code = unsafe { proxy_get_header_map_pairs(map as u32, &mut data, &mut size) };
    Ok(returned(code, data, size)?.unwrap_or_default())
}

/// One header's (first) value as bytes; `None` when there is none.
pub fn header(map: MapType, name: &str) -> Result<Option<Vec<u8>>, Status> {
    let (mut data, mut size): (*mut u8, usize) = (std::ptr::null_mut(), 0);
    // SAFETY: the name is valid for the call; the host writes a pointer and a size to valid
    // locals (see `returned`).
    let code = unsafe {
        proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), &mut data, &mut size)
    };
    found(returned(code, data, size))
}

pub fn set_header(map: MapType, name: &str, value: &str) -> Result<(), Status> {
    // SAFETY: both are valid for the call; the host copies them.
    check(unsafe {
        proxy_replace_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

pub fn remove_header(map: MapType, name: &str) -> Result<(), Status> {
    // SAFETY: the name is valid for the call; the host copies it.
    check(unsafe { proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len()) })
}

/// A property (`["source", "address"]`); `None` when the host has none.
pub fn property(path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
    let path = path.join("\0");
    let (mut data, mut size): (*mut u8, usize) = (std::ptr::null_mut(), 0);
    // SAFETY: the path is valid for the call; the host writes a pointer and a size to valid
    // locals (see `returned`).
    let code = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    found(returned(code, data, size))
}

/// Sets `wasm.<key>` in the stream's filter state.
pub fn set_filter_state(key: &str, value: &[u8]) -> Result<(), Status> {
    // SAFETY: both pointers are valid for the given lengths for the duration of the call; the
    // host copies the bytes and keeps no reference. A one-segment path is the key itself.
    check(unsafe { proxy_set_property(key.as_ptr(), key.len(), value.as_ptr(), value.len()) })
}

/// A shared-data value and its CAS; `(None, None)` when the key does not exist.
pub fn shared_data(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
    let (mut data, mut size, mut cas): (*mut u8, usize, u32) = (std::ptr::null_mut(), 0, 0);
    // SAFETY: the key is valid for the call; the host writes to valid locals (see `returned`).
    let code =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match returned(code, data, size) {
        Ok(value) => Ok((value, (cas != 0).then_some(cas))),
        Err(Status::NotFound) => Ok((None, None)),
        Err(status) => Err(status),
    }
}

/// Sets a shared-data value; with `cas`, only if nobody changed it since (`CasMismatch`).
pub fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
    // SAFETY: both are valid for the call; the host copies them.
    check(unsafe {
        proxy_set_shared_data(
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
            cas.unwrap_or(0),
        )
    })
}

/// Resumes the paused request of the effective context.
pub fn resume_request() -> Result<(), Status> {
    // SAFETY: no pointers. 0 is the ABI's `HttpRequest` stream.
    check(unsafe { proxy_continue_stream(0) })
}

/// Answers the current request locally.
pub fn send_response(status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), Status> {
    let headers = header_map::serialize(headers);
    // SAFETY: every pointer is valid for its length for the call; the host copies them. No
    // details; -1: not gRPC.
    check(unsafe {
        proxy_send_local_response(
            status,
            std::ptr::null(),
            0,
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    })
}

/// Makes `context` the one later calls act on; fails when its stream is gone.
pub fn set_effective_context(context: u32) -> Result<(), Status> {
    // SAFETY: no pointers.
    check(unsafe { proxy_set_effective_context(context) })
}

/// A foreign function of the host (`NotFound` when it has none of that name).
pub fn foreign_function(name: &str, arguments: &[u8]) -> Result<Option<Vec<u8>>, Status> {
    let (mut data, mut size): (*mut u8, usize) = (std::ptr::null_mut(), 0);
    // SAFETY: name and arguments are valid for the call; the host writes a pointer and a size
    // to valid locals (see `returned`).
    let code = unsafe {
        proxy_call_foreign_function(
            name.as_ptr(),
            name.len(),
            arguments.as_ptr(),
            arguments.len(),
            &mut data,
            &mut size,
        )
    };
    returned(code, data, size)
}

pub fn define_metric(kind: MetricType, name: &str) -> Result<u32, Status> {
    let mut id: u32 = 0;
    // SAFETY: the name is valid for the call; the host writes one u32 to a valid local.
    check(unsafe { proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn record_metric(id: u32, value: u64) -> Result<(), Status> {
    // SAFETY: no pointers.
    check(unsafe { proxy_record_metric(id, value) })
}

pub fn increment_metric(id: u32, offset: i64) -> Result<(), Status> {
    // SAFETY: no pointers.
    check(unsafe { proxy_increment_metric(id, offset) })
}

/// The `log` crate's sink, instead of the SDK's (which unwraps the host's status, and whose
/// panic hook does too).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // only `main!` (wasm) logs
struct HostLogger;

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        log(level, &record.args().to_string());
    }

    fn flush(&self) {}
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // only `main!` (wasm) logs
static LOGGER: HostLogger = HostLogger;

/// Installs the logger (at `Info`) and a panic hook that reports a panic, should one happen
/// anyway, at `Critical` (the SDK's hook would panic again if the host refused the line).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // only `main!` (wasm) logs
pub fn init_logging() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
        std::panic::set_hook(Box::new(|info| log(LogLevel::Critical, &info.to_string())));
    }
}
