"""permessage-deflate benchmark: bytes on the wire, server CPU per message and
server memory per idle connection, with deflate on and off for wsfast,
beside websockets' and aiohttp's defaults, on a JSON-like corpus.

    python bench/deflate_bench.py                  # writes bench/results/deflate.md
    python bench/deflate_bench.py --connections 200 --rounds 1 --out -   # quick, to stdout
    python bench/deflate_bench.py --commit HEAD   # wsfast as committed (git archive, built outside the tree)

Each server is an echo server in a subprocess on 127.0.0.1 (stdlib asyncio
loop for all, so the libraries are compared, not the loops). The client is
``websockets`` in this process, offering permessage-deflate as browsers do
(``permessage-deflate; client_max_window_bits``); a server without
compression declines the offer. For each server:

* **wire**: the corpus (docs/deflate.md's generator: 2,000 messages, mean
  522 bytes) is echoed ``--rounds`` times through a byte-counting TCP relay;
  bytes per message each way after the handshake (frames and headers
  included, TCP/IP not);
* **CPU**: the server process's user+system time (``/proc/PID/stat``) over
  those messages, per message echoed (receive + send), batches of 100 in
  flight; the least of ``--repeats`` runs (the machine is shared);
* **memory**: the server's RSS (``/proc/PID/status``) before and after
  opening ``--connections`` connections (idle: handshake only), and after
  each has echoed one corpus message (with context takeover the zlib
  streams then stay allocated), divided by the number of connections.

No test runs this; it is a plain script. Linux only (reads /proc).
"""

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

import at_commit  # noqa: E402  (bench/at_commit.py: --commit, wsfast built outside the checkout)

SERVER_ENV = None  # the servers' environment (at_commit.prepare's); None: this process's

# -- the corpus (docs/deflate.md) --------------------------------------------------


def corpus(n=2000, seed=7):
    rnd = random.Random(seed)
    words = ["".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(3, 9)))
             for _ in range(400)]
    syms = [w.upper()[:4] for w in words[:50]]
    msgs = []
    for i in range(n):
        kind = rnd.random()
        if kind < 0.5:
            m = {"type": "trade", "symbol": rnd.choice(syms), "price": round(rnd.uniform(1, 500), 2),
                 "qty": rnd.randint(1, 1000), "ts": 1700000000000 + i * 37, "side": rnd.choice(["buy", "sell"])}
        elif kind < 0.85:
            m = {"type": "message", "id": f"{rnd.getrandbits(64):016x}", "room": rnd.choice(words[:20]),
                 "user": {"id": rnd.randint(1, 5000), "name": rnd.choice(words)},
                 "text": " ".join(rnd.choice(words) for _ in range(rnd.randint(5, 40))),
                 "ts": 1700000000000 + i * 37}
        else:
            m = {"type": "snapshot", "rows": [{"symbol": rnd.choice(syms), "bid": round(rnd.uniform(1, 500), 2),
                 "ask": round(rnd.uniform(1, 500), 2), "volume": rnd.randint(0, 10**6)}
                 for _ in range(rnd.randint(20, 50))]}
        msgs.append(json.dumps(m))
    return msgs


# -- the servers -------------------------------------------------------------------

WEBSOCKETS_SERVER = """
import asyncio, sys
from websockets.asyncio.server import serve
async def echo(ws):
    async for m in ws:
        await ws.send(m)
async def main():
    async with serve(echo, "127.0.0.1", int(sys.argv[1]), max_size=None, compression={compression}):
        print("ready", flush=True)
        await asyncio.Future()
asyncio.run(main())
"""

AIOHTTP_SERVER = """
import sys
from aiohttp import web, WSMsgType
async def echo(request):
    ws = web.WebSocketResponse(max_msg_size=0{kwargs})
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws
app = web.Application()
app.router.add_get("/", echo)
print("ready", flush=True)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""

WSFAST_SERVER = """
import sys
import wsfast
from wsfast.deflate import DeflateOptions
class Echo(wsfast.WebSocketHandler):
    def on_message(self, message):
        self.write_message(message, binary=type(message) is bytes)
app = wsfast.Application([(r"/.*", Echo)], websocket_compression={compression}, codec="cython")
wsfast.run(app, host="127.0.0.1", port=int(sys.argv[1]), use_uvloop=False,
           on_start=lambda server: print("ready", flush=True))
"""

SERVERS = [
    # (name, echo server source)
    ("wsfast, deflate off (default)", WSFAST_SERVER.format(compression="None")),
    ("wsfast, deflate on (defaults: 12 bits, memLevel 5, threshold 128)",
     WSFAST_SERVER.format(compression='"deflate"')),
    ("wsfast, deflate on, threshold 0 (compress every message)",
     WSFAST_SERVER.format(compression="DeflateOptions(threshold=0)")),
    ("wsfast, deflate on, no context takeover",
     WSFAST_SERVER.format(compression="DeflateOptions(server_no_context_takeover=True, "
                                      "client_no_context_takeover=True)")),
    ("websockets 17, default (deflate on)", WEBSOCKETS_SERVER.format(compression='"deflate"')),
    ("websockets 17, deflate off", WEBSOCKETS_SERVER.format(compression="None")),
    ("aiohttp, default (compress=True)", AIOHTTP_SERVER.format(kwargs="")),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, source):
        self.port = free_port()
        env = dict(os.environ if SERVER_ENV is None else SERVER_ENV)
        tree = at_commit.tree(env)
        env["PYTHONPATH"] = tree + os.pathsep + env.get("PYTHONPATH", "")
        # -c puts the working directory first on sys.path: the wsfast there runs
        self.proc = subprocess.Popen([sys.executable, "-c", source, str(self.port)], env=env, cwd=tree,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.proc.stdout.readline()
        if b"ready" not in line:
            raise RuntimeError(f"server did not start: {self.proc.stderr.read().decode()}")
        deadline = time.monotonic() + 10
        while True:  # aiohttp prints before it listens
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime

    def rss(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- the byte-counting relay -------------------------------------------------------


class Relay:
    """127.0.0.1 TCP relay to the server, counting bytes each way."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.up = self.down = 0

    async def start(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader, writer):
        r2, w2 = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(src, dst, up):
            try:
                while True:
                    data = await src.read(65536)
                    if not data:
                        break
                    if up:
                        self.up += len(data)
                    else:
                        self.down += len(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, w2, True), pipe(r2, writer, False))


# -- the measurements ----------------------------------------------------------------


async def measure(name, source, messages, rounds, connections, repeats, batch=100):
    from websockets.asyncio.client import connect

    server = ServerProcess(source)
    try:
        relay = Relay(server.port)
        await relay.start()
        async with connect(f"ws://127.0.0.1:{relay.port}/", compression="deflate",
                           max_size=None) as ws:
            answer = ws.response.headers.get("Sec-WebSocket-Extensions") or "(none)"
            await ws.send("warm up")
            await ws.recv()
            await asyncio.sleep(0.1)
            cpu = None
            for repeat in range(repeats):  # the least disturbed run counts for CPU
                up0, down0 = relay.up, relay.down
                cpu0 = server.cpu_seconds()
                n = 0
                for _ in range(rounds):
                    for i in range(0, len(messages), batch):
                        chunk = messages[i : i + batch]
                        for m in chunk:
                            await ws.send(m)
                        for m in chunk:
                            assert await ws.recv() == m
                        n += len(chunk)
                await asyncio.sleep(0.2)  # let the relay count the last bytes
                spent = server.cpu_seconds() - cpu0
                cpu = spent if cpu is None else min(cpu, spent)
                if repeat == 0:
                    up, down = relay.up - up0, relay.down - down0
        relay.server.close()

        # memory per connection, directly (no relay)
        await asyncio.sleep(0.3)
        rss0 = server.rss()
        conns = []
        for i in range(connections):
            conns.append(await connect(f"ws://127.0.0.1:{server.port}/", compression="deflate",
                                       max_size=None, ping_interval=None))
        await asyncio.sleep(0.5)
        rss1 = server.rss()
        for i, ws in enumerate(conns):
            await ws.send(messages[i % len(messages)])
        for i, ws in enumerate(conns):
            assert await ws.recv() == messages[i % len(messages)]
        await asyncio.sleep(0.5)
        rss2 = server.rss()
        await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    finally:
        server.stop()
    raw = sum(len(m.encode()) for m in messages) * rounds
    return {
        "name": name,
        "answer": answer,
        "messages": n,
        "raw_per_msg": raw / n,
        "up_per_msg": up / n,
        "down_per_msg": down / n,
        "cpu_us": cpu / n * 1e6,
        "idle_kib": (rss1 - rss0) / connections / 1024,
        "after_kib": (rss2 - rss0) / connections / 1024,
    }


def table(results, args):
    lines = [
        ("| server | negotiated | client→server B/msg | server→client B/msg | ratio | "
         "server CPU µs/msg | RSS KiB/conn, idle | RSS KiB/conn, after 1 msg |"),
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['name']} | `{r['answer']}` | {r['up_per_msg']:.0f} | {r['down_per_msg']:.0f} | "
            f"{r['down_per_msg'] / r['raw_per_msg']:.3f} | {r['cpu_us']:.1f} | {r['idle_kib']:.1f} | "
            f"{r['after_kib']:.1f} |"
        )
    return "\n".join(lines)


async def main_async(args):
    messages = corpus()
    results = []
    for name, source in SERVERS:
        if args.only and args.only not in name:
            continue
        try:
            r = await measure(name, source, messages, args.rounds, args.connections, args.repeats)
        except ImportError as exc:
            print(f"skipped {name}: {exc}", file=sys.stderr)
            continue
        print(f"{name}: {r['down_per_msg']:.0f} B/msg down, {r['cpu_us']:.1f} µs/msg, "
              f"{r['idle_kib']:.1f} / {r['after_kib']:.1f} KiB/conn", file=sys.stderr, flush=True)
        results.append(r)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="passes over the corpus (default 5)")
    parser.add_argument("--connections", type=int, default=1000, help="for memory (default 1000)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="CPU: the minimum over this many runs of the rounds (default 3)")
    parser.add_argument("--only", default=None, help="run the servers whose name contains this")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "deflate.md"),
                        help="markdown file to write ('-': stdout)")
    at_commit.add_option(parser)
    args = parser.parse_args()
    global SERVER_ENV
    workdir = tempfile.mkdtemp(prefix="wsfast-deflate-bench-")
    SERVER_ENV, info = at_commit.prepare(args.commit, workdir)
    try:
        results = asyncio.run(main_async(args))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    import aiohttp
    import websockets

    messages = corpus()
    mean = sum(len(m.encode()) for m in messages) / len(messages)
    command = "python bench/deflate_bench.py" + "".join(
        f" --{k} {v}" for k, v in (("rounds", args.rounds), ("connections", args.connections),
                                    ("repeats", args.repeats))
        if v != parser.get_default(k)
    ) + (f" --commit {args.commit}" if args.commit else "")
    intro = (
        f"Measured with `{command}` (bench/deflate_bench.py; its docstring says exactly what "
        f"is measured). Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, zlib {zlib.ZLIB_RUNTIME_VERSION}, websockets "
        f"{websockets.__version__}, aiohttp {aiohttp.__version__}; every server on the stdlib "
        f"asyncio loop in its own process on 127.0.0.1. Corpus: {len(messages)} JSON messages, "
        f"mean {mean:.0f} bytes (half of them ~100-byte ticker updates, under the 128-byte threshold), echoed {args.rounds} "
        f"times ({results[0]['messages'] if results else 0} messages per server, 100 in flight; "
        f"CPU: the least of {args.repeats} such runs); "
        "the client (websockets) offers `permessage-deflate; client_max_window_bits`, as "
        "browsers do, and compresses what it sends when the server accepts. Memory: "
        f"{args.connections} connections. Server: {at_commit.describe(info)}."
    )
    doc = "# permessage-deflate: wsfast beside websockets and aiohttp\n\n"
    doc += textwrap.fill(intro, 88) + "\n\n"
    doc += table(results, args) + "\n"
    doc += textwrap.dedent("""
        Columns: bytes per message on the wire after the handshake (WebSocket
        headers included; client→server also depends on the client, which
        compresses with websockets' settings whenever the offer is accepted);
        ratio = server→client bytes / raw message bytes; server CPU = user+system
        time of the server process per message echoed (one receive and one send);
        RSS per connection = growth of the server's resident memory divided by the
        number of connections, idle after the handshake and after each connection
        echoed one message (the zlib streams are created lazily, at the first
        compressed message, and kept with context takeover). CPU and RSS vary by
        ±10-20 % between runs on this shared machine; bytes are exact.
        """)
    if args.out == "-":
        print(doc)
    else:
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(doc)
        print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
