"""Helpers shared by the tests against real peers and the conformance suite.

* event loops: ``LOOP_KINDS`` ("asyncio", "uvloop"), :func:`loop_factory`,
  :func:`run_on` / :func:`run_in_loop` (run a coroutine on a fresh loop of a
  given kind, bounded; the ``run`` fixture of conftest.py uses it)
  and :class:`LoopThread` (a loop of a given kind in a thread, for a server or
  client under test while the peer runs in the test's own loop);
* codecs: ``CODEC_NAMES`` and :func:`require_codec`;
* :class:`RawWebSocket`: a tiny, independent RFC 6455 endpoint over asyncio
  streams (handshake by hand, frames built with ``wsfast._frame_py.build_frame``
  and patched for reserved bits, an independent frame reader) used as the
  "fuzzing" peer of the conformance suite, on the client side and the server side;
* :class:`EchoHandler` / :func:`echo_app`: the in-process echo server.

No test lives here.
"""

import asyncio
import base64
import concurrent.futures
import hashlib
import os
import socket
import struct
import threading
import time

import pytest

import wsfast
from wsfast import _frame_py
from wsfast import codec as _codec

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0, 1, 2, 8, 9, 10
MASK_KEY = b"\x37\xfa\x21\x3d"

# -- event loops and codecs -------------------------------------------------------

LOOP_KINDS = ["asyncio", "uvloop"]
CODEC_NAMES = ["cython", "python"]

try:
    import uvloop
except ImportError:  # pragma: no cover - CI installs it
    uvloop = None


def loop_factory(kind):
    """A callable making a new event loop of ``kind``; skips if uvloop is missing."""
    if kind == "asyncio":
        return asyncio.new_event_loop
    if uvloop is None:
        pytest.skip("uvloop is not installed (pip install uvloop)")
    return uvloop.new_event_loop


def require_codec(name):
    """The codec name, or a skip if it is not importable here."""
    if name not in _codec.AVAILABLE:
        pytest.skip("the Cython extension is not built (python setup.py build_ext --inplace)")
    return name


def _cancel_all(loop):
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())


def run_on(factory, coro, timeout, set_event_loop=False):
    """Run ``coro`` on a new loop from ``factory``, at most ``timeout`` s, then
    cancel whatever is left, finish its async generators and close the loop
    (like ``asyncio.run``). With ``set_event_loop`` the loop is also the
    thread's current loop while it runs (Tornado's IOLoop.current() and
    friends look it up there)."""
    loop = factory()
    try:
        if set_event_loop:
            asyncio.set_event_loop(loop)
        return loop.run_until_complete(asyncio.wait_for(coro, timeout))
    finally:
        try:
            _cancel_all(loop)
        finally:
            if set_event_loop:
                asyncio.set_event_loop(None)
            loop.close()


def run_in_loop(kind, coro, timeout=30.0):
    """Run ``coro`` on a fresh event loop of ``kind`` (see :func:`run_on`)."""
    return run_on(loop_factory(kind), coro, timeout)


class LoopThread:
    """An event loop of ``kind`` running in a daemon thread.

    ``run(coro, timeout)`` blocks for the result; ``await arun(coro)`` awaits
    it from another loop; ``close()`` cancels what is left and joins.
    """

    def __init__(self, kind):
        self.kind = kind
        self.loop = loop_factory(kind)()
        self._thread = threading.Thread(target=self._main, name=f"loop-{kind}", daemon=True)
        self._thread.start()

    def _main(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        _cancel_all(self.loop)
        self.loop.close()

    def submit(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro, timeout=30.0):
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    async def arun(self, coro, timeout=30.0):
        future = self.submit(coro)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        finally:
            future.cancel()

    def close(self):
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)


def free_port():
    """An ephemeral port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the in-process echo server -------------------------------------------------


class EchoHandler(wsfast.WebSocketHandler):
    """Echoes every message with its type (text stays text, binary binary)."""

    def on_message(self, message):
        self.write_message(message, binary=type(message) is bytes)


def echo_app(**settings):
    return wsfast.Application([(r"/.*", EchoHandler)], **settings)


async def cancelled_first_step(message):
    """The body of an ``async def on_message`` whose first step runs as the
    connection's consumer task, just created and not run yet, and whose
    task is cancelled before that task's first step: ``"timeout"``, a timer
    due when the loop next looks (a blocking first step; uvloop runs due
    timers before call_soon callbacks, the stdlib loop runs the task first),
    answered ``"timeout timed out"``; ``"uncaught"``, the same, the
    TimeoutError not caught; ``"cancel"``, the handler's own cancel()
    (deterministic on both loops), answered ``"cancel cancelled"``. Python
    3.11+ (asyncio.timeout, Task.uncancel). Returns
    the answer (the handler writes it)."""
    if message in ("timeout", "uncaught"):
        try:
            async with asyncio.timeout(0.001):
                time.sleep(0.005)
                await asyncio.sleep(5)
        except TimeoutError:
            if message == "uncaught":
                raise
            message += " timed out"
    elif message == "cancel":
        asyncio.current_task().cancel()
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            # Swallowing a cancellation, as asyncio asks: take it back, or
            # the task's cancel count stays up and a later asyncio.timeout()
            # in this task (the next messages' handler runs in it too)
            # raises CancelledError instead of TimeoutError (3.11.0-3.11.x
            # before the fix that compares with the count at entry).
            asyncio.current_task().uncancel()
            message += " cancelled"
    return message


# -- frames -------------------------------------------------------------------------


def frame(op, payload=b"", *, fin=True, rsv=0, mask=True, length=None):
    """One frame. ``rsv``: the RSV1..3 bits as a 3-bit number (4 = RSV1, 2 = RSV2,
    1 = RSV3); ``mask``: True (MASK_KEY), False, or a 4-byte key; ``length``:
    a lie in the header's length field (a 64-bit one), for the framing errors."""
    key = MASK_KEY if mask is True else (mask or None)
    data = bytearray(_frame_py.build_frame(op, payload, fin=fin, mask_key=key))
    data[0] |= (rsv & 7) << 4
    if length is not None:
        body = data[2:] if len(payload) < 126 else data[4:] if len(payload) < 65536 else data[10:]
        data = bytearray(data[:1]) + bytes([(data[1] & 0x80) | 127]) + struct.pack("!Q", length) + body
    return bytes(data)


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


class Frame:
    __slots__ = ("fin", "masked", "op", "payload", "rsv")

    def __init__(self, fin, rsv, op, masked, payload):
        self.fin, self.rsv, self.op, self.masked, self.payload = fin, rsv, op, masked, payload

    @property
    def code(self):
        """The close code of a close frame (None when it has no payload)."""
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    def __repr__(self):
        p = self.payload if len(self.payload) <= 40 else self.payload[:40] + b"..."
        return f"Frame(op={self.op}, fin={self.fin}, rsv={self.rsv}, masked={self.masked}, {len(self.payload)} B {p!r})"


class RawWebSocket:
    """One end of a WebSocket over asyncio streams, written from RFC 6455
    without wsfast's parser: ``client=True`` masks what it sends and demands
    unmasked frames, ``client=False`` the other way round."""

    def __init__(self, reader, writer, *, client=True, timeout=5.0):
        self.reader = reader
        self.writer = writer
        self.client = client
        self.timeout = timeout
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- opening handshake ---------------------------------------------------------

    @classmethod
    async def connect(cls, port, path="/", *, host="127.0.0.1", headers=(), timeout=5.0):
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        fields = {
            "Host": f"{host}:{port}",
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": key,
            "Sec-WebSocket-Version": "13",
        }
        fields.update(headers)  # replaces a default of the same name
        lines = [f"GET {path} HTTP/1.1"] + [f"{n}: {v}" for n, v in fields.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status, fields = parse_head(head)
        assert status.split()[1] == "101", head
        expected = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        assert fields.get("sec-websocket-accept") == expected, head
        self = cls(reader, writer, client=True, timeout=timeout)
        self.status_line, self.response_fields = status, fields
        return self

    @classmethod
    async def accept(cls, reader, writer, *, timeout=5.0):
        """Server side: read the client's request and answer 101."""
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        request_line, fields = parse_head(head)
        key = fields["sec-websocket-key"]
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        writer.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )
        self = cls(reader, writer, client=False, timeout=timeout)
        self.request_line, self.request_fields = request_line, fields
        return self

    # -- sending ----------------------------------------------------------------------

    def frame(self, op, payload=b"", *, fin=True, rsv=0, mask=None, length=None):
        """A frame as this side sends it (masked iff client, unless ``mask`` says)."""
        return frame(op, payload, fin=fin, rsv=rsv, mask=self.client if mask is None else mask,
                     length=length)

    async def send(self, *chunks):
        """Write the chunks in one write."""
        self.writer.write(b"".join(chunks))
        await self.writer.drain()

    async def send_frame(self, op, payload=b"", **kwargs):
        await self.send(self.frame(op, payload, **kwargs))

    async def send_chopped(self, data, size=1):
        """Write ``data`` in writes of ``size`` bytes (TCP_NODELAY is on)."""
        for i in range(0, len(data), size):
            self.writer.write(data[i : i + size])
            await self.writer.drain()
            if size < 16 or i % (64 * size) == 0:
                await asyncio.sleep(0)

    # -- receiving ----------------------------------------------------------------------

    async def read_frame(self, timeout=None):
        """The next frame, or None at EOF (or a connection reset). Asserts
        the masking direction of RFC 6455 §5.1."""
        timeout = self.timeout if timeout is None else timeout
        return await asyncio.wait_for(self._read_frame(), timeout)

    async def _read_frame(self):
        reader = self.reader
        try:
            head = await reader.readexactly(2)
        except (asyncio.IncompleteReadError, ConnectionResetError):
            return None
        b0, b1 = head
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", await reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await reader.readexactly(8))[0]
        masked = bool(b1 & 0x80)
        key = await reader.readexactly(4) if masked else None
        payload = await reader.readexactly(n) if n else b""
        if masked:
            payload = _frame_py.apply_mask(payload, key)
        f = Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, masked, bytes(payload))
        assert masked != self.client, f"masking direction violated (RFC 6455 §5.1): {f}"
        return f

    async def read_event(self, timeout=None):
        """The next message or control frame: ``(op, payload)`` with data
        fragments reassembled (op TEXT/BINARY), or None at EOF."""
        parts = []
        first = None
        while True:
            f = await self.read_frame(timeout)
            if f is None:
                assert first is None, "EOF inside a fragmented message"
                return None
            assert f.rsv == 0, f
            if f.op >= 8:
                assert f.fin and len(f.payload) <= 125, f
                return (f.op, f.payload)
            if first is None:
                assert f.op in (TEXT, BINARY), f"unexpected frame {f}"
                first = f.op
            else:
                assert f.op == CONT, f"new data frame inside a fragmented message: {f}"
            parts.append(f.payload)
            if f.fin:
                return (first, b"".join(parts))

    async def expect(self, *events, timeout=None):
        """The next events are exactly ``events`` (``(op, payload)`` pairs)."""
        for want in events:
            got = await self.read_event(timeout)
            assert _short(got) == _short(want), f"expected {_short(want)}, got {_short(got)}"

    async def expect_close(self, code, timeout=None, *, eof=True, reason=None):
        """The next frame is a close with ``code`` (None: an empty close or
        1000; a tuple: any of them). Then, if ``eof``: a server peer closes
        TCP (RFC 6455 §7.1.1); to a client peer we close our side first and
        it closes its side. Returns the code received."""
        got = await self.read_event(timeout)
        assert got is not None, f"connection closed without a close frame (expected {code})"
        assert got[0] == CLOSE, f"expected close {code}, got {_short(got)}"
        payload = got[1]
        received = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        if code is None:
            assert received in (None, 1000), f"expected an empty close or 1000, got {received}"
        elif isinstance(code, tuple):
            assert received in code, f"expected close {code}, got {received} {payload[2:]!r}"
        else:
            assert received == code, f"expected close {code}, got {received} {payload[2:]!r}"
        if reason is not None:
            assert payload[2:] == reason
        if eof:
            if not self.client:
                self.writer.write_eof()
            await self.expect_eof(timeout)
        return received

    async def expect_eof(self, timeout=None):
        """The peer closes TCP, sending nothing more, within ``timeout``."""
        timeout = self.timeout if timeout is None else timeout
        try:
            rest = await asyncio.wait_for(self.reader.read(65536), timeout)
        except ConnectionResetError:
            rest = b""
        except asyncio.TimeoutError:
            raise AssertionError(f"the peer did not close TCP within {timeout} s") from None
        assert rest == b"", f"data after the close frame: {rest[:60]!r}"

    async def expect_silence(self, delay=0.05):
        """Nothing arrives within ``delay`` seconds."""
        try:
            data = await asyncio.wait_for(self.reader.read(1), delay)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"unexpected data: {data!r}")

    async def close(self, code=1000, reason=b""):
        """A clean closing handshake started by us."""
        await self.send_frame(CLOSE, close_payload(code, reason))
        received = await self.expect_close(code)
        self.abort()
        return received

    def abort(self):
        self.writer.transport.abort()


def _short(event):
    if event is None:
        return None
    op, payload = event
    if len(payload) > 60:
        digest = hashlib.sha1(payload).hexdigest()[:12]
        return (op, f"<{len(payload)} B sha1 {digest} {payload[:20]!r}...>")
    return (op, payload)


def parse_head(head):
    """``(first line, {lower-case name: value})`` of an HTTP head."""
    lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            fields[name.strip().lower()] = value.strip()
    return lines[0], fields
