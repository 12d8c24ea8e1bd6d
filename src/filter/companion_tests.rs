//! A jwt_authn companion through the fake host: the payload read from the request's dynamic
//! metadata, what the upstream gets, and the upstream's revocation reaching the next request.

use proxy_wasm::types::Action;
use serde_json::{json, Value};

use super::tests::{header, respond_with_revocation, Vm};
use crate::testkit::{good_claims, ISSUER};
use crate::token::jwt_authn::metadata_bytes;

fn companion_config() -> Value {
    json!({
        "providers": { "mesh": {
            "issuer": ISSUER,
            "jwt_authn": { "payload_in_metadata": ISSUER },
            "claim_to_headers": [{ "claim_name": "sub", "header_name": "x-user" }],
        }},
        "revocation": { "response_header": "x-revoke-token" },
    })
}

const GET: [(&str, &str); 3] = [
    (":method", "GET"),
    (":path", "/orders"),
    (":authority", "orders.example"),
];

#[test]
fn the_payload_in_dynamic_metadata_is_the_token() {
    let mut vm = Vm::new(&companion_config());
    let mut claims = good_claims();
    claims["jti"] = json!("j-1");
    vm.host
        .set_property(&["metadata"], metadata_bytes(&[(ISSUER, &claims)]));
    // A client's own x-user never reaches the upstream; the verified sub does.
    let mut forged = GET.to_vec();
    forged.push(("x-user", "mallory"));
    assert_eq!(vm.send(2, &forged), Action::Continue);
    let upstream = vm.host.request_headers(2);
    assert_eq!(header(&upstream, "x-user"), Some("alice"));
    // The upstream logs the user out: the next request with that payload is refused.
    respond_with_revocation(&mut vm, 2, "self");
    vm.delete(2);
    assert_eq!(vm.send(3, &GET), Action::Pause);
    let response = vm.host.local_response(3).expect("refused");
    assert_eq!(response.status, 401);
    let challenge = header(&response.headers, "www-authenticate").unwrap_or_default();
    assert!(challenge.contains("token revoked"), "{challenge}");
    vm.tick(); // counters are flushed on the tick
    assert_eq!(vm.host.metric("bearer_guard.denied.revoked"), Some(1));
}

#[test]
fn no_metadata_or_unreadable_metadata_is_no_token() {
    let mut vm = Vm::new(&companion_config());
    assert_eq!(vm.send(2, &GET), Action::Pause);
    let response = vm.host.local_response(2).expect("refused");
    assert_eq!(response.status, 401);
    let challenge = header(&response.headers, "www-authenticate").unwrap_or_default();
    assert!(
        !challenge.contains("error="),
        "no credentials, no error code: {challenge}"
    );
    vm.host.set_property(&["metadata"], [0xff_u8, 0xff, 0xff]);
    assert_eq!(vm.send(3, &GET), Action::Pause);
    assert_eq!(vm.host.local_response(3).map(|r| r.status), Some(401));
}
