#!/usr/bin/env python3
"""RSS per worker (issue 18): what bearer-guard adds to each Envoy worker, next to the trivial
wasm filter (the floor any wasm filter sits on).

Separate Envoys, one variant each, one direct_response listener, one after the other (never two
at once), at --concurrency 1, 2 and 4: no filter; the trivial wasm filter; native jwt_authn (no
cache, its default); bearer-guard with its default config (one provider with a local JWKS, as
bench/run.py's bearer_guard variant with the default cache); and the same holding a polled
revocation list of 1,000,000 entries (bench/revocation.py's config and list server,
examples/revocation_server.py; measured once the list gauge says it is held). Each Envoy gets
200 requests with distinct valid RS256 tokens, each on a new connection (so they spread over
the workers), then a 2 s pause; then VmRSS/VmHWM of the Envoy pid (/proc) and the admin
/memory endpoint (tcmalloc: allocated, heap_size, pageheap_free, pageheap_unmapped,
total_thread_cache: how much of the RSS is memory freed but kept by the allocator, e.g. what
the module's compilation used). Median of 3 starts per cell; the order of the variants is
rotated every start.

Per worker = (RSS - RSS of no filter at the same --concurrency) / concurrency, from the
medians; its spread is the min-max of the same figure per start (each start's no-filter Envoy
ran in the same start). Target per cell: bearer-guard per worker <= trivial wasm per worker +
2 MB (MB = 10^6 bytes throughout). Also the marginal RSS of each extra worker,
(RSS at --concurrency 4 - RSS at 1) / 3 per variant: the per-VM cost without the one-off
costs (the module, the main thread's VM, shared data).

`--smoke`: --concurrency 1 only, no filter and bearer-guard, one start (no targets judged).
Every process started here is stopped by pid, also on failure. Usage:

    python3 bench/memory.py --pools bench/tmp/pools --out bench [--smoke]

Writes memory_results.md / memory_results.json to --out and prints the tables; bench/run.py
--memory folds the target rows into its targets table.
"""

import argparse
import datetime
import json
import pathlib
import statistics
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.dont_write_bytecode = True  # no bench/__pycache__ from the imports below
import run as base  # noqa: E402  (bench/run.py: Envoy config helpers, the targets table)
import revocation as listbench  # noqa: E402  (bench/revocation.py: list server, its Envoy)

VARIANTS = {
    "no_filter": "Envoy, no filter",
    "trivial_wasm": "trivial wasm filter",
    "jwt_authn": "native jwt_authn (no cache, its default)",
    "bearer_guard": "bearer-guard, default config",
    "bearer_guard_1m": "bearer-guard, default config + 1,000,000 revoked entries held",
}
# bearer-guard variant -> what its target row says.
GUARDED = {"bearer_guard": "default config", "bearer_guard_1m": "1,000,000 revoked entries held"}
TCMALLOC = ("allocated", "heap_size", "pageheap_free", "pageheap_unmapped", "total_thread_cache")
MARGIN_BYTES = 2 * 1000 * 1000
MB = 1e6
POOL = "rs256-distinct.txt"


def config(variant, jwks, list_port):
    if variant == "bearer_guard_1m":
        return listbench.envoy_config(jwks, list_port)  # jwt_cache_size 1000 (the default), crypto auto
    filters = {
        "no_filter": [],
        "trivial_wasm": [base.wasm_filter("trivial_wasm", base.TRIVIAL, "")],
        "jwt_authn": [base.jwt_authn(jwks, False)],
        "bearer_guard": [base.wasm_filter("bearer_guard", base.BEARER_GUARD, json.dumps({
            "providers": {"bench": {"issuer": base.ISSUER, "audiences": [base.AUDIENCE],
                                    "local_jwks": jwks, "forward": True}}}))],
    }[variant]
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": [base.listener("guarded", filters)]},
    }


def measure(args, workdir, variant, concurrency, start, jwks, tokens, server):
    """One Envoy: start, (the list held), requests, pause, read its memory, stop."""
    name = f"{variant}-c{concurrency}-s{start}"
    envoy = listbench.Envoy(workdir, name, config(variant, jwks, server.port if server else 0),
                            concurrency)
    try:
        sample = {}
        if variant == "bearer_guard_1m":
            sample["list_held_seconds"] = round(envoy.wait_for_list(server.entries, args.load_timeout), 3)
        for token in tokens:
            status, text = base.answer(envoy.port, token)
            if status != 200:
                raise RuntimeError(f"{name}: answered {status} to a valid token: {text}")
        time.sleep(args.settle)
        sample.update(envoy.memory())  # VmRSS, VmHWM
        status, body = base.http_get(envoy.admin_port, "/memory")
        if status != 200:
            raise RuntimeError(f"{name}: admin /memory answered {status}")
        tcmalloc = json.loads(body)
        sample.update({key: int(tcmalloc[key]) for key in TCMALLOC})
    finally:
        envoy.stop()
    log = envoy.log_path.read_text(errors="replace")
    for marker in ("panicked", "Wasm VM failed"):
        if marker in log:
            raise RuntimeError(f"wasm failure in {name} ({marker}): see {envoy.log_path}")
    print(f"start {start + 1} --concurrency {concurrency} {variant:16} RSS {sample['VmRSS'] / MB:7.1f} MB  "
          f"allocated {sample['allocated'] / MB:6.1f}  heap {sample['heap_size'] / MB:6.1f}  "
          f"free {sample['pageheap_free'] / MB:6.1f}  unmapped {sample['pageheap_unmapped'] / MB:6.1f}  "
          f"thread caches {sample['total_thread_cache'] / MB:5.1f} MB"
          + (f"  (list held {sample['list_held_seconds']:.2f} s after start)" if "list_held_seconds" in sample
             else ""), flush=True)
    return sample


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="--concurrency 1, two variants, one start")
    parser.add_argument("--pools", type=pathlib.Path, required=True)
    parser.add_argument("--out", type=pathlib.Path, required=True, help="memory_results.md/.json go here")
    parser.add_argument("--starts", type=int, default=3, help="Envoy starts per cell (default 3)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds between the requests and the reading")
    parser.add_argument("--entries", type=int, default=1_000_000, help="revoked entries held")
    args = parser.parse_args()
    args.load_timeout = 180
    variants = list(VARIANTS)
    if args.smoke:
        args.starts, args.concurrency, variants = 1, [1], ["no_filter", "bearer_guard"]
        args.requests, args.settle = 20, 1.0
    jwks = json.loads((args.pools / "jwks.json").read_text())
    tokens = (args.pools / POOL).read_text().split()[:args.requests]
    workdir = args.pools / "memory-work"
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    samples = {}  # (variant, concurrency) -> [sample per start]
    server = None
    try:
        if "bearer_guard_1m" in variants:
            print(f"starting the list server ({args.entries:,} entries)", flush=True)
            server = listbench.ListServer(workdir, "memory", args.entries)
        for start in range(args.starts):
            for concurrency in args.concurrency:
                for variant in base.rotated(variants, start):
                    samples.setdefault((variant, concurrency), []).append(
                        measure(args, workdir, variant, concurrency, start, jwks, tokens, server))
    finally:
        if server:
            server.stop()
    write_results(args, variants, samples, time.monotonic() - started)


def summarize(args, variants, samples):
    """Per cell: medians of every field; per worker above no filter, from the medians, with
    its per-start spread."""
    cells = []
    for concurrency in args.concurrency:
        base_runs = samples.get(("no_filter", concurrency), [])
        base_rss = statistics.median(s["VmRSS"] for s in base_runs) if base_runs else None
        for variant in variants:
            runs = samples[(variant, concurrency)]
            cell = {"variant": variant, "concurrency": concurrency, "starts": len(runs)}
            for key in runs[0]:
                cell[key] = statistics.median(s[key] for s in runs)
            cell["rss_starts"] = [s["VmRSS"] for s in runs]
            if base_rss is not None:
                cell["per_worker"] = (cell["VmRSS"] - base_rss) / concurrency
                paired = [(s["VmRSS"] - b["VmRSS"]) / concurrency for s, b in zip(runs, base_runs)]
                cell["per_worker_min"], cell["per_worker_max"] = min(paired), max(paired)
            cells.append(cell)
    return cells


def marginal(args, variants, cells):
    """(RSS at the highest --concurrency - RSS at the lowest) / the workers between, per variant."""
    low, high = min(args.concurrency), max(args.concurrency)
    if low == high:
        return {}
    rss = {(c["variant"], c["concurrency"]): c["VmRSS"] for c in cells}
    return {v: (rss[(v, high)] - rss[(v, low)]) / (high - low) for v in variants}


def targets(args, cells, extra):
    cell = {(c["variant"], c["concurrency"]): c for c in cells}
    rows = []
    for variant, what in GUARDED.items():
        for concurrency in args.concurrency:
            name = f"RSS per worker, bearer-guard {what}, --concurrency {concurrency}"
            guard, floor = cell.get((variant, concurrency)), cell.get(("trivial_wasm", concurrency))
            if not guard or not floor or "per_worker" not in guard:
                rows.append(base.target_row(name, "memory", None, "not run", "-", "<= trivial wasm + 2 MB",
                                            "not run" if not args.smoke else "smoke"))
                continue
            goal = floor["per_worker"] + MARGIN_BYTES
            met = guard["per_worker"] <= goal if not args.smoke else "smoke"
            rows.append(base.target_row(
                name, "memory", round(guard["per_worker"]), f"{guard['per_worker'] / MB:.1f} MB",
                f"{guard['per_worker_min'] / MB:.1f}-{guard['per_worker_max'] / MB:.1f} MB",
                f"<= {goal / MB:.1f} MB (trivial wasm {floor['per_worker'] / MB:.1f} + 2)", met,
                goal_bytes=round(goal)))
    # The same target read per VM: what one more worker adds. Per worker above divides the
    # one-off costs (the module's compilation, the main thread's VM) by the worker count.
    for variant, what in GUARDED.items():
        name = f"RSS of one more worker (--concurrency {min(args.concurrency)} to {max(args.concurrency)}), bearer-guard {what}"
        if variant not in extra or "trivial_wasm" not in extra:
            continue
        goal = extra["trivial_wasm"] + MARGIN_BYTES
        met = extra[variant] <= goal if not args.smoke else "smoke"
        rows.append(base.target_row(
            name, "memory", round(extra[variant]), f"{extra[variant] / MB:.1f} MB", "-",
            f"<= {goal / MB:.1f} MB (trivial wasm {extra['trivial_wasm'] / MB:.1f} + 2)", met,
            goal_bytes=round(goal)))
    return rows


def write_results(args, variants, samples, elapsed):
    cells = summarize(args, variants, samples)
    extra = marginal(args, variants, cells)
    rows = targets(args, cells, extra)
    version = subprocess.run([str(base.ENVOY), "--version"], capture_output=True,
                             text=True).stdout.strip().split()[-1]
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "envoy": version, "smoke": args.smoke, "starts": args.starts, "concurrency": args.concurrency,
        "requests": args.requests, "settle_seconds": args.settle, "revoked_entries": args.entries,
        "margin_bytes": MARGIN_BYTES, "elapsed_seconds": round(elapsed, 1),
        "variants": {v: VARIANTS[v] for v in variants},
        "cells": cells, "marginal_per_worker": extra, "targets": rows,
        "samples": {f"{v}/c{c}": runs for (v, c), runs in samples.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memory_results.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# bearer-guard memory per worker" + (" (smoke run: not a measurement)" if args.smoke else ""),
        "",
        f"{result['date']}; Envoy {version}; one Envoy per cell, {args.requests} requests (distinct valid "
        f"RS256 tokens, a new connection each), {args.settle:g} s pause, then VmRSS and admin /memory "
        f"(tcmalloc); median of {args.starts} start(s); MB = 10^6 bytes; per worker = (RSS - RSS of no "
        f"filter at the same --concurrency) / concurrency (spread: min-max per start); {elapsed / 60:.1f} min.",
        "",
        "| variant | --concurrency | RSS MB | per worker MB | spread | VmHWM MB | allocated | heap_size "
        "| pageheap_free | pageheap_unmapped | total_thread_cache |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        per = f"{c['per_worker'] / MB:.1f}" if "per_worker" in c else "-"
        spread = (f"{c['per_worker_min'] / MB:.1f}-{c['per_worker_max'] / MB:.1f}" if "per_worker" in c else "-")
        lines.append(f"| {VARIANTS[c['variant']]} | {c['concurrency']} | {c['VmRSS'] / MB:.1f} | {per} | {spread} | "
                     f"{c['VmHWM'] / MB:.1f} | " + " | ".join(f"{c[k] / MB:.1f}" for k in TCMALLOC) + " |")
    if extra:
        low, high = min(args.concurrency), max(args.concurrency)
        lines += ["", f"Marginal RSS per extra worker, (RSS at --concurrency {high} - RSS at {low}) / {high - low}:",
                  "", "| variant | MB per extra worker |", "|---|---:|"]
        lines += [f"| {VARIANTS[v]} | {value / MB:.1f} |" for v, value in extra.items()]
    held = [c for c in cells if "list_held_seconds" in c]
    if held:
        lines += ["", "Envoy start to the list held (median): " + ", ".join(
            f"--concurrency {c['concurrency']} {c['list_held_seconds']:.2f} s" for c in held) + "."]
    lines += ["", *base.targets_lines(rows), ""]
    (args.out / "memory_results.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    base.run_main(main)
