"""Quick echo hot-path measurement: wsfast beside picows and a ceiling server,
in one run, with a cheap pipelined load client in another process.

    python bench/profile_echo.py                     # all servers, 64 B / 256 B / 8 KiB
    python bench/profile_echo.py --servers wsfast,picows --sizes 64 --seconds 5
    python bench/profile_echo.py serve wsfast --port 9001      # one server, for py-spy/perf
    python bench/profile_echo.py load --port 9001 --size 64    # one load run
    python bench/profile_echo.py mem --servers wsfast,picows --conns 10000
    python bench/profile_echo.py --commit HEAD --base HEAD~1 --servers wsfast-base,wsfast  # an A/B

Servers (each in its own process, pinned with ``taskset -c 0``; the client on
``-c 1``): ``wsfast`` (the compiled build), ``wsfast-py``
(``WSFAST_NO_EXTENSIONS=1``), ``picows`` (its documented echo listener), and
``ceiling``: an ``asyncio.BufferedProtocol`` that completes the upgrade,
then for each client frame reads only the header and writes back a pre-built
unmasked frame of the same length (one write per read). All on uvloop.

Which wsfast: ``--commit REV`` runs the ``wsfast``/``wsfast-py`` servers on
wsfast as committed at REV, exported with ``git archive`` and built outside
the checkout (``bench/at_commit.py``, as every bench script that starts
wsfast servers); without it, this checkout's in-place build. ``--base REV``
does the same for the ``wsfast-base``/``wsfast-py-base`` servers, so one
interleaved run compares two commits (without ``--base``, those servers take
a tree put in ``WSFAST_BASE_TREE`` by hand).

The load client opens ``--conns`` connections and keeps ``--inflight``
masked frames (pre-built, binary unless ``--text``) in flight on each; as
every echoed frame has the same length it counts echoed frames from the byte
count alone (the first echo of each connection is parsed and checked), and
sends one new frame per echoed one. Result: round trips per second.

``mem``: server RSS growth (``/proc/PID/status`` VmRSS) over ``--conns``
idle upgraded connections, per connection.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import at_commit  # bench/at_commit.py (this script's directory is first on sys.path)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _uvloop():
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


# -- servers ---------------------------------------------------------------------


def serve_wsfast(port, text):
    # WSFAST_TREE (at_commit.prepare's): wsfast exported at --commit / --base
    sys.path.insert(0, at_commit.tree())
    import wsfast

    class Echo(wsfast.WebSocketHandler):
        def on_message(self, message):
            self.write_message(message)

    app = wsfast.Application([(r"/", Echo)])

    def started(server):
        where = os.path.dirname(os.path.dirname(os.path.abspath(wsfast.__file__)))
        print(f"ready wsfast {wsfast.IMPLEMENTATION} {where}", flush=True)

    wsfast.run(app, host="127.0.0.1", port=port, use_uvloop=True, on_start=started)


def serve_picows(port, text):
    from picows import WSListener, WSMsgType, ws_create_server

    class Echo(WSListener):
        def on_ws_frame(self, transport, frame):
            if frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
            else:
                transport.send(frame.msg_type, frame.get_payload_as_bytes())

    async def main():
        server = await ws_create_server(lambda request: Echo(), "127.0.0.1", port)
        print("ready picows", flush=True)
        await server.serve_forever()

    _uvloop()
    asyncio.run(main())


class Ceiling(asyncio.BufferedProtocol):
    """Upgrade, then answer each client frame with a pre-built frame of the
    same payload length, having read only its header."""

    def __init__(self, view):
        self.view = view
        self.http = b""
        self.ws = False
        self.skip = 0  # payload bytes of the current frame still to pass over
        self.hdr = b""  # a partial header
        self.cache = {}

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, hint):
        return self.view

    def buffer_updated(self, n):
        data = self.view[:n]
        if not self.ws:
            self.http += bytes(data)
            end = self.http.find(b"\r\n\r\n")
            if end < 0:
                return
            key = b""
            for line in self.http[:end].split(b"\r\n"):
                if line.lower().startswith(b"sec-websocket-key:"):
                    key = line.split(b":", 1)[1].strip()
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            self.ws = True
            data = memoryview(self.http[end + 4:])
            self.http = b""
            n = len(data)
        out = []
        i = 0
        skip = self.skip
        if self.hdr:
            data = memoryview(self.hdr + bytes(data))
            n = len(data)
            self.hdr = b""
        while True:
            if skip:
                if skip > n - i:
                    skip -= n - i
                    break
                i += skip
                skip = 0
            if i >= n:
                break
            if n - i < 2:
                self.hdr = bytes(data[i:])
                break
            b0 = data[i]
            length = data[i + 1] & 0x7F
            h = 6
            if length == 126:
                h = 8
                if n - i < 4:
                    self.hdr = bytes(data[i:])
                    break
                length = (data[i + 2] << 8) | data[i + 3]
            elif length == 127:
                h = 14
                if n - i < 10:
                    self.hdr = bytes(data[i:])
                    break
                length = int.from_bytes(data[i + 2:i + 10], "big")
            if n - i < h:
                self.hdr = bytes(data[i:])
                break
            i += h
            skip = length
            frame = self.cache.get((b0, length))
            if frame is None:
                if b0 & 0x0F == 8:
                    self.transport.write(bytes([0x88, 0]))
                    self.transport.close()
                    return
                hl = 2 if length < 126 else 4 if length < 65536 else 10
                head = bytes([b0, length if hl == 2 else 126 if hl == 4 else 127])
                head += length.to_bytes(hl - 2, "big") if hl > 2 else b""
                frame = self.cache[(b0, length)] = head + b"a" * length
            out.append(frame)
        self.skip = skip
        if out:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])


def serve_ceiling(port, text):
    _uvloop()

    async def main():
        view = memoryview(bytearray(256 * 1024))
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Ceiling(view), "127.0.0.1", port, backlog=4096)
        print("ready ceiling", flush=True)
        await server.serve_forever()

    asyncio.run(main())


SERVERS = {
    "wsfast": serve_wsfast,
    "wsfast-py": serve_wsfast,
    "wsfast-base": serve_wsfast,  # wsfast at --base (or in WSFAST_BASE_TREE)
    "wsfast-py-base": serve_wsfast,
    "picows": serve_picows,
    "ceiling": serve_ceiling,
}


# -- the load client ----------------------------------------------------------------


def masked_frame(size, text):
    op = 0x81 if text else 0x82
    key = os.urandom(4)
    payload = b"a" * size
    if size < 126:
        head = bytes([op, 0x80 | size])
    elif size < 65536:
        head = bytes([op, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([op, 0x80 | 127]) + size.to_bytes(8, "big")
    masked = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
    return head + key + masked


def echo_length(size):
    return size + (2 if size < 126 else 4 if size < 65536 else 10)


class LoadProtocol(asyncio.BufferedProtocol):
    __slots__ = ("view", "frames", "length", "rem", "count", "transport", "upgraded",
                 "head", "ready", "first")

    def __init__(self, view, frames, length, ready):
        self.view = view
        self.frames = frames  # frames[k]: k masked frames joined
        self.length = length
        self.rem = 0
        self.count = 0
        self.upgraded = False
        self.head = b""
        self.ready = ready
        self.first = None

    def connection_made(self, transport):
        self.transport = transport
        key = base64.b64encode(os.urandom(16))
        transport.write(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key +
            b"\r\nSec-WebSocket-Version: 13\r\n\r\n")

    def get_buffer(self, hint):
        return self.view

    def buffer_updated(self, n):
        if self.upgraded:
            rem = self.rem + n
            if self.first is not None and len(self.first) < self.length:
                self.first += bytes(self.view[:n])
            k = rem // self.length
            if k:
                self.count += k
                self.transport.write(self.frames[k])
            self.rem = rem - k * self.length
            return
        self.head += bytes(self.view[:n])
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            return
        assert self.head.startswith(b"HTTP/1.1 101"), self.head
        self.upgraded = True
        extra = len(self.head) - end - 4
        self.first = self.head[end + 4:]
        self.head = b""
        self.rem = extra
        self.ready.set_result(None)

    def connection_lost(self, exc):
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("lost before the upgrade"))


def cpu_seconds(pid):
    """user + system CPU seconds of process ``pid``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(port, size, conns, inflight, seconds, warmup, text, server_pid=None):
    loop = asyncio.get_running_loop()
    view = memoryview(bytearray(1024 * 1024))
    length = echo_length(size)
    protocols = []
    for _ in range(conns):
        frame = masked_frame(size, text)
        frames = [frame * k for k in range(inflight * 2 + 1)]
        ready = loop.create_future()
        _, proto = await loop.create_connection(
            lambda: LoadProtocol(view, frames, length, ready), "127.0.0.1", port)
        await ready
        protocols.append(proto)
    for proto in protocols:
        proto.transport.write(proto.frames[inflight])
    await asyncio.sleep(warmup)
    # check one echo of each connection byte for byte
    op = 0x81 if text else 0x82
    expect = (bytes([op]) + (bytes([size]) if size < 126 else
              bytes([126]) + size.to_bytes(2, "big") if size < 65536 else
              bytes([127]) + size.to_bytes(8, "big")) + b"a" * size)
    for proto in protocols:
        got = proto.first[:length]
        if len(got) == length and got != expect:
            raise AssertionError(f"bad echo: {got[:40]!r}")
    start_counts = sum(p.count for p in protocols)
    c0 = cpu_seconds(server_pid) if server_pid else 0.0
    t0 = time.perf_counter()
    await asyncio.sleep(seconds)
    t1 = time.perf_counter()
    c1 = cpu_seconds(server_pid) if server_pid else 0.0
    total = sum(p.count for p in protocols) - start_counts
    for proto in protocols:
        proto.transport.abort()
    return total / (t1 - t0), (c1 - c0) / total * 1e6 if total else 0.0


# -- orchestration --------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_envs(args, kinds, workdir):
    """The server processes' environments, ``{"": ..., "base": ...}``, and
    one line each saying which wsfast they run (at_commit.describe)."""
    env, info = at_commit.prepare(args.commit, workdir)
    envs, said = {"": env}, {"wsfast": at_commit.describe(info)}
    if any(k.endswith("-base") for k in kinds):
        if args.base:
            base_dir = os.path.join(workdir, "base")
            os.makedirs(base_dir)
            envs["base"], base = at_commit.prepare(args.base, base_dir)
        elif os.environ.get("WSFAST_BASE_TREE"):
            envs["base"], base = at_commit.prepare(
                None, workdir, dict(os.environ, WSFAST_TREE=os.environ["WSFAST_BASE_TREE"]))
        else:
            raise SystemExit("the *-base servers need --base REV (or a wsfast tree in WSFAST_BASE_TREE)")
        said["wsfast-base"] = at_commit.describe(base)
    return envs, said


def start_server(kind, port, text, envs, cpu="0"):
    env = dict(envs["base"] if kind.endswith("-base") else envs[""])
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    if kind.startswith("wsfast-py"):
        env["WSFAST_NO_EXTENSIONS"] = "1"
    else:
        env.pop("WSFAST_NO_EXTENSIONS", None)
    cmd = [sys.executable, os.path.abspath(__file__), "serve", kind, "--port", str(port)]
    if text:
        cmd.append("--text")
    if cpu is not None:
        cmd = ["taskset", "-c", cpu] + cmd
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        proc.kill()
        raise RuntimeError(f"{kind} did not start: {line!r}")
    if kind.startswith("wsfast"):  # "ready wsfast CODEC DIR": the tree it was meant to import
        where = line.split(None, 3)[3].strip()
        if os.path.realpath(where) != os.path.realpath(at_commit.tree(env)):
            proc.kill()
            raise RuntimeError(f"{kind} imported wsfast from {where}, not {at_commit.tree(env)}")
        line = line.replace(" " + where, "")
    return proc, line.strip()


def stop(proc):
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_load(port, size, args, server_pid, cpu="1"):
    cmd = [sys.executable, os.path.abspath(__file__), "load", "--port", str(port),
           "--server-pid", str(server_pid),
           "--size", str(size), "--conns", str(args.conns), "--inflight", str(args.inflight),
           "--seconds", str(args.seconds), "--warmup", str(args.warmup)]
    if args.text:
        cmd.append("--text")
    if cpu is not None:
        cmd = ["taskset", "-c", cpu] + cmd
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rate, cpu_us = out.strip().splitlines()[-1].split()
    return float(rate), float(cpu_us)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def hold_idle(port, conns):
    """Open ``conns`` upgraded connections and keep them idle; returns them."""
    loop = asyncio.get_running_loop()
    view = memoryview(bytearray(65536))
    protocols = []
    sem = asyncio.Semaphore(200)

    async def one(i):
        async with sem:
            ready = loop.create_future()
            src = f"127.0.0.{2 + i // 20000}"  # more source ports than one address has
            _, proto = await loop.create_connection(
                lambda: LoadProtocol(view, [b""], 1, ready), "127.0.0.1", port,
                local_addr=(src, 0))
            await ready
            protocols.append(proto)

    await asyncio.gather(*(one(i) for i in range(conns)))
    return protocols


def measure_memory(args, envs):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = {}
    for kind in args.servers.split(","):
        port = free_port()
        proc, banner = start_server(kind, port, False, envs, cpu=None)
        try:
            _uvloop()

            async def main():
                warm = await hold_idle(port, 100)  # first-connection costs out of the way
                await asyncio.sleep(0.5)
                before = rss_kib(proc.pid)
                held = await hold_idle(port, args.conns)
                await asyncio.sleep(1.0)
                after = rss_kib(proc.pid)
                for p in warm + held:
                    p.transport.abort()
                return (after - before) / args.conns

            results[kind] = asyncio.run(main())
            print(f"{kind:10} {results[kind]:6.2f} KiB per idle connection  ({banner})", flush=True)
        finally:
            stop(proc)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", default="compare", choices=["compare", "serve", "load", "mem"])
    parser.add_argument("kind", nargs="?")
    parser.add_argument("--servers", default="ceiling,picows,wsfast,wsfast-py")
    parser.add_argument("--sizes", default="64,256,8192")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--server-pid", type=int, default=None)
    parser.add_argument("--conns", type=int, default=None)
    parser.add_argument("--inflight", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=1, help="repeat the whole table, interleaved")
    parser.add_argument("--text", action="store_true", help="text frames instead of binary")
    parser.add_argument("--json", help="also write the results here")
    at_commit.add_option(parser)
    parser.add_argument("--base", default=None, metavar="REV",
                        help="the wsfast-base/wsfast-py-base servers run wsfast at REV, exported and built "
                             "as --commit is (an A/B in one interleaved run)")
    args = parser.parse_args()

    if args.mode == "serve":
        workdir = None
        if args.commit:  # by hand (py-spy, perf); the orchestrator's children get WSFAST_TREE
            workdir = tempfile.mkdtemp(prefix="wsfast-profile-echo-")
            env, info = at_commit.prepare(args.commit, workdir)
            print(at_commit.describe(info), file=sys.stderr, flush=True)
            os.environ.update(env)
        try:
            SERVERS[args.kind](args.port, args.text)
        except KeyboardInterrupt:  # how the orchestrator stops it
            pass
        finally:
            if workdir:
                shutil.rmtree(workdir, ignore_errors=True)
        return
    if args.mode == "load":
        _uvloop()
        rate, cpu_us = asyncio.run(load(args.port, args.size, args.conns or 16, args.inflight,
                                        args.seconds, args.warmup, args.text, args.server_pid))
        print(rate, cpu_us)
        return
    kinds = args.servers.split(",")
    workdir = tempfile.mkdtemp(prefix="wsfast-profile-echo-")
    try:
        envs, said = server_envs(args, kinds, workdir)
        for name, line in said.items():
            print(f"{name}: {line}", flush=True)
        if args.mode == "mem":
            args.conns = args.conns or 10000
            results = measure_memory(args, envs)
            if args.json:
                with open(args.json, "w") as f:
                    json.dump({"wsfast": said, "kib_per_connection": results}, f, indent=1)
            return
        compare(args, kinds, envs, said)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def compare(args, kinds, envs, said):
    args.conns = args.conns or 16
    sizes = [int(s) for s in args.sizes.split(",")]
    table = {k: {s: [] for s in sizes} for k in kinds}
    cpu = {k: {s: [] for s in sizes} for k in kinds}
    for _ in range(args.rounds):
        for kind in kinds:
            port = free_port()
            proc, banner = start_server(kind, port, args.text, envs)
            try:
                for size in sizes:
                    rate, cpu_us = run_load(port, size, args, proc.pid)
                    table[kind][size].append(rate)
                    cpu[kind][size].append(cpu_us)
            finally:
                stop(proc)
            print(f"  {banner}: " + "  ".join(
                f"{s}B {table[kind][s][-1]/1000:.0f}k {cpu[kind][s][-1]:.2f}us" for s in sizes),
                file=sys.stderr, flush=True)
    med = {k: {s: statistics.median(v) for s, v in d.items()} for k, d in table.items()}
    medcpu = {k: {s: statistics.median(v) for s, v in d.items()} for k, d in cpu.items()}
    what = "text" if args.text else "binary"
    print(f"\nround trips/s (median of {args.rounds}), {what}, {args.conns} conns x "
          f"{args.inflight} in flight, server on cpu 0, client on cpu 1; "
          f"server CPU us per round trip in ()")
    print(f"{'server':18}" + "".join(f"{s:>18}" for s in sizes))
    for kind in kinds:
        print(f"{kind:18}" + "".join(
            f"{med[kind][s]/1000:9.0f}k ({medcpu[kind][s]:4.2f})" for s in sizes))
    for ref in ("picows", "ceiling"):
        if ref in med:
            for kind in kinds:
                if kind.startswith("wsfast"):
                    print(f"{kind + '/' + ref:18}" + "".join(
                        f"{med[kind][s]/med[ref][s]:9.2f}x ({medcpu[kind][s]/medcpu[ref][s]:4.2f})"
                        for s in sizes))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "wsfast": said, "median": med, "cpu_us": medcpu,
                       "all": table, "all_cpu": cpu}, f, indent=1)


if __name__ == "__main__":
    main()
