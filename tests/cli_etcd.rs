//! `revoke --etcd` and `revocations --etcd` run as processes (the binary cargo builds for
//! this test) against a real etcd (`tests/support/etcd.rs`): the keys an operator then finds
//! with `etcdctl get`, their leases, what `revocations` prints, and the errors. Every etcd is
//! stopped, by pid, when its test ends.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;
use support::cli::{run, run_with_input};

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use support::etcd::EtcdCluster;
use support::within;

const PREFIX: &str = "/bearer-guard/revoked/";

/// A run that must succeed; its stdout.
#[track_caller]
fn ok(args: &[&str]) -> String {
    let done = run(args);
    assert_eq!(done.code, 0, "{args:?}: {}{}", done.out, done.err);
    done.out
}

#[track_caller]
fn has(text: &str, part: &str) {
    assert!(text.contains(part), "{part:?} is not in:\n{text}");
}

fn unix_now() -> i64 {
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(seconds.as_secs()).unwrap()
}

fn json_at(cluster: &EtcdCluster, key: &str) -> Value {
    let value = cluster
        .get(key)
        .unwrap_or_else(|| panic!("{key} is not in etcd"));
    serde_json::from_str(&value).unwrap()
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The line of `revocations` output that names `name`.
#[track_caller]
fn line_of<'a>(listed: &'a str, name: &str) -> &'a str {
    listed
        .lines()
        .find(|line| line.contains(name))
        .unwrap_or_else(|| panic!("{name} is not listed:\n{listed}"))
}

/// The seconds a `... lease Ns left` line says are left.
#[track_caller]
fn lease_left(line: &str) -> i64 {
    let (_, rest) = line
        .split_once("lease ")
        .unwrap_or_else(|| panic!("no lease: {line}"));
    let seconds = rest.strip_suffix("s left").unwrap();
    seconds.parse().unwrap()
}

#[test]
fn revoke_writes_the_layouts_keys_with_leases_and_revocations_lists_them() {
    let cluster = EtcdCluster::start(1);
    // The first endpoint is down: the CLI goes on to the next.
    let endpoints = format!("127.0.0.1:{},{}", closed_port(), cluster.endpoints());
    let etcd = endpoints.as_str();
    let exp = unix_now() + 3600;
    let exp_text = exp.to_string();

    // A jti with an exp: `{"exp":N}` and a lease ending at exp + the skew (default 60).
    let put = ok(&["revoke", "--etcd", etcd, "--jti", "j-1", "--exp", &exp_text]);
    has(&put, &format!("put {PREFIX}jti/j-1"));
    assert_eq!(
        json_at(&cluster, &format!("{PREFIX}jti/j-1")),
        json!({ "exp": exp })
    );

    // A token by its identity, the one `token-id` prints; the token is never shown.
    let token = ok(&["mint", "--jti", "t-1"]).trim().to_owned();
    let identity = run_with_input(&["token-id", "-"], &token)
        .out
        .trim()
        .to_owned();
    assert_eq!(identity.len(), 64);
    let by_token = run_with_input(
        &["revoke", "--etcd", etcd, "--token", "-", "--exp", &exp_text],
        &token,
    );
    assert_eq!(by_token.code, 0, "{}", by_token.err);
    let token_key = format!("{PREFIX}token/{identity}");
    assert_eq!(json_at(&cluster, &token_key), json!({ "exp": exp }));

    // A subject's cutoff, and one issuer's entries under iss/<percent-encoded issuer>/.
    ok(&[
        "revoke",
        "--etcd",
        etcd,
        "--subject",
        "alice",
        "--issued-before",
        "1700000000",
        "--exp",
        &exp_text,
    ]);
    assert_eq!(
        json_at(&cluster, &format!("{PREFIX}sub/alice")),
        json!({ "issued_before": 1_700_000_000, "exp": exp })
    );
    ok(&[
        "revoke",
        "--etcd",
        etcd,
        "--issuer",
        "https://idp.example",
        "--jti",
        "j-2",
        "--issued-before",
        "1600000000",
    ]);
    let issuer_dir = format!("{PREFIX}iss/https%3A%2F%2Fidp.example/");
    assert_eq!(
        json_at(&cluster, &format!("{issuer_dir}jti/j-2")),
        json!({})
    );
    assert_eq!(
        cluster
            .get(&format!("{issuer_dir}issued_before"))
            .as_deref(),
        Some("1600000000")
    );
    // Revoking again with an earlier exp keeps the later one, as a list does.
    let earlier = (exp - 600).to_string();
    ok(&["revoke", "--etcd", etcd, "--jti", "j-1", "--exp", &earlier]);
    assert_eq!(
        json_at(&cluster, &format!("{PREFIX}jti/j-1")),
        json!({ "exp": exp })
    );

    // Garbage under the prefix (a pasted token, say) is counted, never shown.
    let garbage = format!("{PREFIX}{}", &token[..40]);
    cluster.put(&garbage, "x");
    let listed = run(&["revocations", "--etcd", etcd]);
    assert_eq!(listed.code, 0, "{}", listed.err);
    let out = &listed.out;
    for shown in [out, &listed.err, &put, &by_token.out, &by_token.err] {
        assert!(!shown.contains(&token[..40]), "a token is shown:\n{shown}");
    }
    let jti_line = line_of(out, "jti \"j-1\"");
    has(jti_line, &format!("exp {exp} ("));
    // The lease was granted for exp + 60 s from the time of the write.
    let left = lease_left(jti_line);
    assert!((3600..=3660).contains(&left), "{jti_line}");
    let token_line = line_of(out, &format!("token {identity}"));
    assert!(lease_left(token_line) > 3600, "{token_line}");
    let sub_line = line_of(out, "sub \"alice\"");
    has(sub_line, "issued_before 1700000000 (2023-11-14T22:13:20Z");
    let issuer_jti = line_of(out, "jti \"j-2\"");
    assert!(issuer_jti.starts_with("iss \"https://idp.example\"  jti \"j-2\"  no exp  no lease"));
    has(
        line_of(out, "issued_before 1600000000"),
        "iss \"https://idp.example\"",
    );
    has(out, "skipped: unknown kind");
    has(out, "5 entries, 1 skipped, under /bearer-guard/revoked/");

    // Another prefix is another store.
    ok(&[
        "revoke",
        "--etcd",
        etcd,
        "--prefix",
        "/other/",
        "--jti",
        "elsewhere",
    ]);
    assert_eq!(cluster.get("/other/jti/elsewhere").as_deref(), Some("{}"));
    let other = ok(&["revocations", "--etcd", etcd, "--prefix", "/other/"]);
    has(&other, "jti \"elsewhere\"  no exp  no lease");
    has(&other, "1 entry, 0 skipped");

    // --remove deletes the keys.
    let removed = run_with_input(
        &[
            "revoke",
            "--etcd",
            etcd,
            "--remove",
            "--jti",
            "j-1",
            "--subject",
            "alice",
            "--jti",
            "never-there",
            "--token",
            "-",
        ],
        &token,
    );
    assert_eq!(removed.code, 0, "{}", removed.err);
    has(&removed.out, &format!("deleted {PREFIX}jti/j-1\n"));
    has(
        &removed.out,
        &format!("{PREFIX}jti/never-there is not in etcd"),
    );
    for key in [
        format!("{PREFIX}jti/j-1"),
        format!("{PREFIX}sub/alice"),
        token_key,
    ] {
        assert_eq!(cluster.get(&key), None, "{key} is still there");
    }
    let after = ok(&["revocations", "--etcd", etcd]);
    has(&after, "2 entries, 1 skipped");
}

#[test]
fn a_revocation_goes_from_etcd_when_its_lease_ends() {
    let cluster = EtcdCluster::start(1);
    let etcd = cluster.endpoints();
    let key = format!("{PREFIX}jti/short-lived");
    // No skew: the lease ends at exp, or at etcd's minimum TTL (a few seconds here).
    let exp = (unix_now() + 5).to_string();
    ok(&[
        "revoke",
        "--etcd",
        &etcd,
        "--clock-skew",
        "0",
        "--jti",
        "short-lived",
        "--exp",
        &exp,
    ]);
    assert!(cluster.get(&key).is_some());
    let gone = within(Duration::from_secs(20), || cluster.get(&key).is_none());
    assert!(gone.is_some(), "{key} outlived its lease");
}

#[test]
fn an_etcd_that_cannot_be_reached_exits_2_naming_it() {
    let endpoint = format!("127.0.0.1:{}", closed_port());
    for args in [
        vec!["revocations", "--etcd", &endpoint],
        vec!["revoke", "--etcd", &endpoint, "--jti", "a"],
    ] {
        let failed = run(&args);
        assert_eq!(failed.code, 2, "{args:?}: {}", failed.out);
        has(&failed.err, "cannot reach etcd");
        has(&failed.err, &endpoint);
    }
}

#[test]
fn options_of_the_other_store_are_usage_errors() {
    let refused = [
        run(&[
            "revoke",
            "--etcd",
            "127.0.0.1:2379",
            "--provider",
            "demo",
            "--jti",
            "a",
        ]),
        run(&[
            "revoke",
            "--list",
            "list.json",
            "--issuer",
            "https://idp",
            "--jti",
            "a",
        ]),
        run(&[
            "revoke",
            "--list",
            "list.json",
            "--etcd",
            "127.0.0.1:2379",
            "--jti",
            "a",
        ]),
        run(&["revoke", "--jti", "a"]),
        run(&["revocations"]),
        run(&["revoke", "--etcd", "https://127.0.0.1:2379", "--jti", "a"]),
        run(&[
            "revoke",
            "--etcd",
            "127.0.0.1:2379",
            "--prefix",
            "/no-slash",
            "--jti",
            "a",
        ]),
    ];
    for (failed, says) in refused.iter().zip([
        "cannot be used with '--provider <NAME>'",
        "'--list <FILE>' cannot be used with '--issuer <ISS>'",
        "'--list <FILE>' cannot be used with '--etcd",
        "not provided:\n  <--list <FILE>|--etcd",
        "not provided:\n  --etcd <ENDPOINT",
        "TLS is not supported",
        "--prefix must end with /",
    ]) {
        assert_eq!(failed.code, 2, "{}", failed.out);
        has(&failed.err, says);
        has(&failed.err, "--help");
    }
}

#[test]
fn with_auth_enabled_the_cli_logs_in_and_never_shows_the_password() {
    let cluster = EtcdCluster::start(1);
    let etcd = cluster.endpoints();
    let password = "pa55:word-not-shown";
    for args in [
        vec!["user", "add", "root", "--new-user-password", password],
        vec!["auth", "enable"],
    ] {
        let status = Command::new(std::env::var("ETCDCTL_BIN").unwrap_or("etcdctl".into()))
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={etcd}"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "etcdctl {args:?}");
    }
    let user = format!("root:{password}");
    let put = ok(&[
        "revoke", "--etcd", &etcd, "--user", &user, "--jti", "j-auth",
    ]);
    has(&put, &format!("put {PREFIX}jti/j-auth"));
    let listed = ok(&["revocations", "--etcd", &etcd, "--user", &user]);
    has(&listed, "jti \"j-auth\"  no exp  no lease");

    let anonymous = run(&["revocations", "--etcd", &etcd]);
    assert_eq!(anonymous.code, 2);
    has(&anonymous.err, "give --user NAME:PASSWORD");
    let wrong = format!("root:{password}-wrong");
    let refused = run(&["revoke", "--etcd", &etcd, "--user", &wrong, "--jti", "x"]);
    assert_eq!(refused.code, 2);
    has(&refused.err, &format!("etcd at {etcd}: "));
    has(&refused.err, "authentication failed");
    for shown in [&put, &listed, &anonymous.err, &refused.out, &refused.err] {
        assert!(!shown.contains("pa55"), "the password is shown:\n{shown}");
    }
}

#[test]
fn explain_reads_etcd_and_names_it_as_what_revoked_the_token() {
    let cluster = EtcdCluster::start(1);
    let dir = std::env::temp_dir().join(format!("bg-explain-etcd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = ok(&["mint", "--iss", "https://bg.test", "--jti", "explained-1"])
        .trim()
        .to_owned();
    let jwks = ok(&["jwks"]);
    let config = json!({
        "providers": { "demo": {
            "issuer": "https://bg.test",
            "local_jwks": serde_json::from_str::<Value>(&jwks).unwrap(),
        }},
        "revocation": { "etcd": { "cluster": "etcd" } }
    });
    let path = dir.join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let path = path.to_str().unwrap();
    let endpoints = cluster.endpoints();
    let before = run(&["explain", "--config", path, "--etcd", &endpoints, &token]);
    assert_eq!(before.code, 0, "{}{}", before.out, before.err);
    cluster.put(&format!("{PREFIX}jti/explained-1"), "{}");
    let after = run(&["explain", "--config", path, "--etcd", &endpoints, &token]);
    assert_eq!(after.code, 1, "{}{}", after.out, after.err);
    has(&after.out, "revoked by etcd");
    let without = run(&["explain", "--config", path, &token]);
    assert_eq!(without.code, 0, "{}", without.out);
    has(&without.out, "pass --etcd ENDPOINT to read it");
    let _ = std::fs::remove_dir_all(&dir);
}
