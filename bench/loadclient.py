"""The one load client for every benchmark server (bench/run.py starts it).

    python bench/loadclient.py echo --port P --server-pid PID --connections 16 --inflight 8 --size 64
    python bench/loadclient.py latency --port P --server-pid PID --size 64
    python bench/loadclient.py fanout --port P --server-pid PID --clients 1000 --messages 300
    python bench/loadclient.py idle --port P --server-pid PID --connections 10000
    python bench/loadclient.py conns --port P --server-pid PID --connections 19000 --sources 4

Prints one JSON object on stdout. asyncio on uvloop, ``BufferedProtocol``
connections reading into one shared buffer, so the client costs little per
message:

* frames to send are built (and masked) once; a connection that got k echoes
  back writes the same bytes again k times, in one write (``--split``: k
  writes, one per message, as a client sending each message separately);
* the upgrade's ``Sec-WebSocket-Accept`` must be the one RFC 6455 §4.2.2
  derives from the key sent, or the connection fails;
* the servers echo frames of a known length (server frames are unmasked and
  of minimal length encoding, RFC 6455 §5.2), so echoes are counted from the
  byte count alone, and every byte received is checked: the echo stream must
  be the expected echo frame (header + the random payload sent) repeated,
  compared chunk by chunk with one ``memcmp`` (``bytes.startswith``); any
  other byte fails the run loudly (a server that sends anything else is
  caught, not miscounted);
* in fan-out, a connection's k-th message is sequence number k (TCP keeps
  order, the servers send in order); the last frame of each read is checked
  to carry that number, and one connection (the controller) reads each
  message's send time from its payload.

Both processes' CPU time (``/proc/PID/task/*/schedstat``, ns) and the
server's RSS (``/proc/PID/status``) are taken at the edges of the measured
window, so the orchestrator need not guess when it is.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import os
import random
import resource
import socket
import struct
import sys
import time

READ_SIZE = 256 * 1024
_buffer = memoryview(bytearray(READ_SIZE))  # every connection reads into it
_CLK_TCK = os.sysconf("SC_CLK_TCK")
MASK = b"\x37\xfa\x21\x3d"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


# -- measurements ----------------------------------------------------------------


def cpu_seconds(pid):
    """CPU seconds of a process so far (of this one if pid is None): the sum
    of its threads' run time in /proc/PID/task/*/schedstat (nanoseconds, so
    short windows and 16 MiB messages are not rounded to 10 ms ticks), or
    user + system ticks from /proc/PID/stat where schedstat is missing."""
    pid = os.getpid() if pid is None else pid
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        pass
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def tcp_retransmits():
    """Machine-wide TCP segments retransmitted so far (/proc/net/snmp):
    on loopback these are tail-loss probes and timeouts, i.e. stalls."""
    try:
        with open("/proc/net/snmp") as f:
            rows = [line.split() for line in f if line.startswith("Tcp:")]
        return int(rows[1][rows[0].index("RetransSegs")])
    except (OSError, ValueError, IndexError):
        return 0


class Window:
    """CPU of both processes and wall time between start() and stop()."""

    def __init__(self, server_pid):
        self.server_pid = server_pid

    def start(self):
        self.t0 = time.perf_counter()
        self.c0 = cpu_seconds(None)
        self.s0 = cpu_seconds(self.server_pid)
        self.r0 = tcp_retransmits()

    def stop(self):
        self.elapsed = time.perf_counter() - self.t0
        self.client_cpu = cpu_seconds(None) - self.c0
        self.server_cpu = cpu_seconds(self.server_pid) - self.s0
        return {
            "seconds": round(self.elapsed, 4),
            "server_cpu_s": round(self.server_cpu, 3),
            "client_cpu_s": round(self.client_cpu, 3),
            "server_cpu_pct": round(100 * self.server_cpu / self.elapsed, 1),
            "client_cpu_pct": round(100 * self.client_cpu / self.elapsed, 1),
            "tcp_retransmits": tcp_retransmits() - self.r0,
        }


# -- frames --------------------------------------------------------------------


def header(opcode, n, masked):
    bit = 0x80 if masked else 0
    if n < 126:
        return bytes((0x80 | opcode, bit | n))
    if n < 65536:
        return bytes((0x80 | opcode, bit | 126)) + n.to_bytes(2, "big")
    return bytes((0x80 | opcode, bit | 127)) + n.to_bytes(8, "big")


def mask(data):
    n = len(data)
    key = (MASK * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def client_frame(opcode, payload):
    return header(opcode, len(payload), True) + MASK + mask(payload)


def echo_length(size):
    """Bytes on the wire of a server's unmasked binary frame of ``size``."""
    return len(header(2, size, False)) + size


class ProtocolViolation(Exception):
    pass


def close_reason(data):
    """', a close frame: CODE REASON' when ``data`` starts with a server's close frame."""
    if len(data) >= 4 and data[0] == 0x88 and 2 <= data[1] < 126:
        code = int.from_bytes(data[2:4], "big")
        return f", a close frame: {code} {bytes(data[4:2 + data[1]]).decode('utf-8', 'replace')!r}"
    return ", a close frame" if data[:1] == b"\x88" else ""


# -- the connection ------------------------------------------------------------


class Client(asyncio.BufferedProtocol):
    """One WebSocket client connection: the upgrade, then ``on_bytes``."""

    __slots__ = ("done", "head", "key", "lost", "on_bytes", "ready", "rx", "sent_at", "transport")

    def __init__(self, ready):
        self.ready = ready
        self.head = b""
        self.rx = 0  # bytes of frames received
        self.done = 0  # frames received
        self.on_bytes = None
        self.lost = False

    def connection_made(self, transport):
        self.transport = transport
        self.key = key = base64.b64encode(os.urandom(16))
        transport.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key +
                        b"\r\nSec-WebSocket-Version: 13\r\n\r\n")

    def get_buffer(self, sizehint):
        return _buffer

    def buffer_updated(self, nbytes):
        if self.on_bytes is not None:
            self.on_bytes(self, nbytes)
            return
        self.head += bytes(_buffer[:nbytes])
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            return
        if not self.head.startswith(b"HTTP/1.1 101"):
            self.fail(ConnectionError(self.head[:end].decode("latin-1")))
            return
        accept = None
        for line in self.head[:end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-accept":
                accept = value.strip()
        expected = base64.b64encode(hashlib.sha1(self.key + GUID).digest())
        if accept != expected:
            self.fail(ProtocolViolation(f"Sec-WebSocket-Accept {accept!r}, RFC 6455 says {expected!r}"))
            return
        rest, self.head = self.head[end + 4:], b""
        if rest:  # a server that spoke first: keep the bytes for on_bytes
            self.head = rest
        if not self.ready.done():
            self.ready.set_result(self)

    def fail(self, exc):
        if not self.ready.done():
            self.ready.set_exception(exc)
        self.transport.abort()

    def connection_lost(self, exc):
        self.lost = True
        if not self.ready.done():
            self.ready.set_exception(exc or ConnectionError("closed during the upgrade"))


async def open_connections(port, count, *, sources=("127.0.0.1",), concurrency=64, progress=None):
    """Open ``count`` upgraded connections, at most ``concurrency`` upgrades
    at a time, spread over the source addresses; return them in order."""
    loop = asyncio.get_running_loop()
    conns = [None] * count
    next_index = iter(range(count))

    async def connect(src, ready):
        if src == "127.0.0.1":
            return await loop.create_connection(lambda: Client(ready), "127.0.0.1", port)
        # IP_BIND_ADDRESS_NO_PORT: the port is picked at connect() for the
        # whole 4-tuple, not by bind() among every port in use (quadratic)
        sock = socket.socket()
        try:
            sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((src, 0))
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", port))
        except BaseException:
            sock.close()
            raise
        return await loop.create_connection(lambda: Client(ready), sock=sock)

    async def worker():
        for i in next_index:
            ready = loop.create_future()
            src = sources[i % len(sources)]
            for attempt in range(5):
                try:
                    await connect(src, ready)
                    conns[i] = await asyncio.wait_for(ready, 30)
                    break
                except (OSError, asyncio.TimeoutError):
                    if attempt == 4:
                        raise
                    ready = loop.create_future()
                    await asyncio.sleep(0.05 * (attempt + 1))
            if progress is not None and i % 1000 == 999:
                progress(i + 1)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return conns


def close_all(conns):
    for c in conns:
        if c is not None and not c.lost:
            c.transport.abort()


# -- echo: pipelined throughput, latency, large messages ----------------------------


async def run_echo(args):
    loop = asyncio.get_running_loop()
    payload = random.Random(args.size).randbytes(args.size)  # not all one byte: a wrong echo shows
    frame = client_frame(2, payload)
    echo = header(2, args.size, False) + payload
    length = len(echo)
    # the echo stream is `echo` repeated: a chunk starting at offset rx % length
    # of it must equal expected[rx % length:][:nbytes]
    expected = echo * (READ_SIZE // length + 2)
    matches = expected.startswith
    batches = [frame * k for k in range(args.inflight + 1)] if args.size <= 65536 else None
    rtts = []
    record = [False]
    stall = [loop.create_future()]
    total = [0]
    goal = [None, 0]  # a future, the round trips it waits for

    def on_bytes(conn, nbytes):
        rx = conn.rx
        if not matches(_buffer[:nbytes], rx % length):
            got = bytes(_buffer[:nbytes])
            want = expected[rx % length:rx % length + nbytes]
            at = next(i for i in range(nbytes) if got[i] != want[i])
            exc = ProtocolViolation(f"echo stream byte {rx + at:,} (echo {(rx + at) // length:,}, byte "
                                    f"{(rx + at) % length} of its {length}-byte frame) is {got[at]:#04x}, "
                                    f"expected {want[at]:#04x}" + close_reason(got[at:]))
            conn.fail(exc)
            stall[0].done() or stall[0].set_exception(exc)
            return
        rx += nbytes
        conn.rx = rx
        done = rx // length
        k = done - conn.done
        if k:
            conn.done = done
            total[0] += k
            if goal[0] is not None and total[0] >= goal[1] and not goal[0].done():
                goal[0].set_result(None)
            now = time.perf_counter()
            if record[0]:
                rtts.append(now - conn.sent_at)
            conn.sent_at = now
            if batches is not None and not args.split:
                conn.transport.write(batches[k])
            else:
                for _ in range(k):
                    conn.transport.write(frame)

    conns = await open_connections(args.port, args.connections)
    for conn in conns:
        conn.done = 0
        conn.on_bytes = on_bytes
        conn.sent_at = time.perf_counter()
        if conn.head:
            raise ProtocolViolation("the server sent data before any message")
        if args.split or batches is None:
            for _ in range(args.inflight):
                conn.transport.write(frame)
        else:
            conn.transport.write(batches[args.inflight])
    async def reach(count, timeout):
        goal[0], goal[1] = loop.create_future(), count
        if total[0] < count:
            await asyncio.wait([stall[0], goal[0]], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)

    window = Window(args.server_pid)
    if args.count:  # large messages: one round trip to warm up, then `count` more (or until `duration`)
        await reach(1, args.timeout)
        n0 = total[0]
        window.start()
        await reach(n0 + args.count, args.duration)
    else:
        await asyncio.wait([stall[0]], timeout=args.warmup)
        n0 = total[0]
        window.start()
        record[0] = args.inflight == 1
        await asyncio.wait([stall[0]], timeout=args.duration)
    result = window.stop()
    record[0] = False
    if stall[0].done():
        stall[0].result()
    n = total[0] - n0
    close_all(conns)
    result.update(round_trips=n, round_trips_per_s=n / window.elapsed,
                  server_cpu_us_per_rt=1e6 * window.server_cpu / n if n else None,
                  mb_per_s=n * args.size / window.elapsed / 1e6)
    if rtts:
        rtts.sort()
        result.update(rtt_p50_us=1e6 * rtts[len(rtts) // 2], rtt_p99_us=1e6 * rtts[int(len(rtts) * 0.99)])
    if n == 0:
        raise ProtocolViolation("no echo came back in the measured window")
    return result


# -- fan-out ------------------------------------------------------------------------

STAMP = struct.Struct("<Id")


async def run_fanout(args):
    """``clients`` connections; the first (the controller) asks for waves of
    broadcasts with ``!broadcast START COUNT SIZE``, at most ``window`` waves
    outstanding; every connection counts frames; ``last[seq]`` is the time
    the last connection got message ``seq`` (each read stamps the frames it
    completes). The controller's own copies are counted as deliveries but
    not timed: it is the publisher, and a server may rightly hold a
    sender's copies until its handler returns (wsfast keeps them in order
    after the replies of the same read)."""
    loop = asyncio.get_running_loop()
    size = args.size
    length = echo_length(size)
    hl = length - size
    first = header(2, size, False)[0]
    total = args.messages
    per_wave = max(1, args.wave_deliveries // args.clients)
    last = [0.0] * total
    sent = [0.0] * total
    delivered = [0]
    waiter = [None, 0]  # future, deliveries it waits for
    error = []

    def on_bytes(conn, nbytes, stamp=True):
        rx = conn.rx
        boundary = -rx % length
        if boundary < nbytes and _buffer[boundary] != first:
            error.append(f"unexpected byte {_buffer[boundary]:#x} at a frame boundary")
            wake()
            return
        rx += nbytes
        conn.rx = rx
        done = rx // length
        a = conn.done
        if done == a:
            return
        conn.done = done
        if stamp:
            now = time.monotonic()
            last[a:done] = [now] * (done - a)
        end = done * length - (rx - nbytes)  # where the last complete frame ends in this chunk
        if end >= length:  # the whole last frame is in this chunk: check its number
            seq = STAMP.unpack_from(_buffer, end - length + hl)[0]
            if seq != done - 1:
                error.append(f"connection got message {seq} as its message {done - 1}")
                wake()
                return
        delivered[0] += done - a
        if delivered[0] >= waiter[1]:
            wake()

    def on_controller_bytes(conn, nbytes):
        # the controller parses every frame's stamp; it keeps split frames
        data = conn.head + bytes(_buffer[:nbytes])
        pos = 0
        while len(data) - pos >= length:
            seq, t = STAMP.unpack_from(data, pos + hl)
            sent[seq] = t
            pos += length
        conn.head = data[pos:]
        on_bytes(conn, nbytes, stamp=False)  # the publisher is not one of the receivers timed

    def wake():
        fut = waiter[0]
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def wait_for(count):
        waiter[0], waiter[1] = loop.create_future(), count
        if delivered[0] < count and not error:
            try:
                await asyncio.wait_for(waiter[0], args.timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(f"{delivered[0]} of {count} deliveries after {args.timeout} s") from None
        if error:
            raise ProtocolViolation(error[0])

    t_connect = time.perf_counter()
    conns = await open_connections(args.port, args.clients)
    connect_s = time.perf_counter() - t_connect
    for conn in conns:
        conn.on_bytes = on_bytes
        conn.done = 0
    controller = conns[0]
    controller.on_bytes = on_controller_bytes
    n = args.clients
    waves = [(s, min(per_wave, total - s)) for s in range(0, total, per_wave)]
    if len(waves) < 2:
        raise ValueError("fan-out needs at least two waves: more --messages or fewer --wave-deliveries")
    warm = max(1, len(waves) // 10)  # waves before the window opens
    window = Window(args.server_pid)
    rss0 = rss_bytes(args.server_pid)
    for i, (start, count) in enumerate(waves):
        if i == warm:
            await wait_for(start * n)  # drain the warm-up waves, then measure
            window.start()
            d0 = delivered[0]
        if i >= args.window:
            await wait_for(waves[i - args.window][0] * n + waves[i - args.window][1] * n)
        controller.transport.write(client_frame(1, f"!broadcast {start} {count} {size}".encode()))
    await wait_for(total * n)
    result = window.stop()
    rss1 = rss_bytes(args.server_pid)
    close_all(conns)
    measured = waves[warm][0]
    deliveries = delivered[0] - d0
    lat = sorted(last[s] - sent[s] for s in range(measured, total))
    result.update(
        clients=n, messages=total - measured, per_wave=per_wave, connect_s=round(connect_s, 3),
        deliveries=deliveries, deliveries_per_s=deliveries / window.elapsed,
        server_cpu_us_per_delivery=1e6 * window.server_cpu / deliveries,
        client_cpu_us_per_delivery=1e6 * window.client_cpu / deliveries,
        last_delivery_p50_ms=1e3 * lat[len(lat) // 2], last_delivery_p99_ms=1e3 * lat[int(len(lat) * 0.99)],
        server_rss_before=rss0, server_rss_after=rss1,
    )
    return result


# -- idle memory, connection count -------------------------------------------------


async def echo_check(conns, timeout):
    """Every connection sends one 16-byte binary message; how many echoes
    come back within ``timeout``."""
    loop = asyncio.get_running_loop()
    frame = client_frame(2, b"still here, echo")
    length = echo_length(16)
    done = loop.create_future()
    count = [0]

    def on_bytes(conn, nbytes):
        conn.rx += nbytes
        if conn.rx >= length and not conn.done:
            conn.done = 1
            count[0] += 1
            if count[0] == len(conns) and not done.done():
                done.set_result(None)

    for conn in conns:
        conn.done = 0
        conn.on_bytes = on_bytes
        if not conn.lost:
            conn.transport.write(frame)
    t0 = time.perf_counter()
    await asyncio.wait([done], timeout=timeout)
    return count[0], time.perf_counter() - t0


async def run_idle(args):
    """Server RSS growth per idle (upgraded, silent) connection."""
    base = await open_connections(args.port, 10)
    echoed, _ = await echo_check(base, 10)  # warm the server's paths first
    await asyncio.sleep(0.5)
    rss0 = rss_bytes(args.server_pid)
    conns = await open_connections(args.port, args.connections)
    await asyncio.sleep(args.settle)
    rss1 = rss_bytes(args.server_pid)
    echoed, _ = await echo_check(conns, 30)
    close_all(conns + base)
    return {"connections": args.connections, "server_rss_before": rss0, "server_rss_after": rss1,
            "bytes_per_connection": (rss1 - rss0) / args.connections, "echoed": echoed}


async def run_conns(args):
    """Open ``connections`` from several 127.0.0.x source addresses; accept
    rate, server RSS, then every connection must still echo."""
    sources = tuple(f"127.0.0.{i}" for i in range(2, 2 + args.sources))
    rss0 = rss_bytes(args.server_pid)
    window = Window(args.server_pid)
    window.start()
    conns = await open_connections(args.port, args.connections, sources=sources, concurrency=args.concurrency)
    result = window.stop()
    await asyncio.sleep(args.settle)
    rss1 = rss_bytes(args.server_pid)
    echoed, echo_s = await echo_check(conns, args.timeout)
    close_all(conns)
    result.update(connections=args.connections, accepts_per_s=args.connections / window.elapsed,
                  server_rss_before=rss0, server_rss_after=rss1, echoed=echoed,
                  echo_check_s=round(echo_s, 3), all_echoed=echoed == args.connections)
    return result


# -- command line -------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)

    def common(p):
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--server-pid", type=int, required=True)
        p.add_argument("--timeout", type=float, default=60.0)

    for name in ("echo", "latency", "large"):
        p = sub.add_parser(name)
        common(p)
        p.add_argument("--connections", type=int, default={"echo": 16}.get(name, 1))
        p.add_argument("--inflight", type=int, default={"echo": 8, "large": 2}.get(name, 1))
        p.add_argument("--size", type=int, default=16 * 2**20 if name == "large" else 64)
        p.add_argument("--warmup", type=float, default=0.5)
        p.add_argument("--duration", type=float, default=2.0)
        p.add_argument("--count", type=int, default=6 if name == "large" else 0,
                       help="measure this many round trips after one (--duration caps the time)")
        p.add_argument("--split", action="store_true",
                       help="one write per message (as most clients send), not one per answer to a read")
    p = sub.add_parser("fanout")
    common(p)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--messages", type=int, default=300)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--wave-deliveries", type=int, default=10000,
                   help="deliveries per broadcast command (messages per wave = this / clients, at least 1)")
    p.add_argument("--window", type=int, default=4, help="waves outstanding at once")
    p = sub.add_parser("idle")
    common(p)
    p.add_argument("--connections", type=int, default=10000)
    p.add_argument("--settle", type=float, default=1.0)
    p = sub.add_parser("conns")
    common(p)
    p.add_argument("--connections", type=int, default=10000)
    p.add_argument("--sources", type=int, default=4, help="source addresses 127.0.0.2 ...")
    p.add_argument("--concurrency", type=int, default=64, help="upgrades in progress at once")
    p.add_argument("--settle", type=float, default=1.0)
    args = parser.parse_args(argv)

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    import uvloop

    run = {"echo": run_echo, "latency": run_echo, "large": run_echo, "fanout": run_fanout,
           "idle": run_idle, "conns": run_conns}[args.mode]
    try:
        result = uvloop.run(asyncio.wait_for(run(args), args.timeout * 3))
    except Exception as exc:  # noqa: BLE001 - one JSON line either way, the orchestrator reads it
        result = {"error": f"{type(exc).__name__}: {exc}"}
    result["mode"] = args.mode
    print(json.dumps(result), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
