"""wsfast.tornado beyond Tornado's own suite (tests/test_tornado_suite.py):
TLS through Tornado's SSLIOStream, large messages through the socket taken
from Tornado, frames that came with the handshake, both codecs, asyncio and
uvloop, and the ``@authenticated get()`` guard."""

import asyncio
import socket
import ssl

import pytest

pytest.importorskip("tornado")

import tornado.httpclient  # noqa: E402
import tornado.httpserver  # noqa: E402
import tornado.web  # noqa: E402

import wsfast.tornado as wt  # noqa: E402
from interop_helpers import cancelled_first_step  # noqa: E402
from wsfast import codec as wsfast_codec  # noqa: E402

pytestmark = pytest.mark.run_loop(timeout=20, set_event_loop=True)


class Echo(wt.WebSocketHandler):
    def open(self):
        self.application.settings["opened"].append(self)

    def on_message(self, message):
        self.write_message(message, binary=isinstance(message, bytes))

    def on_close(self):
        self.application.settings["closed"].append((self.close_code, self.close_reason))


def make_app(codec, **settings):
    return tornado.web.Application(
        [(r"/echo", Echo)], wsfast_codec=codec, opened=[], closed=[], **settings
    )


async def serve(app, ssl_options=None):
    server = tornado.httpserver.HTTPServer(app, ssl_options=ssl_options)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    server.add_sockets([sock])
    return server, sock.getsockname()[1]


async def echo_round_trips(ws):
    # Small, medium, 1 MiB (read straight into the frame: the window path),
    # text and binary, then many pipelined: all back, in order.
    for message in ["hello", "é" * 3000, b"\x00\xff" * 40000, b"x" * 2**20, "y" * 2**20]:
        ws.write_message(message, binary=isinstance(message, bytes))
        assert await ws.read_message() == message
    for i in range(300):
        ws.write_message(f"m{i}")
    for i in range(300):
        assert await ws.read_message() == f"m{i}"


def test_plain_tcp_echo_and_close(run, impl):
    async def main():
        app = make_app(impl)
        server, port = await serve(app)
        try:
            ws = await wt.websocket_connect(f"ws://127.0.0.1:{port}/echo")
            handler = app.settings["opened"][0]
            # Served by wsfast's protocol on an asyncio transport, not Tornado's stream.
            assert isinstance(handler.ws_connection, wt.WebSocketProtocol)
            assert handler.ws_connection.connection.codec is wsfast_codec.get_codec(impl)
            protocol = handler.ws_connection
            await echo_round_trips(ws)
            assert not protocol.is_closing()
            ws.close(4000, "bye")
            for _ in range(100):
                if app.settings["closed"]:
                    break
                await asyncio.sleep(0.02)
            assert app.settings["closed"] == [(4000, "bye")]
            assert protocol.is_closing() and handler.ws_connection is None
            assert await ws.read_message() is None
            with pytest.raises(wt.WebSocketClosedError):
                ws.write_message("late")
        finally:
            server.stop()

    run(main())


@pytest.fixture(scope="module")
def tls(certificate):
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(*certificate)
    return server_ctx, certificate[0]


def test_tls_echo_and_server_close(run, impl, tls):
    server_ctx, cafile = tls

    class Closer(Echo):
        def on_message(self, message):
            if message == "close me":
                self.close(4001, "as asked")
            else:
                super().on_message(message)

    async def main():
        app = tornado.web.Application(
            [(r"/echo", Closer)], wsfast_codec=impl, opened=[], closed=[]
        )
        server, port = await serve(app, ssl_options=server_ctx)
        try:
            request = tornado.httpclient.HTTPRequest(
                f"wss://127.0.0.1:{port}/echo", ca_certs=cafile
            )
            ws = await wt.websocket_connect(request)
            await echo_round_trips(ws)
            ws.write_message("close me")
            assert await ws.read_message() is None
            assert (ws.close_code, ws.close_reason) == (4001, "as asked")
            for _ in range(100):
                if app.settings["closed"]:
                    break
                await asyncio.sleep(0.02)
            # The client echoes the code only (as Tornado's does).
            assert app.settings["closed"] == [(4001, None)]
        finally:
            server.stop()

    run(main())


def test_frames_sent_with_the_handshake_come_first(run, impl):
    # The client sends its first frames in the same write as the request:
    # Tornado reads them with the request, wsfast must get them first.
    class Collect(wt.WebSocketHandler):
        def open(self):
            self.got = []

        def on_message(self, message):
            self.got.append(message)
            if message == b"last":
                self.write_message(repr(self.got))

    async def main():
        app = tornado.web.Application([(r"/", Collect)], wsfast_codec=impl)
        server, port = await serve(app)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            frames = b"".join(
                b"\x82" + bytes([0x80 | len(p)]) + b"\0\0\0\0" + p
                for p in [b"one", b"two", b"three", b"last"]
            )
            writer.write(
                b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==\r\n\r\n" + frames
            )
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101")
            first = await reader.readexactly(2)
            payload = await reader.readexactly(first[1] & 0x7F)
            assert payload == b"[b'one', b'two', b'three', b'last']"
            writer.close()
        finally:
            server.stop()

    run(main())


def test_authenticated_get_guards_the_upgrade(run):
    class Login(tornado.web.RequestHandler):
        def get(self):
            self.set_signed_cookie("user", "ada")
            self.write("ok")

    class Private(wt.WebSocketHandler):
        def get_current_user(self):
            return self.get_signed_cookie("user")

        @tornado.web.authenticated
        async def get(self, *args, **kwargs):
            await super().get(*args, **kwargs)

        def open(self):
            self.write_message("hello " + self.current_user.decode())

    async def main():
        app = tornado.web.Application(
            [(r"/login", Login), (r"/ws", Private)],
            cookie_secret="s3cret", login_url="/login",
        )
        server, port = await serve(app)
        try:
            with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
                await wt.websocket_connect(f"ws://127.0.0.1:{port}/ws")
            assert refused.value.code == 302  # to the login page, before any upgrade
            client = tornado.httpclient.AsyncHTTPClient()
            response = await client.fetch(f"http://127.0.0.1:{port}/login")
            cookie = response.headers["Set-Cookie"].split(";")[0]
            ws = await wt.websocket_connect(tornado.httpclient.HTTPRequest(
                f"ws://127.0.0.1:{port}/ws", headers={"Cookie": cookie}))
            assert await ws.read_message() == "hello ada"
            ws.close()
        finally:
            server.stop()

    run(main())


def test_client_callback_style_and_json(run):
    class Talk(wt.WebSocketHandler):
        def open(self):
            self.write_message({"hello": "</script>"})  # dict -> JSON, Tornado's escaping
            self.write_message(b"as text")  # bytes without binary=True: a text frame, as Tornado
            self.write_message(b"\xff\x00", binary=True)
            self.close(1000, "done")

    async def main():
        app = tornado.web.Application([(r"/", Talk)])
        server, port = await serve(app)
        try:
            got = []
            finished = asyncio.get_running_loop().create_future()

            def on_message(message):
                got.append(message)
                if message is None:
                    finished.set_result(None)

            ws = await wt.websocket_connect(f"ws://127.0.0.1:{port}/", on_message_callback=on_message)
            await finished
            assert got == ['{"hello": "<\\/script>"}', "as text", b"\xff\x00", None]
            assert (ws.close_code, ws.close_reason) == (1000, "done")
        finally:
            server.stop()

    run(main())


def test_wss_without_verification(run, tls):
    server_ctx, _ = tls

    async def main():
        app = make_app(None)
        server, port = await serve(app, ssl_options=server_ctx)
        try:
            ws = await wt.websocket_connect(tornado.httpclient.HTTPRequest(
                f"wss://127.0.0.1:{port}/echo", validate_cert=False))
            ws.write_message("over TLS")
            assert await ws.read_message() == "over TLS"
            with pytest.raises(ssl.SSLError):  # and verification is on by default
                await wt.websocket_connect(f"wss://127.0.0.1:{port}/echo")
            ws.close()
        finally:
            server.stop()

    run(main())


def test_import_wsfast_tornado_as_tornado(run):
    # Code written against the package (``tornado.websocket.WebSocketHandler``,
    # ``tornado.web``, ``tornado.escape``, as Tornado's chat demo) switches by
    # its import line alone.
    import wsfast.tornado as tornado_

    assert tornado_.websocket.WebSocketHandler is wt.WebSocketHandler
    assert tornado_.websocket.websocket_connect is wt.websocket_connect
    assert tornado_.web is tornado.web and tornado_.escape is tornado.escape
    assert tornado_.version == tornado.version
    with pytest.raises(AttributeError):
        tornado_.no_such_module

    class Shout(tornado_.websocket.WebSocketHandler):
        def on_message(self, message):
            self.write_message(tornado_.escape.json_encode({"upper": message.upper()}))

    async def main():
        server, port = await serve(tornado_.web.Application([(r"/", Shout)]))
        try:
            ws = await tornado_.websocket.websocket_connect(f"ws://127.0.0.1:{port}/")
            ws.write_message("hi")
            assert tornado_.escape.json_decode(await ws.read_message()) == {"upper": "HI"}
            ws.close()
        finally:
            server.stop()

    run(main())


def test_client_reads_waiting_together_get_messages_in_call_order(run):
    class Three(wt.WebSocketHandler):
        def on_message(self, message):
            for i in range(3):
                self.write_message(f"{message}{i}")

    async def main():
        server, port = await serve(tornado.web.Application([(r"/", Three)]))
        try:
            ws = await wt.websocket_connect(f"ws://127.0.0.1:{port}/")
            reads = [ws.read_message() for _ in range(4)]
            ws.write_message("m")
            assert await asyncio.gather(*reads[:3]) == ["m0", "m1", "m2"]
            ws.close()
            assert await reads[3] is None
        finally:
            server.stop()

    run(main())


def test_server_closes_when_pongs_stop(run, caplog):
    # websocket_ping_interval / websocket_ping_timeout as in Tornado: a peer
    # that never answers pings is closed with 1000 "ping timed out"; a
    # timeout longer than the interval is capped at it (warned once).
    class Quiet(wt.WebSocketHandler):
        def on_message(self, message):
            pass

    async def main():
        app = tornado.web.Application(
            [(r"/", Quiet)], websocket_ping_interval=0.1, websocket_ping_timeout=5
        )
        server, port = await serve(app)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==\r\n\r\n"
            )
            await reader.readuntil(b"\r\n\r\n")
            started = asyncio.get_running_loop().time()
            opcodes = []
            while True:
                head = await reader.readexactly(2)
                payload = await reader.readexactly(head[1] & 0x7F)
                opcodes.append(head[0] & 0x0F)
                if head[0] & 0x0F == 8:
                    break
            elapsed = asyncio.get_running_loop().time() - started
            assert opcodes == [9, 8]  # one ping, no pong from us, then the close
            assert payload[:2] == (1000).to_bytes(2, "big") and payload[2:] == b"ping timed out"
            assert 0.15 <= elapsed < 2  # the timeout was capped at the interval (0.1 s)
            writer.close()
        finally:
            server.stop()

    wt._warned.clear()
    run(main())
    assert [r for r in caplog.records if "cannot be longer" in r.getMessage()]


def test_client_write_after_the_connection_dropped(run):
    class Drop(wt.WebSocketHandler):
        def on_message(self, message):
            self.ws_connection.abort()  # TCP gone, no close frame

    async def main():
        server, port = await serve(tornado.web.Application([(r"/", Drop)]))
        try:
            ws = await wt.websocket_connect(f"ws://127.0.0.1:{port}/")
            ws.write_message("drop me")
            assert await ws.read_message() is None
            assert ws.close_code is None  # no close frame came
            with pytest.raises(wt.WebSocketClosedError):
                ws.write_message("late")
            with pytest.raises(wt.WebSocketClosedError):
                ws.ping(b"late")
        finally:
            server.stop()

    run(main())


def test_handshake_timeout_is_tornados_timeout_error(run):
    # A server that takes the TCP connection and never answers: Tornado's
    # websocket_connect raises its HTTPTimeoutError (an HTTPClientError, 599).
    import tornado.simple_httpclient

    async def main():
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        try:
            port = silent.getsockname()[1]
            with pytest.raises(tornado.simple_httpclient.HTTPTimeoutError) as caught:
                await wt.websocket_connect(f"ws://127.0.0.1:{port}/", connect_timeout=0.2)
            assert caught.value.code == 599
        finally:
            silent.close()

    run(main())


def test_wsfast_broadcast_reaches_tornado_handlers(run, impl):
    # wsfast.broadcast (one encoded frame for every connection) takes
    # wsfast.tornado handlers as it takes wsfast.web ones.
    import wsfast

    class Room(wt.WebSocketHandler):
        members = []

        def open(self):
            Room.members.append(self)

        def on_message(self, message):
            result = wsfast.broadcast(Room.members, {"said": message})
            self.write_message(f"sent to {result.sent}")

    async def main():
        Room.members.clear()
        server, port = await serve(tornado.web.Application([(r"/", Room)], wsfast_codec=impl))
        try:
            clients = [await wt.websocket_connect(f"ws://127.0.0.1:{port}/") for _ in range(3)]
            while len(Room.members) < 3:
                await asyncio.sleep(0.01)
            clients[0].write_message("hi")
            for ws in clients:
                assert await ws.read_message() == '{"said": "hi"}'
            assert await clients[0].read_message() == "sent to 3"
            for ws in clients:
                ws.close()
        finally:
            server.stop()

    run(main())


@pytest.mark.parametrize("secure", [False, True])
def test_peer_gone_mid_frame_closes_the_handler(run, tls, secure):
    # TCP dropped in the middle of a frame: on_close runs, with no close code.
    server_ctx, cafile = tls

    async def main():
        app = make_app(None)
        server, port = await serve(app, ssl_options=server_ctx if secure else None)
        try:
            context = ssl.create_default_context(cafile=cafile) if secure else None
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=context, server_hostname="localhost" if secure else None)
            writer.write(
                b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==\r\n\r\n"
            )
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"\x82\xfe\x10\x00\0\0\0\0" + b"x" * 1000)  # 4096-byte frame, 1000 sent
            await writer.drain()
            writer.transport.abort()
            for _ in range(200):
                if app.settings["closed"]:
                    break
                await asyncio.sleep(0.02)
            assert app.settings["closed"] == [(None, None)]
            assert app.settings["opened"][0].ws_connection is None
        finally:
            server.stop()

    run(main())


def test_no_keepalive_unless_asked(run):
    # Tornado's defaults: neither side pings unless websocket_ping_interval /
    # ping_interval says so (wsfast's own server and client ping every 20 s).
    class Plain(wt.WebSocketHandler):
        opened = []

        def open(self):
            Plain.opened.append(self)

        def on_message(self, message):
            self.write_message(message)

    async def main():
        server, port = await serve(tornado.web.Application([(r"/", Plain)]))
        try:
            ws = await wt.websocket_connect(f"ws://127.0.0.1:{port}/")
            ws.write_message("x")
            assert await ws.read_message() == "x"
            assert ws.protocol._wsfast.options.ping_interval is None
            assert ws.protocol._ping_handle is None
            server_side = Plain.opened[0].ws_connection
            assert server_side.options.ping_interval is None
            assert server_side._ping_timer is None
            ws.close()
        finally:
            server.stop()

    run(main())


def test_tls_flow_control(run, tls):
    # Over TLS (the SSLIOStream adapter) an awaited write_message waits while
    # the client does not read: what the server holds stays bounded, and every
    # message arrives, in order.
    server_ctx, cafile = tls
    chunk = 64 * 1024
    count = 160  # 10 MiB

    class Flood(wt.WebSocketHandler):
        peak = [0]

        async def open(self):
            transport = self.ws_connection.transport
            for i in range(count):
                await self.write_message(bytes([i % 251]) * chunk, binary=True)
                Flood.peak[0] = max(Flood.peak[0], transport.get_write_buffer_size())

        def on_message(self, message):
            pass

    async def main():
        server, port = await serve(tornado.web.Application([(r"/", Flood)]),
                                   ssl_options=server_ctx)
        try:
            ws = await wt.websocket_connect(tornado.httpclient.HTTPRequest(
                f"wss://127.0.0.1:{port}/", ca_certs=cafile))
            await asyncio.sleep(0.5)  # not reading: the server must wait
            assert Flood.peak[0] <= 2 * 2**20
            for i in range(count):
                assert await ws.read_message() == bytes([i % 251]) * chunk
            ws.close()
        finally:
            server.stop()

    run(main())


def test_error_in_on_close_is_logged_like_tornado(run, caplog):
    class Bad(wt.WebSocketHandler):
        def on_message(self, message):
            self.close()

        def on_close(self):
            raise ValueError("boom in on_close")

    async def main():
        server, port = await serve(tornado.web.Application([(r"/", Bad)]))
        try:
            ws = await wt.websocket_connect(f"ws://127.0.0.1:{port}/")
            ws.write_message("x")
            assert await ws.read_message() is None
            for _ in range(100):
                if any("boom" in str(r.exc_info) for r in caplog.records):
                    break
                await asyncio.sleep(0.02)
        finally:
            server.stop()

    run(main())
    (record,) = [r for r in caplog.records if "boom" in str(r.exc_info)]
    assert record.name == "tornado.application"
    assert record.getMessage().startswith("Uncaught exception")


class CancelledFirstStep(wt.WebSocketHandler):
    """Its first coroutine runs its first step as the connection's consumer
    task, just created and not yet run; a cancellation of that task lands
    before the task's first step (interop_helpers.cancelled_first_step)."""

    async def on_message(self, message):
        await self.write_message(await cancelled_first_step(message))


def test_cancellation_before_the_consumer_task_started_goes_to_on_message(run, impl):
    """The cancellation is thrown into on_message, where it was suspended
    (it killed the consumer task before its first step: the connection
    went deaf)."""
    if not hasattr(asyncio, "timeout"):
        pytest.skip("asyncio.timeout is Python 3.11+")

    async def main():
        app = tornado.web.Application([(r"/", CancelledFirstStep)], wsfast_codec=impl)
        server, port = await serve(app)
        try:
            for first in ("timeout", "cancel"):  # each on a new connection
                ws = await wt.websocket_connect(f"ws://127.0.0.1:{port}/")
                answers = {"timeout": "timeout timed out", "cancel": "cancel cancelled"}
                for message in (first, "a", "timeout", "b"):
                    ws.write_message(message)
                    answer = await asyncio.wait_for(ws.read_message(), 2)
                    assert answer == answers.get(message, message)
                ws.close()
        finally:
            server.stop()

    run(main())
