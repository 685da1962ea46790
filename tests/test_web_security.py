"""Hardening of wsfast.web against hostile or careless clients (issue 11):
malformed Origin, credentials in logs, TLS handshake timeout, connection
limits, Host/Origin checks against DNS rebinding.

Every test runs on stdlib asyncio and on uvloop (``run`` fixture).
"""

import asyncio
import logging
import os
import signal
import ssl
import subprocess
import sys

import pytest
from test_server import Echo, handshake_bytes, raw_exchange, serving, status_of

import wsfast
from wsfast.http import redact_uri

pytestmark = pytest.mark.run_loop(set_event_loop=True)  # as in test_server.py

SECRET = "s3cr3t-VALUE-42"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(wsfast.__file__)))


def _records_above_debug(caplog):
    return [r for r in caplog.records if r.name.startswith("wsfast") and r.levelno > logging.DEBUG]


# -- a malformed Origin ---------------------------------------------------------------


@pytest.mark.parametrize("origin", ["http://[", "http://[::1", "http://[zz]:80", "http://a]b"])
def test_malformed_origin_is_403_and_logged_at_debug_only(run, caplog, origin):
    caplog.set_level(logging.DEBUG, logger="wsfast")

    async def main():
        async with serving([(r"/ws", Echo)]) as server:
            for _ in range(3):
                answer = await raw_exchange(server.port, handshake_bytes(Origin=origin))
                assert status_of(answer) == 403, answer
            # still serving
            async with wsfast.connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
                await ws.send("ok")
                assert await ws.recv() == "ok"

    run(main())
    loud = [r for r in caplog.records if r.name.startswith("wsfast")
            and (r.levelno >= logging.WARNING or r.exc_info)]
    assert loud == [], [r.getMessage() for r in loud]


def test_cross_origin_refusal_is_not_a_warning(run, caplog):
    caplog.set_level(logging.DEBUG, logger="wsfast")

    async def main():
        async with serving([(r"/ws", Echo)]) as server:
            answer = await raw_exchange(server.port, handshake_bytes(Origin="http://evil.example"))
            assert status_of(answer) == 403

    run(main())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- credentials never reach a log line ---------------------------------------------------


@pytest.mark.parametrize("uri, expected", [
    ("/ws", "/ws"),
    ("/ws?room=a&nick=b", "/ws?room=a&nick=b"),
    ("/ws?access_token=abc&room=x", "/ws?access_token=***&room=x"),
    ("/ws?x=1&API_KEY=zz&password=p&sig=a%20b", "/ws?x=1&API_KEY=***&password=***&sig=***"),
    ("/?Access%5FToken=q&client_secret=w&auth=e", "/?Access%5FToken=***&client_secret=***&auth=***"),
    ("/?token=1&token=2&sessionid=3", "/?token=***&token=***&sessionid=***"),
    ("/?empty_token=", "/?empty_token="),
    ("/a?b=1#access_token=zz", "/a?b=1#***"),
])
def test_redact_uri(uri, expected):
    assert redact_uri(uri) == expected


class Failing(wsfast.RequestHandler):
    def get(self):
        raise RuntimeError("boom")


class Refusing(wsfast.WebSocketHandler):
    def prepare(self):
        raise wsfast.HTTPError(401, "no entry")


def test_no_log_line_shows_a_token(run, caplog):
    caplog.set_level(logging.DEBUG)

    async def main():
        async with serving([(r"/ws", Echo), (r"/fail", Failing), (r"/refuse", Refusing)]) as server:
            url = f"ws://127.0.0.1:{server.port}/ws?access_token={SECRET}&room=1"
            async with wsfast.connect(url) as ws:
                await ws.send("x")
                assert await ws.recv() == "x"
            for path in (f"/fail?password={SECRET}", f"/refuse?api_key={SECRET}",
                         f"/missing?token={SECRET}"):
                answer = await raw_exchange(
                    server.port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                assert status_of(answer) in (401, 404, 500)

    run(main())
    lines = [r.getMessage() for r in caplog.records]
    lines += [logging.Formatter().formatException(r.exc_info) for r in caplog.records if r.exc_info]
    assert any("access_token=***" in line for line in lines), lines  # the access log ran
    assert any("boom" in line for line in lines)                      # so did the error log
    assert not [line for line in lines if SECRET in line]


# -- TLS ---------------------------------------------------------------------------------


def _contexts(certificate):
    cert, key = certificate
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    return server_ctx, ssl.create_default_context(cafile=cert)


def test_silent_tcp_connection_to_a_tls_port_is_cut_at_the_handshake_timeout(run, certificate):
    server_ctx, client_ctx = _contexts(certificate)

    async def main_tls():
        app = wsfast.Application([(r"/ws", Echo)], handshake_timeout=0.5)
        server = await app.listen(0, host="127.0.0.1", ssl=server_ctx)
        try:
            loop = asyncio.get_running_loop()
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            started = loop.time()
            assert await asyncio.wait_for(reader.read(), 5) == b""  # asyncio's default: 60 s
            assert loop.time() - started < 3
            writer.close()
            async with wsfast.connect(f"wss://127.0.0.1:{server.port}/ws", ssl=client_ctx) as ws:
                await ws.send("over tls")
                assert await ws.recv() == "over tls"
        finally:
            await app.stop(timeout=1)

    run(main_tls())


def _start_cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsfast", *args, "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )
    line = proc.stdout.readline()
    if "127.0.0.1:" not in line:
        proc.kill()
        raise AssertionError((line, proc.communicate()[1]))
    port = int(line.split("127.0.0.1:")[1].split("/")[0])
    return proc, port, line


def _stop_cli(proc):
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


@pytest.mark.parametrize("command, path", [("echo", "/"), ("demo", "/websocket"), ("chat", "/chat")])
def test_cli_serves_wss_with_certfile_and_keyfile(certificate, command, path):
    import websockets.asyncio.client as ws_client

    cert, key = certificate
    proc, port, line = _start_cli(command, "--certfile", cert, "--keyfile", key)
    try:
        assert f"wss://127.0.0.1:{port}{path}" in line, line
        client_ctx = ssl.create_default_context(cafile=cert)

        async def main():
            origin = f"https://127.0.0.1:{port}"  # what a browser on the page sends
            async with ws_client.connect(f"wss://127.0.0.1:{port}{path}", ssl=client_ctx,
                                         origin=origin) as ws:
                if command == "echo":
                    await ws.send("hello")
                    assert await ws.recv() == "hello"
                elif command == "demo":
                    assert (await ws.recv()).startswith("* welcome")
                else:
                    await ws.send('{"type": "join", "nick": "ada", "room": "lobby"}')
                    while '"welcome"' not in await ws.recv():
                        pass
            # plain TCP without TLS gets nothing useful
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data = await asyncio.wait_for(reader.read(), 15)
            assert not data.startswith(b"HTTP/1.1 200")
            writer.close()

        asyncio.run(asyncio.wait_for(main(), 20))
    finally:
        _stop_cli(proc)


def test_cli_refuses_a_missing_certificate(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "wsfast", "echo", "--port", "0", "--certfile", str(tmp_path / "none.pem")],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=20)
    assert out.returncode != 0
    assert "cannot load the certificate" in out.stderr


# -- Host and Origin: DNS rebinding -------------------------------------------------------


class Page(wsfast.RequestHandler):
    def get(self):
        self.write("page")


async def head_of(port, data, timeout=3):
    """Send ``data``; return the status of the answer's head (the
    connection may stay open: a 101)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    try:
        return status_of(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout))
    finally:
        writer.close()


def _get(host, path="/"):
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()


def test_without_allowed_hosts_a_rebinding_page_gets_in(run):
    # The risk the setting addresses: evil.example resolves to this server;
    # its page sends its own name as Host and as Origin, which then match.
    async def main():
        async with serving([(r"/ws", Echo)]) as server:
            host = f"evil.example:{server.port}"
            assert await head_of(server.port, handshake_bytes(Host=host, Origin=f"http://{host}")) == 101

    run(main())


def test_allowed_hosts_refuse_other_hosts_for_pages_and_websockets(run):
    async def main():
        async with serving([(r"/", Page), (r"/ws", Echo)],
                           allowed_hosts=["localhost", "127.0.0.1", "::1", ".example.org"]) as server:
            port = server.port
            for host in (f"evil.example:{port}", "evil.example", f"127.0.0.2:{port}",
                         "localhost.evil.example", "example.org.evil", "", "[::2]:80"):
                answer = await raw_exchange(port, _get(host))
                assert status_of(answer) == 400, (host, answer)
                answer = await raw_exchange(
                    port, handshake_bytes(Host=host, Origin=f"http://{host}"))
                assert status_of(answer) == 400, (host, answer)
            for host in (f"localhost:{port}", f"LOCALHOST.:{port}", f"127.0.0.1:{port}", "127.0.0.1",
                         f"[::1]:{port}", "example.org", "chat.example.org:443"):
                answer = await raw_exchange(port, _get(host))
                assert status_of(answer) == 200 and answer.endswith(b"page"), (host, answer)
                status = await head_of(port, handshake_bytes(Host=host, Origin=f"http://{host}"))
                assert status == 101, host
            # A request without Host at all (HTTP/1.0) names no allowed host.
            answer = await raw_exchange(port, b"GET / HTTP/1.0\r\n\r\n")
            assert status_of(answer) == 400
            async with wsfast.connect(f"ws://127.0.0.1:{port}/ws") as ws:
                await ws.send("still here")
                assert await ws.recv() == "still here"

    run(main())


def test_trusted_origins_let_named_pages_in_and_nothing_else(run):
    async def main():
        async with serving([(r"/ws", Echo)], allowed_hosts=["127.0.0.1"],
                           trusted_origins=["https://app.example.com", "http://localhost:8080"]) as server:
            port = server.port
            host = f"127.0.0.1:{port}"
            for origin, status in [
                ("https://app.example.com", 101), ("HTTPS://APP.EXAMPLE.COM:443", 101),
                ("http://localhost:8080", 101), (f"http://{host}", 101),  # same origin still works
                ("http://app.example.com", 403), ("https://app.example.com:8443", 403),
                ("https://evil.app.example.com", 403), ("http://localhost:8081", 403),
                ("null", 403), ("http://[", 403),
            ]:
                assert await head_of(port, handshake_bytes(Host=host, Origin=origin)) == status, origin

    run(main())


@pytest.mark.parametrize("settings, error", [
    ({"allowed_hosts": "localhost"}, TypeError),
    ({"allowed_hosts": [None]}, TypeError),
    ({"trusted_origins": "https://a.example"}, TypeError),
    ({"trusted_origins": ["a.example"]}, ValueError),
    ({"trusted_origins": ["http://["]}, ValueError),
])
def test_origin_settings_are_checked_when_the_application_is_made(settings, error):
    with pytest.raises(error):
        wsfast.Application([], **settings)


def _cli_handshake(port, host, origin):
    async def main():
        return await head_of(port, handshake_bytes("/chat", Host=host, Origin=origin))
    return asyncio.run(main())


def test_chat_cli_allows_only_loopback_hosts_by_default():
    proc, port, _ = _start_cli("chat")
    try:
        for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
            assert _cli_handshake(port, host, f"http://{host}") == 101
        host = f"rebind.evil.example:{port}"
        assert _cli_handshake(port, host, f"http://{host}") == 400
        assert _cli_handshake(port, f"127.0.0.1:{port}", "http://evil.example") == 403
    finally:
        _stop_cli(proc)


def test_chat_cli_allowed_host_and_trusted_origin_flags():
    proc, port, _ = _start_cli("chat", "--allowed-host", "chat.example.org",
                               "--trusted-origin", "https://www.example.org")
    try:
        assert _cli_handshake(port, "chat.example.org", "https://www.example.org") == 101
        assert _cli_handshake(port, "chat.example.org", "http://chat.example.org") == 101
        assert _cli_handshake(port, "chat.example.org", "https://evil.example") == 403
        assert _cli_handshake(port, f"127.0.0.1:{port}", f"http://127.0.0.1:{port}") == 400
    finally:
        _stop_cli(proc)


# -- limits on counts -------------------------------------------------------------------


def test_max_connections_refuses_with_503_then_serves_again(run):
    async def main():
        async with serving([(r"/ws", Echo)], max_connections=3) as server:
            url = f"ws://127.0.0.1:{server.port}/ws"
            clients = [await wsfast.connect(url) for _ in range(3)]
            with pytest.raises(wsfast.HandshakeError) as info:
                await wsfast.connect(url)
            assert info.value.status == 503
            assert ("Retry-After", "1") in info.value.headers
            # a plain HTTP connection counts too
            answer = await raw_exchange(server.port, _get("127.0.0.1"))
            assert status_of(answer) == 503
            assert server.refused == 2 and len(server.protocols) == 3
            await clients.pop().close()
            for _ in range(100):
                if len(server.protocols) < 3:
                    break
                await asyncio.sleep(0.01)
            async with wsfast.connect(url) as ws:
                await ws.send("room again")
                assert await ws.recv() == "room again"
            for ws in clients:
                await ws.close()

    run(main())


def test_max_connections_is_checked_and_defaults_below_the_fd_limit():
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    app = wsfast.Application([])
    assert app._max_connections < soft
    for bad in (0, -1, 1.5, "10"):
        with pytest.raises(ValueError):
            wsfast.Application([], max_connections=bad)


FLOOD_SERVER = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
import wsfast

class Echo(wsfast.WebSocketHandler):
    def on_message(self, message):
        self.write_message(message)

app = wsfast.Application([(r"/ws", Echo)], handshake_timeout=30)
wsfast.run(app, host="127.0.0.1", port=0, use_uvloop=sys.argv[1] == "uvloop",
           on_start=lambda server: print(server.port, flush=True))
"""


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_running_out_of_descriptors_gives_503s_and_a_quiet_log(tmp_path, loop):
    # 200 silent connections to a server that may open 64 files: before
    # max_connections, the stdlib loop logged ~40,000 lines a second.
    script = tmp_path / "server.py"
    script.write_text(FLOOD_SERVER)
    stderr = tmp_path / "stderr.txt"
    with open(stderr, "w") as err:
        proc = subprocess.Popen([sys.executable, str(script), loop], stdout=subprocess.PIPE,
                                stderr=err, text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        port = int(proc.stdout.readline())

        async def main():
            flood = [await asyncio.open_connection("127.0.0.1", port) for _ in range(200)]

            async def answer(reader):
                try:
                    return await asyncio.wait_for(reader.read(100), 1.5)
                except (asyncio.TimeoutError, ConnectionError):
                    return b""

            answers = await asyncio.gather(*(answer(reader) for reader, _ in flood))
            for _, writer in flood:
                writer.close()
            assert sum(a.startswith(b"HTTP/1.1 503") for a in answers) >= 1, answers[:5]
            # Once the flood is gone (the server sees the closes), a client is served.
            for attempt in range(50):
                await asyncio.sleep(0.1)
                try:
                    ws = await wsfast.connect(f"ws://127.0.0.1:{port}/ws")
                except (wsfast.HandshakeError, OSError, wsfast.ConnectionClosed):
                    continue
                await ws.send("served")
                assert await ws.recv() == "served"
                await ws.close()
                break
            else:
                raise AssertionError("not served 5 s after the flood ended")

        asyncio.run(asyncio.wait_for(main(), 20))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    lines = stderr.read_text().splitlines()
    assert len(lines) < 20, "\n".join(lines[:60])
    assert "Traceback" not in "\n".join(lines)


def test_the_asgi_access_log_shows_no_token(caplog):
    uvicorn = pytest.importorskip("uvicorn")
    from wsfast.asgi import WSFastProtocol

    caplog.set_level(logging.DEBUG)

    async def echo(scope, receive, send):
        while True:
            message = await receive()
            if message["type"] == "websocket.connect":
                if "deny" in scope["path"]:
                    await send({"type": "websocket.close", "code": 1008})
                    return
                await send({"type": "websocket.accept"})
            elif message["type"] == "websocket.receive":
                await send({"type": "websocket.send", "text": message.get("text")})
            else:
                return

    async def main():
        config = uvicorn.Config(echo, ws=WSFastProtocol, host="127.0.0.1", port=0,
                                lifespan="off", log_config=None, http="httptools")
        server = uvicorn.Server(config)
        task = asyncio.get_running_loop().create_task(server.serve())
        while not server.started:
            assert not task.done(), task.exception()
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            async with wsfast.connect(f"ws://127.0.0.1:{port}/ws?access_token={SECRET}") as ws:
                await ws.send("x")
                assert await ws.recv() == "x"
            with pytest.raises(wsfast.HandshakeError):
                await wsfast.connect(f"ws://127.0.0.1:{port}/deny?access_token={SECRET}")
        finally:
            await server.shutdown()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # uvicorn's logging config (another test may have applied it) stops
    # its loggers' records from reaching the root, where caplog listens.
    uvicorn_log = logging.getLogger("uvicorn.error")
    level = uvicorn_log.level
    uvicorn_log.addHandler(caplog.handler)
    uvicorn_log.setLevel(logging.DEBUG)
    try:
        asyncio.run(asyncio.wait_for(main(), 20))
    finally:
        uvicorn_log.removeHandler(caplog.handler)
        uvicorn_log.setLevel(level)
    lines = [r.getMessage() for r in caplog.records]
    assert any("access_token=***" in line for line in lines), lines
    assert not [line for line in lines if SECRET in line]
