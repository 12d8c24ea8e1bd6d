//! Reads `authorization` and sets `x-trivial`: the cost every proxy-wasm filter pays.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(TrivialRoot) });
}}

struct TrivialRoot;

impl Context for TrivialRoot {}

impl RootContext for TrivialRoot {
    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Trivial))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Trivial;

impl Context for Trivial {}

impl HttpContext for Trivial {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let present = self.get_http_request_header("authorization").is_some();
        self.set_http_request_header("x-trivial", Some(if present { "1" } else { "0" }));
        Action::Continue
    }
}
