#!/usr/bin/env python3
"""Latency against offered load, one curve per mode: p99 over achieved req/s for each wrk
concurrency of the sweep (benches/load/run.sh). Needs matplotlib (run.sh installs it in
.ci/venv).

    plot.py RESULTS.json PLAN.json OUT.png
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(results_path, plan_path, out_path):
    with open(results_path) as f:
        results = json.load(f)
    with open(plan_path) as f:
        plan = json.load(f)
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    markers = "osD^vP*X"
    for i, t in enumerate(plan["modes"]):
        points = sorted(
            (s["connections"], s["rps"], s["p99_us"] / 1000, s["errors"])
            for s in results["sweep"]
            if s.get("mode") == t["key"] and not s.get("failed")
        )
        if not points:
            continue
        xs = [p[1] for p in points]
        ys = [p[2] for p in points]
        style = {"color": "black", "linestyle": "--"} if t["key"] == "nginx" else {}
        ax.plot(xs, ys, marker=markers[i % len(markers)], label=t["label"], **style)
        for c, x, y, errors in points:
            ax.annotate(f"c{c}" + ("!" if errors else ""), (x, y), textcoords="offset points",
                        xytext=(4, 4), fontsize=7, alpha=0.7)
    p = results["plan"]
    ax.set_yscale("log")
    ax.set_xlabel("achieved throughput (req/s)")
    ax.set_ylabel("p99 latency (ms, log scale)")
    title = (f"Latency against offered load: wrk -t{p['threads']} -c{{{','.join(map(str, p['sweep']))}}}, "
             f"{p['sweep_duration']} s per point")
    if p.get("quick"):
        title += " (quick run)"
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.text(0.99, 0.01, f"{results['machine']['cpus']} CPUs shared by wrk, nginx, upstream and proxy; "
             f"{results['started']}. 'cN' = N connections, '!' = errors at that point.",
             ha="right", fontsize=7, alpha=0.7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(out_path)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.stderr.write(__doc__)
        sys.exit(2)
    main(*sys.argv[1:])
