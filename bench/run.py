"""Whole-system benchmarks: wsfast beside its peers and two ceilings, in one run.

    python bench/run.py --commit HEAD   # the full run, wsfast as committed (git archive + build)
    python bench/run.py --quick         # a few minutes, same scenarios, smaller counts
    python bench/run.py --quick --servers wsfast,wsfast-async,picows --scenarios echo,rr
    python bench/run.py --smoke         # seconds: one server, one scenario (tests/test_bench_smoke.py)
    python -m wsfast bench ...          # the same, from a checkout

Without ``--commit`` the wsfast servers import the wsfast of this checkout
(its extension must be built in place); with it, wsfast is exported at that
commit with ``git archive``, built in a temp directory and imported from
there, never from the source tree, so the numbers belong to a commit.

Each server (bench/servers/*.py) runs pinned to CPU 0 (``taskset -c 0``),
the one load client (bench/loadclient.py) pinned to CPU 1, both on uvloop.
Rounds are interleaved: round 1 runs every scenario group on every server
(A B C ...), then round 2, and so on; a table cell is the median over rounds
with the min–max beside it. The client reports both processes' CPU time
over the measured window: server CPU µs per round trip (or per delivery)
stands beside every rate, and a cell where the load client used ≥ 95 % of
its core is marked ‡ (client-bound: the server may be faster than the
number says) and left out of every ratio.

The floor, ``floor-c`` (bench/servers/floor_server.c, compiled with ``cc -O2``
into the run's temp directory, never committed as a binary): a C epoll echo
server doing only the syscalls (one read and one writev per readiness, the
unmask in C), so a row shows how much of any Python server's cost per round
trip is the kernel's. ``floor-py`` is another name for ``ceiling-perframe``,
the thinnest Python (uvloop ``BufferedProtocol``) echo writing as it reads.

Scenario groups (one fresh server process per group and round):

* ``echo``: pipelined, 16 connections × 8 binary messages in flight,
  payloads 64 B, 256 B, 8 KiB, 1 MiB (``--sizes``; the client answers the echoes
  of one read with one write), and 256 B with one client write per message;
* ``rr``: request/response, one message in flight per connection: 16 × 1 at
  64 B, 256 B, 8 KiB and 256 × 1 at 256 B (round trips/s, RTT p50/p99);
* ``single``: one connection, one 64 B message at a time (latency p50/p99),
  and 2 × 16 MiB in flight (MB/s);
* ``fanout``: 256 B broadcasts in two patterns: *lockstep* (1,000 clients,
  one broadcast per command, the next sent when the last copy of the
  previous one arrived) and *corked* (10 broadcasts per command, 4 commands
  outstanding: many broadcasts per loop turn), 1,000 clients (and 10,000
  with ``--fanout-10k``);
  deliveries/s, server CPU µs per delivery, time until the last client has
  each message (p50, p99);
* ``idle``, ``conns`` (not in the default run): server RSS per idle
  connection; as many connections as one process may hold, all echoing.

The async-handler scenario is the ``wsfast-async`` server (the same handler
as ``async def on_message``) in the echo and rr groups; every peer runs its
idiomatic fastest use (picows: sync callbacks, its only kind; websockets and
aiohttp: coroutines, their only kind; tornado: a sync ``on_message``).

Writes ``system.md`` (tables, ratio checks), ``system.json`` (the per-round
summaries: no raw samples) and ``system_*.png`` (matplotlib, Agg) to
``--out`` (bench/results/ by default) and prints the target checks, PASS or
MISS. Everything runs on 127.0.0.x, bounded in time; every server process is
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
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SERVERS_DIR = os.path.join(HERE, "servers")
sys.path.insert(0, HERE)

import at_commit  # noqa: E402  (bench/at_commit.py: wsfast exported at a commit and built outside the tree)
from at_commit import git, wsfast_tree  # noqa: E402,F401  (for the scripts that import them from run)
CLIENT = os.path.join(HERE, "loadclient.py")
# --client: the load client; picows_client.py is a second, independent one for
# the echo and latency modes (a cross-check: the two must agree)
CLIENTS = {"loadclient": (CLIENT, []), "picows": (os.path.join(HERE, "picows_client.py"), []),
           "picows-cork": (os.path.join(HERE, "picows_client.py"), ["--cork"])}

# name -> (label, script, extra args, needs these modules, scenario groups it runs (None: all))
SERVERS = {
    "wsfast": ("wsfast (Cython)", "wsfast_server.py", [], ["wsfast._frame"], None),
    "wsfast-async": ("wsfast, async def on_message", "wsfast_server.py", ["--async"], ["wsfast._frame"],
                     ("echo", "rr")),
    "wsfast-python": ("wsfast (pure Python)", "wsfast_server.py", ["--pure-python"], [], None),
    "wsfast-python-nonumpy": ("wsfast (pure Python, no numpy)", "wsfast_server.py",
                              ["--pure-python", "--no-numpy"], [], None),
    "picows": ("picows", "picows_server.py", [], ["picows"], None),
    "picows-batched": ("picows, one write per read", "picows_server.py", ["--batched"], ["picows"],
                       ("echo", "rr", "single")),
    "aiohttp": ("aiohttp", "aiohttp_server.py", [], ["aiohttp"], None),
    "websockets": ("websockets", "websockets_server.py", [], ["websockets"], None),
    "tornado": ("tornado", "tornado_server.py", [], ["tornado"], None),
    # issue 14: the same bare ASGI echo app under uvicorn with each WebSocket class (and Starlette)
    "uvicorn-wsfast": ("uvicorn --ws wsfast", "uvicorn_server.py", ["--ws", "wsfast"],
                       ["uvicorn", "wsfast._frame"], ("echo", "rr", "idle")),
    "uvicorn-websockets-sansio": ("uvicorn --ws websockets-sansio", "uvicorn_server.py",
                                  ["--ws", "websockets-sansio"], ["uvicorn", "websockets"], ("echo", "rr", "idle")),
    "uvicorn-wsproto": ("uvicorn --ws wsproto", "uvicorn_server.py", ["--ws", "wsproto"],
                        ["uvicorn", "wsproto"], ("echo", "rr", "idle")),
    "starlette-wsfast": ("Starlette, uvicorn --ws wsfast", "uvicorn_server.py",
                         ["--ws", "wsfast", "--app", "starlette"], ["uvicorn", "starlette", "wsfast._frame"],
                         ("echo", "rr", "idle")),
    "starlette-websockets-sansio": ("Starlette, uvicorn --ws websockets-sansio", "uvicorn_server.py",
                                    ["--ws", "websockets-sansio", "--app", "starlette"],
                                    ["uvicorn", "starlette", "websockets"], ("echo", "rr", "idle")),
    "granian": ("granian (ASGI, embedded)", "granian_server.py", [], ["granian", "uvicorn"], ("echo", "rr", "idle")),
    "ceiling-batched": ("ceiling, one write per read", "ceiling_server.py", [], [], None),
    "ceiling-perframe": ("ceiling, one write per frame", "ceiling_server.py", ["--per-frame"], [], None),
    # the floor: a C epoll echo server doing only the syscalls (bench/servers/floor_server.c, built
    # with `cc -O2` into the run's temp directory); no broadcast, so no fan-out
    "floor-c": ("floor: C epoll, syscalls only", "floor_server.c", [], ["cc"], ("echo", "rr", "single")),
}
# ceiling: its name before it had two flavours; floor-py: the thinnest Python (uvloop BufferedProtocol)
# echo that writes as it reads, which is what ceiling-perframe is
ALIASES = {"ceiling": "ceiling-batched", "floor-py": "ceiling-perframe"}
# --base COMMIT: these servers again as "<name>@base", wsfast exported at that commit (an A/B in one run)
BASE_SERVERS = ["wsfast", "wsfast-async", "wsfast-python"]
for _name in BASE_SERVERS:
    _label, *_rest = SERVERS[_name]
    SERVERS[_name + "@base"] = (_label + " @base", *_rest)
ORDER = list(SERVERS)
DEFAULT_SERVERS = ["wsfast", "wsfast-async", "picows", "picows-batched", "websockets", "aiohttp", "tornado",
                   "ceiling-batched", "ceiling-perframe", "floor-c"]

ECHO_SIZES = [64, 256, 8192, 100_000, 2**20]
RR_CASES = [(16, 64), (16, 256), (16, 8192), (256, 256)]  # (connections, size), one message in flight each
LARGE = 16 * 2**20
SIZE_LABEL = {64: "64 B", 256: "256 B", 8192: "8 KiB", 100_000: "100 KB", 2**20: "1 MiB", LARGE: "16 MiB"}
CLIENT_BOUND_PCT = 95.0

PROFILES = {
    # echo seconds (warm-up, measured); fan-out (pattern, clients, messages); idle connections; conns target
    # (--fanout-10k adds corked fan-out to 10,000 clients; --sizes overrides echo_sizes)
    "full": {"warmup": 0.3, "duration": 1.2, "echo_sizes": [64, 256, 8192, 2**20],
             "fanout": [("lockstep", 1000, 200), ("corked", 1000, 200)], "fanout_10k": ("corked", 10000, 40),
             "idle": 10000, "conns": 50000, "large_count": 12, "rounds": 3},
    "quick": {"warmup": 0.3, "duration": 0.8, "echo_sizes": [64, 256, 8192, 2**20],
              "fanout": [("lockstep", 1000, 100), ("corked", 1000, 100)], "fanout_10k": ("corked", 10000, 30),
              "idle": 5000, "conns": 10000, "large_count": 3, "rounds": 3},
    "smoke": {"warmup": 0.1, "duration": 0.3, "echo_sizes": [64], "fanout": [("lockstep", 20, 20)],
              "fanout_10k": ("corked", 100, 20), "idle": 20, "conns": 20, "large_count": 1, "rounds": 1},
}


# -- cases ------------------------------------------------------------------------


def cases(group, profile, conns_target):
    """(case id, loadclient arguments) of a scenario group."""
    p = PROFILES[profile]
    t = ["--warmup", str(p["warmup"]), "--duration", str(p["duration"])]
    if group == "echo":
        out = [(f"echo-{s}", ["echo", "--size", str(s)] + t) for s in p["echo_sizes"]]
        if profile != "smoke":  # the same load from a client that writes each message separately
            out.append(("echosplit-256", ["echo", "--size", "256", "--split"] + t))
        return out
    if group == "rr":
        rr = RR_CASES[:1] if profile == "smoke" else p.get("rr_cases", RR_CASES)
        return [(f"rr{n}-{s}", ["echo", "--connections", str(n), "--inflight", "1", "--size", str(s)] + t)
                for n, s in rr]
    if group == "single":
        return [("latency-64", ["latency", "--size", "64"] + t),
                (f"large-{LARGE}", ["large", "--count", str(p["large_count"]), "--duration", "20"])]
    if group == "fanout":
        out = []
        for pattern, n, m in p["fanout"]:
            # lockstep: one broadcast per command, one command outstanding;
            # corked: 10 broadcasts per command, 4 commands outstanding
            per = ["--wave-deliveries", str(n), "--window", "1"] if pattern == "lockstep" else \
                ["--wave-deliveries", str(10 * n), "--window", "4"]
            out.append((f"fanout-{pattern}-{n}", ["fanout", "--clients", str(n), "--messages", str(m)] + per))
        return out
    if group == "idle":
        return [(f"idle-{p['idle']}", ["idle", "--connections", str(p["idle"])])]
    if group == "conns":
        return [(f"conns-{conns_target}", ["conns", "--connections", str(conns_target), "--sources", "4",
                                           "--timeout", "120"])]
    raise ValueError(group)


GROUPS = ["echo", "rr", "single", "fanout", "idle", "conns"]
DEFAULT_GROUPS = ["echo", "rr", "single", "fanout"]


def client_cases(group, profile, conns_target, client):
    """The cases of a group that ``client`` can run (picows_client.py: echo and latency)."""
    out = cases(group, profile, conns_target)
    if client != "loadclient":
        out = [(c, a) for c, a in out if a[0] in ("echo", "latency")]
    return out


def runs_group(server, group):
    groups = SERVERS[server][4]
    return groups is None or group in groups


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


def build_c_server(script, workdir):
    """Compile bench/servers/<script> (C) with ``cc -O2`` into ``workdir``,
    once per run; return the executable's path."""
    exe = os.path.join(workdir, os.path.splitext(script)[0])
    if not os.path.exists(exe):
        out = subprocess.run(["cc", "-O2", "-o", exe, os.path.join(SERVERS_DIR, script)],
                             capture_output=True, text=True, check=False)
        if out.returncode:
            raise RuntimeError(f"cc {script} failed: {out.stderr[-500:]}")
    return exe


def start_server(name, cpu, env, log):
    _, script, extra, _, _ = SERVERS[name]
    port = free_port()
    if script.endswith(".c"):
        prog = [build_c_server(script, env["WSFAST_BENCH_WORKDIR"])]
    else:
        prog = [sys.executable, os.path.join(SERVERS_DIR, script)]
    cmd = pin(cpu) + prog + ["--port", str(port)] + extra
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


def run_client(args, port, server_pid, cpu, timeout, client="loadclient"):
    script, extra = CLIENTS[client]
    cmd = pin(cpu) + [sys.executable, script] + args[:1] + ["--port", str(port), "--server-pid",
                                                             str(server_pid)] + args[1:] + extra
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=timeout, cwd=HERE, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"load client timed out after {timeout} s"}
    lines = out.stdout.decode().strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        return {"error": f"load client exit {out.returncode}: {out.stderr.decode()[-500:]}"}


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


def ok_runs(results, case, server):
    return [r for r in results.get(case, {}).get(server, []) if "error" not in r]


def client_bound(runs):
    """Whether the load client was the limit (median client CPU ≥ 95 %)."""
    c = med([r.get("client_cpu_pct") for r in runs])
    return c is not None and c >= CLIENT_BOUND_PCT


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
    return f"{s:.0f} / {c:.0f}{' ‡' if client_bound(ok) else ''}"


def rate_cpu_cell(results, case, server, rate_key, cpu_key):
    """'rate · µs' (medians), ‡ when client-bound, 'error'/'–' otherwise."""
    runs = results.get(case, {}).get(server, [])
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return "error" if runs else "–"
    rate, cpu = med([r.get(rate_key) for r in ok]), med([r.get(cpu_key) for r in ok])
    return f"{fmt(rate)} · {fmt(cpu)} µs{' ‡' if client_bound(ok) else ''}"


def metric(results, case, server, key, allow_client_bound=False):
    """Median of ``key`` over the rounds; None for a client-bound cell (it
    stays out of ratios) unless ``allow_client_bound``."""
    runs = ok_runs(results, case, server)
    if not runs or (client_bound(runs) and not allow_client_bound):
        return None
    return med([r.get(key) for r in runs])


def cost_ratio(results, case, a, b):
    """server CPU per round trip (or delivery) of a ÷ of b; None if either
    cell is missing or client-bound."""
    key = "server_cpu_us_per_delivery" if case.startswith("fanout") else "server_cpu_us_per_rt"
    x, y = metric(results, case, a, key), metric(results, case, b, key)
    return x / y if x and y else None


def case_label(case):
    kind, _, rest = case.partition("-")
    if kind == "echo":
        return f"pipelined 16 × 8, {SIZE_LABEL[int(rest)]}"
    if kind == "echosplit":
        return f"pipelined 16 × 8, {SIZE_LABEL[int(rest)]}, one client write per message"
    if kind.startswith("rr"):
        return f"request/response {int(kind[2:])} × 1, {SIZE_LABEL[int(rest)]}"
    if kind == "latency":
        return f"latency 1 × 1, {SIZE_LABEL[int(rest)]}"
    if kind == "large":
        return f"1 × 2, {SIZE_LABEL[int(rest)]}"
    if kind == "fanout":
        pattern, n = rest.split("-")
        return f"fan-out {pattern}, {int(n):,} clients, 256 B"
    return case


def short_label(case):
    """A chart's tick: '16 × 8\n64 B', '16 × 1\n256 B', ..."""
    kind, _, rest = case.partition("-")
    size = SIZE_LABEL.get(int(rest), rest) if rest.isdigit() else rest
    shape = {"echo": "16 × 8", "echosplit": "16 × 8 split", "latency": "1 × 1", "large": "1 × 2"}.get(kind)
    if shape is None and kind.startswith("rr"):
        shape = f"{kind[2:]} × 1"
    return f"{shape or kind}\n{size}"


def rt_cases(results):
    rr = sorted({(n, s) for n, s in RR_CASES} | {tuple(map(int, c[2:].split("-"))) for c in results
                                                   if c.startswith("rr")})  # --rr-sizes adds some
    out = [f"echo-{s}" for s in ECHO_SIZES] + ["echosplit-256"] + [f"rr{n}-{s}" for n, s in rr] + ["latency-64", f"large-{LARGE}"]
    return [c for c in out if c in results]


def fanout_cases(results):
    return sorted((c for c in results if c.startswith("fanout-")),
                  key=lambda c: (int(c.rsplit("-", 1)[1]), c))


# (label, a, b): server CPU per round trip of a ÷ of b
COMPARISONS = [
    ("wsfast ÷ picows", "wsfast", "picows"),
    ("wsfast async ÷ picows", "wsfast-async", "picows"),
    ("wsfast async ÷ wsfast sync", "wsfast-async", "wsfast"),
    ("wsfast ÷ ceiling-batched", "wsfast", "ceiling-batched"),
    ("picows ÷ ceiling-perframe", "picows", "ceiling-perframe"),
    ("picows-batched ÷ picows", "picows-batched", "picows"),
    ("ceiling-batched ÷ ceiling-perframe", "ceiling-batched", "ceiling-perframe"),
    ("wsfast ÷ websockets", "wsfast", "websockets"),
    ("picows ÷ floor-c", "picows", "floor-c"),
    ("ceiling-perframe ÷ floor-c", "ceiling-perframe", "floor-c"),
    ("wsfast ÷ floor-c", "wsfast", "floor-c"),
    ("floor-c ÷ picows", "floor-c", "picows"),
    ("ceiling-perframe ÷ picows", "ceiling-perframe", "picows"),
    ("wsfast ÷ wsfast@base", "wsfast", "wsfast@base"),
    ("wsfast async ÷ wsfast async@base", "wsfast-async", "wsfast-async@base"),
]


def ratio_checks(results, servers, conns_target, nofile_hard):
    """[(target, measured text, PASS/MISS/n/a)] from medians of this run;
    client-bound cells give n/a."""
    checks = []

    def add(target, value, ok, detail):
        status = "n/a" if value is None else ("PASS" if ok else "MISS")
        checks.append((target, detail, status))

    def x(v):
        return f"{v:.2f}×" if v is not None else "– (missing or client-bound)"

    def rate_ratio(case, a, b):
        u, v = metric(results, case, a, "round_trips_per_s"), metric(results, case, b, "round_trips_per_s")
        return u / v if u and v else None

    have = set(servers)
    for s in ECHO_SIZES:
        case = f"echo-{s}"
        if case not in results:
            continue
        if {"wsfast", "picows"} <= have:
            r = rate_ratio(case, "wsfast", "picows")
            add(f"pipelined {SIZE_LABEL[s]}: wsfast round trips/s ≥ 1.2× picows", r, r is not None and r >= 1.2, x(r))
        if s in (64, 256) and {"wsfast", "ceiling-batched"} <= have:
            r = rate_ratio(case, "wsfast", "ceiling-batched")
            add(f"pipelined {SIZE_LABEL[s]}: wsfast round trips/s ≥ 0.85× ceiling-batched", r,
                r is not None and r >= 0.85, x(r))
        if s in (256, 8192) and {"wsfast", "wsfast-async"} <= have:
            r = cost_ratio(results, case, "wsfast-async", "wsfast")
            add(f"pipelined {SIZE_LABEL[s]}: async handler's server CPU/round trip ≤ 1.5× the sync one's", r,
                r is not None and r <= 1.5, x(r))
        for py in ("wsfast-python", "wsfast-python-nonumpy"):
            if {py, "websockets"} <= have:
                r = rate_ratio(case, py, "websockets")
                add(f"pipelined {SIZE_LABEL[s]}: {SERVERS[py][0]} round trips/s ≥ websockets", r,
                    r is not None and r >= 1.0, x(r))
    for prefix in ("uvicorn", "starlette"):  # issue 14: the ASGI class against uvicorn's default
        a, b = f"{prefix}-wsfast", f"{prefix}-websockets-sansio"
        if not {a, b} <= have:
            continue
        for s in (64, 256, 8192):
            for case, kind in ((f"echo-{s}", "pipelined"), (f"rr16-{s}", "one in flight, 16 ×")):
                if case in results:
                    r = rate_ratio(case, a, b)
                    add(f"{kind} {SIZE_LABEL[s]}: {SERVERS[a][0]} round trips/s ≥ 2× {SERVERS[b][0]}", r,
                        r is not None and r >= 2.0, x(r))
                    # the same target in the unit a shared machine cannot blur: at saturation
                    # round trips/s is 1 / (server CPU per round trip)
                    r = cost_ratio(results, case, a, b)
                    add(f"{kind} {SIZE_LABEL[s]}: {SERVERS[a][0]} server CPU/round trip ≤ 0.5× "
                        f"{SERVERS[b][0]}'s", r, r is not None and r <= 0.5, x(r))
        for case in sorted(c for c in results if c.startswith("idle-")):
            u = metric(results, case, a, "bytes_per_connection", allow_client_bound=True)
            v = metric(results, case, b, "bytes_per_connection", allow_client_bound=True)
            r = u / v if u and v else None
            add(f"{SERVERS[a][0]}: memory per idle connection ≤ {SERVERS[b][0]}'s", r, r is not None and r <= 1.0,
                f"{u / 1024:.2f} vs {v / 1024:.2f} KiB ({x(r)})" if r is not None else "–")
    for n, s in RR_CASES:
        case = f"rr{n}-{s}"
        if case in results and n == 16 and {"wsfast", "picows"} <= have:
            r = cost_ratio(results, case, "wsfast", "picows")
            add(f"request/response 16 × 1, {SIZE_LABEL[s]}: wsfast server CPU/round trip ≤ 0.75× picows", r,
                r is not None and r <= 0.75, x(r))
        if case in results and n == 16 and {"floor-c", "picows"} <= have:
            # can any server reach the target here? the one doing only the syscalls
            r = cost_ratio(results, case, "floor-c", "picows")
            add(f"request/response 16 × 1, {SIZE_LABEL[s]}: the floor (C, syscalls only) ≤ 0.75× picows", r,
                r is not None and r <= 0.75, x(r))
    big = f"large-{LARGE}"
    if big in results and {"wsfast", "picows"} <= have:
        u, v = metric(results, big, "wsfast", "mb_per_s"), metric(results, big, "picows", "mb_per_s")
        r = u / v if u and v else None
        add("16 MiB: wsfast MB/s ≥ 1.0× picows", r, r is not None and r >= 1.0, x(r))
    for case in sorted(c for c in results if c.startswith("idle-")):
        v = metric(results, case, "wsfast", "bytes_per_connection", allow_client_bound=True)
        add("wsfast ≤ 6 KiB per idle connection", v, v is not None and v <= 6 * 1024,
            f"{v / 1024:.2f} KiB" if v is not None else "–")
    for case in fanout_cases(results):
        if {"wsfast", "picows"} <= have:
            r = cost_ratio(results, case, "wsfast", "picows")
            add(f"{case_label(case)}: wsfast server CPU/delivery ≤ 0.75× picows", r, r is not None and r <= 0.75,
                x(r))
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


SUMMARY_SERVERS = ["wsfast", "wsfast-async", "picows", "picows-batched", "websockets", "aiohttp", "tornado",
                   "ceiling-batched", "ceiling-perframe", "floor-c"]
SUMMARY_RATIOS = [("wsfast ÷ picows", "wsfast", "picows"), ("wsfast async ÷ picows", "wsfast-async", "picows")]


def summary_table(results, servers):
    """The README table: one row per scenario, 'rate · server CPU µs' per
    server (‡ client-bound), then ratios of server CPU per round trip."""
    cols = [s for s in SUMMARY_SERVERS if s in servers]
    ratios = [(t, a, b) for t, a, b in SUMMARY_RATIOS if a in servers and b in servers]
    short = {"wsfast": "wsfast", "wsfast-async": "wsfast, async handler", "picows-batched": "picows, batched",
             "ceiling-batched": "ceiling, batched", "ceiling-perframe": "ceiling, per frame", "floor-c": "floor (C)"}
    L = ["| scenario | " + " | ".join([short.get(s, s) for s in cols] + [f"CPU {t}" for t, _, _ in ratios]) + " |",
         "|---|" + "---|" * (len(cols) + len(ratios))]
    for c in rt_cases(results) + fanout_cases(results):
        if c.startswith("fanout"):
            keys = ("deliveries_per_s", "server_cpu_us_per_delivery")
        elif c.startswith("large"):
            keys = ("mb_per_s", "server_cpu_us_per_rt")
        else:
            keys = ("round_trips_per_s", "server_cpu_us_per_rt")
        row = [rate_cpu_cell(results, c, s, *keys) for s in cols]
        if c.startswith("large"):
            row = [x.replace(" µs", " µs/msg") for x in row]
        rr = []
        for _, a, b in ratios:
            q = cost_ratio(results, c, a, b)
            rr.append(f"{q:.2f}" if q is not None else "–")
        unit = {"large": " (MB/s)", "fanout": " (deliveries/s)"}.get(c.split("-")[0], "")
        L.append(f"| {case_label(c)}{unit} | " + " | ".join(row + rr) + " |")
        if c.startswith(("latency", "rr")):
            lat = []
            for s in cols:
                runs = ok_runs(results, c, s)
                p50, p99 = med([r.get("rtt_p50_us") for r in runs]), med([r.get("rtt_p99_us") for r in runs])
                lat.append(f"{fmt(p50)} / {fmt(p99)}" if p50 is not None else "–")
            L.append("| ↳ RTT p50 / p99 µs | " + " | ".join(lat + [""] * len(ratios)) + " |")
        if c.startswith("fanout"):
            lat = []
            for s in cols:
                runs = ok_runs(results, c, s)
                p50, p99 = (med([r.get("last_delivery_p50_ms") for r in runs]),
                            med([r.get("last_delivery_p99_ms") for r in runs]))
                lat.append(f"{fmt(p50)} / {fmt(p99)}" if p50 is not None else "–")
            L.append("| ↳ last client has it, p50 / p99 ms | " + " | ".join(lat + [""] * len(ratios)) + " |")
    return "\n".join(L)


def write_tables(results, meta, servers, checks, path):
    L = []
    w = L.append
    labels = {s: SERVERS[s][0] for s in servers}
    la0, la1 = meta["loadavg_start"], meta.get("loadavg_end", ("?",) * 3)
    w("# wsfast whole-system benchmarks\n")
    w(f"Run {meta['started']} on {meta['machine']['cpu']} ({meta['machine']['cpus']} CPUs), "
      f"{meta['rounds']} interleaved rounds, profile `{meta['profile']}`, {meta.get('seconds', '?')} s; wsfast at "
      f"`{meta['wsfast_commit']}`{' (work tree with uncommitted changes)' if meta.get('wsfast_dirty') else ''}"
      f"{', exported and built outside the checkout' if meta.get('exported') else ''}"
      f"{'; @base: wsfast at `' + meta['base_commit'] + '`' if meta.get('base_commit') else ''}. "
      f"Command: `{meta['command']}`. Load average (1, 5, 15 min) at the start "
      f"{', '.join(str(round(v, 2)) for v in la0)}, at the end {', '.join(str(round(v, 2)) for v in la1)}: "
      f"the machine is shared. Versions: {', '.join(f'{k} {v}' for k, v in meta['machine']['versions'].items() if v)}, "
      f"Python {meta['machine']['python']}. Load client: {meta.get('client', 'loadclient')}. "
      f"Per-round summaries: system.json.\n")
    w("Server pinned to CPU {0}, load client to CPU {1}. Each cell: median over the rounds. "
      "**‡**: client-bound (the load client used ≥ 95 % of its core; the server may be faster than the "
      "number says); such cells are left out of every ratio.\n".format(meta.get("server_cpu"), meta.get("client_cpu")))
    if any(s in servers for s in SUMMARY_SERVERS):  # (not in a run of other servers only: the ASGI one)
        w("## Summary (the README table): rate · server CPU µs per round trip (fan-out: per delivery)\n")
        w(summary_table(results, servers))
        w("\nThe ratio columns are server CPU per round trip (per delivery), medians, ‡ cells left out; "
          "< 1: wsfast is cheaper.\n")
    w("## Targets (ratios of medians in this run)\n")
    w("| target | measured | |\n|---|---|---|")
    for target, detail, status in checks:
        w(f"| {target} | {detail} | **{status}** |")
    w("")

    rts = rt_cases(results)
    if rts:
        w("## Round trips: round trips/s · server CPU µs per round trip\n")
        w("| scenario | " + " | ".join(labels[s] for s in servers) + " |")
        w("|---|" + "---|" * len(servers))
        for c in rts:
            key = "mb_per_s" if c.startswith("large") else "round_trips_per_s"
            cells = [rate_cpu_cell(results, c, s, key, "server_cpu_us_per_rt") for s in servers]
            w(f"| {case_label(c)}{' (MB/s)' if c.startswith('large') else ''} | " + " | ".join(cells) + " |")
        w("\nServer CPU µs per round trip, median (min–max):\n")
        w("| scenario | " + " | ".join(labels[s] for s in servers) + " |")
        w("|---|" + "---|" * len(servers))
        for c in rts:
            w(f"| {case_label(c)} | " + " | ".join(cell(results[c].get(s, []), "server_cpu_us_per_rt")
                                                  for s in servers) + " |")
        w("\nRound trips/s (16 MiB: MB/s), median (min–max):\n")
        w("| scenario | " + " | ".join(labels[s] for s in servers) + " |")
        w("|---|" + "---|" * len(servers))
        for c in rts:
            key = "mb_per_s" if c.startswith("large") else "round_trips_per_s"
            w(f"| {case_label(c)} | " + " | ".join(cell(results[c].get(s, []), key) for s in servers) + " |")
        w("\nCPU % server / client:\n")
        w("| scenario | " + " | ".join(labels[s] for s in servers) + " |")
        w("|---|" + "---|" * len(servers))
        for c in rts:
            w(f"| {case_label(c)} | " + " | ".join(cpu_cell(results[c].get(s, [])) for s in servers) + " |")
        comps = [(t, a, b) for t, a, b in COMPARISONS if a in servers and b in servers]
        if comps:
            w("\n## Server CPU per round trip, ratios of medians (< 1: the first is cheaper; ‡ cells left out)\n")
            w("| scenario | " + " | ".join(t for t, _, _ in comps) + " |")
            w("|---|" + "---|" * len(comps))
            for c in rts + fanout_cases(results):
                row = []
                for _, a, b in comps:
                    r = cost_ratio(results, c, a, b)
                    row.append(f"{r:.2f}" if r is not None else "–")
                w(f"| {case_label(c)} | " + " | ".join(row) + " |")
        lat = [c for c in rts if c.startswith(("latency", "rr"))]
        if lat:
            w("\n## Round-trip time, one message in flight per connection: p50 / p99 µs\n")
            w("| scenario | " + " | ".join(labels[s] for s in servers) + " |")
            w("|---|" + "---|" * len(servers))
            for c in lat:
                row = []
                for s in servers:
                    runs = ok_runs(results, c, s)
                    p50, p99 = med([r.get("rtt_p50_us") for r in runs]), med([r.get("rtt_p99_us") for r in runs])
                    row.append(f"{fmt(p50)} / {fmt(p99)}" if p50 is not None else "–")
                w(f"| {case_label(c)} | " + " | ".join(row) + " |")
        w("\n**Reading.** Two processes on two vCPUs of a VM: whenever one side runs out of work it "
          "sleeps, and waking it costs tens of µs of wall time, so rates bunch the fast servers together "
          "(and are often the load client's limit, ‡). Server CPU µs per round trip is what each server "
          "costs, whatever the scheduling did; compare that.\n")
    fan = fanout_cases(results)
    if fan:
        w("## Fan-out of 256 B broadcasts\n")
        w("*lockstep*: one broadcast per command, the next command sent when the last client has the "
          "previous message (nothing to join: one send per connection per message is the floor, "
          "ceiling-perframe). *corked*: 10 broadcasts per command and 4 commands outstanding, so many "
          "broadcasts fall in one loop turn and a server that corks writes per connection sends them in "
          "one syscall (ceiling-batched does that per command).\n")
        w("| scenario | " + " | ".join(labels[s] for s in servers) + " |")
        w("|---|" + "---|" * len(servers))
        for c in fan:
            w(f"| {case_label(c)}: deliveries/s · server CPU µs per delivery | " +
              " | ".join(rate_cpu_cell(results, c, s, "deliveries_per_s", "server_cpu_us_per_delivery")
                         for s in servers) + " |")
            w(f"| last client has it, p50 / p99 ms | " + " | ".join(
                f"{fmt(med([r.get('last_delivery_p50_ms') for r in ok_runs(results, c, s)]))} / "
                f"{fmt(med([r.get('last_delivery_p99_ms') for r in ok_runs(results, c, s)]))}"
                if ok_runs(results, c, s) else "–" for s in servers) + " |")
            w(f"| server CPU µs per delivery, median (min–max) | " +
              " | ".join(cell(results[c].get(s, []), "server_cpu_us_per_delivery") for s in servers) + " |")
            w(f"| CPU % server / client | " + " | ".join(cpu_cell(results[c].get(s, [])) for s in servers) + " |")
        w("")
    for c in (c for c in results if c.startswith("idle-")):
        n = int(c.split("-")[1])
        w(f"## Memory per idle connection ({n:,} upgraded, silent connections)\n")
        w("| server | KiB per connection | server RSS before → after (MiB) |")
        w("|---|---|---|")
        for s in servers:
            runs = ok_runs(results, c, s)
            rss = (f"{med([r['server_rss_before'] for r in runs]) / 2**20:.0f} → "
                   f"{med([r['server_rss_after'] for r in runs]) / 2**20:.0f}") if runs else "–"
            w(f"| {labels[s]} | {cell(results[c].get(s, []), 'bytes_per_connection', 1 / 1024)} | {rss} |")
        w("")
    for c in (c for c in results if c.startswith("conns-")):
        n = int(c.split("-")[1])
        w(f"## Connection count: {n:,} concurrent connections from 4 source addresses\n")
        if n < 50000:
            w(f"50,000 cannot be held by one process on this machine: RLIMIT_NOFILE's hard limit is "
              f"{meta['machine']['nofile_hard']:,}; the run opens as many as the limit allows.\n")
        w("| server | accepts/s (upgrades) | server RSS MiB | still echoing (worst round) | CPU % |")
        w("|---|---|---|---|---|")
        for s in servers:
            runs = results[c].get(s, [])
            ok = [r for r in runs if "error" not in r]
            echo = (f"{min(r['echoed'] for r in ok):,} / {n:,}" if ok else ("error" if runs else "–"))
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
              "websockets": "#9c36b5", "tornado": "#868e96", "ceiling-batched": "#343a40",
              "ceiling-perframe": "#777777", "floor-c": "#000000", "wsfast-async": "#0b3d91", "picows-batched": "#f08c00",
              "uvicorn-wsfast": "#1f6feb", "uvicorn-websockets-sansio": "#9c36b5", "uvicorn-wsproto": "#c2255c",
              "starlette-wsfast": "#74c0fc", "starlette-websockets-sansio": "#da77f2", "granian": "#f59f00"}
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

    rts = [c for c in rt_cases(results) if not c.startswith("large")]
    if rts:  # server CPU per round trip: rates here are shaped by wake-ups and the load client
        fig, ax = plt.subplots(figsize=(max(10, 1.1 * len(rts)), 5.5))
        bars(ax, rts, "server_cpu_us_per_rt")
        ax.set_yscale("log")
        ax.set_xticks(range(len(rts)), [short_label(c) for c in rts], fontsize=8)
        ax.set_ylabel("server CPU µs per round trip (log scale, lower is better)")
        ax.set_title("Server CPU per round trip (median, min–max over the rounds)")
        ax.legend(fontsize=7, ncol=3)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(os.path.join(out, "system_echo.png"), dpi=110)
        plt.close(fig)
        written.append("system_echo.png")
    fan = fanout_cases(results)
    if fan:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        for ax, key, title in ((axes[0], "server_cpu_us_per_delivery", "server CPU µs per delivery (lower is better)"),
                               (axes[1], "last_delivery_p99_ms", "last client has it, p99 ms (lower is better)")):
            bars(ax, fan, key)
            ax.set_xticks(range(len(fan)), [f"{c.split('-')[1]}, {int(c.split('-')[2]):,}" for c in fan])
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


def server_env(name, env):
    """The environment of server ``name``: "<name>@base" imports the --base tree."""
    if name.endswith("@base"):
        return dict(env, WSFAST_TREE=env["WSFAST_BASE_TREE"])
    return env


def available(name, env):
    """Whether the server's modules import where the servers run (wsfast
    from WSFAST_TREE or this checkout)."""
    mods = SERVERS[name][3]
    if mods == ["cc"]:  # a C server, built at run time
        return shutil.which("cc") is not None
    if not mods:
        return True
    tree = at_commit.tree(server_env(name, env))
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
    parser.add_argument("--servers", default=None,
                        help=f"comma-separated, from {','.join(ORDER)} (default {','.join(DEFAULT_SERVERS)})")
    parser.add_argument("--scenarios", default=None,
                        help=f"comma-separated, from {','.join(GROUPS)} (default {','.join(DEFAULT_GROUPS)})")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3)")
    at_commit.add_option(parser)
    parser.add_argument("--base", default=None,
                        help="also build wsfast at this commit; servers named <name>@base (wsfast@base, "
                             "wsfast-async@base, wsfast-python@base) run it, interleaved with the rest: an A/B")
    parser.add_argument("--out", default=None, help="directory for system.md/json/png (default bench/results)")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--sizes", default=None,
                        help=f"pipelined echo payload sizes, comma-separated (default {PROFILES['full']['echo_sizes']})")
    parser.add_argument("--rr-sizes", default=None,
                        help="request/response (16 connections, one message in flight each) payload sizes, "
                             f"comma-separated (default {[s for n, s in RR_CASES if n == 16]}; 256 × 1 at 256 B "
                             "stays)")
    parser.add_argument("--fanout-10k", action="store_true", help="fan-out: add corked broadcasts to 10,000 clients")
    parser.add_argument("--skip", default="",
                        help="server:group pairs not to run, comma-separated (e.g. tornado:fanout,aiohttp:fanout)")
    parser.add_argument("--client", default="loadclient", choices=list(CLIENTS),
                        help="the load client: loadclient (default), or picows_client.py (echo and latency "
                             "only) to cross-check it; picows-cork: the same with TCP_CORK around each answer")
    args = parser.parse_args(argv)

    profile = "smoke" if args.smoke else "quick" if args.quick else "full"
    p = PROFILES[profile]
    if args.sizes:
        p["echo_sizes"] = [int(x) for x in args.sizes.split(",")]
    if args.rr_sizes:
        p["rr_cases"] = [(16, int(x)) for x in args.rr_sizes.split(",")] + [c for c in RR_CASES if c[0] != 16]
    if args.fanout_10k:
        p["fanout"] = p["fanout"] + [p["fanout_10k"]]
    rounds = args.rounds or p["rounds"]
    signal.signal(signal.SIGTERM, _on_signal)
    workdir = tempfile.mkdtemp(prefix="wsfast-bench-")
    env, info = at_commit.prepare(args.commit, workdir)
    env["WSFAST_BENCH_WORKDIR"] = workdir  # where C servers are built
    commit, dirty = info["commit"], info["dirty"]
    if args.base:
        base_dir = os.path.join(workdir, "base")
        os.makedirs(base_dir)
        print(f"building wsfast at {args.base} (base) in {base_dir} ...", file=sys.stderr)
        env["WSFAST_BASE_TREE"], _ = at_commit.wsfast_tree(args.base, base_dir)
    if args.smoke:
        servers = ["wsfast"] if available("wsfast", env) else ["wsfast-python"]
        groups = ["echo"]
    else:
        servers, groups = DEFAULT_SERVERS, DEFAULT_GROUPS
    if args.servers:
        servers = [ALIASES.get(s, s) for s in args.servers.split(",") if s]
    if args.scenarios:
        groups = [g for g in args.scenarios.split(",") if g]
    for s in servers:
        if s not in SERVERS:
            parser.error(f"unknown server {s!r}")
        if s.endswith("@base") and not args.base:
            parser.error(f"{s} needs --base COMMIT")
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
        "wsfast_commit": commit, "wsfast_dirty": dirty, "exported": bool(args.commit), "pinned": pinned,
        "base_commit": git("rev-parse", args.base) if args.base else None,
        "server_cpu": server_cpu, "client_cpu": client_cpu, "conns_target": conns_target,
        "machine": machine_info(), "loadavg_start": os.getloadavg(), "banners": {}, "client": args.client,
    }
    results = {}
    skip = {tuple(x.split(":", 1)) for x in args.skip.split(",") if x}
    for x in skip:
        if len(x) != 2 or x[1] not in GROUPS:
            parser.error(f"--skip takes server:group pairs, not {':'.join(x)!r}")
    plan = [(r, g, s) for r in range(rounds) for g in groups for s in servers
            if runs_group(s, g) and (ALIASES.get(s, s), g) not in skip]
    total = sum(len(client_cases(g, profile, conns_target, args.client)) for _, g, _ in plan)
    bar = progress_bar(total, args.no_progress)
    log_path = os.path.join(workdir, "servers.log")
    t_start = time.time()
    try:
        with open(log_path, "w") as log:
            for r, group, server in plan:
                try:
                    proc, port, banner = start_server(server, server_cpu, server_env(server, env), log)
                except RuntimeError as exc:
                    for case, _ in client_cases(group, profile, conns_target, args.client):
                        results.setdefault(case, {}).setdefault(server, []).append({"error": str(exc)})
                        bar.update()
                    continue
                meta["banners"][server] = banner
                try:
                    for case, cargs in client_cases(group, profile, conns_target, args.client):
                        bar.set_description(f"round {r + 1}/{rounds} {case} {server}")
                        timeout = 300 if group in ("fanout", "conns") else 120
                        t_case = time.time()
                        res = run_client(cargs, port, proc.pid, client_cpu, timeout, args.client)
                        res["round"] = r + 1
                        res["wall_s"] = round(time.time() - t_case, 2)
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
