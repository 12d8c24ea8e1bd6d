//! The operator CLI run as a process (the binary cargo builds for this test): exit statuses,
//! what it prints, and the files it writes. Verdicts are checked against the responses the
//! filter sends in Envoy (tests/envoy_filter.rs, tests/revocation.rs): same status, same
//! `WWW-Authenticate`, same body.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use bearer_guard::revocation::list::{accept_response, ListUpdate};
use bearer_guard::revocation::set::Probe;

mod support;
use support::cli::{bin, run, run_with_input, Run};

/// A fixed "now" for `mint` and `explain`: 2027-01-15T08:00:00Z.
const NOW: i64 = 1_800_000_000;
const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/envoy/demo.yaml");

/// A scratch directory of this test's own.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bearer-guard-cli-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// The demo's Envoy config with a polled revocation list where it has etcd (for
/// `--revocation-list`): written to `dir`, its path returned.
fn demo_with_list(dir: &Path) -> String {
    let demo = fs::read_to_string(DEMO).unwrap();
    let start = demo.find("\"etcd\": {").expect("the demo reads etcd");
    let end = start + demo[start..].find('}').unwrap() + 1;
    let list = r#""list": { "cluster": "etcd", "uri": "http://revocations.local/v1/list" }"#;
    write(
        dir,
        "demo-with-list.yaml",
        &format!("{}{list}{}", &demo[..start], &demo[end..]),
    )
}

fn mint(extra: &[&str]) -> String {
    let now = NOW.to_string();
    let mut args = vec!["mint", "--now", &now];
    args.extend_from_slice(extra);
    let minted = run(&args);
    assert_eq!(minted.code, 0, "{}", minted.err);
    minted.out.trim().to_owned()
}

fn explain(config: &str, token: &str, extra: &[&str]) -> Run {
    let now = NOW.to_string();
    let mut args = vec!["explain", "--config", config, "--now", &now];
    if !extra.contains(&"--path") {
        args.extend(["--path", "/hello"]);
    }
    args.extend_from_slice(extra);
    args.push(token);
    let explained = run(&args);
    assert!(
        !explained.out.contains(token) && !explained.err.contains(token),
        "the token must never be printed"
    );
    explained
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// `part` is in `text` (shown whole when it is not).
#[track_caller]
fn has(text: &str, part: &str) {
    assert!(text.contains(part), "{part:?} is not in:\n{text}");
}

/// The denial lines the filter's response is made of.
fn assert_denied(run: &Run, status: u32, error: &str, description: &str) {
    assert_eq!(run.code, 1, "{}{}", run.out, run.err);
    has(&run.out, &format!("  status: {status}\n"));
    let challenge = format!(
        "Bearer realm=\"bearer-guard\", error=\"{error}\", error_description=\"{description}\""
    );
    has(&run.out, &format!("  www-authenticate: {challenge}\n"));
    has(
        &run.out,
        &format!("  body: {{\"error\":\"{error}\",\"error_description\":\"{description}\"}}\n"),
    );
}

#[test]
fn check_config_accepts_the_demo_and_names_the_key_of_an_error_with_a_hint() {
    let ok = run(&["check-config", DEMO]);
    assert_eq!(ok.code, 0, "{}", ok.err);
    // The ready-made configs trust the demo keys, whose private halves are public: a warning
    // (on standard error; the config is still valid).
    for kid in ["demo-rsa", "demo-ec"] {
        has(
            &ok.err,
            &format!(
                "warning: provider demo trusts the public demo key {kid}: anyone can sign \
                 tokens for it; replace it before deploying"
            ),
        );
    }
    assert!(!ok.out.contains("demo key"), "{}", ok.out);
    has(
        &ok.out,
        "demo.yaml: listener guarded, http_filters[0]: ok: 1 provider: demo (2 local keys)",
    );

    let dir = scratch("check");
    let typo = write(
        &dir,
        "typo.json",
        r#"{"providers": {"corp": {"issuer": "i", "audience": ["a"], "local_jwks": {"keys": []}}}}"#,
    );
    let bad = run(&["check-config", &typo]);
    assert_eq!(bad.code, 1);
    has(
        &bad.err,
        "invalid configuration at providers.corp.audience: unknown field `audience`",
    );
    has(&bad.err, "  hint: did you mean `audiences`?\n");

    let range = write(
        &dir,
        "range.yaml",
        "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata:\n  name: bearer-guard\nspec:\n  pluginConfig:\n    providers:\n      corp: { issuer: i, remote_jwks: { cluster: idp, uri: 'https://idp/jwks' } }\n    anomaly: { window_seconds: 0 }\n",
    );
    let bad = run(&["check-config", &range]);
    assert_eq!(bad.code, 1);
    has(
        &bad.err,
        "range.yaml: WasmPlugin bearer-guard: invalid configuration at anomaly.window_seconds: \
         must be 1..=86400",
    );
    has(
        &bad.err,
        "hint: `window_seconds` (integer 1..=86400, default 60)",
    );

    // A JSON syntax error: the filter's parser still names where.
    let syntax = write(
        &dir,
        "syntax.json",
        "{\"providers\": {\"corp\": {\"issuer\": \"i\",}}}",
    );
    let bad = run(&["check-config", &syntax]);
    assert_eq!(bad.code, 1);
    has(&bad.err, "invalid configuration at providers.corp");

    let none = write(&dir, "none.yaml", "admin: {}\n");
    let bad = run(&["check-config", &none]);
    assert_eq!(bad.code, 1);
    has(&bad.err, "no bearer-guard plugin configuration found");

    // Usage errors: 2, with the usage.
    let usage = run(&["check-config"]);
    assert_eq!(usage.code, 2);
    has(
        &usage.err,
        "the following required arguments were not provided:\n  <FILE>...",
    );
    has(&usage.err, "Usage: bearer-guard check-config <FILE>...");
    assert_eq!(run(&["check-config", "/nonexistent/x.json"]).code, 2);
    assert_eq!(run(&["check-config", "--strict", DEMO]).code, 2);
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn explain_gives_the_filters_verdict_for_each_kind_of_token() {
    let valid = mint(&["--jti", "t-1"]);
    let allowed = explain(DEMO, &valid, &[]);
    assert_eq!(allowed.code, 0, "{}{}", allowed.out, allowed.err);
    has(
        &allowed.out,
        "provider  demo (its issuer is the token's iss; the filter's choice)",
    );
    has(&allowed.out, "verdict   allowed (provider demo)");
    // The fingerprint the decision log shows instead of the token.
    let digest = Sha256::digest(valid.as_bytes());
    let fp: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    has(
        &allowed.out,
        &format!("token     fingerprint {fp} (as in the decision log)"),
    );

    let expired = mint(&["--iat", "-2h", "--exp", "-1h"]);
    let denied = explain(DEMO, &expired, &[]);
    assert_denied(&denied, 401, "invalid_token", "token expired");
    has(&denied.out, "  FAIL  times: token expired (expired;");
    // Read before the signature, which the trace says was not checked.
    has(
        &denied.out,
        "--    signature: the times come first and refuse the token",
    );
    // Within the clock skew (60 s) it still passes, as in the filter.
    let just_expired = mint(&["--exp", "-30s"]);
    assert_eq!(explain(DEMO, &just_expired, &[]).code, 0);

    let wrong_aud = mint(&["--aud", "other-api"]);
    let denied = explain(DEMO, &wrong_aud, &[]);
    assert_denied(&denied, 401, "invalid_token", "audience not accepted");
    has(&denied.out, "  FAIL  aud: audience not accepted");

    // A forged token: one signature character changed.
    let mut forged = valid.clone().into_bytes();
    let at = valid.rfind('.').unwrap() + 20;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let denied = explain(DEMO, &forged, &[]);
    assert_denied(
        &denied,
        401,
        "invalid_token",
        "signature verification failed",
    );

    // No token: the challenge without an error code.
    let public = explain(DEMO, "not-a-jwt", &["--path", "/healthz"]);
    assert_eq!(public.code, 0, "{}", public.out);
    has(&public.out, "rule      needs no token (public route)");

    // Revoked by the polled list (a file in the list's format) ...
    let dir = scratch("explain");
    let list = write(&dir, "list.json", r#"{"version": "v1", "jti": ["t-1"]}"#);
    let with_list = demo_with_list(&dir);
    let denied = explain(&with_list, &valid, &["--revocation-list", &list]);
    assert_denied(&denied, 401, "invalid_token", "token revoked");
    has(&denied.out, "(reason revoked, revoked by list)");
    // ... and by the config's static entries.
    let demo = fs::read_to_string(DEMO).unwrap();
    let with_static = demo.replace(
        "\"revocation\": {",
        "\"revocation\": { \"subjects\": { \"demo-user\": 1800000000 },",
    );
    assert_ne!(with_static, demo);
    let config = write(&dir, "demo-static.yaml", &with_static);
    let denied = explain(&config, &valid, &[]);
    assert_denied(&denied, 401, "invalid_token", "token revoked");
    has(&denied.out, "revoked by config");

    // The token from standard input.
    let piped = run_with_input(
        &[
            "explain",
            "--config",
            DEMO,
            "--now",
            &NOW.to_string(),
            "--path",
            "/hello",
            "-",
        ],
        &format!("{valid}\n"),
    );
    assert_eq!(piped.code, 0, "{}{}", piped.out, piped.err);
    assert!(!piped.out.contains(&valid));
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn minted_tokens_carry_what_was_asked_and_the_filter_accepts_them() {
    let token = mint(&[
        "--alg",
        "ES256",
        "--sub",
        "alice",
        "--aud",
        "demo-api",
        "--aud",
        "billing",
        "--lifetime",
        "10m",
        "--jti",
        "j-7",
        "--scope",
        "orders:read orders:write",
        "--typ",
        "at+jwt",
        "--claim",
        r#"org={"id": 7}"#,
        "--claim",
        "tenant=acme",
    ]);
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        header,
        json!({ "alg": "ES256", "kid": "demo-ec", "typ": "at+jwt" })
    );
    assert_eq!(
        claims_of(&token),
        json!({
            "iss": "https://demo-idp.bearer-guard.local", "sub": "alice",
            "aud": ["demo-api", "billing"], "iat": NOW, "exp": NOW + 600, "jti": "j-7",
            "scope": "orders:read orders:write", "org": { "id": 7 }, "tenant": "acme",
        })
    );
    let explained = explain(DEMO, &token, &[]);
    assert_eq!(explained.code, 0, "{}", explained.out);
    has(&explained.out, r#"sub "alice""#);
    has(&explained.out, r#"scopes ["orders:read", "orders:write"]"#);
    has(&explained.out, "ok    typ: \"at+jwt\"");

    let no_exp = mint(&["--no-exp"]);
    assert!(claims_of(&no_exp).get("exp").is_none());
    assert_denied(
        &explain(DEMO, &no_exp, &[]),
        401,
        "invalid_token",
        "token has no expiration",
    );
    assert_eq!(run(&["mint", "--alg", "HS256"]).code, 2);
    assert_eq!(run(&["mint", "--exp", "+1h", "--lifetime", "1h"]).code, 2);
}

#[test]
fn jwks_is_the_demo_jwks_and_serves_as_a_providers_keys() {
    let printed = run(&["jwks"]);
    assert_eq!(printed.code, 0, "{}", printed.err);
    let jwks: Value = serde_json::from_str(&printed.out).unwrap();
    // The keys envoy/demo.yaml embeds.
    let demo = fs::read_to_string(DEMO).unwrap();
    for key in jwks["keys"].as_array().unwrap() {
        let material = key
            .get("n")
            .or_else(|| key.get("x"))
            .unwrap()
            .as_str()
            .unwrap();
        assert!(demo.contains(material), "{key}");
    }
    assert_eq!(jwks["keys"][0]["kid"], "demo-rsa");
    assert_eq!(jwks["keys"][1]["kid"], "demo-ec");

    let dir = scratch("jwks");
    let config = json!({ "providers": { "mine": {
        "issuer": "https://mine.example", "audiences": ["api"], "local_jwks": jwks } } });
    let config = write(&dir, "local.json", &config.to_string());
    assert_eq!(run(&["check-config", &config]).code, 0);
    let token = mint(&[
        "--alg",
        "ES256",
        "--iss",
        "https://mine.example",
        "--aud",
        "api",
    ]);
    let explained = explain(&config, &token, &[]);
    assert_eq!(explained.code, 0, "{}", explained.out);
    has(&explained.out, "2 keys (local JWKS): demo-rsa, demo-ec");

    // Remote keys: the CLI says it cannot fetch them, and takes them from a file.
    let remote = json!({ "providers": { "mine": {
        "issuer": "https://mine.example", "audiences": ["api"],
        "remote_jwks": { "cluster": "idp", "uri": "https://idp.example/jwks" } } } });
    let remote = write(&dir, "remote.json", &remote.to_string());
    let unfetched = explain(&remote, &token, &[]);
    has(&unfetched.out, "the CLI cannot (pass --jwks mine=FILE");
    // The configured URI as it is (https here).
    has(
        &unfetched.out,
        "fetches its keys from https://idp.example/jwks through cluster idp",
    );
    has(
        &unfetched.out,
        "waits     the filter would pause the request: it fetches provider mine's keys",
    );
    assert_eq!(unfetched.code, 1);
    has(&unfetched.out, "  status: 503\n  retry-after: 5\n");
    let jwks_file = write(&dir, "jwks.json", &printed.out);
    let fetched = explain(&remote, &token, &["--jwks", &format!("mine={jwks_file}")]);
    assert_eq!(fetched.code, 0, "{}", fetched.out);
    has(&fetched.out, "2 keys (from --jwks)");
    fs::remove_dir_all(dir).unwrap();
}

/// The list file as the filter reads a poll's answer.
fn parse_list(path: &str) -> bearer_guard::revocation::set::RevocationSet {
    let body = fs::read(path).unwrap();
    match accept_response(Some("200"), None, body.as_slice(), None, None, NOW).unwrap() {
        ListUpdate::Replaced { base, .. } => base,
        other => panic!("{other:?}"),
    }
}

#[test]
fn revoke_edits_a_list_file_the_filter_parses() {
    let dir = scratch("revoke");
    let list = dir.join("sub/../list.json");
    fs::create_dir_all(dir.join("sub")).unwrap();
    let list = list.to_str().unwrap();
    let token = mint(&["--jti", "t-9"]);
    // `--token` writes the token identity: the SHA-256 of the signing input (header.payload),
    // which `token-id` prints and every signature twin of the token shares.
    let (signed, _) = token.rsplit_once('.').unwrap();
    let sha: [u8; 32] = Sha256::digest(signed.as_bytes()).into();
    let sha_hex: String = sha.iter().map(|b| format!("{b:02x}")).collect();
    let printed = run_with_input(&["token-id", "-"], &token);
    assert_eq!(printed.code, 0, "{}", printed.err);
    assert_eq!(printed.out, format!("{sha_hex}\n"));
    assert!(!printed.out.contains(&token) && !printed.err.contains(&token));
    assert_ne!(
        sha,
        <[u8; 32]>::from(Sha256::digest(token.as_bytes())),
        "not the whole token's hash"
    );
    let usage = run(&["token-id"]);
    assert_eq!(usage.code, 2);
    let exp = (NOW + 3600).to_string();

    let added = run_with_input(
        &[
            "revoke",
            "--list",
            list,
            "--jti",
            "j-1",
            "--exp",
            &exp,
            "--token",
            "-",
            "--subject",
            "alice",
            "--issued-before",
            "1799999000",
        ],
        &token,
    );
    assert_eq!(added.code, 0, "{}", added.err);
    has(&added.out, "added jti j-1");
    has(&added.out, &format!("added token_sha256 {sha_hex}"));
    assert!(!added.out.contains(&token));
    let scoped = run(&[
        "revoke",
        "--list",
        list,
        "--provider",
        "demo",
        "--jti",
        "j-2",
    ]);
    assert_eq!(scoped.code, 0, "{}", scoped.err);
    let global = run(&["revoke", "--list", list, "--issued-before", "1700000000"]);
    assert_eq!(global.code, 0, "{}", global.err);
    let written: Value = serde_json::from_str(&fs::read_to_string(list).unwrap()).unwrap();
    assert_eq!(
        written,
        json!({
            "jti": [{ "jti": "j-1", "exp": NOW + 3600 }],
            "token_sha256": [{ "token_sha256": sha_hex, "exp": NOW + 3600 }],
            "subjects": { "alice": { "issued_before": 1_799_999_000, "exp": NOW + 3600 } },
            "issued_before": 1_700_000_000,
            "providers": { "demo": { "jti": ["j-2"] } },
        })
    );
    let set = parse_list(list);
    let probe = |provider: &str, jti: Option<&str>, sub: Option<&str>, iat: i64| {
        set.revokes(&Probe::new(provider, jti, sub, Some(iat), None))
    };
    assert!(probe("demo", Some("j-1"), None, NOW));
    assert!(probe("demo", Some("j-2"), None, NOW));
    assert!(!probe("other", Some("j-2"), None, NOW));
    assert!(probe("demo", None, Some("alice"), 1_799_999_000));
    assert!(!probe("demo", None, Some("alice"), 1_799_999_001));
    assert!(probe("demo", None, None, 1_700_000_000));
    assert!(set.revokes(&Probe::new("demo", None, None, Some(NOW), Some(&sha))));
    // The filter refuses the token by that list.
    let with_list = demo_with_list(Path::new(list).parent().unwrap());
    let explained = explain(&with_list, &token, &["--revocation-list", list]);
    assert_denied(&explained, 401, "invalid_token", "token revoked");

    // Idempotent: the same edit again leaves the file as it is.
    let before = fs::read(list).unwrap();
    let again = run(&["revoke", "--list", list, "--jti", "j-1", "--exp", &exp]);
    assert_eq!(again.code, 0);
    has(&again.out, "jti j-1 is listed already");
    has(&again.out, ": unchanged");
    assert_eq!(fs::read(list).unwrap(), before);

    let removed = run(&[
        "revoke",
        "--list",
        list,
        "--remove",
        "--jti",
        "j-1",
        "--subject",
        "alice",
    ]);
    assert_eq!(removed.code, 0, "{}", removed.err);
    let set = parse_list(list);
    assert!(!set.revokes(&Probe::new("demo", Some("j-1"), None, Some(NOW), None)));
    // At alice's cutoff (and after the global one): revoked before the removal, not after.
    assert!(!set.revokes(&Probe::new(
        "demo",
        None,
        Some("alice"),
        Some(1_799_999_000),
        None
    )));

    // A file that is not a list is refused and left alone.
    let other = write(&dir, "other.json", r#"{"jtis": ["x"]}"#);
    let refused = run(&["revoke", "--list", &other, "--jti", "y"]);
    assert_eq!(refused.code, 2);
    has(&refused.err, "unknown field `jtis`");
    assert_eq!(fs::read_to_string(&other).unwrap(), r#"{"jtis": ["x"]}"#);
    assert_eq!(run(&["revoke", "--list", list]).code, 2);
    // No temporary files left behind.
    let names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn schema_prints_the_committed_schema() {
    let printed = run(&["schema"]);
    assert_eq!(printed.code, 0);
    let committed = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schema/bearer-guard.config.schema.json"
    ))
    .unwrap();
    assert_eq!(printed.out, committed);
}

#[test]
fn concurrent_revokes_all_land() {
    let dir = scratch("revoke-concurrent");
    let list = dir.join("list.json");
    let list = list.to_str().unwrap();
    let children: Vec<_> = (0..20)
        .map(|i| {
            Command::new(bin())
                .args(["revoke", "--list", list, "--jti", &format!("j{i}")])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let written: Value = serde_json::from_str(&fs::read_to_string(list).unwrap()).unwrap();
    let listed: Vec<&str> = written["jti"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j.as_str().unwrap())
        .collect();
    for i in 0..20 {
        let jti = format!("j{i}");
        assert!(listed.contains(&jti.as_str()), "{jti} lost: {listed:?}");
    }
    assert_eq!(listed.len(), 20);
    fs::remove_dir_all(dir).unwrap();
}

#[cfg(unix)]
#[test]
fn revoke_edits_a_symlinked_list_in_place_and_keeps_its_mode() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let dir = scratch("revoke-symlink");
    let target = write(&dir, "real.json", r#"{"jti": ["a"]}"#);
    fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
    let link = dir.join("list.json");
    symlink(&target, &link).unwrap();
    let link = link.to_str().unwrap();
    let edited = run(&["revoke", "--list", link, "--jti", "b"]);
    assert_eq!(edited.code, 0, "{}", edited.err);
    // The link is still a link, to the same file, which has the edit and its mode.
    assert!(fs::symlink_metadata(link).unwrap().file_type().is_symlink());
    assert_eq!(fs::read_link(link).unwrap(), Path::new(&target));
    let written: Value = serde_json::from_str(&fs::read_to_string(&target).unwrap()).unwrap();
    assert_eq!(written, json!({ "jti": ["a", "b"] }));
    let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    let names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn errors_never_echo_a_token() {
    let token = mint(&[]);
    let dir = scratch("no-echo");
    let list = dir.join("list.json");
    let list = list.to_str().unwrap();
    let config = write(&dir, "c.json", &fs::read_to_string(DEMO).unwrap());
    let runs = [
        // A token where no operand belongs.
        run(&["revoke", "--list", list, &token]),
        run(&["mint", &token]),
        // A token given as its hash by mistake.
        run(&["revoke", "--list", list, "--token-sha256", &token]),
        // A header without a colon.
        run(&["explain", "--config", &config, "--header", &token, &token]),
        run(&[
            "explain",
            "--config",
            &config,
            "--header",
            &format!("Bearer {token}"),
            "-",
        ]),
    ];
    for failed in runs {
        assert_eq!(failed.code, 2, "{}", failed.err);
        assert!(!failed.err.is_empty());
        let start = &token[..20];
        assert!(
            !failed.err.contains(start) && !failed.out.contains(start),
            "the token is echoed: {}",
            failed.err
        );
    }
    fs::remove_dir_all(dir).unwrap();
}

/// Two providers with one issuer: `corp` reads `Authorization`; `admin` only subject root,
/// from `x-admin-token`.
fn two_providers_one_issuer(dir: &Path) -> String {
    let jwks: Value = serde_json::from_str(&run(&["jwks"]).out).unwrap();
    let config = json!({
        "providers": {
            "corp": { "issuer": "https://idp.example", "audiences": ["api"], "local_jwks": jwks },
            "admin": {
                "issuer": "https://idp.example", "audiences": ["api"], "local_jwks": jwks,
                "subjects": { "exact": "root" },
                "from_headers": [{ "name": "x-admin-token" }]
            }
        },
        "rules": [
            { "match": { "prefix": "/admin" }, "requires": { "provider_name": "admin" } },
            { "match": { "prefix": "/" }, "requires": { "requires_any": { "requirements": [
                { "provider_name": "corp" }, { "provider_name": "admin" } ] } } }
        ]
    });
    write(dir, "two.json", &config.to_string())
}

#[test]
fn explain_places_the_token_for_the_routes_provider_and_reports_the_guards_choice() {
    let dir = scratch("explain-two");
    let config = two_providers_one_issuer(&dir);
    let token = |sub: &str| mint(&["--iss", "https://idp.example", "--aud", "api", "--sub", sub]);

    // The route takes admin only: the token goes in x-admin-token, admin's checks are shown,
    // and the verdict is the guard's (alice is not an admin subject: 401 subject).
    let denied = explain(&config, &token("alice"), &["--path", "/admin/users"]);
    has(&denied.out, "the token in header x-admin-token");
    has(
        &denied.out,
        "provider  admin (its issuer is the token's iss; the filter's choice)",
    );
    has(&denied.out, "  FAIL  sub: subject not accepted");
    assert_denied(&denied, 401, "invalid_token", "subject not accepted");
    has(&denied.out, "(reason subject)");
    let allowed = explain(&config, &token("root"), &["--path", "/admin/users"]);
    assert_eq!(allowed.code, 0, "{}", allowed.out);
    has(&allowed.out, "verdict   allowed (provider admin)");
    assert!(!allowed.out.contains("FAIL"), "{}", allowed.out);

    // requires_any (corp, admin): the first of the route's providers with that issuer is
    // corp, which reads Authorization; the guard allows it as corp, and the checks are corp's.
    let any = explain(&config, &token("alice"), &["--path", "/orders"]);
    assert_eq!(any.code, 0, "{}", any.out);
    has(&any.out, "the token in header authorization");
    has(
        &any.out,
        "provider  corp (its issuer is the token's iss; the filter's choice)",
    );
    has(&any.out, "verdict   allowed (provider corp)");
    assert!(!any.out.contains("FAIL"), "{}", any.out);
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn mint_needs_no_source_tree() {
    // The demo keys are built in: a copy of the binary elsewhere still mints and prints them.
    let dir = scratch("copied");
    let copy = dir.join("bearer-guard");
    fs::copy(bin(), &copy).unwrap();
    // Another test of this process may fork while the copy's write descriptor is still open
    // (until its child execs): exec then fails with ETXTBSY for a moment. Retry briefly.
    let mut attempts = 0;
    let minted = loop {
        match Command::new(&copy)
            .args(["mint", "--now", &NOW.to_string()])
            .current_dir(&dir)
            .output()
        {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 50 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => break other.unwrap(),
        }
    };
    assert!(
        minted.status.success(),
        "{}",
        String::from_utf8_lossy(&minted.stderr)
    );
    let token = String::from_utf8(minted.stdout).unwrap();
    assert_eq!(explain(DEMO, token.trim(), &[]).code, 0);
    let jwks = Command::new(&copy).arg("jwks").output().unwrap();
    assert_eq!(String::from_utf8(jwks.stdout).unwrap(), run(&["jwks"]).out);
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn explain_takes_the_requests_host_for_rules_per_host() {
    let dir = scratch("explain-hosts");
    let jwks: Value = serde_json::from_str(&run(&["jwks"]).out).unwrap();
    let config = json!({
        "providers": { "corp": { "issuer": "https://idp.example", "local_jwks": jwks } },
        "rules": [
            { "match": { "prefix": "/", "hosts": ["api.example.com"] },
              "requires": { "provider_name": "corp" } },
            { "match": { "prefix": "/", "hosts": ["*.docs.example.com"] } }
        ]
    });
    let config = write(&dir, "hosts.json", &config.to_string());
    let token = mint(&["--iss", "https://idp.example"]);
    let api = explain(&config, &token, &["--authority", "API.example.com:443"]);
    assert_eq!(api.code, 0, "{}", api.out);
    let docs = explain(
        &config,
        "not-a-jwt",
        &["--authority", "v1.docs.example.com"],
    );
    assert_eq!(docs.code, 0, "{}", docs.out);
    has(&docs.out, "needs no token (public route)");
    let other = explain(&config, &token, &["--authority", "evil.example.com"]);
    assert_eq!(other.code, 1, "{}", other.out);
    has(&other.out, "403");
}

#[test]
fn every_command_has_its_help_and_the_shells_their_completions() {
    let help = run(&["mint", "--help"]);
    assert_eq!(help.code, 0, "{}", help.err);
    for option in [
        "--lifetime <D>",
        "--exp <T>",
        "--no-exp",
        "--claim <NAME=JSON>",
    ] {
        has(&help.out, option);
    }
    has(&help.out, "D: 3600, 30m, 1h, 7d");
    let help = run(&["help", "revoke"]);
    assert_eq!(help.code, 0, "{}", help.err);
    has(&help.out, "Usage: bearer-guard revoke");
    let help = run(&["--help"]);
    assert_eq!(help.code, 0, "{}", help.err);
    has(&help.out, "completions");
    let version = run(&["--version"]);
    assert_eq!(version.code, 0);
    assert_eq!(
        version.out,
        format!("bearer-guard {}\n", env!("CARGO_PKG_VERSION"))
    );

    let bash = run(&["completions", "bash"]);
    assert_eq!(bash.code, 0, "{}", bash.err);
    has(&bash.out, "complete -F _bearer__guard");
    for command in [
        "check-config",
        "explain",
        "mint",
        "revoke",
        "revocations",
        "token-id",
    ] {
        has(&bash.out, command);
    }
}

#[test]
fn usage_errors_exit_2_naming_the_option_and_value() {
    let unknown = run(&["mint", "--lifetim", "1h"]);
    assert_eq!(unknown.code, 2);
    has(&unknown.err, "unexpected argument '--lifetim'");
    has(&unknown.err, "a similar argument exists: '--lifetime'");
    assert_eq!(unknown.out, "");

    let bad_time = run(&[
        "revoke", "--list", "l.json", "--jti", "a", "--exp", "tomorrow",
    ]);
    assert_eq!(bad_time.code, 2);
    has(&bad_time.err, "invalid value 'tomorrow' for '--exp <T>'");
    let bad_duration = run(&["mint", "--lifetime", "1y"]);
    assert_eq!(bad_duration.code, 2);
    has(&bad_duration.err, "invalid value '1y' for '--lifetime <D>'");
    let bad_now = run(&["explain", "--config", DEMO, "--now", "2027-01-15", "t"]);
    assert_eq!(bad_now.code, 2);
    has(&bad_now.err, "invalid value '2027-01-15' for '--now <T>'");

    // Every time form, as a minted token's claims show it.
    for (exp, at) in [
        ("1800003600", NOW + 3600),
        ("2027-01-15T09:00:00Z", NOW + 3600),
        ("2027-01-15T10:00:00+01:00", NOW + 3600),
        ("+1h", NOW + 3600),
        ("+1d", NOW + 86_400),
        ("-2h", NOW - 7200),
        ("now", NOW),
    ] {
        assert_eq!(claims_of(&mint(&["--exp", exp]))["exp"], at, "{exp}");
    }
    for (lifetime, seconds) in [("3600", 3600), ("30m", 1800), ("1h", 3600), ("7d", 604_800)] {
        let claims = claims_of(&mint(&["--lifetime", lifetime]));
        assert_eq!(claims["exp"], NOW + seconds, "{lifetime}");
    }
}

#[test]
fn explain_and_check_config_say_what_shadow_mode_lets_through() {
    let dir = scratch("explain-shadow");
    let jwks: Value = serde_json::from_str(&run(&["jwks"]).out).unwrap();
    let config = json!({
        "mode": "shadow",
        "providers": { "corp": { "issuer": "https://idp.example", "local_jwks": jwks } },
        "rules": [
            { "match": { "prefix": "/admin" }, "requires": { "provider_name": "corp" },
              "mode": "enforce" },
            { "match": { "prefix": "/" }, "requires": { "provider_name": "corp" } }
        ]
    });
    let config = write(&dir, "shadow.json", &config.to_string());
    let checked = run(&["check-config", &config]);
    assert_eq!(checked.code, 0, "{}", checked.err);
    has(&checked.out, "mode shadow (top level; rules[0]: enforce)");
    let expired = mint(&["--iss", "https://idp.example", "--exp", "-1h"]);
    let shadowed = explain(&config, &expired, &["--path", "/orders"]);
    // Still a denial for explain's exit status: the question is what the filter decides.
    assert_eq!(shadowed.code, 1, "{}", shadowed.out);
    has(&shadowed.out, "verdict   shadow-denied: 401 token expired (reason expired), mode shadow: not answered, the request goes upstream");
    has(
        &shadowed.out,
        "counted as shadow_denied.expired, provider.corp.shadow_denied.expired",
    );
    has(&shadowed.out, "    status: 401\n");
    let enforced = explain(&config, &expired, &["--path", "/admin/x"]);
    assert_denied(&enforced, 401, "invalid_token", "token expired");
    has(&enforced.out, "verdict   denied:");
}

#[test]
fn explain_judges_a_token_jwt_authn_verified_for_a_companion_provider() {
    let dir = scratch("explain-companion");
    let config = json!({
        "providers": { "mesh": { "issuer": "https://idp.example",
                                 "jwt_authn": { "payload_in_metadata": "payload" } } },
        "revocation": { "token_sha256": [] , "jti": ["revoked-1"] }
    });
    let config = write(&dir, "companion.json", &config.to_string());
    let checked = run(&["check-config", &config]);
    assert_eq!(checked.code, 0, "{}", checked.err);
    has(&checked.out, "mesh (jwt_authn's payload \"payload\")");
    // Signed by nobody the config knows: jwt_authn vouched for it, so the payload decides.
    let token = mint(&["--iss", "https://idp.example", "--jti", "ok-1"]);
    let allowed = explain(&config, &token, &["--jwt-authn", "payload"]);
    assert_eq!(allowed.code, 0, "{}", allowed.out);
    has(&allowed.out, "verdict   allowed (provider mesh)");
    let alone = explain(
        &config,
        &token,
        &["--jwt-authn", "payload", "--not-forwarded"],
    );
    assert_eq!(alone.code, 0, "{}", alone.out);
    // Without the payload the provider has no token at all.
    let missing = explain(&config, &token, &[]);
    assert_eq!(missing.code, 1, "{}", missing.out);
    has(&missing.out, "401");
    let revoked = mint(&["--iss", "https://idp.example", "--jti", "revoked-1"]);
    let refused = explain(&config, &revoked, &["--jwt-authn", "payload"]);
    assert_denied(&refused, 401, "invalid_token", "token revoked");
    let usage = run(&["explain", "--config", &config, "--not-forwarded", &token]);
    assert_eq!(
        usage.code, 2,
        "--not-forwarded needs --jwt-authn: {}",
        usage.err
    );
}
