//! `require_tls` in a real Envoy with a TLS listener (a certificate made by openssl at test
//! time): a credential over TLS is served, the same credential in plaintext is refused with
//! 400 `invalid_request` before anything reaches the upstream, and a client cannot talk its
//! way past it with `x-forwarded-proto`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;
use support::testkit;

use std::path::Path;
use std::process::Command;

use serde_json::json;

use support::certificate::Certificate;
use support::envoy::Envoy;
use support::http;
use support::upstream::Upstream;
use testkit::{keys, mint, unix_now, Signer, ISSUER};

/// The test template with a second listener, `guarded_tls`: the same filter behind TLS.
fn config_with_tls_listener(
    plugin: &serde_json::Value,
    upstream: u16,
    cert: &Certificate,
) -> String {
    let yaml = support::envoy::test_config(plugin, upstream);
    let start = yaml.find("  - name: guarded\n").unwrap();
    let end = yaml.find("  clusters:\n").unwrap();
    let tls_socket = format!(
        "    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificates:
            - certificate_chain: {{ filename: \"{}\" }}
              private_key: {{ filename: \"{}\" }}
      filters:\n",
        cert.path("tls.crt"),
        cert.path("tls.key")
    );
    let tls_listener = yaml[start..end]
        .replacen("  - name: guarded\n", "  - name: guarded_tls\n", 1)
        .replacen("    - filters:\n", &tls_socket, 1)
        .replacen("stat_prefix: guarded", "stat_prefix: guarded_tls", 1);
    format!("{}{}{}", &yaml[..end], tls_listener, &yaml[end..])
}

/// A GET over TLS with curl (the certificate is self-signed: its CA is the cert itself).
fn get_tls(port: u16, path: &str, token: &str, ca: &Path) -> (u16, String) {
    let output = Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(ca)
        .args(["-H", &format!("authorization: Bearer {token}")])
        .args(["-w", "\n%{http_code}"])
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or_default();
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

fn seen(upstream: &Upstream, path: &str) -> usize {
    upstream
        .requests()
        .iter()
        .filter(|r| r.path == path)
        .count()
}

#[test]
fn credentials_are_refused_in_plaintext_and_served_over_tls() {
    let cert = Certificate::generate("tls");
    let upstream = Upstream::start();
    let mut plugin = testkit::config_json(json!({}), None);
    plugin["require_tls"] = json!(true);
    let envoy = Envoy::start(&config_with_tls_listener(&plugin, upstream.port, &cert))
        .unwrap_or_else(|f| panic!("envoy did not start: {f:?}"));
    let tls_port = envoy.listener_port("guarded_tls").unwrap();
    let claims = json!({
        "iss": ISSUER, "aud": "orders-api", "sub": "alice", "exp": unix_now() + 600
    });
    let token = mint(Signer::Rs256(&keys().rsa), Some("rsa-1"), &claims);

    let (status, body) = get_tls(
        tls_port,
        "/over-tls",
        &token,
        Path::new(&cert.path("tls.crt")),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(seen(&upstream, "/over-tls"), 1);

    let bearer = format!("Bearer {token}");
    let plaintext = http::get(envoy.port, "/in-plaintext", &[("authorization", &bearer)]);
    assert_eq!(plaintext.status, 400);
    let challenge = plaintext.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("error=\"invalid_request\""),
        "{challenge}"
    );
    assert_eq!(
        plaintext.json()["error_description"],
        "credentials must be sent over TLS"
    );
    // The client cannot claim TLS itself: without trusted proxies the header is not read.
    let forged = http::get(
        envoy.port,
        "/in-plaintext",
        &[("authorization", &bearer), ("x-forwarded-proto", "https")],
    );
    assert_eq!(forged.status, 400);
    assert_eq!(seen(&upstream, "/in-plaintext"), 0);
    // No credential, nothing exposed: the usual 401.
    assert_eq!(http::get(envoy.port, "/in-plaintext", &[]).status, 401);
    assert_eq!(
        envoy.counter_eventually("wasmcustom.bearer_guard.denied.insecure_transport", 2),
        2
    );
}
