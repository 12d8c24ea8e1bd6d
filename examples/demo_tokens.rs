//! Mints demo tokens for `make run` with the demo keys in `envoy/demo-keys/` (not secret).
//!
//! `cargo run --example demo_tokens` prints a valid token, an expired one and curl lines (with
//! `--port` for Envoy's and `--etcd-port` for etcd's client port, the ones `make run` uses by
//! default); `-- --jwks` prints the JWKS that `envoy/demo.yaml` embeds.

use std::error::Error;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

#[allow(dead_code)]
#[path = "../src/signing.rs"]
mod signing;

use signing::{
    mint, DevKeys, Signer, DEMO_AUDIENCE as AUDIENCE, DEMO_EC_KID, DEMO_ISSUER as ISSUER,
    DEMO_RSA_KID,
};

fn main() -> Result<(), Box<dyn Error>> {
    let keys = DevKeys::demo()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--jwks") {
        println!("{}", keys.jwks());
        return Ok(());
    }
    let (rsa, ec) = (&keys.rsa, &keys.ec);
    let port = args
        .iter()
        .position(|a| a == "--port")
        .and_then(|i| args.get(i + 1))
        .map_or("10000", String::as_str);
    let etcd_port = args
        .iter()
        .position(|a| a == "--etcd-port")
        .and_then(|i| args.get(i + 1))
        .map_or("10002", String::as_str);
    let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())?;
    let claims = |iat: i64, exp: i64, jti: &str| json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "demo-user", "iat": iat, "exp": exp, "jti": jti });
    let valid = mint(
        Signer::Rs256(rsa),
        Some(DEMO_RSA_KID),
        &claims(now, now + 3600, "demo-1"),
    );
    let valid_es = mint(
        Signer::Es256(ec),
        Some(DEMO_EC_KID),
        &claims(now, now + 3600, "demo-2"),
    );
    let expired = mint(
        Signer::Rs256(rsa),
        Some(DEMO_RSA_KID),
        &claims(now - 7200, now - 3600, "demo-3"),
    );
    let url = format!("http://127.0.0.1:{port}/hello");
    println!("Demo tokens (demo keys only; valid token expires in 1 hour):\n");
    println!("VALID_RS256={valid}\n");
    println!("VALID_ES256={valid_es}\n");
    println!("EXPIRED={expired}\n");
    println!("Try (in another terminal):");
    println!("  curl -i -H 'Authorization: Bearer {valid}' {url}    # 200");
    println!("  curl -i -H 'Authorization: Bearer {expired}' {url}    # 401 invalid_token");
    println!("  curl -i {url}    # 401, no token");
    println!("  curl -i http://127.0.0.1:{port}/healthz    # 200, public route");
    let etcdctl = format!("ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:{etcd_port}");
    let cli = format!("target/release/bearer-guard revoke --etcd 127.0.0.1:{etcd_port}");
    let key = "/bearer-guard/revoked/jti/demo-1";
    println!("Revocation, through etcd on 127.0.0.1:{etcd_port} (every worker enforces a change within milliseconds):");
    println!("  curl -i -H 'Authorization: Bearer {valid_es}' http://127.0.0.1:{port}/logout    # 200; the upstream's x-revoke-token: self revokes this token (jti demo-2)");
    println!("  curl -i -H 'Authorization: Bearer {valid_es}' {url}    # 401 invalid_token, \"token revoked\"");
    println!("  {etcdctl} get --prefix --keys-only /bearer-guard/revoked/    # the proxy wrote that revocation to etcd: .../iss/<issuer>/jti/demo-2");
    println!("  {etcdctl} put {key} '{{}}'    # revoke the RS256 token (jti demo-1) in etcd");
    println!("  curl -i -H 'Authorization: Bearer {valid}' {url}    # 401 invalid_token, \"token revoked\"");
    println!("  {etcdctl} del {key}    # un-revoke it");
    println!("  curl -i -H 'Authorization: Bearer {valid}' {url}    # 200 again");
    println!("The same with the operator CLI (make build wrote it):");
    println!("  {cli} --jti demo-1    # put {key} {{}}");
    println!("  {cli} --remove --jti demo-1    # delete it");
    println!("  target/release/bearer-guard revocations --etcd 127.0.0.1:{etcd_port}    # what is in etcd\n");
    Ok(())
}
