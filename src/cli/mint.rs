//! `mint` and `jwks`: demo and test tokens signed with the demo keys (`envoy/demo-keys/`,
//! public), and their public JWKS. The signing is `signing.rs`, shared with the tests and the
//! demo token printer.

use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::args::{Args, Spec};
use super::time::{parse_duration, unix_now};
use super::{CliError, Outcome};
use crate::signing::{
    mint_with_header, DevKeys, Signer, DEMO_AUDIENCE, DEMO_EC_KID, DEMO_ISSUER, DEMO_RSA_KID,
};

/// The demo tokens' subject.
const DEMO_SUBJECT: &str = "demo-user";
const DEFAULT_LIFETIME_SECONDS: i64 = 3600;

const SPEC: Spec = Spec {
    options: &[
        "alg", "iss", "sub", "aud", "lifetime", "exp", "iat", "nbf", "now", "jti", "scope", "kid",
        "typ", "claim", "keys",
    ],
    switches: &["no-exp"],
};

/// `--keys DIR`, or the demo keys built into the binary.
fn load_keys(args: &Args) -> Result<DevKeys, CliError> {
    match args.one("keys")? {
        Some(dir) => DevKeys::load(Path::new(dir)).map_err(|e| {
            CliError::Input(format!(
                "{e} (--keys DIR holds rsa-demo.pem and ec-demo.pem)"
            ))
        }),
        None => DevKeys::demo().map_err(|e| CliError::Input(e.to_string())),
    }
}

pub fn run(words: &[String], out: &mut dyn Write) -> Result<Outcome, CliError> {
    let args = SPEC.parse(words)?;
    args.no_operands()?;
    let keys = load_keys(&args)?;
    let now = args.time("now", unix_now())?.unwrap_or_else(unix_now);
    let iat = args.time("iat", now)?.unwrap_or(now);
    let exp = expiry(&args, now, iat)?;
    let claims = claims(&args, now, iat, exp)?;
    let (signer, header) = signer_and_header(&args, &keys)?;
    let token = mint_with_header(signer, Value::Object(header), &Value::Object(claims));
    writeln!(out, "{token}")?;
    Ok(Outcome::Success)
}

/// `exp`: `--exp`, `--lifetime` after `iat` (an hour by default) or none with `--no-exp`;
/// at most one of them.
fn expiry(args: &Args, now: i64, iat: i64) -> Result<Option<i64>, CliError> {
    match (
        args.time("exp", now)?,
        args.one("lifetime")?,
        args.switch("no-exp"),
    ) {
        (Some(_), Some(_), _) | (Some(_), _, true) | (_, Some(_), true) => Err(CliError::Usage(
            "one of --exp, --lifetime and --no-exp".to_owned(),
        )),
        (Some(exp), None, false) => Ok(Some(exp)),
        (None, Some(lifetime), false) => Ok(Some(
            iat.saturating_add(parse_duration(lifetime).map_err(CliError::Usage)?),
        )),
        (None, None, false) => Ok(Some(iat.saturating_add(DEFAULT_LIFETIME_SECONDS))),
        (None, None, true) => Ok(None),
    }
}

/// The payload: the demo identity unless overridden, a fresh `jti`, and `--claim`s last (so
/// they can override anything).
fn claims(
    args: &Args,
    now: i64,
    iat: i64,
    exp: Option<i64>,
) -> Result<Map<String, Value>, CliError> {
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(args.one("iss")?.unwrap_or(DEMO_ISSUER)));
    claims.insert(
        "sub".into(),
        json!(args.one("sub")?.unwrap_or(DEMO_SUBJECT)),
    );
    let audiences: Vec<&str> = args.all("aud").collect();
    claims.insert(
        "aud".into(),
        match audiences.as_slice() {
            [] => json!(DEMO_AUDIENCE),
            [one] => json!(one),
            many => json!(many),
        },
    );
    claims.insert("iat".into(), json!(iat));
    if let Some(exp) = exp {
        claims.insert("exp".into(), json!(exp));
    }
    if let Some(nbf) = args.time("nbf", now)? {
        claims.insert("nbf".into(), json!(nbf));
    }
    let jti = match args.one("jti")? {
        Some(jti) => jti.to_owned(),
        None => fresh_jti(),
    };
    claims.insert("jti".into(), json!(jti));
    if let Some(scope) = args.one("scope")? {
        claims.insert("scope".into(), json!(scope));
    }
    for claim in args.all("claim") {
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
fn signer_and_header<'k>(
    args: &Args,
    keys: &'k DevKeys,
) -> Result<(Signer<'k>, Map<String, Value>), CliError> {
    let (signer, default_kid) = match args.one("alg")?.unwrap_or("RS256") {
        "RS256" => (Signer::Rs256(&keys.rsa), DEMO_RSA_KID),
        "ES256" => (Signer::Es256(&keys.ec), DEMO_EC_KID),
        other => {
            return Err(CliError::Usage(format!(
                "--alg {other}: the demo keys sign RS256 and ES256"
            )))
        }
    };
    let mut header = Map::new();
    header.insert("kid".into(), json!(args.one("kid")?.unwrap_or(default_kid)));
    if let Some(typ) = args.one("typ")? {
        header.insert("typ".into(), json!(typ));
    }
    Ok((signer, header))
}

/// A `jti` unique enough for demo tokens: the clock in nanoseconds.
fn fresh_jti() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("mint-{nanos:x}")
}

/// `jwks`: the demo keys' public JWKS, as `envoy/demo.yaml` embeds it.
pub fn jwks(words: &[String], out: &mut dyn Write) -> Result<Outcome, CliError> {
    let args = Spec {
        options: &["keys"],
        switches: &[],
    }
    .parse(words)?;
    args.no_operands()?;
    let jwks = load_keys(&args)?.jwks();
    writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(&jwks).unwrap_or_default()
    )?;
    Ok(Outcome::Success)
}
