"""The server (wsfast.web + wsfast.protocol) in process: against wsfast's own
client, and against raw sockets for what a well-behaved client never sends.

Every test runs on stdlib asyncio and on uvloop (``run`` fixture), and the
WebSocket ones on every codec (``codec`` fixture from conftest.py).
"""

import asyncio
import contextlib
import os
import subprocess

import pytest

import wsfast
from wsfast import _frame_py
from wsfast.protocol import WebSocketProtocol

from interop_helpers import run_on

# ``run`` (asyncio and uvloop, conftest.py): the loop is the thread's current
# loop while a test runs, as wsfast.web's users' code may look it up there.
pytestmark = pytest.mark.run_loop(set_event_loop=True)


@contextlib.asynccontextmanager
async def serving(handlers, **settings):
    app = wsfast.Application(handlers, **settings)
    server = await app.listen(0, host="127.0.0.1")
    try:
        yield server
    finally:
        await app.stop(timeout=2)


def ws_url(server, path="/ws"):
    return f"ws://127.0.0.1:{server.port}{path}"


async def raw_exchange(port, data, timeout=3):
    """Send ``data``, read until the server closes; return what it sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if data:
        writer.write(data)
    try:
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


def status_of(response):
    return int(response.split(b" ", 2)[1])


def handshake_bytes(path="/ws", **headers):
    base = {
        "Host": "127.0.0.1",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    base.update({k.replace("_", "-"): v for k, v in headers.items()})
    lines = [f"GET {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in base.items() if v is not None]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class RawClient:
    """A hand-driven WebSocket client: it answers nothing by itself."""

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer
        self.parser = _frame_py.FrameParser(mask_required=False)
        self.frames = []

    @classmethod
    async def connect(cls, port, path="/ws", extra=b""):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(handshake_bytes(path) + extra)
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send(self, opcode, payload=b"", fin=True):
        self.writer.write(_frame_py.build_frame(opcode, payload, fin=fin, mask_key=os.urandom(4)))

    async def next_frame(self, timeout=3):
        while not self.frames:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                return None
            self.frames.extend(self.parser.feed(data))
        return self.frames.pop(0)

    async def wait_eof(self, timeout=3):
        while True:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                return
            self.frames.extend(self.parser.feed(data))

    def close(self):
        self.writer.close()


def close_code(frame):
    assert frame.opcode == 8
    return int.from_bytes(frame.payload[:2], "big")


# -- handlers ------------------------------------------------------------------------


class Echo(wsfast.WebSocketHandler):
    def on_message(self, message):
        self.write_message(message)


class Recorder(wsfast.WebSocketHandler):
    """Records what happens to it in the ``log`` list passed as a kwarg."""

    def initialize(self, log):
        self.log = log

    def open(self, *args, **kwargs):
        self.log.append(("open", args, kwargs))

    def on_message(self, message):
        self.log.append(("message", message))
        if message == "close me":
            self.close(4000, "as asked")
        elif message == "boom":
            raise RuntimeError("handler bug")
        else:
            self.write_message(message)

    def on_ping(self, data):
        self.log.append(("ping", data))

    def on_close(self):
        self.log.append(("close", self.close_code, self.close_reason))


class AsyncEcho(wsfast.WebSocketHandler):
    async def on_message(self, message):
        # Different delays: order must still hold.
        await asyncio.sleep(0.001 if len(message) % 2 else 0)
        await self.write_message(message)


class Page(wsfast.RequestHandler):
    def get(self, *args):
        self.set_header("X-Args", ",".join(args))
        self.write("page " + self.request.path)

    def post(self, *args):
        self.write({"name": self.get_argument("name"), "body": self.request.body.decode()})


class Failing(wsfast.RequestHandler):
    def get(self):
        raise RuntimeError("bug")

    def post(self):
        raise wsfast.HTTPError(418, reason="Teapot")


# -- WebSocket basics ------------------------------------------------------------------------


def test_echo_text_and_binary(run, codec):
    async def main():
        async with serving([(r"/ws", Echo)], codec=codec) as server:
            async with wsfast.connect(ws_url(server), codec=codec) as ws:
                for size in (0, 1, 125, 126, 65535, 65536, 300_000):
                    text = "é" * size
                    await ws.send(text)
                    assert await ws.recv() == text
                    data = os.urandom(size)
                    await ws.send(data)
                    assert await ws.recv() == data

    run(main())


def test_many_messages_in_one_read(run, codec):
    async def main():
        async with serving([(r"/ws", Echo)], codec=codec) as server:
            client = await RawClient.connect(server.port)
            payload = b"".join(
                _frame_py.build_frame(1, f"m{i}", mask_key=os.urandom(4)) for i in range(200)
            )
            client.writer.write(payload)
            for i in range(200):
                frame = await client.next_frame()
                assert frame.payload == f"m{i}".encode()
            client.close()

    run(main())


def test_frames_sent_with_the_handshake_are_processed(run):
    async def main():
        async with serving([(r"/ws", Echo)]) as server:
            frame = _frame_py.build_frame(1, "early", mask_key=os.urandom(4))
            client = await RawClient.connect(server.port, extra=frame)
            assert (await client.next_frame()).payload == b"early"
            client.close()

    run(main())


def test_lifecycle_path_args_close_code(run):
    async def main():
        log = []
        routes = [(r"/room/(\w+)/(\d+)", Recorder, {"log": log})]
        async with serving(routes) as server:
            async with wsfast.connect(ws_url(server, "/room/blue/7?x=1")) as ws:
                await ws.send("hi")
                assert await ws.recv() == "hi"
                await ws.close(4001, "bye now")
            await asyncio.sleep(0.05)
        assert log[0] == ("open", ("blue", "7"), {})
        assert log[1] == ("message", "hi")
        assert log[-1] == ("close", 4001, "bye now")

    run(main())


def test_named_groups_are_keyword_arguments(run):
    async def main():
        log = []
        async with serving([(r"/u/(?P<user>[^/]+)", Recorder, {"log": log})]) as server:
            async with wsfast.connect(ws_url(server, "/u/j%C3%BCrgen")):
                pass
        assert log[0] == ("open", (), {"user": "jürgen"})

    run(main())


def test_server_initiated_close(run):
    async def main():
        log = []
        async with serving([(r"/ws", Recorder, {"log": log})]) as server:
            async with wsfast.connect(ws_url(server)) as ws:
                await ws.send("close me")
                with pytest.raises(wsfast.ConnectionClosedError) as info:
                    await ws.recv()
                assert (info.value.code, info.value.reason) == (4000, "as asked")
            await asyncio.sleep(0.05)
        assert log[-1] == ("close", 4000, "")  # the client echoed the code

    run(main())


def test_handler_exception_closes_1011(run):
    async def main():
        log = []
        async with serving([(r"/ws", Recorder, {"log": log})]) as server:
            async with wsfast.connect(ws_url(server)) as ws:
                await ws.send("boom")
                await ws.send("after")
                with pytest.raises(wsfast.ConnectionClosedError) as info:
                    await ws.recv()
                assert info.value.code == 1011
        assert ("message", "after") not in log

    run(main())


def test_async_handler_exception_closes_1011_and_on_close_may_be_async(run):
    log = []

    class AsyncFailing(wsfast.WebSocketHandler):
        async def on_message(self, message):
            await asyncio.sleep(0)
            if message == "boom":
                raise RuntimeError("async handler bug")
            log.append(message)

        async def on_close(self):
            await asyncio.sleep(0)
            log.append("closed")

    async def main():
        async with serving([(r"/ws", AsyncFailing)]) as server:
            async with wsfast.connect(ws_url(server)) as ws:
                await ws.send("one")
                await ws.send("boom")
                await ws.send("never handled")
                with pytest.raises(wsfast.ConnectionClosedError) as info:
                    await ws.recv()
                assert info.value.code == 1011
            for _ in range(50):
                if "closed" in log:
                    break
                await asyncio.sleep(0.01)
        assert log == ["one", "closed"]

    run(main())


def test_request_attributes(run):
    seen = {}

    class Inspect(wsfast.WebSocketHandler):
        def open(self):
            r = self.request
            seen.update(
                method=r.method,
                path=r.path,
                query=r.query_arguments,
                header=r.headers.get("X-Custom"),
                remote=r.remote_ip,
                arg=self.get_argument("a"),
            )

        def on_message(self, message):
            pass

    async def main():
        async with serving([(r"/ws", Inspect)]) as server:
            async with wsfast.connect(ws_url(server, "/ws?a=1&a=2&b=x"), extra_headers={"X-Custom": "v"}):
                pass
        assert seen == dict(
            method="GET", path="/ws", query={"a": ["1", "2"], "b": ["x"]}, header="v",
            remote="127.0.0.1", arg="2",
        )

    run(main())


def test_ping_pong_callbacks(run):
    async def main():
        log = []
        async with serving([(r"/ws", Recorder, {"log": log})]) as server:
            async with wsfast.connect(ws_url(server)) as ws:
                latency = await ws.ping(b"abc")
                assert latency >= 0
        assert ("ping", b"abc") in log

    run(main())


def test_message_too_big_closes_1009(run, codec):
    class Small(Echo):
        max_message_size = 1000

    async def main():
        async with serving([(r"/ws", Small), (r"/ws2", Echo)], codec=codec,
                           websocket_max_message_size=10) as server:
            async with wsfast.connect(ws_url(server)) as ws:
                await ws.send("x" * 1000)
                assert await ws.recv() == "x" * 1000
                await ws.send("x" * 1001)
                with pytest.raises(wsfast.ConnectionClosedError) as info:
                    await ws.recv()
                assert info.value.code == 1009
            async with wsfast.connect(ws_url(server, "/ws2")) as ws:
                await ws.send("x" * 11)
                with pytest.raises(wsfast.ConnectionClosedError) as info:
                    await ws.recv()
                assert info.value.code == 1009

    run(main())


def test_protocol_error_closes_1002_and_tcp(run, codec):
    async def main():
        async with serving([(r"/ws", Echo)], codec=codec) as server:
            client = await RawClient.connect(server.port)
            client.writer.write(b"\x81\x05hello")  # unmasked client frame
            frame = await client.next_frame()
            assert close_code(frame) == 1002
            await client.wait_eof()
            client.close()

    run(main())


def test_subprotocol_selection(run):
    class Sub(Echo):
        def select_subprotocol(self, subprotocols):
            return "b" if "b" in subprotocols else None

    async def main():
        async with serving([(r"/ws", Sub)]) as server:
            async with wsfast.connect(ws_url(server), subprotocols=["a", "b"]) as ws:
                assert ws.subprotocol == "b"
            async with wsfast.connect(ws_url(server), subprotocols=["c"]) as ws:
                assert ws.subprotocol is None
            async with wsfast.connect(ws_url(server)) as ws:
                assert ws.subprotocol is None

    run(main())


def test_extension_offers_are_declined(run):
    async def main():
        async with serving([(r"/ws", Echo)]) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(handshake_bytes(Sec_WebSocket_Extensions="permessage-deflate"))
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101")
            assert b"Sec-WebSocket-Extensions" not in head
            assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
            writer.close()

    run(main())


# -- async handlers, flow control ----------------------------------------------------------


def test_async_on_message_keeps_order(run, codec):
    async def main():
        async with serving([(r"/ws", AsyncEcho)], codec=codec) as server:
            async with wsfast.connect(ws_url(server), codec=codec) as ws:
                sent = [str(i) * (i % 5 + 1) for i in range(300)]
                for m in sent:
                    await ws.send(m)
                got = [await ws.recv() for _ in sent]
                assert got == sent

    run(main())


def test_async_open_runs_before_messages(run):
    log = []

    class SlowOpen(wsfast.WebSocketHandler):
        async def open(self):
            await asyncio.sleep(0.05)
            log.append("opened")

        def on_message(self, message):
            log.append(message)
            self.write_message(message)

    async def main():
        async with serving([(r"/ws", SlowOpen)]) as server:
            async with wsfast.connect(ws_url(server)) as ws:
                await ws.send("one")
                await ws.send("two")
                assert await ws.recv() == "one"
                assert await ws.recv() == "two"
        assert log == ["opened", "one", "two"]

    run(main())


def test_sync_hot_path_creates_no_task_or_future(run):
    counts = {}

    class Counting(wsfast.WebSocketHandler):
        def on_message(self, message):
            loop = asyncio.get_running_loop()
            counts.setdefault("tasks", set()).add(len(asyncio.all_tasks(loop)))
            fut = self.write_message(message)
            counts.setdefault("futures", set()).add(id(fut))
            assert fut.done()

    async def main():
        async with serving([(r"/ws", Counting)]) as server:
            async with wsfast.connect(ws_url(server)) as ws:
                for i in range(100):
                    await ws.send(str(i))
                for i in range(100):
                    assert await ws.recv() == str(i)
        # One shared completed future for every write; no task per message.
        assert len(counts["futures"]) == 1
        assert len(counts["tasks"]) == 1

    run(main())


def test_sync_handler_returning_the_write_awaitable_stays_on_the_sync_path(run):
    seen = {}

    class Returning(wsfast.WebSocketHandler):
        def on_message(self, message):
            seen["protocol"] = self.ws_connection
            return self.write_message(message)  # a done future: nothing to wait for

    async def main():
        async with serving([(r"/ws", Returning)]) as server:
            async with wsfast.connect(ws_url(server)) as ws:
                for i in range(10):
                    await ws.send(str(i))
                    assert await ws.recv() == str(i)
                assert seen["protocol"]._consumer is None

    run(main())


def test_receive_backlog_pauses_reading(run):
    gate = {}
    handled = []

    class Blocked(wsfast.WebSocketHandler):
        max_queue = 4

        async def on_message(self, message):
            gate.setdefault("protocol", self.ws_connection)
            await gate["event"].wait()
            handled.append(message)

    async def main():
        gate["event"] = asyncio.Event()
        async with serving([(r"/ws", Blocked)]) as server:
            async with wsfast.connect(ws_url(server)) as ws:
                for i in range(50):
                    await ws.send(f"{i:04}" + "x" * 10000)
                await asyncio.sleep(0.2)
                protocol = gate["protocol"]
                assert protocol._read_paused
                assert len(protocol._backlog) < 50
                gate["event"].set()
                for _ in range(100):
                    if len(handled) == 50:
                        break
                    await asyncio.sleep(0.02)
        assert [m[:4] for m in handled] == [f"{i:04}" for i in range(50)]

    run(main())


def test_write_backpressure(run, codec):
    state = {}

    class Producer(wsfast.WebSocketHandler):
        write_buffer_high = 64 * 1024
        write_buffer_low = 16 * 1024

        async def open(self):
            chunk = b"x" * 65536
            paused = 0
            for _ in range(200):  # 13 MB; the client reads slowly
                fut = self.write_message(chunk)
                if not fut.done():
                    paused += 1
                await fut
            state["paused"] = paused
            self.close()

        def on_message(self, message):
            pass

    async def main():
        async with serving([(r"/ws", Producer)], codec=codec) as server:
            async with wsfast.connect(ws_url(server), max_queue=2, codec=codec) as ws:
                total = 0
                async for message in ws:
                    total += len(message)
                assert total == 200 * 65536
        assert state["paused"] > 0

    run(main(), timeout=20)


def test_ignoring_the_write_awaitable_still_works(run):
    """Within max_write_buffer (raised here: 10 MB written at once); past
    it, see test_protocol_hostile's slow-consumer tests."""

    class Spray(wsfast.WebSocketHandler):
        max_write_buffer = 16 * 2**20

        def open(self):
            for _ in range(1000):
                self.write_message(b"y" * 10000)
            self.close()

        def on_message(self, message):
            pass

    async def main():
        async with serving([(r"/ws", Spray)]) as server:
            async with wsfast.connect(ws_url(server)) as ws:
                n = 0
                async for _ in ws:
                    n += 1
                assert n == 1000

    run(main())


def test_write_after_close_raises(run):
    errors = []

    class Late(wsfast.WebSocketHandler):
        def on_message(self, message):
            self.close()
            try:
                self.write_message("late")
            except wsfast.ConnectionClosed as exc:
                errors.append(exc)

    async def main():
        async with serving([(r"/ws", Late)]) as server:
            async with wsfast.connect(ws_url(server)) as ws:
                await ws.send("x")
                with pytest.raises(wsfast.ConnectionClosedOK):
                    await ws.recv()
        assert len(errors) == 1 and isinstance(errors[0], wsfast.WebSocketClosedError)

    run(main())


def test_shared_read_buffer_with_interleaved_partial_frames(run, codec):
    # Every connection of a loop reads into one buffer: a half frame must
    # survive another connection's read.
    async def main():
        async with serving([(r"/ws", Echo)], codec=codec) as server:
            a = await RawClient.connect(server.port)
            b = await RawClient.connect(server.port)
            frame_a = _frame_py.build_frame(1, "A" * 5000, mask_key=os.urandom(4))
            frame_b = _frame_py.build_frame(1, "B" * 5000, mask_key=os.urandom(4))
            a.writer.write(frame_a[:2503])
            b.writer.write(frame_b[:7])
            await asyncio.sleep(0.02)
            b.writer.write(frame_b[7:])
            assert (await b.next_frame()).payload == b"B" * 5000
            a.writer.write(frame_a[2503:])
            assert (await a.next_frame()).payload == b"A" * 5000
            a.close()
            b.close()

    run(main())


def test_large_frames_are_read_straight_into_their_storage(run, codec, monkeypatch):
    """The rest of a long frame is read into the frame itself
    (Connection.read_window), and what arrives that way is checked as it
    arrives: a bad UTF-8 byte fails in the read that brings it (RFC 6455 §8.1)."""
    from wsfast.connection import get_connection_class

    connection_class = get_connection_class(codec)  # the build the server uses
    windowed = []
    receive_window = connection_class.receive_window

    def counting(self, nbytes):
        windowed.append(nbytes)
        return receive_window(self, nbytes)

    monkeypatch.setattr(connection_class, "receive_window", counting)
    text = "wörld " * 200_000  # 1.4 MB
    wire = _frame_py.build_frame(1, text, mask_key=os.urandom(4))

    async def main():
        async with serving([(r"/ws", Echo)], codec=codec) as server:
            a = await RawClient.connect(server.port)
            b = await RawClient.connect(server.port)
            for i in range(0, len(wire), 300_000):  # reads the server cannot join
                a.writer.write(wire[i : i + 300_000])
                b.send(2, b"between")  # another connection's reads use the shared buffer
                assert (await b.next_frame()).payload == b"between"
                await asyncio.sleep(0.01)
            frame = await a.next_frame(timeout=5)
            assert frame.opcode == 1 and frame.payload == text.encode()
            assert sum(windowed) > 1_000_000
            bad = bytearray(_frame_py.build_frame(1, text, mask_key=b"\0\0\0\0"))
            bad[14 + 500_000] = 0xFF  # mask 0: the payload as it is
            a.writer.write(bytes(bad[:700_000]))  # the frame's end never comes
            frame = await a.next_frame(timeout=5)
            assert close_code(frame) == 1007
            a.close()
            b.close()

    run(main())


def test_pending_write_awaitable_completes_when_the_connection_drops(run):
    state = {}

    class Stuck(wsfast.WebSocketHandler):
        write_buffer_high = 1024
        write_buffer_low = 0

        def open(self):
            fut = None
            for _ in range(200):
                fut = self.write_message(b"x" * 65536)
                if not fut.done():
                    break
            state["fut"] = fut

        def on_message(self, message):
            pass

        def on_close(self):
            state["closed"] = (self.close_code, self.close_reason)

    async def main():
        async with serving([(r"/ws", Stuck)]) as server:
            raw = await RawClient.connect(server.port)  # never reads
            for _ in range(100):
                if "fut" in state:
                    break
                await asyncio.sleep(0.01)
            fut = state["fut"]
            assert not fut.done()  # the buffer is over its high-water mark
            raw.writer.transport.abort()
            await asyncio.wait_for(fut, 2)
            for _ in range(100):
                if "closed" in state:
                    break
                await asyncio.sleep(0.01)
        assert state["closed"] == (None, None)  # no close frame: Tornado's None

    run(main())


def test_prepare_may_answer_instead_of_upgrading(run):
    class Redirecting(Echo):
        def prepare(self):
            self.redirect("/elsewhere")

    async def main():
        async with serving([(r"/ws", Redirecting)]) as server:
            with pytest.raises(wsfast.HandshakeError) as info:
                await wsfast.connect(ws_url(server), max_redirects=0)  # the 302 itself
            assert info.value.status == 302
            assert ("Location", "/elsewhere") in info.value.headers

    run(main())


# -- timeouts, keepalive, shutdown ---------------------------------------------------------


def test_keepalive_ping_timeout_closes_1011(run):
    async def main():
        async with serving([(r"/ws", Echo)], websocket_ping_interval=0.05,
                           websocket_ping_timeout=0.1, websocket_close_timeout=0.2) as server:
            client = await RawClient.connect(server.port)
            frame = await client.next_frame()
            assert frame.opcode == 9  # a keepalive ping; we do not answer
            while True:
                frame = await client.next_frame()
                if frame.opcode == 8:
                    break
            assert close_code(frame) == 1011
            await client.wait_eof()  # dropped after the close timeout
            client.close()

    run(main())


def test_keepalive_answered_keeps_the_connection(run):
    async def main():
        async with serving([(r"/ws", Echo)], websocket_ping_interval=0.02,
                           websocket_ping_timeout=0.05) as server:
            async with wsfast.connect(ws_url(server)) as ws:
                await asyncio.sleep(0.3)  # the client answers pings by itself
                await ws.send("still here")
                assert await ws.recv() == "still here"

    run(main())


def test_close_timeout_drops_a_silent_peer(run):
    async def main():
        async with serving([(r"/ws", Recorder, {"log": []})], websocket_close_timeout=0.1) as server:
            client = await RawClient.connect(server.port)
            client.send(1, b"close me")
            frame = await client.next_frame()
            assert close_code(frame) == 4000
            # We never answer the close: the server drops TCP.
            await client.wait_eof(timeout=2)
            client.close()

    run(main())


def test_opening_handshake_timeout(run):
    async def main():
        async with serving([(r"/ws", Echo)], handshake_timeout=0.1) as server:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            data = await raw_exchange(server.port, b"GET /ws HTTP/1.1\r\nHost: x\r\n")
            assert loop.time() - t0 < 2
            assert data == b""
            # An idle connection that sends nothing at all is dropped too.
            assert await raw_exchange(server.port, b"") == b""

    run(main())


def test_graceful_shutdown_sends_1001(run):
    async def main():
        app = wsfast.Application([(r"/ws", Echo), (r"/", Page)])
        server = await app.listen(0, host="127.0.0.1")
        clients = [await wsfast.connect(ws_url(server)) for _ in range(5)]
        # An idle keep-alive HTTP connection is closed too.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.readuntil(b"page /")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await app.stop(timeout=2)
        assert loop.time() - t0 < 0.5  # every peer answered: no waiting out the bound
        for ws in clients:
            with pytest.raises(wsfast.ConnectionClosedOK) as info:
                await ws.recv()
            assert info.value.code == 1001
        assert await asyncio.wait_for(reader.read(), 1) == b""
        assert not server.protocols
        writer.close()

    run(main())


def test_shutdown_is_bounded_when_peers_do_not_answer(run):
    async def main():
        app = wsfast.Application([(r"/ws", Echo)], websocket_close_timeout=5)
        server = await app.listen(0, host="127.0.0.1")
        raw = await RawClient.connect(server.port)  # never answers the close
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await app.stop(timeout=0.2)
        assert loop.time() - t0 < 1.5
        assert not server.protocols
        assert close_code(await raw.next_frame()) == 1001
        await raw.wait_eof()
        raw.close()

    run(main())


# -- bad handshakes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes, status, must_contain",
    [
        (handshake_bytes(Sec_WebSocket_Key=None), 400, b"Sec-WebSocket-Key"),
        (handshake_bytes(Sec_WebSocket_Key="short"), 400, b"Sec-WebSocket-Key"),
        (handshake_bytes(Sec_WebSocket_Version="8"), 426, b"Sec-WebSocket-Version: 13"),
        (handshake_bytes(Upgrade="h2c"), 400, b"Upgrade"),
        (handshake_bytes(Connection=None, Upgrade=None), 400, b"Upgrade"),
        (handshake_bytes().replace(b"GET", b"POST", 1), 405, b"Allow: GET"),
        (handshake_bytes(Origin="http://evil.example"), 403, b""),
        (handshake_bytes(path="/nope"), 404, b""),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", 400, b""),
        (b"GET /ws HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 70000 + b"\r\n\r\n", 431, b""),
    ],
    ids=["no-key", "short-key", "version-8", "upgrade-h2c", "plain-get", "post", "origin",
         "unknown-path", "tls-bytes", "huge-head"],
)
def test_bad_handshake_gets_status_and_server_keeps_serving(run, request_bytes, status, must_contain):
    async def main():
        async with serving([(r"/ws", Echo)]) as server:
            response = await raw_exchange(server.port, request_bytes)
            assert status_of(response) == status, response[:200]
            assert must_contain in response
            async with wsfast.connect(ws_url(server)) as ws:
                await ws.send("ok")
                assert await ws.recv() == "ok"

    run(main())


def test_http10_upgrade_is_400(run):
    async def main():
        async with serving([(r"/ws", Echo)]) as server:
            data = handshake_bytes().replace(b"HTTP/1.1", b"HTTP/1.0", 1)
            assert status_of(await raw_exchange(server.port, data)) == 400

    run(main())


def test_idle_keep_alive_connection_is_closed_after_the_handshake_timeout(run):
    async def main():
        async with serving([(r"/", Page)], handshake_timeout=0.1) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await reader.readuntil(b"page /")
            assert await asyncio.wait_for(reader.read(), 2) == b""
            writer.close()

    run(main())


def test_same_origin_is_accepted(run):
    async def main():
        async with serving([(r"/ws", Echo)]) as server:
            origin = f"http://127.0.0.1:{server.port}"
            async with wsfast.connect(ws_url(server), origin=origin) as ws:
                await ws.send("ok")
                assert await ws.recv() == "ok"

    run(main())


def test_prepare_refuses_with_http_error(run):
    class Private(Echo):
        async def prepare(self):
            await asyncio.sleep(0)
            if self.request.headers.get("Authorization") != "Bearer good":
                raise wsfast.HTTPError(401, headers={"WWW-Authenticate": "Bearer"})

    async def main():
        async with serving([(r"/ws", Private)]) as server:
            with pytest.raises(wsfast.HandshakeError) as info:
                await wsfast.connect(ws_url(server))
            assert info.value.status == 401
            assert ("WWW-Authenticate", "Bearer") in info.value.headers
            async with wsfast.connect(ws_url(server), extra_headers={"Authorization": "Bearer good"}) as ws:
                await ws.send("in")
                assert await ws.recv() == "in"

    run(main())


def test_garbage_storm_does_not_disturb_others(run):
    async def main():
        async with serving([(r"/ws", Echo)], handshake_timeout=0.5) as server:
            async with wsfast.connect(ws_url(server)) as ws:
                junk = [os.urandom(n) for n in (1, 10, 1000, 100000)]
                results = await asyncio.gather(
                    *(raw_exchange(server.port, j) for j in junk), return_exceptions=True
                )
                for r in results:
                    assert not isinstance(r, asyncio.TimeoutError)
                await ws.send("fine")
                assert await ws.recv() == "fine"

    run(main())


# -- plain HTTP -----------------------------------------------------------------------------


def test_plain_http_keep_alive_and_pipelining(run):
    async def main():
        async with serving([(r"/", Page), (r"/p/(\w+)", Page), (r"/fail", Failing)]) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 6" in head
            assert await reader.readexactly(6) == b"page /"
            # pipelined: three requests in one write, answered in order
            writer.write(
                b"GET /p/abc HTTP/1.1\r\nHost: x\r\n\r\n"
                b"POST /p/z HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: 8\r\n\r\nname=bob"
                b"GET /missing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            rest = await asyncio.wait_for(reader.read(), 3)
            writer.close()
            parts = rest.split(b"HTTP/1.1 ")
            assert [p[:3] for p in parts[1:]] == [b"200", b"200", b"404"]
            assert b"X-Args: abc" in parts[1]
            assert b'"name": "bob"' in parts[2]
            assert b"Connection: close" in parts[3]

    run(main())


def test_plain_http_errors(run):
    async def main():
        async with serving([(r"/fail", Failing), (r"/", Page)]) as server:
            r = await raw_exchange(server.port, b"GET /fail HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert status_of(r) == 500
            r = await raw_exchange(server.port, b"POST /fail HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            assert r.startswith(b"HTTP/1.1 418 Teapot")
            r = await raw_exchange(server.port, b"DELETE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert status_of(r) == 405
            r = await raw_exchange(server.port, b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert status_of(r) == 200 and r.endswith(b"\r\n\r\n")  # no body
            r = await raw_exchange(server.port, b"GET / HTTP/1.0\r\n\r\n")
            assert status_of(r) == 200 and r.endswith(b"page /")
            r = await raw_exchange(
                server.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n"
            )
            assert status_of(r) == 413

    run(main())


def test_static_files(run, tmp_path):
    (tmp_path / "index.html").write_text("<h1>hi</h1>")
    (tmp_path / "app.js").write_text("let x = 1;")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "data.bin").write_bytes(b"\x00\x01")
    secret = tmp_path.parent / "secret.txt"
    secret.write_text("secret")

    async def main():
        async with serving([], static_path=str(tmp_path)) as server:
            async def get(path, extra=b""):
                return await raw_exchange(
                    server.port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + extra + b"\r\n"
                )

            r = await get(b"/static/app.js")
            assert status_of(r) == 200 and r.endswith(b"let x = 1;")
            assert b"javascript" in r
            r = await get(b"/static/sub/data.bin")
            assert r.endswith(b"\x00\x01") and b"application/octet-stream" in r
            assert status_of(await get(b"/static/nope.txt")) == 404
            assert status_of(await get(b"/static/../secret.txt")) in (403, 404)
            assert status_of(await get(b"/static/%2e%2e/secret.txt")) == 403
            assert status_of(await get(b"/static/sub")) == 403
            last_modified = [l for l in r.split(b"\r\n") if l.startswith(b"Last-Modified")][0]
            r = await get(b"/static/sub/data.bin", b"If-Modified-Since" + last_modified[13:] + b"\r\n")
            assert status_of(r) == 304

    run(main())


def test_static_handler_default_filename(run, tmp_path):
    (tmp_path / "index.html").write_text("<h1>home</h1>")

    async def main():
        routes = [(r"/(.*)", wsfast.StaticFileHandler, {"path": str(tmp_path), "default_filename": "index.html"})]
        async with serving(routes) as server:
            r = await raw_exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert status_of(r) == 200 and r.endswith(b"<h1>home</h1>")
            assert b"text/html" in r

    run(main())


# -- TLS --------------------------------------------------------------------------------------


def test_wss(run, tls_contexts):
    server_ctx, client_ctx = tls_contexts

    async def main():
        app = wsfast.Application([(r"/ws", Echo)])
        server = await app.listen(0, host="127.0.0.1", ssl=server_ctx)
        try:
            async with wsfast.connect(f"wss://127.0.0.1:{server.port}/ws", ssl=client_ctx) as ws:
                await ws.send("secret")
                assert await ws.recv() == "secret"
                await ws.send(b"z" * 200000)
                assert await ws.recv() == b"z" * 200000
        finally:
            await app.stop(timeout=1)

    run(main())


def test_protocol_class_is_shared_by_both_roles():
    # One adapter for server and client (DESIGN.md).
    assert wsfast.client.WebSocketProtocol is WebSocketProtocol
    assert wsfast.web.WebSocketProtocol is WebSocketProtocol


# -- the CLI ------------------------------------------------------------------------------


def _start_cli(*args):
    import sys

    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(wsfast.__file__))))
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsfast", *args, "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )
    line = proc.stdout.readline()
    assert "ws://127.0.0.1:" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
    port = int(line.split("ws://127.0.0.1:")[1].split("/")[0])
    return proc, port, line


def _stop_cli(proc):
    import signal

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


@pytest.mark.parametrize("flags", [(), ("--pure-python", "--no-uvloop")])
def test_cli_echo(flags):
    proc, port, line = _start_cli("echo", "--max-message-size", "1MiB", *flags)
    try:
        if flags:
            assert "codec python" in line and "loop asyncio" in line

        async def main():
            async with wsfast.connect(f"ws://127.0.0.1:{port}/any/path?case=1") as ws:
                await ws.send("text")
                assert await ws.recv() == "text"
                await ws.send(b"\x00\xff")
                assert await ws.recv() == b"\x00\xff"
                await ws.send(b"x" * (2**20 + 1))
                with pytest.raises(wsfast.ConnectionClosedError) as info:
                    await ws.recv()
                assert info.value.code == 1009

        run_on(asyncio.new_event_loop, main(), 10)
    finally:
        _stop_cli(proc)


def test_cli_demo_page_and_chat():
    proc, port, _ = _start_cli("demo")
    try:
        async def main():
            page = await raw_exchange(port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            assert status_of(page) == 200 and b"text/html" in page
            assert b'"ws://") + location.host + "/websocket")' in page
            origin = f"http://127.0.0.1:{port}"  # a browser on the page sends this
            async with wsfast.connect(f"ws://127.0.0.1:{port}/websocket", origin=origin) as a:
                assert (await a.recv()).startswith("* welcome")
                async with wsfast.connect(f"ws://127.0.0.1:{port}/websocket", origin=origin) as b:
                    assert (await b.recv()).startswith("* welcome")
                    assert (await a.recv()).endswith("joined")
                    await b.send("hello all")
                    assert (await a.recv()).endswith(": hello all")
                    assert (await b.recv()).endswith(": hello all")

        run_on(asyncio.new_event_loop, main(), 10)
    finally:
        _stop_cli(proc)


def test_cli_help():
    import sys

    out = subprocess.run([sys.executable, "-m", "wsfast", "--help"], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(wsfast.__file__)))))
    assert out.returncode == 0
    assert "echo" in out.stdout and "demo" in out.stdout


def test_replies_keep_the_wire_order_with_automatic_replies(run, codec):
    """write_message builds the bare frame itself only while nothing is queued:
    the pongs of a read still go before the echoes written after them, and
    nothing is sent after the close reply (RFC 6455 §5.5.1)."""

    async def main():
        async with serving([(r"/ws", Echo)], codec=codec) as server:
            raw = await RawClient.connect(server.port)
            frames = [_frame_py.build_frame(op, payload, mask_key=os.urandom(4)) for op, payload in (
                (9, b"p1"), (2, b"bin"), (1, b"txt"), (9, b"p2"), (2, b"x" * 70000), (1, b"last"))]
            raw.writer.write(b"".join(frames))
            got = [await raw.next_frame() for _ in range(6)]
            # The pongs of a read are queued while it is parsed, and go out
            # ahead of the first reply written after (RFC 6455 §5.5.2: "as
            # soon as practical"); the echoes keep their order.
            assert [(f.opcode, f.payload) for f in got] == [
                (10, b"p1"), (10, b"p2"), (2, b"bin"), (1, b"txt"), (2, b"x" * 70000), (1, b"last")]
            # messages and the close in one read: the echoes, the close reply, then nothing
            raw.writer.write(b"".join(_frame_py.build_frame(op, payload, mask_key=os.urandom(4))
                                      for op, payload in ((2, b"a"), (8, b"\x03\xe8"), (2, b"late"))))
            got = [await raw.next_frame() for _ in range(2)]
            assert [(f.opcode, f.payload) for f in got] == [(2, b"a"), (8, b"\x03\xe8")]
            await raw.wait_eof()
            assert not raw.frames

    run(main())


class CloseThenWrite(wsfast.WebSocketHandler):
    def initialize(self, log):
        self.log = log

    def on_message(self, message):
        self.close(1000, "bye")
        for late in (b"late bytes", "late text"):
            try:
                self.write_message(late)
            except wsfast.ConnectionClosed as exc:
                self.log.append(type(exc).__name__)


def test_no_data_frame_after_our_close(run, codec):
    """RFC 6455 §5.5.1: after sending a close, write_message raises (on the
    hot path too) and nothing follows the close frame on the wire."""
    log = []

    async def main():
        async with serving([(r"/ws", CloseThenWrite, {"log": log})], codec=codec) as server:
            raw = await RawClient.connect(server.port)
            raw.send(2, b"go")
            frame = await raw.next_frame()
            assert (frame.opcode, frame.payload) == (8, b"\x03\xe8bye")
            raw.send(8, b"\x03\xe8")
            await raw.wait_eof()
            assert not raw.frames
            assert log == ["ConnectionClosedOK", "ConnectionClosedOK"]

    run(main())
