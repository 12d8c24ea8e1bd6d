#!/usr/bin/env python3
"""`make cost`: instructions per decision of bearer-guard's core, by request path.

Runs `examples/decision_cost.rs` under callgrind twice per path (N and 2N decisions) and
divides the difference by N, so start-up (configuration, key import, building the requests)
cancels out. The host's signature check answers at once there: what is counted is the
filter's own work. Counts do not move with machine load, so one change's before/after is
exact (bench/run.py measures the same paths in Envoy, with its noise).

Writes cost_results.md / cost_results.json to --out.
"""

import argparse
import json
import pathlib
import re
import subprocess
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "target" / "release" / "examples" / "decision_cost"

# name -> (token file, cache size, host answer, what it is); "unreported": the decision log has
# no room for the denial's line (its rate limit is used up: a flood of bad tokens)
PATHS = {
    "hit": ("rs256-repeat.txt", 1000, "valid", "cache hit (one RS256 token, repeated)"),
    "miss_cached": ("rs256-distinct.txt", 1000, "valid", "cache miss, then cached (distinct RS256)"),
    "miss_no_cache": ("rs256-distinct.txt", 0, "valid", "no cache (distinct RS256)"),
    "miss_no_cache_es256": ("es256-distinct.txt", 0, "valid", "no cache (distinct ES256)"),
    "bad_signature": ("rs256-invalid.txt", 0, "invalid", "bad signature (distinct RS256)"),
    "expired": ("rs256-expired.txt", 0, "valid", "expired (distinct RS256, signature valid)"),
    "bad_signature_unreported": ("rs256-invalid.txt", 0, "invalid/unreported",
                                 "bad signature, its log line dropped by the rate limit"),
    "expired_unreported": ("rs256-expired.txt", 0, "valid/unreported",
                           "expired, its log line dropped by the rate limit"),
}


def instructions(pools, tokens, cache, answer, decisions):
    answer, _, unreported = answer.partition("/")
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "callgrind.out"
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", str(EXAMPLE),
             "--pools", str(pools), "--tokens", tokens, "--cache", str(cache),
             "--answer", answer, "--decisions", str(decisions)] + (["--unreported"] if unreported else []),
            capture_output=True, text=True, timeout=600, check=True)
        refs = re.search(r"refs:\s+([\d,]+)", run.stderr)
        if not refs:
            raise RuntimeError(f"no instruction count from callgrind:\n{run.stderr[-2000:]}")
        return int(refs.group(1).replace(",", "")), run.stdout.strip()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pools", type=pathlib.Path, required=True)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--decisions", type=int, default=5000)
    args = parser.parse_args()
    n = args.decisions
    args.out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name, (tokens, cache, answer, what) in PATHS.items():
        if not (args.pools / tokens).exists():
            print(f"{name}: {tokens} not in {args.pools}, skipped")
            continue
        once, said = instructions(args.pools, tokens, cache, answer, n)
        twice, _ = instructions(args.pools, tokens, cache, answer, 2 * n)
        per = round((twice - once) / n)
        rows[name] = {"what": what, "instructions_per_decision": per, "outcome": said}
        print(f"{what:48} {per:8,} instructions per decision ({said})", flush=True)
    lines = ["| path | instructions per decision |", "|---|---:|"]
    lines += [f"| {r['what']} | {r['instructions_per_decision']:,} |" for r in rows.values()]
    (args.out / "cost_results.md").write_text("\n".join(lines) + "\n")
    (args.out / "cost_results.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
