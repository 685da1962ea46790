"""The close of a read waits for an async consumer to answer the messages
that came before it (RFC 6455 §5.5.1), bounded in time."""

import asyncio
import time

import pytest

import wsfast
from interop_helpers import CLOSE, TEXT, RawWebSocket, close_payload, free_port, run_in_loop

LOOPS = ["asyncio", "uvloop"]


class SlowAsyncEcho(wsfast.WebSocketHandler):
    async def on_message(self, message):
        await asyncio.sleep(0.05)  # a real await between receiving and answering
        await self.write_message(message)


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize(
    "tail,code",
    [((CLOSE, close_payload(1000)), 1000), ((5, b""), 1002)],
    ids=["close", "reserved-opcode"],
)
def test_async_on_message_answers_before_the_close(loop, tail, code):
    async def main():
        app = wsfast.Application([(r"/", SlowAsyncEcho)])
        server = await app.listen(0, host="127.0.0.1")
        try:
            ws = await RawWebSocket.connect(server.port)
            await ws.send(ws.frame(TEXT, b"one"), ws.frame(TEXT, b"two"), ws.frame(*tail))
            await ws.expect((TEXT, b"one"), (TEXT, b"two"))
            await ws.expect_close(code)
            ws.writer.close()
        finally:
            await server.stop()

    run_in_loop(loop, main())


@pytest.mark.parametrize("loop", LOOPS)
def test_client_that_never_reads_gets_the_close_within_the_bound(loop):
    """A client app that does not call recv() must not delay the close reply
    for long: the hold is bounded (1 s, or close_timeout if shorter)."""

    async def main():
        port = free_port()
        got_close = asyncio.get_running_loop().create_future()

        async def serve(reader, writer):
            ws = await RawWebSocket.accept(reader, writer)
            await ws.send(ws.frame(TEXT, b"unread"), ws.frame(CLOSE, close_payload(1000)))
            start = time.monotonic()
            await ws.expect_close(1000, timeout=5, eof=False)
            got_close.set_result(time.monotonic() - start)
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", port)
        try:
            ws = await wsfast.connect(f"ws://127.0.0.1:{port}/", close_timeout=0.3)
            waited = await asyncio.wait_for(got_close, 5)
            assert 0.2 <= waited < 1.5, waited
            assert await ws.recv() == "unread"  # still delivered
            with pytest.raises(wsfast.ConnectionClosedOK):
                await ws.recv()
        finally:
            server.close()

    run_in_loop(loop, main())
