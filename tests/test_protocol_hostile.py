"""The asyncio adapter against peers that misbehave: resets, half-closes,
ping floods, clients that never read (issue 11). Each test runs on stdlib
asyncio and on uvloop, and on both codecs (``impl`` fixture)."""

import asyncio
import socket
import struct
import sys

import pytest

import wsfast
import wsfast.sync
from interop_helpers import (
    CLOSE,
    TEXT,
    RawWebSocket,
    cancelled_first_step,
    close_payload,
    free_port,
    run_in_loop,
)

LOOPS = ["asyncio", "uvloop"]


async def closed_1011(ws):
    """The server closes with 1011 (a handler failed): answer the close,
    see TCP end, and drop our side (app.stop would wait for it)."""
    await ws.expect_close(1011, eof=False)
    await ws.send(ws.frame(CLOSE, close_payload(1011)))
    await ws.expect_eof()
    ws.abort()


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
            await closed_1011(ws)
        finally:
            await app.stop(timeout=1)

    with caplog.at_level("ERROR", logger="wsfast"):
        run_in_loop(loop, main())
    assert any("on_message" in r.getMessage() and r.exc_info for r in caplog.records), caplog.text


# -- 3. and 4.: peers that do not read ------------------------------------------------
#
# The kernel buffers of a loopback connection hold megabytes; small ones on
# both ends (the client's receive buffer, the server's send buffer) make the
# server's own write buffer, which these tests watch, fill at once.

HIGH = 64 * 1024  # write_buffer_high in these tests (low: 16 KiB)
CAP = 4 * HIGH  # the default max_write_buffer for it
PING = 9


async def deaf_client(port, path, rcvbuf=4096):
    """A raw client with a small receive window that will never read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return RawWebSocket(reader, writer, client=True)


def small_send_buffer(protocol):
    sock = protocol.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)


class Watch:
    """Samples the largest write buffer of the server's WebSocket connections."""

    def __init__(self, server):
        self.server = server
        self.peak = 0
        self._task = asyncio.get_running_loop().create_task(self._run())

    def sample(self):
        for protocol in self.server.protocols:
            if protocol.transport is not None and not protocol.transport.is_closing():
                self.peak = max(self.peak, protocol.transport.get_write_buffer_size())
        return self.peak

    async def _run(self):
        while True:
            self.sample()
            await asyncio.sleep(0.002)

    def stop(self):
        self._task.cancel()
        return self.sample()


async def ws_protocols(server, n):
    for _ in range(500):
        protocols = [p for p in server.protocols if p.connection is not None]
        if len(protocols) >= n:
            return protocols
        await asyncio.sleep(0.01)
    raise AssertionError("the WebSocket connections did not open")


async def flood(ws, frame_bytes, seconds):
    """Send ``frame_bytes`` over and over for ``seconds`` (or until TCP
    stops taking them); returns how many were sent."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    chunk = frame_bytes * 256
    sent = 0
    while loop.time() < deadline:
        ws.writer.write(chunk)
        try:
            await asyncio.wait_for(ws.writer.drain(), max(deadline - loop.time(), 0.01))
        except asyncio.TimeoutError:
            break  # TCP pushes back: the server stopped reading
        sent += 256
    return sent


@pytest.mark.parametrize("loop", LOOPS)
def test_ping_flood_without_reading_stays_bounded(loop, impl):
    """Tens of thousands of 125-byte pings from a client that never reads:
    the server stops reading once its write buffer is over the high-water
    mark (TCP pushes back on the client), keeps at most one pong owed, and
    still serves a normal client."""

    async def main():
        app = wsfast.Application(
            [(r"/", Echo), (r"/echo", Echo)], codec=impl,
            websocket_write_buffer_high=HIGH, websocket_write_buffer_low=HIGH // 4,
        )
        server = await app.listen(0, host="127.0.0.1")
        watch = Watch(server)
        try:
            ws = await deaf_client(server.port, "/")
            (protocol,) = await ws_protocols(server, 1)
            small_send_buffer(protocol)
            ping = ws.frame(PING, b"p" * 125)
            sent = await flood(ws, ping, 2.0)
            assert await asyncio.wait_for(echo_round_trip(server.port), 2) == "still served"
            peak = watch.stop()
            # At most the high-water mark plus the pongs of one read.
            assert peak <= HIGH + wsfast.protocol.READ_BUFFER_SIZE, (peak, sent)
            assert protocol._write_paused  # it did fill up: the test measured something
            assert sent >= 10000, sent  # a flood: more pongs than the buffers take
            ws.abort()
        finally:
            watch.stop()
            await app.stop(timeout=1)

    run_in_loop(loop, main())


@pytest.mark.parametrize("loop", LOOPS)
def test_echo_to_a_client_that_never_reads_stays_bounded(loop, impl):
    async def main():
        app = wsfast.Application(
            [(r"/", Echo), (r"/echo", Echo)], codec=impl,
            websocket_write_buffer_high=HIGH, websocket_write_buffer_low=HIGH // 4,
        )
        server = await app.listen(0, host="127.0.0.1")
        watch = Watch(server)
        try:
            ws = await deaf_client(server.port, "/")
            (protocol,) = await ws_protocols(server, 1)
            small_send_buffer(protocol)
            await flood(ws, ws.frame(2, b"e" * 1000), 2.0)
            assert await asyncio.wait_for(echo_round_trip(server.port), 2) == "still served"
            peak = watch.stop()
            assert peak <= HIGH + wsfast.protocol.READ_BUFFER_SIZE, peak
            ws.abort()
        finally:
            watch.stop()
            await app.stop(timeout=1)

    run_in_loop(loop, main())


class Producer(wsfast.WebSocketHandler):
    """Writes from a task, ignoring the awaitable (a timer, a feed)."""

    def initialize(self, outcome):
        self.outcome = outcome

    def open(self):
        small_send_buffer(self.ws_connection)
        asyncio.get_running_loop().create_task(self.produce())

    async def produce(self):
        try:
            for i in range(100000):
                self.write_message(b"z" * 4000)
                if i % 10 == 0:
                    await asyncio.sleep(0)
            self.outcome.set_result("wrote 400 MB to a client that never reads")
        except wsfast.ConnectionClosed as exc:
            self.outcome.set_result(exc)


@pytest.mark.parametrize("loop", LOOPS)
def test_write_past_the_cap_closes_a_slow_consumer(loop, impl):
    async def main():
        outcome = asyncio.get_running_loop().create_future()
        app = wsfast.Application(
            [(r"/", Producer, {"outcome": outcome}), (r"/echo", Echo)], codec=impl,
            websocket_write_buffer_high=HIGH, websocket_write_buffer_low=HIGH // 4,
            websocket_close_timeout=0.5,
        )
        server = await app.listen(0, host="127.0.0.1")
        watch = Watch(server)
        try:
            ws = await deaf_client(server.port, "/")
            result = await asyncio.wait_for(outcome, 5)
            assert isinstance(result, wsfast.ConnectionClosedError), result
            assert (result.code, result.reason) == (1008, "slow consumer")
            assert app.stats["slow_consumers"] == 1
            assert watch.stop() <= CAP + 4000 + 64, watch.peak
            assert await asyncio.wait_for(echo_round_trip(server.port), 2) == "still served"
            # The close frame sits behind the full buffer: the close timeout drops it.
            await asyncio.sleep(0.7)
            assert len(server.protocols) == 0
            ws.abort()
        finally:
            watch.stop()
            await app.stop(timeout=1)

    run_in_loop(loop, main())


class Welcome(wsfast.WebSocketHandler):
    """Each message is answered with 50 events (the chat's welcome on a re-join)."""

    def on_message(self, message):
        for i in range(50):
            self.write_message(f"event {i} " + "w" * 100)


@pytest.mark.parametrize("loop", LOOPS)
def test_many_answers_per_read_stay_under_the_cap(loop, impl):
    async def main():
        app = wsfast.Application(
            [(r"/", Welcome), (r"/echo", Echo)], codec=impl,
            websocket_write_buffer_high=HIGH, websocket_write_buffer_low=HIGH // 4,
        )
        server = await app.listen(0, host="127.0.0.1")
        watch = Watch(server)
        try:
            ws = await deaf_client(server.port, "/")
            (protocol,) = await ws_protocols(server, 1)
            small_send_buffer(protocol)
            # Thousands of re-joins per read: ~5 KiB of answers per 16 bytes.
            await flood(ws, ws.frame(TEXT, b"/join"), 1.0)
            assert await asyncio.wait_for(echo_round_trip(server.port), 2) == "still served"
            assert watch.stop() <= CAP + 64 * 200, watch.peak
            assert app.stats["slow_consumers"] == 1
            ws.abort()
        finally:
            watch.stop()
            await app.stop(timeout=1)

    run_in_loop(loop, main())


class BroadcastRoom(wsfast.WebSocketHandler):
    def initialize(self, members):
        self.members = members

    def open(self):
        small_send_buffer(self.ws_connection)
        self.members.append(self)

    def on_message(self, message):
        pass


@pytest.mark.parametrize("loop", LOOPS)
def test_broadcast_queue_stops_at_the_cap(loop, impl):
    async def main():
        members = []
        app = wsfast.Application(
            [(r"/", BroadcastRoom, {"members": members}), (r"/echo", Echo)], codec=impl,
            websocket_write_buffer_high=HIGH, websocket_write_buffer_low=HIGH // 4,
        )
        server = await app.listen(0, host="127.0.0.1")
        watch = Watch(server)
        try:
            ws = await deaf_client(server.port, "/")
            for _ in range(100):
                if members:
                    break
                await asyncio.sleep(0.01)
            closed = queued = 0
            for i in range(2000):
                result = wsfast.broadcast(members, b"b" * 4000, slow="queue")
                closed += result.closed
                queued += result.queued
                if i % 10 == 0:
                    await asyncio.sleep(0)
            assert closed == 1 and queued > 0, (closed, queued)
            assert app.stats["slow_consumers"] == 1
            assert watch.stop() <= CAP + 32 * 4100, watch.peak
            ws.abort()
        finally:
            watch.stop()
            await app.stop(timeout=1)

    run_in_loop(loop, main())


def test_max_write_buffer_below_the_high_mark_is_an_error():
    with pytest.raises(ValueError, match="max_write_buffer"):
        wsfast.protocol.Options(max_write_buffer=1000)
    with pytest.raises(ValueError, match="max_write_buffer"):
        wsfast.Application([], websocket_max_write_buffer=1000)
    with pytest.raises(ValueError, match="max_write_buffer"):
        wsfast.connect("ws://127.0.0.1:1/", max_write_buffer=1000)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "8"])
def test_a_bad_max_fragments_is_an_error_where_it_is_given(bad):
    with pytest.raises(ValueError, match="max_fragments"):
        wsfast.protocol.Options(max_fragments=bad)
    with pytest.raises(ValueError, match="max_fragments"):
        wsfast.protocol.Options().replace(max_fragments=bad)
    with pytest.raises(ValueError, match="max_fragments"):
        wsfast.Application([], websocket_max_fragments=bad)
    with pytest.raises(ValueError, match="max_fragments"):
        wsfast.connect("ws://127.0.0.1:1/", max_fragments=bad)
    with pytest.raises(ValueError, match="max_fragments"):
        wsfast.sync.connect("ws://127.0.0.1:1/", max_fragments=bad)


def test_deferred_pongs_keep_only_the_latest(impl):
    """Sans-IO: while the adapter's write buffer is full, a ping flood owes
    one pong, for the latest ping (RFC 6455 §5.5.3)."""
    from wsfast.connection import Ping, Side, get_connection_class
    from interop_helpers import frame

    conn = get_connection_class(impl)(Side.SERVER, codec=impl)
    conn.defer_pongs = True
    pings = b"".join(frame(PING, b"%d" % i) for i in range(1000))
    events = conn.receive_data(pings)
    assert len(events) == 1000 and all(type(e) is Ping for e in events)
    assert conn.data_to_send() == b""
    conn.defer_pongs = False
    assert conn.deferred_pong() == impl.build_frame(10, b"999")
    assert conn.deferred_pong() == b""
    # Not owed any more once a close came.
    conn.defer_pongs = True
    conn.receive_data(frame(PING, b"x") + frame(CLOSE, close_payload(1000)))
    assert conn.deferred_pong() == b""


class NoKeepalive(Echo):
    ping_interval = 0  # a handler class turns it off with 0 (None: the app's setting)


@pytest.mark.parametrize("loop", LOOPS)
def test_keepalive_is_on_by_default(loop):
    assert wsfast.protocol.Options().ping_interval == 20.0
    assert wsfast.protocol.Options().ping_timeout == 20.0
    assert wsfast.connect("ws://127.0.0.1:1/").options.ping_interval == 20.0
    assert wsfast.Application([], websocket_ping_interval=None)._options.ping_interval is None

    async def main():
        app = wsfast.Application([(r"/echo", Echo), (r"/off", NoKeepalive)])
        server = await app.listen(0, host="127.0.0.1")
        try:
            async with wsfast.connect(f"ws://127.0.0.1:{server.port}/echo") as ws:
                await ws.send("x")
                await ws.recv()
                (protocol,) = [p for p in server.protocols if p.connection is not None]
                assert protocol._ping_timer is not None  # the server pings
                assert ws.protocol._ping_timer is not None  # and the client
                assert protocol._ping_timer.when() - protocol._loop.time() <= 20.0 + 1e-6  # float clock sums
            async with wsfast.connect(f"ws://127.0.0.1:{server.port}/off") as ws:
                await ws.send("x")
                await ws.recv()
                (protocol,) = [p for p in server.protocols if p.connection is not None]
                assert protocol._ping_timer is None
        finally:
            await app.stop(timeout=1)

    run_in_loop(loop, main())


# -- issue 12: async def on_message driven in the read ------------------------------


class MixedAsync(wsfast.WebSocketHandler):
    """Some messages suspend (a real await), most do not; the echoes must
    come in order all the same, and every step runs as one task."""

    def initialize(self, tasks):
        self.tasks = tasks

    async def on_message(self, message):
        self.tasks.add(asyncio.current_task())
        if message.startswith("sleep"):
            await asyncio.sleep(0.01)
        elif message.startswith("timeout"):
            try:
                async with asyncio.timeout(0.01):
                    await asyncio.sleep(1)
            except TimeoutError:
                message += " timed out"
        elif message.startswith("wait_for"):
            message += " " + str(await asyncio.wait_for(asyncio.sleep(0, "ok"), 1))
        await self.write_message(message)


@pytest.mark.parametrize("loop", LOOPS)
def test_async_on_message_keeps_order_and_runs_in_a_task(loop, impl):
    if not hasattr(asyncio, "timeout"):
        pytest.skip("asyncio.timeout is Python 3.11+")
    names = ["a", "sleep 1", "b", "c", "timeout", "d", "wait_for", "e", "sleep 2"]
    names += [f"m{i}" for i in range(40)] + ["sleep 3", "last"]  # more than max_queue behind a sleep

    async def main():
        tasks = set()
        app = wsfast.Application([(r"/", MixedAsync, {"tasks": tasks})], codec=impl,
                                 websocket_max_queue=8)
        server = await app.listen(0, host="127.0.0.1")
        try:
            ws = await RawWebSocket.connect(server.port)
            await ws.send(*[ws.frame(TEXT, n.encode()) for n in names])
            expected = [n + {"timeout": " timed out", "wait_for": " ok"}.get(n, "") for n in names]
            await ws.expect(*[(TEXT, e.encode()) for e in expected])
            # A second round once the consumer went back to direct mode.
            await ws.send(*[ws.frame(TEXT, n.encode()) for n in names[:4]])
            await ws.expect(*[(TEXT, e.encode()) for e in expected[:4]])
            assert len(tasks) == 1 and None not in tasks, tasks
            await ws.close()
        finally:
            await app.stop(timeout=1)

    run_in_loop(loop, main())


class StepsAsync(wsfast.WebSocketHandler):
    """First steps that finish, suspend, suspend and get a cancellation
    thrown in (asyncio.timeout), and fail after a suspension."""

    async def on_message(self, message):
        if message == "sleep":
            await asyncio.sleep(0.001)
        elif message == "timeout":
            try:
                async with asyncio.timeout(0.001):
                    await asyncio.sleep(1)
            except TimeoutError:
                message += " timed out"
        elif message == "fail":
            await asyncio.sleep(0.001)
            raise ValueError("after a suspension")
        await self.write_message(message)
        return "a return value nobody reads"


@pytest.mark.parametrize("loop", LOOPS)
def test_async_first_steps_one_message_per_read(loop, impl, caplog):
    """One message per read (request/response), each coroutine's first step
    run in the read: done at once, suspended and continued by the consumer
    task, a cancellation thrown in and caught, a failure after a suspension
    (1011); a message after each is answered as before."""
    if not hasattr(asyncio, "timeout"):
        pytest.skip("asyncio.timeout is Python 3.11+")

    async def main():
        app = wsfast.Application([(r"/", StepsAsync)], codec=impl)
        server = await app.listen(0, host="127.0.0.1")
        try:
            ws = await RawWebSocket.connect(server.port)
            for name, answer in [("a", "a"), ("sleep", "sleep"), ("b", "b"), ("timeout", "timeout timed out"),
                                 ("c", "c"), ("sleep", "sleep"), ("sleep", "sleep"), ("d", "d")]:
                await ws.send(ws.frame(TEXT, name.encode()))
                await ws.expect((TEXT, answer.encode()))
            (protocol,) = await ws_protocols(server, 1)
            assert protocol._backlog is None  # back in direct mode
            await ws.send(ws.frame(TEXT, b"fail"))
            await closed_1011(ws)
        finally:
            await app.stop(timeout=1)

    with caplog.at_level("ERROR", logger="wsfast"):
        run_in_loop(loop, main())
    assert any("after a suspension" in str(r.exc_info and r.exc_info[1]) for r in caplog.records), caplog.text


class CancelledBeforeTheConsumerStarted(wsfast.WebSocketHandler):
    """The first async on_message of a connection runs its first step as a
    consumer task that was created for it and has not run yet; a
    cancellation of that task (a due timer, or the handler's own) lands
    before the task's first step (interop_helpers.cancelled_first_step)."""

    async def on_message(self, message):
        await self.write_message(await cancelled_first_step(message))


@pytest.mark.parametrize("loop", LOOPS)
def test_async_first_step_cancelled_before_the_consumer_started(loop, impl, caplog):
    """A cancellation meant for the connection's first suspended on_message
    that reaches its consumer task before the task's first step is thrown
    into the coroutine (asyncio.timeout turns it into TimeoutError, which
    it may catch): the connection answers on, or closes with 1011 when the
    TimeoutError is not caught. (It killed the task before its first line
    and the connection went deaf.)"""
    if not hasattr(asyncio, "timeout"):
        pytest.skip("asyncio.timeout is Python 3.11+")

    async def main():
        app = wsfast.Application([(r"/", CancelledBeforeTheConsumerStarted)], codec=impl)
        server = await app.listen(0, host="127.0.0.1")
        try:
            for first in (["timeout"], ["cancel"], ["at once", "timeout"], ["at once", "cancel"]):
                # each on a new connection: the race is at its first coroutine
                ws = await RawWebSocket.connect(server.port, timeout=2)
                await ws.send(b"".join(ws.frame(TEXT, name.encode()) for name in first))  # one read
                answers = {"timeout": b"timeout timed out", "cancel": b"cancel cancelled"}
                await ws.expect(*[(TEXT, answers.get(name, name.encode())) for name in first])
                for name in ("a", "timeout", "b"):  # not deaf, and the consumer task serves on
                    await ws.send(ws.frame(TEXT, name.encode()))
                    await ws.expect((TEXT, answers.get(name, name.encode())))
                await ws.close()
            ws = await RawWebSocket.connect(server.port, timeout=2)
            await ws.send(ws.frame(TEXT, b"uncaught"))
            await closed_1011(ws)
        finally:
            await app.stop(timeout=1)

    with caplog.at_level("ERROR", logger="wsfast"):
        run_in_loop(loop, main(), timeout=30)
    assert [type(r.exc_info and r.exc_info[1]) for r in caplog.records] == [TimeoutError], caplog.text


class CancelsItsTask(wsfast.WebSocketHandler):
    async def on_message(self, message):
        if message == "sleep":
            await asyncio.sleep(0.001)
        elif message == "cancel":  # its own task, not caught
            asyncio.current_task().cancel()
            await asyncio.sleep(5)
        await self.write_message(message)


@pytest.mark.parametrize("loop", LOOPS)
def test_async_on_message_cancelling_its_task_closes_1011(loop, impl):
    """A cancellation of the consumer task that on_message does not catch
    ends that task; the connection closes with 1011 (it waited for the gone
    task: deaf), whether the task had run before or was new."""

    async def main():
        app = wsfast.Application([(r"/", CancelsItsTask)], codec=impl)
        server = await app.listen(0, host="127.0.0.1")
        try:
            for before in (["sleep"], []):
                ws = await RawWebSocket.connect(server.port, timeout=2)
                for name in before:
                    await ws.send(ws.frame(TEXT, name.encode()))
                    await ws.expect((TEXT, name.encode()))
                await ws.send(ws.frame(TEXT, b"cancel"), ws.frame(TEXT, b"after"))
                await closed_1011(ws)
        finally:
            await app.stop(timeout=1)

    run_in_loop(loop, main(), timeout=30)


class TaskWriter(wsfast.WebSocketHandler):
    def open(self):
        asyncio.get_running_loop().create_task(self.burst())

    async def burst(self):
        await asyncio.sleep(0.05)
        for i in range(10):  # one loop turn, no await in between
            self.write_message(f"burst {i}")


def test_writes_from_a_task_are_corked():
    """Ten writes of one loop turn from a task: one transport write (the
    stdlib transport lets us count; uvloop's is a C type)."""

    async def main():
        app = wsfast.Application([(r"/", TaskWriter)])
        server = await app.listen(0, host="127.0.0.1")
        try:
            ws = await RawWebSocket.connect(server.port)
            (protocol,) = await ws_protocols(server, 1)
            transport = protocol.transport
            calls = []
            write, writelines = transport.write, transport.writelines
            transport.write = lambda data: (calls.append(1), write(data))[1]
            transport.writelines = lambda parts: (calls.append(1), writelines(parts))[1]
            await ws.expect(*[(TEXT, b"burst %d" % i) for i in range(10)])
            assert len(calls) == 1, calls
            await ws.close()
        finally:
            await app.stop(timeout=1)

    run_in_loop("asyncio", main())


def test_async_answers_to_one_read_go_in_one_write():
    """An async on_message that does not suspend answers inside the read:
    the eight echoes of one read are one transport write, as with a sync one."""

    async def main():
        app = wsfast.Application([(r"/", AsyncEcho)])
        server = await app.listen(0, host="127.0.0.1")
        try:
            ws = await RawWebSocket.connect(server.port)
            await ws.send(ws.frame(TEXT, b"warm up"))
            await ws.expect((TEXT, b"warm up"))
            (protocol,) = await ws_protocols(server, 1)
            transport = protocol.transport
            calls = []
            write, writelines = transport.write, transport.writelines
            transport.write = lambda data: (calls.append(1), write(data))[1]
            transport.writelines = lambda parts: (calls.append(1), writelines(parts))[1]
            await ws.send(*[ws.frame(TEXT, b"m%d" % i) for i in range(8)])
            await ws.expect(*[(TEXT, b"m%d" % i) for i in range(8)])
            assert len(calls) == 1, calls
            assert protocol._backlog is None  # never queued
            await ws.close()
        finally:
            await app.stop(timeout=1)

    run_in_loop("asyncio", main())


REQUEST_ID = __import__("contextvars").ContextVar("request_id")


class ContextHandler(wsfast.WebSocketHandler):
    async def on_message(self, message):
        before = REQUEST_ID.get("unset")
        REQUEST_ID.set(message)
        if message.startswith("sleep"):
            await asyncio.sleep(0.01)
        await self.write_message(f"{message}: before {before}, after {REQUEST_ID.get('lost')}")


@pytest.mark.parametrize("loop", LOOPS)
def test_contextvars_survive_a_suspension(loop):
    """The first step runs in the consumer task's context: a context
    variable set before an await is there after it, and (as in one task)
    the next message sees what the previous one set."""
    if sys.version_info < (3, 11):
        pytest.skip("create_task(context=) is Python 3.11+")

    async def main():
        app = wsfast.Application([(r"/", ContextHandler)])
        server = await app.listen(0, host="127.0.0.1")
        try:
            ws = await RawWebSocket.connect(server.port)
            await ws.send(ws.frame(TEXT, b"a"), ws.frame(TEXT, b"sleep"), ws.frame(TEXT, b"b"))
            await ws.expect((TEXT, b"a: before unset, after a"),
                            (TEXT, b"sleep: before a, after sleep"),
                            (TEXT, b"b: before sleep, after b"))
            await ws.close()
        finally:
            await app.stop(timeout=1)

    run_in_loop(loop, main())
