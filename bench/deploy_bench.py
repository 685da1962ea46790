"""wsfast direct vs through nginx vs through HAProxy, on loopback.

    python bench/deploy_bench.py                  # the table of docs/deploy.md
    python bench/deploy_bench.py --rounds 3 --window 1 --idle 500 --json out.json
    python bench/deploy_bench.py --commit HEAD    # wsfast as committed (git archive, built outside the tree)

Starts ``python -m wsfast echo`` twice (on a TCP port and on a Unix
socket), and Debian's nginx and haproxy with the configurations of
docs/deploy.md (the helpers of tests/test_proxies.py write them: nginx
``proxy_pass`` with the Upgrade/Connection headers, HAProxy in HTTP mode;
each to the TCP and to the Unix-socket backend; the idle timeouts raised to
300 s and the connection limits to 4096 here). Then, for each path
(direct TCP, direct Unix socket, nginx -> TCP, nginx -> Unix socket,
HAProxy -> TCP, HAProxy -> Unix socket):

* **round trips**: ``--connections`` WebSocket connections, each with one
  64-byte binary message in flight (send, wait for the echo, send again),
  for ``--window`` seconds: round trips per second, and the CPU time of the
  echo server, of the proxy (every nginx worker, the haproxy process) and of
  this client per round trip (``/proc/PID/task/*/schedstat``);
* **latency**: one connection, one message in flight: p50 and p99 of the
  round trip; "added" is the difference to direct TCP in the same round;

interleaved: ``--rounds`` rounds, each measuring every path once, in an
order rotated per round, so load from elsewhere on the machine falls on
all paths alike; the figures are the medians over rounds. Then

* **idle memory**: ``--idle`` WebSocket connections opened through each
  path and left idle, with a fresh echo server and a fresh proxy for each
  path: the growth of the server's RSS and of the proxy's (nginx workers,
  haproxy), per connection.

Prints a Markdown table (and JSON with ``--json FILE``), with the machine's
load average before and after. Needs nginx, haproxy and openssl (ci/test.sh
installs them).
"""

import argparse
import asyncio
import base64
import hashlib
import json
import os
import signal
import statistics
import subprocess
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)  # the proxies' helpers of tests/ (the client side); the server: --commit
sys.path.insert(0, os.path.join(ROOT, "bench"))

import at_commit  # noqa: E402  (bench/at_commit.py: --commit, wsfast built outside the checkout)

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
IDLE_TIMEOUT = 300  # the proxies' idle timeouts here, s: longer than the run


# -- processes and their costs -------------------------------------------------------


def cpu_ns(pids):
    """CPU time of ``pids`` (every thread) so far, ns."""
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                pass
    return total


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


class Backend:
    """``python -m wsfast echo`` on 127.0.0.1:port or on a Unix socket."""

    def __init__(self, port=None, uds=None, env=None):
        self.port, self.uds, self.proc = port, uds, None
        self.env = os.environ if env is None else env  # at_commit.prepare's: which wsfast

    def start(self):
        where = ["--uds", self.uds] if self.uds else ["--host", "127.0.0.1", "--port", str(self.port)]
        from test_proxies import _die_with_parent

        # -m puts the working directory first on sys.path: the wsfast there runs
        self.proc = subprocess.Popen([sys.executable, "-m", "wsfast", "echo", *where],
                                     stdout=subprocess.PIPE, text=True, env=self.env,
                                     cwd=at_commit.tree(self.env), preexec_fn=_die_with_parent)
        line = self.proc.stdout.readline()
        if "echo server" not in line:
            raise RuntimeError(f"the echo server did not start: {line!r}")
        return self

    @property
    def pids(self):
        return [self.proc.pid]

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.proc.stdout.close()


def make_proxies(backend_port, backend_path):
    """nginx and HAProxy (tests/test_proxies.py's, configured as in
    docs/deploy.md) in front of our two backends, with long idle timeouts
    and room for many connections."""
    import test_proxies

    test_proxies.READ_TIMEOUT = IDLE_TIMEOUT
    proxies = {"nginx": test_proxies.Nginx(), "haproxy": test_proxies.HAProxy()}
    for proxy in proxies.values():
        with open(proxy.conf) as f:
            conf = f.read()
        conf = (conf.replace(f"127.0.0.1:{proxy.backend_port}", f"127.0.0.1:{backend_port}")
                .replace(proxy.backend_path, backend_path)
                .replace("worker_connections 256", "worker_connections 4096")
                .replace("maxconn 256", "maxconn 4096"))
        with open(proxy.conf, "w") as f:
            f.write(conf)
    return proxies


def proxy_pids(name, proxy):
    if name == "nginx":
        return [proxy.proc.pid, *children(proxy.proc.pid)]
    return [proxy.proc.pid]


def restart_proxy(proxy):
    proxy.proc.send_signal(proxy.stop_signal)
    try:
        proxy.proc.wait(10)
    except subprocess.TimeoutExpired:
        proxy.proc.kill()
        proxy.proc.wait()
    proxy.start()


# -- a small WebSocket client: raw frames, one message in flight ---------------------


class Client(asyncio.Protocol):
    def __init__(self, path):
        self.path = path
        self.key = base64.b64encode(os.urandom(16))
        self.buffer = bytearray()
        self.upgraded = asyncio.get_running_loop().create_future()
        self.waiter = None
        self.expected = b""
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        transport.write(b"GET " + self.path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
                        + self.key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")

    def data_received(self, data):
        self.buffer += data
        if not self.upgraded.done():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end])
            del self.buffer[:end + 4]
            accept = base64.b64encode(hashlib.sha1(self.key + GUID).digest())
            if not head.startswith(b"HTTP/1.1 101") or accept not in head:
                self.upgraded.set_exception(RuntimeError(f"no upgrade: {head[:200]!r}"))
                return
            self.upgraded.set_result(None)
        if self.waiter is not None and len(self.buffer) >= len(self.expected):
            waiter, self.waiter = self.waiter, None
            if self.buffer[:len(self.expected)] != self.expected:
                waiter.set_exception(RuntimeError(f"wrong echo {bytes(self.buffer[:80])!r}"))
                return
            del self.buffer[:len(self.expected)]
            waiter.set_result(None)

    def connection_lost(self, exc):
        for future in (self.upgraded, self.waiter):
            if future is not None and not future.done():
                future.set_exception(ConnectionError(f"connection lost: {exc}"))

    def round_trip(self, frame, echo):
        self.expected = echo
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(frame)
        return self.waiter


def frames(size):
    payload = os.urandom(size)
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert size < 126
    return bytes([0x82, 0x80 | size]) + mask + masked, bytes([0x82, size]) + payload


async def connect(target, path):
    loop = asyncio.get_running_loop()
    if isinstance(target, str):
        _, client = await loop.create_unix_connection(lambda: Client(path), target)
    else:
        _, client = await loop.create_connection(lambda: Client(path), "127.0.0.1", target)
    await asyncio.wait_for(client.upgraded, 10)
    return client


async def open_many(target, path, count, concurrency=64):
    clients, queue = [], iter(range(count))

    async def opener():
        for _ in queue:
            clients.append(await connect(target, path))

    await asyncio.gather(*(opener() for _ in range(concurrency)))
    return clients


async def ping_pong(clients, frame, echo, seconds, latencies=None):
    """Every client: a round trip after the other for ``seconds``; the count."""
    stop_at = time.perf_counter() + seconds
    counts = [0] * len(clients)

    async def one(i, client):
        clock = time.perf_counter_ns
        while time.perf_counter() < stop_at:
            t0 = clock()
            await client.round_trip(frame, echo)
            if latencies is not None:
                latencies.append(clock() - t0)
            counts[i] += 1

    await asyncio.gather(*(one(i, c) for i, c in enumerate(clients)))
    return sum(counts)


# -- the run ---------------------------------------------------------------------------


async def measure_round_trips(path_spec, pids, args):
    target, path = path_spec
    frame, echo = frames(args.size)
    clients = await open_many(target, path, args.connections)
    await ping_pong(clients, frame, echo, args.warmup)
    server_pids, proxy_pids_ = pids
    before = (cpu_ns(server_pids), cpu_ns(proxy_pids_), cpu_ns([os.getpid()]), time.perf_counter())
    count = await ping_pong(clients, frame, echo, args.window)
    after = (cpu_ns(server_pids), cpu_ns(proxy_pids_), cpu_ns([os.getpid()]), time.perf_counter())
    for client in clients:
        client.transport.close()
    # latency: one connection, nothing else in flight
    single = await connect(target, path)
    await ping_pong([single], frame, echo, args.warmup)
    latencies = []
    await ping_pong([single], frame, echo, args.window, latencies)
    single.transport.close()
    latencies.sort()
    elapsed = after[3] - before[3]
    return {
        "rt_per_s": count / elapsed,
        "server_us_per_rt": (after[0] - before[0]) / count / 1e3,
        "proxy_us_per_rt": (after[1] - before[1]) / count / 1e3,
        "client_us_per_rt": (after[2] - before[2]) / count / 1e3,
        "p50_us": latencies[len(latencies) // 2] / 1e3,
        "p99_us": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] / 1e3,
        "latency_samples": len(latencies),
    }


async def measure_idle(path_spec, server, proxy_pids_, count):
    target, path = path_spec
    await asyncio.sleep(0.5)
    before = rss_kib(server.pids), rss_kib(proxy_pids_)
    clients = await open_many(target, path, count)
    await asyncio.sleep(1.0)
    after = rss_kib(server.pids), rss_kib(proxy_pids_)
    for client in clients:
        client.transport.close()
    await asyncio.sleep(0.5)
    return {
        "server_kib_per_conn": (after[0] - before[0]) / count,
        "proxy_kib_per_conn": (after[1] - before[1]) / count if proxy_pids_ else None,
        "connections": count,
    }


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


async def main(args):
    from interop_helpers import free_port

    workdir = tempfile.mkdtemp(prefix="wsfast-deploy-bench-")
    env, info = at_commit.prepare(args.commit, workdir)
    port, uds = free_port(), os.path.join(workdir, "echo.sock")
    tcp, unix = Backend(port=port, env=env), Backend(uds=uds, env=env)
    proxies = make_proxies(port, uds)
    try:
        tcp.start()
        unix.start()
        for proxy in proxies.values():
            proxy.start()
        paths = {
            "direct (TCP)": ((port, "/"), tcp, None),
            "direct (Unix socket)": ((uds, "/"), unix, None),
            "nginx → TCP": ((proxies["nginx"].port, "/tcp/"), tcp, "nginx"),
            "nginx → Unix socket": ((proxies["nginx"].port, "/uds/"), unix, "nginx"),
            "HAProxy → TCP": ((proxies["haproxy"].port, "/tcp/"), tcp, "haproxy"),
            "HAProxy → Unix socket": ((proxies["haproxy"].port, "/uds/"), unix, "haproxy"),
        }
        names = list(paths)
        load_before = loadavg()
        rounds = {name: [] for name in names}
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                spec, server, proxy = paths[name]
                pids = (server.pids, proxy_pids(proxy, proxies[proxy]) if proxy else [])
                print(f"  {name}", file=sys.stderr, flush=True)
                rounds[name].append(await asyncio.wait_for(
                    measure_round_trips(spec, pids, args), 4 * (args.window + args.warmup) + 30))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        idle = {}
        if args.idle:
            for name in names:
                spec, server, proxy = paths[name]
                server.stop()  # fresh processes: no memory kept from earlier connections
                server.start()
                if proxy:
                    restart_proxy(proxies[proxy])
                pids = proxy_pids(proxy, proxies[proxy]) if proxy else []
                print(f"  idle: {name}", file=sys.stderr, flush=True)
                idle[name] = await asyncio.wait_for(measure_idle(spec, server, pids, args.idle), 120)
        load_after = loadavg()
    finally:
        for proxy in proxies.values():
            proxy.stop()
        tcp.stop()
        unix.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    def med(name, key):
        return statistics.median(r[key] for r in rounds[name])

    base = {key: [r[key] for r in rounds["direct (TCP)"]] for key in ("p50_us", "p99_us")}
    result = {"loadavg_before": load_before, "loadavg_after": load_after, "cores": os.cpu_count(),
              "wsfast": at_commit.describe(info),
              "args": vars(args), "paths": {}}
    for name in names:
        added50 = statistics.median(r["p50_us"] - b for r, b in zip(rounds[name], base["p50_us"]))
        added99 = statistics.median(r["p99_us"] - b for r, b in zip(rounds[name], base["p99_us"]))
        result["paths"][name] = {
            **{key: med(name, key) for key in rounds[name][0] if key != "latency_samples"},
            "added_p50_us": added50, "added_p99_us": added99,
            "rounds": rounds[name], "idle": idle.get(name),
        }
    print(table(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


def table(result):
    a = result["args"]
    lines = [
        f"{a['connections']} connections × 1 message of {a['size']} B in flight, "
        f"{a['window']} s windows, {a['rounds']} interleaved rounds (medians); latency: one "
        f"connection; idle: {a['idle']} connections; {result['cores']} cores, "
        f"loadavg {result['loadavg_before']} before, {result['loadavg_after']} after; {result['wsfast']}",
        "",
        "| path | round trips/s | p50 µs | p99 µs | added p50 / p99 µs | server CPU µs/rt "
        "| proxy CPU µs/rt | client CPU µs/rt | server KiB/idle conn | proxy KiB/idle conn |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, p in result["paths"].items():
        idle = p["idle"] or {}
        proxy_cpu = f"{p['proxy_us_per_rt']:.0f}" if p["proxy_us_per_rt"] else "–"
        proxy_mem = (f"{idle['proxy_kib_per_conn']:.1f}"
                     if idle.get("proxy_kib_per_conn") is not None else "–")
        server_mem = f"{idle['server_kib_per_conn']:.1f}" if idle else "–"
        added = ("–" if name == "direct (TCP)"
                 else f"{p['added_p50_us']:+.0f} / {p['added_p99_us']:+.0f}")
        lines.append(
            f"| {name} | {p['rt_per_s']:,.0f} | {p['p50_us']:.0f} | {p['p99_us']:.0f} | {added} "
            f"| {p['server_us_per_rt']:.0f} | {proxy_cpu} | {p['client_us_per_rt']:.0f} "
            f"| {server_mem} | {proxy_mem} |")
    return "\n".join(lines)


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--window", type=float, default=2.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=0.3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--size", type=int, default=64, help="message size, < 126 bytes")
    parser.add_argument("--idle", type=int, default=1000, help="idle connections (0: skip)")
    parser.add_argument("--json", metavar="FILE")
    at_commit.add_option(parser)
    args = parser.parse_args(argv)
    if not 0 <= args.size < 126:
        parser.error("--size must be below 126 bytes")
    return args


if __name__ == "__main__":
    args = parse()

    def interrupted(signum, frame):
        raise KeyboardInterrupt  # stop the proxies and servers on the way out

    signal.signal(signal.SIGTERM, interrupted)
    try:
        import uvloop
    except ImportError:
        uvloop = None
    if uvloop is not None:
        uvloop.install()
    asyncio.run(main(args))
