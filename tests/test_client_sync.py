"""wsfast.sync: the blocking client, against wsfast's server and websockets'
server, each on an event loop in a thread of this process (the client itself
has no event loop), on every codec.
"""

import asyncio
import base64
import json
import ssl
import threading
import time

import pytest
import websockets

import wsfast
import wsfast.sync



class LoopThread:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.cleanups = []

    def run(self, coro, timeout=10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self):
        async def shutdown():
            for cleanup in self.cleanups:
                await cleanup()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def loop_thread():
    lt = LoopThread()
    try:
        yield lt
    finally:
        lt.stop()


class Echo(wsfast.WebSocketHandler):
    def on_message(self, message):
        self.write_message(message)


class Countdown(wsfast.WebSocketHandler):
    def open(self):
        for i in range(3):
            self.write_message(f"msg {i}")
        self.close(1000, "done")

    def on_message(self, message):
        pass


class Info(wsfast.WebSocketHandler):
    def open(self):
        h = self.request.headers
        self.write_message({"auth": h.get("Authorization"), "origin": h.get("Origin"),
                            "x": h.get("X-Thing"), "path": self.request.path})

    def on_message(self, message):
        pass


def wsfast_server(lt, handlers, codec=None, ssl=None):
    app = wsfast.Application(handlers, codec=codec)

    async def listen():
        return await app.listen(0, host="127.0.0.1", ssl=ssl)

    server = lt.run(listen())
    lt.cleanups.append(lambda: app.stop(timeout=1))
    return f"127.0.0.1:{server.port}", app


def websockets_server(lt, handler):
    async def start():
        return await websockets.serve(handler, "127.0.0.1", 0, max_size=None)

    server = lt.run(start())

    async def close():
        server.close()
        await server.wait_closed()

    lt.cleanups.append(close)
    return f"127.0.0.1:{server.sockets[0].getsockname()[1]}", server


async def ws_echo(ws):
    async for message in ws:
        await ws.send(message)


def exchange(ws):
    ws.send("text")
    assert ws.recv() == "text"
    ws.send(b"\x00bin")
    assert ws.recv() == b"\x00bin"
    ws.send(bytearray(b"z" * 300000))
    assert ws.recv() == b"z" * 300000
    ws.send(["frag", "mented"])
    assert ws.recv() == "fragmented"
    ws.send(iter([b"a", b"b"]))
    assert ws.recv() == b"ab"
    ws.send({"k": 1})
    assert json.loads(ws.recv()) == {"k": 1}
    ws.send("é" * 10000)
    assert ws.recv() == "é" * 10000


@pytest.mark.parametrize("server", ["wsfast", "websockets"])
def test_echo(loop_thread, codec, server):
    if server == "wsfast":
        address, _ = wsfast_server(loop_thread, [(r"/ws", Echo)], codec=codec)
    else:
        address, _ = websockets_server(loop_thread, ws_echo)
    with wsfast.sync.connect(f"ws://{address}/ws", codec=codec) as ws:
        exchange(ws)
    assert ws.closed and ws.close_code == 1000
    with pytest.raises(wsfast.ConnectionClosedOK):
        ws.recv()
    with pytest.raises(wsfast.ConnectionClosedOK):
        ws.send("late")


def test_max_fragments(loop_thread, codec):
    """connect(max_fragments=N) as the async client's: N frames pass, N + 1
    fail the connection with 1009, which the server receives."""
    seen = []

    async def fragments(ws):
        await ws.send(["a"] * 3)  # 4 frames: the items, then an empty one with FIN
        await ws.send(["a"] * 4)  # 5 frames
        try:
            await ws.recv()
        except websockets.ConnectionClosed as exc:
            seen.append(exc.rcvd.code if exc.rcvd else None)

    address, _ = websockets_server(loop_thread, fragments)
    with wsfast.sync.connect(f"ws://{address}/ws", codec=codec, max_fragments=4) as ws:
        assert ws.recv() == "aaa"
        with pytest.raises(wsfast.ConnectionClosedError) as info:
            ws.recv()
        assert info.value.code == 1009
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == [1009]
    with pytest.raises(ValueError):
        wsfast.sync.connect(f"ws://{address}/ws", max_fragments=0)


def test_iteration_ends_on_normal_close(loop_thread, codec):
    address, _ = wsfast_server(loop_thread, [(r"/ws", Countdown)], codec=codec)
    with wsfast.sync.connect(f"ws://{address}/ws", codec=codec) as ws:
        assert list(ws) == ["msg 0", "msg 1", "msg 2"]
        assert (ws.close_code, ws.close_reason) == (1000, "done")


def test_abnormal_close_and_recv_timeout(loop_thread):
    async def dropper(ws):
        await ws.recv()
        await ws.send("bye")
        ws.transport.abort()  # TCP gone without a close frame

    address, _ = websockets_server(loop_thread, dropper)
    with wsfast.sync.connect(f"ws://{address}/ws") as ws:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.2)
        assert 0.15 < time.monotonic() - t0 < 2
        ws.send("x")  # still usable after a timeout
        assert ws.recv() == "bye"
        with pytest.raises(wsfast.ConnectionClosedError) as info:
            ws.recv()
        assert info.value.code == 1006


def test_pings_answered_while_receiving_and_threads(loop_thread):
    async def pinger(ws):
        latency = await asyncio.wait_for(await ws.ping(), 5)  # our recv() answers it
        await ws.send(f"pong in {latency >= 0}")
        async for message in ws:
            await ws.send(message)

    address, _ = websockets_server(loop_thread, pinger)
    with wsfast.sync.connect(f"ws://{address}/") as ws:
        assert ws.recv() == "pong in True"
        # One thread sends while this one receives.
        sender = threading.Thread(target=lambda: [ws.send(f"m{i}") for i in range(300)])
        sender.start()
        got = [ws.recv(timeout=10) for _ in range(300)]
        sender.join()
        assert got == [f"m{i}" for i in range(300)]


def test_close_is_bounded_when_the_server_does_not_answer(loop_thread):
    async def deaf(ws):
        await asyncio.sleep(1.5)  # does not read meanwhile: does not answer the close

    address, server = websockets_server(loop_thread, deaf)
    ws = wsfast.sync.connect(f"ws://{address}/", close_timeout=0.3)
    t0 = time.monotonic()
    ws.close()
    assert time.monotonic() - t0 < 2 and ws.closed


def test_handshake_refusal_redirect_auth_headers(loop_thread):
    class Guarded(Info):
        def prepare(self):
            if not self.request.headers.get("Authorization"):
                raise wsfast.HTTPError(403)

    address, _ = wsfast_server(loop_thread, [
        (r"/ws", Guarded), (r"/old", wsfast.RedirectHandler, {"url": "/ws"}),
        (r"/loop", wsfast.RedirectHandler, {"url": "/loop"})])
    with pytest.raises(wsfast.HandshakeError) as info:
        wsfast.sync.connect(f"ws://{address}/ws")
    assert info.value.status == 403
    with wsfast.sync.connect(f"ws://u%20x:p@{address}/old", origin=f"http://{address}",
                             additional_headers={"X-Thing": "1"}) as ws:
        got = json.loads(ws.recv())
    assert got == {"auth": "Basic " + base64.b64encode(b"u x:p").decode(),
                   "origin": f"http://{address}", "x": "1", "path": "/ws"}
    with pytest.raises(wsfast.InvalidRedirect, match="too many"):
        wsfast.sync.connect(f"ws://{address}/loop", max_redirects=2)


def test_wss(loop_thread, tls_contexts):
    server_ctx, client_ctx = tls_contexts
    address, _ = wsfast_server(loop_thread, [(r"/ws", Echo)], ssl=server_ctx)
    with wsfast.sync.connect(f"wss://{address}/ws", ssl=client_ctx) as ws:
        exchange(ws)
    with pytest.raises(OSError):  # ssl.SSLCertVerificationError: not our certificate
        wsfast.sync.connect(f"wss://{address}/ws")


def test_open_timeout():
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepts TCP, never answers the handshake
    try:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            wsfast.sync.connect(f"ws://127.0.0.1:{listener.getsockname()[1]}/", open_timeout=0.3)
        assert time.monotonic() - t0 < 2
    finally:
        listener.close()


# -- through real proxies (tinyproxy, Dante: the fixtures of test_client_proxy.py) ---------

from test_client_proxy import (  # noqa: E402,F401 (fixtures)
    SOCKS_PASSWORD_IN_URI,
    SOCKS_USER,
    http_proxies,
    https_proxies,
    socks_auth_proxy,
    socks_proxy,
)


def test_through_socks5_with_username_password(loop_thread, socks_auth_proxy, tls_contexts):
    server_ctx, client_ctx = tls_contexts
    good = f"socks5h://{SOCKS_USER}:{SOCKS_PASSWORD_IN_URI}@{socks_auth_proxy.uri}"
    tls_address, _ = wsfast_server(loop_thread, [(r"/ws", Echo)], ssl=server_ctx)
    tls_port = int(tls_address.rsplit(":", 1)[1])
    with wsfast.sync.connect(f"wss://localhost:{tls_port}/ws", proxy=good, ssl=client_ctx) as ws:
        exchange(ws)
    assert socks_auth_proxy.saw(tls_port, "localhost")
    with pytest.raises(wsfast.ProxyError, match="SOCKS.*authentication"):
        wsfast.sync.connect(f"wss://localhost:{tls_port}/ws", ssl=client_ctx,
                            proxy=good.replace(SOCKS_PASSWORD_IN_URI, "wrong"))


def test_through_an_https_proxy(loop_thread, https_proxies, http_proxies, tls_contexts, codec,
                                certificate, monkeypatch):
    """TLS to the proxy (HAProxy in front of tinyproxy), CONNECT over it;
    wss:// inside it (wsfast.proxy.TLSInTLS), with a thread sending while
    another receives."""
    proxy, strict = https_proxies
    server_ctx, client_ctx = tls_contexts
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy",
                 "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    address, _ = wsfast_server(loop_thread, [(r"/ws", Echo)], codec=codec)
    with wsfast.sync.connect(f"ws://{address}/ws", proxy=proxy.uri, proxy_ssl=client_ctx,
                             codec=codec) as ws:
        exchange(ws)
    assert proxy.saw(int(address.rsplit(":", 1)[1]))
    tls_address, _ = wsfast_server(loop_thread, [(r"/ws", Echo)], ssl=server_ctx, codec=codec)
    tls_port = int(tls_address.rsplit(":", 1)[1])
    with wsfast.sync.connect(f"wss://localhost:{tls_port}/ws", proxy=proxy.uri, proxy_ssl=client_ctx,
                             ssl=client_ctx, codec=codec) as ws:
        assert type(ws.socket) is wsfast.proxy.TLSInTLS
        assert ws.socket.getpeercert()["subject"] == ((("commonName", "localhost"),),)
        exchange(ws)
        got = []
        reader = threading.Thread(target=lambda: got.extend(ws.recv(timeout=10) for _ in range(200)))
        reader.start()
        for i in range(200):
            ws.send(b"%d" % i * 1000)
        reader.join(20)
        assert got == [b"%d" % i * 1000 for i in range(200)]
    assert proxy.saw(tls_port, "localhost")
    with pytest.raises(wsfast.ProxyError) as info:
        wsfast.sync.connect(f"wss://localhost:{tls_port}/ws", ssl=client_ctx, proxy_ssl=client_ctx,
                            proxy=proxy.uri.replace("s3cret", "wrong"))
    assert info.value.status in (401, 407)
    with pytest.raises(wsfast.ProxyError, match="HTTP 403"):
        wsfast.sync.connect(f"ws://{address}/ws", proxy=strict.uri, proxy_ssl=client_ctx)
    with pytest.raises(ssl.SSLCertVerificationError):  # the proxy's certificate is checked
        wsfast.sync.connect(f"ws://{address}/ws", proxy=proxy.uri)
    with pytest.raises(ValueError, match="https:// proxy"):
        wsfast.sync.connect(f"ws://{address}/ws", proxy=http_proxies[0].uri, proxy_ssl=client_ctx)
    # From the environment alone (certificates trusted through SSL_CERT_FILE).
    monkeypatch.setenv("SSL_CERT_FILE", certificate[0])
    monkeypatch.setenv("HTTPS_PROXY", proxy.uri)
    with wsfast.sync.connect(f"wss://localhost:{tls_port}/ws") as ws:
        exchange(ws)


def test_through_proxies(loop_thread, http_proxies, socks_proxy, tls_contexts, monkeypatch):
    proxy, strict = http_proxies
    server_ctx, client_ctx = tls_contexts
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy",
                 "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    address, _ = wsfast_server(loop_thread, [(r"/ws", Echo)])
    port = int(address.rsplit(":", 1)[1])
    with wsfast.sync.connect(f"ws://{address}/ws", proxy=proxy.uri) as ws:
        exchange(ws)
    assert proxy.saw(port)
    tls_address, _ = wsfast_server(loop_thread, [(r"/ws", Echo)], ssl=server_ctx)
    tls_port = int(tls_address.rsplit(":", 1)[1])
    for through in (proxy.uri, f"socks5h://{socks_proxy.uri}", f"socks4://{socks_proxy.uri}"):
        with wsfast.sync.connect(f"wss://localhost:{tls_port}/ws", proxy=through, ssl=client_ctx) as ws:
            exchange(ws)
    assert socks_proxy.saw(tls_port)
    with pytest.raises(wsfast.ProxyError) as info:
        wsfast.sync.connect(f"ws://{address}/ws", proxy=proxy.uri.replace("s3cret", "bad"))
    assert info.value.status in (401, 407)
    with pytest.raises(wsfast.ProxyError) as info:
        wsfast.sync.connect(f"ws://{address}/ws", proxy=strict.uri)
    assert info.value.status == 403
    with pytest.raises(wsfast.ProxyError, match="SOCKS"):
        wsfast.sync.connect("ws://127.0.0.1:9/", proxy=f"socks5://{socks_proxy.uri}")
    monkeypatch.setenv("HTTP_PROXY", proxy.uri)
    with wsfast.sync.connect(f"ws://{address}/ws") as ws:  # from the environment
        exchange(ws)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("HTTP_PROXY", strict.uri)  # would refuse: bypassed
    with wsfast.sync.connect(f"ws://{address}/ws") as ws:
        exchange(ws)
    monkeypatch.delenv("NO_PROXY")
    with wsfast.sync.connect(f"ws://{address}/ws", proxy=None) as ws:  # off
        exchange(ws)
