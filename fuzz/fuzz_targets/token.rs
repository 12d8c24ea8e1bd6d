//! A bearer token through the whole decision: extraction, JWS parsing, algorithm and key
//! selection, signature verification, claim checks, revocation and status-list lookups.
//!
//! The config is fixed (built once); the fuzz input is the token. The keys below are public
//! halves only; the seed corpus (fuzz/corpus/token) holds tokens signed with their private
//! halves, so the fuzzer starts from tokens that verify. The `oct` key's secret is public here
//! on purpose: it lets seeds that verify reach the claim checks through HMAC as well.
#![no_main]

use std::sync::OnceLock;

use bearer_guard::config::Config;
use bearer_guard::decide::guard::{Guard, Request};
use libfuzzer_sys::fuzz_target;

/// The clock of every decision (the seed tokens are valid at it).
const NOW: i64 = 1_800_000_000;

/// RS256-pinned and unpinned RSA-2048, P-256, P-384 (host-verified only: no host here),
/// Ed25519, and an HMAC secret.
const JWKS: &str = r#"{"keys": [
{"kty": "RSA", "kid": "rsa-1", "alg": "RS256", "use": "sig", "n": "99Ld3QWl2vbZ-VJdZlcmsjyP7vIZ_Z3VaQKsaCFLOOOH7qNwFnk37MCLH6pgjDOkKuu8zGUtbrIMBjcFmrs5SnMuFy9Nh2yKP8KsGGhDrVcVi0yNm0BiEDvYeRB4Nw9QY5Jp888R4z-yLi9C-i6nY2kPhUgbxofw9nvnaa6Jifi_zKx2OOEQfZmaj1Sba6rnETG3K3hDrM3E9WQRfH6CaUKyNcxE9N2nnIPT4JN71aL4pdBplNB0TZ6Zk4rtW7Rtm3LoAlNjZnji5vBmuF_3oX3KXGmZVQUP7GXTKa0dG5iTpCJYg1l8ZgMc-aZ15YF-T3O49cn-jFru81XSRnxvkQ", "e": "AQAB"},
{"kty": "RSA", "kid": "rsa-any", "n": "99Ld3QWl2vbZ-VJdZlcmsjyP7vIZ_Z3VaQKsaCFLOOOH7qNwFnk37MCLH6pgjDOkKuu8zGUtbrIMBjcFmrs5SnMuFy9Nh2yKP8KsGGhDrVcVi0yNm0BiEDvYeRB4Nw9QY5Jp888R4z-yLi9C-i6nY2kPhUgbxofw9nvnaa6Jifi_zKx2OOEQfZmaj1Sba6rnETG3K3hDrM3E9WQRfH6CaUKyNcxE9N2nnIPT4JN71aL4pdBplNB0TZ6Zk4rtW7Rtm3LoAlNjZnji5vBmuF_3oX3KXGmZVQUP7GXTKa0dG5iTpCJYg1l8ZgMc-aZ15YF-T3O49cn-jFru81XSRnxvkQ", "e": "AQAB"},
{"kty": "EC", "kid": "ec-1", "crv": "P-256", "x": "g1VcS_4yuQuQqzIxxAJl5_JM_iCXgHlF0-HMn84vIgk", "y": "xBfdlbpdu4x1nihrAcqT618tuss_eIgjaMD7N1xGmCA"},
{"kty": "EC", "kid": "ec-384", "crv": "P-384", "x": "9hR9sxh6yf4tbSWQxiSOiEsf_ztHmJRs51MWAt4QfCg4v1FZQ1mOs3Rb9BJCV08v", "y": "kmwsKEZZiYlUcDhDq-ClsEKu85W85_OF1l-ASL8EuFxCe02dtfFEME-NpvE6frcD"},
{"kty": "OKP", "kid": "ed-1", "crv": "Ed25519", "x": "Ip0mZ8PwmqVHxu5PkJAJplGhcuikN5K44FpjhKZ2T5Y"},
{"kty": "oct", "kid": "hmac-1", "k": "CzBVep_E6Q4zWH2ix-wRNluApcrvFDleg6jN8hc8YYar0PUaP2SJrtP4HUJnjLHW-yBFao-02f4jSG2St9wBJg"}
]}"#;

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let jwks: serde_json::Value = serde_json::from_str(JWKS).expect("JWKS literal");
        let json = serde_json::json!({
            "providers": { "corp": {
                "issuer": "https://idp.example.com",
                "audiences": ["orders-api"],
                "local_jwks": jwks,
                "algorithms": ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                               "ES256", "ES384", "ES512", "EdDSA", "HS256", "HS384", "HS512"],
                "claim_to_headers": [{ "claim_name": "sub", "header_name": "x-sub" }],
                "forward_payload_header": "x-jwt-payload",
            }},
            "rules": [
                { "match": { "prefix": "/orders" }, "requires": { "provider_name": "corp" },
                  "scopes": ["orders:read"] },
            ],
            "revocation": {
                "jti": ["revoked-1"],
                "subjects": { "mallory": NOW },
                "status_list": { "clusters": { "status.example": "status" } },
            },
            "log": { "decisions": "all" },
            "crypto": "wasm",
        });
        let configured =
            Config::from_json(json.to_string().as_bytes()).expect("the fuzz config is valid");
        assert_eq!(
            configured
                .config
                .providers
                .first()
                .map(|p| p.keys.keys.len()),
            Some(6),
            "every JWKS key is usable: {:?}",
            configured.warnings
        );
        configured.config
    })
}

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    let bearer = format!("Bearer {token}");
    let headers = [("authorization", bearer.as_str())];
    let request = Request {
        method: "GET",
        path: "/orders/1",
        headers: &headers,
        tls: false,
        not_utf8: &[],
        jwt_authn: None,
    };
    // A fresh guard per input: no state (cache, learned revocations) carries between inputs,
    // so every crash reproduces from its input alone.
    let guard = Guard::new(config().clone());
    let first = guard.decide(&request, NOW);
    // Again: a verified token now comes from the cache, and must be decided the same way.
    let second = guard.decide(&request, NOW);
    assert_eq!(first.decision, second.decision, "cached decision differs");
    let _ = guard.decide_after_wait(&request, NOW);
});
