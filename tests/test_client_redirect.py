"""The client's handshake extras against real servers on loopback: redirects
(wsfast.web's RedirectHandler and a raw asyncio server for every status),
basic auth from the URI, custom headers, Origin; and reconnecting
(``async for ws in wsfast.connect(...)``) across a server that stops and
restarts, 5xx answers (retried) and 4xx ones (raised).

Every test runs on stdlib asyncio and on uvloop (``run``).
"""

import asyncio
import base64
import contextlib
import json
import socket
import ssl
import time

import pytest

import wsfast
from wsfast.handshake import accept_key

pytestmark = pytest.mark.run_loop(timeout=15)


class Info(wsfast.WebSocketHandler):
    """Sends what the request carried, then echoes."""

    def open(self):
        h = self.request.headers
        self.write_message({"path": self.request.path, "auth": h.get("Authorization"),
                            "origin": h.get("Origin"), "x": h.get("X-Thing")})

    def on_message(self, message):
        self.write_message(message)


@contextlib.asynccontextmanager
async def serving(handlers, port=0, ssl=None):
    app = wsfast.Application(handlers)
    server = await app.listen(port, host="127.0.0.1", ssl=ssl)
    try:
        yield server.port
    finally:
        await app.stop(timeout=1)


@contextlib.asynccontextmanager
async def raw_server(answer):
    """A raw HTTP server: ``answer(n, head)`` returns the bytes to answer
    the n-th request (0-based) with; the connection stays open after a 101
    until the client closes it. ``requests`` lists the request heads."""
    requests = []

    async def handle(reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            requests.append(head)
            out = answer(len(requests) - 1, head)
            writer.write(out)
            if out.startswith(b"HTTP/1.1 101"):
                await reader.read()  # until the client goes
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], requests
    finally:
        server.close()


def status(code, *headers):
    lines = [f"HTTP/1.1 {code} X".encode(), b"Content-Length: 0", *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def switching(head):
    key = next(line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-key:"))
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n\r\n")


# -- redirects ---------------------------------------------------------------------------


def test_redirect_chain_through_wsfast_web(run):
    async def main():
        async with serving([(r"/ws", Info),
                            (r"/old", wsfast.RedirectHandler, {"url": "/mid", "permanent": True}),
                            (r"/mid", wsfast.RedirectHandler, {"url": "ws?x=1", "permanent": False})]) as port:
            async with wsfast.connect(f"ws://127.0.0.1:{port}/old") as ws:
                info = json.loads(await ws.recv())
                assert info["path"] == "/ws"
                await ws.send("hi")
                assert await ws.recv() == "hi"

    run(main())


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_every_redirect_status_to_another_server(run, code):
    async def main():
        async with serving([(r"/ws", Info)]) as port:
            target = f"http://127.0.0.1:{port}/ws".encode()  # http:// means ws://
            async with raw_server(lambda n, head: status(code, b"Location: " + target)) as (rport, reqs):
                async with wsfast.connect(f"ws://127.0.0.1:{rport}/start") as ws:
                    assert json.loads(await ws.recv())["path"] == "/ws"
                assert len(reqs) == 1

    run(main())


def test_redirect_loop_is_bounded(run):
    async def main():
        async with raw_server(lambda n, head: status(302, b"Location: /again")) as (port, reqs):
            with pytest.raises(wsfast.InvalidRedirect, match="too many redirects") as info:
                await wsfast.connect(f"ws://127.0.0.1:{port}/", max_redirects=3)
            assert info.value.status == 302
            assert len(reqs) == 4  # the first request and 3 redirects followed
            with pytest.raises(wsfast.HandshakeError) as info:  # not following: the 302 itself
                await wsfast.connect(f"ws://127.0.0.1:{port}/", max_redirects=0)
            assert info.value.status == 302 and "Location" in dict(info.value.headers)
            assert len(reqs) == 5

    run(main())


def test_redirect_without_location_or_to_another_scheme(run):
    async def main():
        async with raw_server(lambda n, head: status(301)) as (port, _):
            with pytest.raises(wsfast.InvalidRedirect, match="without a Location"):
                await wsfast.connect(f"ws://127.0.0.1:{port}/")
        async with raw_server(lambda n, head: status(301, b"Location: ftp://x/")) as (port, _):
            with pytest.raises(wsfast.InvalidRedirect, match="invalid redirect"):
                await wsfast.connect(f"ws://127.0.0.1:{port}/")
        # Any other 3xx is a refusal, not followed.
        async with raw_server(lambda n, head: status(300, b"Location: /x")) as (port, reqs):
            with pytest.raises(wsfast.HandshakeError) as info:
                await wsfast.connect(f"ws://127.0.0.1:{port}/")
            assert info.value.status == 300 and len(reqs) == 1

    run(main())


def test_redirect_ws_to_wss_followed_wss_to_ws_refused(run, tls_contexts):
    server_ctx, client_ctx = tls_contexts

    async def main():
        async with serving([(r"/ws", Info)], ssl=server_ctx) as tls_port:
            up = f"wss://127.0.0.1:{tls_port}/ws".encode()
            async with raw_server(lambda n, head: status(301, b"Location: " + up)) as (port, _):
                async with wsfast.connect(f"ws://127.0.0.1:{port}/", ssl=client_ctx) as ws:
                    assert json.loads(await ws.recv())["path"] == "/ws"
                    assert ws.protocol.transport.get_extra_info("sslcontext") is client_ctx
        async with serving([(r"/ws", Info)]) as plain_port:
            down = f"ws://127.0.0.1:{plain_port}/ws"
            async with serving([(r"/", wsfast.RedirectHandler, {"url": down})], ssl=server_ctx) as tls_port:
                with pytest.raises(wsfast.InvalidRedirect, match="wss:// to ws://"):
                    await wsfast.connect(f"wss://127.0.0.1:{tls_port}/", ssl=client_ctx)

    run(main())


# -- basic auth, headers, Origin ----------------------------------------------------------


def test_basic_auth_from_uri_headers_and_origin(run):
    async def main():
        async with serving([(r"/ws", Info)]) as port:
            origin = f"http://127.0.0.1:{port}"
            async with wsfast.connect(f"ws://us%40er:p%3Ass@127.0.0.1:{port}/ws", origin=origin,
                                      additional_headers={"X-Thing": "42"}) as ws:
                info = json.loads(await ws.recv())
            assert info["auth"] == "Basic " + base64.b64encode(b"us@er:p:ss").decode()
            assert info["origin"] == origin and info["x"] == "42"
            # An explicit Authorization header wins over the URI's.
            async with wsfast.connect(f"ws://u:p@127.0.0.1:{port}/ws",
                                      additional_headers=[("Authorization", "Bearer t")]) as ws:
                assert json.loads(await ws.recv())["auth"] == "Bearer t"

    run(main())


def test_credentials_follow_redirects_on_the_same_host_only(run):
    async def main():
        async with serving([(r"/ws", Info)]) as other:
            async with serving([(r"/ws", Info), (r"/here", wsfast.RedirectHandler, {"url": "/ws"}),
                                (r"/away", wsfast.RedirectHandler,
                                 {"url": f"ws://localhost:{other}/ws"})]) as port:
                async with wsfast.connect(f"ws://u:p@127.0.0.1:{port}/here") as ws:
                    assert json.loads(await ws.recv())["auth"] == "Basic dTpw"
                async with wsfast.connect(f"ws://u:p@127.0.0.1:{port}/away") as ws:
                    assert json.loads(await ws.recv())["auth"] is None

    run(main())


def test_the_server_sees_a_refused_basic_auth_as_401(run):
    class Guarded(Info):
        def prepare(self):
            if self.request.headers.get("Authorization") != "Basic " + base64.b64encode(b"a:b").decode():
                raise wsfast.HTTPError(401)

    async def main():
        async with serving([(r"/ws", Guarded)]) as port:
            with pytest.raises(wsfast.HandshakeError) as info:
                await wsfast.connect(f"ws://a:wrong@127.0.0.1:{port}/ws")
            assert info.value.status == 401
            async with wsfast.connect(f"ws://a:b@127.0.0.1:{port}/ws") as ws:
                assert json.loads(await ws.recv())["path"] == "/ws"

    run(main())


# -- reconnecting ------------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_reconnects_across_a_server_restart(run):
    async def main():
        port = free_port()
        uri = f"ws://127.0.0.1:{port}/ws"
        app = wsfast.Application([(r"/ws", Info)])
        await app.listen(port, host="127.0.0.1")
        seen = []
        restarted = None

        async def restart():
            await app.stop(timeout=1)  # the client sees the close, then refusals
            await asyncio.sleep(0.4)
            await app.listen(port, host="127.0.0.1")

        try:
            async for ws in wsfast.connect(uri, backoff_min=0.05, backoff_max=0.2):
                try:
                    seen.append(json.loads(await ws.recv())["path"])
                    if len(seen) == 2:
                        break
                    restarted = asyncio.ensure_future(restart())
                    await ws.recv()
                except wsfast.ConnectionClosed:
                    continue
            await restarted
            assert seen == ["/ws", "/ws"]
            await ws.close()
        finally:
            await app.stop(timeout=1)

    run(main())


def test_reconnect_retries_5xx_with_growing_backoff(run):
    times = []

    def answer(n, head):
        times.append(time.monotonic())
        return status(503) if n < 4 else switching(head)

    async def main():
        async with raw_server(answer) as (port, reqs):
            async for ws in wsfast.connect(f"ws://127.0.0.1:{port}/", backoff_min=0.05,
                                           backoff_factor=2, backoff_max=10):
                break
            await ws.close()
            assert len(reqs) == 5
            gaps = [b - a for a, b in zip(times, times[1:])]
            # Jittered to 50-100% of 0.05, 0.1, 0.2, 0.4 s.
            assert sum(gaps) >= 0.5 * (0.05 + 0.1 + 0.2 + 0.4)
            assert gaps[3] > gaps[0]

    run(main())


@pytest.mark.parametrize("code", [400, 403, 404])
def test_reconnect_stops_on_a_refusal(run, code):
    async def main():
        async with raw_server(lambda n, head: status(code)) as (port, reqs):
            with pytest.raises(wsfast.HandshakeError) as info:
                async for ws in wsfast.connect(f"ws://127.0.0.1:{port}/", backoff_min=0.01):
                    raise AssertionError("connected")
            assert info.value.status == code and len(reqs) == 1

    run(main())


def test_reconnect_stops_on_an_invalid_answer_and_retries_refused(run):
    async def main():
        bad = lambda n, head: b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
        async with raw_server(bad) as (port, reqs):
            with pytest.raises(wsfast.HandshakeError, match="Connection header"):
                async for ws in wsfast.connect(f"ws://127.0.0.1:{port}/", backoff_min=0.01):
                    pass
            assert len(reqs) == 1
        # Nothing listens: refused, retried (still trying when we give up).
        port = free_port()
        gen = wsfast.connect(f"ws://127.0.0.1:{port}/", backoff_min=0.01, backoff_max=0.02)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(gen.__aiter__().__anext__(), 0.5)
        assert wsfast.client.retryable(ConnectionRefusedError())
        assert not wsfast.client.retryable(ssl.SSLCertVerificationError())
        assert not wsfast.client.retryable(wsfast.ProtocolError(1002, "x"))
        assert wsfast.client.retryable(wsfast.HandshakeError(502, "bad gateway"))

    run(main())


def test_leaving_the_reconnect_loop_closes_its_connection(run):
    async def main():
        async with serving([(r"/ws", Info)]) as port:
            async for ws in wsfast.connect(f"ws://127.0.0.1:{port}/ws"):
                assert json.loads(await ws.recv())["path"] == "/ws"
                break
            for _ in range(100):
                if ws.closed:
                    break
                await asyncio.sleep(0.02)
            assert ws.closed and ws.close_code == 1000

    run(main())
