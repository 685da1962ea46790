"""Hostile clients against wsfast servers on loopback (issue 11): each attack,
bounded in count and time, against a fresh ``python -m wsfast echo|chat|demo``
(or, where the attack needs a handler of its own, against ``--serve-app``
below), then a table: peak server RSS per attack, the bound it must stay
under, what the server did, and whether a normal client was still served.

    python bench/stress.py                      # every attack (~4 minutes)
    python bench/stress.py --only ping-flood --only deflate-bomb
    python bench/stress.py --quick              # smaller counts (the slow test)
    python bench/stress.py --markdown           # the table for docs/hostile-clients.md
    python bench/stress.py --commit HEAD        # wsfast as committed (git archive, built outside the tree)

Peak RSS is the server's ``VmHWM`` (a fresh server per attack), minus its
RSS once it has served its first client ("base"). A row passes when the
growth is within its bound, the server did what the row expects (closed,
refused, answered) and a normal client was served during or right after the
attack. The exit status is 1 when a row fails.
"""

import argparse
import asyncio
import base64
import json
import os
import random
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import at_commit  # noqa: E402  (bench/at_commit.py: --commit, wsfast built outside the checkout)

# WSFAST_TREE (set for the --serve-app child by --commit), else this checkout
if at_commit.tree() not in sys.path:
    sys.path.insert(0, at_commit.tree())

from wsfast import _frame_py as F  # noqa: E402

SERVER_ENV = None  # the servers' environment (at_commit.prepare's, with --commit); None: this process's

MB = 1 << 20
ZERO_KEY = b"\x00\x00\x00\x00"  # a legal masking key that leaves payloads as they are: cheap floods
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


# -- the server under attack ----------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One server process; its memory, CPU time and descriptors from /proc."""

    def __init__(self, kind, *extra, loop=None):
        self.kind = kind
        self.port = free_port()
        if kind == "app":
            argv = [sys.executable, os.path.abspath(__file__), "--serve-app", str(self.port), *extra]
        else:
            argv = [sys.executable, "-m", "wsfast", kind, "--port", str(self.port), *extra]
        if loop == "asyncio" and kind != "app":
            argv.append("--no-uvloop")
        self.log = tempfile.TemporaryFile()
        # -m puts the working directory first on sys.path: the wsfast there runs
        self.proc = subprocess.Popen(argv, cwd=at_commit.tree(SERVER_ENV), env=SERVER_ENV, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server {argv} did not start: {self.output()}")
                time.sleep(0.05)
        self.base = None

    def _status(self, field):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024  # kB -> MB
        return 0.0

    def rss(self):
        return self._status("VmRSS:")

    def peak(self):
        return self._status("VmHWM:")

    def cpu(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def alive(self):
        return self.proc.poll() is None

    def output(self):
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        out = self.output()
        self.log.close()
        return out


# -- a raw client ----------------------------------------------------------------


def request(path="/", host="127.0.0.1", extra=()):
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {KEY}", "Sec-WebSocket-Version: 13", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def open_ws(port, path="/", extra=(), ssl_context=None, limit=2**16, rcvbuf=None):
    """A WebSocket client connection: (reader, writer, response head).
    ``rcvbuf``: a small kernel receive buffer, for a client that never reads
    (else loopback's buffers, megabytes, hide what the server holds)."""
    sock = None
    if rcvbuf is not None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, ssl=ssl_context, limit=limit)
    else:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ssl_context, limit=limit)
    writer.write(request(path, extra=extra))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    if not head.startswith(b"HTTP/1.1 101"):
        writer.close()
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode("latin-1"))
    return reader, writer, head


def frame(opcode, payload, fin=True, rsv1=False, key=ZERO_KEY):
    return F.build_frame(opcode, payload, fin=fin, rsv1=rsv1, mask_key=key)


async def read_messages(reader, parser=None, timeout=5.0, until=None):
    """Frames from the server until ``until(frame)`` is true, EOF or the
    timeout: returns (frames, how it ended: "until"/"eof"/"timeout")."""
    parser = parser or F.FrameParser(mask_required=False, allow_rsv1=True)
    frames = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return frames, "timeout"
        try:
            data = await asyncio.wait_for(reader.read(1 << 16), left)
        except (asyncio.TimeoutError, TimeoutError):
            return frames, "timeout"
        except (ConnectionError, OSError):
            return frames, "eof"
        if not data:
            return frames, "eof"
        for f in parser.feed(data):
            frames.append(f)
            if until is not None and until(f):
                return frames, "until"


def close_code(frames):
    for f in frames:
        if f.opcode == 8:
            return struct.unpack("!H", f.payload[:2])[0] if len(f.payload) >= 2 else 1005
    return None


async def served(server, kind=None, timeout=10.0):
    """Is a normal client served? Echo: a message comes back; chat: a join
    gets its welcome; demo: the welcome line. Returns seconds or None."""
    kind = kind or server.kind
    start = time.monotonic()
    try:
        path = {"chat": "/chat", "demo": "/websocket", "app": "/echo"}.get(kind, "/")
        reader, writer, _ = await asyncio.wait_for(open_ws(server.port, path), timeout)
        try:
            if kind == "chat":
                writer.write(frame(1, json.dumps({"type": "join", "nick": f"probe{random.randrange(10**6)}",
                                                 "room": "probe"}).encode(), key=os.urandom(4)))
                want = b'"welcome"'
            elif kind == "demo":
                want = b"welcome"
            else:
                writer.write(frame(1, b"still there?", key=os.urandom(4)))
                want = b"still there?"
            frames, how = await read_messages(
                reader, timeout=timeout - (time.monotonic() - start),
                until=lambda f: want in f.payload)
            if how != "until":
                return None
        finally:
            writer.transport.abort()
    except (OSError, ConnectionError, asyncio.TimeoutError, TimeoutError):
        return None
    return time.monotonic() - start


async def served_during(server, coro, kind=None):
    """Run the attack ``coro`` and, while it runs (after a second), check a
    normal client; then once more after it. Returns (attack result, served)."""
    task = asyncio.ensure_future(coro)
    await asyncio.sleep(1.0)
    during = await served(server, kind) if not task.done() else None
    result = await task
    after = await served(server, kind)
    ok = after is not None and (during is not None or task.done())
    return result, ok, during, after


def abort(writer):
    try:
        writer.transport.abort()
    except Exception:
        pass


def reset(sock_writer):
    """Close with a TCP RST (SO_LINGER 0)."""
    sock = sock_writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock_writer.transport.abort()


# -- the attacks -------------------------------------------------------------------
#
# Each returns a dict: "what" (what was sent), "outcome" (what the server did),
# "expect_ok" (the server did what the row requires), "served" (bool).

ATTACKS = {}


def attack(name, server, bound_mb, description):
    def register(fn):
        ATTACKS[name] = dict(fn=fn, server=server, bound=bound_mb, description=description)
        return fn
    return register


@attack("slowloris", ("echo",), 32, "200 handshakes sent one byte a second, never finished")
async def slowloris(server, scale):
    n = int(200 * scale)
    head = request()
    conns = []
    for _ in range(n):
        try:
            conns.append(await asyncio.open_connection("127.0.0.1", server.port))
        except OSError:
            break
    start = time.monotonic()
    cut_at = {}

    async def drip(i, reader, writer):
        for byte in head[:-1]:  # never the last byte
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except (ConnectionError, OSError):
                break
            try:
                data = await asyncio.wait_for(reader.read(1), 1.0)
                if not data or data:  # EOF (or a 408/400): the server cut it
                    break
            except (asyncio.TimeoutError, TimeoutError):
                continue
            except (ConnectionError, OSError):
                break
            if time.monotonic() - start > 16:
                break
        cut_at[i] = time.monotonic() - start
        abort(writer)

    async def run():
        await asyncio.wait_for(asyncio.gather(*(drip(i, r, w) for i, (r, w) in enumerate(conns))), 30)

    _, ok, _, _ = await served_during(server, run())
    cut = [t for t in cut_at.values() if t < 15]
    latest = max(cut_at.values()) if cut_at else 0
    return dict(what=f"{len(conns)} connections", outcome=f"{len(cut)} cut by the server, last at {latest:.1f} s",
                expect_ok=len(cut) == len(conns) and latest < 13, served=ok)


@attack("431-huge-head", ("echo",), 16, "20 requests with a 1 MiB head")
async def huge_head(server, scale):
    statuses = []
    for _ in range(max(2, int(20 * scale))):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
            for i in range(1024):
                writer.write(b"X-Fill-%d: %s\r\n" % (i, b"a" * 1000))
                if i % 64 == 0:
                    await writer.drain()
            writer.write(b"\r\n")
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            statuses.append(line.split(b" ")[1].decode() if line else "eof")
        except (ConnectionError, OSError, asyncio.TimeoutError, IndexError):
            statuses.append("reset")
        abort(writer)
    ok_after = await served(server)
    counts = {s: statuses.count(s) for s in sorted(set(statuses))}
    return dict(what=f"{len(statuses)} heads of 1 MiB", outcome=f"answers {counts}",
                expect_ok=all(s in ("431", "reset", "eof") for s in statuses) and "431" in counts,
                served=ok_after is not None)


@attack("deflate-bomb", ("echo", "--deflate"), 64, "one message inflating to 1 GiB")
async def deflate_bomb(server, scale):
    size = int(1024 * MB * scale)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(MB)
    parts = [comp.compress(chunk) for _ in range(size // MB)]
    parts.append(comp.flush(zlib.Z_SYNC_FLUSH))
    payload = b"".join(parts)[:-4]
    reader, writer, head = await open_ws(server.port, extra=["Sec-WebSocket-Extensions: permessage-deflate"])
    if b"permessage-deflate" not in head:
        return dict(what="", outcome="deflate not negotiated", expect_ok=False, served=False)

    async def run():
        writer.write(frame(2, payload, rsv1=True))
        frames, how = await read_messages(reader, timeout=30, until=lambda f: f.opcode == 8)
        return close_code(frames), how

    (code, how), ok, _, _ = await served_during(server, run())
    abort(writer)
    return dict(what=f"{len(payload) / MB:.1f} MB compressed, {size // MB} MiB inflated",
                outcome=f"close {code}" if code else how, expect_ok=code == 1009, served=ok)


@attack("connect-close", ("echo",), 16, "connect, handshake, close, many times")
async def connect_close(server, scale):
    n = int(5000 * scale)
    before = server.fds()
    done = 0
    start = time.monotonic()
    for i in range(n):
        try:
            reader, writer, _ = await open_ws(server.port)
            if i % 2:
                writer.write(frame(8, b"\x03\xe8", key=os.urandom(4)))
                await read_messages(reader, timeout=2, until=lambda f: f.opcode == 8)
            abort(writer)
            done += 1
        except (OSError, ConnectionError, asyncio.TimeoutError):
            pass
        if time.monotonic() - start > 60:
            break
    await asyncio.sleep(1.0)
    after = server.fds()
    ok = await served(server)
    return dict(what=f"{done} cycles in {time.monotonic() - start:.0f} s",
                outcome=f"server fds {before} -> {after}", expect_ok=after <= before + 2 and done >= n // 2,
                served=ok is not None)


@attack("reset-while-streaming", ("app",), 64, "reset right after the handshake, handler streaming")
async def reset_streaming(server, scale):
    resets = 5
    for _ in range(resets):
        reader, writer, _ = await open_ws(server.port, "/stream")
        reset(writer)
        await asyncio.sleep(0.2)
    cpu0 = server.cpu()
    t0 = time.monotonic()
    await asyncio.sleep(3.0)
    busy = (server.cpu() - cpu0) / (time.monotonic() - t0)
    ok = await served(server, timeout=10)
    return dict(what=f"{resets} resets", outcome=f"server CPU {busy:.0%} over 3 s after",
                expect_ok=busy < 0.3, served=ok is not None)


@attack("empty-continuations", ("echo",), 32, "a text frame, then empty continuation frames")
async def empty_continuations(server, scale):
    n = int(20_000_000 * scale)
    reader, writer, _ = await open_ws(server.port)
    batch = frame(0, b"", fin=False) * 100_000
    sent = 0
    start = time.monotonic()

    async def run():
        nonlocal sent
        writer.write(frame(1, b"x", fin=False))
        try:
            while sent < n and time.monotonic() - start < 25:
                writer.write(batch)
                await writer.drain()
                sent += 100_000
        except (ConnectionError, OSError):
            pass
        frames, how = await read_messages(reader, timeout=3, until=lambda f: f.opcode == 8)
        return close_code(frames), how

    (code, how), ok, _, _ = await served_during(server, run())
    abort(writer)
    return dict(what=f"{sent / 1e6:.1f} M frames", outcome=f"close {code}" if code else f"still open ({how})",
                expect_ok=code in (1009, 1008), served=ok)


@attack("1-byte-fragments", ("echo",), 80, "a 16 MiB message in 1-byte fragments")
async def tiny_fragments(server, scale):
    n = int(16 * MB * scale)
    reader, writer, _ = await open_ws(server.port)
    batch = frame(0, b"a", fin=False) * 65536
    sent = 0
    start = time.monotonic()
    stopped = ""

    async def run():
        nonlocal sent, stopped
        writer.write(frame(1, b"a", fin=False))
        try:
            while sent < n - 65536:
                if time.monotonic() - start > 40:
                    stopped = ", stopped at 40 s"
                    break
                if server.rss() > 1000:
                    stopped = ", stopped at 1.5 GB"
                    break
                writer.write(batch)
                await writer.drain()
                sent += 65536
            writer.write(frame(0, b"a", fin=True))
        except (ConnectionError, OSError):
            pass
        frames, how = await read_messages(reader, timeout=10, until=lambda f: f.opcode == 8 or f.fin)
        return close_code(frames), how, frames

    (code, how, frames), ok, _, _ = await served_during(server, run())
    abort(writer)
    outcome = f"close {code}" if code else ("echoed" if frames else how)
    return dict(what=f"{sent / MB:.1f} Mi fragments{stopped}", outcome=outcome,
                expect_ok=code in (1009, 1008) or bool(frames), served=ok)


@attack("ping-flood", ("echo",), 32, "1 M pings of 125 bytes, never reading the pongs")
async def ping_flood(server, scale):
    n = int(1_000_000 * scale)
    reader, writer, _ = await open_ws(server.port, rcvbuf=4096)
    writer.transport.pause_reading()
    batch = frame(9, b"p" * 125) * 10_000
    sent = 0
    start = time.monotonic()

    async def run():
        nonlocal sent
        try:
            while sent < n and time.monotonic() - start < 25 and server.rss() < 1000:
                writer.write(batch)
                await asyncio.wait_for(writer.drain(), 5)
                sent += 10_000
        except (ConnectionError, OSError, asyncio.TimeoutError):
            pass
        return time.monotonic() - start

    _, ok, _, _ = await served_during(server, run())
    outcome = "writes blocked (server stopped reading)" if sent < n else "all sent"
    abort(writer)
    return dict(what=f"{sent / 1000:.0f} k pings", outcome=outcome, expect_ok=True, served=ok)


@attack("never-reads-echo", ("echo",), 32, "echo: 200 MiB of messages, never reading")
async def never_reads_echo(server, scale):
    total = int(200 * MB * scale)
    reader, writer, _ = await open_ws(server.port, rcvbuf=4096)
    writer.transport.pause_reading()
    msg = frame(2, bytes(64 * 1024))
    sent = 0
    start = time.monotonic()

    async def run():
        nonlocal sent
        try:
            while sent < total and time.monotonic() - start < 25 and server.rss() < 1000:
                writer.write(msg)
                await asyncio.wait_for(writer.drain(), 5)
                sent += 64 * 1024
        except (ConnectionError, OSError, asyncio.TimeoutError):
            pass

    _, ok, _, _ = await served_during(server, run())
    writer.transport.resume_reading()
    frames, how = await read_messages(reader, timeout=5, until=lambda f: f.opcode == 8)
    code = close_code(frames)
    abort(writer)
    if code:
        outcome = f"close {code}"
    elif sent < total:
        outcome = f"stopped reading at {sent / MB:.0f} MiB (back pressure), not closed"
    else:
        outcome = f"read it all, not closed ({how})"
    return dict(what=f"{sent / MB:.0f} MiB sent", outcome=outcome, expect_ok=True, served=ok)


@attack("never-reads-chat", ("chat",), 12, "chat: 5 clients re-join busy rooms, never reading")
async def never_reads_chat(server, scale):
    seconds = max(20, 30 * scale)  # shorter, the kernel's socket buffers hide it
    # 8 talkers keep two rooms' history (the last 50 events, sent in each
    # welcome) full of ~1 KB messages, each within the rate limit (10/s).
    talkers = []
    for i in range(8):
        reader, writer, _ = await open_ws(server.port, "/chat")
        writer.write(frame(1, json.dumps({"type": "join", "nick": f"talker{i}", "room": "ab"[i % 2]}).encode()))
        talkers.append((reader, writer))
    hostile = []
    for i in range(5):
        reader, writer, _ = await open_ws(server.port, "/chat", rcvbuf=4096)
        writer.transport.pause_reading()
        hostile.append((reader, writer))
    stop = time.monotonic() + seconds

    async def drain(reader):  # talkers read what they get
        try:
            while await reader.read(1 << 20):
                pass
        except (ConnectionError, OSError):
            pass

    async def talk(i, reader, writer):
        reading = asyncio.ensure_future(drain(reader))
        n = 0
        while time.monotonic() < stop and not writer.is_closing():
            writer.write(frame(1, json.dumps({"type": "msg", "text": f"{i}.{n} " + "z" * 990}).encode()))
            n += 1
            await asyncio.sleep(0.12)  # within the rate limit (10/s)
        reading.cancel()

    async def rejoin():
        k = 0
        while time.monotonic() < stop and server.rss() < 1000:
            for i, (_, writer) in enumerate(hostile):
                try:
                    writer.write(frame(1, json.dumps({"type": "join", "nick": f"slow{i}",
                                                      "room": "ab"[(k + i) % 2]}).encode()))
                except (ConnectionError, OSError):
                    pass
            k += 1
            await asyncio.sleep(0.12)  # each client within the rate limit
        return k

    async def run():
        results = await asyncio.gather(rejoin(), *(talk(i, r, w) for i, (r, w) in enumerate(talkers)))
        return results[0]

    joins, ok, _, _ = await served_during(server, run())
    codes = []
    for reader, writer in hostile:
        writer.transport.resume_reading()
        frames, how = await read_messages(reader, timeout=2, until=lambda f: f.opcode == 8)
        codes.append(close_code(frames))
        abort(writer)
    for _, writer in talkers:
        abort(writer)
    closed = [c for c in codes if c is not None]
    return dict(what=f"{joins} re-joins each, {seconds:.0f} s",
                outcome=f"{len(closed)} of 5 closed {sorted(set(closed))}" if closed else "none closed",
                expect_ok=True, served=ok)


@attack("never-reads-demo", ("demo",), 32, "demo: a client never reads while another chats")
async def never_reads_demo(server, scale):
    seconds = 25 * scale
    r1, slow, _ = await open_ws(server.port, "/websocket", rcvbuf=4096)
    slow.transport.pause_reading()
    r2, talker, _ = await open_ws(server.port, "/websocket")
    text = frame(1, b"y" * 8000)

    async def run():
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < seconds and server.rss() < 1000:
            talker.write(text * 16)
            try:
                await asyncio.wait_for(talker.drain(), 5)
            except (ConnectionError, OSError, asyncio.TimeoutError):
                break
            # The talker reads its own copies (a normal client).
            try:
                await asyncio.wait_for(r2.read(1 << 20), 0.01)
            except (asyncio.TimeoutError, TimeoutError):
                pass
            n += 16
        return n

    n, ok, _, _ = await served_during(server, run())
    slow.transport.resume_reading()
    frames, how = await read_messages(r1, timeout=3, until=lambda f: f.opcode == 8)
    code = close_code(frames)
    abort(slow)
    abort(talker)
    return dict(what=f"{n} broadcasts of 8 KB", outcome=f"slow client: close {code}" if code else "slow client not closed",
                expect_ok=True, served=ok)


@attack("malformed-origin", ("demo",), 16, "200 handshakes with Origin: http://[")
async def malformed_origin(server, scale):
    statuses = []
    for _ in range(max(5, int(200 * scale))):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(request("/websocket", extra=["Origin: http://["]))
        line = await asyncio.wait_for(reader.readline(), 5)
        statuses.append(line.split(b" ")[1].decode() if line.count(b" ") >= 1 else "eof")
        abort(writer)
    ok = await served(server)
    out = server.output()
    errors = out.count("ERROR") + out.count("Traceback")
    counts = {s: statuses.count(s) for s in sorted(set(statuses))}
    return dict(what=f"{len(statuses)} requests", outcome=f"answers {counts}, {errors} ERROR log lines",
                expect_ok=counts == {"403": len(statuses)} and errors == 0, served=ok is not None)


@attack("half-close-async", ("app",), 16, "5 messages + close, then shutdown(SHUT_WR); async on_message")
async def half_close_async(server, scale):
    reader, writer, _ = await open_ws(server.port, "/async-echo")
    for i in range(5):
        writer.write(frame(1, f"m{i}".encode(), key=os.urandom(4)))
    writer.write(frame(8, b"\x03\xe8", key=os.urandom(4)))
    await writer.drain()
    writer.write_eof()
    frames, how = await read_messages(reader, timeout=5, until=lambda f: f.opcode == 8)
    echoes = sum(1 for f in frames if f.opcode == 1)
    code = close_code(frames)
    abort(writer)
    ok = await served(server)
    return dict(what="5 messages, close, FIN", outcome=f"{echoes} echoes, close {code}",
                expect_ok=echoes == 5 and code == 1000, served=ok is not None)


@attack("16MiB-random-deflate", ("echo", "--deflate"), 160, "a 16 MiB random message, compressed")
async def random_deflate(server, scale):
    size = 16 * MB if scale >= 1 else 4 * MB
    payload = random.Random(1).randbytes(size)
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = comp.compress(payload) + comp.flush(zlib.Z_SYNC_FLUSH)
    data = data[:-4]
    reader, writer, head = await open_ws(server.port, extra=["Sec-WebSocket-Extensions: permessage-deflate"])

    async def run():
        writer.write(frame(2, data, rsv1=True))
        parser = F.FrameParser(mask_required=False, allow_rsv1=True, max_frame_size=64 * MB)
        return await read_messages(reader, parser, timeout=30, until=lambda f: f.opcode in (2, 8))

    (frames, how), ok, _, _ = await served_during(server, run())
    abort(writer)
    code = close_code(frames)
    back = [f for f in frames if f.opcode == 2]
    echoed = False
    if back:
        f = back[0]
        out = zlib.decompressobj(-15).decompress(f.payload + b"\x00\x00\xff\xff") if f.rsv1 else f.payload
        echoed = out == payload
    return dict(what=f"{size // MB} MiB -> {len(data)} bytes compressed",
                outcome="echoed intact" if echoed else (f"close {code}" if code else how),
                expect_ok=echoed, served=ok)


@attack("idle-keepalive", ("echo",), 32, "100 connections sending one byte a second, never answering pings")
async def idle_keepalive(server, scale):
    return await _idle(server, scale)


@attack("idle-keepalive-app", ("app",), 32, "the same against an Application with default settings")
async def idle_keepalive_app(server, scale):
    return await _idle(server, scale)


async def _idle(server, scale):
    n = int(100 * scale)
    seconds = 50 if scale >= 1 else 45
    conns = []
    fds_before = server.fds()
    for _ in range(n):
        reader, writer, _ = await open_ws(server.port, rcvbuf=4096)
        writer.transport.pause_reading()  # never answers a ping
        conns.append((reader, writer))
    start = time.monotonic()
    body = frame(2, b"b" * 200)
    pos = 0

    async def run():
        nonlocal pos
        while time.monotonic() - start < seconds:
            for reader, writer in conns:
                try:
                    if not writer.transport.is_closing():
                        writer.write(body[pos : pos + 1])
                except (ConnectionError, OSError):
                    pass
            pos = (pos + 1) % (len(body) - 1)
            await asyncio.sleep(1.0)
            if server.fds() <= fds_before:
                break
        return max(0, server.fds() - fds_before)  # before the last probe adds its own

    still, ok, _, _ = await served_during(server, run())
    for _, writer in conns:
        abort(writer)
    return dict(what=f"{n} connections, {time.monotonic() - start:.0f} s",
                outcome=f"{max(0, n - still)} of {n} closed by the server", expect_ok=still == 0, served=ok)


def make_cert(folder):
    cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    return cert, key


@attack("plain-tcp-on-tls", ("tls",), 16, "50 TCP connections to the TLS port that never start TLS")
async def plain_on_tls(server, scale):
    n = int(50 * scale)
    conns = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(n)]
    start = time.monotonic()
    closed_at = {}

    async def watch(i, reader):
        try:
            await asyncio.wait_for(reader.read(1), 25)
        except (asyncio.TimeoutError, TimeoutError):
            return  # still open
        except (ConnectionError, OSError):
            pass
        closed_at[i] = time.monotonic() - start

    async def run():
        await asyncio.gather(*(watch(i, r) for i, (r, _) in enumerate(conns)))

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    task = asyncio.ensure_future(run())
    await asyncio.sleep(1)
    ok_tls = await tls_served(server, ctx)
    await task
    for _, w in conns:
        abort(w)
    latest = max(closed_at.values(), default=0)
    outcome = f"{len(closed_at)} of {n} cut, the last at {latest:.0f} s" if closed_at else f"none cut in 25 s"
    return dict(what=f"{n} connections", outcome=outcome,
                expect_ok=len(closed_at) == n and latest < 15, served=ok_tls)


async def tls_served(server, ctx):
    try:
        reader, writer, _ = await asyncio.wait_for(open_ws(server.port, ssl_context=ctx), 10)
        writer.write(frame(1, b"tls?", key=os.urandom(4)))
        frames, how = await read_messages(reader, timeout=10, until=lambda f: f.payload == b"tls?")
        abort(writer)
        return how == "until"
    except (OSError, ConnectionError, asyncio.TimeoutError, ssl.SSLError):
        return False


@attack("connection-flood", ("echo",), 128, "3000 WebSocket connections held open")
async def connection_flood(server, scale):
    n = int(3000 * scale)
    conns, refused = [], {}
    for _ in range(n):
        try:
            conns.append(await open_ws(server.port))
        except ConnectionError as exc:
            refused[str(exc)[:40]] = refused.get(str(exc)[:40], 0) + 1
        except OSError as exc:
            refused[type(exc).__name__] = refused.get(type(exc).__name__, 0) + 1
    ok = await served(server)
    for _, writer, _ in conns:
        abort(writer)
    return dict(what=f"{n} connections", outcome=f"{len(conns)} open, refused {refused or 0}",
                expect_ok=True, served=ok is not None)


# -- the app for attacks that need their own handler ------------------------------


def serve_app(port, certfile=None, keyfile=None):
    """``--serve-app PORT``: /stream (the README's back-pressure idiom: a task
    started from open() awaits each write_message), /async-echo (``async
    def on_message``), /echo; with a certificate, the echo over TLS."""
    import wsfast

    class Stream(wsfast.WebSocketHandler):
        def open(self):
            self.task = asyncio.ensure_future(self.pump())

        async def pump(self):
            chunk = b"s" * 65536
            while True:
                await self.write_message(chunk, binary=True)

        def on_message(self, message):
            pass

    class AsyncEcho(wsfast.WebSocketHandler):
        async def on_message(self, message):
            await asyncio.sleep(0.01)
            await self.write_message(message)

    class Echo(wsfast.WebSocketHandler):
        def on_message(self, message):
            self.write_message(message)

    app = wsfast.Application([(r"/stream", Stream), (r"/async-echo", AsyncEcho), (r"/.*", Echo)])
    ctx = None
    if certfile:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(certfile, keyfile)
    wsfast.run(app, host="127.0.0.1", port=port, ssl=ctx)


# -- driver -------------------------------------------------------------------------


def start_server(spec, loop, tmp):
    kind, *extra = spec
    if kind == "tls":
        cert, key = make_cert(tmp)
        probe = subprocess.run([sys.executable, "-m", "wsfast", "echo", "--help"], cwd=at_commit.tree(SERVER_ENV),
                               env=SERVER_ENV, capture_output=True, text=True).stdout
        if "--certfile" in probe:
            server = Server("echo", "--certfile", cert, "--keyfile", key, loop=loop)
            server.how = "python -m wsfast echo --certfile"
        else:
            server = Server("app", cert, key)
            server.how = "app, ssl= context (the CLI has no --certfile)"
        return server
    return Server(kind, *extra, loop=loop)


async def settle(server):
    if server.kind == "tls" or getattr(server, "how", "").startswith(("app, ssl", "python -m wsfast echo --cert")):
        await asyncio.sleep(0.5)
        return
    await served(server)


def run_one(name, scale, loop):
    spec = ATTACKS[name]
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(spec["server"], loop, tmp)
        try:
            asyncio.run(settle(server))
            time.sleep(0.3)
            server.base = server.rss()
            t0 = time.monotonic()
            try:
                result = asyncio.run(spec["fn"](server, scale))
            except Exception as exc:  # the attack itself failed: a row that says so
                result = dict(what="", outcome=f"attack error: {type(exc).__name__}: {exc}"[:120],
                              expect_ok=False, served=False)
            result["seconds"] = time.monotonic() - t0
            result["alive"] = server.alive()
            result["peak"] = server.peak() if server.alive() else float("nan")
            result["base"] = server.base
        finally:
            log = server.stop()
    growth = result["peak"] - result["base"]
    result.update(
        attack=name,
        server=" ".join(spec["server"]) if spec["server"][0] != "tls" else getattr(server, "how", "tls"),
        bound=spec["bound"],
        growth=growth,
        log_lines=log.count("\n"),
    )
    result["pass"] = bool(result["alive"] and growth <= spec["bound"] and result["expect_ok"] and result["served"])
    return result


def table(rows, markdown):
    head = ["attack", "server", "sent", "what the server did", "base MB", "peak MB", "growth MB",
            "bound MB", "served", "result"]
    lines = []
    for r in rows:
        lines.append([r["attack"], r["server"], r["what"], r["outcome"], f"{r['base']:.0f}",
                      f"{r['peak']:.0f}", f"{r['growth']:+.0f}", f"{r['bound']}",
                      "yes" if r["served"] else "NO", "pass" if r["pass"] else "FAIL"])
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(c.replace("|", "/") for c in line) + " |" for line in lines]
        return "\n".join(out)
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    return "\n".join([fmt.format(*head)] + [fmt.format(*line) for line in lines])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=sorted(ATTACKS), help="run this attack (repeatable)")
    parser.add_argument("--quick", action="store_true", help="a quarter of the counts")
    parser.add_argument("--loop", choices=["default", "asyncio"], default="default",
                        help="the servers' event loop (default: uvloop when installed)")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--serve-app", nargs="+", metavar="PORT [CERT KEY]", help=argparse.SUPPRESS)
    at_commit.add_option(parser)
    args = parser.parse_args(argv)
    if args.serve_app:
        port, *cert = args.serve_app
        serve_app(int(port), *cert)
        return 0
    global SERVER_ENV
    workdir = tempfile.mkdtemp(prefix="wsfast-stress-")
    SERVER_ENV, info = at_commit.prepare(args.commit, workdir)
    names = args.only or list(ATTACKS)
    scale = 0.25 if args.quick else 1.0
    loop = None if args.loop == "default" else "asyncio"
    rows = []
    for name in names:
        print(f"... {name}: {ATTACKS[name]['description']}", file=sys.stderr, flush=True)
        row = run_one(name, scale, loop)
        print(f"    {row['outcome']}; peak {row['peak']:.0f} MB ({row['growth']:+.0f}), "
              f"served {row['served']}, {'pass' if row['pass'] else 'FAIL'} ({row['seconds']:.0f} s)",
              file=sys.stderr, flush=True)
        rows.append(row)
    print(table(rows, args.markdown))
    shutil.rmtree(workdir, ignore_errors=True)
    print(f"\n{at_commit.describe(info)}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"python bench/stress.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1, default=str)
    return 0 if all(r["pass"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
