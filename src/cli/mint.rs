//! `mint` and `jwks`: demo and test tokens signed with the demo keys (`envoy/demo-keys/`,
//! public), and their public JWKS. The signing is `signing.rs`, shared with the tests and the
//! demo token printer.

use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::args::{Alg, Jwks, Mint};
use super::time::unix_now;
use super::{CliError, Outcome};
use crate::signing::{
    mint_with_header, DevKeys, Signer, DEMO_AUDIENCE, DEMO_EC_KID, DEMO_ISSUER, DEMO_RSA_KID,
};

/// The demo tokens' subject.
const DEMO_SUBJECT: &str = "demo-user";
const DEFAULT_LIFETIME_SECONDS: i64 = 3600;

/// `--keys DIR`, or the demo keys built into the binary.
fn load_keys(dir: Option<&str>) -> Result<DevKeys, CliError> {
    match dir {
        Some(dir) => DevKeys::load(Path::new(dir)).map_err(|e| {
            CliError::Input(format!(
                "{e} (--keys DIR holds rsa-demo.pem and ec-demo.pem)"
            ))
        }),
        None => DevKeys::demo().map_err(|e| CliError::Input(e.to_string())),
    }
}

pub fn run(args: &Mint, out: &mut dyn Write) -> Result<Outcome, CliError> {
    let keys = load_keys(args.keys.as_deref())?;
    let now = args.now.map_or_else(unix_now, |when| when.at(unix_now()));
    let iat = args.iat.map_or(now, |when| when.at(now));
    let exp = expiry(args, now, iat);
    let claims = claims(args, now, iat, exp)?;
    let (signer, header) = signer_and_header(args, &keys);
    let token = mint_with_header(signer, Value::Object(header), &Value::Object(claims));
    writeln!(out, "{token}")?;
    Ok(Outcome::Success)
}

/// `exp`: `--exp`, `--lifetime` after `iat` (an hour by default) or none with `--no-exp`
/// (clap lets one of them through at most).
fn expiry(args: &Mint, now: i64, iat: i64) -> Option<i64> {
    if args.no_exp {
        return None;
    }
    match (args.exp, args.lifetime) {
        (Some(exp), _) => Some(exp.at(now)),
        (None, lifetime) => Some(iat.saturating_add(lifetime.unwrap_or(DEFAULT_LIFETIME_SECONDS))),
    }
}

/// The payload: the demo identity unless overridden, a fresh `jti`, and `--claim`s last (so
/// they can override anything).
fn claims(
    args: &Mint,
    now: i64,
    iat: i64,
    exp: Option<i64>,
) -> Result<Map<String, Value>, CliError> {
    let mut claims = Map::new();
    claims.insert(
        "iss".into(),
        json!(args.iss.as_deref().unwrap_or(DEMO_ISSUER)),
    );
    claims.insert(
        "sub".into(),
        json!(args.sub.as_deref().unwrap_or(DEMO_SUBJECT)),
    );
    claims.insert(
        "aud".into(),
        match args.aud.as_slice() {
            [] => json!(DEMO_AUDIENCE),
            [one] => json!(one),
            many => json!(many),
        },
    );
    claims.insert("iat".into(), json!(iat));
    if let Some(exp) = exp {
        claims.insert("exp".into(), json!(exp));
    }
    if let Some(nbf) = args.nbf {
        claims.insert("nbf".into(), json!(nbf.at(now)));
    }
    let jti = args.jti.clone().unwrap_or_else(fresh_jti);
    claims.insert("jti".into(), json!(jti));
    if let Some(scope) = &args.scope {
        claims.insert("scope".into(), json!(scope));
    }
    for claim in &args.claim {
        let (name, value) = claim
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--claim {claim:?} is not NAME=JSON")))?;
        // JSON when it parses (numbers, arrays, objects), else the text as a string.
        let value = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
        claims.insert(name.to_owned(), value);
    }
    Ok(claims)
}

/// `--alg` picks the demo key; the header names it by `kid` unless `--kid` says otherwise.
fn signer_and_header<'k>(args: &Mint, keys: &'k DevKeys) -> (Signer<'k>, Map<String, Value>) {
    let (signer, default_kid) = match args.alg {
        Alg::Rs256 => (Signer::Rs256(&keys.rsa), DEMO_RSA_KID),
        Alg::Es256 => (Signer::Es256(&keys.ec), DEMO_EC_KID),
    };
    let mut header = Map::new();
    header.insert(
        "kid".into(),
        json!(args.kid.as_deref().unwrap_or(default_kid)),
    );
    if let Some(typ) = &args.typ {
        header.insert("typ".into(), json!(typ));
    }
    (signer, header)
}

/// A `jti` unique enough for demo tokens: the clock in nanoseconds.
fn fresh_jti() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("mint-{nanos:x}")
}

/// `jwks`: the demo keys' public JWKS, as `envoy/demo.yaml` embeds it.
pub fn jwks(args: &Jwks, out: &mut dyn Write) -> Result<Outcome, CliError> {
    let jwks = load_keys(args.keys.as_deref())?.jwks();
    writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(&jwks).unwrap_or_default()
    )?;
    Ok(Outcome::Success)
}
