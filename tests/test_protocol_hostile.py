"""The asyncio adapter against peers that misbehave: resets, half-closes,
ping floods, clients that never read (issue 11). Each test runs on stdlib
asyncio and on uvloop, and on both codecs (``impl`` fixture)."""

import asyncio
import socket
import struct
import time

import pytest

import wsfast
from interop_helpers import (
    CLOSE,
    TEXT,
    RawWebSocket,
    close_payload,
    free_port,
    run_in_loop,
)

LOOPS = ["asyncio", "uvloop"]


def reset(writer):
    """Close the TCP connection with a RST (SO_LINGER 0), as a crashed or
    hostile peer does."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def echo_round_trip(port, text="still served"):
    async with wsfast.connect(f"ws://127.0.0.1:{port}/echo") as ws:
        await ws.send(text)
        return await ws.recv()


class Echo(wsfast.WebSocketHandler):
    def on_message(self, message):
        self.write_message(message, binary=type(message) is bytes)


# -- 1. a reset while a task streams must not freeze the loop ----------------------


class Streamer(wsfast.WebSocketHandler):
    """The README's back-pressure idiom: a task started from open() writes
    until the connection ends. It stops by itself after a few seconds, so
    that a loop that never yields (the bug) fails the test instead of
    hanging it."""

    def initialize(self, outcome, go):
        self.outcome = outcome
        self.go = go

    def open(self):
        asyncio.get_running_loop().create_task(self.stream())

    async def stream(self):
        await self.go.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3.0
        try:
            while loop.time() < deadline:
                await self.write_message(b"x" * 1024)
        except wsfast.ConnectionClosed as exc:
            self.outcome.set_result(exc)
        else:
            self.outcome.set_result("still writing 3 s after the reset")


@pytest.mark.parametrize("loop", LOOPS)
def test_reset_while_a_task_streams_ends_the_task(loop, impl):
    async def main():
        outcome = asyncio.get_running_loop().create_future()
        go = asyncio.Event()
        app = wsfast.Application(
            [(r"/stream", Streamer, {"outcome": outcome, "go": go}), (r"/echo", Echo)],
            codec=impl,
        )
        server = await app.listen(0, host="127.0.0.1")
        try:
            ws = await RawWebSocket.connect(server.port, "/stream")
            await asyncio.sleep(0.05)  # the handler's task waits for go
            # The RST is in the server's socket before its next poll, and the
            # task runs first in that loop turn: it writes to a reset socket
            # before the read side can notice.
            reset(ws.writer)
            go.set()
            result = await asyncio.wait_for(outcome, 5)
            assert isinstance(result, wsfast.ConnectionClosed), result
            assert result.code == 1006
            # The loop is free: another client is served at once.
            assert await asyncio.wait_for(echo_round_trip(server.port), 2) == "still served"
        finally:
            await app.stop(timeout=1)

    run_in_loop(loop, main())


@pytest.mark.parametrize("loop", LOOPS)
def test_client_send_loop_ends_when_the_server_resets(loop, impl):
    async def main():
        port = free_port()
        go = asyncio.Event()

        async def serve(reader, writer):
            await RawWebSocket.accept(reader, writer)
            await asyncio.sleep(0.05)
            reset(writer)  # and the client's send loop runs before its next read
            go.set()

        server = await asyncio.start_server(serve, "127.0.0.1", port)
        try:
            ws = await wsfast.connect(f"ws://127.0.0.1:{port}/", codec=impl)
            await go.wait()
            loop_ = asyncio.get_running_loop()
            deadline = loop_.time() + 3.0
            with pytest.raises(wsfast.ConnectionClosed):
                while loop_.time() < deadline:
                    await ws.send(b"x" * 1024)
            assert loop_.time() < deadline
        finally:
            server.close()

    run_in_loop(loop, main())


# -- 6. a half-closed client still gets the answers ------------------------------


class SyncEcho(Echo):
    pass


class AsyncEcho(wsfast.WebSocketHandler):
    async def on_message(self, message):
        await self.write_message(message)


class SlowAsyncEcho(wsfast.WebSocketHandler):
    async def on_message(self, message):
        await asyncio.sleep(0.02)
        await self.write_message(message)


HANDLERS = {"sync": SyncEcho, "async": AsyncEcho, "async-sleeping": SlowAsyncEcho}


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("handler", sorted(HANDLERS))
@pytest.mark.parametrize("with_close", [True, False], ids=["close", "no-close"])
def test_half_closed_client_gets_every_answer(loop, handler, with_close, impl):
    """5 messages (and a close frame), then SHUT_WR: every echo arrives,
    then the close reply (if a close was sent), then the server closes TCP."""

    async def main():
        app = wsfast.Application([(r"/", HANDLERS[handler])], codec=impl)
        server = await app.listen(0, host="127.0.0.1")
        try:
            ws = await RawWebSocket.connect(server.port)
            frames = [ws.frame(TEXT, b"m%d" % i) for i in range(5)]
            if with_close:
                frames.append(ws.frame(CLOSE, close_payload(1000)))
            await ws.send(*frames)
            ws.writer.write_eof()
            await ws.expect(*[(TEXT, b"m%d" % i) for i in range(5)])
            if with_close:
                await ws.expect_close(1000)
            else:
                await ws.expect_eof()
        finally:
            await app.stop(timeout=1)

    run_in_loop(loop, main())


# -- an async on_message raising CancelledError -----------------------------------


class CancelledInHandler(wsfast.WebSocketHandler):
    async def on_message(self, message):
        if message == "cancel":
            raise asyncio.CancelledError()
        await self.write_message(message)


@pytest.mark.parametrize("loop", LOOPS)
def test_cancelled_error_in_async_on_message_closes_1011(loop, impl, caplog):
    async def main():
        app = wsfast.Application([(r"/", CancelledInHandler)], codec=impl)
        server = await app.listen(0, host="127.0.0.1")
        try:
            ws = await RawWebSocket.connect(server.port)
            await ws.send(ws.frame(TEXT, b"before"))
            await ws.expect((TEXT, b"before"))
            await ws.send(ws.frame(TEXT, b"cancel"), ws.frame(TEXT, b"after"))
            await ws.expect_close(1011, eof=False)
            await ws.send(ws.frame(CLOSE, close_payload(1011)))
            await ws.expect_eof()
        finally:
            await app.stop(timeout=1)

    with caplog.at_level("ERROR", logger="wsfast"):
        run_in_loop(loop, main())
    assert any("on_message" in r.getMessage() and r.exc_info for r in caplog.records), caplog.text
