//! Host calls whose SDK wrappers panic on a status they do not expect (a panic takes the
//! worker's VM down): called directly here, every status returned to the caller.
//! - `set_property` panics on anything but OK.
//! - `get_map_value` panics on `BadArgument`, which Envoy returns for the response headers of
//!   an HTTP call that failed (reset mid-body, connection closed): found by `tests/faults.rs`.

use proxy_wasm::types::{MapType, Status};

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> Status;
    fn proxy_get_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> Status;
}

/// Sets `wasm.<key>` in the stream's filter state.
#[cfg(target_arch = "wasm32")]
pub fn set_filter_state(key: &str, value: &[u8]) -> Result<(), Status> {
    // SAFETY: both pointers are valid for the given lengths for the duration of the call; the
    // host copies the bytes and keeps no reference. A one-segment path is the key itself.
    match unsafe { proxy_set_property(key.as_ptr(), key.len(), value.as_ptr(), value.len()) } {
        Status::Ok => Ok(()),
        status => Err(status),
    }
}

/// A header of the current HTTP call's response; `None` when there is none, or no response
/// (the call failed), or it is not UTF-8.
#[cfg(target_arch = "wasm32")]
pub fn call_response_header(name: &str) -> Option<String> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the key is valid for the call; on OK the host hands over `size` bytes it
    // allocated through this module's allocator (`proxy_on_memory_allocate`), which the Vec
    // then owns and frees, exactly as the SDK's own wrapper does.
    let status = unsafe {
        proxy_get_header_map_value(
            MapType::HttpCallResponseHeaders,
            name.as_ptr(),
            name.len(),
            &mut data,
            &mut size,
        )
    };
    if status != Status::Ok || data.is_null() {
        return None;
    }
    // SAFETY: see above; `size` bytes at `data`, allocated for us.
    let bytes = unsafe { Vec::from_raw_parts(data, size, size) };
    String::from_utf8(bytes).ok()
}

/// Off wasm (host builds of the adapter, never run): the SDK's calls.
#[cfg(not(target_arch = "wasm32"))]
pub fn set_filter_state(key: &str, value: &[u8]) -> Result<(), Status> {
    proxy_wasm::hostcalls::set_property(vec![key], Some(value))
}

#[cfg(not(target_arch = "wasm32"))]
pub fn call_response_header(name: &str) -> Option<String> {
    proxy_wasm::hostcalls::get_map_value(MapType::HttpCallResponseHeaders, name)
        .ok()
        .flatten()
}
