#!/usr/bin/env python3
"""`make bench`: bearer-guard against Envoy's native jwt_authn, side by side, in one Envoy.

One Envoy (--concurrency 1) with one listener per variant, all answering with a
direct_response so the upstream does not dominate. wrk (one thread, 16 connections) drives
each variant with a token mix; a warm-up run before each measured run is discarded. Loopback
only, bounded in time.

Rounds are paired and rotated: every round runs every (mix, variant) once; the order of the
mixes and the order of the variants within each mix are rotated by one every round, so no
variant always runs first or last. Every ratio target (issue 18) is computed per round, its
numerator and denominator from the same round, and reported as the median of the per-round
ratios with their spread (min-max over rounds); the req/s table shows medians over rounds.
`--rounds`/`--seconds`/`--warmup` set the length (the defaults, 6 rounds of 38 runs of 1 s
warm-up + 2 s, took about 12 minutes on the 2-core machine).

Writes results.md / results.json: the req/s table, one targets table (measured / spread /
target / met) and the host calls each request path makes, as the unit test that budgets them
counts them (src/filter/host_calls_tests.rs, against the fake host: no Envoy needed).
`--memory FILE` folds bench/memory.py's rows (RSS per worker) into the targets table; the
module size is a row too. `--report` prints the targets and host-call tables of an existing
results.json again (make bench ends with it). `--smoke` runs a second per variant to keep this
working in CI: no targets are judged there. `--mixes` runs only some mixes (an A/B; targets
whose mixes were not run say so).

    python3 bench/run.py --pools bench/tmp/pools --out bench [--memory bench/memory_results.json]
                         [--rounds N] [--seconds S] [--warmup S] [--mixes MIX ...] [--smoke]
    python3 bench/run.py --report --out bench
"""

import argparse
import datetime
import json
import os
import pathlib
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
ENVOY = ROOT / ".venv" / "bin" / "envoy"
BEARER_GUARD = ROOT / "dist" / "bearer_guard.wasm"
# The floors as make bench-setup leaves them: their exports trimmed to what they implement.
TRIVIAL = ROOT / "target" / "bench" / "trivial_filter.wasm"
HOST_VERIFY = ROOT / "target" / "bench" / "host_verify_filter.wasm"
ISSUER = "https://bench.bearer-guard.local"
AUDIENCE = "bench-api"

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}

# Variant name -> description, shown in the table.
VARIANTS = {
    "no_filter": "Envoy, no filter",
    "trivial_wasm": "trivial wasm filter (reads one header, sets one)",
    "host_verify_floor": "host-crypto floor: wasm filter that only splits the token and calls verify_signature (no claims)",
    "host_verify_claims": "host-crypto floor + claims: the same, and the payload decoded, exp, nbf, iss, aud checked",
    "jwt_authn_cache": "native jwt_authn, jwt_cache_config 1000",
    "jwt_authn_nocache": "native jwt_authn, no cache",
    "bearer_guard_cache": "bearer-guard, jwt_cache_size 1000",
    "bearer_guard_nocache": "bearer-guard, jwt_cache_size 0",
    "bearer_guard_wasm_crypto": "bearer-guard, no cache, crypto in wasm (fallback)",
    "bearer_guard_filter_state": "bearer-guard, jwt_cache_size 1000, log.filter_state on",
    "bearer_guard_watching": "bearer-guard, jwt_cache_size 1000, misuse detection on",
    "bearer_guard_decisions": "bearer-guard, jwt_cache_size 1000, log.decisions all (100 lines/s, the default limit)",
}

# Mix name -> (token file, variants measured with it, expected status, what a rejection must
# say: a lower-case word in the 401's WWW-Authenticate header or body, or None; jwt_authn
# says "Jwt verification fails" / "Jwt is expired", bearer-guard "signature verification failed" /
# "token expired")
# The order matters little (every round rotates it by one) but each target's two variants are
# kept next to each other where they can be, so a pair runs a few seconds apart.
MIXES = {
    "repeat_rs256": ("rs256-repeat.txt", ["no_filter", "trivial_wasm", "bearer_guard_cache", "bearer_guard_filter_state",
                                          "bearer_guard_watching", "bearer_guard_decisions", "jwt_authn_cache",
                                          "jwt_authn_nocache", "bearer_guard_nocache"], 200, None),
    "repeat_es256": ("es256-repeat.txt", ["trivial_wasm", "bearer_guard_cache", "jwt_authn_cache", "jwt_authn_nocache",
                                          "bearer_guard_nocache"], 200, None),
    "distinct_rs256": ("rs256-distinct.txt", ["jwt_authn_cache", "bearer_guard_cache", "bearer_guard_wasm_crypto",
                                              "jwt_authn_nocache", "bearer_guard_nocache", "host_verify_floor",
                                              "host_verify_claims"], 200,
                       None),
    "invalid_rs256": ("rs256-invalid.txt", ["bearer_guard_nocache", "jwt_authn_nocache", "bearer_guard_cache"], 401,
                      "verification"),
    # Correctly signed, expired an hour before the pool was written (bench_tokens).
    "expired_rs256": ("rs256-expired.txt", ["bearer_guard_nocache", "jwt_authn_nocache"], 401, "expired"),
    "distinct_es256": ("es256-distinct.txt", ["jwt_authn_cache", "bearer_guard_cache", "bearer_guard_wasm_crypto",
                                              "jwt_authn_nocache", "bearer_guard_nocache", "host_verify_floor",
                                              "host_verify_claims"], 200,
                       None),
    "invalid_es256": ("es256-invalid.txt", ["bearer_guard_nocache", "jwt_authn_nocache", "bearer_guard_cache"], 401,
                      "verification"),
    "expired_es256": ("es256-expired.txt", ["bearer_guard_nocache", "jwt_authn_nocache"], 401, "expired"),
}

# Issue 18's throughput targets, each a ratio of req/s taken per round:
# (name, numerator (mix, variant), denominator (mix, variant), minimum or None: reported only).
TARGETS = [
    ("distinct RS256: bearer-guard / jwt_authn, no cache", ("distinct_rs256", "bearer_guard_nocache"),
     ("distinct_rs256", "jwt_authn_nocache"), 1.0),
    ("distinct ES256: bearer-guard / jwt_authn, no cache", ("distinct_es256", "bearer_guard_nocache"),
     ("distinct_es256", "jwt_authn_nocache"), 1.0),
    # What any wasm filter that verifies through the host can reach (bench/host-verify-filter:
    # issue 18's prototype, no claims checked), and how far bearer-guard is from it: reported.
    ("distinct RS256: host-crypto floor / jwt_authn, no cache (reported)", ("distinct_rs256", "host_verify_floor"),
     ("distinct_rs256", "jwt_authn_nocache"), None),
    ("distinct ES256: host-crypto floor / jwt_authn, no cache (reported)", ("distinct_es256", "host_verify_floor"),
     ("distinct_es256", "jwt_authn_nocache"), None),
    ("distinct RS256: bearer-guard / host-crypto floor (reported)", ("distinct_rs256", "bearer_guard_nocache"),
     ("distinct_rs256", "host_verify_floor"), None),
    ("distinct ES256: bearer-guard / host-crypto floor (reported)", ("distinct_es256", "bearer_guard_nocache"),
     ("distinct_es256", "host_verify_floor"), None),
    # The same floor with the claim checks every conforming filter makes (exp, nbf, iss, aud).
    ("distinct RS256: host-crypto floor + claims / jwt_authn, no cache (reported)",
     ("distinct_rs256", "host_verify_claims"), ("distinct_rs256", "jwt_authn_nocache"), None),
    ("distinct ES256: host-crypto floor + claims / jwt_authn, no cache (reported)",
     ("distinct_es256", "host_verify_claims"), ("distinct_es256", "jwt_authn_nocache"), None),
    ("distinct RS256: bearer-guard / host-crypto floor + claims (reported)", ("distinct_rs256", "bearer_guard_nocache"),
     ("distinct_rs256", "host_verify_claims"), None),
    ("distinct ES256: bearer-guard / host-crypto floor + claims (reported)", ("distinct_es256", "bearer_guard_nocache"),
     ("distinct_es256", "host_verify_claims"), None),
    # The cache hit is held to the trivial wasm filter, the floor any wasm filter sits on;
    # jwt_authn's cache is above that floor, so the ratio to it is reported without a target.
    ("cache hit RS256 (one repeated token): bearer-guard / trivial wasm", ("repeat_rs256", "bearer_guard_cache"),
     ("repeat_rs256", "trivial_wasm"), 0.95),
    ("cache hit ES256 (one repeated token): bearer-guard / trivial wasm", ("repeat_es256", "bearer_guard_cache"),
     ("repeat_es256", "trivial_wasm"), 0.95),
    ("cache hit RS256: bearer-guard / jwt_authn, with cache (reported)", ("repeat_rs256", "bearer_guard_cache"),
     ("repeat_rs256", "jwt_authn_cache"), None),
    ("cache hit ES256: bearer-guard / jwt_authn, with cache (reported)", ("repeat_es256", "bearer_guard_cache"),
     ("repeat_es256", "jwt_authn_cache"), None),
    ("bad signature RS256 rejections / distinct RS256 acceptances (bearer-guard, no cache)",
     ("invalid_rs256", "bearer_guard_nocache"), ("distinct_rs256", "bearer_guard_nocache"), 1.0),
    ("bad signature ES256 rejections / distinct ES256 acceptances (bearer-guard, no cache)",
     ("invalid_es256", "bearer_guard_nocache"), ("distinct_es256", "bearer_guard_nocache"), 1.0),
    ("expired RS256 rejections / distinct RS256 acceptances (bearer-guard, no cache)",
     ("expired_rs256", "bearer_guard_nocache"), ("distinct_rs256", "bearer_guard_nocache"), 1.0),
    ("expired ES256 rejections / distinct ES256 acceptances (bearer-guard, no cache)",
     ("expired_es256", "bearer_guard_nocache"), ("distinct_es256", "bearer_guard_nocache"), 1.0),
    # Observability, priced against the default configuration (cache hit, RS256). The decision
    # log's minimum is misuse detection's: an opt-in signal should not take more than 15% of the
    # cached path; with the default 100 lines/s per worker nearly every line is dropped at the
    # limiter here, so this prices building the decision plus the limiter, not the writing.
    ("priced: log.filter_state on / default (cache hit RS256)", ("repeat_rs256", "bearer_guard_filter_state"),
     ("repeat_rs256", "bearer_guard_cache"), 0.70),
    ("priced: misuse detection on / default (cache hit RS256)", ("repeat_rs256", "bearer_guard_watching"),
     ("repeat_rs256", "bearer_guard_cache"), 0.85),
    ("priced: log.decisions all / default denied (cache hit RS256)", ("repeat_rs256", "bearer_guard_decisions"),
     ("repeat_rs256", "bearer_guard_cache"), 0.85),
]
SIZE_TARGET_BYTES = 600 * 1000
# Per-run overhead (wrk start and exit), for the printed estimate: measured 0.05-0.08 s here.
RUN_OVERHEAD_SECONDS = 0.05


def listener(name, http_filters):
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": HCM,
                "stat_prefix": name,
                "route_config": {"virtual_hosts": [{
                    "name": "all", "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"},
                                "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}],
                }]},
                "http_filters": http_filters + [ROUTER],
            },
        }]}],
    }


def wasm_filter(name, path, configuration):
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name, "root_id": name,
                "vm_config": {"vm_id": name, "runtime": "envoy.wasm.runtime.v8",
                              "code": {"local": {"filename": str(path)}}},
                "failure_policy": "FAIL_CLOSED",
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                  "value": configuration},
            },
        },
    }


def jwt_authn(jwks, cache):
    provider = {"issuer": ISSUER, "audiences": [AUDIENCE],
                "local_jwks": {"inline_string": json.dumps(jwks)}, "forward": True}
    if cache:
        provider["jwt_cache_config"] = {"jwt_cache_size": 1000}
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"bench": provider},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}],
        },
    }


def bearer_guard(name, jwks, cache_size, crypto, **extra):
    # forward: true on both sides: jwt_authn above keeps the header too.
    config = {"providers": {"bench": {"issuer": ISSUER, "audiences": [AUDIENCE], "local_jwks": jwks,
                                      "forward": True}},
              "jwt_cache_size": cache_size, "crypto": crypto, **extra}
    return wasm_filter(name, BEARER_GUARD, json.dumps(config))


def envoy_config(jwks):
    filters = {
        "no_filter": [],
        "trivial_wasm": [wasm_filter("trivial_wasm", TRIVIAL, "")],
        "host_verify_floor": [wasm_filter("host_verify_floor", HOST_VERIFY, json.dumps(jwks))],
        "host_verify_claims": [wasm_filter("host_verify_claims", HOST_VERIFY,
                                           json.dumps({**jwks, "issuer": ISSUER, "audience": AUDIENCE}))],
        "jwt_authn_cache": [jwt_authn(jwks, True)],
        "jwt_authn_nocache": [jwt_authn(jwks, False)],
        "bearer_guard_cache": [bearer_guard("bearer_guard_cache", jwks, 1000, "auto")],
        "bearer_guard_nocache": [bearer_guard("bearer_guard_nocache", jwks, 0, "auto")],
        "bearer_guard_wasm_crypto": [bearer_guard("bearer_guard_wasm_crypto", jwks, 0, "wasm")],
        "bearer_guard_filter_state": [bearer_guard("bearer_guard_filter_state", jwks, 1000, "auto",
                                                   log={"filter_state": True})],
        # One token from one address at wrk's pace: counted, never over the limits.
        "bearer_guard_watching": [bearer_guard("bearer_guard_watching", jwks, 1000, "auto",
                                               anomaly={"max_requests": 4_000_000_000, "window_seconds": 86400})],
        # log.max_lines_per_second stays at its default (100 per worker).
        "bearer_guard_decisions": [bearer_guard("bearer_guard_decisions", jwks, 1000, "auto",
                                                log={"decisions": "all"})],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": [listener(n, f) for n, f in filters.items()]},
    }


def http_get(port, path="/", token=None, timeout=5):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def stop_process(process):
    """SIGTERM by pid, SIGKILL after 10 s."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


class Envoy:
    """One Envoy process; stopped by pid in `stop`, also when the run fails (and when it does
    not come up)."""

    def __init__(self, workdir, config, concurrency=1):
        self.workdir = workdir
        config_path = workdir / "envoy-bench.json"
        config_path.write_text(json.dumps(config, indent=1))
        self.admin_file = workdir / "admin-address"
        self.admin_file.unlink(missing_ok=True)
        self.log_path = workdir / "envoy.log"
        self.process = subprocess.Popen(
            [str(ENVOY), "-c", str(config_path), "--concurrency", str(concurrency), "--disable-hot-restart",
             "--admin-address-path", str(self.admin_file), "--log-level", "warn",
             "--component-log-level", "wasm:info"],
            stdout=subprocess.DEVNULL, stderr=open(self.log_path, "w"), start_new_session=True)
        try:
            self.ports = self._wait_for_listeners(set(config_listener_names(config)))
        except BaseException:
            self.stop()
            raise

    def _wait_for_listeners(self, names, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"envoy exited: {self.log_path.read_text()[-3000:]}")
            try:
                admin_port = int(self.admin_file.read_text().strip().rsplit(":", 1)[1])
                if http_get(admin_port, "/ready", timeout=1)[1].strip() == "LIVE":
                    statuses = json.loads(http_get(admin_port, "/listeners?format=json")[1])
                    ports = {l["name"]: l["local_address"]["socket_address"]["port_value"]
                             for l in statuses["listener_statuses"]}
                    if names <= set(ports):
                        self.admin_port = admin_port
                        return ports
            except (OSError, ValueError, IndexError, KeyError):
                pass
            time.sleep(0.1)
        raise RuntimeError("envoy did not come up")

    def stop(self):
        stop_process(self.process)


def config_listener_names(config):
    return [l["name"] for l in config["static_resources"]["listeners"]]


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def answered_otherwise(result, expected):
    """How many requests of a run_wrk `result` were not answered `expected` (200 or a refusal):
    wrk counts only the answers that are not 2xx or 3xx."""
    return result["non_2xx"] if expected == 200 else result["requests"] - result["non_2xx"]


def run_wrk(port, tokens_file, seconds, connections=16):
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
         "-s", str(ROOT / "bench" / "rotate.lua"), f"http://127.0.0.1:{port}/", "--", str(tokens_file)],
        capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latency = {}
    for pct, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        latency[pct] = float(value) * UNITS[unit]
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": rps, "p50_ms": latency.get("50"), "p99_ms": latency.get("99"),
            "requests": requests, "non_2xx": int(non_2xx.group(1)) if non_2xx else 0}


def answer(port, token, timeout=5):
    """(status, WWW-Authenticate header + body) of one request carrying `token`."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/")
    request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, f"{error.headers.get('WWW-Authenticate', '')} {error.read().decode(errors='replace')}"


def check_answers(ports, pools, pairs, timeout=5):
    """Each (mix, variant) answers a token of the mix with the mix's status, and a refusal for
    the mix's reason, before anything is measured: a filter that did not run would look cheap."""
    for mix, variant in pairs:
        file, _, expected, reason = MIXES[mix]
        token = (pools / file).read_text().split()[0]
        status, text = answer(ports[variant], token, timeout=timeout)
        if status != expected:
            raise RuntimeError(f"{variant} answered {status} to {mix} (expected {expected}): {text}")
        if reason and reason not in text.lower():
            raise RuntimeError(f"{variant} refused {mix} but not for '{reason}': {text}")


def config_for(jwks, variants, extra=()):
    """envoy_config's Envoy with only the listeners of `variants` (from its own and `extra`)."""
    everything = envoy_config(jwks)
    listeners = [l for l in everything["static_resources"]["listeners"] + list(extra) if l["name"] in variants]
    return {"admin": everything["admin"], "static_resources": {"listeners": listeners}}


def sanity_check(envoy, pools, mixes):
    """Every variant answers as expected (rejections for the expected reason) before anything
    is timed."""
    check_answers(envoy.ports, pools, [(mix, variant) for mix in mixes for variant in MIXES[mix][1]])
    # The floors verify for real: they accept a good token and refuse one whose signature is
    # wrong, for both algorithms, and the one that checks claims refuses an expired token
    # (checked whenever a measured mix runs them).
    floors = {"host_verify_floor": 200, "host_verify_claims": 401}  # -> its answer to an expired token
    for floor, expired in floors.items():
        if not any(floor in MIXES[mix][1] for mix in mixes):
            continue
        for alg in ("rs256", "es256"):
            for kind, expected in (("distinct", 200), ("invalid", 401), ("expired", expired)):
                file = f"{alg}-{kind}.txt"
                status, text = answer(envoy.ports[floor], (pools / file).read_text().splitlines()[0])
                if status != expected:
                    raise RuntimeError(f"{floor} answered {status} to {file} (expected {expected}): {text}")
    log = envoy.log_path.read_text()
    if "signatures verified in the host" not in log:
        raise RuntimeError("bearer-guard did not use host crypto:\n" + log[-3000:])


def rotated(items, by):
    """`items` rotated left by `by`: round r starts with item r (mod len)."""
    by %= len(items)
    return items[by:] + items[:by]


def plan_round(mixes, round_number):
    """The (mix, variant) runs of one round: mixes and, within each, variants rotated."""
    return [(mix, variant) for mix in rotated(mixes, round_number)
            for variant in rotated(MIXES[mix][1], round_number)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="a second per variant, one round; no targets judged")
    parser.add_argument("--seconds", type=int, default=2, help="measured seconds per run (default 2)")
    parser.add_argument("--warmup", type=int, default=1, help="discarded seconds before each run (default 1)")
    parser.add_argument("--rounds", type=int, default=6, help="paired, rotated rounds (default 6)")
    parser.add_argument("--pools", type=pathlib.Path, help="token pools (examples/bench_tokens.rs)")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="results.md/.json go here")
    parser.add_argument("--memory", type=pathlib.Path,
                        help="memory_results.json of bench/memory.py, folded into the targets table")
    parser.add_argument("--envoy-cost", type=pathlib.Path,
                        help="envoy_cost_results.json of bench/envoy_cost.py: its instruction ratios join the targets")
    parser.add_argument("--mixes", nargs="*", choices=list(MIXES), help="only these mixes (an A/B; not for the committed results)")
    parser.add_argument("--report", action="store_true",
                        help="print the targets and host-call tables of --out/results.json again, measure nothing")
    args = parser.parse_args()
    if args.report:
        report(args.out / "results.json")
        return
    if not args.pools:
        parser.error("--pools is required (unless --report)")
    if args.smoke:
        args.seconds, args.warmup, args.rounds = 1, 0, 1
    if args.rounds < 1 or args.seconds < 1 or args.warmup < 0:
        parser.error("--rounds and --seconds must be >= 1, --warmup >= 0")
    mixes = [mix for mix in MIXES if not args.mixes or mix in args.mixes]
    runs_per_round = len(plan_round(mixes, 0))
    estimate = args.rounds * runs_per_round * (args.seconds + args.warmup + RUN_OVERHEAD_SECONDS)
    calls = host_calls()
    print("\n".join(["host calls per request (fake host; against Envoy a cache miss adds "
                      "verify_signature):"] + host_call_lines(calls)), flush=True)
    module_time = wasm_cost(args.pools, 2000 if args.smoke else 40000)
    print("\n".join(module_time_lines(module_time)), flush=True)
    print(f"{args.rounds} rounds x {runs_per_round} runs of {args.warmup} + {args.seconds} s: "
          f"about {estimate / 60:.1f} min", flush=True)
    workdir = args.pools
    jwks = json.loads((args.pools / "jwks.json").read_text())
    started = time.monotonic()
    envoy = Envoy(workdir, envoy_config(jwks))
    samples = {}
    try:
        sanity_check(envoy, args.pools, mixes)
        for round_number in range(args.rounds):
            for mix, variant in plan_round(mixes, round_number):
                file, _, expected, _ = MIXES[mix]
                port = envoy.ports[variant]
                if args.warmup:
                    run_wrk(port, args.pools / file, args.warmup)
                result = run_wrk(port, args.pools / file, args.seconds)
                if result["rps"] <= 0:
                    raise RuntimeError(f"{mix}/{variant}: no requests completed")
                wrong = answered_otherwise(result, expected)
                if wrong:
                    raise RuntimeError(f"{mix}/{variant}: {wrong} responses were not {expected}")
                result["round"] = round_number
                samples.setdefault((mix, variant), []).append(result)
                print(f"round {round_number + 1}/{args.rounds} {mix:15} {variant:26} "
                      f"{result['rps']:9.0f} req/s  p50 {result['p50_ms']:.3f} ms  p99 {result['p99_ms']:.3f} ms",
                      flush=True)
        envoy_log = envoy.log_path.read_text()
    finally:
        envoy.stop()
    elapsed = time.monotonic() - started
    for marker in ("panicked", "Wasm VM failed"):
        if marker in envoy_log:
            raise RuntimeError(f"wasm failure during the benchmark ({marker})")
    memory = json.loads(args.memory.read_text()) if args.memory else None
    envoy_cost = json.loads(args.envoy_cost.read_text()) if args.envoy_cost else None
    write_results(args, samples, calls, elapsed, memory, module_time, envoy_cost)


def wasm_cost(pools, requests):
    """The module's own time per request by path, in Node's V8 against a scripted host
    (bench/wasm_cost.js, which fails when a path decides otherwise than it should)."""
    # Every path, whatever a shell left exported for a look at one of them by hand.
    env = {k: v for k, v in os.environ.items() if k not in ("WASM_COST_PATHS", "WASM_COST_TOP")}
    out = subprocess.run(["node", str(ROOT / "bench" / "wasm_cost.js"), str(BEARER_GUARD), str(pools),
                          str(requests)], capture_output=True, text=True, check=True, timeout=600, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def module_time_lines(rows):
    lines = ["| path | module's own time per request | its runs | host calls per request |",
             "|---|---:|---|---|"]
    for row in rows:
        calls = ", ".join(f"{name} x{n:g}" for name, n in row["calls"].items())
        spread = "-".join(f"{us:.2f}" for us in row.get("spread", []))
        lines.append(f"| {row['what']} | {row['us_per_request']:.2f} us | {spread} | {calls} |")
    return lines


def host_calls():
    """Host calls per request path and configuration, from the unit test that budgets them."""
    out = ROOT / "bench" / "tmp" / "host_calls.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    cargo = os.environ.get("CARGO", "cargo")
    subprocess.run([cargo, "test", "--quiet", "--lib", "--features", "cli",
                    "host_calls_per_request_stay_within_their_budget"],
                   cwd=ROOT, env={**os.environ, "BEARER_GUARD_HOST_CALLS": str(out)},
                   check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())["rows"]


def host_call_lines(rows):
    lines = ["| config | path | host calls | which |", "|---|---|---:|---|"]
    for row in rows:
        calls = []
        for call in row["calls"]:
            if calls and calls[-1][0] == call:
                calls[-1][1] += 1
            else:
                calls.append([call, 1])
        which = ", ".join(c if n == 1 else f"{c} x{n}" for c, n in calls)
        lines.append(f"| {row['config']} | {row['path']} | {row['count']} | {which} |")
    return lines


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def round_ratios(samples, num, den):
    """numerator / denominator req/s of every round that ran both."""
    a = {s["round"]: s["rps"] for s in samples.get(tuple(num), [])}
    b = {s["round"]: s["rps"] for s in samples.get(tuple(den), [])}
    return [a[r] / b[r] for r in sorted(a) if r in b and b[r] > 0]


def target_row(name, kind, measured, text, spread, goal, met, **extra):
    """One row of the targets table (shared with bench/memory.py). met: True/False, None
    (reported only), "not run" or "smoke" (not judged)."""
    return {"target": name, "kind": kind, "measured": measured, "measured_text": text,
            "spread": spread, "goal": goal, "met": met, **extra}


def throughput_targets(samples, judge):
    rows = []
    for name, num, den, minimum in TARGETS:
        ratios = round_ratios(samples, num, den)
        kind = "priced" if name.startswith("priced") else "throughput" if minimum is not None else "reported"
        goal = f">= {minimum:.2f}" if minimum is not None else "-"
        if not ratios:
            rows.append(target_row(name, kind, None, "not run", "-", goal, "not run"))
            continue
        ratio = statistics.median(ratios)
        met = (ratio >= minimum if judge else "smoke") if minimum is not None else None
        rows.append(target_row(name, kind, round(ratio, 4), f"{ratio:.2f}",
                               f"{min(ratios):.2f}-{max(ratios):.2f}", goal, met,
                               per_round=[round(r, 4) for r in ratios],
                               numerator="/".join(num), denominator="/".join(den)))
    return rows


def size_target(wasm_size, judge):
    met = wasm_size <= SIZE_TARGET_BYTES if judge else "smoke"
    return target_row("module size, dist/bearer_guard.wasm", "size", wasm_size, f"{wasm_size:,} bytes", "-",
                      f"<= {SIZE_TARGET_BYTES:,} bytes", met)


def met_text(met):
    if met is True:
        return "yes"
    if met is False:
        return "NO"
    if met is None:
        return "-"
    return met  # "not run", "smoke"


def targets_lines(rows):
    lines = ["| target (issue 18) | measured | spread (min-max) | target | met |", "|---|---:|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['target']} | {r['measured_text']} | {r['spread']} | {r['goal']} | {met_text(r['met'])} |")
    return lines


def write_results(args, samples, calls, elapsed, memory, module_time, envoy_cost):
    summary = {}
    for (mix, variant), runs in sorted(samples.items(), key=lambda kv: (list(MIXES).index(kv[0][0]),
                                                                         MIXES[kv[0][0]][1].index(kv[0][1]))):
        rps = [s["rps"] for s in runs]
        summary[f"{mix}/{variant}"] = {
            "rps": median(rps), "rps_min": min(rps), "rps_max": max(rps),
            "rps_rounds": [round(v, 1) for v in rps],
            "p50_ms": median([s["p50_ms"] for s in runs]),
            "p99_ms": median([s["p99_ms"] for s in runs]),
            "rounds": len(runs)}
    wasm_size = BEARER_GUARD.stat().st_size
    judge = not args.smoke
    targets = throughput_targets(samples, judge)
    # The same ratios from Envoy's instructions per request (bench/envoy_cost.py): exact where
    # requests/s move by 10-40% between rounds on a shared machine.
    if envoy_cost:
        targets += envoy_cost["targets"]
    targets.append(size_target(wasm_size, judge))
    memory_note = "bench/memory.py not run (--memory)"
    if memory:
        targets += memory["targets"]
        memory_note = (f"memory rows from {args.memory} ({memory['date']}"
                       + (", smoke run: not judged" if memory.get("smoke") else "") + ")")
    else:
        targets.append(target_row("RSS per worker (bench/memory.py)", "memory", None, "not run", "-",
                                  "<= trivial wasm + 2 MB", "not run"))
    version = subprocess.run([str(ENVOY), "--version"], capture_output=True, text=True).stdout.strip().split()[-1]
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "envoy": version, "concurrency": 1, "wrk": "-t1 -c16",
        "seconds_per_run": args.seconds, "warmup_seconds": args.warmup, "rounds": args.rounds,
        "rotation": "mixes and variants within each mix rotated by one every round",
        "elapsed_seconds": round(elapsed, 1),
        "smoke": args.smoke, "mixes": sorted({mix for mix, _ in samples}, key=list(MIXES).index),
        "wasm_size_bytes": wasm_size, "wasm_size_target_met": wasm_size <= SIZE_TARGET_BYTES,
        "results": summary, "targets": targets, "memory_source": memory_note,
        "envoy_cost_source": (f"instruction rows from {args.envoy_cost} ({envoy_cost['date']})" if envoy_cost
                              else "bench/envoy_cost.py not run (--envoy-cost)"),
        "host_calls": calls,
        "module_time": module_time,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# bearer-guard benchmark" + (" (smoke run: not a measurement)" if args.smoke else ""),
        "",
        f"{result['date']}; Envoy {version}, --concurrency 1; wrk -t1 -c16, {args.seconds} s per run "
        f"after {args.warmup} s warm-up, {args.rounds} paired rounds (mixes and variants rotated every "
        f"round), medians shown; direct_response route; loopback; {elapsed / 60:.1f} min.",
        "",
        "| mix | variant | req/s | min-max | p50 ms | p99 ms |",
        "|---|---|---:|---|---:|---:|",
    ]
    for key, row in summary.items():
        mix, variant = key.split("/")
        lines.append(f"| {mix} | {VARIANTS[variant]} | {row['rps']:.0f} | {row['rps_min']:.0f}-{row['rps_max']:.0f} "
                     f"| {row['p50_ms']:.3f} | {row['p99_ms']:.3f} |")
    lines += ["", *report_lines(result), ""]
    (args.out / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))


def report_lines(result):
    """The targets table and the host-call table of a results.json."""
    rounds = result["rounds"]
    lines = [f"Targets: every ratio is the median of {rounds} per-round ratios (numerator and denominator "
             "from the same round), spread = min-max of those ratios; memory rows: median of "
             "bench/memory.py's starts, spread = min-max over them; rows marked [Envoy instructions per "
             "request]: bench/envoy_cost.py under callgrind, the same ratio from the instructions Envoy "
             "executes per request (exact; user space only), with the two counts"
             + ("; smoke run: nothing judged" if result.get("smoke") else "") + ".", ""]
    lines += targets_lines(result["targets"])
    lines += ["", "Host calls per request (src/filter/host_calls_tests.rs, against the fake host; "
              "against Envoy a cache miss adds the verify_signature foreign function):", ""]
    lines += host_call_lines(result["host_calls"])
    if result.get("module_time"):
        lines += ["", "The module's own time per request (bench/wasm_cost.js: this module in Node's V8, "
                  "compiled as Envoy compiles it, against a scripted host whose own time is not counted; "
                  "the least of 3 runs, and their spread):", ""]
        lines += module_time_lines(result["module_time"])
    return lines


def report(path):
    if not path.is_file():
        raise RuntimeError(f"{path}: not found (run bench/run.py first)")
    result = json.loads(path.read_text())
    print("\n".join([f"# bearer-guard targets ({path}, {result['date']})", ""] + report_lines(result)))


def run_main(main, *errors):
    """Every bench script's entry point: SIGTERM runs the finally blocks (which stop what the
    script started, by pid); a failure is one line and exit status 1."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        main()
    except (RuntimeError, OSError, subprocess.SubprocessError, *errors) as error:
        print(f"bench failed: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run_main(main)
