"""Zero-copy receive, opt in (issue 12 item 3, issue 16): a handler with
``zero_copy = True`` gets binary messages as a ``memoryview`` valid during
``on_message``, and the compiled parser reuses a large message's storage for
the next one (``FrameParser.reuse_buffer``). Against a real websockets
client; both codecs (the twin has no reuse, the views are the same)."""

import asyncio
import random

import pytest
from interop_helpers import require_codec, run_in_loop

import wsfast

websockets = pytest.importorskip("websockets")
from websockets.asyncio.client import connect as ws_connect


class ViewEcho(wsfast.WebSocketHandler):
    zero_copy = True

    def initialize(self, record):
        self.record = record

    def on_message(self, message):
        record = self.record
        record.setdefault("types", []).append(type(message))
        if type(message) is memoryview:
            record.setdefault("ids", []).append(id(message.obj))
            record["kept"] = message  # misuse: released after the call
            if len(message) == 10:
                record["slice"] = message[2:6]  # a slice keeps the storage alive
            self.write_message(bytes(message))
        else:
            self.write_message(message)


class AsyncViewEcho(ViewEcho):
    async def on_message(self, message):
        self.record.setdefault("types", []).append(type(message))
        await self.write_message(message)


@pytest.mark.parametrize("codec", ["cython", "python"])
def test_zero_copy_handler(codec):
    require_codec(codec)
    rnd = random.Random(5)
    big = [rnd.randbytes(3 * 2**20) for _ in range(3)]

    async def main():
        record = {}
        app = wsfast.Application([(r"/", ViewEcho, {"record": record}),
                                  (r"/async", AsyncViewEcho, {"record": record})], codec=codec)
        server = await app.listen(0, host="127.0.0.1")
        try:
            async with ws_connect(f"ws://127.0.0.1:{server.port}/", max_size=None) as ws:
                await ws.send(b"0123456789")
                assert await ws.recv() == b"0123456789"
                with pytest.raises(ValueError):
                    record["kept"].tobytes()  # released when on_message returned
                assert bytes(record["slice"]) == b"2345"  # a slice stays valid
                await ws.send("text stays str")
                assert await ws.recv() == "text stays str"
                for data in big:
                    await ws.send(data)
                    assert await asyncio.wait_for(ws.recv(), 20) == data
                assert bytes(record["slice"]) == b"2345"
            assert record["types"] == [memoryview, str] + [memoryview] * 3
            if codec == "cython":
                # the 2nd and 3rd large messages reused the 1st one's storage
                assert record["ids"][2] == record["ids"][3] == record["ids"][1]
            record.clear()
            async with ws_connect(f"ws://127.0.0.1:{server.port}/async") as ws:
                await ws.send(b"abc")
                assert await ws.recv() == b"abc"
            assert record["types"] == [bytes]  # an async on_message gets bytes
        finally:
            await server.stop(timeout=2)

    run_in_loop("asyncio", main(), timeout=60)
