#!/usr/bin/env python3
"""Revocation list benchmark: what a large polled revocation list costs bearer-guard.

Envoy (--concurrency 1 unless said otherwise) with one direct_response listener behind
bearer-guard (jwt_cache_size 1000, crypto auto), its revocation list polled every second from
examples/revocation_server.py over a STATIC cluster. wrk (one thread, 16 connections, the
repeated RS256 token: valid and not revoked, so every answer must be 200) drives it; a warm-up
run before each measured run is discarded and rounds are interleaved, medians shown (as in
bench/run.py). Loopback only; every process started here is stopped by pid, also on failure.

1. Throughput with 1,000,000 revoked jti held vs an empty list (two Envoys side by side, each
   polling its own list server). Target ratio >= 0.95.
2. p99 latency while the list is refreshed: (a) unchanged list (each poll a 304), (b) one new
   jti POSTed every 0.5 s (each poll a small delta, laid over the 1M list as a small overlay),
   (c) the same against a server started with --no-deltas (each poll re-downloads and parses
   the whole list). Targets p99(b) and p99(c) <= 2 x p99(a). List fetches during each measured
   run are counted from Envoy's and the server's counters.
3. Memory: VmRSS of an Envoy holding the 1M list minus one holding the empty list, after some
   traffic and a pause, per entry, at --concurrency 1, 2 and 4 (target <= 100 bytes/entry);
   also VmHWM and the time from Envoy's start until the list is held.
4. Revocation to enforcement: a jti of a pool token is POSTed to the list server; time from
   the POST returning until that token is answered 401 "token revoked" (5 tokens; target
   <= refresh_seconds + 1 s). Also measured against the --no-deltas server.

`--smoke`: the same flow with 10,000 entries, 1 s runs, one round, memory at --concurrency 1
and 2 only. Targets are reported, never enforced: the exit status is non-zero only when the
harness itself fails (Envoy or the list server does not start, the list never loads, wrong
statuses). Usage:

    python3 bench/revocation.py --pools bench/tmp/pools --out bench [--smoke]

Writes revocation_results.md / revocation_results.json to --out and prints the table.
"""

import argparse
import base64
import datetime
import json
import os
import pathlib
import random
import re
import selectors
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.dont_write_bytecode = True  # no bench/__pycache__ from the import below
import run as base  # noqa: E402  (bench/run.py: Envoy config helpers, wrk, medians)

ROOT = base.ROOT
LIST_SERVER = ROOT / "examples" / "revocation_server.py"
REPEAT_POOL = "rs256-repeat.txt"
DISTINCT_POOL = "rs256-distinct.txt"
REFRESH_SECONDS = 1
POST_INTERVAL = 0.5
STAT_PREFIX = "wasmcustom.bearer_guard."
ENTRIES_GAUGE = "revocation.list_entries"
FETCH_COUNTERS = ("revocation.list_fetch_success", "revocation.list_not_modified",
                  "revocation.list_fetch_failed")
SERVER_COUNTERS = ("full", "deltas", "not_modified")

THROUGHPUT_TARGET = 0.95
P99_TARGET = 2.0
BYTES_PER_ENTRY_TARGET = 100
ENFORCEMENT_TARGET = REFRESH_SECONDS + 1.0

SCENARIOS = {  # {n}: the number of entries
    "a": "{n} entries, unchanged (every poll a 304)",
    "b": "{n} entries, one jti added every 0.5 s (deltas)",
    "c": "{n} entries, one jti added every 0.5 s, server --no-deltas (full re-downloads)",
}
# Envoy's own start/stop lines, not about the benchmark.
LOG_NOISE = re.compile(r"no configured limit to the number of allowed active downstream|"
                       r"caught ENVOY_SIGTERM")


class ListServer:
    """examples/revocation_server.py; stopped by pid in `stop`."""

    def __init__(self, workdir, name, bulk, no_deltas=False, timeout=120):
        self.name, self.bulk, self.posted = name, bulk, 0
        self.log_path = workdir / f"list-{name}.log"
        command = [sys.executable, str(LIST_SERVER), "--port", "0", "--bulk-jti", str(bulk),
                   "--bulk-seed", name]
        if no_deltas:
            command.append("--no-deltas")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE,
                                        stderr=open(self.log_path, "w"), start_new_session=True)
        try:
            line = b""
            with selectors.DefaultSelector() as selector:
                selector.register(self.process.stdout, selectors.EVENT_READ)
                deadline = time.time() + timeout
                while not line.endswith(b"\n") and time.time() < deadline:
                    if selector.select(timeout=0.5):
                        chunk = os.read(self.process.stdout.fileno(), 4096)
                        if not chunk:
                            break
                        line += chunk
            match = re.search(rb"listening on http://127\.0\.0\.1:(\d+)/", line)
            if not match:
                raise RuntimeError(f"list server {name} did not start: {line!r} "
                                   f"{self.log_path.read_text()[-2000:]}")
        except BaseException:
            self.stop()
            raise
        self.port = int(match.group(1))

    @property
    def entries(self):
        return self.bulk + self.posted

    def revoke(self, jti):
        body = json.dumps({"jti": [jti]}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/v1/list", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status != 200:
                raise RuntimeError(f"list server {self.name}: POST answered {response.status}")
        self.posted += 1

    def stats(self):
        return json.loads(base.http_get(self.port, "/admin/stats")[1])

    def stop(self):
        base.stop_process(self.process)
        self.process.stdout.close()


class Envoy(base.Envoy):
    """bench/run.py's Envoy with a chosen --concurrency; stopped by pid in `stop`."""

    def __init__(self, workdir, name, config, concurrency=1):
        self.name = name
        workdir = workdir / name
        workdir.mkdir(parents=True, exist_ok=True)
        config_path = workdir / "envoy-revocation.json"
        config_path.write_text(json.dumps(config, indent=1))
        self.admin_file = workdir / "admin-address"
        self.admin_file.unlink(missing_ok=True)
        self.log_path = workdir / "envoy.log"
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [str(base.ENVOY), "-c", str(config_path), "--concurrency", str(concurrency),
             "--disable-hot-restart", "--admin-address-path", str(self.admin_file),
             "--log-level", "warn", "--component-log-level", "wasm:info"],
            stdout=subprocess.DEVNULL, stderr=open(self.log_path, "w"), start_new_session=True)
        try:
            self.ports = self._wait_for_listeners({"guarded"})
        except BaseException:
            self.stop()
            raise
        self.port = self.ports["guarded"]

    def stats(self):
        text = base.http_get(self.admin_port, "/stats?filter=bearer_guard")[1]
        return {name[len(STAT_PREFIX):]: int(value) for name, value in
                re.findall(r"^(\S+): (\d+)$", text, re.M) if name.startswith(STAT_PREFIX)}

    def memory(self):
        status = pathlib.Path(f"/proc/{self.process.pid}/status").read_text()
        return {key: int(re.search(rf"^{key}:\s+(\d+) kB", status, re.M).group(1)) * 1024
                for key in ("VmRSS", "VmHWM")}

    def wait_for_list(self, entries, timeout):
        """Until the list gauge shows `entries` after a successful fetch; seconds since start."""
        deadline = time.time() + timeout
        stats = {}
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"envoy {self.name} exited: {self.log_path.read_text()[-3000:]}")
            stats = self.stats()
            if stats.get(FETCH_COUNTERS[0], 0) >= 1 and stats.get(ENTRIES_GAUGE) == entries:
                return time.monotonic() - self.started
            time.sleep(0.05)
        raise RuntimeError(f"envoy {self.name}: the list never held {entries} entries in "
                           f"{timeout} s (stats {stats}); log:\n{self.log_path.read_text()[-3000:]}")


def envoy_config(jwks, list_port, cache_size=1000):
    config = {
        "providers": {"bench": {"issuer": base.ISSUER, "audiences": [base.AUDIENCE],
                                "local_jwks": jwks, "forward": True}},
        "jwt_cache_size": cache_size, "crypto": "auto",
        "revocation": {"list": {"cluster": "revocations", "uri": "http://revocations.local/v1/list",
                                "refresh_seconds": REFRESH_SECONDS, "max_stale_seconds": 300,
                                "on_stale": "deny", "timeout_ms": 10000}},
    }
    filters = [base.wasm_filter("bearer_guard", base.BEARER_GUARD, json.dumps(config))]
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [base.listener("guarded", filters)],
            "clusters": [{
                "name": "revocations", "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": {"cluster_name": "revocations", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {
                        "address": "127.0.0.1", "port_value": list_port}}}}]}]},
            }],
        },
    }


def get(port, token, timeout=5):
    """(status, WWW-Authenticate) of one request carrying `token`."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/")
    request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return response.status, response.headers.get("WWW-Authenticate", "")
    except urllib.error.HTTPError as error:
        error.read()
        return error.code, error.headers.get("WWW-Authenticate", "")


def jti_of(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"]


class Poster(threading.Thread):
    """POSTs one new jti every POST_INTERVAL seconds to each server until stopped."""

    def __init__(self, servers, tag):
        super().__init__(daemon=True)
        self.servers, self.tag = servers, tag
        self.halt = threading.Event()
        self.error = None
        self.count = 0

    def run(self):
        start = time.monotonic()
        try:
            while not self.halt.is_set():
                for server in self.servers:
                    server.revoke(f"bench-extra-{self.tag}-{self.count}")
                self.count += 1
                self.halt.wait(max(0.0, start + self.count * POST_INTERVAL - time.monotonic()))
        except (OSError, RuntimeError) as error:
            self.error = error

    def stop(self):
        self.halt.set()
        self.join(timeout=15)
        if self.error:
            raise RuntimeError(f"revocation POSTs failed: {self.error}")


def check_wrk(label, result):
    if result["rps"] <= 0:
        raise RuntimeError(f"{label}: no requests completed")
    if result["non_2xx"]:
        raise RuntimeError(f"{label}: {result['non_2xx']} of {result['requests']} responses "
                           "were not 200 (the token is valid and not revoked)")


def measured_run(args, envoy, server, label):
    """Warm-up (discarded), then one measured wrk run with fetch counters around it."""
    tokens = args.pools / REPEAT_POOL
    if args.warmup:  # (for (b) and (c) the POSTs have started already)
        check_wrk(label + " (warm-up)", base.run_wrk(envoy.port, tokens, args.warmup))
    before, server_before = envoy.stats(), server.stats()
    result = base.run_wrk(envoy.port, tokens, args.seconds)
    after, server_after = envoy.stats(), server.stats()
    check_wrk(label, result)
    for name in FETCH_COUNTERS:
        result[name.rsplit(".", 1)[1]] = after.get(name, 0) - before.get(name, 0)
    for name in SERVER_COUNTERS:
        result["server_" + name] = server_after[name] - server_before[name]
    return result


def measure_memory(args, jwks, workdir, full_server, empty_server, stack):
    rows = []
    for concurrency in args.memory_concurrency:
        pair = {}
        try:
            for kind, server in (("empty", empty_server), ("full", full_server)):
                envoy = Envoy(workdir, f"memory-{kind}-c{concurrency}",
                              envoy_config(jwks, server.port), concurrency)
                pair[kind] = envoy
                envoy.load_seconds = envoy.wait_for_list(server.entries, args.load_timeout)
                print(f"memory c{concurrency}: {kind} list ({server.entries} entries) held "
                      f"{envoy.load_seconds:.2f} s after start", flush=True)
            for envoy in pair.values():
                # 16 connections spread over every worker (SO_REUSEPORT).
                check_wrk(f"memory {envoy.name}",
                          base.run_wrk(envoy.port, args.pools / REPEAT_POOL, 1))
            time.sleep(args.settle)
            memory = {kind: envoy.memory() for kind, envoy in pair.items()}
            entries = full_server.entries - empty_server.entries
            row = {
                "concurrency": concurrency, "entries": entries,
                "rss_empty": memory["empty"]["VmRSS"], "rss_full": memory["full"]["VmRSS"],
                "hwm_empty": memory["empty"]["VmHWM"], "hwm_full": memory["full"]["VmHWM"],
                "load_seconds_full": round(pair["full"].load_seconds, 3),
                "load_seconds_empty": round(pair["empty"].load_seconds, 3),
            }
            row["bytes_per_entry"] = (row["rss_full"] - row["rss_empty"]) / entries
            row["peak_bytes_per_entry"] = (row["hwm_full"] - row["hwm_empty"]) / entries
            rows.append(row)
            print(f"memory c{concurrency}: RSS {row['rss_empty'] / 2**20:.1f} -> "
                  f"{row['rss_full'] / 2**20:.1f} MiB = {row['bytes_per_entry']:.1f} bytes/entry; "
                  f"HWM {row['hwm_empty'] / 2**20:.1f} -> {row['hwm_full'] / 2**20:.1f} MiB",
                  flush=True)
        finally:
            for envoy in pair.values():
                stack.append(envoy)  # logs are scanned at the end
                envoy.stop()
    return rows


def measure_enforcement(args, envoy, server, label, tokens, rng):
    """Seconds from each POST returning until the token is answered 401 'token revoked'."""
    times = []
    for token in tokens:
        status, _ = get(envoy.port, token)
        if status != 200:
            raise RuntimeError(f"{label}: token {jti_of(token)} answered {status} before revocation")
        time.sleep(rng.uniform(0, REFRESH_SECONDS))  # a different phase of the poll each time
        server.revoke(jti_of(token))
        posted = time.monotonic()
        while True:
            status, challenge = get(envoy.port, token)
            elapsed = time.monotonic() - posted
            if status == 401:
                if "token revoked" not in challenge:
                    raise RuntimeError(f"{label}: 401 but not for revocation: {challenge}")
                break
            if status != 200:
                raise RuntimeError(f"{label}: token answered {status} while waiting for 401")
            if elapsed > args.enforce_timeout:
                raise RuntimeError(f"{label}: {jti_of(token)} still allowed {elapsed:.1f} s after "
                                   "its revocation was POSTed")
            time.sleep(0.01)
        times.append(elapsed)
        print(f"enforcement {label}: {jti_of(token)} denied {elapsed * 1000:.0f} ms after the POST",
              flush=True)
    return times


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="tiny: 10,000 entries, 1 s runs")
    parser.add_argument("--pools", type=pathlib.Path, required=True)
    parser.add_argument("--out", type=pathlib.Path, required=True,
                        help="revocation_results.md/.json go here")
    args = parser.parse_args()
    args.entries, args.seconds, args.warmup, args.rounds = 1_000_000, 5, 1, 3
    args.memory_concurrency, args.settle, args.enforce_reps = (1, 2, 4), 3.0, 5
    args.load_timeout, args.enforce_timeout = 180, 30
    if args.smoke:
        args.entries, args.seconds, args.warmup, args.rounds = 10_000, 1, 0, 1
        args.memory_concurrency, args.settle, args.enforce_reps = (1, 2), 1.0, 2
    jwks = json.loads((args.pools / "jwks.json").read_text())
    repeat_token = (args.pools / REPEAT_POOL).read_text().split()[0]
    distinct = (args.pools / DISTINCT_POOL).read_text().split()
    # Tokens to revoke in part 4: the last of the distinct pool (token i has jti bench-<i>).
    victims = []
    for i in range(len(distinct) - 1, -1, -1):
        if len(victims) == 2 * args.enforce_reps:
            break
        if jti_of(distinct[i]) != f"bench-{i}":
            raise RuntimeError(f"{DISTINCT_POOL} line {i + 1}: jti {jti_of(distinct[i])!r}, "
                               f"expected bench-{i}")
        victims.append(distinct[i])
    if len(victims) < 2 * args.enforce_reps:
        raise RuntimeError(f"{DISTINCT_POOL}: not enough tokens")
    workdir = args.pools / "revocation-work"
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    started = time.monotonic()
    processes, envoys, poster = [], [], None
    try:
        print(f"starting list servers ({args.entries} entries)", flush=True)
        full = ListServer(workdir, "full", args.entries)
        processes.append(full)
        empty = ListServer(workdir, "empty", 0)
        processes.append(empty)
        nodelta = ListServer(workdir, "nodelta", args.entries, no_deltas=True)
        processes.append(nodelta)

        memory = measure_memory(args, jwks, workdir, full, empty, envoys)

        proxies = {}
        for kind, server in (("empty", empty), ("full", full), ("nodelta", nodelta)):
            envoy = Envoy(workdir, f"main-{kind}", envoy_config(jwks, server.port))
            processes.append(envoy)
            envoys.append(envoy)
            proxies[kind] = envoy
            envoy.load_seconds = envoy.wait_for_list(server.entries, args.load_timeout)
            status, challenge = get(envoy.port, repeat_token)
            if status != 200:
                raise RuntimeError(f"envoy main-{kind} answered {status} to the pool token: {challenge}")
            print(f"main-{kind}: list held {envoy.load_seconds:.2f} s after start", flush=True)

        throughput = {"empty": [], "full": []}
        latency = {key: [] for key in SCENARIOS}
        for round_number in range(args.rounds):
            order = ["empty", "full"] if round_number % 2 == 0 else ["full", "empty"]
            for kind in order:
                server = empty if kind == "empty" else full
                proxies[kind].wait_for_list(server.entries, args.load_timeout)
                result = measured_run(args, proxies[kind], server, f"throughput {kind}")
                throughput[kind].append(result)
                print(f"round {round_number + 1}/{args.rounds} throughput {kind:5} list "
                      f"{result['rps']:9.0f} req/s  p99 {result['p99_ms']:.3f} ms", flush=True)
            for key in (["a", "b", "c"] if round_number % 2 == 0 else ["c", "b", "a"]):
                envoy, server = (proxies["nodelta"], nodelta) if key == "c" else (proxies["full"], full)
                envoy.wait_for_list(server.entries, args.load_timeout)  # caught up: no change left
                if key != "a":
                    poster = Poster([server], f"{key}{round_number}")
                    poster.start()
                try:
                    result = measured_run(args, envoy, server, f"latency ({key})")
                finally:
                    if poster:
                        poster, stopping = None, poster
                        stopping.stop()
                latency[key].append(result)
                print(f"round {round_number + 1}/{args.rounds} latency ({key}) p50 "
                      f"{result['p50_ms']:.3f} ms  p99 {result['p99_ms']:.3f} ms  "
                      f"{result['rps']:.0f} req/s  fetches: {result['list_fetch_success']} changed, "
                      f"{result['list_not_modified']} not modified, {result['list_fetch_failed']} "
                      f"failed (server: {result['server_full']} full, {result['server_deltas']} "
                      f"deltas, {result['server_not_modified']} 304)", flush=True)

        enforcement = {
            "deltas": measure_enforcement(args, proxies["full"], full, "deltas",
                                          victims[:args.enforce_reps], rng),
            "no_deltas": measure_enforcement(args, proxies["nodelta"], nodelta, "no-deltas",
                                             victims[args.enforce_reps:], rng),
        }
    finally:
        if poster:
            poster.halt.set()
            poster.join(timeout=15)
        for process in reversed(processes):
            process.stop()
    problems = scan_logs(envoys)
    write_results(args, time.monotonic() - started, memory, proxies, throughput, latency,
                  enforcement, problems)


def scan_logs(envoys):
    """Warnings and errors the Envoys logged (bearer-guard's and Envoy's), for the report."""
    problems = {}
    for envoy in envoys:
        lines = [line for line in envoy.log_path.read_text(errors="replace").splitlines()
                 if re.search(r"\]\[(warning|error|critical)\]", line)
                 and not LOG_NOISE.search(line)]
        if lines:
            problems[envoy.name] = {"count": len(lines), "first": lines[:5]}
        for marker in ("panicked", "Wasm VM failed"):
            if any(marker in line for line in lines):
                raise RuntimeError(f"wasm failure in {envoy.name} ({marker}): see {envoy.log_path}")
    return problems


def summarize(runs):
    keys = ["rps", "p50_ms", "p99_ms", "list_fetch_success", "list_not_modified",
            "list_fetch_failed", "server_full", "server_deltas", "server_not_modified"]
    out = {key: base.median([run[key] for run in runs]) for key in keys}
    out["non_2xx"] = sum(run["non_2xx"] for run in runs)
    out["requests"] = sum(run["requests"] for run in runs)
    out["rounds"] = len(runs)
    return out


def write_results(args, elapsed, memory, proxies, throughput, latency, enforcement, problems):
    tp = {kind: summarize(runs) for kind, runs in throughput.items()}
    lat = {key: summarize(runs) for key, runs in latency.items()}
    n = f"{args.entries:,}"
    rows = []

    def row(measure, value, target, met):
        rows.append({"measure": measure, "value": value, "target": target,
                     "met": None if met is None else bool(met)})

    ratio = tp["full"]["rps"] / tp["empty"]["rps"]
    round_ratios = [f["rps"] / e["rps"] for f, e in zip(throughput["full"], throughput["empty"])]
    row(f"throughput, {n} entries / empty list (ratio of medians)",
        f"{ratio:.4f} ({tp['full']['rps']:.0f} / {tp['empty']['rps']:.0f} req/s; per round: "
        + " ".join(f"{r:.3f}" for r in round_ratios) + ")",
        f">= {THROUGHPUT_TARGET}", ratio >= THROUGHPUT_TARGET)
    for key in ("b", "c"):
        p99 = lat[key]["p99_ms"] / lat["a"]["p99_ms"]
        row(f"p99 during refresh ({key}) / unchanged (a)",
            f"{p99:.2f} ({lat[key]['p99_ms']:.3f} / {lat['a']['p99_ms']:.3f} ms)",
            f"<= {P99_TARGET}", p99 <= P99_TARGET)
    for m in memory:
        row(f"memory, --concurrency {m['concurrency']}: RSS bytes per entry",
            f"{m['bytes_per_entry']:.1f}", f"<= {BYTES_PER_ENTRY_TARGET}",
            m["bytes_per_entry"] <= BYTES_PER_ENTRY_TARGET)
        row(f"memory, --concurrency {m['concurrency']}: peak (VmHWM) bytes per entry",
            f"{m['peak_bytes_per_entry']:.1f}", "-", None)
        row(f"--concurrency {m['concurrency']}: Envoy start to {n} entries held",
            f"{m['load_seconds_full']:.2f} s (empty list: {m['load_seconds_empty']:.2f} s)", "-", None)
    for key, label in (("deltas", "deltas"), ("no_deltas", "server --no-deltas")):
        times = enforcement[key]
        worst = max(times)
        row(f"revocation POST to 401 ({label}), max of {len(times)}",
            f"{worst:.2f} s (median {base.median(times):.2f} s)",
            f"<= {ENFORCEMENT_TARGET:.0f} s", worst <= ENFORCEMENT_TARGET)

    version = subprocess.run([str(base.ENVOY), "--version"], capture_output=True,
                             text=True).stdout.strip().split()[-1]
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "envoy": version, "smoke": args.smoke, "entries": args.entries,
        "refresh_seconds": REFRESH_SECONDS, "post_interval_seconds": POST_INTERVAL,
        "wrk": "-t1 -c16 --latency", "seconds_per_run": args.seconds,
        "warmup_seconds": args.warmup, "rounds": args.rounds,
        "elapsed_seconds": round(elapsed, 1),
        "targets": rows,
        "throughput": tp, "throughput_runs": throughput,
        "throughput_ratio_per_round": [round(r, 4) for r in round_ratios],
        "latency": {key: {"scenario": SCENARIOS[key].format(n=n), **value}
                    for key, value in lat.items()},
        "latency_runs": latency,
        "memory": memory,
        "load_seconds_concurrency_1": {kind: round(e.load_seconds, 3) for kind, e in proxies.items()},
        "enforcement_seconds": {k: [round(t, 3) for t in v] for k, v in enforcement.items()},
        "envoy_log_warnings": problems,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "revocation_results.json").write_text(json.dumps(result, indent=2) + "\n")

    mib = 2 ** 20
    lines = [
        "# bearer-guard revocation list benchmark" + (" (smoke run: not a measurement)" if args.smoke else ""),
        "",
        f"{result['date']}; Envoy {version}; bearer-guard jwt_cache_size 1000, revocation list "
        f"polled every {REFRESH_SECONDS} s; wrk -t1 -c16 with the repeated RS256 token (allowed), "
        f"{args.seconds} s per run after {args.warmup} s warm-up, {args.rounds} interleaved rounds, "
        f"medians shown; --concurrency 1 except for memory; direct_response route; loopback; "
        f"{elapsed:.0f} s in all.",
        "",
        "| measure | value | target | met? |",
        "|---|---|---|---|",
    ]
    for r in rows:
        met = "-" if r["met"] is None else ("yes" if r["met"] else "NO")
        lines.append(f"| {r['measure']} | {r['value']} | {r['target']} | {met} |")
    lines += ["", "| run | req/s | p50 ms | p99 ms | non-2xx (all rounds) | list fetches per run: "
              "changed / 304 / failed | server answers per run: full / delta / 304 |",
              "|---|---:|---:|---:|---:|---|---|"]
    for label, s in ([("throughput: empty list", tp["empty"]),
                      (f"throughput: {n} entries, unchanged", tp["full"])]
                     + [(f"({key}) {SCENARIOS[key].format(n=n)}", lat[key]) for key in SCENARIOS]):
        lines.append(f"| {label} | {s['rps']:.0f} | {s['p50_ms']:.3f} | {s['p99_ms']:.3f} | "
                     f"{s['non_2xx']} of {s['requests']} | "
                     f"{s['list_fetch_success']:g} / {s['list_not_modified']:g} / "
                     f"{s['list_fetch_failed']:g} | {s['server_full']:g} / {s['server_deltas']:g} / "
                     f"{s['server_not_modified']:g} |")
    lines += ["", "| --concurrency | RSS empty MiB | RSS full MiB | bytes/entry | VmHWM empty MiB "
              "| VmHWM full MiB | start to list held |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for m in memory:
        lines.append(f"| {m['concurrency']} | {m['rss_empty'] / mib:.1f} | {m['rss_full'] / mib:.1f} "
                     f"| {m['bytes_per_entry']:.1f} | {m['hwm_empty'] / mib:.1f} | "
                     f"{m['hwm_full'] / mib:.1f} | {m['load_seconds_full']:.2f} s |")
    times = ", ".join(f"{k}: " + " ".join(f"{t:.2f}" for t in v) for k, v in enforcement.items())
    lines += ["", f"Revocation POST to 401, seconds each: {times}."]
    if problems:
        lines += ["", "Envoy logged warnings/errors: " + "; ".join(
            f"{name}: {p['count']} (first: `{p['first'][0][-160:]}`)" for name, p in problems.items())]
    lines.append("")
    (args.out / "revocation_results.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    base.run_main(main)
