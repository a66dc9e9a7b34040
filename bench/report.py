#!/usr/bin/env python3
"""bench/report.py: the arithmetic of bench/run, kept out of the shell.

  report.py parse-wrk        wrk's output on stdin -> "req/s p50_ms p99_ms errors" (n/a when
                             a figure is missing); errors = non-2xx/3xx responses + socket errors
  report.py render DIR CORES the Markdown report from the row files bench/run wrote in DIR

Row files (one row a line, fields separated by "|"):
  throughput  backend|target|server|req/s|p50|p99|errors          (one row per round)
  signin      backend|measurement|req/s|p50|p99|errors            (one row per round)
  soak        backend|seconds|req/s|p50|p99|errors|rss samples (KiB, space-separated)
  memory      backend|server|RSS after start (KiB)|RSS after warm-up (KiB)
  starts      backend|server|kind|milliseconds of each run (space-separated)
  refusals    backend|method route|status|count                   (4xx/5xx in Gatehouse's log)
  skipped     backend|reason
"""

import os
import re
import statistics
import sys

# The targets, checked where a row exists. (backend, target): (least ratio to the bare
# server's req/s, most p99 in ms).
THROUGHPUT_TARGETS = {
    ("sqlite", "items-list"): (0.30, 10.0),
    ("sqlite", "items-create"): (0.07, 20.0),
    ("postgres", "items-create"): (0.035, 30.0),
}
SIGNIN_SHARE = 0.90  # of the hashing limit
HEALTHZ_GROWTH = 2.0  # /healthz p99 under the flood, at most this times the idle p99
IDLE_RSS_MIB = {"sqlite": 30.0}
COLD_START_MS = {"sqlite": 100.0}
# The soak's memory is flat when its last third stays within this of its first third.
SOAK_GROWTH_SHARE, SOAK_GROWTH_FLOOR_MIB = 0.10, 4.0

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def parse_wrk(text):
    def ms(value):
        m = re.match(r"([0-9.]+)([a-z]+)$", value)
        return m and float(m.group(1)) * UNITS.get(m.group(2), float("nan"))

    rps = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    p50 = re.search(r"^\s+50%\s+(\S+)", text, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: (.*)", text)
    errors = int(non2xx.group(1)) if non2xx else 0
    if sock:
        errors += sum(int(n) for n in re.findall(r"\d+", sock.group(1)))
    fields = [
        rps.group(1) if rps else "n/a",
        "%.3f" % ms(p50.group(1)) if p50 and ms(p50.group(1)) else "n/a",
        "%.3f" % ms(p99.group(1)) if p99 and ms(p99.group(1)) else "n/a",
        str(errors),
    ]
    print(" ".join(fields))


def rows(directory, name):
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.rstrip("\n").split("|") for line in f if line.strip()]


def num(v):
    try:
        return float(v)
    except ValueError:
        return None


def median(values):
    nums = [num(v) for v in values]
    return statistics.median(nums) if nums and None not in nums else None


def show(v, fmt="%.3f"):
    return fmt % v if v is not None else "n/a"


def verdict(ok):
    return "n/a" if ok is None else ("met" if ok else "**not met**")


BACKEND_NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL + Redis", "cmd": "BENCH_GATEHOUSE_CMD"}


def render(directory, cores):
    out = []
    checks = []  # (what, backend, figure, target, ok)
    backend_name = lambda b: BACKEND_NAMES.get(b, b)

    # --- throughput ---------------------------------------------------------------------------
    data, order = {}, []
    for backend, target, server, rps, p50, p99, errors in rows(directory, "throughput"):
        key = (backend, target, server)
        if key not in data:
            data[key] = []
            order.append(key)
        data[key].append((rps, p50, p99, int(errors) if errors.isdigit() else 0))
    if order:
        out.append("### Throughput (medians of the rounds; gh/bare = Gatehouse req/s ÷ bare req/s in the same rounds)")
        out.append("")
        out.append("| backend | target | server | req/s | p50 ms | p99 ms | errors | gh/bare | per round |")
        out.append("|---|---|---|---:|---:|---:|---:|---:|---|")
        for backend, target, server in order:
            runs = data[(backend, target, server)]
            rps, p50, p99 = (median([r[i] for r in runs]) for i in range(3))
            errors = sum(r[3] for r in runs)
            ratio, rounds = "", ""
            bare = data.get((backend, target, "bare"))
            if server != "bare" and bare:
                bare_rps = median([r[0] for r in bare])
                r = rps / bare_rps if rps and bare_rps else None
                ratio = show(r)
                rounds = " ".join(
                    show(num(g[0]) / num(b[0])) if num(g[0]) and num(b[0]) else "n/a"
                    for g, b in zip(runs, bare)
                )
                goal = THROUGHPUT_TARGETS.get((backend, target))
                if goal:
                    ok = None if r is None or p99 is None else (r >= goal[0] and p99 <= goal[1] and errors == 0)
                    checks.append((target, backend, "%s× bare, p99 %s ms, %d errors" % (show(r), show(p99, "%.1f"), errors),
                                   "≥ %.3g× bare, p99 ≤ %g ms" % goal, ok))
            out.append("| %s | %s | %s | %s | %s | %s | %d | %s | %s |" % (
                backend_name(backend), target, server, show(rps, "%.0f"), show(p50), show(p99), errors, ratio, rounds))
        out.append("")

    # --- sign-in ------------------------------------------------------------------------------
    signin = {}
    for backend, label, rps, p50, p99, errors in rows(directory, "signin"):
        signin.setdefault(backend, {}).setdefault(label, []).append((rps, p50, p99, int(errors) if errors.isdigit() else 0))
    if signin:
        out.append("### Password sign-in (`POST /api/v1/auth/token`, password grant) and `/healthz` under a sign-in flood")
        out.append("")
        out.append("| backend | idle /healthz p50 / p99 ms | one grant, 1 connection: p50 ms | hashing limit /s | flood grants/s (p99 ms) | share of limit | /healthz p99 under flood | p99 flood ÷ idle | errors |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for backend, m in signin.items():
            med = lambda label, i: median([r[i] for r in m.get(label, [])])
            idle50, idle99 = med("idle-healthz", 1), med("idle-healthz", 2)
            one = med("single-grant", 1)
            flood_rps, flood99 = med("flood-grant", 0), med("flood-grant", 2)
            loaded99 = med("flood-healthz", 2)
            errors = sum(r[3] for label in m for r in m[label])
            limit = cores / (one / 1000.0) if one else None
            share = flood_rps / limit if flood_rps and limit else None
            growth = loaded99 / idle99 if loaded99 and idle99 else None
            out.append("| %s | %s / %s | %s | %s | %s (%s) | %s | %s | %s | %d |" % (
                backend_name(backend), show(idle50), show(idle99), show(one, "%.1f"), show(limit, "%.1f"),
                show(flood_rps, "%.1f"), show(flood99, "%.0f"), show(share and share * 100, "%.0f%%"),
                show(loaded99), show(growth, "%.2f×"), errors))
            # wrk counts refused grants as requests too: a flood with errors proves nothing.
            flood_errors = sum(r[3] for r in m.get("flood-grant", []))
            checks.append(("sign-in throughput", backend, "%s%% of %s/s, %d errors in the flood" % (
                show(share and share * 100, "%.0f"), show(limit, "%.1f"), flood_errors),
                "≥ %d%% of the hashing limit, no errors" % (SIGNIN_SHARE * 100),
                None if share is None else share >= SIGNIN_SHARE and flood_errors == 0))
            checks.append(("/healthz under sign-in flood", backend, "p99 %s× idle" % show(growth, "%.2f"),
                           "≤ %g× idle p99" % HEALTHZ_GROWTH, None if growth is None else growth <= HEALTHZ_GROWTH))
        out.append("")
        out.append("hashing limit = %d cores ÷ one grant's p50 on one connection (a hash plus the grant's own database work, so the pure hashing limit is a little higher)." % cores)
        out.append("")

    # --- soak ---------------------------------------------------------------------------------
    soak = rows(directory, "soak")
    if soak:
        out.append("### Soak: mixed reads and writes, memory sampled every second")
        out.append("")
        out.append("| backend | seconds | req/s | p50 ms | p99 ms | errors | RSS start MiB | RSS end MiB | RSS peak MiB | memory |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for backend, seconds, rps, p50, p99, errors, samples in soak:
            rss = [int(s) / 1024.0 for s in samples.split()]
            if len(rss) >= 3:
                third = max(1, len(rss) // 3)
                first, last = statistics.median(rss[:third]), statistics.median(rss[-third:])
                allowed = max(first * SOAK_GROWTH_SHARE, SOAK_GROWTH_FLOOR_MIB)
                flat = last - first <= allowed
                word = "flat (%+.1f MiB)" % (last - first) if flat else "**grows** (%+.1f MiB, over %.1f)" % (last - first, allowed)
            else:
                flat, word = None, "too few samples"
            out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                backend_name(backend), seconds, show(num(rps), "%.0f"), show(num(p50)), show(num(p99)), errors,
                show(rss[0] if rss else None, "%.1f"), show(rss[-1] if rss else None, "%.1f"),
                show(max(rss) if rss else None, "%.1f"), word))
            checks.append(("soak memory", backend, word.replace("**", ""), "flat: last third within %d%% (at least %g MiB) of the first" % (
                SOAK_GROWTH_SHARE * 100, SOAK_GROWTH_FLOOR_MIB), flat))
        out.append("")

    # --- memory and start ---------------------------------------------------------------------
    memory = rows(directory, "memory")
    starts = rows(directory, "starts")
    if memory or starts:
        out.append("### Idle memory and cold start")
        out.append("")
        out.append("| backend | server | RSS after start MiB | RSS after warm-up MiB | start → first 200 on /healthz, median ms (runs) |")
        out.append("|---|---|---:|---:|---|")
        keys = []
        for r in memory + starts:
            if (r[0], r[1]) not in keys:
                keys.append((r[0], r[1]))
        for backend, server in keys:
            mem = next((r for r in memory if r[0] == backend and r[1] == server), None)
            times = [r for r in starts if r[0] == backend and r[1] == server]
            after_start = int(mem[2]) / 1024.0 if mem and mem[2].isdigit() else None
            after_warm = int(mem[3]) / 1024.0 if mem and mem[3].isdigit() else None
            start_cells = []
            for _, _, kind, ms in times:
                values = [float(v) for v in ms.split()]
                start_cells.append("%s: %.1f (%s)" % (kind, statistics.median(values), " ".join("%.0f" % v for v in values)))
                if server == "gatehouse" and kind == "restart" and backend in COLD_START_MS:
                    checks.append(("cold start", backend, "%.1f ms" % statistics.median(values), "< %g ms" % COLD_START_MS[backend],
                                   statistics.median(values) < COLD_START_MS[backend]))
            out.append("| %s | %s | %s | %s | %s |" % (
                backend_name(backend), server, show(after_start, "%.1f"), show(after_warm, "%.1f"), "; ".join(start_cells) or "—"))
            if server == "gatehouse" and backend in IDLE_RSS_MIB and after_warm is not None:
                worst = max(v for v in (after_start, after_warm) if v is not None)
                checks.append(("idle memory", backend, "%.1f MiB" % worst, "< %g MiB" % IDLE_RSS_MIB[backend], worst < IDLE_RSS_MIB[backend]))
        out.append("")
        out.append("restart: over the database the run used (migrated, keys made); first: an empty data folder (migrations and keys made at start).")
        out.append("")

    # --- the targets ------------------------------------------------------------------
    if checks:
        out.append("### Targets")
        out.append("")
        out.append("| what | backend | measured | target | verdict |")
        out.append("|---|---|---|---|---|")
        for what, backend, figure, target, ok in checks:
            out.append("| %s | %s | %s | %s | %s |" % (what, backend_name(backend), figure, target, verdict(ok)))
        out.append("")

    refusals = rows(directory, "refusals")
    if refusals:
        out.append("### Refusals in Gatehouse's request log")
        out.append("")
        out.append("| backend | request | status | count |")
        out.append("|---|---|---:|---:|")
        for backend, request, status, count in refusals:
            out.append("| %s | `%s` | %s | %s |" % (backend_name(backend), request, status, count))
        out.append("")

    for backend, reason in rows(directory, "skipped"):
        out.append("Not measured: %s (%s)." % (backend_name(backend), reason))
    print("\n".join(out).rstrip())


def main():
    if sys.argv[1:2] == ["parse-wrk"]:
        parse_wrk(sys.stdin.read())
    elif sys.argv[1:2] == ["render"] and len(sys.argv) == 4:
        render(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
