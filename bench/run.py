"""Whole-system benchmarks: wsfast beside its peers and a ceiling, in one run.

    python bench/run.py                 # the full run (~30 min), writes bench/results/system.*
    python bench/run.py --quick         # a few minutes, same scenarios, smaller counts
    python bench/run.py --commit HEAD   # wsfast as committed (git archive + build), not the work tree
    python bench/run.py --servers wsfast,picows,ceiling --scenarios echo,fanout --rounds 5
    python bench/run.py --smoke         # seconds: one server, one scenario (tests/test_bench_smoke.py)
    python -m wsfast bench ...          # the same, from a checkout

Each server (bench/servers/*.py) runs pinned to CPU 0 (``taskset -c 0``),
the one load client (bench/loadclient.py) pinned to CPU 1, both on uvloop.
Rounds are interleaved: round 1 runs every scenario group on every server
(A B C ...), then round 2, and so on; a table cell is the median over rounds
with the min–max beside it. The client reports both processes' CPU time
over the measured window; a row where the client used ≥ 90 % of its core is
marked ‡ (client-bound: the server may be faster than the number says).

Scenario groups (one fresh server process per group and round):

* ``echo``: 16 connections × 8 binary messages in flight, payloads 64 B,
  256 B, 8 KiB, 100 KB, 1 MiB (round trips/s); one connection, one message
  at a time, 64 B (latency); one connection, 2 × 16 MiB in flight (MB/s).
* ``fanout``: 1,000 and 10,000 clients, broadcasts of 256 B; deliveries/s,
  time until the last client has each message (p50, p99), server CPU µs per
  delivery.
* ``idle``: server RSS growth over 10,000 idle connections.
* ``conns``: as many connections as one server process may hold (50,000, or
  the file-descriptor hard limit), from several 127.0.0.x source addresses;
  accept rate, server RSS, and every connection must still echo.

Writes ``system.md`` (tables, ratio checks), ``system.json`` (every raw
number) and ``system_*.png`` (matplotlib, Agg) to ``--out``
(bench/results/ by default) and prints the target checks, PASS or MISS.
Everything runs on 127.0.0.x, bounded in time; every server process is
killed at the end, errors or not.
"""

import argparse
import atexit
import datetime
import json
import os
import platform
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SERVERS_DIR = os.path.join(HERE, "servers")
CLIENT = os.path.join(HERE, "loadclient.py")

# name -> (label, script, extra args, needs these modules)
SERVERS = {
    "wsfast": ("wsfast (Cython)", "wsfast_server.py", [], ["wsfast._frame"]),
    "wsfast-python": ("wsfast (pure Python)", "wsfast_server.py", ["--pure-python"], []),
    "wsfast-python-nonumpy": ("wsfast (pure Python, no numpy)", "wsfast_server.py",
                              ["--pure-python", "--no-numpy"], []),
    "picows": ("picows", "picows_server.py", [], ["picows"]),
    "aiohttp": ("aiohttp", "aiohttp_server.py", [], ["aiohttp"]),
    "websockets": ("websockets", "websockets_server.py", [], ["websockets"]),
    "tornado": ("tornado", "tornado_server.py", [], ["tornado"]),
    "ceiling": ("ceiling", "ceiling_server.py", [], []),
}
ORDER = list(SERVERS)

ECHO_SIZES = [64, 256, 8192, 100_000, 2**20]
SIZE_LABEL = {64: "64 B", 256: "256 B", 8192: "8 KiB", 100_000: "100 KB", 2**20: "1 MiB", 16 * 2**20: "16 MiB"}
CLIENT_BOUND_PCT = 90.0

PROFILES = {
    # echo seconds (warm-up, measured), fan-out (clients, messages), idle connections, conns target
    "full": {"warmup": 0.5, "duration": 2.0, "fanout": [(1000, 300), (10000, 40)], "idle": 10000,
             "conns": 50000, "large_count": 8, "rounds": 3},
    "quick": {"warmup": 0.3, "duration": 0.8, "fanout": [(1000, 100), (10000, 12)], "idle": 5000,
              "conns": 10000, "large_count": 3, "rounds": 3},
    "smoke": {"warmup": 0.1, "duration": 0.3, "fanout": [(20, 20)], "idle": 20, "conns": 20, "large_count": 1,
              "rounds": 1},
}


# -- cases ------------------------------------------------------------------------


def cases(group, profile, conns_target):
    """(case id, loadclient arguments) of a scenario group."""
    p = PROFILES[profile]
    t = ["--warmup", str(p["warmup"]), "--duration", str(p["duration"])]
    if group == "echo":
        sizes = [64] if profile == "smoke" else ECHO_SIZES
        out = [(f"echo-{s}", ["echo", "--size", str(s)] + t) for s in sizes]
        if profile != "smoke":
            out.append(("latency-64", ["latency", "--size", "64"] + t))
            out.append((f"large-{16 * 2**20}", ["large", "--count", str(p["large_count"]), "--duration", "20"]))
        return out
    if group == "fanout":
        return [(f"fanout-{n}", ["fanout", "--clients", str(n), "--messages", str(m),
                                 "--wave-deliveries", "10000" if profile != "smoke" else "100"])
                for n, m in p["fanout"]]
    if group == "idle":
        return [(f"idle-{p['idle']}", ["idle", "--connections", str(p["idle"])])]
    if group == "conns":
        return [(f"conns-{conns_target}", ["conns", "--connections", str(conns_target), "--sources", "4",
                                           "--timeout", "120"])]
    raise ValueError(group)


GROUPS = ["echo", "fanout", "idle", "conns"]


# -- processes --------------------------------------------------------------------

_children = []


def _kill_children():
    for proc in _children:
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass


atexit.register(_kill_children)


def _on_signal(signum, frame):
    _kill_children()
    sys.exit(128 + signum)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pin(cpu):
    return ["taskset", "-c", str(cpu)] if cpu is not None else []


def start_server(name, cpu, env, log):
    _, script, extra, _ = SERVERS[name]
    port = free_port()
    cmd = pin(cpu) + [sys.executable, os.path.join(SERVERS_DIR, script), "--port", str(port)] + extra
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env, cwd=SERVERS_DIR)
    _children.append(proc)
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    banner = proc.stdout.readline().decode().strip() if ready else ""
    if not banner:
        stop_server(proc)
        raise RuntimeError(f"{name} did not start (see {log.name})")
    for _ in range(100):  # listening before the banner, but make sure
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, port, banner


def stop_server(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    if proc in _children:
        _children.remove(proc)


def run_client(args, port, server_pid, cpu, timeout):
    cmd = pin(cpu) + [sys.executable, CLIENT] + args[:1] + ["--port", str(port), "--server-pid",
                                                              str(server_pid)] + args[1:]
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=timeout, cwd=HERE, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"load client timed out after {timeout} s"}
    lines = out.stdout.decode().strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        return {"error": f"load client exit {out.returncode}: {out.stderr.decode()[-500:]}"}


# -- wsfast at a commit -----------------------------------------------------------


def git(*args):
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()


def wsfast_tree(commit, workdir):
    """wsfast at ``commit`` (git archive), its extension built in place;
    returns the directory to put first on the servers' PYTHONPATH."""
    sha = git("rev-parse", commit)
    if not sha:
        raise SystemExit(f"unknown commit {commit!r}")
    dest = os.path.join(workdir, f"wsfast-{sha[:12]}")
    archive = subprocess.run(["git", "archive", "--format=tar", sha, "wsfast", "setup.py", "pyproject.toml",
                              "README.md"], cwd=ROOT, capture_output=True, check=True).stdout
    os.makedirs(dest)
    tar_path = os.path.join(workdir, "wsfast.tar")
    with open(tar_path, "wb") as f:
        f.write(archive)
    with tarfile.open(tar_path) as tar:
        tar.extractall(dest)
    env = dict(os.environ, WSFAST_REQUIRE_EXTENSIONS="1")
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=dest, env=env, check=True,
                   capture_output=True)
    return dest, sha


# -- statistics, tables, charts ---------------------------------------------------


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values):
    values = [v for v in values if v is not None]
    return (min(values), max(values)) if values else (None, None)


def fmt(v, unit=""):
    if v is None:
        return "–"
    if abs(v) >= 100_000:
        s = f"{v / 1000:,.0f}k"
    elif abs(v) >= 1000:
        s = f"{v:,.0f}"
    elif abs(v) >= 10:
        s = f"{v:.1f}"
    else:
        s = f"{v:.2f}"
    return s + unit


def cell(runs, key, scale=1.0, unit=""):
    vals = [r.get(key) * scale if r.get(key) is not None else None for r in runs if "error" not in r]
    m = med(vals)
    if m is None:
        errors = [r["error"] for r in runs if "error" in r]
        return "error" if errors else "–"
    lo, hi = spread(vals)
    if len(vals) > 1:
        return f"{fmt(m, unit)} ({fmt(lo)}–{fmt(hi)})"
    return fmt(m, unit)


def cpu_cell(runs):
    ok = [r for r in runs if "error" not in r and "server_cpu_pct" in r]
    if not ok:
        return "–"
    s, c = med([r["server_cpu_pct"] for r in ok]), med([r["client_cpu_pct"] for r in ok])
    mark = " ‡" if c >= CLIENT_BOUND_PCT else ""
    return f"{s:.0f} / {c:.0f}{mark}"


def metric(results, case, server, key):
    runs = [r for r in results.get(case, {}).get(server, []) if "error" not in r]
    return med([r.get(key) for r in runs])


def ratio_checks(results, servers, conns_target, nofile_hard):
    """[(target, measured text, PASS/MISS/n/a)] from medians of this run."""
    checks = []

    def ratio(case, a, b, key):
        x, y = metric(results, case, a, key), metric(results, case, b, key)
        return None if x is None or y is None or y == 0 else x / y

    def add(target, value, ok, detail):
        status = "n/a" if value is None else ("PASS" if ok else "MISS")
        checks.append((target, detail, status))

    for s in ECHO_SIZES:
        case = f"echo-{s}"
        if case not in results:
            continue
        if "picows" in servers:
            r = ratio(case, "wsfast", "picows", "round_trips_per_s")
            add(f"echo {SIZE_LABEL[s]}: wsfast ≥ 1.2× picows", r, r is not None and r >= 1.2,
                f"{r:.2f}×" if r is not None else "–")
        if s in (64, 256) and "ceiling" in servers:
            r = ratio(case, "wsfast", "ceiling", "round_trips_per_s")
            add(f"echo {SIZE_LABEL[s]}: wsfast ≥ 0.85× ceiling", r, r is not None and r >= 0.85,
                f"{r:.2f}×" if r is not None else "–")
        if "websockets" in servers and "wsfast-python" in servers:
            r = ratio(case, "wsfast-python", "websockets", "round_trips_per_s")
            add(f"echo {SIZE_LABEL[s]}: wsfast pure Python ≥ websockets", r, r is not None and r >= 1.0,
                f"{r:.2f}×" if r is not None else "–")
        if "websockets" in servers and "wsfast-python-nonumpy" in servers:
            r = ratio(case, "wsfast-python-nonumpy", "websockets", "round_trips_per_s")
            add(f"echo {SIZE_LABEL[s]}: wsfast pure Python without numpy ≥ websockets", r,
                r is not None and r >= 1.0, f"{r:.2f}×" if r is not None else "–")
    for case in sorted(c for c in results if c.startswith("idle-")):
        v = metric(results, case, "wsfast", "bytes_per_connection")
        add("wsfast ≤ 6 KiB per idle connection", v, v is not None and v <= 6 * 1024,
            f"{v / 1024:.2f} KiB" if v is not None else "–")
    for case in sorted((c for c in results if c.startswith("fanout-")), key=lambda c: int(c.split("-")[1])):
        if "picows" not in servers:
            continue
        r = ratio(case, "wsfast", "picows", "server_cpu_us_per_delivery")
        n = int(case.split("-")[1])
        add(f"fan-out {n:,} clients: wsfast server CPU/delivery ≤ 0.75× picows", r, r is not None and r <= 0.75,
            f"{r:.2f}×" if r is not None else "–")
    for case in (c for c in results if c.startswith("conns-")):
        runs = results[case].get("wsfast", [])
        if not runs:
            continue
        held = [r for r in runs if "error" not in r]
        n = int(case.split("-")[1])
        ok = bool(held) and all(r.get("all_echoed") for r in held) and len(held) == len(runs)
        detail = f"{n:,} held, {min((r.get('echoed', 0) for r in held), default=0):,} echoing (worst round)"
        if n < 50000:
            detail += f"; 50,000 impossible in one process here: RLIMIT_NOFILE hard limit {nofile_hard:,}"
        add("50,000 connections held and echoing", 1, ok and n >= 50000, detail)
    return checks


def write_tables(results, meta, servers, checks, path):
    L = []
    w = L.append
    labels = {s: SERVERS[s][0] for s in servers}
    w("# wsfast whole-system benchmarks\n")
    w(f"Run {meta['started']} on {meta['machine']['cpu']} ({meta['machine']['cpus']} CPUs), "
      f"{meta['rounds']} interleaved rounds, profile `{meta['profile']}`; wsfast at "
      f"`{meta['wsfast_commit']}`{' (work tree with uncommitted changes)' if meta.get('wsfast_dirty') else ''}. "
      f"Command: `{meta['command']}`. Machine and versions: README.md beside this file; "
      f"raw numbers: system.json.\n")
    w("Each cell: median (min–max) over the rounds. **CPU %**: server / client, each pinned to its own "
      "core; ‡ marks a client-bound row (client ≥ 90 % of its core), where the server may be faster "
      "than the number says.\n")
    w("## Targets (ratios of medians in this run)\n")
    w("| target | measured | |\n|---|---|---|")
    for target, detail, status in checks:
        w(f"| {target} | {detail} | **{status}** |")
    w("")

    echo_cases = [f"echo-{s}" for s in ECHO_SIZES if f"echo-{s}" in results]
    if echo_cases:
        w("## Echo throughput: 16 connections × 8 messages in flight (binary), round trips/s\n")
        w("| server | " + " | ".join(SIZE_LABEL[int(c.split('-')[1])] for c in echo_cases) + " |")
        w("|---|" + "---|" * len(echo_cases))
        for s in servers:
            w(f"| {labels[s]} | " + " | ".join(cell(results[c].get(s, []), "round_trips_per_s")
                                               for c in echo_cases) + " |")
        w("\nServer CPU µs per round trip in the same runs (lower is better; not bent by the "
          "wake-up latency that shapes round trips/s here, see the note below):\n")
        w("| server | " + " | ".join(SIZE_LABEL[int(c.split('-')[1])] for c in echo_cases) + " |")
        w("|---|" + "---|" * len(echo_cases))
        for s in servers:
            w(f"| {labels[s]} | " + " | ".join(cell(results[c].get(s, []), "server_cpu_us_per_rt")
                                               for c in echo_cases) + " |")
        w("\nCPU % server / client in the same runs:\n")
        w("| server | " + " | ".join(SIZE_LABEL[int(c.split('-')[1])] for c in echo_cases) + " |")
        w("|---|" + "---|" * len(echo_cases))
        for s in servers:
            w(f"| {labels[s]} | " + " | ".join(cpu_cell(results[c].get(s, [])) for c in echo_cases) + " |")
        if "ceiling" in servers or "picows" in servers:
            w("\nwsfast (Cython) as a ratio of medians:\n")
            refs = [r for r in ("picows", "ceiling") if r in servers]
            w("| | " + " | ".join(SIZE_LABEL[int(c.split('-')[1])] for c in echo_cases) + " |")
            w("|---|" + "---|" * len(echo_cases))
            for ref in refs:
                row = []
                for c in echo_cases:
                    a, b = metric(results, c, "wsfast", "round_trips_per_s"), metric(results, c, ref,
                                                                                       "round_trips_per_s")
                    row.append(f"{a / b:.2f}×" if a and b else "–")
                w(f"| round trips/s ÷ {labels[ref]} | " + " | ".join(row) + " |")
            for ref in refs:
                row = []
                for c in echo_cases:
                    a, b = metric(results, c, "wsfast", "server_cpu_us_per_rt"), metric(results, c, ref,
                                                                                          "server_cpu_us_per_rt")
                    row.append(f"{b / a:.2f}×" if a and b else "–")
                w(f"| round trips per server CPU second ÷ {labels[ref]} | " + " | ".join(row) + " |")
        w("\n**Reading the echo numbers.** Two processes on two vCPUs of a VM: whenever one side "
          "runs out of work it sleeps, and waking it costs tens of µs of wall time. A fast server "
          "empties its sockets, sleeps and pays that wake-up on every batch, while a slow one stays "
          "busy (100 % CPU) and never does, so at 16 × 8 in flight round trips/s bunches the fast "
          "servers together and can even rank a slower server ahead (look at the CPU %). Server "
          "CPU µs per round trip is what each server costs, whatever the scheduling did.\n")
    if "latency-64" in results or f"large-{16 * 2**20}" in results:
        w("## One connection: latency (64 B, one message at a time) and large messages (16 MiB, 2 in flight)\n")
        w("| server | round trips/s | RTT p50 µs | RTT p99 µs | CPU % | 16 MiB echo MB/s | CPU % |")
        w("|---|---|---|---|---|---|---|")
        lat, big = results.get("latency-64", {}), results.get(f"large-{16 * 2**20}", {})
        for s in servers:
            w(f"| {labels[s]} | {cell(lat.get(s, []), 'round_trips_per_s')} | "
              f"{cell(lat.get(s, []), 'rtt_p50_us')} | {cell(lat.get(s, []), 'rtt_p99_us')} | "
              f"{cpu_cell(lat.get(s, []))} | {cell(big.get(s, []), 'mb_per_s')} | {cpu_cell(big.get(s, []))} |")
        w("\nLatency is bounded by waking the other core on these VMs (tens of µs per hop), so it "
          "separates the servers little. MB/s counts the payload echoed (each byte crosses twice).\n")
    fan = sorted((c for c in results if c.startswith("fanout-")), key=lambda c: int(c.split("-")[1]))
    for c in fan:
        n = int(c.split("-")[1])
        w(f"## Fan-out: {n:,} clients, 256 B broadcasts\n")
        w("| server | server CPU µs/delivery | deliveries/s | last client p50 ms | last client p99 ms | CPU % |")
        w("|---|---|---|---|---|---|")
        for s in servers:
            runs = results[c].get(s, [])
            w(f"| {labels[s]} | {cell(runs, 'server_cpu_us_per_delivery')} | {cell(runs, 'deliveries_per_s')} | "
              f"{cell(runs, 'last_delivery_p50_ms')} | {cell(runs, 'last_delivery_p99_ms')} | {cpu_cell(runs)} |")
        w("\nOne client process reads every delivery, so deliveries/s is often the client's limit (‡); "
          "server CPU per delivery is the fair comparison. Latency: from the server's timestamp in the "
          "message to the moment the last client has it, with up to 4 broadcast commands outstanding.\n")
    for c in (c for c in results if c.startswith("idle-")):
        n = int(c.split("-")[1])
        w(f"## Memory per idle connection ({n:,} upgraded, silent connections)\n")
        w("| server | KiB per connection | server RSS before → after (MiB) |")
        w("|---|---|---|")
        for s in servers:
            runs = [r for r in results[c].get(s, []) if "error" not in r]
            rss = (f"{med([r['server_rss_before'] for r in runs]) / 2**20:.0f} → "
                   f"{med([r['server_rss_after'] for r in runs]) / 2**20:.0f}") if runs else "–"
            w(f"| {labels[s]} | {cell(results[c].get(s, []), 'bytes_per_connection', 1 / 1024)} | {rss} |")
        w("")
    for c in (c for c in results if c.startswith("conns-")):
        n = int(c.split("-")[1])
        w(f"## Connection count: {n:,} concurrent connections from 4 source addresses\n")
        if n < 50000:
            w(f"50,000 cannot be held by one process on this machine: RLIMIT_NOFILE's hard limit is "
              f"{meta['machine']['nofile_hard']:,} and cannot be raised (no CAP_SYS_RESOURCE); the run "
              f"opens as many as the limit allows.\n")
        w("| server | accepts/s (upgrades) | server RSS MiB | still echoing (worst round) | CPU % |")
        w("|---|---|---|---|---|")
        for s in servers:
            runs = results[c].get(s, [])
            ok = [r for r in runs if "error" not in r]
            echo = (f"{min(r['echoed'] for r in ok):,} / {n:,}" if ok else
                    ("error" if runs else "–"))
            w(f"| {labels[s]} | {cell(runs, 'accepts_per_s')} | {cell(runs, 'server_rss_after', 1 / 2**20)} | "
              f"{echo} | {cpu_cell(runs)} |")
        w("")
    errors = [(c, s, r["error"]) for c in results for s in results[c] for r in results[c][s] if "error" in r]
    if errors:
        w("## Errors\n")
        for c, s, e in errors:
            w(f"- {c} / {labels.get(s, s)}: {e}")
        w("")
    with open(path, "w") as f:
        f.write("\n".join(L))


def charts(results, servers, out):
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no charts", file=sys.stderr)
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [SERVERS[s][0] for s in servers]
    colors = {"wsfast": "#1f6feb", "wsfast-python": "#79a8f2", "wsfast-python-nonumpy": "#b6cdf5", "picows": "#e8590c", "aiohttp": "#2f9e44",
              "websockets": "#9c36b5", "tornado": "#868e96", "ceiling": "#343a40"}
    written = []

    def bars(ax, groups, key, scale=1.0):
        width = 0.8 / len(servers)
        for i, s in enumerate(servers):
            meds, lo, hi = [], [], []
            for g in groups:
                vals = [r[key] * scale for r in results.get(g, {}).get(s, []) if "error" not in r and key in r]
                m = med(vals) or 0
                meds.append(m)
                lo.append(m - (min(vals) if vals else 0))
                hi.append((max(vals) if vals else 0) - m)
            xs = [j + (i - (len(servers) - 1) / 2) * width for j in range(len(groups))]
            ax.bar(xs, meds, width, yerr=[lo, hi], capsize=2, label=SERVERS[s][0], color=colors.get(s))

    echo_cases = [f"echo-{s}" for s in ECHO_SIZES if f"echo-{s}" in results]
    if echo_cases:
        fig, ax = plt.subplots(figsize=(10, 5))
        bars(ax, echo_cases, "round_trips_per_s")
        ax.set_yscale("log")
        ax.set_xticks(range(len(echo_cases)), [SIZE_LABEL[int(c.split("-")[1])] for c in echo_cases])
        ax.set_ylabel("round trips/s (log scale)")
        ax.set_title("Echo, 16 connections × 8 in flight (median, min–max)")
        ax.legend(fontsize=8, ncol=2)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(os.path.join(out, "system_echo.png"), dpi=110)
        plt.close(fig)
        written.append("system_echo.png")
        if "ceiling" in servers:  # the same, relative to the ceiling
            fig, ax = plt.subplots(figsize=(10, 4.5))
            width = 0.8 / len(servers)
            for i, s in enumerate(servers):
                ys = []
                for c in echo_cases:
                    a, b = metric(results, c, s, "round_trips_per_s"), metric(results, c, "ceiling",
                                                                                "round_trips_per_s")
                    ys.append(a / b if a and b else 0)
                xs = [j + (i - (len(servers) - 1) / 2) * width for j in range(len(echo_cases))]
                ax.bar(xs, ys, width, label=SERVERS[s][0], color=colors.get(s))
            ax.axhline(0.85, color="red", lw=0.8, ls="--", label="target 0.85 (64 B, 256 B)")
            ax.set_xticks(range(len(echo_cases)), [SIZE_LABEL[int(c.split("-")[1])] for c in echo_cases])
            ax.set_ylabel("÷ ceiling (medians)")
            ax.set_title("Echo throughput relative to the ceiling server")
            ax.legend(fontsize=8, ncol=2)
            ax.grid(axis="y", alpha=0.3)
            fig.tight_layout()
            fig.savefig(os.path.join(out, "system_echo_ratio.png"), dpi=110)
            plt.close(fig)
            written.append("system_echo_ratio.png")
    fan = sorted((c for c in results if c.startswith("fanout-")), key=lambda c: int(c.split("-")[1]))
    if fan:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        for ax, key, title in ((axes[0], "server_cpu_us_per_delivery", "server CPU µs per delivery (lower is better)"),
                               (axes[1], "last_delivery_p99_ms", "last client has it, p99 ms (lower is better)")):
            bars(ax, fan, key)
            ax.set_xticks(range(len(fan)), [f"{int(c.split('-')[1]):,} clients" for c in fan])
            ax.set_title(title, fontsize=10)
            ax.grid(axis="y", alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle("Fan-out of 256 B broadcasts (median, min–max)")
        fig.tight_layout()
        fig.savefig(os.path.join(out, "system_fanout.png"), dpi=110)
        plt.close(fig)
        written.append("system_fanout.png")
    idle = [c for c in results if c.startswith("idle-")]
    if idle:
        fig, ax = plt.subplots(figsize=(8, 4))
        vals = [med([r["bytes_per_connection"] / 1024 for r in results[idle[0]].get(s, []) if "error" not in r]) or 0
                for s in servers]
        ax.barh(labels, vals, color=[colors.get(s) for s in servers])
        ax.axvline(6, color="red", lw=0.8, ls="--", label="target ≤ 6 KiB (wsfast)")
        ax.invert_yaxis()
        ax.set_xlabel("server RSS KiB per idle connection")
        ax.set_title(f"Memory per idle connection ({int(idle[0].split('-')[1]):,} connections)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(out, "system_memory.png"), dpi=110)
        plt.close(fig)
        written.append("system_memory.png")
    big = f"large-{16 * 2**20}"
    if "latency-64" in results or big in results:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, case, key, title in ((axes[0], "latency-64", "rtt_p50_us", "64 B round trip p50 µs, 1 in flight"),
                                     (axes[1], big, "mb_per_s", "16 MiB echo, MB/s")):
            vals = [metric(results, case, s, key) or 0 for s in servers]
            ax.barh(labels, vals, color=[colors.get(s) for s in servers])
            ax.invert_yaxis()
            ax.set_title(title, fontsize=10)
        fig.tight_layout()
        fig.savefig(os.path.join(out, "system_single.png"), dpi=110)
        plt.close(fig)
        written.append("system_single.png")
    return written


# -- metadata ---------------------------------------------------------------------


def machine_info():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for mod in ("picows", "aiohttp", "websockets", "tornado", "uvloop", "aiofastnet", "httptools", "Cython"):
        try:
            from importlib.metadata import version

            versions[mod] = version(mod)
        except Exception:  # noqa: BLE001 - not installed, or no metadata: no version to report
            versions[mod] = None
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
    except OSError:
        pass
    return {
        "cpu": cpu, "cpus": os.cpu_count(), "memory_gib": round(mem / 2**30, 1),
        "kernel": platform.release(), "python": platform.python_version(),
        "nofile_hard": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
        "versions": versions,
    }


def available(name, env):
    """Whether the server's modules import where the servers run (wsfast
    from WSFAST_TREE or this checkout)."""
    mods = SERVERS[name][3]
    if not mods:
        return True
    tree = env.get("WSFAST_TREE") or ROOT
    code = f"import sys; sys.path.insert(0, {tree!r}); " + "; ".join(f"import {m}" for m in mods)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=False).returncode == 0


# -- main -------------------------------------------------------------------------


def progress_bar(total, disable):
    try:
        from tqdm import tqdm

        return tqdm(total=total, unit="run", disable=disable, dynamic_ncols=True, file=sys.stderr)
    except ImportError:
        class Plain:
            def __init__(self):
                self.n = 0

            def set_description(self, text):
                self.text = text

            def update(self, k=1):
                self.n += k
                if not disable:
                    done = int(30 * self.n / total)
                    print(f"\r[{'#' * done}{'.' * (30 - done)}] {self.n}/{total} {self.text[:40]:40}",
                          end="", file=sys.stderr, flush=True)

            def close(self):
                if not disable:
                    print(file=sys.stderr)

        return Plain()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few minutes: fewer connections, shorter windows")
    parser.add_argument("--smoke", action="store_true",
                        help="seconds: one server, one scenario, tiny counts (no result files unless --out)")
    parser.add_argument("--servers", default=",".join(ORDER), help=f"comma-separated, from {','.join(ORDER)}")
    parser.add_argument("--scenarios", default=",".join(GROUPS), help=f"comma-separated, from {','.join(GROUPS)}")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3)")
    parser.add_argument("--commit", default=None,
                        help="benchmark wsfast as committed at this git commit (exported and built in a temp dir)")
    parser.add_argument("--out", default=None, help="directory for system.md/json/png (default bench/results)")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    profile = "smoke" if args.smoke else "quick" if args.quick else "full"
    p = PROFILES[profile]
    rounds = args.rounds or p["rounds"]
    signal.signal(signal.SIGTERM, _on_signal)
    workdir = tempfile.mkdtemp(prefix="wsfast-bench-")
    env = dict(os.environ)
    env.pop("WSFAST_NO_EXTENSIONS", None)
    head = git("rev-parse", "HEAD")
    if args.commit:
        print(f"building wsfast at {args.commit} in {workdir} ...", file=sys.stderr)
        tree, sha = wsfast_tree(args.commit, workdir)
        env["WSFAST_TREE"] = tree
        commit, dirty = sha, False
    else:
        commit = head or "unknown"
        dirty = bool(git("status", "--porcelain", "--", "wsfast"))
    if args.smoke:
        servers = ["wsfast"] if available("wsfast", env) else ["wsfast-python"]
        groups = ["echo"]
        if args.servers != ",".join(ORDER):
            servers = args.servers.split(",")
        if args.scenarios != ",".join(GROUPS):
            groups = args.scenarios.split(",")
    else:
        servers = [s for s in args.servers.split(",") if s]
        groups = [g for g in args.scenarios.split(",") if g]
    for s in servers:
        if s not in SERVERS:
            parser.error(f"unknown server {s!r}")
    for g in groups:
        if g not in GROUPS:
            parser.error(f"unknown scenario {g!r}")
    missing = [s for s in servers if not available(s, env)]
    for s in missing:
        print(f"skipping {s}: {', '.join(SERVERS[s][3])} not importable", file=sys.stderr)
    servers = [s for s in servers if s not in missing]
    if not servers:
        print("no server to run", file=sys.stderr)
        return 1
    pinned = not args.no_pin and shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    server_cpu, client_cpu = (args.server_cpu, args.client_cpu) if pinned else (None, None)
    nofile_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    # one descriptor per connection in each process, and some to spare
    conns_target = min(p["conns"], nofile_hard - 500) if profile != "smoke" else p["conns"]

    meta = {
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": "python bench/run.py" + ("" if argv is None and len(sys.argv) == 1 else
                                            " " + " ".join(argv if argv is not None else sys.argv[1:])),
        "profile": profile, "rounds": rounds, "servers": servers, "scenarios": groups,
        "wsfast_commit": commit, "wsfast_dirty": dirty, "pinned": pinned,
        "server_cpu": server_cpu, "client_cpu": client_cpu, "conns_target": conns_target,
        "machine": machine_info(), "loadavg_start": os.getloadavg(), "banners": {},
    }
    results = {}
    plan = [(r, g, s) for r in range(rounds) for g in groups for s in servers]
    total = sum(len(cases(g, profile, conns_target)) for _, g, _ in plan)
    bar = progress_bar(total, args.no_progress)
    log_path = os.path.join(workdir, "servers.log")
    t_start = time.time()
    try:
        with open(log_path, "w") as log:
            for r, group, server in plan:
                try:
                    proc, port, banner = start_server(server, server_cpu, env, log)
                except RuntimeError as exc:
                    for case, _ in cases(group, profile, conns_target):
                        results.setdefault(case, {}).setdefault(server, []).append({"error": str(exc)})
                        bar.update()
                    continue
                meta["banners"][server] = banner
                try:
                    for case, cargs in cases(group, profile, conns_target):
                        bar.set_description(f"round {r + 1}/{rounds} {case} {server}")
                        timeout = 300 if group in ("fanout", "conns") else 120
                        res = run_client(cargs, port, proc.pid, client_cpu, timeout)
                        res["round"] = r + 1
                        if proc.poll() is not None:
                            res.setdefault("error", f"server exited with {proc.returncode}")
                        results.setdefault(case, {}).setdefault(server, []).append(res)
                        bar.update()
                        if proc.poll() is not None:
                            break
                finally:
                    stop_server(proc)
                    time.sleep(0.3)  # let the sockets go
    finally:
        bar.close()
        _kill_children()
    meta["seconds"] = round(time.time() - t_start, 1)
    meta["loadavg_end"] = os.getloadavg()
    checks = ratio_checks(results, servers, conns_target, nofile_hard)

    print()
    for target, detail, status in checks:
        print(f"{status:5} {target}: {detail}")
    errors = [(c, s, x["error"]) for c in results for s in results[c] for x in results[c][s] if "error" in x]
    for c, s, e in errors:
        print(f"ERROR {c} / {s}: {e}", file=sys.stderr)

    out = args.out or (None if args.smoke else os.path.join(HERE, "results"))
    if out:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "system.json"), "w") as f:
            json.dump({"meta": meta, "checks": checks, "results": results}, f, indent=1)
        write_tables(results, meta, servers, checks, os.path.join(out, "system.md"))
        pngs = charts(results, servers, out)
        print(f"wrote {out}/system.md, system.json, {', '.join(pngs)} ({meta['seconds']} s)")
    else:
        print(json.dumps({"results": results}))
    shutil.rmtree(workdir, ignore_errors=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
