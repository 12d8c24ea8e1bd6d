//! Filter state for the access log. The SDK's `set_property` panics on any status but OK (a
//! panic takes the worker's VM down), so the host function is called directly and its status
//! returned: a field the access log cannot show is never worth a request.

use proxy_wasm::types::Status;

/// Sets `wasm.<key>` in the stream's filter state.
#[cfg(target_arch = "wasm32")]
pub fn set(key: &str, value: &[u8]) -> Result<(), Status> {
    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_set_property(
            path_data: *const u8,
            path_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> Status;
    }
    // SAFETY: both pointers are valid for the given lengths for the duration of the call; the
    // host copies the bytes and keeps no reference. A one-segment path is the key itself.
    match unsafe { proxy_set_property(key.as_ptr(), key.len(), value.as_ptr(), value.len()) } {
        Status::Ok => Ok(()),
        status => Err(status),
    }
}

/// Off wasm (host builds of the adapter, never run): the SDK's call.
#[cfg(not(target_arch = "wasm32"))]
pub fn set(key: &str, value: &[u8]) -> Result<(), Status> {
    proxy_wasm::hostcalls::set_property(vec![key], Some(value))
}
