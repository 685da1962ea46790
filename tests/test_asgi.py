"""wsfast.asgi under a real uvicorn server (in the test's event loop, on
asyncio and uvloop, with both codecs), driven by real clients: FastAPI's and
Starlette's WebSocket API end to end, denial responses, uvicorn's settings,
keepalive, backpressure and ordering. uvicorn's own WebSocket tests run in
tests/test_uvicorn_suite.py; Chromium in tests/test_asgi_browser.py."""

import asyncio
import collections
import contextlib
import os
import subprocess
import sys
import time

import pytest
from interop_helpers import RawWebSocket, require_codec, run_in_loop

uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")
websockets = pytest.importorskip("websockets")

from fastapi import FastAPI, WebSocket, WebSocketDisconnect  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402
from starlette.routing import WebSocketRoute  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory  # noqa: E402

from wsfast.asgi import WSFastProtocol  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# run: conftest.py's asyncio/uvloop fixture
pytestmark = pytest.mark.run_loop(timeout=30)


@pytest.fixture(params=["cython", "python"])
def protocol_cls(request):
    codec = require_codec(request.param)
    return type(f"WSFast_{request.param}", (WSFastProtocol,), {"codec": codec, "__slots__": ()})


@contextlib.asynccontextmanager
async def serve(app, protocol_cls=WSFastProtocol, **settings):
    """uvicorn serving ``app`` on 127.0.0.1 (a free port) with ``protocol_cls``;
    yields (server, port)."""
    settings.setdefault("http", "httptools")
    config = uvicorn.Config(app, ws=protocol_cls, host="127.0.0.1", port=0, lifespan="off",
                            log_config=None, log_level="warning", **settings)
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        assert not task.done(), task.exception()
        assert time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield server, port
    finally:
        await server.shutdown()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# -- FastAPI and Starlette ----------------------------------------------------------


def _fastapi_app(done):
    app = FastAPI()

    @app.websocket("/api/{room}")
    async def api(websocket: WebSocket, room: str, q: str = ""):
        offered = websocket.scope["subprotocols"]
        await websocket.accept(subprotocol=offered[-1] if offered else None,
                               headers=[(b"x-room", room.encode())])
        await websocket.send_text(f"room={room} q={q} path={websocket.url.path}")
        text = await websocket.receive_text()
        await websocket.send_text(text.upper())
        data = await websocket.receive_bytes()
        await websocket.send_bytes(data[::-1])
        obj = await websocket.receive_json()
        await websocket.send_json({"got": obj})
        n = 0
        async for text in websocket.iter_text():
            if text == "bye":
                break
            n += 1
            await websocket.send_text(f"{n}:{text}")
        await websocket.close(code=4000, reason="done")
        done.set_result(n)

    @app.websocket("/disconnect")
    async def disconnect(websocket: WebSocket):
        await websocket.accept()
        try:
            while True:
                await websocket.send_text(await websocket.receive_text())
        except WebSocketDisconnect as exc:
            done.set_result((exc.code, exc.reason))

    return app


def test_fastapi_websocket_api(run, protocol_cls):
    async def main():
        done = asyncio.get_running_loop().create_future()
        async with serve(_fastapi_app(done), protocol_cls) as (_, port):
            url = f"ws://127.0.0.1:{port}/api/r%C3%A9d?q=1"
            async with connect(url, subprotocols=["a", "b"]) as ws:
                assert ws.subprotocol == "b"
                assert ws.response.headers["x-room"] == "réd".encode().decode("latin-1")
                assert await ws.recv() == "room=réd q=1 path=/api/réd"
                await ws.send("héllo")
                assert await ws.recv() == "HÉLLO"
                await ws.send(b"\x00\x01\x02")
                assert await ws.recv() == b"\x02\x01\x00"
                await ws.send('{"a": [1, 2]}')
                assert await ws.recv() == '{"got":{"a":[1,2]}}'
                for i in range(5):
                    await ws.send(f"m{i}")
                    assert await ws.recv() == f"{i + 1}:m{i}"
                await ws.send("bye")
                with pytest.raises(websockets.ConnectionClosedError):
                    await ws.recv()
            assert (ws.close_code, ws.close_reason) == (4000, "done")
            assert await asyncio.wait_for(done, 5) == 5

    run(main())


def test_fastapi_websocket_disconnect(run, protocol_cls):
    async def main():
        done = asyncio.get_running_loop().create_future()
        async with serve(_fastapi_app(done), protocol_cls) as (_, port):
            async with connect(f"ws://127.0.0.1:{port}/disconnect") as ws:
                await ws.send("x")
                assert await ws.recv() == "x"
                await ws.close(4001, "client leaves")
            assert await asyncio.wait_for(done, 5) == (4001, "client leaves")

    run(main())


def test_starlette_denial_response_and_endpoint(run):
    async def refuse(websocket):
        if websocket.query_params.get("token") != "secret":
            await websocket.send_denial_response(
                PlainTextResponse("no token", status_code=401, headers={"x-why": "token"})
            )
            return
        await websocket.accept()
        await websocket.send_text("welcome")
        await websocket.close()

    app = Starlette(routes=[WebSocketRoute("/ws", refuse)])

    async def main():
        async with serve(app) as (_, port):
            with pytest.raises(websockets.InvalidStatus) as info:
                async with connect(f"ws://127.0.0.1:{port}/ws"):
                    pass
            response = info.value.response
            assert response.status_code == 401
            assert response.body == b"no token"
            assert response.headers["x-why"] == "token"
            assert response.headers.get_all("server") == ["uvicorn"]
            async with connect(f"ws://127.0.0.1:{port}/ws?token=secret") as ws:
                assert await ws.recv() == "welcome"
                with pytest.raises(websockets.ConnectionClosedOK):
                    await ws.recv()
            assert ws.close_code == 1000

    run(main())


def test_denial_streamed_chunked(run):
    """Several body messages without a Content-Length go out chunked."""

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.http.response.start", "status": 503, "headers": []})
        for part in (b"try ", b"", b"again ", b"later"):
            await send({"type": "websocket.http.response.body", "body": part, "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b""})

    async def main():
        async with serve(app) as (_, port):
            with pytest.raises(websockets.InvalidStatus) as info:
                async with connect(f"ws://127.0.0.1:{port}/"):
                    pass
            assert info.value.response.status_code == 503
            assert info.value.response.body == b"try again later"

    run(main())


# -- uvicorn's settings ----------------------------------------------------------


async def _echo(scope, receive, send):
    assert scope["type"] == "websocket"
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            await send({"type": "websocket.send", "bytes": message.get("bytes"),
                        "text": message.get("text")})
        else:
            return


@pytest.mark.parametrize("sent, expected", [(10, None), (11, 1009)])
def test_max_size(run, protocol_cls, sent, expected):
    codes = []

    async def app(scope, receive, send):
        while True:
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
            elif message["type"] == "websocket.receive":
                await send({"type": "websocket.send", "bytes": message["bytes"]})
            else:
                codes.append(message["code"])
                return

    async def main():
        async with serve(app, protocol_cls, ws_max_size=10) as (_, port):
            async with connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:
                await ws.send(b"\x01" * sent)
                if expected is None:
                    assert await ws.recv() == b"\x01" * sent
                else:
                    with pytest.raises(websockets.ConnectionClosedError):
                        await ws.recv()
                    assert ws.close_code == expected
            for _ in range(100):
                if codes:
                    break
                await asyncio.sleep(0.01)
        assert codes == [expected or 1000]

    run(main())


@pytest.mark.parametrize("enabled", [True, False])
def test_per_message_deflate(run, protocol_cls, enabled):
    async def main():
        async with serve(_echo, protocol_cls, ws_per_message_deflate=enabled) as (server, port):
            factories = [ClientPerMessageDeflateFactory()]
            async with connect(f"ws://127.0.0.1:{port}/", extensions=factories) as ws:
                names = [ext.name for ext in ws.protocol.extensions]
                assert names == (["permessage-deflate"] if enabled else [])
                text = "compress me " * 10000
                await ws.send(text)
                assert await ws.recv() == text
                protocol = next(iter(server.server_state.connections))
                assert bool(protocol.connection.extensions) is enabled

    run(main())


def test_keepalive_ping_pong(run):
    """uvicorn's test_server_keepalive_ping_pong without its isinstance check:
    pings come every ws_ping_interval; answered, the connection stays."""

    async def main():
        async with serve(_echo, ws_ping_interval=0.05, ws_ping_timeout=0.2) as (server, port):
            ws = await RawWebSocket.connect(port)
            protocol = next(iter(server.server_state.connections))
            assert protocol.ping_timer is not None
            pings = 0
            deadline = time.monotonic() + 0.6
            while time.monotonic() < deadline:
                frame = await ws.read_frame(timeout=1)
                assert frame.op == 9, frame
                pings += 1
                await ws.send_frame(10, frame.payload)
            assert pings >= 5
            await ws.send_frame(1, b"still here")
            while (frame := await ws.read_frame(timeout=1)).op == 9:
                await ws.send_frame(10, frame.payload)
            assert (frame.op, frame.payload) == (1, b"still here")
            ws.writer.close()

    run(main())


@pytest.mark.parametrize("interval", [None, 0.0])
def test_keepalive_disabled(run, interval):
    async def main():
        async with serve(_echo, ws_ping_interval=interval) as (server, port):
            async with connect(f"ws://127.0.0.1:{port}/", ping_interval=None):
                protocol = next(iter(server.server_state.connections))
                assert protocol.ping_timer is None

    run(main())


def test_root_path_and_default_headers(run):
    seen = {}

    async def app(scope, receive, send):
        seen.update(path=scope["path"], raw_path=scope["raw_path"], root_path=scope["root_path"])
        await receive()
        await send({"type": "websocket.accept", "headers": [(b"x-extra", b"1")]})
        await receive()

    async def main():
        async with serve(app, root_path="/prefix", headers=[("x-served-by", "test")]) as (_, port):
            async with connect(f"ws://127.0.0.1:{port}/a%20b") as ws:
                headers = ws.response.headers
                assert headers.get_all("server") == ["uvicorn"]
                assert len(headers.get_all("date")) == 1
                assert headers["x-served-by"] == "test"
                assert headers["x-extra"] == "1"
        assert seen == {"path": "/prefix/a b", "raw_path": b"/prefix/a%20b", "root_path": "/prefix"}

    run(main())


def test_ws_max_queue_must_be_positive():
    config = uvicorn.Config(_echo, ws=WSFastProtocol, ws_max_queue=0, log_config=None)
    config.load()
    with pytest.raises(ValueError, match="ws_max_queue"):
        WSFastProtocol(config=config, server_state=uvicorn.server.ServerState(), app_state={})


# -- ordering, backpressure, the close behind messages -------------------------------


def test_pipelined_messages_in_order(run, protocol_cls):
    """A burst the application is slow to read: reading pauses while messages
    wait (bounded), and every one comes back, in order."""
    count = 3000

    async def slow_start(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await asyncio.sleep(0.1)  # let the burst pile up
        await _echo_rest(receive, send)

    async def main():
        async with serve(slow_start, protocol_cls) as (server, port):
            async with connect(f"ws://127.0.0.1:{port}/", max_queue=None) as ws:
                await asyncio.sleep(0.02)
                protocol = next(iter(server.server_state.connections))
                for i in range(count):
                    await ws.send(f"message {i}" if i % 2 else f"{i}".encode())
                for i in range(count):
                    assert await ws.recv() == (f"message {i}" if i % 2 else f"{i}".encode())
                assert not protocol.session._queue

    run(main())


async def _echo_rest(receive, send):
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        await send({"type": "websocket.send", "bytes": message.get("bytes"), "text": message.get("text")})


def test_close_behind_messages_waits_for_answers(run, protocol_cls):
    """Three messages and the close in one segment: the application answers
    all three before the close reply goes out, then sees the disconnect."""
    events = []

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await asyncio.sleep(0.1)
        while True:
            message = await receive()
            events.append(message)
            if message["type"] != "websocket.receive":
                return
            await asyncio.sleep(0.01)  # an answer that takes a moment
            await send({"type": "websocket.send", "text": message["text"].upper()})

    async def main():
        async with serve(app, protocol_cls) as (_, port):
            ws = await RawWebSocket.connect(port)
            await ws.send(ws.frame(1, b"a") + ws.frame(1, b"b") + ws.frame(1, b"c")
                          + ws.frame(8, b"\x03\xe8bye"))
            frames = [await ws.read_frame(timeout=3) for _ in range(4)]
            assert [(f.op, f.payload) for f in frames] == [
                (1, b"A"), (1, b"B"), (1, b"C"), (8, b"\x03\xe8")]
            ws.writer.close()
        assert events[-1] == {"type": "websocket.disconnect", "code": 1000, "reason": "bye"}

    run(main())


def test_send_waits_for_the_write_buffer(run):
    """A client that does not read: send() blocks once the transport buffer
    is above its high-water mark, so the server's memory stays bounded."""
    state = {"sent": 0}

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        chunk = b"x" * 65536
        with contextlib.suppress(OSError):
            while True:
                await send({"type": "websocket.send", "bytes": chunk})
                state["sent"] += 1

    async def main():
        async with serve(app) as (server, port):
            ws = await RawWebSocket.connect(port)
            await asyncio.sleep(0.3)
            protocol = next(iter(server.server_state.connections))
            first = state["sent"]
            await asyncio.sleep(0.2)
            assert state["sent"] == first  # blocked
            assert protocol.transport.get_write_buffer_size() < 4 * 2**20
            ws.writer.close()

    run(main())


# -- the example chat and the command line ---------------------------------------------


def test_example_chat(run, protocol_cls):
    from asgi_chat_app import app

    async def main():
        async with serve(app, protocol_cls) as (_, port):
            base = f"ws://127.0.0.1:{port}/ws/room1"
            async with connect(base + "?name=ann") as ann:
                assert await ann.recv() == "* ann joined"
                async with connect(base + "?name=bob") as bob:
                    assert await bob.recv() == "* bob joined"
                    assert await ann.recv() == "* bob joined"
                    await bob.send("hi ann")
                    assert await ann.recv() == "bob: hi ann"
                    assert await bob.recv() == "bob: hi ann"
                assert await ann.recv() == "* bob left"

    run(main())


def test_command_line():
    """``python -m wsfast asgi APP [uvicorn options]`` serves APP with wsfast's class."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsfast", "asgi", "asgi_chat_app:app", "--port", "0",
         "--log-level", "info"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        port = None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "Uvicorn running on" in line:
                port = int(line.rsplit(":", 1)[1].split()[0])
                break
        assert port, "".join(lines)

        async def main():
            async with connect(f"ws://127.0.0.1:{port}/ws/x?name=cli") as ws:
                assert await ws.recv() == "* cli joined"

        run_in_loop("asyncio", main(), timeout=10)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    out = proc.stdout.read()
    assert '"WebSocket /ws/x?name=cli" [accepted]' in "".join(lines) + out


def test_command_line_refuses_another_ws():
    proc = subprocess.run([sys.executable, "-m", "wsfast", "asgi", "x:app", "--ws", "wsproto"],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "--ws is wsfast's here" in proc.stderr


# -- TLS ------------------------------------------------------------------------------


def test_wss(run, protocol_cls, certificate):
    """Over TLS the adapter reads through uvicorn's SSL transport (a buffered
    protocol set on it after the handshake) and the scope says wss."""
    import ssl

    cert, key = certificate
    schemes = []

    async def app(scope, receive, send):
        schemes.append(scope["scheme"])
        await _echo(scope, receive, send)

    async def main():
        async with serve(app, protocol_cls, ssl_certfile=cert, ssl_keyfile=key) as (_, port):
            context = ssl.create_default_context(cafile=cert)
            async with connect(f"wss://127.0.0.1:{port}/", ssl=context) as ws:
                for message in ("small", b"\x00" * 200_000, "é" * 70_000):
                    await ws.send(message)
                    assert await ws.recv() == message
        assert schemes == ["wss"]

    run(main())


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
def test_reads_go_through_get_buffer(run, certificate, tls):
    """Once uvicorn has handed the connection over (one data_received with
    the request head), every read lands in the protocol's own buffer
    (get_buffer/buffer_updated) on both loops, over TCP and over TLS. asyncio
    reads so into any asyncio.BufferedProtocol; uvloop only into one that is
    not also an asyncio.Protocol, so WSFastProtocol is an asyncio.Protocol
    for type checkers only (wsfast/asgi.py)."""
    import ssl

    assert not issubclass(WSFastProtocol, asyncio.Protocol)
    calls = collections.Counter()

    class Counting(WSFastProtocol):
        def get_buffer(self, sizehint):
            calls["get_buffer"] += 1
            return super().get_buffer(sizehint)

        def buffer_updated(self, nbytes):
            calls["buffer_updated"] += 1
            super().buffer_updated(nbytes)

        def data_received(self, data):
            calls["data_received"] += 1
            super().data_received(data)

    cert, key = certificate
    settings = {"ssl_certfile": cert, "ssl_keyfile": key} if tls else {}

    async def main():
        async with serve(_echo, Counting, **settings) as (_, port):
            context = ssl.create_default_context(cafile=cert) if tls else None
            async with connect(f"{'wss' if tls else 'ws'}://127.0.0.1:{port}/", ssl=context,
                               compression=None) as ws:
                for i in range(20):  # one message a read: the next waits for the echo
                    await ws.send(f"m{i}")
                    assert await ws.recv() == f"m{i}"
                await ws.send(b"\x00" * 300_000)  # larger than a buffer: several reads
                assert await ws.recv() == b"\x00" * 300_000
        assert calls["data_received"] == 1, calls
        assert calls["buffer_updated"] >= 21 and calls["get_buffer"] >= calls["buffer_updated"], calls

    run(main())


def test_concurrent_receive_is_an_error(run):
    errors = []

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        first = asyncio.ensure_future(receive())
        await asyncio.sleep(0)
        try:
            await receive()
        except RuntimeError as exc:
            errors.append(str(exc))
        message = await first
        await send({"type": "websocket.send", "text": message["text"]})

    async def main():
        async with serve(app) as (_, port):
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                await ws.send("one")
                assert await ws.recv() == "one"
        assert errors == ["receive() called while another receive() of this connection waits"]

    run(main())


def test_ws_max_queue_bounds_what_waits(run):
    """An application that took a message and is busy: once ws_max_queue
    messages wait, reading pauses (the rest stays in the kernel); every
    message still arrives, in order, when it receives again."""
    seen = {}

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        first = await receive()
        await asyncio.sleep(0.4)  # busy: 19 more messages come meanwhile, one per read
        protocol = next(iter(seen["server"].server_state.connections))
        seen["queued"] = len(protocol.session._queue)
        seen["paused"] = protocol._read_paused
        texts = [first["text"]]
        while len(texts) < 20:
            texts.append((await receive())["text"])
        await send({"type": "websocket.send", "text": ",".join(texts)})

    async def main():
        async with serve(app, ws_max_queue=4) as (server, port):
            seen["server"] = server
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                for i in range(20):
                    await ws.send(str(i))
                    await asyncio.sleep(0.01)
                assert await ws.recv() == ",".join(str(i) for i in range(20))
        assert seen["paused"] is True
        assert 4 <= seen["queued"] <= 6, seen

    run(main())


class _CountingTransport:
    """The real transport, counting the writes the protocol hands it."""

    def __init__(self, transport):
        self._t = transport
        self.writes = 0

    def __getattr__(self, name):
        return getattr(self._t, name)

    def write(self, data):
        self.writes += 1
        self._t.write(data)

    def writelines(self, parts):
        self.writes += 1
        self._t.writelines(parts)


def test_one_reply_is_written_at_once_a_burst_corked(run, protocol_cls):
    """The answer to a message the application waited for goes to the
    transport inside send() (no callback at the end of the loop turn: that
    would cost another loop iteration per message); further sends before the
    next receive() are corked into one write at the end of the turn, and a
    burst the application follows with a sleep still goes out, in order."""
    seen = {}

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            count = int(message["text"])
            transport = seen["protocol"].transport
            before = transport.writes
            for i in range(count):
                await send({"type": "websocket.send", "text": f"{count}.{i}"})
            seen.setdefault("writes", []).append(
                (count, transport.writes - before, seen["protocol"]._batch is None))
            if count == 3:
                await asyncio.sleep(0.05)  # the corked two go out meanwhile

    async def main():
        async with serve(app, protocol_cls) as (server, port):
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                await asyncio.sleep(0.05)
                protocol = seen["protocol"] = next(iter(server.server_state.connections))
                protocol.transport = _CountingTransport(protocol.transport)
                for count in (1, 1, 3, 1):
                    await ws.send(str(count))
                    for i in range(count):
                        assert await ws.recv() == f"{count}.{i}"
        # one write each inside send() for the single answers; the burst:
        # its first at once, the other two in one write after the turn
        assert seen["writes"] == [(1, 1, True), (1, 1, True), (3, 1, False), (1, 1, True)]
        assert protocol.transport.writes == 6  # and the close reply

    run(main())


def test_message_after_a_cancelled_receive(run):
    """A receive() cancelled (a timeout) leaves its waiter behind, cancelled:
    a message that comes before the next receive() is queued for it, not lost."""
    seen = []

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(receive(), 0.05)
            seen.append("received too early")
        await send({"type": "websocket.send", "text": "ready"})
        await asyncio.sleep(0.3)  # "one" arrives meanwhile, with no receive() waiting
        protocol = next(iter(seen[0].server_state.connections))
        seen.append(len(protocol.session._queue))
        message = await receive()
        await send({"type": "websocket.send", "text": message["text"]})
        message = await receive()  # and the next one, handed to a waiting receive() as usual
        await send({"type": "websocket.send", "text": message["text"]})

    async def main():
        async with serve(app) as (server, port):
            seen.append(server)
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                assert await ws.recv() == "ready"
                await ws.send("one")
                assert await ws.recv() == "one"
                await ws.send("two")
                assert await ws.recv() == "two"
        assert seen[1:] == [1]

    run(main())
