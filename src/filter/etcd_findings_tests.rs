//! The attacks a security review of the etcd store reproduced, one test per finding (each
//! failed on the reviewed code; all hold now): a silent watch taken as in sync, shared keys
//! that did not cover credentials and clock skew, learned writes readers skip or etcd refuses,
//! a read holding whole values, events under another watch id, pages that never grew back, a
//! learned subject cutoff lowering etcd's, logins from VMs with nothing to do.

use prost::Message;
use proxy_wasm::types::Action;
use serde_json::{json, Value};

use super::etcd_tests::{
    answer_call, etcd_config, first_read, header_at, kv, status_of, stream_message, token, PREFIX,
};
use super::fake_host::Grpc;
use super::root::GrpcEvent;
use super::tests::{respond_with_revocation, Vm};
use crate::remote::watch::{Action as WatchAction, PrefixWatch, State, PAGE_LIMIT};
use crate::revocation::doc::PublishEntry;
use crate::revocation::etcd::layout::{
    from_learned, key_for, parse_entry, value_for, MAX_KEY_BYTES, MAX_SECONDS, MAX_VALUE_BYTES,
};
use crate::revocation::etcd::proto::{
    AuthenticateResponse, Event, EventType, KeyValue, LeaseGrantRequest, RangeResponse, TxnRequest,
    WatchResponse,
};
use crate::testkit::{self, good_claims, rs256, NOW};

/// etcd's `MaxLeaseTTL` (lease/lessor.go): a `LeaseGrant` with a longer TTL is refused.
const ETCD_MAX_LEASE_TTL: i64 = 9_000_000_000;

// ---- helpers (with those of etcd_tests.rs) -------------------------------------------------

fn with_etcd(mut config: Value, extra: Value) -> Value {
    let mut etcd = json!({ "cluster": "etcd", "max_stale_seconds": 30 });
    if let (Some(etcd), Some(extra)) = (etcd.as_object_mut(), extra.as_object()) {
        etcd.extend(extra.clone());
    }
    config["revocation"] = json!({ "etcd": etcd });
    config
}

/// The same filter (plugin name, providers) with provider `corp`'s clock skew set.
fn etcd_config_with_skew(skew: u64) -> Value {
    let config = testkit::config_json(json!({ "clock_skew_seconds": skew }), None);
    with_etcd(config, json!({}))
}

fn token_with(jti: &str, exp: i64) -> String {
    let mut claims = good_claims();
    claims["jti"] = json!(jti);
    claims["exp"] = json!(exp);
    rs256(&claims)
}

fn fail_call(vm: &mut Vm, call: u32, status: u32) {
    vm.host.set_grpc_answer(status, None);
    vm.host.enter(1);
    vm.root.grpc(GrpcEvent::CallResponse {
        call,
        status,
        size: 0,
    });
}

/// The last unary call of `method`: its token and message.
fn last_call(vm: &Vm, method: &str) -> Option<(u32, Vec<u8>)> {
    vm.host.grpc().into_iter().rev().find_map(|g| match g {
        Grpc::Call {
            token,
            method: m,
            message,
            ..
        } if m == method => Some((token, message)),
        _ => None,
    })
}

fn put_event(kv: KeyValue) -> WatchResponse {
    WatchResponse {
        header: header_at(kv.mod_revision),
        watch_id: 1,
        events: vec![Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            ..Event::default()
        }],
        ..WatchResponse::default()
    }
}

// ---- finding 1: a watch is "in sync" from `created` until it closes ------------------------

#[test]
fn finding_1_a_watch_silent_for_longer_than_max_stale_is_stale() {
    // max_stale_seconds 30, on_stale deny.
    let mut vm = Vm::new(&etcd_config(json!({})));
    first_read(&mut vm, Vec::new());
    assert_eq!(status_of(&mut vm, 2, &token("ok")), 200);
    // Ten minutes in which etcd sends nothing on the stream, answers nothing, closes nothing.
    for second in 1..=600 {
        vm.host.set_now(NOW + second);
        vm.tick();
    }
    assert_eq!(
        status_of(&mut vm, 3, &token("ok")),
        503,
        "nothing heard from etcd for 20 x max_stale_seconds, yet still 'in sync': revocations \
         written meanwhile are not enforced and on_stale never decides"
    );
}

#[test]
fn finding_1_the_watch_asks_to_be_canceled_when_its_member_has_no_leader() {
    let mut vm = Vm::new(&etcd_config(json!({})));
    first_read(&mut vm, Vec::new());
    let metadata = vm
        .host
        .grpc()
        .into_iter()
        .find_map(|g| match g {
            Grpc::Open { metadata, .. } => Some(metadata),
            _ => None,
        })
        .unwrap();
    // etcd's `rpctypes.MetadataRequireLeaderKey` (clientv3.WithRequireLeader): without it a
    // member partitioned from the quorum keeps the watch open and silent.
    assert!(
        metadata.contains(&("hasleader".to_owned(), b"true".to_vec())),
        "{metadata:?}"
    );
}

// ---- finding 2: the shared keys do not cover what changes the shared set -------------------

#[test]
fn finding_2_a_worker_with_a_larger_clock_skew_keeps_refusing_a_revoked_token_it_accepts() {
    // Two configs of one filter (same plugin name and providers: the same shared keys), as
    // during a rollout that raises clock_skew_seconds: the reader's grace is 600 s (the
    // minimum), the worker accepts a token until 1200 s past its exp.
    let reader_config = etcd_config_with_skew(0);
    let worker_config = etcd_config_with_skew(1200);
    let mut reader = Vm::new(&reader_config);
    let exp = NOW + 10;
    let entry = kv("jti/gone", &format!(r#"{{"exp":{exp}}}"#), 7);
    let stream = first_read(&mut reader, vec![entry.clone()]);
    let mut worker = reader.worker(&worker_config);
    // Another grace, other shared keys: the worker's config reads etcd for itself.
    first_read(&mut worker, vec![entry]);
    let revoked = token_with("gone", exp);
    assert_eq!(status_of(&mut worker, 2, &revoked), 401);
    // Later the token is still good for the worker. Any change under the prefix rebuilds the
    // shared set, with the reader's grace.
    reader.host.set_now(NOW + 700);
    worker.host.set_now(NOW + 700);
    stream_message(&mut reader, stream, &put_event(kv("jti/other", "{}", 12)));
    assert_eq!(
        status_of(&mut worker, 3, &revoked),
        401,
        "a revoked token, still within this worker's clock skew, is served"
    );
}

#[test]
fn finding_2_a_config_that_can_log_in_reads_even_when_one_that_cannot_got_the_lease_first() {
    // The same filter before and after a password rotation (the old one drains for minutes).
    let old = etcd_config(json!({ "username": "proxy", "password": "old" }));
    let new = etcd_config(json!({ "username": "proxy", "password": "new" }));
    let mut before = Vm::new(&old);
    let mut after = before.worker(&new);
    let token = AuthenticateResponse {
        token: "tok-new".into(),
        ..AuthenticateResponse::default()
    };
    for second in 0..=120 {
        before.host.set_now(NOW + second);
        after.host.set_now(NOW + second);
        before.tick();
        if let Some((call, _)) = last_call(&before, "etcdserverpb.Auth/Authenticate") {
            // INVALID_ARGUMENT "etcdserver: authentication failed, invalid user ID or password"
            fail_call(&mut before, call, 3);
        }
        after.tick();
        if let Some((call, _)) = last_call(&after, "etcdserverpb.Auth/Authenticate") {
            answer_call(&mut after, call, &token);
        }
    }
    assert!(
        last_call(&after, "etcdserverpb.KV/Range").is_some(),
        "two minutes on, the config with the right password has not read etcd: the one that \
         cannot log in holds the reader lease, and both go stale (on_stale decides)"
    );
}

// ---- finding 8: every VM logs in to etcd, and a failing login is retried every 5 s --------

#[test]
fn finding_8_a_worker_with_nothing_to_write_never_logs_in_to_etcd() {
    let config = etcd_config(json!({ "username": "proxy", "password": "wrong" }));
    let mut reader = Vm::new(&config);
    let mut worker = reader.worker(&config);
    for second in 0..=600 {
        for vm in [&mut reader, &mut worker] {
            vm.host.set_now(NOW + second);
            vm.tick();
            if let Some((call, _)) = last_call(vm, "etcdserverpb.Auth/Authenticate") {
                fail_call(vm, call, 3);
            }
        }
    }
    let logins = |vm: &Vm| {
        vm.host
            .grpc()
            .iter()
            .filter(|g| matches!(g, Grpc::Call { method, .. } if method == "etcdserverpb.Auth/Authenticate"))
            .count()
    };
    assert_eq!(
        (logins(&reader) > 0, logins(&worker)),
        (true, 0),
        "the reader tried {} times in 10 minutes; a worker that neither reads nor writes \
         tried {} times",
        logins(&reader),
        logins(&worker)
    );
}

// ---- finding 3: the writer writes what readers skip, and what etcd refuses -----------------

#[test]
fn finding_3_every_learned_revocation_is_written_as_a_key_and_value_the_reader_reads() {
    let issuer_of = |_: &str| Some(testkit::ISSUER.to_owned());
    let learned = [
        // An upstream's `jti=` (or a token's jti) of 1400 characters that percent-encode.
        PublishEntry::Jti {
            provider: Some("corp".into()),
            jti: "/".repeat(1400),
            exp: None,
        },
        // A `self` logout of a token whose exp is past the layout's year 9999.
        PublishEntry::Jti {
            provider: Some("corp".into()),
            jti: "j".into(),
            exp: Some(MAX_SECONDS + 1),
        },
    ];
    let mut skipped = Vec::new();
    for entry in &learned {
        let Ok(stored) = from_learned(PREFIX, entry, &issuer_of) else {
            continue; // refused up front (and logged): fine
        };
        let key = key_for(PREFIX, &stored);
        let value = value_for(&stored);
        if let Err(why) = parse_entry(PREFIX, key.as_bytes(), value.as_bytes()) {
            skipped.push(format!(
                "key of {} bytes, value {:.40}: {why}",
                key.len(),
                value
            ));
        }
    }
    assert!(
        skipped.is_empty(),
        "written to etcd, then skipped by every proxy that reads them: {skipped:#?}"
    );
}

#[test]
fn finding_3_a_batch_with_a_far_future_exp_asks_for_a_lease_etcd_can_grant() {
    let mut vm = Vm::new(&etcd_config(json!({})));
    first_read(&mut vm, Vec::new());
    // Two logouts in one tick: an ordinary token, and one valid until the year 3000 (no
    // max_lifetime_seconds: the filter accepts it).
    let ordinary = token("logout-1");
    let far = token_with("logout-2", 32_503_680_000);
    for (context, token) in [(2, &ordinary), (3, &far)] {
        assert_eq!(vm.request(context, "/", token), Action::Continue);
        respond_with_revocation(&mut vm, context, "self");
    }
    vm.tick();
    let (_, message) = last_call(&vm, "etcdserverpb.Lease/LeaseGrant").expect("a lease grant");
    let grant = LeaseGrantRequest::decode(message.as_slice()).unwrap();
    assert!(
        grant.ttl <= ETCD_MAX_LEASE_TTL,
        "LeaseGrant TTL {} > etcd's MaxLeaseTTL: etcd answers 'too large lease TTL', both \
         logouts fail and, after max_attempts, are dropped",
        grant.ttl
    );
}

// ---- finding 4: a read holds every raw value until its last page ---------------------------

#[test]
fn finding_4_a_read_in_progress_holds_at_most_what_the_layout_reads_per_key() {
    // As the shell makes it: values cut to what the layout reads.
    let mut w = PrefixWatch::new(PREFIX.as_bytes()).with_value_limit(MAX_VALUE_BYTES);
    assert!(matches!(w.next_action(0), WatchAction::SendRange(_)));
    let big = KeyValue {
        value: vec![b' '; 1 << 20],
        ..kv("jti/a", "", 3)
    };
    let page = RangeResponse {
        header: header_at(10),
        kvs: vec![big],
        more: true,
        count: 2,
    };
    // Pages are handed over as they come (the shell parses them into its own store), with
    // values cut to what the layout reads.
    let handed = w.range_response(0, page).unwrap();
    assert!(matches!(w.state(), State::Reading { .. }), "still reading");
    let bytes: usize = handed
        .puts
        .iter()
        .map(|kv| kv.key.len() + kv.value.len())
        .sum();
    assert!(
        bytes <= MAX_KEY_BYTES + MAX_VALUE_BYTES,
        "{bytes} bytes handed over for one key the layout will skip anyway (ValueTooLarge)"
    );
}

// ---- finding 5: events for another watch id are dropped while the watch stays live ---------

#[test]
fn finding_5_events_under_another_watch_id_are_not_dropped_silently() {
    let mut w = PrefixWatch::new(PREFIX.as_bytes());
    w.next_action(0);
    let read = RangeResponse {
        header: header_at(10),
        ..RangeResponse::default()
    };
    w.range_response(0, read).unwrap();
    w.next_action(0);
    let created = WatchResponse {
        watch_id: 1,
        created: true,
        ..WatchResponse::default()
    };
    w.watch_response(0, created).unwrap();
    let stray = WatchResponse {
        watch_id: 2,
        ..put_event(kv("jti/revoked", "{}", 11))
    };
    let outcome = w.watch_response(1, stray);
    let applied = outcome.as_ref().is_ok_and(|c| !c.puts.is_empty());
    assert!(
        applied || outcome.is_err(),
        "a revocation at revision 11 dropped, the watch still live: {outcome:?}"
    );
}

// ---- finding 6: pages halved once stay small for good ---------------------------------------

#[test]
fn finding_6_a_later_read_asks_for_full_pages_again() {
    let mut w = PrefixWatch::new(PREFIX.as_bytes());
    w.next_action(0);
    while w.range_too_large() {
        w.next_action(0);
    }
    let read = RangeResponse {
        header: header_at(10),
        ..RangeResponse::default()
    };
    w.range_response(0, read).unwrap();
    w.next_action(0);
    let created = WatchResponse {
        watch_id: 1,
        created: true,
        ..WatchResponse::default()
    };
    w.watch_response(0, created).unwrap();
    let compacted = WatchResponse {
        watch_id: 1,
        canceled: true,
        compact_revision: 50,
        ..WatchResponse::default()
    };
    w.watch_response(100, compacted).unwrap();
    assert_eq!(w.next_action(100), WatchAction::CloseWatch);
    let WatchAction::SendRange(reread) = w.next_action(100) else {
        panic!("a re-read after the compaction");
    };
    assert_eq!(
        reread.limit, PAGE_LIMIT,
        "a re-read long after the large values asks for {}-key pages",
        reread.limit
    );
}

// ---- finding 7: learned writes replace what etcd holds at the key --------------------------

#[test]
fn finding_7_a_learned_subject_cutoff_never_lowers_the_one_etcd_holds() {
    let mut config = etcd_config(json!({}));
    config["revocation"]["response_header_directives"] = json!(["self", "sub"]);
    let mut vm = Vm::new(&config);
    // An operator locked bob out until NOW + 3600 (`revoke --etcd --issuer ... --subject bob
    // --issued-before +1h`); carol only up to an hour ago.
    let issuer = crate::percent::encode(testkit::ISSUER);
    let bob = kv(
        &format!("iss/{issuer}/sub/bob"),
        &format!(r#"{{"issued_before":{}}}"#, NOW + 3600),
        7,
    );
    let carol = kv(
        &format!("iss/{issuer}/sub/carol"),
        &format!(r#"{{"issued_before":{}}}"#, NOW - 3600),
        8,
    );
    let stream = first_read(&mut vm, vec![bob, carol]);
    // An upstream ends bob's sessions: `sub=bob` on a request alice's token authorized.
    assert_eq!(vm.request(2, "/", &token("alice-1")), Action::Continue);
    respond_with_revocation(&mut vm, 2, "sub=bob");
    vm.tick();
    assert!(
        last_call(&vm, "etcdserverpb.KV/Txn").is_none(),
        "etcd already holds a later cutoff for bob: nothing to write"
    );
    // carol's is older: written, but only if her key did not change since the set's revision.
    assert_eq!(vm.request(3, "/", &token("alice-2")), Action::Continue);
    respond_with_revocation(&mut vm, 3, "sub=carol");
    vm.tick();
    let (_, message) = last_call(&vm, "etcdserverpb.KV/Txn").expect("a write");
    let txn = TxnRequest::decode(message.as_slice()).unwrap();
    assert_eq!(txn.compare.len(), 1);
    let put = txn.success[0].request_put.clone().unwrap();
    assert_eq!(txn.compare[0].key, put.key);
    assert_eq!(
        txn.compare[0].mod_revision, 11,
        "unchanged since revision 10, the read's"
    );
    // Ten minutes later bob logs in again (a token issued then): the operator's cutoff holds.
    vm.host.set_now(NOW + 600);
    vm.tick();
    stream_message(
        &mut vm,
        stream,
        &WatchResponse {
            header: header_at(12),
            watch_id: -1,
            ..WatchResponse::default()
        },
    );
    let mut claims = good_claims();
    claims["sub"] = json!("bob");
    claims["iat"] = json!(NOW + 590);
    claims["exp"] = json!(NOW + 4000);
    assert_eq!(
        status_of(&mut vm, 4, &rs256(&claims)),
        401,
        "bob's new token passes: the learned cutoff replaced issued_before {}",
        NOW + 3600
    );
}
