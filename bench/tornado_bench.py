"""The same Tornado application with Tornado's WebSocketHandler and with
wsfast.tornado's (bench/servers/tornado_server.py and
tornado_wsfast_server.py: one import differs), side by side in one run.

    python bench/tornado_bench.py                 # ~4 min, writes bench/results/tornado.md/json
    python bench/tornado_bench.py --quick         # ~1 min
    python bench/tornado_bench.py --rounds 5 --sizes 64,8192
    python bench/tornado_bench.py --commit HEAD   # wsfast as committed (git archive, built outside the tree)

Cases, each a fresh look at both servers, rounds interleaved (round 1:
tornado then wsfast.tornado, round 2: ..., a cell is the median over rounds):

* echo, pipelined: 16 connections x 8 binary messages in flight;
* echo, one in flight: 1 connection, 1 message at a time;
  payloads 64 B, 256 B, 1 KiB, 8 KiB, 64 KiB, 1 MiB; round trips/s and the
  server's CPU µs per round trip;
* idle: server RSS growth per idle WebSocket connection (over 2,000).

The server is pinned to CPU 0, bench/loadclient.py to CPU 1, both on uvloop
(the load client and the process handling come from bench/run.py). The target
(issue 13): >= 5x Tornado's echo throughput at 64 B - 8 KiB, less memory per
connection.
"""

import argparse
import json
import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import at_commit  # noqa: E402  (bench/at_commit.py: --commit, wsfast built outside the checkout)
import run as _run  # noqa: E402  (bench/run.py: server/client processes)

# name -> the server script in bench/servers
SERVERS = {"tornado": "tornado_server.py", "tornado-wsfast": "tornado_wsfast_server.py"}
SIZES = [64, 256, 1024, 8192, 65536, 2**20]


def label(size):
    return {64: "64 B", 256: "256 B", 1024: "1 KiB", 8192: "8 KiB", 65536: "64 KiB",
            2**20: "1 MiB"}.get(size, f"{size} B")


def cases(sizes, quick):
    warm, dur = ("0.2", "0.6") if quick else ("0.4", "1.5")
    t = ["--warmup", warm, "--duration", dur]
    out = []
    for size in sizes:
        out.append((f"pipelined-{size}", ["echo", "--size", str(size), "--connections", "16",
                                          "--inflight", "8"] + t))
    for size in sizes:
        out.append((f"one-{size}", ["echo", "--size", str(size), "--connections", "1",
                                    "--inflight", "1"] + t))
    out.append(("idle", ["idle", "--connections", "500" if quick else "2000"]))
    return out


def start_server(name, cpu, env, log):
    """Start a server (pinned to ``cpu``); return (process, port, banner)."""
    port = _run.free_port()
    cmd = _run.pin(cpu) + [sys.executable, os.path.join(_run.SERVERS_DIR, SERVERS[name]),
                           "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env,
                            cwd=_run.SERVERS_DIR)
    _run._children.append(proc)  # killed at exit, errors or not
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    banner = proc.stdout.readline().decode().strip() if ready else ""
    if not banner:
        _run.stop_server(proc)
        raise RuntimeError(f"{name} did not start (see {log.name})")
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, port, banner


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--sizes", default=None, help="comma-separated payload sizes (bytes)")
    parser.add_argument("--out", default=os.path.join(_run.HERE, "results"))
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--no-pin", action="store_true")
    at_commit.add_option(parser)
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 3)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else SIZES
    server_cpu = None if args.no_pin else args.server_cpu
    client_cpu = None if args.no_pin else args.client_cpu
    workdir = tempfile.mkdtemp(prefix="wsfast-tornado-bench-")
    env, info = at_commit.prepare(args.commit, workdir)
    os.makedirs(args.out, exist_ok=True)
    log = open(os.path.join(args.out, "tornado_servers.log"), "w")
    results = {name: {} for name in SERVERS}  # server -> case -> [runs]
    banners = {}
    case_list = cases(sizes, args.quick)
    for r in range(rounds):
        for name in SERVERS:
            for case, client_args in case_list:
                # One fresh server per case: no case inherits another's memory.
                proc, port, banner = start_server(name, server_cpu, env, log)
                banners[name] = banner
                try:
                    res = _run.run_client(client_args, port, proc.pid, client_cpu, timeout=120)
                finally:
                    _run.stop_server(proc)
                results[name].setdefault(case, []).append(res)
                status = res.get("error") or (
                    f"{res['round_trips_per_s']:,.0f} rt/s" if "round_trips_per_s" in res
                    else f"{res.get('bytes_per_connection', 0):,.0f} B/conn")
                print(f"round {r + 1}/{rounds} {name:15} {case:16} {status}", flush=True)
    log.close()

    def med(name, case, key):
        values = [run[key] for run in results[name].get(case, []) if run.get(key) is not None]
        return statistics.median(values) if values else None

    lines = [
        "# Tornado's WebSocketHandler vs wsfast.tornado (same app, one import changed)",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {rounds} interleaved rounds, "
        "median; server on one core (uvloop), bench/loadclient.py on another.",
        f"Load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
        "(round trips/s needs both processes to get their core; on a shared machine "
        "the server CPU µs per round trip is the figure that holds).",
        f"Servers: {banners.get('tornado', '?')} / {banners.get('tornado-wsfast', '?')}; "
        f"{at_commit.describe(info)}.",
        f"Command: `python bench/tornado_bench.py {' '.join(argv if argv is not None else sys.argv[1:])}`.",
        "",
    ]
    checks = []
    for kind, title in (("pipelined", "Echo, 16 connections x 8 in flight"),
                        ("one", "Echo, 1 connection, 1 message in flight")):
        lines += [f"## {title}", "",
                  "| payload | Tornado rt/s | wsfast.tornado rt/s | ratio | Tornado CPU µs/rt | "
                  "wsfast.tornado CPU µs/rt | rt per CPU-second ratio |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for size in sizes:
            case = f"{kind}-{size}"
            a, b = med("tornado", case, "round_trips_per_s"), med("tornado-wsfast", case,
                                                                   "round_trips_per_s")
            ca = med("tornado", case, "server_cpu_us_per_rt")
            cb = med("tornado-wsfast", case, "server_cpu_us_per_rt")
            ratio = b / a if a and b else None
            cpu_ratio = ca / cb if ca and cb else None
            lines.append(
                f"| {label(size)} | {a or 0:,.0f} | {b or 0:,.0f} | "
                f"{'%.1fx' % ratio if ratio else '-'} | {ca or 0:.1f} | {cb or 0:.1f} | "
                f"{'%.1fx' % cpu_ratio if cpu_ratio else '-'} |")
            if kind == "pipelined" and size <= 8192 and ratio:
                checks.append((f"pipelined echo {label(size)} >= 5x Tornado (round trips/s)",
                               ratio >= 5, f"{ratio:.1f}x"))
                checks.append((f"pipelined echo {label(size)} >= 5x Tornado (round trips per "
                               "server CPU-second)", cpu_ratio >= 5, f"{cpu_ratio:.1f}x"))
        lines.append("")
    ia = med("tornado", "idle", "bytes_per_connection")
    ib = med("tornado-wsfast", "idle", "bytes_per_connection")
    lines += ["## Memory per idle connection (server RSS growth)", "",
              "| Tornado | wsfast.tornado |", "|---:|---:|",
              f"| {(ia or 0) / 1024:.1f} KiB | {(ib or 0) / 1024:.1f} KiB |", ""]
    if ia and ib:
        checks.append(("less memory per idle connection than Tornado", ib < ia,
                       f"{ib / 1024:.1f} vs {ia / 1024:.1f} KiB"))
    lines += ["## Targets", ""]
    for what, ok, detail in checks:
        lines.append(f"* {'PASS' if ok else 'MISS'}: {what} ({detail})")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "tornado.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "tornado.json"), "w") as f:
        json.dump({"banners": banners, "rounds": rounds, "wsfast": info, "results": results}, f, indent=1)
    shutil.rmtree(workdir, ignore_errors=True)
    print(text)
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
