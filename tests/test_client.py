"""The client (wsfast.connect) in process: against wsfast's server, and
against hand-written servers that answer the handshake wrongly.

Every test runs on stdlib asyncio and on uvloop (``run``), the WebSocket
exchanges on every codec (``codec`` from conftest.py).
"""

import asyncio
import time
import contextlib
import os

import pytest

import wsfast
from wsfast import _frame_py
from wsfast.handshake import accept_key


@contextlib.asynccontextmanager
async def serving(handlers, **settings):
    app = wsfast.Application(handlers, **settings)
    server = await app.listen(0, host="127.0.0.1")
    try:
        yield f"ws://127.0.0.1:{server.port}"
    finally:
        await app.stop(timeout=2)


@contextlib.asynccontextmanager
async def fake_server(answer):
    """A raw TCP server: ``answer(request_head_bytes, reader, writer)``."""

    async def handle(reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            await answer(head, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


def key_of(head):
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"sec-websocket-key:"):
            return line.split(b":", 1)[1].strip().decode()
    raise AssertionError("no key")


def good_101(head, *extra):
    lines = [
        b"HTTP/1.1 101 Switching Protocols",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Accept: " + accept_key(key_of(head)).encode(),
        *extra,
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n"


class Echo(wsfast.WebSocketHandler):
    def on_message(self, message):
        self.write_message(message)


class Countdown(wsfast.WebSocketHandler):
    """Sends 3 messages then closes normally."""

    def open(self):
        for i in range(3):
            self.write_message(f"msg {i}")
        self.close(1000, "done")

    def on_message(self, message):
        pass


class Info(wsfast.WebSocketHandler):
    def open(self):
        self.write_message({"auth": self.request.headers.get("Authorization"),
                            "ua": self.request.headers.get("User-Agent"),
                            "query": self.request.query})

    def on_message(self, message):
        pass


# -- against the wsfast server ------------------------------------------------------------


def test_send_recv(run, codec):
    async def main():
        async with serving([(r"/ws", Echo)], codec=codec) as base:
            async with wsfast.connect(base + "/ws", codec=codec) as ws:
                await ws.send("text")
                await ws.send(b"\x00bin")
                await ws.send(bytearray(b"ba"))
                await ws.send(memoryview(b"mv"))
                assert [await ws.recv() for _ in range(4)] == ["text", b"\x00bin", b"ba", b"mv"]
                assert ws.state is wsfast.connection.State.OPEN
                assert ws.remote_address[0] == "127.0.0.1"
            assert ws.closed and ws.close_code == 1000

    run(main())


def test_await_connect_without_context_manager(run):
    async def main():
        async with serving([(r"/ws", Echo)]) as base:
            ws = await wsfast.connect(base + "/ws")
            await ws.send("x")
            assert await ws.recv() == "x"
            await ws.close()
            with pytest.raises(wsfast.ConnectionClosedOK):
                await ws.recv()
            with pytest.raises(wsfast.ConnectionClosedOK):
                await ws.send("y")

    run(main())


def test_async_for_ends_cleanly_on_normal_close(run, codec):
    async def main():
        async with serving([(r"/ws", Countdown)], codec=codec) as base:
            async with wsfast.connect(base + "/ws", codec=codec) as ws:
                got = [m async for m in ws]
            assert got == ["msg 0", "msg 1", "msg 2"]
            assert (ws.close_code, ws.close_reason) == (1000, "done")

    run(main())


def test_ping_returns_latency(run):
    async def main():
        async with serving([(r"/ws", Echo)]) as base:
            async with wsfast.connect(base + "/ws") as ws:
                results = await asyncio.gather(ws.ping(), ws.ping(b"x"), ws.ping("y"))
                assert all(r >= 0 for r in results)

    run(main())


def test_extra_headers_query_and_user_agent(run):
    async def main():
        async with serving([(r"/ws", Info)]) as base:
            async with wsfast.connect(base + "/ws?a=1", extra_headers={"Authorization": "Bearer t"}) as ws:
                import json

                info = json.loads(await ws.recv())
        assert info == {"auth": "Bearer t", "ua": f"wsfast/{wsfast.__version__}", "query": "a=1"}

    run(main())


def test_client_message_size_limit_1009(run, codec):
    class Big(wsfast.WebSocketHandler):
        def open(self):
            self.write_message("x" * 2000)

        def on_message(self, message):
            pass

    async def main():
        async with serving([(r"/ws", Big)]) as base:
            async with wsfast.connect(base + "/ws", max_message_size=1000, codec=codec) as ws:
                with pytest.raises(wsfast.ConnectionClosedError) as info:
                    await ws.recv()
                assert info.value.code == 1009

    run(main())


def test_refused_handshake_raises_handshake_error(run):
    async def main():
        async with serving([(r"/ws", Echo)]) as base:
            with pytest.raises(wsfast.HandshakeError) as info:
                await wsfast.connect(base + "/nope")
            assert info.value.status == 404
            with pytest.raises(wsfast.HandshakeError) as info:
                await wsfast.connect(base + "/ws", origin="http://elsewhere")
            assert info.value.status == 403

    run(main())


def test_recv_queue_pauses_reading(run):
    class Flood(wsfast.WebSocketHandler):
        def open(self):
            for _ in range(100):
                self.write_message(b"f" * 10000)
            self.close()

        def on_message(self, message):
            pass

    async def main():
        async with serving([(r"/ws", Flood)]) as base:
            async with wsfast.connect(base + "/ws", max_queue=4) as ws:
                await asyncio.sleep(0.1)
                assert ws.protocol._read_paused
                assert len(ws._messages) < 100
                n = 0
                async for _ in ws:
                    n += 1
                assert n == 100

    run(main())


def test_close_while_reading_is_paused_reads_the_reply(run):
    """A client that stopped reading (its recv() queue is full) and then
    closes must still read the server's close reply, not wait out close_timeout."""

    class Flood(wsfast.WebSocketHandler):
        def open(self):
            for _ in range(50):
                self.write_message(b"f" * 10000)

        def on_message(self, message):
            pass

    async def main():
        async with serving([(r"/ws", Flood)]) as base:
            ws = await wsfast.connect(base + "/ws", max_queue=2, close_timeout=5)
            await asyncio.sleep(0.1)
            assert ws.protocol._read_paused
            start = time.monotonic()
            await asyncio.wait_for(ws.close(), 3)
            assert time.monotonic() - start < 1.0
            assert ws.close_code == 1000

    run(main())


def test_client_keepalive(run):
    async def main():
        async with serving([(r"/ws", Echo)]) as base:
            async with wsfast.connect(base + "/ws", ping_interval=0.02, ping_timeout=0.1) as ws:
                await asyncio.sleep(0.2)
                await ws.send("alive")
                assert await ws.recv() == "alive"

    run(main())


# -- against broken servers --------------------------------------------------------------


@pytest.mark.parametrize(
    "make_answer, status",
    [
        (lambda head: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", 200),
        (lambda head: good_101(head).replace(b"Sec-WebSocket-Accept: ", b"Sec-WebSocket-Accept: x"), 101),
        (lambda head: good_101(head).replace(b"Upgrade: websocket", b"Upgrade: h2c"), 101),
        (lambda head: good_101(head, b"Sec-WebSocket-Protocol: chat"), 101),
        (lambda head: good_101(head, b"Sec-WebSocket-Extensions: permessage-deflate"), 101),
    ],
    ids=["status-200", "bad-accept", "bad-upgrade", "unrequested-subprotocol", "unrequested-extension"],
)
def test_bad_server_answers_are_refused(run, make_answer, status):
    async def answer(head, reader, writer):
        writer.write(make_answer(head))
        await writer.drain()
        await reader.read()

    async def main():
        async with fake_server(answer) as uri:
            with pytest.raises(wsfast.HandshakeError) as info:
                await wsfast.connect(uri + "/")
            assert info.value.status == status

    run(main())


def test_garbage_answer_is_refused(run):
    async def answer(head, reader, writer):
        writer.write(b"SSH-2.0-OpenSSH_9.0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async def main():
        async with fake_server(answer) as uri:
            with pytest.raises(wsfast.HandshakeError):
                await wsfast.connect(uri + "/")

    run(main())


def test_open_timeout(run):
    async def answer(head, reader, writer):
        await reader.read()  # never answers

    async def main():
        async with fake_server(answer) as uri:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(TimeoutError):
                await wsfast.connect(uri + "/", open_timeout=0.2)
            assert loop.time() - t0 < 1

    run(main())


def test_server_closing_during_handshake(run):
    async def answer(head, reader, writer):
        pass  # closes at once

    async def main():
        async with fake_server(answer) as uri:
            with pytest.raises(wsfast.ConnectionClosed):
                await wsfast.connect(uri + "/")

    run(main())


def test_frames_right_after_the_101_are_received(run):
    async def answer(head, reader, writer):
        writer.write(good_101(head) + _frame_py.build_frame(1, "first") + _frame_py.build_frame(2, b"2nd"))
        await writer.drain()
        await reader.read()

    async def main():
        async with fake_server(answer) as uri:
            ws = await wsfast.connect(uri + "/", close_timeout=0.2)
            assert await ws.recv() == "first"
            assert await ws.recv() == b"2nd"
            ws.protocol.abort()

    run(main())


def test_abnormal_closure_is_1006(run):
    async def answer(head, reader, writer):
        writer.write(good_101(head) + _frame_py.build_frame(1, "only"))
        await writer.drain()
        # then TCP closes without a close frame

    async def main():
        async with fake_server(answer) as uri:
            async with wsfast.connect(uri + "/") as ws:
                assert await ws.recv() == "only"
                with pytest.raises(wsfast.ConnectionClosedError) as info:
                    await ws.recv()
                assert info.value.code == 1006
                with pytest.raises(wsfast.ConnectionClosedError):
                    async for _ in ws:
                        pass

    run(main())


def test_masked_server_frame_fails_1002(run):
    async def answer(head, reader, writer):
        writer.write(good_101(head) + _frame_py.build_frame(1, "bad", mask_key=os.urandom(4)))
        await writer.drain()
        await reader.read()

    async def main():
        async with fake_server(answer) as uri:
            async with wsfast.connect(uri + "/", close_timeout=0.2) as ws:
                with pytest.raises(wsfast.ConnectionClosedError) as info:
                    await ws.recv()
                assert info.value.code == 1002

    run(main())


def test_client_waits_for_the_server_to_close_tcp_bounded(run):
    got = {}

    async def answer(head, reader, writer):
        writer.write(good_101(head))
        await writer.drain()
        parser = _frame_py.FrameParser(mask_required=True)
        frames = []
        while not frames:
            frames = parser.feed(await reader.read(1024))
        got["close"] = frames[0]
        writer.write(_frame_py.build_frame(8, frames[0].payload))  # answer the close
        await writer.drain()
        got["eof"] = await reader.read() == b""  # but never close TCP ourselves

    async def main():
        async with fake_server(answer) as uri:
            ws = await wsfast.connect(uri + "/", close_timeout=0.2)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await ws.close(4321, "bye")
            elapsed = loop.time() - t0
            assert 0.15 < elapsed < 1.5  # waited for the server, then gave up
            await asyncio.sleep(0.05)
        assert got["close"].payload == (4321).to_bytes(2, "big") + b"bye"
        assert got["eof"]

    run(main())


def test_bad_uris():
    for uri in ("http://x/", "ws://", "wss://:0/"):
        with pytest.raises(ValueError):
            wsfast.connect(uri)
