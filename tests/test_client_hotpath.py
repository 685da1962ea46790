"""The client's hot path (wsfast.client.ClientProtocol's read of messages
only, ClientConnection.send's inline write): the same behaviour as the
generic path in the cases it hands over (control frames in the same read, a
subclass's on_message), order kept between a reply written at once and the
sends corked after it, back pressure on a peer that does not read.

Every test runs on stdlib asyncio and uvloop, the exchanges on both codecs.
"""

import asyncio
import contextlib

import pytest

import wsfast
from wsfast import _frame_py
from wsfast.client import ClientConnection, ClientProtocol
from wsfast.handshake import accept_key

from test_client import Echo, key_of, serving  # ``run`` (asyncio and uvloop) comes from conftest.py


def frame(opcode, payload):
    """An unmasked server frame."""
    return _frame_py.build_frame(opcode, payload)


async def read_frame(reader):
    """(opcode, payload) of the next client frame (masked)."""
    head = await reader.readexactly(2)
    n = head[1] & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8), "big")
    mask = await reader.readexactly(4)
    data = await reader.readexactly(n)
    if n > 125:
        return head[0] & 0x0F, None  # not unmasked (slow here): only sizes matter
    return head[0] & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


@contextlib.asynccontextmanager
async def raw_server(after_101):
    """A hand-written server: answers the handshake, then
    ``after_101(reader, writer)``."""

    async def handle(reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept_key(key_of(head)).encode() + b"\r\n\r\n"
            )
            await after_101(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    finally:
        server.close()


def test_connect_uses_the_client_protocol(run, codec):
    async def main():
        async with serving([(r"/ws", Echo)]) as base:
            async with wsfast.connect(base + "/ws", codec=codec) as ws:
                assert type(ws.protocol) is ClientProtocol
                assert ws.protocol._client is ws  # the fast path is on
                await ws.send(b"x")
                assert await ws.recv() == b"x"

    run(main())


def test_messages_and_control_frames_in_one_read_keep_their_order(run, codec):
    """A read holding messages, a ping and an unsolicited pong goes the
    generic way: every message in order, the ping answered."""
    got = {}

    async def after_101(reader, writer):
        writer.write(
            frame(2, b"one") + frame(9, b"pi") + frame(1, "two") + frame(10, b"po") + frame(2, b"three")
        )
        got["pong"] = await read_frame(reader)
        writer.write(frame(1, "four"))  # alone in its read: the fast path
        got["echo"] = await read_frame(reader)
        writer.write(frame(8, (1000).to_bytes(2, "big")))
        await read_frame(reader)

    async def main():
        async with raw_server(after_101) as uri:
            ws = await wsfast.connect(uri, codec=codec, ping_interval=None, close_timeout=1)
            assert [await ws.recv() for _ in range(4)] == [b"one", "two", b"three", "four"]
            await ws.send("back")
            with pytest.raises(wsfast.ConnectionClosedOK):
                await ws.recv()
            await ws.wait_closed()

    run(main())
    assert got["pong"] == (10, b"pi")
    assert got["echo"] == (1, b"back")


def test_reply_written_at_once_then_the_rest_corked_in_order(run, codec):
    """The first send after a recv() that waited is written at once; the
    sends after it in the same turn are corked into one write; the server
    gets them all, in order."""
    received = []

    async def after_101(reader, writer):
        await read_frame(reader)  # "start": the client waits for "go" by then
        writer.write(frame(2, b"go"))
        for _ in range(5):
            received.append((await read_frame(reader))[1])
        writer.write(frame(8, (1000).to_bytes(2, "big")))
        await read_frame(reader)

    async def main():
        async with raw_server(after_101) as uri:
            ws = await wsfast.connect(uri, codec=codec, ping_interval=None, close_timeout=1)
            await ws.send(b"start")
            assert await ws.recv() == b"go"  # waited: the next send is a reply
            protocol = ws.protocol
            await ws.send(b"r0")
            assert protocol._batch is None  # written, not corked
            for i in range(1, 5):
                await ws.send(b"r%d" % i)
            assert protocol._batch is not None and len(protocol._batch) == 4  # one write at the turn's end
            with pytest.raises(wsfast.ConnectionClosedOK):
                await ws.recv()

    run(main())
    assert received == [b"r0", b"r1", b"r2", b"r3", b"r4"]


def test_a_subclass_on_message_gets_every_message(run, codec):
    """A ClientConnection subclass that overrides on_message (as
    wsfast.tornado's does) is called for each message: no fast path."""
    seen = []

    class Recording(ClientConnection):
        def on_message(self, message):
            seen.append(message)
            super().on_message(message)

    class recording_connect(wsfast.connect):
        connection_class = Recording

    async def main():
        async with serving([(r"/ws", Echo)]) as base:
            async with recording_connect(base + "/ws", codec=codec) as ws:
                assert ws.protocol._client is None
                for i in range(3):
                    await ws.send(b"m%d" % i)
                    assert await ws.recv() == b"m%d" % i

    run(main())
    assert seen == [b"m0", b"m1", b"m2"]


@pytest.mark.parametrize("size", [8 * 1024, 32 * 1024, 200 * 1024])
def test_send_waits_while_the_peer_does_not_read(run, codec, size):
    """Back pressure on the inline send: above the write buffer's high mark
    send() waits, what waits in wsfast's batch and the transport's buffer
    stays bounded (never a loop turn's worth of messages), and sending goes
    on once the peer reads."""
    release = None
    high = 64 * 1024

    async def after_101(reader, writer):
        await release.wait()  # read nothing until told
        while True:
            opcode, _ = await read_frame(reader)
            if opcode == 8:
                writer.write(frame(8, (1000).to_bytes(2, "big")))
                await writer.drain()
                return

    async def main():
        nonlocal release
        release = asyncio.Event()
        async with raw_server(after_101) as uri:
            ws = await wsfast.connect(
                uri, codec=codec, ping_interval=None, close_timeout=2,
                write_buffer_high=high, write_buffer_low=high // 4,
            )
            protocol = ws.protocol
            chunk = b"x" * size
            count = (64 << 20) // size  # more than the kernel's buffers take
            sent = 0
            held = []  # the bytes batched and buffered after each send

            async def sender():
                nonlocal sent
                while sent < count:
                    await ws.send(chunk)
                    sent += 1
                    batch = protocol._batch or ()
                    held.append(sum(map(len, batch)) + protocol.transport.get_write_buffer_size())

            task = asyncio.ensure_future(sender())
            await asyncio.sleep(0.3)
            assert not task.done()  # blocked: the kernel's buffers and ours are full
            stuck = sent
            release.set()
            await asyncio.wait_for(task, 20)
            assert stuck < sent == count
            assert max(held) <= protocol._write_cap + size + 16
            await ws.close()

    run(main(), timeout=30)


def test_send_after_close_raises(run, codec):
    async def main():
        async with serving([(r"/ws", Echo)]) as base:
            ws = await wsfast.connect(base + "/ws", codec=codec)
            await ws.send(b"a")
            assert await ws.recv() == b"a"
            await ws.close()
            with pytest.raises(wsfast.ConnectionClosedOK):
                await ws.send(b"b")
            with pytest.raises(wsfast.ConnectionClosedOK):
                await ws.send("c")

    run(main())


def test_write_message_sends_without_awaiting(run, codec):
    """ClientConnection.write_message: the send of a plain function (what
    an on_message callback can call), in order with send()."""

    async def main():
        async with serving([(r"/ws", Echo)]) as base:
            async with wsfast.connect(base + "/ws", codec=codec) as ws:
                done = ws.write_message(b"a")
                ws.write_message("b")
                ws.write_message({"c": 1})
                await ws.send(b"d")
                await done  # completed: nothing waits on an empty buffer
                assert [await ws.recv() for _ in range(4)] == [b"a", "b", '{"c": 1}', b"d"]
                await ws.close()
                with pytest.raises(wsfast.ConnectionClosedOK):
                    ws.write_message(b"e")

    run(main())


def test_callback_client_with_write_message(run, codec):
    """connect(on_message=callback) answering with write_message: each
    message (binary as a memoryview) in order, what it sends goes out; an
    exception in it closes with 1011 and drops the rest."""
    got = []

    async def main():
        done = asyncio.get_running_loop().create_future()
        ws = None

        def on_message(message):
            got.append(bytes(message) if isinstance(message, memoryview) else message)
            if len(got) == 5:
                raise ValueError("a bug in the callback")
            ws.write_message(message if isinstance(message, str) else bytes(message) + b"!")

        async with serving([(r"/ws", Echo)]) as base:
            ws = await wsfast.connect(base + "/ws", codec=codec, on_message=on_message)
            assert ws.protocol._client is None  # the recv() fast path is off
            ws.write_message(b"x")
            await asyncio.wait_for(ws.wait_closed(), 5)
            done.cancel()
            assert ws.close_code == 1011

    run(main())
    assert got == [b"x", b"x!", b"x!!", b"x!!!", b"x!!!!"]
