"""wsfast against a real peer: the ``websockets`` library (asyncio API).

* ``websockets.asyncio.client.connect`` as the client of a wsfast
  ``Application`` (``TestServer``);
* ``websockets.asyncio.server.serve`` as the server of ``wsfast.connect``
  (``TestClient``).

Every test runs on stdlib asyncio and on uvloop (both peers in one loop), and
with both wsfast codecs: text, binary, fragmented messages, 0 B .. 16 MiB,
pings both ways, every close path, subprotocols, refusals.
"""

import asyncio
from http import HTTPStatus

import pytest
import websockets
from interop_helpers import TEXT, frame, require_codec
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import serve as ws_serve

import wsfast

MiB = 2**20
SIZES = [0, 1, 125, 126, 65535, 65536, MiB, 16 * MiB]

# websockets defaults changed for the better in v10+, but be explicit: no
# size limit, no compression, no keepalive, no proxy from the environment.
WS_CLIENT = {"max_size": None, "compression": None, "ping_interval": None, "open_timeout": 5,
             "close_timeout": 2, "proxy": None}
WS_SERVER = {"max_size": None, "compression": None, "ping_interval": None, "open_timeout": 5,
             "close_timeout": 2}


# run: conftest.py's asyncio/uvloop fixture
pytestmark = pytest.mark.run_loop(timeout=30)


@pytest.fixture(params=["cython", "python"])
def codec(request):
    return require_codec(request.param)


def payload(kind, n):
    if kind == "text":
        # Multi-byte characters, cut to n bytes on a character boundary.
        text = ("wsfast \u00e9\u20ac\U0001f600 " * (n // 8 + 1)).encode()[:n].decode("utf-8", "ignore")
        return text + "*" * (n - len(text.encode()))
    return (bytes(range(256)) * (n // 256 + 1))[:n]


# -- the wsfast server ------------------------------------------------------------------------


class Recorder(wsfast.WebSocketHandler):
    """Records what happens; commands in text messages:
    ``close <code> <reason>``, ``raise``, ``ping <data>``; anything else is echoed."""

    def initialize(self, log):
        self.log = log

    def open(self):
        self.log.handlers.append(self)
        self.log.events.append(("open",))

    def on_message(self, message):
        self.log.events.append(("message", message))
        if type(message) is str:
            if message.startswith("close "):
                _, code, reason = message.split(" ", 2)
                self.close(int(code), reason)
                return
            if message == "raise":
                raise RuntimeError("the handler fails (expected by the test)")
            if message.startswith("ping "):
                self.ping(message[5:].encode())
                return
        self.write_message(message, binary=type(message) is bytes)

    def on_ping(self, data):
        self.log.events.append(("ping", data))

    def on_pong(self, data):
        self.log.events.append(("pong", data))
        self.log.changed()

    def on_close(self):
        self.log.events.append(("close", self.close_code, self.close_reason))
        if not self.log.closed.done():
            self.log.closed.set_result((self.close_code, self.close_reason))

    def select_subprotocol(self, subprotocols):
        return "chat.v2" if "chat.v2" in subprotocols else None


class Small(Recorder):
    max_message_size = 1024


class FewFragments(Recorder):
    max_fragments = 2  # a class attribute overrides the websocket_max_fragments setting


class Guarded(Recorder):
    def prepare(self):
        if self.get_argument("token", None) != "secret":
            raise wsfast.HTTPError(401, headers={"WWW-Authenticate": "Bearer"})


class Log:
    def __init__(self):
        self.events = []
        self.handlers = []
        self.closed = asyncio.get_running_loop().create_future()
        self._changed = asyncio.Event()

    def changed(self):
        self._changed.set()

    async def wait_for(self, event, timeout=5):
        async def poll():
            while event not in self.events:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(poll(), timeout)

    async def on_close(self, timeout=5):
        return await asyncio.wait_for(asyncio.shield(self.closed), timeout)


class wsfast_server:
    """``async with wsfast_server(codec) as (uri, log)``: an Application with
    the Recorder at /ws, Small at /small, FewFragments at /few, Guarded at
    /guarded."""

    def __init__(self, codec, **settings):
        self.codec = codec
        self.settings = settings

    async def __aenter__(self):
        self.log = Log()
        routes = [(r"/ws", Recorder, {"log": self.log}), (r"/small", Small, {"log": self.log}),
                  (r"/few", FewFragments, {"log": self.log}), (r"/guarded", Guarded, {"log": self.log})]
        app = wsfast.Application(routes, codec=self.codec, **self.settings)
        self.server = await app.listen(0, host="127.0.0.1")
        return f"ws://127.0.0.1:{self.server.port}", self.log

    async def __aexit__(self, *exc):
        await self.server.stop(timeout=2)


class TestServer:
    """websockets' client → wsfast's server."""

    @pytest.mark.parametrize("kind", ["text", "binary"])
    @pytest.mark.parametrize("size", SIZES)
    def test_echo(self, run, codec, kind, size):
        message = payload(kind, size)

        async def main():
            async with wsfast_server(codec) as (uri, log):
                async with ws_connect(uri + "/ws", **WS_CLIENT) as ws:
                    await ws.send(message)
                    got = await asyncio.wait_for(ws.recv(), 20)
                    assert type(got) is type(message) and len(got) == len(message)
                    assert got == message
                    assert log.events[1] == ("message", message)

        run(main())

    @pytest.mark.parametrize("kind", ["text", "binary"])
    def test_fragmented(self, run, codec, kind):
        parts = [payload(kind, n) for n in (0, 1, 125, 126, 4096, 0, 70000, 3)]

        async def agen():
            for part in parts:
                yield part
                await asyncio.sleep(0)

        async def main():
            async with wsfast_server(codec) as (uri, _log):
                async with ws_connect(uri + "/ws", **WS_CLIENT) as ws:
                    whole = parts[0][:0].join(parts)
                    await ws.send(parts)  # an iterable: one fragment each
                    assert await ws.recv() == whole
                    await ws.send(agen())  # an async iterable
                    assert await ws.recv() == whole
                    many = [payload(kind, 64)] * 2000  # 128 KB in 2000 fragments
                    await ws.send(many)
                    assert await ws.recv() == many[0][:0].join(many)

        run(main())

    def test_ping_from_client(self, run, codec):
        async def main():
            async with wsfast_server(codec) as (uri, log):
                async with ws_connect(uri + "/ws", **WS_CLIENT) as ws:
                    for data in (b"", b"client ping", bytes(range(125))):
                        waiter = await ws.ping(data)
                        await asyncio.wait_for(waiter, 5)
                        assert ("ping", data) in log.events
                    # Pings interleaved with fragments are answered too.
                    async def frags():
                        yield "part one, "
                        await asyncio.wait_for(await ws.ping(b"mid-message"), 5)
                        yield "part two"

                    await ws.send(frags())
                    assert await ws.recv() == "part one, part two"

        run(main())

    def test_ping_from_server(self, run, codec):
        async def main():
            async with wsfast_server(codec) as (uri, log):
                async with ws_connect(uri + "/ws", **WS_CLIENT) as ws:
                    await ws.send("ping hello")
                    # websockets answers while we wait for a message.
                    recv = asyncio.ensure_future(ws.recv())
                    await log.wait_for(("pong", b"hello"))
                    recv.cancel()

        run(main())

    def test_client_closes(self, run, codec):
        async def main():
            async with wsfast_server(codec) as (uri, log):
                async with ws_connect(uri + "/ws", **WS_CLIENT) as ws:
                    await ws.send("hi")
                    await ws.recv()
                    await ws.close(4000, "bye now")
                    assert ws.close_code == 4000  # the server echoed it
                    assert await log.on_close() == (4000, "bye now")

        run(main())

    @pytest.mark.parametrize("code", [1000, 1001, 4001])
    def test_server_closes(self, run, codec, code):
        async def main():
            async with wsfast_server(codec) as (uri, log):
                async with ws_connect(uri + "/ws", **WS_CLIENT) as ws:
                    await ws.send(f"close {code} server says bye")
                    expected = (websockets.ConnectionClosedOK if code in (1000, 1001)
                                else websockets.ConnectionClosedError)
                    with pytest.raises(expected) as info:
                        await ws.recv()
                    assert (info.value.rcvd.code, info.value.rcvd.reason) == (code, "server says bye")
                    # the handler sees websockets' reply, which echoes the code
                    assert (await log.on_close())[0] == code

        run(main())

    def test_handler_raises(self, run, codec):
        async def main():
            async with wsfast_server(codec) as (uri, log):
                async with ws_connect(uri + "/ws", **WS_CLIENT) as ws:
                    await ws.send("raise")
                    with pytest.raises(websockets.ConnectionClosedError) as info:
                        await ws.recv()
                    assert info.value.rcvd.code == 1011
                    await log.on_close()

        run(main())

    @pytest.mark.parametrize(
        "name, data, code",
        [
            ("reserved-opcode", frame(5, b"x"), 1002),
            ("rsv2", frame(TEXT, b"x", rsv=2), 1002),
            ("unmasked", frame(TEXT, b"x", mask=False), 1002),
            ("continuation-without-start", frame(0, b"x"), 1002),
            ("invalid-utf8", frame(TEXT, b"\xce\xba\xff"), 1007),
            ("invalid-utf8-fragmented", frame(TEXT, b"\xce", fin=False) + frame(0, b"\xff", fin=False), 1007),
            ("bad-close-code", frame(8, b"\x03\xed"), 1002),
        ],
    )
    def test_peer_breaks_protocol(self, run, codec, name, data, code):
        async def main():
            async with wsfast_server(codec) as (uri, log):
                async with ws_connect(uri + "/ws", **WS_CLIENT) as ws:
                    await ws.send("before")
                    assert await ws.recv() == "before"
                    ws.transport.write(data)  # bytes websockets would never send
                    with pytest.raises(websockets.ConnectionClosedError) as info:
                        await ws.recv()
                    assert info.value.rcvd.code == code
                    handler = log.handlers[0]
                    await log.on_close()
                    # the peer's close was not processed: close_code is None;
                    # the connection records why it failed
                    assert handler.close_code is None
                    assert handler.ws_connection.connection.close_code == code

        run(main())

    def test_oversize(self, run, codec):
        async def main():
            async with wsfast_server(codec) as (uri, log):
                async with ws_connect(uri + "/small", **WS_CLIENT) as ws:
                    await ws.send(b"x" * 1024)  # at the limit: fine
                    assert await ws.recv() == b"x" * 1024
                    await ws.send(b"x" * 1025)
                    with pytest.raises(websockets.ConnectionClosedError) as info:
                        await ws.recv()
                    assert info.value.rcvd.code == 1009
                    await log.on_close()

        run(main())

    @pytest.mark.parametrize("kind", ["text", "binary"])
    def test_max_fragments(self, run, codec, kind):
        """websocket_max_fragments: a message in that many frames passes, one
        in a frame more fails the connection with 1009 (too big), whatever
        the bytes (8 empty frames, then 9 of at most one byte). websockets
        sends an iterable's items as frames, then an empty one with FIN."""
        async def main():
            async with wsfast_server(codec, websocket_max_fragments=8) as (uri, log):
                async with ws_connect(uri + "/ws", **WS_CLIENT) as ws:
                    await ws.send([payload(kind, 0)] * 7)  # 8 frames
                    assert await ws.recv() == payload(kind, 0)
                    await ws.send([payload(kind, 1)] * 8)  # 9 frames
                    with pytest.raises(websockets.ConnectionClosedError) as info:
                        await ws.recv()
                    assert info.value.rcvd.code == 1009
                    assert info.value.rcvd.reason == "message in more than 8 fragments"
                    assert await log.on_close() == (None, None)  # the server closed, 1009 sent
                assert [e[0] for e in log.events] == ["open", "message", "close"]
                async with ws_connect(uri + "/few", **WS_CLIENT) as ws:
                    await ws.send([payload(kind, 1)])  # 2 frames
                    assert await ws.recv() == payload(kind, 1)
                    await ws.send([payload(kind, 1)] * 2)  # 3 frames
                    with pytest.raises(websockets.ConnectionClosedError) as info:
                        await ws.recv()
                    assert info.value.rcvd.code == 1009

        run(main())

    def test_abrupt_drop(self, run, codec):
        async def main():
            async with wsfast_server(codec) as (uri, log):
                ws = await ws_connect(uri + "/ws", **WS_CLIENT)
                await ws.send("hi")
                await ws.recv()
                ws.transport.abort()  # no close frame: TCP just goes away
                # Documented: close_code holds what the peer sent, None here;
                # the connection itself says 1006 (RFC 6455 §7.1.5).
                assert await log.on_close() == (None, None)
                assert log.handlers[0].ws_connection.connection.close_code == 1006

        run(main())

    def test_subprotocol(self, run, codec):
        async def main():
            async with wsfast_server(codec) as (uri, log):
                async with ws_connect(uri + "/ws", subprotocols=["chat.v1", "chat.v2"], **WS_CLIENT) as ws:
                    assert ws.subprotocol == "chat.v2"
                    assert log.handlers[0].selected_subprotocol == "chat.v2"
                async with ws_connect(uri + "/ws", subprotocols=["chat.v3"], **WS_CLIENT) as ws:
                    assert ws.subprotocol is None
                    await ws.send("still fine")
                    assert await ws.recv() == "still fine"

        run(main())

    def test_refused_by_prepare(self, run, codec):
        async def main():
            async with wsfast_server(codec) as (uri, _log):
                with pytest.raises(websockets.InvalidStatus) as info:
                    await ws_connect(uri + "/guarded?token=wrong", **WS_CLIENT)
                assert info.value.response.status_code == 401
                assert info.value.response.headers["WWW-Authenticate"] == "Bearer"
                async with ws_connect(uri + "/guarded?token=secret", **WS_CLIENT) as ws:
                    await ws.send("let in")
                    assert await ws.recv() == "let in"

        run(main())

    def test_refused_by_check_origin(self, run, codec):
        async def main():
            async with wsfast_server(codec) as (uri, _log):
                with pytest.raises(websockets.InvalidStatus) as info:
                    await ws_connect(uri + "/ws", origin="http://evil.example", **WS_CLIENT)
                assert info.value.response.status_code == 403
                same = "http://" + uri.split("//")[1]
                async with ws_connect(uri + "/ws", origin=same, **WS_CLIENT) as ws:
                    await ws.send("same origin")
                    assert await ws.recv() == "same origin"

        run(main())

    def test_many_clients(self, run, codec):
        async def one(uri, i):
            async with ws_connect(uri + "/ws", **WS_CLIENT) as ws:
                for j in range(50):
                    await ws.send(f"{i}:{j}")
                    assert await ws.recv() == f"{i}:{j}"

        async def main():
            async with wsfast_server(codec) as (uri, _log):
                await asyncio.gather(*(one(uri, i) for i in range(20)))

        run(main())


# -- the wsfast client ------------------------------------------------------------------------


class websockets_server:
    """``async with websockets_server(handler, **kw) as uri``."""

    def __init__(self, handler, **kwargs):
        self.handler = handler
        self.kwargs = {**WS_SERVER, **kwargs}

    async def __aenter__(self):
        self.server = await ws_serve(self.handler, "127.0.0.1", 0, **self.kwargs).__aenter__()
        return f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc):
        self.server.close()
        await asyncio.wait_for(self.server.wait_closed(), 5)


async def ws_echo(ws):
    async for message in ws:
        await ws.send(message)


def connect(uri, codec, **kwargs):
    return wsfast.connect(uri, codec=codec, open_timeout=5, close_timeout=2, **kwargs)


class TestClient:
    """wsfast's client → websockets' server."""

    @pytest.mark.parametrize("kind", ["text", "binary"])
    @pytest.mark.parametrize("size", SIZES)
    def test_echo(self, run, codec, kind, size):
        message = payload(kind, size)

        async def main():
            async with websockets_server(ws_echo) as uri:
                async with connect(uri, codec) as ws:
                    await ws.send(message)
                    got = await asyncio.wait_for(ws.recv(), 20)
                    assert type(got) is type(message) and len(got) == len(message)
                    assert got == message

        run(main())

    @pytest.mark.parametrize("kind", ["text", "binary"])
    def test_fragmented(self, run, codec, kind):
        parts = [payload(kind, n) for n in (0, 1, 125, 126, 4096, 0, 70000, 3)]
        whole = parts[0][:0].join(parts)

        async def handler(ws):
            await ws.send(parts)

            async def agen():
                for i, part in enumerate(parts):
                    yield part
                    await ws.ping(b"between fragments %d" % i)

            await ws.send(agen())
            await ws.send([payload(kind, 64)] * 2000)
            await ws.wait_closed()

        async def main():
            async with websockets_server(handler) as uri:
                async with connect(uri, codec) as ws:
                    assert await ws.recv() == whole
                    assert await ws.recv() == whole
                    assert await ws.recv() == payload(kind, 64) * 2000

        run(main())

    def test_ping_from_client(self, run, codec):
        async def main():
            async with websockets_server(ws_echo) as uri:
                async with connect(uri, codec) as ws:
                    for data in (b"", b"client ping", bytes(range(125))):
                        rtt = await asyncio.wait_for(ws.ping(data), 5)
                        assert rtt >= 0
                    await ws.send("after pings")
                    assert await ws.recv() == "after pings"

        run(main())

    def test_ping_from_server(self, run, codec):
        async def handler(ws):
            for data in (b"", b"server ping", bytes(range(125))):
                await asyncio.wait_for(await ws.ping(data), 5)
            await ws.send("got every pong")
            await ws.wait_closed()

        async def main():
            async with websockets_server(handler) as uri:
                async with connect(uri, codec) as ws:
                    # the client answers pings while it waits for a message
                    assert await asyncio.wait_for(ws.recv(), 10) == "got every pong"

        run(main())

    def test_client_closes(self, run, codec):
        seen = {}

        async def handler(ws):
            try:
                await ws_echo(ws)
            except websockets.ConnectionClosedError:
                pass  # 4000 is not a "normal" closure for websockets
            seen["close"] = (ws.close_code, ws.close_reason)

        async def main():
            async with websockets_server(handler) as uri:
                ws = await connect(uri, codec)
                await ws.send("hi")
                assert await ws.recv() == "hi"
                await ws.close(4000, "bye now")
                assert ws.closed and ws.close_code == 4000  # echoed by websockets
                for _ in range(100):
                    if "close" in seen:
                        break
                    await asyncio.sleep(0.01)
                assert seen["close"] == (4000, "bye now")

        run(main())

    @pytest.mark.parametrize("code", [1000, 1001, 4001])
    def test_server_closes(self, run, codec, code):
        async def handler(ws):
            await ws.send("about to close")
            await ws.close(code, "server says bye")

        async def main():
            async with websockets_server(handler) as uri:
                async with connect(uri, codec) as ws:
                    assert await ws.recv() == "about to close"
                    expected = wsfast.ConnectionClosedOK if code in (1000, 1001) else wsfast.ConnectionClosedError
                    with pytest.raises(expected) as info:
                        await ws.recv()
                    assert (info.value.code, info.value.reason) == (code, "server says bye")
                    assert (ws.close_code, ws.close_reason) == (code, "server says bye")
                    if code == 1000:
                        assert [m async for m in ws] == []  # iteration ends quietly

        run(main())

    def test_server_handler_raises(self, run, codec):
        async def handler(ws):
            await ws.recv()
            raise RuntimeError("the websockets handler fails (expected by the test)")

        async def main():
            async with websockets_server(handler) as uri:
                async with connect(uri, codec) as ws:
                    await ws.send("go")
                    with pytest.raises(wsfast.ConnectionClosedError) as info:
                        await ws.recv()
                    assert info.value.code == 1011

        run(main())

    @pytest.mark.parametrize(
        "name, data, code",
        [
            ("reserved-opcode", frame(5, b"x", mask=False), 1002),
            ("rsv2", frame(TEXT, b"x", rsv=2, mask=False), 1002),
            ("masked", frame(TEXT, b"x", mask=True), 1002),
            ("continuation-without-start", frame(0, b"x", mask=False), 1002),
            ("invalid-utf8", frame(TEXT, b"\xce\xba\xff", mask=False), 1007),
            ("invalid-utf8-fragmented",
             frame(TEXT, b"\xce", fin=False, mask=False) + frame(0, b"\xff", fin=False, mask=False), 1007),
            ("bad-close-code", frame(8, b"\x03\xed", mask=False), 1002),
        ],
    )
    def test_peer_breaks_protocol(self, run, codec, name, data, code):
        seen = {}

        async def handler(ws):
            await ws.send("before")
            ws.transport.write(data)  # bytes websockets would never send
            try:
                await ws.recv()
            except websockets.ConnectionClosed as exc:
                seen["rcvd"] = exc.rcvd.code if exc.rcvd else None

        async def main():
            async with websockets_server(handler) as uri:
                async with connect(uri, codec) as ws:
                    assert await ws.recv() == "before"
                    with pytest.raises(wsfast.ConnectionClosedError) as info:
                        await ws.recv()
                    assert info.value.code == code
                    assert ws.close_code == code
                await asyncio.sleep(0.05)
                assert seen.get("rcvd") == code, seen

        run(main())

    # websockets sends an iterable's items as frames, then an empty one with FIN
    @pytest.mark.parametrize("limit, fits, too_much", [
        ({"max_message_size": 1024}, b"y" * 1024, b"y" * 1025),
        ({"max_fragments": 8}, [b"y"] * 7, [b""] * 8),  # 8 frames, then 9
    ], ids=["max_message_size", "max_fragments"])
    def test_oversize(self, run, codec, limit, fits, too_much):
        """A message within connect()'s limit passes; past it the client fails
        the connection with 1009, which the server receives."""
        seen = {}

        async def handler(ws):
            await ws.send(fits)
            await ws.send(too_much)
            try:
                await ws.recv()
            except websockets.ConnectionClosed as exc:
                seen["rcvd"] = exc.rcvd.code if exc.rcvd else None

        async def main():
            async with websockets_server(handler) as uri:
                async with connect(uri, codec, **limit) as ws:
                    assert await ws.recv() == (fits if isinstance(fits, bytes) else b"".join(fits))
                    with pytest.raises(wsfast.ConnectionClosedError) as info:
                        await ws.recv()
                    assert info.value.code == 1009
                await asyncio.sleep(0.05)
                assert seen.get("rcvd") == 1009

        run(main())

    def test_abrupt_drop(self, run, codec):
        async def handler(ws):
            await ws.send("about to vanish")
            ws.transport.abort()

        async def main():
            async with websockets_server(handler) as uri:
                async with connect(uri, codec) as ws:
                    assert await ws.recv() == "about to vanish"
                    with pytest.raises(wsfast.ConnectionClosedError) as info:
                        await ws.recv()
                    assert info.value.code == 1006
                    assert ws.close_code == 1006

        run(main())

    def test_subprotocol(self, run, codec):
        async def main():
            async with websockets_server(ws_echo, subprotocols=["chat.v2"]) as uri:
                async with connect(uri, codec, subprotocols=["chat.v1", "chat.v2"]) as ws:
                    assert ws.subprotocol == "chat.v2"
                    await ws.send("negotiated")
                    assert await ws.recv() == "negotiated"

        run(main())

    def test_refused(self, run, codec):
        def process_request(connection, request):
            if request.path != "/ok":
                return connection.respond(HTTPStatus.UNAUTHORIZED, "no entry\n")
            return None

        async def main():
            async with websockets_server(ws_echo, process_request=process_request) as uri:
                with pytest.raises(wsfast.HandshakeError) as info:
                    await connect(uri + "/nope", codec)
                assert info.value.status == 401
                async with connect(uri + "/ok", codec) as ws:
                    await ws.send("welcome")
                    assert await ws.recv() == "welcome"

        run(main())
