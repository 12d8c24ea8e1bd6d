//! The polled list shared between the VMs of one process: the VM that polls holds the whole
//! list, every other VM its index, and reads a bucket of the list only for a token the index
//! may hold. What a client sees on each worker, and what each worker copies out of shared data.

use proxy_wasm::types::Action;
use serde_json::{json, Value};

use super::tests::{revocation_config, Vm};
use crate::revocation::indexed;
use crate::testkit::{good_claims, rs256, NOW};

const ENTRIES: usize = 3_000;

fn config(on_stale: &str) -> Value {
    revocation_config(json!({ "list": {
        "cluster": "rev", "uri": "http://rev/v1/list",
        "refresh_seconds": 10, "max_stale_seconds": 600, "on_stale": on_stale
    } }))
}

/// A list service whose whole lists may drop entries (no rollback guard).
fn config_allowing_removal() -> Value {
    let mut config = config("deny");
    config["revocation"]["list"]["allow_removal"] = json!(true);
    config
}

fn whole_list(version: &str, entries: usize) -> String {
    let jti: Vec<String> = (0..entries).map(|i| format!("j-{i}")).collect();
    json!({ "version": version, "jti": jti }).to_string()
}

fn token(jti: &str) -> String {
    let mut claims = good_claims();
    claims["jti"] = json!(jti);
    rs256(&claims)
}

/// The status a client gets for `jti` from `vm` (200 when the request goes on upstream).
fn status(vm: &mut Vm, context: u32, jti: &str) -> u32 {
    match vm.request(context, "/", &token(jti)) {
        Action::Continue => 200,
        _ => vm
            .host
            .local_response(context)
            .map_or(0, |response| response.status),
    }
}

fn bucket_reads(vm: &Vm) -> usize {
    let reads = vm.host.take_shared_reads();
    reads
        .iter()
        .filter(|(key, _)| key.contains(".bucket."))
        .count()
}

/// The VM that polls (Envoy's main thread) and a worker that has adopted what it fetched.
fn polled_and_adopted(on_stale: &str) -> (Vm, Vm) {
    adopted(&config(on_stale))
}

fn adopted(config: &Value) -> (Vm, Vm) {
    let mut main = Vm::new(config);
    let mut worker = main.worker(config);
    main.tick();
    let call = main.last_call();
    main.answer_root(&call, Some(200), &whole_list("v1", ENTRIES));
    worker.host.take_shared_reads();
    worker.tick();
    (main, worker)
}

#[test]
fn a_worker_holds_the_lists_index_and_reads_one_bucket_for_a_listed_token() {
    let config = config("deny");
    let mut main = Vm::new(&config);
    let mut worker = main.worker(&config);
    main.tick();
    let call = main.last_call();
    main.answer_root(&call, Some(200), &whole_list("v1", ENTRIES));
    let buckets = main.host.shared_values(".bucket.");
    assert_eq!(buckets.len(), indexed::bucket_count(ENTRIES));
    worker.host.take_shared_reads();
    worker.tick();
    let reads = worker.host.take_shared_reads();
    let index_bytes: usize = reads
        .iter()
        .filter(|(key, _)| key.contains(".index"))
        .map(|(_, bytes)| bytes)
        .sum();
    // 8 bytes per entry for the whole list; the index keeps about 2.4.
    assert!(index_bytes > ENTRIES, "the index adopted: {reads:?}");
    assert!(index_bytes * 3 < ENTRIES * 8, "{index_bytes} bytes");
    let copied: usize = reads.iter().map(|(_, bytes)| bytes).sum();
    assert!(
        copied < index_bytes + 100,
        "nothing else copied in: {reads:?}"
    );
    assert_eq!(status(&mut worker, 2, "j-42"), 401);
    assert_eq!(bucket_reads(&worker), 1, "one bucket for a listed token");
    for context in 3..23 {
        assert_eq!(
            status(&mut worker, context, &format!("fresh-{context}")),
            200
        );
    }
    assert_eq!(
        bucket_reads(&worker),
        0,
        "none for tokens the index does not hold"
    );
    // The polling VM decides from the whole list it holds.
    assert_eq!(status(&mut main, 2, "j-2999"), 401);
    assert_eq!(bucket_reads(&main), 0);
}

#[test]
fn a_bucket_that_cannot_be_read_is_a_stale_list_for_the_tokens_it_may_hold() {
    for (on_stale, listed_gets) in [("deny", 503), ("allow", 200)] {
        let (main, mut worker) = polled_and_adopted(on_stale);
        for (key, _) in main.host.shared_values(".bucket.") {
            main.host.put_shared(&key, b"not a bucket");
        }
        assert_eq!(status(&mut worker, 2, "j-7"), listed_gets, "{on_stale}");
        assert_eq!(
            status(&mut worker, 3, "fresh"),
            200,
            "the index alone says no"
        );
        if on_stale == "deny" {
            let response = worker.host.local_response(2).unwrap();
            assert!(
                response
                    .body
                    .contains("revocation status temporarily unavailable"),
                "{response:?}"
            );
        }
    }
}

#[test]
fn a_worker_that_polls_applies_a_delta_to_the_list_read_back_from_its_buckets() {
    let (mut main, mut worker) = polled_and_adopted("deny");
    // The main thread's VM does not poll (stuck): the worker does, once its deferral is over.
    assert_eq!(status(&mut worker, 2, "j-1"), 401);
    worker.host.set_now(NOW + 13);
    worker.tick();
    let call = worker.last_call();
    assert_eq!(call.header(":path"), Some("/v1/list?since=v1"));
    let delta = json!({ "version": "v2", "delta_since": "v1", "jti": ["new-1"] }).to_string();
    worker.host.take_shared_reads();
    worker.answer_root(&call, Some(200), &delta);
    assert_eq!(
        bucket_reads(&worker),
        indexed::bucket_count(ENTRIES),
        "every bucket, once"
    );
    assert_eq!(status(&mut worker, 3, "new-1"), 401);
    assert_eq!(status(&mut worker, 4, "j-2"), 401);
    // The others adopt the delta.
    main.host.set_now(NOW + 13);
    main.tick();
    assert_eq!(status(&mut main, 2, "new-1"), 401);
}

#[test]
fn a_worker_that_cannot_read_back_the_list_fails_the_poll_and_keeps_what_it_holds() {
    let (main, mut worker) = polled_and_adopted("deny");
    worker.host.set_now(NOW + 13);
    worker.tick();
    let call = worker.last_call();
    let (key, _) = main.host.shared_values(".bucket.").pop().unwrap();
    main.host.put_shared(&key, b"");
    let delta = json!({ "version": "v2", "delta_since": "v1", "jti": ["new-1"] }).to_string();
    worker.answer_root(&call, Some(200), &delta);
    let failed = worker
        .host
        .logged("revocation list fetch failed: the list held cannot be read back");
    assert_eq!(
        failed.len(),
        1,
        "{:?}",
        worker.host.logged("revocation list")
    );
    assert_eq!(
        status(&mut worker, 2, "j-3"),
        401,
        "the index is still held"
    );
    assert_eq!(
        status(&mut worker, 3, "new-1"),
        200,
        "the delta was not applied"
    );
}

#[test]
fn a_smaller_list_clears_the_buckets_it_no_longer_has() {
    let (mut main, mut worker) = adopted(&config_allowing_removal());
    main.host.set_now(NOW + 11);
    main.tick();
    let call = main.last_call();
    main.answer_root(&call, Some(200), &whole_list("v9", 3));
    let buckets = main.host.shared_values(".bucket.");
    let (holding, emptied): (Vec<_>, Vec<_>) = buckets.iter().partition(|(_, v)| !v.is_empty());
    assert_eq!(holding.len(), 1, "one bucket for 3 entries");
    assert_eq!(
        emptied.len(),
        indexed::bucket_count(ENTRIES),
        "the last list's buckets emptied"
    );
    worker.host.set_now(NOW + 11);
    worker.tick();
    assert_eq!(status(&mut worker, 2, "j-2"), 401);
    assert_eq!(status(&mut worker, 3, "j-42"), 200, "no longer listed");
}

#[test]
fn a_new_learned_generation_empties_the_old_lists_index_and_buckets() {
    let (main, _) = polled_and_adopted("deny");
    let held = |vm: &Vm| {
        vm.host
            .shared_values(".list.")
            .into_iter()
            .filter(|(key, value)| key.contains(".g0.") && !value.is_empty())
            .filter(|(key, _)| key.contains(".index") || key.contains(".bucket."))
            .count()
    };
    // The head, one index part, the buckets.
    assert_eq!(held(&main), 2 + indexed::bucket_count(ENTRIES));
    let mut next = config("deny");
    next["revocation"]["learned_generation"] = json!(1);
    let reloaded = main.worker(&next);
    assert_eq!(
        held(&reloaded),
        0,
        "no copy of the old list left in shared data"
    );
}
