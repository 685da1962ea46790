"""The client's messages in pieces against real peers: ``await ws.send(iterable
or async iterable)`` sends one message as fragments (websockets' server
receives it whole), ``async for chunk in ws.recv_streaming()`` reads one as
its fragments arrive, without assembling it, in bounded memory (a raw server
thread writes the frames; the client's peak RSS is measured). Both codecs,
asyncio and uvloop, with and without permessage-deflate."""

import asyncio
import base64
import hashlib
import socket
import sys
import threading

import pytest
from interop_helpers import GUID, require_codec, run_in_loop

import wsfast

websockets = pytest.importorskip("websockets")
from websockets.asyncio.server import serve as ws_serve

RUNS = [("cython", "asyncio"), ("python", "uvloop")]
IDS = [f"{c}-{k}" for c, k in RUNS]


async def _recorder(ws):
    # Echo each message whole; "frag:" messages back in 4 fragments.
    async for message in ws:
        if message[:5] in ("frag:", b"frag:"):
            step = max(len(message) // 4, 1)
            await ws.send([message[i : i + step] for i in range(0, len(message), step)])
        else:
            await ws.send(message)


async def _pieces(items):
    for item in items:
        await asyncio.sleep(0)
        yield item


@pytest.mark.parametrize("compression", [None, "deflate"])
@pytest.mark.parametrize("codec, loop", RUNS, ids=IDS)
def test_send_iterables_and_recv_streaming(codec, loop, compression):
    require_codec(codec)

    async def main():
        async with ws_serve(_recorder, "127.0.0.1", 0, compression=compression) as server:
            port = server.sockets[0].getsockname()[1]
            async with wsfast.connect(f"ws://127.0.0.1:{port}/", codec=codec,
                                      compression=compression) as ws:
                # send(): an iterable, an async iterable, text and binary.
                await ws.send(["hé", "llo", " wörld"])
                assert await ws.recv() == "héllo wörld"
                await ws.send(_pieces([b"\x00" * 1000, bytearray(b"\x01" * 10), memoryview(b"\x02")]))
                assert await ws.recv() == b"\x00" * 1000 + b"\x01" * 10 + b"\x02"
                await ws.send(iter([]))  # nothing to send: no message
                await ws.send(bytearray(b"one buffer"))  # bytes-like: one message, not pieces
                assert await ws.recv() == b"one buffer"

                class Text(str):
                    pass

                # never sent in pieces, one per character (write_message takes str only)
                with pytest.raises(TypeError):
                    await ws.send(Text("a str subclass"))
                # recv_streaming(): websockets sends "frag:" messages back in 4 fragments.
                text = "frag:" + "€" * 999
                await ws.send(text)
                chunks = [c async for c in ws.recv_streaming()]
                assert len(chunks) >= 4 and "".join(chunks) == text
                assert all(type(c) is str for c in chunks)
                data = b"frag:" + bytes(range(256)) * 40
                await ws.send(data)
                chunks = [c async for c in ws.recv_streaming()]
                assert len(chunks) >= 4 and b"".join(chunks) == data
                # A message that arrived whole before the call: one piece.
                await ws.send("whole")
                await asyncio.sleep(0.2)
                assert [c async for c in ws.recv_streaming()] == ["whole"]
                # Leaving a stream early drops its rest; the next message is fine.
                await ws.send(b"frag:" + bytes(4000))
                async for chunk in ws.recv_streaming():
                    break
                await ws.send("after")
                assert await ws.recv() == "after"
                # Mixed pieces: TypeError; after the first piece the connection closes 1011.
                with pytest.raises(TypeError):
                    await ws.send(["a", b"b"])
                with pytest.raises(wsfast.ConnectionClosed):
                    await ws.recv()
                # (websockets answers a close inside a fragmented message with 1002.)
                assert ws.protocol.connection.close_sent.code == 1011

    run_in_loop(loop, main(), timeout=30)


def test_iterable_that_raises_closes_1011():
    async def main():
        async with ws_serve(_recorder, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with wsfast.connect(f"ws://127.0.0.1:{port}/") as ws:
                def broken():
                    yield b"a"
                    raise ValueError("no more")

                with pytest.raises(ValueError):
                    await ws.send(broken())
                await ws.wait_closed()
                assert ws.protocol.connection.close_sent.code == 1011
                # Before the first piece: nothing was sent, the connection stays.
            async with wsfast.connect(f"ws://127.0.0.1:{port}/") as ws:
                with pytest.raises(TypeError):
                    await ws.send([1, 2])
                await ws.send("still open")
                assert await ws.recv() == "still open"

    run_in_loop("asyncio", main(), timeout=30)


# -- bounded memory: a long message streamed from a raw server -------------------------


def _vm_hwm():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _reset_hwm():
    # Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS.
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class StreamingServer(threading.Thread):
    """Accepts one WebSocket client and sends it one binary message of
    ``total`` bytes in unmasked frames of ``piece`` bytes (one frame object,
    written again and again), then a close."""

    def __init__(self, total, piece):
        super().__init__(daemon=True)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.total, self.piece = total, piece

    def run(self):
        conn, _ = self.sock.accept()
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            key = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:")][0]
            accept = base64.b64encode(hashlib.sha1(key + GUID.encode()).digest())
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            conn.recv(1024)  # the client's "go": it reads with recv_streaming() from now on
            n = self.piece
            payload = b"\x5a" * n
            head16 = bytes((0x00, 127)) + n.to_bytes(8, "big")
            frames = self.total // n
            try:
                conn.sendall(bytes((0x02, 127)) + n.to_bytes(8, "big") + payload)
                middle = head16 + payload
                for _ in range(frames - 2):
                    conn.sendall(middle)
                conn.sendall(bytes((0x80, 127)) + n.to_bytes(8, "big") + payload)
                conn.sendall(b"\x88\x02\x03\xe8")
                conn.recv(1024)
            except OSError:
                pass
        self.sock.close()


def _stream_through(codec, total, piece):
    async def main():
        server = StreamingServer(total, piece)
        server.start()
        async with wsfast.connect(f"ws://127.0.0.1:{server.port}/", codec=codec,
                                  max_message_size=piece) as ws:
            await asyncio.sleep(0.1)
            _reset_hwm()
            before = _vm_hwm()
            received = 0
            # The message is longer than max_message_size: it must be read as
            # a stream from its start (recv_streaming() is waiting when it comes).
            asyncio.get_running_loop().call_later(0.05, lambda: asyncio.ensure_future(ws.send("go")))
            async for chunk in ws.recv_streaming():
                assert type(chunk) is bytes
                received += len(chunk)
            growth = _vm_hwm() - before
            with pytest.raises(wsfast.ConnectionClosedOK):
                await ws.recv()
        server.join(10)
        return received, growth

    return run_in_loop("asyncio", main(), timeout=600)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("codec", ["cython", "python"])
def test_64_mib_message_in_bounded_memory(codec):
    require_codec(codec)
    total, piece = 64 * 2**20, 256 * 2**10
    received, growth = _stream_through(codec, total, piece)
    assert received == total
    # At most max_queue (32) pieces wait, plus a frame being read and the
    # read buffer: ~10 MiB, whatever the message's length (it is 64 MiB).
    assert growth < 24 * 2**20, f"peak RSS grew by {growth / 2**20:.1f} MiB"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("codec", ["cython", "python"])
def test_1_gib_message_in_bounded_memory(codec):
    require_codec(codec)
    total, piece = 2**30, 256 * 2**10
    received, growth = _stream_through(codec, total, piece)
    assert received == total
    assert growth < 24 * 2**20, f"peak RSS grew by {growth / 2**20:.1f} MiB"


class PiecesHandler(wsfast.WebSocketHandler):
    """Answers "n text|binary" with a message in n pieces, sent with the
    protocol's send_fragment."""

    async def on_message(self, message):
        n, kind = message.split()
        piece = "é" * 1000 if kind == "text" else b"\x07" * 1000
        for _ in range(int(n)):
            await self.ws_connection.send_fragment(piece)
        await self.ws_connection.send_fragment(piece[:0], fin=True)


@pytest.mark.parametrize("compression", [None, "deflate"])
@pytest.mark.parametrize("codec, loop", RUNS, ids=IDS)
def test_server_sends_pieces_client_streams_them(codec, loop, compression):
    require_codec(codec)

    async def main():
        app = wsfast.Application([(r"/", PiecesHandler)], websocket_compression=compression,
                                 codec=codec)
        server = await app.listen(0, host="127.0.0.1")
        try:
            async with wsfast.connect(f"ws://127.0.0.1:{server.port}/", codec=codec,
                                      compression=compression, max_message_size=4000) as ws:
                for kind in ("text", "binary"):
                    await ws.send(f"50 {kind}")
                    chunks = [c async for c in ws.recv_streaming()]
                    # 50 pieces of ~1-2 KB: 100 KB, longer than max_message_size
                    assert len(chunks) == 51
                    assert chunks[0] == ("é" * 1000 if kind == "text" else b"\x07" * 1000)
                    assert len(chunks[0][:0].join(chunks)) == 50_000
                # A whole message after the streams: recv() as usual.
                await ws.send("1 text")
                assert await ws.recv() == "é" * 1000
        finally:
            await server.stop(timeout=2)

    run_in_loop(loop, main(), timeout=30)


class StreamingHandler(wsfast.WebSocketHandler):
    """A server handler reading messages as streams: Connection.streaming
    on at open, pieces to on_fragment (what the protocol calls for Fragment
    events); answers each message's length and piece count."""

    def open(self):
        self.ws_connection.connection.streaming = True
        self.size = self.pieces = 0

    def on_fragment(self, fragment):
        self.size += len(fragment.data)
        self.pieces += 1
        if fragment.fin:
            self.write_message(f"{type(fragment.data).__name__} {self.size} {self.pieces}")
            self.size = self.pieces = 0


@pytest.mark.parametrize("codec, loop", RUNS, ids=IDS)
def test_server_handler_reads_streams(codec, loop):
    require_codec(codec)

    async def main():
        app = wsfast.Application([(r"/", StreamingHandler)], websocket_max_message_size=10_000,
                                 websocket_compression="deflate", codec=codec)
        server = await app.listen(0, host="127.0.0.1")
        try:
            async with wsfast.connect(f"ws://127.0.0.1:{server.port}/", codec=codec,
                                      compression="deflate") as ws:
                # 100 pieces of 5,000 bytes: 50 times the server's message limit
                await ws.send(b"\x01" * 5000 for _ in range(100))
                assert await ws.recv() == "bytes 500000 101"
                await ws.send("é" * 3000)  # one frame: one piece
                assert await ws.recv() == "str 3000 1"
        finally:
            await server.stop(timeout=2)

    run_in_loop(loop, main(), timeout=30)
