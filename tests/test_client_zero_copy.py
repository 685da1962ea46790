"""Zero-copy receive on the client, opt in (issue 16): ``connect(uri,
on_message=callback)`` hands every message to ``callback`` instead of the
``recv()`` queue, a binary one as a ``memoryview`` of the payload valid during
the call (released after it: a kept view raises ``ValueError`` rather than
show another message's bytes), through the same engine mechanism as a server
handler with ``zero_copy = True`` (``FrameParser.reuse_buffer``: the compiled
parser reads the next large message into the same storage). Against a real
wsfast server on loopback; both codecs, asyncio and uvloop, with and without
permessage-deflate."""

import asyncio
import random

import pytest

import wsfast
from wsfast.codec import get_codec

from test_client_redirect import serving

# ``run`` (asyncio and uvloop) and tls_contexts come from conftest.py
pytestmark = pytest.mark.run_loop(timeout=15)

rnd = random.Random(16)
BIG = [rnd.randbytes(3 * 2**20) for _ in range(3)]  # > 1 MiB: the parser's reuse size
FRAGMENTS = [rnd.randbytes(70000) for _ in range(4)]  # one message in 4 frames


class Sender(wsfast.WebSocketHandler):
    """On "go": a small binary message, text, three large ones back to back,
    a fragmented one and "end"; echoes anything else."""

    closes = []

    async def on_message(self, message):
        if message == "go":
            await self.write_message(b"0123456789", binary=True)
            await self.write_message("text stays str")
            for data in BIG:
                await self.write_message(data, binary=True)
            for i, piece in enumerate(FRAGMENTS):
                await self.ws_connection.send_fragment(piece, fin=i == len(FRAGMENTS) - 1)
            await self.write_message("end")
        else:
            await self.write_message(message, binary=not isinstance(message, str))

    def on_close(self):
        Sender.closes.append(self.close_code)

    def get_compression_options(self):
        return {}  # permessage-deflate when the client offers it


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_callback_gets_views_valid_during_the_call(run, codec, compression):
    async def main():
        got = []  # (type, bytes or str)
        ids = []
        kept = {}
        done = asyncio.get_running_loop().create_future()

        def on_message(message):
            got.append((type(message), bytes(message) if type(message) is memoryview else message))
            if type(message) is memoryview:
                assert message.readonly and message.format == "B"
                ids.append(id(message.obj))
                if "view" not in kept:
                    kept["view"] = message  # misuse: released when this returns
                    kept["slice"] = message[2:6]  # a slice keeps its storage alive
            if message in ("end", "echoed"):
                done.set_result(None)

        async with serving([(r"/", Sender)]) as port:
            async with wsfast.connect(f"ws://127.0.0.1:{port}/", on_message=on_message, codec=codec,
                                      compression=compression) as ws:
                assert ws.protocol.connection.codec is get_codec(codec)
                assert ws.protocol.connection.reuse_buffer
                assert bool(ws.extensions) == (compression is not None)
                await ws.send("go")
                await asyncio.wait_for(done, 20)
                # One at a time: each large message has been handled before
                # the next one starts to arrive, so its storage is free again
                # (not with deflate: a decompressed message is new storage).
                for data in BIG if compression is None else ():
                    done = asyncio.get_running_loop().create_future()
                    await ws.send(data)
                    await ws.send("echoed")
                    await asyncio.wait_for(done, 20)
                with pytest.raises(ValueError):
                    kept["view"].tobytes()  # released: never another message's bytes
                assert bytes(kept["slice"]) == b"2345"
                with pytest.raises(RuntimeError, match="on_message"):
                    await ws.recv()
                with pytest.raises(RuntimeError, match="on_message"):
                    async for _ in ws.recv_streaming():
                        pass
                with pytest.raises(RuntimeError, match="on_message"):
                    async for _ in ws:
                        pass
        assert got == [(memoryview, b"0123456789"), (str, "text stays str")] + [
            (memoryview, data) for data in BIG
        ] + [(memoryview, b"".join(FRAGMENTS)), (str, "end")] + [
            item for data in BIG if compression is None for item in ((memoryview, data), (str, "echoed"))
        ]
        if codec is get_codec("cython") and compression is None:
            # each large message echoed one at a time went into the same
            # storage (back to back, the next may start in the same read as
            # the previous one ends, while that one is not handled yet: then
            # it gets fresh storage)
            assert len(set(ids[-3:])) == 1
        assert bytes(kept["slice"]) == b"2345"  # after all of them

    run(main(), timeout=60)


def test_a_view_kept_past_the_call_is_never_overwritten(run, codec):
    """Holding a view (a slice, or memoryview(view.obj)) keeps its storage:
    the next large message goes elsewhere and the held bytes do not change."""

    async def main():
        held = []
        seen = []
        done = asyncio.get_running_loop().create_future()

        def on_message(view):
            seen.append(bytes(view[:8]))
            if not held:
                held.append(view[:])  # a new view of the same storage
            if len(seen) == 3:
                done.set_result(None)

        async with serving([(r"/", Sender)]) as port:
            async with wsfast.connect(f"ws://127.0.0.1:{port}/", on_message=on_message,
                                      codec=codec) as ws:
                for data in BIG:
                    await ws.send(data)
                await asyncio.wait_for(done, 20)
        assert seen == [data[:8] for data in BIG]
        assert bytes(held[0]) == BIG[0]

    run(main(), timeout=60)


def test_a_failing_callback_closes_1011(run, codec, caplog):
    async def main():
        Sender.closes.clear()
        calls = []

        def on_message(message):
            calls.append(bytes(message))
            raise ValueError("bad message")

        async with serving([(r"/", Sender)]) as port:
            ws = await wsfast.connect(f"ws://127.0.0.1:{port}/", on_message=on_message, codec=codec)
            await ws.send(b"one")
            await ws.send(b"two")
            await asyncio.wait_for(ws.wait_closed(), 10)
            assert ws.close_code == 1011
            for _ in range(100):
                if Sender.closes:
                    break
                await asyncio.sleep(0.01)
            assert Sender.closes == [1011]
        assert calls == [b"one"]  # no message after the failure

    run(main())
    assert "bad message" in caplog.text and "on_message" in caplog.text


def test_bad_callbacks_are_refused():
    async def coroutine(message):
        pass

    with pytest.raises(TypeError, match="plain function"):
        wsfast.connect("ws://127.0.0.1:1/", on_message=coroutine)
    with pytest.raises(TypeError, match="callable"):
        wsfast.connect("ws://127.0.0.1:1/", on_message="print")


def test_over_tls(run, codec, tls_contexts):
    """wss://: the TLS transport reads into the protocol's buffers
    (get_buffer/buffer_updated) as a socket does; views and reuse the same."""
    server_ctx, client_ctx = tls_contexts

    async def main():
        got, ids = [], []
        done = asyncio.get_running_loop().create_future()

        def on_message(message):
            if type(message) is str:
                done.set_result(None)
                return
            got.append(bytes(message))
            ids.append(id(message.obj))

        async with serving([(r"/", Sender)], ssl=server_ctx) as port:
            async with wsfast.connect(f"wss://localhost:{port}/", ssl=client_ctx, codec=codec,
                                      on_message=on_message) as ws:
                for data in BIG:  # one at a time (see above)
                    await ws.send(data)
                    await ws.send("end")
                    await asyncio.wait_for(done, 20)
                    done = asyncio.get_running_loop().create_future()
        assert got == BIG
        if codec is get_codec("cython"):
            assert ids[0] == ids[1] == ids[2]

    run(main(), timeout=60)
