#!/usr/bin/env python3
"""Measurement and report of the load harness (benches/load/run.sh starts the processes).

    drive.py measure PLAN.json RESULTS.json   # drives wrk / h2load, reads /proc, writes raw results
    drive.py report  PLAN.json RESULTS.json OUT_DIR AUDIT_VERIFY.txt
                                              # the table (stdout), results.md and results.json
    drive.py publish RESULTS.md FILE...       # copies the tables between the
                                              # <!-- load-results:begin/end --> markers of FILEs

Python standard library only. Tokens and other credentials are read from the work directory
and passed to wrk / h2load; none is printed.
"""

import json
import math
import os
import re
import statistics
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ /proc

def descendants(pid):
    """pid and every process below it (nginx: master and workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except FileNotFoundError:
            pass
    return out


def cpu_ticks(pid):
    """utime + stime of pid and its descendants, in clock ticks (all threads included)."""
    total = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        # After "pid (comm)": field 3 is state, so utime (14) and stime (15) are at 11 and 12.
        total += int(fields[11]) + int(fields[12])
    return total


def peak_rss_kib(pid):
    """VmHWM (peak resident set) summed over pid and its descendants, in KiB."""
    total = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            continue
    return total


def alive(pid):
    return os.path.exists(f"/proc/{pid}")


# ------------------------------------------------------------------ tools

def headers(plan, target):
    out = []
    for h in target.get("headers", []):
        with open(os.path.join(plan["work"], h["file"])) as f:
            out.append(f"{h['name']}: {h.get('prefix', '')}{f.read().strip()}")
    return out


def mint_proofs(plan, target, count, files):
    d = target["dpop"]
    subprocess.run(
        [plan["mint"], "proofs", plan["work"], str(count), str(files), d["method"], d["htu"]],
        check=True, stdout=subprocess.DEVNULL)
    return os.path.join(plan["work"], "proofs")


def drop_proofs(plan, files):
    for i in range(files):
        try:
            os.remove(os.path.join(plan["work"], f"proofs-{i}.txt"))
        except FileNotFoundError:
            pass


def run_wrk(plan, target, connections, duration, state):
    threads = max(1, min(plan["threads"], connections))
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "5s",
            "-s", plan["wrk_script"]]
    for h in headers(plan, target):
        args += ["-H", h]
    args.append(target["url"])
    dpop = "dpop" in target
    if dpop:
        # Every proof is used once: mint what the fastest DPoP rate seen so far (or the cap,
        # before any was seen) needs for this duration, with a margin.
        rate = state.get("dpop_best_rps") or plan["dpop_rate_cap"]
        count = int(math.ceil(rate * 1.5 * duration)) + 1000
        args += ["--", mint_proofs(plan, target, count, threads)]
    pid = target["pid"]
    before = cpu_ticks(pid)
    t0 = time.monotonic()
    proc = subprocess.run(args, capture_output=True, text=True)
    wall = time.monotonic() - t0
    after = cpu_ticks(pid)
    if dpop:
        drop_proofs(plan, threads)
    m = re.search(r"^WRK_JSON (\{.*\})$", proc.stdout, re.M)
    if proc.returncode != 0 or not m:
        sys.stderr.write(f"wrk failed for {target['key']}: {proc.stderr.strip()[:500]}\n")
        return {"failed": True}
    r = json.loads(m.group(1))
    secs = r["duration_us"] / 1e6
    reqs = r["requests"]
    out = {
        "connections": connections, "threads": threads, "duration_s": round(secs, 3),
        "requests": reqs, "rps": reqs / secs if secs else 0.0,
        "p50_us": r["p50"], "p75_us": r["p75"], "p90_us": r["p90"], "p99_us": r["p99"],
        "p999_us": r["p999"], "max_us": r["max"], "mean_us": r["mean"],
        "errors": r["status_errors"] + r["socket_errors"],
        "status_errors": r["status_errors"], "socket_errors": r["socket_errors"],
        "proofs_exhausted": r["proofs_exhausted"],
        "cpu_us_per_req": (after - before) / CLK_TCK * 1e6 / reqs if reqs else None,
        "wall_s": round(wall, 3),
    }
    if dpop and out["errors"] == 0:
        state["dpop_best_rps"] = max(state.get("dpop_best_rps", 0), out["rps"])
    return out


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, int(math.ceil(p / 100 * len(sorted_values))) - 1))
    return sorted_values[k]


def run_h2load(plan, target, duration):
    h2 = plan["h2"]
    log = os.path.join(plan["work"], "h2load.log")
    args = ["h2load", "-t1", f"-c{h2['clients']}", f"-m{h2['streams']}", "-D", str(duration),
            "--log-file", log]
    for h in headers(plan, target):
        args += ["-H", h]
    args.append(target["url"])
    pid = target["pid"]
    before = cpu_ticks(pid)
    proc = subprocess.run(args, capture_output=True, text=True)
    after = cpu_ticks(pid)
    text = proc.stdout
    m_done = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                       r"(\d+) failed, (\d+) errored, (\d+) timeout", text)
    m_status = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    m_rate = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", text)
    proto = re.search(r"Application protocol: (\S+)", text)
    if proc.returncode != 0 or not (m_done and m_status and m_rate):
        sys.stderr.write(f"h2load failed for {target['key']}: {(proc.stderr or text).strip()[:500]}\n")
        return {"failed": True}
    lat = []
    with open(log) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[1].startswith("2"):
                lat.append(int(parts[2]))
    os.remove(log)
    lat.sort()
    done = int(m_done.group(3))
    ok2xx = int(m_status.group(1))
    return {
        "clients": h2["clients"], "streams": h2["streams"], "protocol": proto.group(1) if proto else "?",
        "requests": done, "rps": float(m_rate.group(3)),
        "p50_us": percentile(lat, 50), "p99_us": percentile(lat, 99), "p999_us": percentile(lat, 99.9),
        "errors": done - ok2xx + int(m_done.group(5)) + int(m_done.group(6)) + int(m_done.group(7)),
        "cpu_us_per_req": (after - before) / CLK_TCK * 1e6 / done if done else None,
    }


# ------------------------------------------------------------------ measure

def measure(plan_path, results_path):
    with open(plan_path) as f:
        plan = json.load(f)
    modes = plan["modes"]
    state = {}
    results = {"plan": {k: plan[k] for k in ("duration", "rounds", "threads", "connections",
                                             "sweep", "sweep_duration", "h2", "quick")},
               "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": machine(), "rounds": [], "h2": [], "sweep": [], "rss_kib": {}}

    def log(msg):
        print(f"[load] {msg}", flush=True)

    # Warm-up: token, consent and connection caches filled, allocator and page cache settled.
    for t in modes:
        run_wrk(plan, t, plan["connections"], plan["warmup"], state)
    for r in range(plan["rounds"]):
        order = modes if r % 2 == 0 else list(reversed(modes))
        for t in order:
            res = run_wrk(plan, t, plan["connections"], plan["duration"], state)
            res.update(round=r + 1, mode=t["key"])
            results["rounds"].append(res)
            log(f"round {r + 1} {t['key']:<12} {fmt_line(res)}")
    for t in modes + plan["h2_targets"]:
        results["rss_kib"][t["key"]] = peak_rss_kib(t["pid"])

    for t in plan["h2_targets"]:
        res = run_h2load(plan, t, plan["h2"]["duration"])
        res.update(mode=t["key"])
        results["h2"].append(res)
        log(f"h2 {t['key']:<16} {fmt_line(res)}")

    for i, c in enumerate(plan["sweep"]):
        order = modes if i % 2 == 0 else list(reversed(modes))
        for t in order:
            res = run_wrk(plan, t, c, plan["sweep_duration"], state)
            res.update(mode=t["key"])
            results["sweep"].append(res)
            log(f"sweep c={c:<3} {t['key']:<12} {fmt_line(res)}")

    results["alive_after"] = {t["key"]: alive(t["pid"]) for t in modes + plan["h2_targets"]}
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with open(results_path, "w") as f:
        json.dump(results, f, indent=1)


def fmt_line(res):
    if res.get("failed"):
        return "FAILED"
    cpu = res.get("cpu_us_per_req")
    return (f"{res['rps']:>9.0f} req/s  p50 {res['p50_us']} µs  p99 {res['p99_us']} µs  "
            f"cpu {cpu:.1f} µs/req  errors {res['errors']}" if cpu is not None else "no requests")


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()[0]
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "kernel": os.uname().release,
            "loadavg_1m_at_start": round(load, 2)}


# ------------------------------------------------------------------ report

def mean(values):
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def summarize(plan, results):
    """Per mode: the mean over rounds of each measure, and the ratios to nginx."""
    rows = []
    for t in plan["modes"]:
        rs = [r for r in results["rounds"] if r.get("mode") == t["key"] and not r.get("failed")]
        failed = sum(1 for r in results["rounds"] if r.get("mode") == t["key"] and r.get("failed"))
        row = {"mode": t["key"], "label": t["label"], "rounds": len(rs), "failed_runs": failed}
        for k in ("rps", "p50_us", "p99_us", "p999_us", "cpu_us_per_req"):
            row[k] = mean([r[k] for r in rs])
        row["rps_by_round"] = [round(r["rps"]) for r in rs]
        row["requests"] = sum(r["requests"] for r in rs)
        row["errors"] = sum(r["errors"] for r in rs)
        row["proofs_exhausted"] = sum(r["proofs_exhausted"] for r in rs)
        row["peak_rss_mib"] = results["rss_kib"].get(t["key"], 0) / 1024
        rows.append(row)
    base = next((r for r in rows if r["mode"] == "nginx"), None)
    for row in rows:
        ok = base and base["rps"] and row["rps"] is not None
        row["rps_ratio"] = row["rps"] / base["rps"] if ok else None
        row["cpu_ratio"] = (row["cpu_us_per_req"] / base["cpu_us_per_req"]
                            if ok and base["cpu_us_per_req"] else None)
        row["p99_minus_nginx_us"] = row["p99_us"] - base["p99_us"] if ok else None
    return rows


def n(v, digits=0):
    if v is None:
        return "—"
    return f"{v:,.{digits}f}"


def flag(row):
    notes = []
    if row.get("failed_runs"):
        notes.append(f"{row['failed_runs']} run(s) failed")
    if row.get("errors"):
        notes.append(f"**{row['errors']:,} errors**")
    if row.get("proofs_exhausted"):
        notes.append(f"{row['proofs_exhausted']:,} requests without a proof")
    return "; ".join(notes) if notes else "0"


def tables(plan, results, rows, audit_lines):
    p = results["plan"]
    mach = results["machine"]
    out = []
    out.append(f"wrk -t{p['threads']} -c{p['connections']} -d{p['duration']}s, {p['rounds']} rounds "
               f"in alternating order; means over the rounds. {mach['cpus']} CPUs ({mach['cpu_model']}), "
               f"load average {mach['loadavg_1m_at_start']} at start; wrk, nginx, the upstream and "
               f"the proxy share them. {results['started']}"
               + (" — **quick run: short durations, for development only**" if p["quick"] else ""))
    out.append("")
    out.append("| mode | req/s | × nginx | p50 µs | p99 µs | p99.9 µs | p99 − nginx µs | proxy CPU µs/req "
               "| CPU × nginx | peak RSS MiB | errors |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        out.append(f"| {r['label']} | {n(r['rps'])} | {n(r['rps_ratio'], 2)} | {n(r['p50_us'])} "
                   f"| {n(r['p99_us'])} | {n(r['p999_us'])} | {n(r['p99_minus_nginx_us'])} "
                   f"| {n(r['cpu_us_per_req'], 1)} | {n(r['cpu_ratio'], 2)} | {n(r['peak_rss_mib'], 1)} "
                   f"| {flag(r)} |")
    out.append("")
    if results["h2"]:
        h2 = p["h2"]
        out.append(f"HTTP/2 from the client: h2load -t1 -c{h2['clients']} -m{h2['streams']} "
                   f"-D {h2['duration']} (so {h2['clients'] * h2['streams']} concurrent streams on "
                   f"{h2['clients']} connections), one run each; the proxies speak HTTP/1.1 to the "
                   f"upstream. Latency percentiles from h2load's per-request log.")
        out.append("")
        out.append("| target | protocol | req/s | × nginx | p50 µs | p99 µs | p99.9 µs | proxy CPU µs/req "
                   "| CPU × nginx | errors |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
        labels = {t["key"]: t for t in plan["h2_targets"]}
        by_key = {r["mode"]: r for r in results["h2"]}
        for r in results["h2"]:
            t = labels[r["mode"]]
            base = by_key.get(t.get("baseline", ""))
            if r.get("failed"):
                out.append(f"| {t['label']} | — | — | — | — | — | — | — | — | **failed** |")
                continue
            ok = base and not base.get("failed") and base["rps"]
            ratio = r["rps"] / base["rps"] if ok else None
            cpu_ratio = (r["cpu_us_per_req"] / base["cpu_us_per_req"]
                         if ok and base["cpu_us_per_req"] and r["cpu_us_per_req"] is not None else None)
            errors = f"**{r['errors']:,}**" if r["errors"] else "0"
            out.append(f"| {t['label']} | {r['protocol']} | {n(r['rps'])} | {n(ratio, 2)} | {n(r['p50_us'])} "
                       f"| {n(r['p99_us'])} | {n(r['p999_us'])} | {n(r['cpu_us_per_req'], 1)} "
                       f"| {n(cpu_ratio, 2)} | {errors} |")
        out.append("")
    if results["sweep"]:
        out.append(f"Latency against offered load (wrk -c in {p['sweep']}, {p['sweep_duration']} s each; "
                   f"p99 µs @ req/s): see latency.png.")
        out.append("")
        conc = p["sweep"]
        out.append("| mode | " + " | ".join(f"c={c}" for c in conc) + " |")
        out.append("|---|" + "---:|" * len(conc))
        for t in plan["modes"]:
            cells = []
            for c in conc:
                s = next((x for x in results["sweep"]
                          if x.get("mode") == t["key"] and x.get("connections") == c), None)
                if not s or s.get("failed"):
                    cells.append("failed")
                else:
                    e = f" ({s['errors']:,} errors)" if s["errors"] else ""
                    cells.append(f"{n(s['p99_us'])} @ {n(s['rps'])}{e}")
            out.append(f"| {t['label']} | " + " | ".join(cells) + " |")
        out.append("")
    out.append("`fapi-guard audit verify` on each mode's audit file after the run:")
    out.append("")
    out.append("```")
    out.extend(audit_lines)
    out.append("```")
    return "\n".join(out) + "\n"


def report(plan_path, results_path, out_dir, audit_path):
    with open(plan_path) as f:
        plan = json.load(f)
    with open(results_path) as f:
        results = json.load(f)
    with open(audit_path) as f:
        audit_lines = [line.rstrip("\n") for line in f if line.strip()]
    rows = summarize(plan, results)
    results["summary"] = rows
    results["audit_verify"] = audit_lines
    md = tables(plan, results, rows, audit_lines)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write("# Load harness results\n\n" + md +
                "\nMade by `benches/load/run.sh`; how to read it: docs/performance.md.\n")
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(md)
    bad = [r["mode"] for r in rows if r["errors"] or r["failed_runs"] or r["proofs_exhausted"]]
    bad += [r["mode"] for r in results["h2"] if r.get("failed") or r.get("errors")]
    if bad:
        print(f"[load] modes with errors (flagged in the table): {', '.join(bad)}")
        return 1
    return 0


BEGIN = "<!-- load-results:begin -->"
END = "<!-- load-results:end -->"


def publish(results_md, files):
    """The tables of results.md (its title and closing line left out) between the markers."""
    with open(results_md) as f:
        lines = f.read().splitlines()
    body = [line for line in lines[1:] if not line.startswith("Made by ")]
    while body and not body[0].strip():
        body.pop(0)
    while body and not body[-1].strip():
        body.pop()
    block = BEGIN + "\n" + "\n".join(body) + "\n" + END
    for path in files:
        with open(path) as f:
            text = f.read()
        start, end = text.find(BEGIN), text.find(END)
        if start < 0 or end < start:
            sys.stderr.write(f"{path}: no {BEGIN} ... {END} markers\n")
            return 1
        with open(path, "w") as f:
            f.write(text[:start] + block + text[end + len(END):])
    return 0


def main(argv):
    if len(argv) == 4 and argv[1] == "measure":
        measure(argv[2], argv[3])
        return 0
    if len(argv) == 6 and argv[1] == "report":
        return report(argv[2], argv[3], argv[4], argv[5])
    if len(argv) >= 4 and argv[1] == "publish":
        return publish(argv[2], argv[3:])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
