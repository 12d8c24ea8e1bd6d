//! Writes the token pools for `make bench` (demo keys; not secret):
//! `cargo run --release --example bench_tokens -- --out DIR --count N`.
//!
//! Files: `jwks.json`; `{rs256,es256}-repeat.txt` (one token); `{rs256,es256}-distinct.txt`
//! (N distinct valid tokens); `{rs256,es256}-invalid.txt` (the distinct tokens with one
//! signature character changed: well-formed, bad signature); `{rs256,es256}-expired.txt` (N
//! distinct tokens, correctly signed, that expired an hour before they were written: past any
//! clock skew, and they stay expired, so this pool never needs regenerating).

use std::error::Error;
use std::fs;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

#[path = "support/args.rs"]
mod args;
#[allow(dead_code)]
#[path = "../src/signing.rs"]
mod signing;

use args::Args;
use signing::{mint, DevKeys, Signer, DEMO_EC_KID, DEMO_RSA_KID};

pub const ISSUER: &str = "https://bench.bearer-guard.local";
pub const AUDIENCE: &str = "bench-api";

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::from_env();
    let arg = |name: &str| args.value(name);
    let out = PathBuf::from(arg("--out").ok_or("--out DIR is required")?);
    let count: usize = arg("--count").map_or(Ok(10_000), |c| c.parse())?;
    fs::create_dir_all(&out)?;

    let keys = DevKeys::demo()?;
    fs::write(out.join("jwks.json"), keys.jwks().to_string())?;
    let (rsa, ec) = (&keys.rsa, &keys.ec);

    let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())?;
    let claims = |i: usize| {
        json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": format!("user-{i}"), "jti": format!("bench-{i}"),
                "iat": now, "exp": now + 4 * 3600 })
    };
    let expired_claims = |i: usize| {
        json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": format!("user-{i}"), "jti": format!("bench-expired-{i}"),
                "iat": now - 2 * 3600, "exp": now - 3600 })
    };
    for (name, sign, sign_expired) in [
        (
            "rs256",
            &(|i| mint(Signer::Rs256(rsa), Some(DEMO_RSA_KID), &claims(i)))
                as &dyn Fn(usize) -> String,
            &(|i| mint(Signer::Rs256(rsa), Some(DEMO_RSA_KID), &expired_claims(i)))
                as &dyn Fn(usize) -> String,
        ),
        (
            "es256",
            &|i| mint(Signer::Es256(ec), Some(DEMO_EC_KID), &claims(i)),
            &|i| mint(Signer::Es256(ec), Some(DEMO_EC_KID), &expired_claims(i)),
        ),
    ] {
        let distinct: Vec<String> = (0..count).map(sign).collect();
        let expired: Vec<String> = (0..count).map(sign_expired).collect();
        let invalid: Vec<String> = distinct.iter().map(|t| corrupt_signature(t)).collect();
        fs::write(out.join(format!("{name}-repeat.txt")), sign(count) + "\n")?;
        fs::write(
            out.join(format!("{name}-distinct.txt")),
            distinct.join("\n") + "\n",
        )?;
        fs::write(
            out.join(format!("{name}-invalid.txt")),
            invalid.join("\n") + "\n",
        )?;
        fs::write(
            out.join(format!("{name}-expired.txt")),
            expired.join("\n") + "\n",
        )?;
    }
    println!("wrote {count} tokens per pool to {}", out.display());
    Ok(())
}

/// Changes one base64url character in the middle of the signature: still decodable, wrong.
fn corrupt_signature(token: &str) -> String {
    let start = token.rfind('.').map_or(0, |dot| dot + 1);
    let at = start + (token.len() - start) / 2;
    let mut bytes = token.as_bytes().to_vec();
    if let Some(c) = bytes.get_mut(at) {
        *c = if *c == b'A' { b'B' } else { b'A' };
    }
    String::from_utf8(bytes).unwrap_or_default()
}
