//! The polled list shared between the VMs of one process: the VM that polls holds the whole
//! list, every other VM its index, and reads a bucket of the list only for a token the index
//! may hold. What a client sees on each worker, and what each worker copies out of shared data.

use proxy_wasm::types::Action;
use serde_json::{json, Value};

use super::fake_host::Call;
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
    adopted(&config(on_stale), ENTRIES)
}

/// The main VM polls a list of `entries`; the worker adopts it (its shared-data reads since
/// are what adopting it read).
fn adopted(config: &Value, entries: usize) -> (Vm, Vm) {
    let mut main = Vm::new(config);
    let mut worker = main.worker(config);
    main.tick();
    let call = main.last_call();
    main.answer_root(&call, Some(200), &whole_list("v1", entries));
    worker.host.take_shared_reads();
    worker.tick();
    (main, worker)
}

/// The worker polls itself (the main VM did not, past the worker's deferral): its call.
fn worker_polls(worker: &mut Vm) -> Call {
    worker.host.set_now(NOW + 13);
    worker.tick();
    worker.last_call()
}

#[test]
fn a_worker_holds_the_lists_index_and_reads_one_bucket_for_a_listed_token() {
    let (mut main, mut worker) = polled_and_adopted("deny");
    let buckets = main.host.shared_values(".bucket.");
    assert_eq!(buckets.len(), indexed::bucket_count(ENTRIES));
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
    main.host.take_shared_reads();
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
    let call = worker_polls(&mut worker);
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
    let call = worker_polls(&mut worker);
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
fn a_smaller_list_clears_the_buckets_it_no_longer_has_once_no_worker_can_hold_them() {
    let (mut main, mut worker) = adopted(&config_allowing_removal(), ENTRIES);
    let held = |vm: &Vm| {
        let buckets = vm.host.shared_values(".bucket.");
        buckets.iter().filter(|(_, v)| !v.is_empty()).count()
    };
    let poll = |main: &mut Vm, at: i64, body: &str| {
        main.host.set_now(at);
        main.tick();
        let call = main.last_call();
        main.answer_root(&call, Some(200), body);
    };
    poll(&mut main, NOW + 11, &whole_list("v9", 3));
    // One bucket for 3 entries; the last list's stay while a worker may still hold its head.
    assert_eq!(held(&main), 1 + indexed::bucket_count(ENTRIES));
    assert_eq!(
        status(&mut worker, 2, "j-42"),
        401,
        "not adopted yet: the last list"
    );
    worker.host.set_now(NOW + 11);
    worker.tick();
    assert_eq!(status(&mut worker, 3, "j-2"), 401);
    assert_eq!(status(&mut worker, 4, "j-42"), 200, "no longer listed");
    poll(&mut main, NOW + 22, &whole_list("v10", 4));
    assert_eq!(held(&main), 1, "the layout before the last one is cleared");
}

#[test]
fn a_new_learned_generation_keeps_the_list_for_the_old_vms_and_the_new() {
    let (main, mut old_worker) = polled_and_adopted("deny");
    let mut next = config("deny");
    next["revocation"]["learned_generation"] = json!(1);
    let mut reloaded = main.worker(&next);
    // The list service's list is not what was learned: both generations keep enforcing it.
    assert_eq!(status(&mut reloaded, 2, "j-7"), 401, "adopted at configure");
    assert_eq!(
        status(&mut old_worker, 3, "j-7"),
        401,
        "the old VM still reads it"
    );
    assert_eq!(status(&mut old_worker, 4, "fresh"), 200);
}

#[test]
fn a_reloaded_vm_that_polls_and_hears_not_modified_keeps_the_list() {
    // A config reload (same learned_generation): the new main-thread VM adopts the index the
    // old one shared, and its polls are answered 304 for as long as the list does not change.
    let (main, _) = polled_and_adopted("deny");
    let mut reloaded = main.worker(&config("deny"));
    for minute in 1..=12 {
        reloaded.host.set_now(NOW + minute * 60);
        reloaded.tick();
        let call = reloaded.last_call();
        reloaded.answer_root(&call, Some(304), "");
    }
    assert!(reloaded.host.logged("fetch failed").is_empty());
    assert_eq!(status(&mut reloaded, 2, "j-9"), 401);
    assert_eq!(
        status(&mut reloaded, 3, "fresh"),
        200,
        "the list is confirmed, not stale"
    );
}

#[test]
fn an_empty_list_is_shared_and_revokes_nothing() {
    let (mut main, mut worker) = adopted(&config("deny"), 0);
    assert_eq!(status(&mut worker, 2, "j-1"), 200);
    assert_eq!(status(&mut main, 2, "j-1"), 200);
}

#[test]
fn a_worker_that_polls_and_hears_not_modified_keeps_its_index() {
    let (_, mut worker) = polled_and_adopted("deny");
    let call = worker_polls(&mut worker);
    worker.host.take_shared_reads();
    worker.answer_root(&call, Some(304), "");
    assert_eq!(bucket_reads(&worker), 0, "nothing read back for a 304");
    assert!(worker.host.logged("fetch failed").is_empty());
    assert_eq!(status(&mut worker, 2, "j-5"), 401);
    // Confirmed: still fresh long after the first fetch's max_stale_seconds would have run out.
    worker.host.set_now(NOW + 605);
    assert_eq!(status(&mut worker, 3, "fresh"), 200);
}

#[test]
fn a_second_filter_config_never_reads_the_lists_another_one_shared() {
    let (main, mut worker) = polled_and_adopted("deny");
    assert_eq!(status(&mut worker, 2, "j-7"), 401);
    let owned: Vec<String> = main
        .host
        .shared_values(&format!(".indexed-v{}-list.", indexed::FORMAT))
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert!(owned.len() > indexed::bucket_count(ENTRIES), "{owned:?}");
    // The same process, another filter config (another plugin name): its own scope.
    let host = main.host.worker(&config("deny"), NOW);
    host.set_property(&["plugin_name"], "other-listener");
    let mut other = Vm::on(host);
    // Its first request waits for its own poll, not for the other config's list.
    assert_eq!(other.request(2, "/", &token("j-7")), Action::Pause);
    assert_eq!(other.host.local_response(2), None);
    other.tick();
    assert_eq!(other.last_call().cluster, "rev", "it polls for itself");
    let reads = other.host.take_shared_reads();
    assert!(
        reads.iter().all(|(key, _)| !owned.contains(key)),
        "{reads:?}"
    );
}
