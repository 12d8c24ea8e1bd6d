#!/usr/bin/env python3
"""`make bench`: bearer-guard against Envoy's native jwt_authn, side by side, in one Envoy.

One Envoy (--concurrency 1) with one listener per variant, all answering with a
direct_response so the upstream does not dominate. wrk (one thread, 16 connections) drives
each variant with a token mix; rounds are interleaved so machine drift cancels out, and a
warm-up run before each measured run is discarded. Loopback only, bounded in time.

Writes a table and the target ratios to results.md / results.json. `--smoke` runs a couple
of seconds per variant to keep this working in CI (no targets are judged there). Both also
carry the host calls each request path makes, as the unit test that budgets them counts them
(src/filter/host_calls_tests.rs, against the fake host: no Envoy needed).
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
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
ENVOY = ROOT / ".venv" / "bin" / "envoy"
BEARER_GUARD = ROOT / "dist" / "bearer_guard.wasm"
TRIVIAL = ROOT / "target" / "bench" / "wasm32-wasip1" / "release" / "trivial_filter.wasm"
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
    "jwt_authn_cache": "native jwt_authn, jwt_cache_config 1000",
    "jwt_authn_nocache": "native jwt_authn, no cache",
    "bearer_guard_cache": "bearer-guard, jwt_cache_size 1000",
    "bearer_guard_nocache": "bearer-guard, jwt_cache_size 0",
    "bearer_guard_wasm_crypto": "bearer-guard, no cache, crypto in wasm (fallback)",
    "bearer_guard_filter_state": "bearer-guard, jwt_cache_size 1000, log.filter_state on",
    "bearer_guard_watching": "bearer-guard, jwt_cache_size 1000, misuse detection on",
}

# Mix name -> (token file, variants measured with it, expected status)
MIXES = {
    "repeat_rs256": ("rs256-repeat.txt", list(VARIANTS)[:6] + ["bearer_guard_filter_state", "bearer_guard_watching"], 200),
    "repeat_es256": ("es256-repeat.txt", ["jwt_authn_cache", "jwt_authn_nocache", "bearer_guard_cache", "bearer_guard_nocache"], 200),
    "distinct_rs256": ("rs256-distinct.txt", ["jwt_authn_cache", "jwt_authn_nocache", "bearer_guard_cache", "bearer_guard_nocache", "bearer_guard_wasm_crypto"], 200),
    "distinct_es256": ("es256-distinct.txt", ["jwt_authn_cache", "jwt_authn_nocache", "bearer_guard_cache", "bearer_guard_nocache", "bearer_guard_wasm_crypto"], 200),
    "invalid_rs256": ("rs256-invalid.txt", ["jwt_authn_nocache", "bearer_guard_nocache", "bearer_guard_cache"], 401),
    "invalid_es256": ("es256-invalid.txt", ["jwt_authn_nocache", "bearer_guard_nocache", "bearer_guard_cache"], 401),
}

# (name, numerator (mix, variant), denominator (mix, variant), minimum)
TARGETS = [
    ("distinct RS256: bearer-guard / jwt_authn, no cache", ("distinct_rs256", "bearer_guard_nocache"), ("distinct_rs256", "jwt_authn_nocache"), 1.0),
    ("distinct ES256: bearer-guard / jwt_authn, no cache", ("distinct_es256", "bearer_guard_nocache"), ("distinct_es256", "jwt_authn_nocache"), 1.0),
    ("repeated RS256: bearer-guard / jwt_authn, with cache", ("repeat_rs256", "bearer_guard_cache"), ("repeat_rs256", "jwt_authn_cache"), 0.8),
    ("repeated ES256: bearer-guard / jwt_authn, with cache", ("repeat_es256", "bearer_guard_cache"), ("repeat_es256", "jwt_authn_cache"), 0.8),
    ("repeated RS256: bearer-guard with cache / trivial wasm", ("repeat_rs256", "bearer_guard_cache"), ("repeat_rs256", "trivial_wasm"), 0.95),
    ("invalid RS256 rejections / distinct RS256 acceptances (bearer-guard, no cache)", ("invalid_rs256", "bearer_guard_nocache"), ("distinct_rs256", "bearer_guard_nocache"), 1.0),
    ("invalid ES256 rejections / distinct ES256 acceptances (bearer-guard, no cache)", ("invalid_es256", "bearer_guard_nocache"), ("distinct_es256", "bearer_guard_nocache"), 1.0),
    ("repeated RS256: log.filter_state on / off (default)", ("repeat_rs256", "bearer_guard_filter_state"), ("repeat_rs256", "bearer_guard_cache"), 0.7),
    ("repeated RS256: misuse detection on / off", ("repeat_rs256", "bearer_guard_watching"), ("repeat_rs256", "bearer_guard_cache"), 0.85),
]
SIZE_TARGET_BYTES = 600 * 1000


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
    """One Envoy process; stopped by pid in `stop`, also when the run fails."""

    def __init__(self, workdir, config):
        self.workdir = workdir
        config_path = workdir / "envoy-bench.json"
        config_path.write_text(json.dumps(config, indent=1))
        self.admin_file = workdir / "admin-address"
        self.admin_file.unlink(missing_ok=True)
        self.log_path = workdir / "envoy.log"
        self.process = subprocess.Popen(
            [str(ENVOY), "-c", str(config_path), "--concurrency", "1", "--disable-hot-restart",
             "--admin-address-path", str(self.admin_file), "--log-level", "warn",
             "--component-log-level", "wasm:info"],
            stdout=subprocess.DEVNULL, stderr=open(self.log_path, "w"), start_new_session=True)
        self.ports = self._wait_for_listeners(set(config_listener_names(config)))

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


def sanity_check(envoy, pools):
    """Every variant answers as expected before anything is timed."""
    for mix, (file, variants, expected) in MIXES.items():
        token = (pools / file).read_text().splitlines()[0]
        for variant in variants:
            status, body = http_get(envoy.ports[variant], token=token)
            if status != expected:
                raise RuntimeError(f"{variant} answered {status} to {mix} (expected {expected}): {body}")
    log = envoy.log_path.read_text()
    if "signatures verified in the host" not in log:
        raise RuntimeError("bearer-guard did not use host crypto:\n" + log[-3000:])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="a couple of seconds per variant")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pools", type=pathlib.Path, required=True)
    parser.add_argument("--out", type=pathlib.Path, required=True, help="results.md/.json go here")
    parser.add_argument("--mixes", nargs="*", choices=list(MIXES), help="only these mixes (an A/B; not for the committed results)")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.warmup, args.rounds = 1, 0, 1
    calls = host_calls()
    print("\n".join(["host calls per request (fake host; against Envoy a cache miss adds "
                      "verify_signature):"] + host_call_lines(calls)), flush=True)
    workdir = args.pools
    jwks = json.loads((args.pools / "jwks.json").read_text())
    envoy = Envoy(workdir, envoy_config(jwks))
    samples = {}
    try:
        sanity_check(envoy, args.pools)
        plan = [(mix, variant) for mix, (_, variants, _) in MIXES.items() for variant in variants
                if not args.mixes or mix in args.mixes]
        for round_number in range(args.rounds):
            for mix, variant in plan:
                file, _, expected = MIXES[mix]
                port = envoy.ports[variant]
                if args.warmup:
                    run_wrk(port, args.pools / file, args.warmup)
                result = run_wrk(port, args.pools / file, args.seconds)
                if result["rps"] <= 0:
                    raise RuntimeError(f"{mix}/{variant}: no requests completed")
                wrong = result["non_2xx"] if expected == 200 else result["requests"] - result["non_2xx"]
                if wrong:
                    raise RuntimeError(f"{mix}/{variant}: {wrong} responses were not {expected}")
                samples.setdefault((mix, variant), []).append(result)
                print(f"round {round_number + 1}/{args.rounds} {mix:15} {variant:26} "
                      f"{result['rps']:9.0f} req/s  p50 {result['p50_ms']:.3f} ms  p99 {result['p99_ms']:.3f} ms",
                      flush=True)
        envoy_log = envoy.log_path.read_text()
    finally:
        envoy.stop()
    for marker in ("panicked", "Wasm VM failed"):
        if marker in envoy_log:
            raise RuntimeError(f"wasm failure during the benchmark ({marker})")
    write_results(args, samples, calls)


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


def write_results(args, samples, calls):
    summary = {f"{mix}/{variant}": {
        "rps": median([s["rps"] for s in runs]),
        "p50_ms": median([s["p50_ms"] for s in runs]),
        "p99_ms": median([s["p99_ms"] for s in runs]),
        "rounds": len(runs)} for (mix, variant), runs in samples.items()}
    wasm_size = BEARER_GUARD.stat().st_size
    ratios = []
    for name, num, den, minimum in TARGETS:
        ratio = summary[f"{num[0]}/{num[1]}"]["rps"] / summary[f"{den[0]}/{den[1]}"]["rps"]
        ratios.append({"target": name, "ratio": round(ratio, 3), "minimum": minimum, "met": ratio >= minimum})
    version = subprocess.run([str(ENVOY), "--version"], capture_output=True, text=True).stdout.strip().split()[-1]
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "envoy": version, "concurrency": 1, "wrk": "-t1 -c16",
        "seconds_per_run": args.seconds, "warmup_seconds": args.warmup, "rounds": args.rounds,
        "smoke": args.smoke, "wasm_size_bytes": wasm_size,
        "wasm_size_target_met": wasm_size <= SIZE_TARGET_BYTES,
        "results": summary, "ratios": ratios, "host_calls": calls,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# bearer-guard benchmark" + (" (smoke run: not a measurement)" if args.smoke else ""),
        "",
        f"{result['date']}; Envoy {version}, --concurrency 1; wrk -t1 -c16, {args.seconds} s per run "
        f"after {args.warmup} s warm-up, {args.rounds} interleaved rounds, medians shown; "
        "direct_response route; loopback.",
        "",
        "| mix | variant | req/s | p50 ms | p99 ms |",
        "|---|---|---:|---:|---:|",
    ]
    for key, row in summary.items():
        mix, variant = key.split("/")
        lines.append(f"| {mix} | {VARIANTS[variant]} | {row['rps']:.0f} | {row['p50_ms']:.3f} | {row['p99_ms']:.3f} |")
    lines += ["", "| target | ratio | minimum | met |", "|---|---:|---:|---|"]
    for r in ratios:
        lines.append(f"| {r['target']} | {r['ratio']:.2f} | {r['minimum']:.2f} | {'yes' if r['met'] else 'NO'} |")
    lines += ["", f"`dist/bearer_guard.wasm`: {wasm_size} bytes (target <= {SIZE_TARGET_BYTES}: "
              f"{'met' if wasm_size <= SIZE_TARGET_BYTES else 'NOT met'})", ""]
    lines += ["Host calls per request (src/filter/host_calls_tests.rs, against the fake host; "
              "against Envoy a cache miss adds the verify_signature foreign function):", ""]
    lines += host_call_lines(calls) + [""]
    (args.out / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    try:
        main()
    except (RuntimeError, subprocess.CalledProcessError) as error:
        print(f"bench failed: {error}", file=sys.stderr)
        sys.exit(1)
