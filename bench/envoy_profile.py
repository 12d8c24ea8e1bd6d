#!/usr/bin/env python3
"""`make envoy-profile`: where a request's time goes in Envoy, by code region, under `perf`.

bench/envoy_cost.py counts instructions; this measures time. Envoy (one process,
`--concurrency 1`, a listener per variant) serves wrk's load while `perf record` samples it on
the software clock (this machine has no hardware counters); each sample is put in the code
region it landed in: Envoy's binary (Envoy, BoringSSL, V8's runtime), V8's generated code (the
wasm modules and the wrappers of their host calls: perf finds no file for it), libc, the
kernel. Dividing by the requests served gives microseconds per request per region, and, with
envoy_cost.py's instructions per region, nanoseconds per instruction: whether a filter's code
is slow per instruction, or whether it makes Envoy's own code slower (by what it evicts from
the caches).

Rounds are rotated and the median of each figure is reported. Samples are the process's CPU
time, not wall time: what another process on the machine does moves the rates, less these.
Writes envoy_profile_results.md / .json to --out.
"""

import argparse
import collections
import datetime
import json
import pathlib
import re
import signal
import statistics
import subprocess
import tempfile
import time

import run as R

FREQUENCY = 4999
SECONDS = 3
# The regions whose paired differences are reported: the kernel too, since every variant
# makes the same system calls per request (3.17-3.19 under `strace -c -f`, by hand: see
# docs/performance.md, the eleventh round) and their time still differs.
PAIRED = ("Envoy's binary", "V8's generated code", "kernel", "total")

# Mix -> the variants compared on it (as run.py names them), the one the others are paired
# with first.
MIXES = {
    "repeat_rs256": ["trivial_wasm", "bearer_guard_cache", "no_filter"],
    "distinct_rs256": ["jwt_authn_nocache", "bearer_guard_nocache", "host_verify_floor", "host_verify_claims"],
}
WASM_VARIANTS = {"trivial_wasm", "bearer_guard_cache", "bearer_guard_nocache", "host_verify_floor",
                 "host_verify_claims"}
REGIONS = {"envoy": "Envoy's binary", "[kernel.kallsyms]": "kernel", "libc.so.6": "libc", "[vdso]": "vdso"}


def region(dso):
    """perf names executable memory that is no file `[JIT] tid N` (older perfs: `perf-PID.map`,
    `//anon`); V8 writes no perf map in Envoy, so that is V8's generated code."""
    if dso.startswith(("[JIT]", "perf-", "//anon")):
        return "V8's generated code"
    return REGIONS.get(dso, "other")


def sampled(pid, data, run):
    """Runs `run()` while perf samples `pid`; perf is stopped by pid, also when `run` fails."""
    data.unlink(missing_ok=True)
    perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", str(FREQUENCY), "-p", str(pid),
                             "-o", str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # perf writes its file's header once it is attached: the load starts after that.
        deadline = time.monotonic() + 10
        while not (data.exists() and data.stat().st_size > 0):
            if perf.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"perf record did not start: {perf.stderr.read()[-2000:]}")
            time.sleep(0.05)
        time.sleep(0.2)
        result = run()
    finally:
        perf.send_signal(signal.SIGINT)
        try:
            _, errors = perf.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            perf.kill()
            _, errors = perf.communicate()
    # perf re-raises the SIGINT it was stopped with once its file is written.
    if perf.returncode not in (0, -signal.SIGINT):
        raise RuntimeError(f"perf record failed ({perf.returncode}): {errors[-2000:]}")
    return result


def samples_by_region(data):
    report = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--sort", "dso", "-F", "sample,dso"],
                            capture_output=True, text=True, check=True).stdout
    counts = collections.Counter()
    for line in report.splitlines():
        found = re.match(r"\s*(\d+)\s+(\S.*)$", line)
        if found and not line.lstrip().startswith("#"):
            counts[region(found.group(2).strip())] += int(found.group(1))
    return counts


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pools", type=pathlib.Path, required=True)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--smoke", action="store_true",
                        help="one round of 1 s per variant (make test: the script works; Envoy's binary and, for "
                             "each wasm filter, V8's code are found)")
    args = parser.parse_args()
    seconds = 1 if args.smoke else SECONDS
    if args.smoke:
        args.rounds = 1
    jwks = json.loads((args.pools / "jwks.json").read_text())
    per = collections.defaultdict(list)
    by_round = []
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        envoy = R.Envoy(work, R.config_for(jwks, {v for vs in MIXES.values() for v in vs}))
        try:
            R.check_answers(envoy.ports, args.pools,
                            [(mix, variant) for mix, variants in MIXES.items() for variant in variants])
            for round_number in range(args.rounds):
                for mix in R.rotated(list(MIXES), round_number):
                    tokens = args.pools / R.MIXES[mix][0]
                    for variant in R.rotated(MIXES[mix], round_number):
                        port = envoy.ports[variant]
                        R.run_wrk(port, tokens, 1)
                        data = work / "perf.data"
                        # cpu-clock samples Envoy's threads only while they run: the samples
                        # are the CPU time Envoy spent on wrk's requests (and on its own
                        # timers, for every variant alike).
                        got = sampled(envoy.process.pid, data, lambda: R.run_wrk(port, tokens, seconds))
                        requests = got["requests"]
                        counts = samples_by_region(data)
                        # Each variant answered every request as the mix expects (wrk counts
                        # what is not 2xx), and perf saw Envoy's own code do the work.
                        wrong = R.answered_otherwise(got, R.MIXES[mix][2])
                        if requests <= 0 or wrong or counts["Envoy's binary"] <= 0:
                            raise RuntimeError(f"{variant} on {mix}: {requests} requests, {wrong} answered "
                                               f"otherwise than {R.MIXES[mix][2]}, samples {dict(counts)}")
                        row = {name: counts[name] / FREQUENCY * 1e6 / requests for name in counts}
                        row["total"] = sum(row.values())
                        row["rps"] = got["rps"]
                        per[(mix, variant)].append(row)
                        by_round.append({"round": round_number + 1, "mix": mix, "variant": variant,
                                         **{k: round(v, 2) for k, v in row.items()}})
                        print(f"round {round_number + 1} {mix:15} {variant:22} "
                              + " ".join(f"{k} {v:.2f}" for k, v in sorted(row.items())), flush=True)
        finally:
            envoy.stop()
    names = ["Envoy's binary", "V8's generated code", "libc", "kernel", "vdso", "other", "total"]
    rows = {f"{mix}/{variant}": {name: round(statistics.median(r.get(name, 0.0) for r in rounds), 2)
                                 for name in names + ["rps"]}
            for (mix, variant), rounds in per.items()}
    # Rounds move together (the machine's load moves every variant of a round), so each
    # variant is also given as its difference from the mix's first variant in the same round.
    for mix, variants in MIXES.items():
        reference = per[(mix, variants[0])]
        for variant in variants:
            rounds = per[(mix, variant)]
            for name in PAIRED:
                differences = [r.get(name, 0.0) - ref.get(name, 0.0) for r, ref in zip(rounds, reference)]
                rows[f"{mix}/{variant}"][f"{name} - {variants[0]}"] = [
                    round(min(differences), 2), round(statistics.median(differences), 2),
                    round(max(differences), 2)]
    # A wasm filter that ran leaves samples in V8's code; one missing means the regions are
    # no longer told apart (perf's naming changed) and every figure would be misread.
    for key, row in rows.items():
        if key.split("/")[1] in WASM_VARIANTS and row["V8's generated code"] <= 0:
            raise RuntimeError(f"no samples in V8's generated code for {key}: {row}")
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "rounds": args.rounds, "seconds": seconds, "frequency_hz": FREQUENCY, "rows": rows,
              "by_round": by_round}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "envoy_profile_results.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"CPU time per request by code region, `perf record -e cpu-clock` ({result['date']}; Envoy 1.40, "
             f"--concurrency 1, wrk 1 thread 16 connections, median of {args.rounds} rotated rounds of "
             f"{seconds} s; microseconds per request):", "",
             "| mix | variant | " + " | ".join(names) + " | requests/s under perf |",
             "|---|---|" + "---:|" * (len(names) + 1)]
    lines += [f"| {key.split('/')[0]} | {R.VARIANTS[key.split('/')[1]]} | "
              + " | ".join(f"{row[name]:.2f}" for name in names) + f" | {row['rps']:,.0f} |"
              for key, row in rows.items()]
    lines += ["", "Paired with the mix's first variant in the same round: the difference per request, "
              "median (min to max over the rounds), microseconds:", "",
              "| mix | variant | against | " + " | ".join(PAIRED) + " |", "|---|---|---|" + "---|" * len(PAIRED)]
    for mix, variants in MIXES.items():
        for variant in variants[1:]:
            row = rows[f"{mix}/{variant}"]
            cells = [f"{m:+.2f} ({lo:+.2f} to {hi:+.2f})"
                     for lo, m, hi in (row[f"{name} - {variants[0]}"]
                                       for name in PAIRED)]
            lines.append(f"| {mix} | {R.VARIANTS[variant]} | {R.VARIANTS[variants[0]]} | " + " | ".join(cells) + " |")
    (args.out / "envoy_profile_results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    R.run_main(main, KeyError)
