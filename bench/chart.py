#!/usr/bin/env python3
"""Draws the benchmark results as PNG charts (matplotlib, Agg backend).

    bench/results.json            (bench/run.py)        -> bench/results.png
    bench/revocation_results.json (bench/revocation.py) -> bench/revocation.png
    bench/etcd_results.json       (bench/etcd.py)       -> bench/etcd.png
    bench/memory_results.json     (bench/memory.py)     -> bench/memory.png

A missing input is skipped with a message. Needs matplotlib (`pip install matplotlib`).

    python bench/chart.py [--results bench/results.json]
                          [--revocation bench/revocation_results.json]
                          [--etcd bench/etcd_results.json]
                          [--memory bench/memory_results.json] [--out bench]
"""

import argparse
import json
import pathlib
import re
import statistics
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

BENCH = pathlib.Path(__file__).resolve().parent
MACHINE = "2-core machine"
DPI = 100

# Variants drawn in results.png: key -> (legend label, colour).
VARIANTS = {
    "jwt_authn_cache": ("native jwt_authn, cache", "#1f4e79"),
    "jwt_authn_nocache": ("native jwt_authn, no cache", "#8fb4dc"),
    "bearer_guard_cache": ("bearer-guard, cache", "#c55a11"),
    "bearer_guard_nocache": ("bearer-guard, no cache", "#f4b183"),
}
# bearer-guard variant -> the jwt_authn variant its ratio is taken against.
RATIO_OF = {"bearer_guard_cache": "jwt_authn_cache", "bearer_guard_nocache": "jwt_authn_nocache"}
# Variants in results.json that are not drawn; listed in a footnote instead.
OTHERS = {
    "no_filter": "Envoy, no filter",
    "trivial_wasm": "trivial wasm filter",
    "host_verify_floor": "host-crypto floor (wasm: split, verify_signature, no claims)",
    "host_verify_claims": "host-crypto floor + claims (exp, nbf, iss, aud)",
    "bearer_guard_wasm_crypto": "bearer-guard, crypto in wasm",
    "bearer_guard_filter_state": "bearer-guard, filter state on",
    "bearer_guard_watching": "bearer-guard, misuse detection on",
    "bearer_guard_decisions": "bearer-guard, log.decisions all",
}
MIX_KINDS = {"repeat": "one token,\nrepeated", "distinct": "10,000 distinct\ntokens",
             "invalid": "10,000 bad\nsignatures", "expired": "10,000 expired\ntokens"}
SCENARIOS = {"a": "(a) unchanged\n(every poll a 304)", "b": "(b) +1 jti / 0.5 s\n(deltas)",
             "c": "(c) +1 jti / 0.5 s\n(full re-downloads)"}


def envoy_version(build):
    """'9e55.../1.40.0/Clean/RELEASE/BoringSSL' -> '1.40.0'."""
    match = re.search(r"\b(\d+\.\d+\.\d+)\b", build or "")
    return match.group(1) if match else (build or "?")


def subtitle(data, extra=""):
    smoke = "  (SMOKE RUN: not a measurement)" if data.get("smoke") else ""
    return (f"{data['date'][:10]}, Envoy {envoy_version(data.get('envoy'))}{extra} | "
            f"{MACHINE}, wrk {data.get('wrk', '-t1 -c16')}{smoke}")


def kilo(value):
    return f"{value / 1000:.1f}k"


def mix_label(mix):
    kind, _, alg = mix.partition("_")
    return f"{alg.upper()}\n{MIX_KINDS.get(kind, kind)}"


def paired_ratio(row, base):
    """Median of the per-round ratios when both rows have them (bench/run.py's paired rounds),
    else the ratio of the medians (older results.json)."""
    a, b = row.get("rps_rounds"), base.get("rps_rounds")
    if a and b and len(a) == len(b):
        return statistics.median(x / y for x, y in zip(a, b))
    return row["rps"] / base["rps"]


def rounds_text(data):
    return f"median of {data.get('rounds', '?')} rounds"


def throughput_panel_results(ax, data):
    results = data["results"]
    mixes = list(dict.fromkeys(key.split("/")[0] for key in results))
    mixes = [m for m in mixes if any(f"{m}/{v}" in results for v in VARIANTS)]
    width = 0.84 / len(VARIANTS)
    ratio_y = {}  # mix -> height of the last ratio label drawn
    top = max(results[f"{m}/{v}"].get("rps_max", results[f"{m}/{v}"]["rps"])
              for m in mixes for v in VARIANTS if f"{m}/{v}" in results)
    for i, (variant, (_, colour)) in enumerate(VARIANTS.items()):
        for x, mix in enumerate(mixes):
            pos = x + (i - (len(VARIANTS) - 1) / 2) * width
            row = results.get(f"{mix}/{variant}")
            if row is None:
                ax.text(pos, top * 0.01, "not run", rotation=90, ha="center", va="bottom",
                        fontsize=8, color="grey")
                continue
            ax.bar(pos, row["rps"], width, color=colour, edgecolor="white")
            high = row["rps"]
            if "rps_min" in row:  # spread over the rounds
                ax.plot([pos, pos], [row["rps_min"], row["rps_max"]], color="black", linewidth=0.8)
                high = row["rps_max"]
            inside = row["rps"] > top * 0.15
            ax.text(pos, row["rps"] * 0.5 if inside else row["rps"] + top * 0.01,
                    kilo(row["rps"]), rotation=90, ha="center", va="center" if inside else "bottom",
                    fontsize=8, color="white" if inside and i % 2 == 0 else "black")
            base = results.get(f"{mix}/{RATIO_OF.get(variant)}")
            if base:
                # Two ratio labels side by side at about the same height would touch: lift one.
                above = high + top * (0.01 if inside else 0.08)
                if abs(above - ratio_y.get(mix, -top)) < top * 0.04:
                    above = ratio_y[mix] + top * 0.04
                ratio_y[mix] = above
                ax.text(pos, above, f"×{paired_ratio(row, base):.2f}",
                        ha="center", va="bottom", fontsize=8, fontweight="bold")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for _, c in VARIANTS.values()]
    ax.legend(handles, [label for label, _ in VARIANTS.values()], loc="upper right",
              ncol=2, fontsize=9, frameon=False)
    ax.set_xticks(range(len(mixes)), [mix_label(m) for m in mixes], fontsize=9)
    spread = "; line: min-max" if any("rps_min" in row for row in results.values()) else ""
    ax.set_ylabel(f"requests/s ({rounds_text(data)}{spread})")
    ax.set_ylim(0, top * 1.25)
    ax.yaxis.set_major_formatter(lambda v, _: kilo(v) if v else "0")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)


def targets_panel(ax, data):
    """Each ratio target: median of the per-round ratios (dot), their min-max (line), the
    minimum (red tick)."""
    rows = [r for r in data.get("targets", []) if r.get("per_round")]
    for y, row in enumerate(rows):
        values = row["per_round"]
        colour = {True: "#2e7d32", False: "#c62828"}.get(row["met"], "dimgrey")
        ax.plot([min(values), max(values)], [y, y], color=colour, linewidth=2, alpha=0.5)
        ax.plot(values, [y] * len(values), "|", color=colour, markersize=7, alpha=0.7)
        ax.plot(row["measured"], y, "o", color=colour, markersize=7)
        ax.text(max(values) + 0.02, y, f"{row['measured']:.2f}", va="center", fontsize=8)
        minimum = re.search(r">=\s*([\d.]+)", row["goal"])
        if minimum:
            ax.plot(float(minimum.group(1)), y, marker="|", color="firebrick", markersize=16,
                    markeredgewidth=2)
        ax.text(0.005, y - 0.22, row["target"], transform=ax.get_yaxis_transform(), fontsize=8,
                va="bottom")
    ax.set_yticks([])
    ax.set_ylim(len(rows) - 0.5, -0.9)
    ax.axvline(1.0, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("ratio per round (dot: median, ticks: rounds; red bar: target minimum; "
                  "green met, red not met, grey reported only)", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)


def results_chart(data, out):
    ratio_rows = sum(1 for r in data.get("targets", []) if r.get("per_round"))
    if ratio_rows:
        fig, (ax, bottom) = plt.subplots(2, 1, figsize=(11, 6.4 + 0.5 * ratio_rows), dpi=DPI,
                                         gridspec_kw={"height_ratios": [5.4, 0.5 * ratio_rows]})
        targets_panel(bottom, data)
    else:  # results.json from before the paired rounds: no per-round ratios
        fig, ax = plt.subplots(figsize=(11, 6.4), dpi=DPI)
    throughput_panel_results(ax, data)
    fig.suptitle("bearer-guard vs native jwt_authn: requests/s per token mix", fontsize=13,
                 fontweight="bold")
    ax.set_title(subtitle(data, f", --concurrency {data.get('concurrency', 1)}"), fontsize=10)
    notes = ["×n above a bearer-guard bar: bearer-guard / native jwt_authn, same cache setting "
             "(median of per-round ratios when the rounds are paired)."]
    results = data["results"]
    others = [f"{OTHERS[variant]} {row['rps']:,.0f} ({mix})" for mix, variant, row in
              ((*key.split("/"), row) for key, row in results.items()) if variant in OTHERS]
    if others:
        notes.append("Not drawn, req/s: " + "; ".join(others) + ".")
    notes = [textwrap.fill(note, 170, break_on_hyphens=False) for note in notes]
    fig.text(0.01, 0.01, "\n".join(notes), fontsize=8, color="dimgrey", va="bottom")
    # The notes' height: about 0.14 inch a line at 8 pt, and a margin.
    lines = sum(note.count("\n") + 1 for note in notes)
    fig.tight_layout(rect=(0, (0.2 + 0.14 * lines) / fig.get_figheight(), 1, 1))
    fig.savefig(out)
    plt.close(fig)


MEMORY_COLOURS = {"no_filter": "#bbbbbb", "trivial_wasm": "#7f7f7f", "jwt_authn": "#1f4e79",
                  "bearer_guard": "#c55a11", "bearer_guard_1m": "#f4b183"}


def memory_chart(data, out):
    """Left: RSS per worker above no filter per --concurrency, with the targets. Right: where
    the RSS is, at the lowest --concurrency (tcmalloc's view)."""
    cells = data["cells"]
    variants = [v for v in data["variants"] if v != "no_filter"]
    concurrencies = data["concurrency"]
    cell = {(c["variant"], c["concurrency"]): c for c in cells}
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5), dpi=DPI)
    width = 0.84 / max(4, len(variants))
    for i, variant in enumerate(variants):
        for x, concurrency in enumerate(concurrencies):
            c = cell.get((variant, concurrency))
            if not c or "per_worker" not in c:
                continue
            pos = x + (i - (len(variants) - 1) / 2) * width
            value = c["per_worker"] / 1e6
            left.bar(pos, value, width, color=MEMORY_COLOURS.get(variant, "grey"),
                     label=data["variants"][variant] if x == 0 else None)
            left.plot([pos, pos], [c["per_worker_min"] / 1e6, c["per_worker_max"] / 1e6],
                      color="black", linewidth=0.8)
            left.text(pos, value + 1, f"{value:.1f}", ha="center", va="bottom", fontsize=7)
    for x, concurrency in enumerate(concurrencies):
        goal = next((r.get("goal_bytes") for r in data.get("targets", [])
                     if r.get("goal_bytes") and r["target"].endswith(f"--concurrency {concurrency}")), None)
        if goal:
            left.plot([x - 0.45, x + 0.45], [goal / 1e6] * 2, color="firebrick", linestyle="--",
                      linewidth=1, label="target (trivial wasm + 2 MB)" if x == 0 else None)
    left.set_xticks(range(len(concurrencies)), [f"--concurrency {c}" for c in concurrencies])
    left.legend(fontsize=8, frameon=False, loc="upper right")
    style(left, "RSS per worker above Envoy without filters", "MB (10^6 bytes; line: min-max of starts)")
    low = min(concurrencies)
    keys = [("VmRSS", "RSS"), ("heap_size", "tcmalloc heap"), ("allocated", "allocated"),
            ("pageheap_free", "free, kept"), ("total_thread_cache", "thread caches"),
            ("pageheap_unmapped", "unmapped")]
    names = list(data["variants"])
    width = 0.84 / len(keys)
    for i, (key, label) in enumerate(keys):
        values = [cell[(v, low)][key] / 1e6 if (v, low) in cell else 0 for v in names]
        positions = [x + (i - (len(keys) - 1) / 2) * width for x in range(len(names))]
        right.bar(positions, values, width, label=label)
    right.set_xticks(range(len(names)), [textwrap.fill(data["variants"][v], 18) for v in names], fontsize=7)
    right.legend(fontsize=8, frameon=False, ncol=3, loc="upper left")
    style(right, f"Where the memory is, --concurrency {low} (admin /memory)", "MB")
    right.set_ylim(0, max(c["VmRSS"] for c in cells) / 1e6 * 1.3)
    fig.suptitle("bearer-guard memory per worker", fontsize=13, fontweight="bold")
    smoke = "  (SMOKE RUN: not a measurement)" if data.get("smoke") else ""
    fig.text(0.5, 0.905, f"{data['date'][:10]}, Envoy {envoy_version(data.get('envoy'))} | {MACHINE}, "
             f"one Envoy per cell, {data.get('requests', '?')} requests, median of "
             f"{data.get('starts', '?')} starts{smoke}", ha="center", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    fig.savefig(out)
    plt.close(fig)


def target_number(data, prefix):
    """The number in the target column of the first measure starting with prefix, if any."""
    for row in data.get("targets", []):
        if row["measure"].startswith(prefix):
            match = re.search(r"\d+(\.\d+)?", row["target"])
            return float(match.group()) if match else None
    return None


def style(ax, title, ylabel):
    ax.set_title(title, fontsize=11, loc="left")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)


def target_line(ax, value, label):
    ax.axhline(value, color="firebrick", linestyle="--", linewidth=1)
    ax.annotate(label, (1, value), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                fontsize=8, color="firebrick")


def bars_with_rounds(ax, labels, medians, rounds, colour):
    """One bar per median, each round as a dot on it."""
    ax.bar(range(len(labels)), medians, 0.6, color=colour)
    for x, values in enumerate(rounds):
        ax.plot([x] * len(values), values, "o", color="black", markersize=3, alpha=0.6)
    ax.set_xticks(range(len(labels)), labels, fontsize=9)


def throughput_panel(ax, data):
    tp, runs = data["throughput"], data.get("throughput_runs", {})
    kinds = ["empty", "full"]
    medians = [tp[k]["rps"] for k in kinds]
    bars_with_rounds(ax, ["empty list", f"{data['entries']:,} entries"], medians,
                     [[r["rps"] for r in runs.get(k, [])] for k in kinds], "#8fb4dc")
    for x, value in enumerate(medians):
        ax.text(x, value / 2, f"{value:,.0f}", ha="center", fontsize=9)
    target = target_number(data, "throughput")
    note = f" (target ≥ {target:g})" if target else ""
    ax.text(0.5, 1.0, f"ratio {medians[1] / medians[0]:.3f}{note}", transform=ax.transAxes,
            ha="center", va="top", fontsize=9)
    ax.set_ylim(0, max(max(r["rps"] for r in runs.get(k, [tp[k]])) for k in kinds) * 1.2)
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:,.0f}")
    style(ax, "Throughput, list held", "requests/s (dots: rounds)")


def latency_panel(ax, data):
    lat, runs = data["latency"], data.get("latency_runs", {})
    keys = sorted(lat)
    medians = [lat[k]["p99_ms"] for k in keys]
    bars_with_rounds(ax, [SCENARIOS.get(k, k) for k in keys], medians,
                     [[r["p99_ms"] for r in runs.get(k, [])] for k in keys], "#f4b183")
    for x, value in enumerate(medians):
        ax.text(x, value / 2, f"{value:.2f} ms", ha="center", fontsize=9)
    target = target_number(data, "p99 during refresh")
    if target and "a" in lat:
        target_line(ax, target * lat["a"]["p99_ms"], f"target: {target:g} × (a)")
    style(ax, "p99 latency while the list refreshes", "p99 ms (dots: rounds)")


def memory_panel(ax, data):
    memory = data["memory"]
    xs = range(len(memory))
    for offset, key, label, colour in ((-0.2, "bytes_per_entry", "RSS", "#1f4e79"),
                                       (0.2, "peak_bytes_per_entry", "peak (VmHWM)", "#8fb4dc")):
        values = [m[key] for m in memory]
        ax.bar([x + offset for x in xs], values, 0.4, color=colour, label=label)
        for x, value in zip(xs, values):
            ax.text(x + offset, value + 1, f"{value:.1f}", ha="center", va="bottom", fontsize=9)
    ax.set_xticks(list(xs), [f"--concurrency {m['concurrency']}" for m in memory], fontsize=9)
    target = target_number(data, "memory")
    if target:
        target_line(ax, target, f"target ≤ {target:g}")
        ax.set_ylim(0, target * 1.15)
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    style(ax, "Memory per revoked entry", "bytes per entry")


def enforcement_panel(ax, data):
    times = data["enforcement_seconds"]
    labels = {"deltas": "deltas", "no_deltas": "server --no-deltas\n(full lists)"}
    for x, (key, values) in enumerate(times.items()):
        ax.plot([x] * len(values), values, "o", color="#c55a11", alpha=0.7)
        median = statistics.median(values)
        ax.plot([x - 0.2, x + 0.2], [median, median], color="black", linewidth=2)
        ax.text(x + 0.22, median, f"median {median:.2f} s\nmax {max(values):.2f} s",
                va="center", fontsize=8)
    ax.set_xticks(range(len(times)), [labels.get(k, k) for k in times], fontsize=9)
    ax.set_xlim(-0.6, len(times) - 0.1)
    target = target_number(data, "revocation POST")
    if target:
        target_line(ax, target, f"target ≤ {target:g} s")
        ax.set_ylim(0, target * 1.15)
    style(ax, "Revocation POST to first 401", "seconds (dots: each POST)")


def revocation_chart(data, out):
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5), dpi=DPI)
    for ax, panel in zip(axes.flat, (throughput_panel, latency_panel, memory_panel,
                                     enforcement_panel)):
        panel(ax, data)
    fig.suptitle(f"bearer-guard revocation list, {data['entries']:,} entries", fontsize=13,
                 fontweight="bold")
    fig.text(0.5, 0.93, subtitle(data, f", list polled every {data.get('refresh_seconds', '?')} s"),
             ha="center", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(out)
    plt.close(fig)


def etcd_propagation_panel(ax, data):
    """Each revocation's put-to-401 time, per setting, on a log scale."""
    bulk = data["bulk"]
    # (label, samples, the key of their times, their distribution as bench/etcd.py summed it up)
    series = [(f"{data['cluster']['members']} member(s),\n2 Envoys x 2", data["propagation"]["samples"],
               "from_put_ms", data["propagation"]["from_put_ms"]),
              ("grpc-proxy,\n1 Envoy x 2", data["grpc_proxy"]["samples"], "from_put_ms",
               data["grpc_proxy"]["from_put_ms"])]
    if "samples" in data.get("leader_kill", {}):
        series.append(("leader killed\n(from the ack)", data["leader_kill"]["samples"], "from_ack_ms",
                       data["leader_kill"]["from_ack_ms"]))
    series.append((f"{bulk['entries']:,}\nheld, 1 x 2", bulk["propagation"]["samples"], "from_put_ms",
                   bulk["propagation"]["from_put_ms"]))
    for x, (_, samples, key, summary) in enumerate(series):
        values = [s[key] for s in samples if s[key] is not None]
        if not values:
            continue
        jitter = [x + (i % 7 - 3) * 0.04 for i in range(len(values))]
        ax.plot(jitter, values, "o", color="#c55a11", alpha=0.5, markersize=3)
        ax.text(x + 0.3, max(values), f"p50 {summary['p50']:.0f}\np99 {summary['p99']:.0f}",
                fontsize=8, va="top")
    ax.set_yscale("log")
    ax.set_xticks(range(len(series)), [item[0] for item in series], fontsize=8)
    ax.set_xlim(-0.5, len(series) - 0.2)
    row = next((r for r in data.get("targets", []) if r["measure"].startswith("propagation")), None)
    match = re.search(r"<=\s*([\d.]+)", row["target"]) if row else None
    if match:
        value = float(match.group(1))
        ax.axhline(value, color="firebrick", linestyle="--", linewidth=1)
        ax.annotate(f"target: p99 ≤ {match.group(1)} ms", (0.01, value), xycoords=("axes fraction", "data"),
                    ha="left", va="bottom", fontsize=8, color="firebrick")
    style(ax, "Revocation put to 401 on every worker", "ms (log scale; dots: revocations)")


def etcd_throughput_panel(ax, data):
    bulk = data["bulk"]
    runs, summary = bulk["throughput"], bulk["throughput_summary"]
    kinds = [k for k in ("none", "list", "empty", "full") if k in summary]
    labels = {"none": "no store", "list": "HTTP list,\nempty", "empty": "etcd,\nempty prefix",
              "full": f"etcd,\n{bulk['entries']:,}"}
    medians = [summary[k]["rps"] for k in kinds]
    bars_with_rounds(ax, [labels[k] for k in kinds], medians,
                     [[r["rps"] for r in runs.get(k, [])] for k in kinds], "#8fb4dc")
    for x, value in enumerate(medians):
        ax.text(x, value / 2, f"{value:,.0f}", ha="center", fontsize=9)
    target = target_number(data, "throughput")
    ratio = summary["full"]["rps"] / summary["none"]["rps"]
    note = f" (target ≥ {target:g})" if target else ""
    ax.text(0.5, 1.0, f"etcd {bulk['entries']:,} / no store: {ratio:.3f}{note}", transform=ax.transAxes,
            ha="center", va="top", fontsize=9)
    ax.set_ylim(0, max(max(r["rps"] for r in runs.get(k, [summary[k]])) for k in kinds) * 1.2)
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:,.0f}")
    style(ax, "Throughput, --concurrency 1", "requests/s (dots: rounds)")


def etcd_chart(data, out):
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), dpi=DPI)
    etcd_propagation_panel(axes[0], data)
    etcd_throughput_panel(axes[1], data)
    fig.suptitle("bearer-guard etcd revocation store", fontsize=13, fontweight="bold")
    fig.text(0.5, 0.9, subtitle(data), ha="center", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    fig.savefig(out)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=pathlib.Path, default=BENCH / "results.json")
    parser.add_argument("--revocation", type=pathlib.Path,
                        default=BENCH / "revocation_results.json")
    parser.add_argument("--etcd", type=pathlib.Path, default=BENCH / "etcd_results.json")
    parser.add_argument("--memory", type=pathlib.Path, default=BENCH / "memory_results.json")
    parser.add_argument("--out", type=pathlib.Path, default=BENCH, help="PNGs go here")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for source, draw, name in ((args.results, results_chart, "results.png"),
                               (args.revocation, revocation_chart, "revocation.png"),
                               (args.etcd, etcd_chart, "etcd.png"),
                               (args.memory, memory_chart, "memory.png")):
        if not source.is_file():
            print(f"{source}: not found, {name} skipped")
            continue
        draw(json.loads(source.read_text()), args.out / name)
        print(f"wrote {args.out / name}")


if __name__ == "__main__":
    try:
        main()
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(f"chart failed: {error!r}", file=sys.stderr)
        sys.exit(1)
