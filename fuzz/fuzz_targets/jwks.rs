//! A JSON Web Key Set, as served by an identity provider (remote JWKS) or inlined in config:
//! base64url members, RSA moduli, EC points, Ed25519 keys, `alg` / `use` handling.
#![no_main]

use bearer_guard::token::algorithm::Algorithm;
use bearer_guard::keys::jwks::parse_jwks_str;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The filter reads a fetched JWKS as UTF-8 (a body that is not fails as "not JSON").
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = parse_jwks_str(text) else {
        return;
    };
    for key in &parsed.key_set.keys {
        for algorithm in Algorithm::ALL {
            let _ = key.serves(algorithm);
        }
        let _ = format!("{key:?}");
    }
    for (_, skip) in &parsed.skipped {
        let _ = skip.to_string();
    }
});
