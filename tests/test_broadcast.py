"""wsfast.broadcast: one frame, encoded once, to many real connections.

A real server on 127.0.0.1 and real clients (wsfast's own, and raw sockets
that check the bytes on the wire or stop reading), on stdlib asyncio and on
uvloop (``run``), with each codec (``codec``) on both ends.
"""

import asyncio
import os
import socket
import zlib

import pytest
from test_server import handshake_bytes, serving, ws_url

import wsfast
from wsfast import _frame_py
from wsfast import codec as _codec_module
from wsfast.broadcast import encode
from wsfast.connection import Side, get_connection_class

pytestmark = pytest.mark.run_loop(set_event_loop=True)  # as in test_server.py

N_CLIENTS = 12


class Room(wsfast.WebSocketHandler):
    """Joins ``members`` (a list, in open order); leaves it on close."""

    def initialize(self, members, log=None):
        self.members = members
        self.log = log

    def open(self):
        self.members.append(self)

    def on_message(self, message):
        if self.log is not None:
            self.log.append(message)

    def on_close(self):
        self.members.remove(self)


class Chat(Room):
    """Answers the sender, then broadcasts to everyone (the sender too)."""

    def on_message(self, message):
        self.write_message("ack " + message)
        wsfast.broadcast(self.members, "all " + message)


async def until(predicate, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.005)


class WireClient:
    """A raw client that records every frame exactly as it came."""

    def __init__(self, reader, writer, allow_rsv1=False):
        self.reader = reader
        self.writer = writer
        self.parser = _frame_py.FrameParser(mask_required=False, allow_rsv1=allow_rsv1)
        self.frames = []

    @classmethod
    async def connect(cls, port, extensions=None, rcvbuf=None):
        sock = None
        if rcvbuf is not None:  # set before connect, so the window stays small
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock, limit=2**20)
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
        headers = {}
        if extensions:
            headers["Sec-WebSocket-Extensions"] = extensions
        writer.write(handshake_bytes("/ws", **headers))
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer, allow_rsv1=bool(extensions))

    async def next_frame(self, timeout=5):
        while not self.frames:
            data = await asyncio.wait_for(self.reader.read(2**20), timeout)
            if not data:
                return None
            self.frames.extend(self.parser.feed(data))
        return self.frames.pop(0)

    def close(self):
        self.writer.close()


# -- the frame, encoded once ---------------------------------------------------------


@pytest.mark.parametrize("name", sorted(_codec_module.AVAILABLE))
def test_encode_kinds(monkeypatch, name):
    monkeypatch.setattr(_codec_module, "default", _codec_module.AVAILABLE[name])
    assert encode("héllo") == _frame_py.build_frame(1, "héllo".encode())
    assert encode("héllo", binary=True) == _frame_py.build_frame(2, "héllo".encode())
    assert encode(b"\x00\xff") == _frame_py.build_frame(2, b"\x00\xff")
    assert encode(bytearray(b"ab")) == _frame_py.build_frame(2, b"ab")
    assert encode(memoryview(b"abc")[1:]) == _frame_py.build_frame(2, b"bc")
    assert encode(b'{"a": 1}', binary=False) == _frame_py.build_frame(1, b'{"a": 1}')
    assert encode({"a": [1]}) == _frame_py.build_frame(1, b'{"a": [1]}')
    big = os.urandom(70000)
    assert encode(big) == _frame_py.build_frame(2, big)
    with pytest.raises(ValueError):
        encode(b"\xff", binary=False)  # text must be UTF-8, RFC 6455 §5.6


def test_bad_policy_is_refused():
    with pytest.raises(ValueError):
        wsfast.broadcast([], "x", slow="drop")
    assert wsfast.broadcast([], "x") == wsfast.BroadcastResult(0, 0, 0, 0)


def test_send_prepared_follows_the_state_rules(codec):
    frame = encode("x")
    conn = get_connection_class(codec)(Side.SERVER, codec=codec)
    assert conn.send_prepared(frame) is frame  # the same object, no copy
    # A queued pong goes first, as with send_text.
    ping = _frame_py.build_frame(9, b"p", mask_key=b"abcd")
    conn.receive_data(ping)
    assert conn.send_prepared(frame) == _frame_py.build_frame(10, b"p") + frame
    conn.send_close()
    with pytest.raises(wsfast.ConnectionClosedOK):
        conn.send_prepared(frame)
    client = get_connection_class(codec)(Side.CLIENT, codec=codec)
    with pytest.raises(ValueError):
        client.send_prepared(frame)  # client frames must be masked


# -- many real clients ----------------------------------------------------------------


def test_every_client_receives_the_frame_byte_exact(run, codec):
    members = []

    async def main():
        async with serving([(r"/ws", Room, {"members": members})], codec=codec) as server:
            clients = [await wsfast.connect(ws_url(server), codec=codec) for _ in range(N_CLIENTS)]
            wire = [await WireClient.connect(server.port) for _ in range(3)]
            await until(lambda: len(members) == N_CLIENTS + 3)
            messages = ["hello", "é" * 200, b"\x00" * 7, os.urandom(70000), ""]
            for message in messages:
                result = wsfast.broadcast(members, message)
                assert result == (N_CLIENTS + 3, 0, 0, 0)
            for ws in clients:
                for message in messages:
                    assert await asyncio.wait_for(ws.recv(), 5) == message
            for client in wire:
                for message in messages:
                    frame = await client.next_frame()
                    payload = message.encode() if isinstance(message, str) else message
                    assert (frame.opcode, frame.fin, frame.rsv1) == (
                        1 if isinstance(message, str) else 2, True, False)
                    assert frame.payload == payload
                client.close()
            for ws in clients:
                await ws.close()

    run(main(), timeout=20)


def test_broadcast_from_on_message_keeps_the_order(run, codec):
    members = []

    async def main():
        async with serving([(r"/ws", Chat, {"members": members})], codec=codec) as server:
            a = await wsfast.connect(ws_url(server), codec=codec)
            b = await wsfast.connect(ws_url(server), codec=codec)
            await until(lambda: len(members) == 2)
            await a.send("1")
            await a.send("2")
            assert [await a.recv() for _ in range(4)] == ["ack 1", "all 1", "ack 2", "all 2"]
            assert [await b.recv() for _ in range(2)] == ["all 1", "all 2"]
            await a.close()
            await b.close()

    run(main())


def test_closed_and_closing_connections_are_left_out(run, codec):
    members = []

    async def main():
        async with serving([(r"/ws", Room, {"members": members})], codec=codec) as server:
            clients = [await wsfast.connect(ws_url(server), codec=codec) for _ in range(4)]
            await until(lambda: len(members) == 4)
            handlers = list(members)
            await clients[0].close()  # closed: on_close ran
            await until(lambda: len(members) == 3)
            handlers[1].close()  # closing: our close is sent, the peer's reply pending
            result = wsfast.broadcast(handlers, "news")
            assert result == (2, 0, 0, 0)
            for ws in clients[2:]:
                assert await ws.recv() == "news"
            with pytest.raises(wsfast.ConnectionClosedOK):
                await clients[1].recv()  # the close, and no "news" before it
            for ws in clients:
                await ws.close()

    run(main())


# -- slow consumers ---------------------------------------------------------------------


async def slow_setup(server, members, n_fast=3):
    """``n_fast`` wsfast clients and one raw client that never reads, with
    small kernel buffers on both ends so that its server-side write buffer
    goes over the high-water mark after a few broadcasts."""
    fast = [await wsfast.connect(ws_url(server), max_queue=1000) for _ in range(n_fast)]
    await until(lambda: len(members) == n_fast)
    slow = await WireClient.connect(server.port, rcvbuf=4096)
    await until(lambda: len(members) == n_fast + 1)
    handler = members[-1]
    sock = handler.ws_connection.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return fast, slow, handler


async def broadcast_until_slow(members, policy, fast, chunk=16384, limit=400):
    """Broadcast until the slow client is found (the fast ones read along);
    returns the results and the messages sent."""
    results, sent = [], []
    for i in range(limit):
        message = bytes([i % 256]) * chunk
        result = wsfast.broadcast(list(members), message, slow=policy)
        results.append(result)
        sent.append(message)
        for ws in fast:
            assert await asyncio.wait_for(ws.recv(), 5) == message
        if result.skipped or result.closed or result.queued:
            return results, sent
    raise AssertionError("the client that does not read never became a slow consumer")


def test_slow_consumer_skip(run):
    members = []

    async def main():
        async with serving([(r"/ws", Room, {"members": members})],
                           websocket_write_buffer_high=16384,
                           websocket_write_buffer_low=4096) as server:
            fast, slow, handler = await slow_setup(server, members)
            results, sent = await broadcast_until_slow(members, "skip", fast)
            assert results[-1] == (3, 1, 0, 0)
            # It stays skipped while it does not read; the others get it all.
            more = wsfast.broadcast(members, b"later", slow="skip")
            assert more == (3, 1, 0, 0)
            for ws in fast:
                assert await ws.recv() == b"later"
            # Once it reads, it catches up: every frame written to it arrives
            # whole and in order, then it gets broadcasts again.
            for message in sent[:-1]:
                frame = await slow.next_frame()
                assert frame.payload == message
            await until(lambda: not handler.ws_connection._write_paused)
            assert wsfast.broadcast(members, b"back") == (4, 0, 0, 0)
            frame = await slow.next_frame()
            assert frame.payload == b"back"
            slow.close()
            for ws in fast:
                await ws.close()

    run(main(), timeout=30)


def test_slow_consumer_close(run):
    members = []

    async def main():
        async with serving([(r"/ws", Room, {"members": members})],
                           websocket_write_buffer_high=16384,
                           websocket_write_buffer_low=4096) as server:
            fast, slow, _ = await slow_setup(server, members)
            results, sent = await broadcast_until_slow(members, "close", fast)
            assert results[-1] == (3, 0, 1, 0)
            # Closing: left out of later broadcasts, counted nowhere.
            assert wsfast.broadcast(members, b"later", slow="close") == (3, 0, 0, 0)
            for message in sent[:-1]:
                frame = await slow.next_frame()
                assert frame.payload == message
            frame = await slow.next_frame()
            assert frame.opcode == 8
            assert int.from_bytes(frame.payload[:2], "big") == 1008
            assert frame.payload[2:] == b"slow consumer"
            slow.close()
            for ws in fast:
                await ws.close()

    run(main(), timeout=30)


def test_slow_consumer_queue(run):
    members = []

    async def main():
        async with serving([(r"/ws", Room, {"members": members})],
                           websocket_write_buffer_high=16384,
                           websocket_write_buffer_low=4096) as server:
            fast, slow, _ = await slow_setup(server, members)
            results, sent = await broadcast_until_slow(members, "queue", fast)
            assert results[-1] == (3, 0, 0, 1)
            for message in sent:  # all of them, the queued one too
                frame = await slow.next_frame()
                assert frame.payload == message
            slow.close()
            for ws in fast:
                await ws.close()

    run(main(), timeout=30)


# -- permessage-deflate -------------------------------------------------------------------


def test_deflate_connections_get_the_uncompressed_frame(run, codec):
    members = []

    async def main():
        async with serving([(r"/ws", Room, {"members": members})], codec=codec,
                           websocket_compression="deflate") as server:
            plain = await wsfast.connect(ws_url(server), codec=codec)
            deflated = await wsfast.connect(ws_url(server), codec=codec, compression="deflate")
            assert deflated.extensions
            wire = await WireClient.connect(server.port, extensions="permessage-deflate")
            await until(lambda: len(members) == 3)
            text = "compressible " * 100
            assert wsfast.broadcast(members, text) == (3, 0, 0, 0)
            for ws in (plain, deflated):
                assert await ws.recv() == text
            frame = await wire.next_frame()
            assert (frame.opcode, frame.rsv1, frame.payload) == (1, False, text.encode())
            # Later compressed messages still decode: the compression context
            # (context takeover) was not touched by the broadcast frame.
            for _ in range(2):
                for handler in members:
                    handler.write_message(text)
                for ws in (plain, deflated):
                    assert await ws.recv() == text
                frame = await wire.next_frame()
                assert frame.rsv1  # compressed indeed
                assert len(frame.payload) < len(text)
            assert wsfast.broadcast(members, b"\x01" * 300) == (3, 0, 0, 0)
            for ws in (plain, deflated):
                assert await ws.recv() == b"\x01" * 300
            frame = await wire.next_frame()
            assert (frame.opcode, frame.rsv1) == (2, False)
            wire.close()
            await plain.close()
            await deflated.close()

    run(main())


def test_wire_client_inflates_the_compressed_ones(run):
    # The raw check above relies on rsv1 meaning "compressed": make sure the
    # compressed frames really are raw deflate streams (RFC 7692 §7.2.2).
    members = []

    async def main():
        async with serving([(r"/ws", Room, {"members": members})],
                           websocket_compression="deflate") as server:
            wire = await WireClient.connect(server.port, extensions="permessage-deflate")
            await until(lambda: len(members) == 1)
            members[0].write_message("z" * 500)
            frame = await wire.next_frame()
            assert frame.rsv1
            inflater = zlib.decompressobj(-15)
            assert inflater.decompress(frame.payload + b"\x00\x00\xff\xff") == b"z" * 500
            wire.close()

    run(main())


# -- corking ---------------------------------------------------------------------------------


class CountingTransport:
    """Wraps a transport, counting the calls that write."""

    def __init__(self, transport):
        self._transport = transport
        self.writes = 0

    def write(self, data):
        self.writes += 1
        self._transport.write(data)

    def writelines(self, data):
        self.writes += 1
        self._transport.writelines(data)

    def __getattr__(self, name):
        return getattr(self._transport, name)


def test_broadcasts_in_one_loop_turn_cost_one_write_per_connection(run, codec):
    members = []

    async def main():
        async with serving([(r"/ws", Room, {"members": members})], codec=codec) as server:
            clients = [await wsfast.connect(ws_url(server), codec=codec) for _ in range(3)]
            await until(lambda: len(members) == 3)
            counters = []
            for handler in members:
                protocol = handler.ws_connection
                protocol.transport = CountingTransport(protocol.transport)
                counters.append(protocol.transport)
            # One turn: broadcasts, a direct write and a close interleaved.
            for i in range(5):
                assert wsfast.broadcast(members, f"m{i}") == (3, 0, 0, 0)
            members[0].write_message("direct")
            wsfast.broadcast(members, "m5")
            members[1].close(4000, "bye")
            wsfast.broadcast(members, "after close")  # left out for members[1]
            assert [c.writes for c in counters] == [0, 0, 0]  # corked
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert [c.writes for c in counters] == [1, 1, 1]
            expected = [f"m{i}" for i in range(5)]
            got = [await clients[0].recv() for _ in range(8)]
            assert got == expected + ["direct", "m5", "after close"]
            assert [await clients[1].recv() for _ in range(6)] == expected + ["m5"]
            with pytest.raises(wsfast.ConnectionClosed) as info:
                await clients[1].recv()
            assert info.value.code == 4000
            assert [await clients[2].recv() for _ in range(7)] == expected + ["m5", "after close"]
            for ws in clients:
                await ws.close()

    run(main())


def test_counts_when_some_connections_are_corked_already(run, codec):
    """BroadcastResult.sent counts every connection written to, whether its
    batch was open already (a write outside a read corked it) or this call
    opened it, and leaves out the closing one; the order on the wire holds."""
    members = []

    async def main():
        async with serving([(r"/ws", Room, {"members": members})], codec=codec) as server:
            clients = [await wsfast.connect(ws_url(server), codec=codec) for _ in range(4)]
            await until(lambda: len(members) == 4)
            members[2].write_message("first")  # outside a read: corked, the loop's list not empty
            assert wsfast.broadcast(members, "a") == (4, 0, 0, 0)
            members[3].close(4000, "bye")
            assert wsfast.broadcast(members, "b") == (3, 0, 0, 0)
            assert wsfast.broadcast(members[:2], "c") == (2, 0, 0, 0)
            for i, ws in enumerate(clients[:3]):
                expected = (["first"] if i == 2 else []) + ["a", "b"] + (["c"] if i < 2 else [])
                assert [await ws.recv() for _ in expected] == expected
            assert await clients[3].recv() == "a"
            for ws in clients:
                await ws.close()

    run(main())


def test_corked_frames_are_bounded_and_large_frames_are_not_corked(run):
    members = []

    async def main():
        async with serving([(r"/ws", Room, {"members": members})]) as server:
            ws = await wsfast.connect(ws_url(server), max_queue=1000)
            await until(lambda: len(members) == 1)
            protocol = members[0].ws_connection
            counter = protocol.transport = CountingTransport(protocol.transport)
            for i in range(100):
                wsfast.broadcast(members, str(i))
            assert counter.writes == 3  # after 32, 64 and 96 entries
            # A large frame does not wait in the open batch (batches are
            # joined when written): it goes now, after what the batch held.
            wsfast.broadcast(members, b"x" * 20000)
            assert counter.writes == 4
            await asyncio.sleep(0)
            assert counter.writes == 4  # nothing left to flush
            wsfast.broadcast(members, b"y" * 20000)  # no batch open: written at once
            assert counter.writes == 5
            assert [await ws.recv() for _ in range(100)] == [str(i) for i in range(100)]
            assert await ws.recv() == b"x" * 20000
            assert await ws.recv() == b"y" * 20000
            await ws.close()

    run(main())


def test_a_corked_batch_goes_out_before_the_connection_ends(run):
    members = []

    async def main():
        async with serving([(r"/ws", Room, {"members": members})]) as server:
            raw = await WireClient.connect(server.port)
            await until(lambda: len(members) == 1)
            wsfast.broadcast(members, "last words")
            protocol = members[0].ws_connection
            protocol.eof_received()  # as if the client half-closed now: finishes at once
            frame = await raw.next_frame()
            assert frame.payload == b"last words"
            raw.close()

    run(main())
