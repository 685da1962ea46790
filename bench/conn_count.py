"""Connection count: 50,000 concurrent WebSocket connections to wsfast, held
open and all still echoing, with SO_REUSEPORT server workers.

    python bench/conn_count.py --commit HEAD          # 3 workers × 50,000 and 1 worker × 19,500, 3 rounds
    python bench/conn_count.py --runs 3:50000 --rounds 1
    python bench/conn_count.py --runs 1:2000 --hold 1 --rounds 1 --out ''   # a smoke test, seconds

Why several server processes: on the benchmark VM no process may hold more
than 20,000 descriptors (RLIMIT_NOFILE hard limit 20,000, no
CAP_SYS_RESOURCE to raise it), so one server process tops out near 19,900
connections. A deployment past that runs several worker processes on one
port with SO_REUSEPORT and lets the kernel spread the connections; this
script does the same, and the clients too are several processes, each
under the limit.

One run (``--runs WORKERS:CONNECTIONS``):

1. W server workers (this file, ``server`` mode): a tiny wsfast echo app,
   ``await app.listen(port, host="127.0.0.1", reuse_port=True)``, soft
   RLIMIT_NOFILE raised to the hard limit, plus a private ``/stats`` port
   per worker (WebSockets open and opened, RSS, limit) so that each worker
   can be asked, whatever worker the kernel would pick for the shared port.
2. C client processes (``client`` mode; C = ceil(connections / 17,000)
   unless ``--clients``), asyncio on uvloop, each opening its share with at
   most ``--concurrency`` upgrades in flight, from its own source addresses
   127.0.0.2, 127.0.0.3, ... (``--sources-per-client`` each; the ephemeral
   port range, 28k ports, is per source address). They start together on
   the orchestrator's "go".
3. Accept rate: connections ÷ (last handshake done − first connect
   started), over all clients (CLOCK_MONOTONIC, shared by all processes).
4. Hold ``--hold`` seconds; then each worker's RSS (/proc) and its counts
   (/stats): the kernel's distribution over the workers.
5. Every connection sends one 16-byte binary message and waits for its
   echo (bench/loadclient.py's ``echo_check``): "N of N still echoing".
6. Clients abort their connections and exit; workers are killed.

Everything runs on 127.0.0.x. Every phase has a deadline; every process
started is killed on the way out, errors or not (and dies with its parent:
PR_SET_PDEATHSIG, plus a lifetime limit of its own).
"""

import argparse
import asyncio
import ctypes
import datetime
import http.client
import json
import math
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import at_commit  # noqa: E402  (bench/at_commit.py: --commit, wsfast built outside the checkout)

SELF = os.path.abspath(__file__)
PER_CLIENT = 17_000  # connections per client process (each under the 20,000-descriptor limit)
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def die_with_parent(lifetime):
    """Killed when the orchestrator dies, and gone after ``lifetime`` s anyway."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    signal.signal(signal.SIGALRM, signal.SIG_DFL)  # default action: terminate
    signal.alarm(int(lifetime))


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def emit(**event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


# -- server worker ------------------------------------------------------------------


def server_main(args):
    die_with_parent(args.lifetime)
    sys.path.insert(0, at_commit.tree())
    import uvloop

    import wsfast

    nofile = raise_nofile()

    class Echo(wsfast.WebSocketHandler):
        open_now = 0
        opened = 0

        def check_origin(self, origin):
            return True

        def open(self):
            Echo.open_now += 1
            Echo.opened += 1

        def on_message(self, message):
            self.write_message(message, binary=not isinstance(message, str))

        def on_close(self):
            Echo.open_now -= 1

    class Stats(wsfast.RequestHandler):
        def get(self):
            self.write({"pid": os.getpid(), "open": Echo.open_now, "opened": Echo.opened,
                        "rss": rss_bytes(os.getpid()), "nofile": nofile})

    async def serve():
        app = wsfast.Application([(r"/stats", Stats), (r"/.*", Echo)])
        await app.listen(args.port, host="127.0.0.1", reuse_port=True, backlog=args.backlog)
        stats = await app.listen(0, host="127.0.0.1")  # this worker's own port, for /stats
        emit(event="ready", pid=os.getpid(), stats_port=stats.port, nofile=nofile,
             wsfast=wsfast.__version__, codec=wsfast.IMPLEMENTATION, path=os.path.dirname(wsfast.__file__))
        await asyncio.Event().wait()  # until killed

    uvloop.run(serve())


# -- client -------------------------------------------------------------------------


def client_main(args):
    die_with_parent(args.lifetime)
    sys.path.insert(0, HERE)
    import loadclient
    import uvloop

    raise_nofile()
    sources = args.sources.split(",")

    async def line():
        text = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if not text:
            raise SystemExit("orchestrator gone")
        return text.strip()

    async def run():
        loop = asyncio.get_running_loop()
        emit(event="ready", pid=os.getpid())
        if await line() != "go":
            return
        conns = []
        times = {"first": None, "last": None}
        failed = [0]
        retries = [0]
        counter = iter(range(args.connections))

        async def connect(src, ready):
            sock = socket.socket()
            try:
                sock.setsockopt(socket.SOL_IP, loadclient.IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((src, 0))
                sock.setblocking(False)
                await loop.sock_connect(sock, ("127.0.0.1", args.port))
            except BaseException:
                sock.close()
                raise
            return await loop.create_connection(lambda: loadclient.Client(ready), sock=sock)

        async def worker():
            for i in counter:
                src = sources[i % len(sources)]
                for attempt in range(5):
                    ready = loop.create_future()
                    try:
                        await connect(src, ready)
                        conns.append(await asyncio.wait_for(ready, 30))
                        now = time.monotonic()
                        times["last"] = now
                        if times["first"] is None:
                            times["first"] = now
                        break
                    except (OSError, asyncio.TimeoutError):
                        retries[0] += 1
                        await asyncio.sleep(0.05 * (attempt + 1))
                else:
                    failed[0] += 1

        c0 = time.process_time()
        t0 = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(min(args.concurrency, args.connections))))
        t1 = time.monotonic()
        emit(event="opened", opened=len(conns), failed=failed[0], retries=retries[0], t_start=t0,
             t_first=times["first"], t_last=times["last"], t_end=t1, cpu_s=time.process_time() - c0,
             rss=rss_bytes(os.getpid()))
        if await line() != "echo":
            return
        lost = sum(1 for c in conns if c.lost)
        echoed, echo_s = await loadclient.echo_check(conns, args.timeout)
        emit(event="echoed", echoed=echoed, lost_before=lost, echo_s=echo_s, rss=rss_bytes(os.getpid()))
        await line()  # "close"
        loadclient.close_all(conns)
        emit(event="closed")

    uvloop.run(run())


# -- orchestrator -------------------------------------------------------------------


class Child:
    """A child process speaking one JSON object per line on stdout."""

    def __init__(self, name, argv, env, log):
        self.name = name
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=log, bufsize=0)
        self.buf = b""

    def send(self, text):
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def event(self, deadline):
        """The next event, or raise once ``deadline`` (monotonic) passes."""
        import select

        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no event before the deadline")
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise RuntimeError(f"{self.name} exited (code {self.proc.wait()})")
                self.buf += chunk
        text, self.buf = self.buf.split(b"\n", 1)
        return json.loads(text)

    def expect(self, name, deadline):
        ev = self.event(deadline)
        if ev.get("event") != name:
            raise RuntimeError(f"{self.name}: expected {name!r}, got {ev}")
        return ev

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_stats(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/stats")
        resp = conn.getresponse()
        return json.loads(resp.read())
    finally:
        conn.close()


def one_run(workers, connections, clients, args, env, log):
    """One run: W workers, C clients; returns a dict of every number."""
    children = []
    try:
        port = free_port()
        servers = [Child(f"server {i}", [sys.executable, SELF, "server", "--port", str(port),
                                          "--lifetime", str(args.lifetime)], env, log)
                   for i in range(workers)]
        children += servers
        deadline = time.monotonic() + 30
        info = [s.expect("ready", deadline) for s in servers]
        for s, i in zip(servers, info):
            s.pid, s.stats_port = i["pid"], i["stats_port"]
        rss0 = [rss_bytes(s.pid) for s in servers]

        shares = [connections // clients + (1 if k < connections % clients else 0) for k in range(clients)]
        spc = args.sources_per_client
        cl = []
        for k in range(clients):
            sources = ",".join(f"127.0.0.{2 + k * spc + j}" for j in range(spc))
            cl.append(Child(f"client {k}", [sys.executable, SELF, "client", "--port", str(port),
                                            "--connections", str(shares[k]), "--sources", sources,
                                            "--concurrency", str(args.concurrency), "--timeout", str(args.timeout),
                                            "--lifetime", str(args.lifetime)], env, log))
        children += cl
        deadline = time.monotonic() + 30
        for c in cl:
            c.expect("ready", deadline)

        scpu0 = [cpu_seconds(s.pid) for s in servers]
        for c in cl:
            c.send("go")
        deadline = time.monotonic() + args.timeout
        opened = [c.expect("opened", deadline) for c in cl]
        scpu1 = [cpu_seconds(s.pid) for s in servers]
        total = sum(o["opened"] for o in opened)
        t_start = min(o["t_start"] for o in opened)
        t_last = max(o["t_last"] for o in opened if o["t_last"] is not None)
        t_first = min(o["t_first"] for o in opened if o["t_first"] is not None)

        time.sleep(args.hold)
        held = [get_stats(s.stats_port) for s in servers]
        rss1 = [rss_bytes(s.pid) for s in servers]

        for c in cl:
            c.send("echo")
        deadline = time.monotonic() + args.timeout + 10
        echoed = [c.expect("echoed", deadline) for c in cl]
        after = [get_stats(s.stats_port) for s in servers]
        for c in cl:
            c.send("close")
        deadline = time.monotonic() + 30
        for c in cl:
            c.expect("closed", deadline)

        per_worker = []
        for i, s in enumerate(servers):
            n = held[i]["open"]
            per_worker.append({
                "pid": s.pid, "connections": n, "opened": held[i]["opened"], "open_after_echo": after[i]["open"],
                "share": n / total if total else None, "rss_before": rss0[i], "rss": rss1[i],
                "kib_per_connection": (rss1[i] - rss0[i]) / n / 1024 if n else None,
                "cpu_s_opening": scpu1[i] - scpu0[i], "nofile": held[i]["nofile"],
            })
        n_echoed = sum(e["echoed"] for e in echoed)
        return {
            "workers": workers, "clients": clients, "target": connections, "established": total,
            "failed": sum(o["failed"] for o in opened), "retries": sum(o["retries"] for o in opened),
            "open_s": t_last - t_start, "accepts_per_s": total / (t_last - t_start),
            "first_to_last_s": t_last - t_first,
            "held_by_servers": sum(w["connections"] for w in per_worker),
            "echoed": n_echoed, "all_echoing": n_echoed == total == connections,
            "lost_during_hold": sum(e["lost_before"] for e in echoed),
            "echo_s": max(e["echo_s"] for e in echoed),
            "server_rss_total": sum(rss1), "server_cpu_s_opening": sum(scpu1) - sum(scpu0),
            "client_cpu_s_opening": sum(o["cpu_s"] for o in opened),
            "client_rss_total": sum(e["rss"] for e in echoed),
            "per_worker": per_worker, "per_client": [
                {"connections": o["opened"], "failed": o["failed"], "retries": o["retries"],
                 "open_s": o["t_last"] - o["t_start"] if o["t_last"] else None,
                 "sources": spc} for o in opened],
            "wsfast": info[0]["wsfast"], "codec": info[0]["codec"], "wsfast_path": info[0]["path"],
        }
    finally:
        for c in reversed(children):
            c.kill()


# -- report -------------------------------------------------------------------------


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) * 1024
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        ports = f.read().split()
    from importlib.metadata import version

    return {"cpu": cpu, "cpus": os.cpu_count(), "memory_gib": round(mem / 2**30, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "nofile": resource.getrlimit(resource.RLIMIT_NOFILE), "uvloop": version("uvloop"),
            "ephemeral_ports": f"{ports[0]}–{ports[1]}"}


def mib(b):
    return f"{b / 2**20:.1f}"


def med_range(values, fmt="{:,.0f}"):
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    m = statistics.median(values)
    if len(values) == 1:
        return fmt.format(m)
    return f"{fmt.format(m)} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def write_report(path, results, meta):
    out = []
    w = out.append
    w("# Connection count: 50,000 concurrent connections, SO_REUSEPORT workers\n")
    w(f"Run {meta['started']} ({meta['seconds']:.0f} s in all); {meta['wsfast']}. "
      f"Command: `{meta['command']}`. Script: `bench/conn_count.py`.\n")
    m = meta["machine"]
    w(f"**Machine**: {m['cpu']}, {m['cpus']} vCPUs, {m['memory_gib']} GiB, Linux {m['kernel']}, "
      f"Python {m['python']}, uvloop {m['uvloop']}; ephemeral ports {m['ephemeral_ports']}; "
      f"RLIMIT_NOFILE (soft, hard) = {tuple(m['nofile'])}. Processes not pinned: every server worker and "
      f"client shares the {m['cpus']} vCPUs. Load average at the start: {meta['load']}.\n")
    w("**Why several server processes**: RLIMIT_NOFILE's hard limit on this VM is "
      f"{m['nofile'][1]:,} and cannot be raised (no CAP_SYS_RESOURCE), so one process holds at most "
      "~19,900 connections. 50,000 connections need ≥ 3 processes on each side: W wsfast workers "
      "share one port with SO_REUSEPORT (each `await app.listen(port, host=\"127.0.0.1\", "
      "reuse_port=True)`, soft limit raised to the hard limit) and the kernel spreads the connections; "
      "the client is several processes too, each from its own 127.0.0.x source addresses "
      f"({meta['sources_per_client']} each; the ephemeral port range is per source address).\n")
    w("**Method**: all clients start on one signal; each opens its share with "
      f"{meta['concurrency']} upgrades in flight (asyncio + uvloop, bench/loadclient.py's connection). "
      "Accepts/s = connections ÷ (last handshake completed − first connect started), over all clients. "
      f"Then the connections are held {meta['hold']} s, each worker's RSS (/proc) and WebSocket count "
      "(its private `/stats` port) are read, and every connection sends one 16-byte binary message and "
      "waits for its echo. Cells: median (min–max) over the rounds.\n")

    configs = []
    for r in results:
        key = (r["workers"], r["target"])
        if key not in configs:
            configs.append(key)
    w("| workers × connections | clients | established | accepts/s | server RSS total MiB | "
      "server KiB/conn | server CPU µs per accept | still echoing (worst round) | open s |")
    w("|---|---|---|---|---|---|---|---|---|")
    for wk, tgt in configs:
        rs = [r for r in results if (r["workers"], r["target"]) == (wk, tgt)]
        worst = min(rs, key=lambda r: r["echoed"])
        kib = [(r["server_rss_total"] - sum(p["rss_before"] for p in r["per_worker"])) / r["held_by_servers"]
               / 1024 for r in rs if r["held_by_servers"]]
        w(f"| {wk} × {tgt:,} | {rs[0]['clients']} | {med_range([r['established'] for r in rs])} | "
          f"{med_range([r['accepts_per_s'] for r in rs])} | "
          f"{med_range([r['server_rss_total'] / 2**20 for r in rs], '{:.1f}')} | "
          f"{med_range(kib, '{:.2f}')} | "
          f"{med_range([1e6 * r['server_cpu_s_opening'] / r['established'] for r in rs], '{:.0f}')} | "
          f"{worst['echoed']:,} of {worst['established']:,} | "
          f"{med_range([r['open_s'] for r in rs], '{:.1f}')} |")
    w("")
    w("## Every run\n")
    w("Per worker: connections held after the hold (share of the total), RSS MiB (startup → held), "
      "CPU s while the connections were opening.\n")
    w("| round | workers × connections | established | accepts/s | failed / retries | per worker: conns "
      "(share), RSS MiB, CPU s | echoing | client RSS MiB | CPU s opening: servers / clients |")
    w("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        pw = "; ".join(f"{p['connections']:,} ({100 * p['share']:.1f} %), {mib(p['rss_before'])} → {mib(p['rss'])}, "
                       f"{p['cpu_s_opening']:.1f}" for p in r["per_worker"])
        w(f"| {r['round']} | {r['workers']} × {r['target']:,} | {r['established']:,} | {r['accepts_per_s']:,.0f} | "
          f"{r['failed']} / {r['retries']} | {pw} | {r['echoed']:,} of {r['established']:,} "
          f"({r['echo_s']:.2f} s) | {mib(r['client_rss_total'])} | "
          f"{r['server_cpu_s_opening']:.1f} / {r['client_cpu_s_opening']:.1f} |")
    w("")
    multi = [r for r in results if r["workers"] > 1]
    if multi:
        shares = [p["share"] for r in multi for p in r["per_worker"]]
        wk = multi[0]["workers"]
        n = multi[0]["target"]
        sd = math.sqrt(n * (1 / wk) * (1 - 1 / wk))
        w("**Kernel distribution over the workers** (SO_REUSEPORT hashes each connection's 4-tuple to "
          f"a listening socket): worker shares {min(shares) * 100:.2f}–{max(shares) * 100:.2f} % over every "
          f"multi-worker run (even would be {100 / wk:.2f} %; a uniform random pick would give ± "
          f"{sd:,.0f} connections, {100 * sd / n:.2f} %, one standard deviation). The largest worker held "
          f"{max(p['connections'] for r in multi for p in r['per_worker']):,} connections, under its "
          f"{multi[0]['per_worker'][0]['nofile']:,}-descriptor limit.\n")
    w("The accept rate is for the whole machine: server workers and client processes share the same "
      f"{m['cpus']} vCPUs, so more workers do not add CPU here, and other work on the machine moves it "
      "from round to round; server CPU µs per accept (all workers' CPU while the connections opened ÷ "
      "connections) is what the server pays per connection, whatever the scheduling did.\n")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


# -- main ---------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = parser.add_subparsers(dest="mode")
    p = sub.add_parser("server", help="(internal) one server worker")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--backlog", type=int, default=4096)
    p.add_argument("--lifetime", type=float, default=600)
    p = sub.add_parser("client", help="(internal) one client process")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--connections", type=int, required=True)
    p.add_argument("--sources", required=True)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--lifetime", type=float, default=600)
    parser.add_argument("--runs", default="3:50000,1:19500",
                        help="comma-separated WORKERS:CONNECTIONS (default 3:50000,1:19500)")
    parser.add_argument("--connections", type=int, default=None,
                        help="connections of the multi-worker run (overrides the first of --runs)")
    parser.add_argument("--workers", type=int, default=None, help="workers of the first of --runs")
    parser.add_argument("--clients", type=int, default=None,
                        help=f"client processes (default ceil(connections / {PER_CLIENT:,}))")
    parser.add_argument("--sources-per-client", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64, help="upgrades in flight per client process")
    parser.add_argument("--hold", type=float, default=5.0, help="seconds to hold every connection before the echo")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every run")
    parser.add_argument("--timeout", type=float, default=90.0, help="deadline of the open and echo phases, s")
    parser.add_argument("--lifetime", type=float, default=300.0, help="children kill themselves after this, s")
    at_commit.add_option(parser)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "conn_count.md"),
                        help="markdown report ('' for none)")
    args = parser.parse_args(argv)
    if args.mode == "server":
        return server_main(args)
    if args.mode == "client":
        return client_main(args)

    runs = [tuple(int(x) for x in r.split(":")) for r in args.runs.split(",") if r]
    if args.workers is not None or args.connections is not None:
        w0, n0 = runs[0]
        runs[0] = (args.workers or w0, args.connections or n0)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    for w, n in runs:
        clients = args.clients or math.ceil(n / PER_CLIENT)
        if n / clients > hard - 100:
            parser.error(f"{n:,} connections over {clients} clients: more than {hard:,} descriptors each")
        if n / w > hard - 300:
            parser.error(f"{n:,} connections over {w} workers: too close to the {hard:,}-descriptor limit each")
        if clients * args.sources_per_client > 250:
            parser.error("too many source addresses")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = datetime.datetime.now().isoformat(timespec="seconds")
    t0 = time.monotonic()
    load = os.getloadavg()
    workdir = tempfile.mkdtemp(prefix="wsfast-conns-")
    env, info = at_commit.prepare(args.commit, workdir)
    commit, dirty = info["commit"], info["dirty"]
    log_path = os.path.join(workdir, "children.log")
    results = []
    with open(log_path, "ab") as log:
        for rnd in range(1, args.rounds + 1):
            for w, n in runs:
                clients = args.clients or math.ceil(n / PER_CLIENT)
                print(f"round {rnd}: {w} worker(s), {n:,} connections, {clients} client(s) ...",
                      file=sys.stderr, flush=True)
                try:
                    r = one_run(w, n, clients, args, env, log)
                except Exception:
                    log.flush()
                    with open(log_path, "rb") as f:
                        sys.stderr.write(f.read()[-4000:].decode(errors="replace"))
                    raise
                r["round"] = rnd
                results.append(r)
                print(f"  {r['established']:,} established, {r['accepts_per_s']:,.0f} accepts/s "
                      f"({r['open_s']:.1f} s), servers hold {r['held_by_servers']:,} "
                      f"[{', '.join(format(p['connections'], ',') for p in r['per_worker'])}], server RSS "
                      f"{' + '.join(mib(p['rss']) for p in r['per_worker'])} MiB, "
                      f"{r['echoed']:,} of {r['established']:,} still echoing", file=sys.stderr, flush=True)
    seconds = time.monotonic() - t0
    ok = all(r["all_echoing"] for r in results)
    print(json.dumps(results), flush=True)
    if args.out:
        meta = {"started": started, "seconds": seconds, "commit": commit, "dirty": dirty,
                "wsfast": at_commit.describe(info),
                "codec": results[0]["codec"], "command": "python bench/conn_count.py" +
                "".join(" " + a for a in (argv if argv is not None else sys.argv[1:])),
                "machine": machine(), "load": ", ".join(f"{x:.2f}" for x in load),
                "sources_per_client": args.sources_per_client, "concurrency": args.concurrency,
                "hold": args.hold}
        write_report(args.out, results, meta)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
