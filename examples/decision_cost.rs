//! The core's work per decision, counted in instructions (`make cost`, under callgrind): N
//! decisions over a pool of `make bench` tokens, with a host verifier that answers at once,
//! so only bearer-guard's own work is counted (reading the serialized header map, parsing,
//! hashing, lookups, claim checks; not the host's signature check nor the proxy-wasm
//! boundary). Instruction counts do not drift
//! with machine load the way requests per second do, so before/after comparisons of one
//! change are exact; wasm under V8 runs more instructions than this native build, in about
//! the same proportions.
//!
//! `cargo run --release --example decision_cost -- --pools DIR --tokens FILE --cache N
//! --answer valid|invalid --decisions N [--unreported]` (`--unreported`: as the shell decides
//! when the decision log has no room for a denial's line this second).

use std::error::Error;
use std::path::PathBuf;

use bearer_guard::config::Config;
use bearer_guard::decide::decision::Decision;
use bearer_guard::decide::guard::{Guard, Occasion, Request};
use bearer_guard::decide::header_map;
use bearer_guard::keys::host_crypto::{HostCheck, HostCrypto, HostCryptoError};

#[path = "support/args.rs"]
mod args;

use args::Args;

/// A host whose every signature check answers the same, at once.
struct Answer(bool);

impl HostCrypto for Answer {
    fn verify(&self, _: &HostCheck<'_>) -> Result<bool, HostCryptoError> {
        Ok(self.0)
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::from_env();
    let arg = |name: &str| args.value(name);
    let pools = PathBuf::from(arg("--pools").ok_or("--pools DIR is required")?);
    let tokens_file = arg("--tokens").ok_or("--tokens FILE (in --pools) is required")?;
    let cache: usize = arg("--cache").map_or(Ok(1000), |c| c.parse())?;
    let valid = arg("--answer").is_none_or(|a| a == "valid");
    let decisions: usize = arg("--decisions").map_or(Ok(20_000), |n| n.parse())?;
    let occasion = Occasion {
        reported: !args.flag("--unreported"),
        ..Occasion::FIRST
    };

    let jwks: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pools.join("jwks.json"))?)?;
    // The bench's provider (bench/run.py): forward on, as jwt_authn there forwards too.
    let config = serde_json::json!({
        "providers": {"bench": {"issuer": "https://bench.bearer-guard.local",
            "audiences": ["bench-api"], "local_jwks": jwks, "forward": true}},
        "jwt_cache_size": cache,
    });
    let config = Config::from_json(config.to_string().as_bytes())
        .map_err(|e| format!("{e:?}"))?
        .config;
    let guard = Guard::new(config).with_host_crypto(Box::new(Answer(valid)));
    let tokens: Vec<String> = std::fs::read_to_string(pools.join(&tokens_file))?
        .lines()
        .map(str::to_owned)
        .collect();
    if tokens.is_empty() {
        return Err(format!("{tokens_file} holds no token").into());
    }
    // The pools are minted valid for a few hours from when they were written.
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
    )?;
    // Headers as wrk sends them through Envoy, serialized as the host hands them over before
    // counting starts; reading them is counted, as the shell does it for every request.
    let request_id = "0".repeat(36);
    let requests: Vec<Vec<u8>> = tokens
        .iter()
        .map(|token| {
            let authorization = format!("Bearer {token}");
            header_map::serialize(&[
                (":authority", "127.0.0.1"),
                (":path", "/"),
                (":method", "GET"),
                (":scheme", "http"),
                ("authorization", &authorization),
                ("x-forwarded-proto", "http"),
                ("x-request-id", &request_id),
            ])
        })
        .collect();
    let mut allowed = 0usize;
    for serialized in requests.iter().cycle().take(decisions) {
        let headers =
            header_map::read(serialized).ok_or("the serialized headers do not read back")?;
        let request = Request {
            method: "GET",
            path: "/",
            headers: &headers.text,
            tls: false,
            not_utf8: &headers.not_utf8,
            jwt_authn: None,
        };
        let verdict = guard.decide_as(&request, now, occasion);
        if matches!(verdict.decision, Decision::Allow { .. }) {
            allowed += 1;
        }
    }
    println!("{allowed} of {decisions} decisions allowed ({tokens_file}, cache {cache})");
    Ok(())
}
