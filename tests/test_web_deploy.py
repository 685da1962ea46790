"""Deployment pieces of wsfast.web (issue 15): listening on a Unix socket,
client addresses from a trusted proxy's headers, token auth at the handshake.

Every server test runs on stdlib asyncio and on uvloop (``run`` fixture).
"""

import asyncio
import os
import signal
import socket
import subprocess
import sys

import pytest
from test_server import Echo

import wsfast

pytestmark = pytest.mark.run_loop(set_event_loop=True)  # as in test_server.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout (examples/); the same dir as wsfast/ there


async def unix_exchange(path, data, timeout=3):
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(data)
    try:
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


async def connect_unix(path, resource="/ws", **kwargs):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, path)
    return await wsfast.connect(f"ws://localhost{resource}", sock=sock, **kwargs)


# -- Unix sockets -------------------------------------------------------------------------


def test_listen_on_a_unix_socket(run, tmp_path):
    path = str(tmp_path / "ws.sock")

    async def main():
        app = wsfast.Application([(r"/ws", Echo)])
        server = await app.listen(path=path)
        assert server.path == path and server.port is None
        ws = await connect_unix(path)
        await ws.send("over a unix socket")
        assert await ws.recv() == "over a unix socket"
        await ws.send(b"\x00" * 100000)
        assert await ws.recv() == b"\x00" * 100000
        await ws.close()
        # a second server on the same path is refused while the first lives
        with pytest.raises(OSError):
            wsfast.Application([]).listen(path=path)
        await app.stop(timeout=1)
        assert not os.path.exists(path)  # removed at close

    run(main())


def test_a_stale_unix_socket_is_replaced_and_a_file_is_not(run, tmp_path):
    stale = str(tmp_path / "stale.sock")
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(stale)  # a socket file nobody listens on: a crashed server's
    regular = tmp_path / "file"
    regular.write_text("keep me")

    async def main():
        app = wsfast.Application([(r"/ws", Echo)])
        await app.listen(path=stale)
        ws = await connect_unix(stale)
        await ws.send("ok")
        assert await ws.recv() == "ok"
        await ws.close()
        with pytest.raises(OSError):
            app.listen(path=str(regular))
        await app.stop(timeout=1)

    run(main())
    assert regular.read_text() == "keep me"


def test_cli_uds(tmp_path):
    path = str(tmp_path / "echo.sock")
    proc = subprocess.Popen([sys.executable, "-m", "wsfast", "echo", "--uds", path],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        line = proc.stdout.readline()
        assert f"ws+unix:{path}" in line, (line, proc.poll() and proc.stderr.read())

        async def main():
            ws = await connect_unix(path, "/")
            await ws.send("cli")
            assert await ws.recv() == "cli"
            await ws.close()

        asyncio.run(asyncio.wait_for(main(), 10))
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    assert not os.path.exists(path)


# -- client addresses behind a proxy ---------------------------------------------------------


class WhoAmI(wsfast.RequestHandler):
    def get(self):
        self.write(f"{self.request.remote_ip}|{self.request.peer_ip}")


def _who(headers=""):
    return f"GET /who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n".encode()


async def _ask(port, headers=""):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_who(headers))
    try:
        answer = await asyncio.wait_for(reader.read(), 3)
    finally:
        writer.close()
    return answer.split(b"\r\n\r\n", 1)[1].decode().split("|")[0]


SPOOFS = [
    "X-Forwarded-For: 6.6.6.6\r\n",
    "X-Real-IP: 6.6.6.6\r\n",
    "Forwarded: for=6.6.6.6\r\n",
    "X-Forwarded-For: 6.6.6.6, 127.0.0.1\r\n",
]


@pytest.mark.parametrize("headers", SPOOFS)
def test_an_untrusted_peer_cannot_spoof_its_address(run, headers):
    async def main():
        for settings in ({}, {"trusted_proxies": ["10.0.0.0/8", "192.0.2.1"]}):
            app = wsfast.Application([(r"/who", WhoAmI)], **settings)
            server = await app.listen(0, host="127.0.0.1")
            try:
                assert await _ask(server.port, headers) == "127.0.0.1"
            finally:
                await app.stop(timeout=1)

    run(main())


@pytest.mark.parametrize("headers, client", [
    ("", "127.0.0.1"),
    ("X-Forwarded-For: 203.0.113.7\r\n", "203.0.113.7"),
    ("X-Forwarded-For: 6.6.6.6, 203.0.113.7\r\n", "203.0.113.7"),  # the client's own claim: ignored
    ("X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 203.0.113.7, 10.1.2.3\r\n", "203.0.113.7"),
    ("X-Forwarded-For: 10.9.9.9, 10.1.2.3\r\n", "10.9.9.9"),  # all trusted: the first
    ("X-Forwarded-For: junk, 203.0.113.7\r\n", "203.0.113.7"),
    ("X-Forwarded-For: 203.0.113.7, junk\r\n", "127.0.0.1"),  # a hop we cannot read: stop
    ("X-Real-IP: 203.0.113.8\r\n", "203.0.113.8"),
    ('Forwarded: for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https\r\n', "2001:db8:cafe::17"),
    ("Forwarded: For=203.0.113.9:1234;by=10.0.0.1\r\n", "203.0.113.9"),
    ("Forwarded: for=unknown\r\n", "127.0.0.1"),
    ("Forwarded: for=203.0.113.9\r\nX-Forwarded-For: 6.6.6.6\r\n", "203.0.113.9"),  # Forwarded first
])
def test_a_trusted_proxy_tells_the_client_address(run, headers, client):
    async def main():
        app = wsfast.Application([(r"/who", WhoAmI)], trusted_proxies=["127.0.0.1", "10.0.0.0/8"])
        server = await app.listen(0, host="127.0.0.1")
        try:
            assert await _ask(server.port, headers) == client
        finally:
            await app.stop(timeout=1)

    run(main())


def test_a_trusted_unix_socket_proxy(run, tmp_path):
    path = str(tmp_path / "p.sock")

    async def main():
        for trusted, expected in ((["127.0.0.1"], ""), (["unix"], "203.0.113.7")):
            app = wsfast.Application([(r"/who", WhoAmI)], trusted_proxies=trusted)
            await app.listen(path=path)
            try:
                answer = await unix_exchange(path, _who("X-Forwarded-For: 203.0.113.7\r\n"))
                assert answer.split(b"\r\n\r\n", 1)[1].decode().split("|")[0] == expected
            finally:
                await app.stop(timeout=1)

    run(main())


@pytest.mark.parametrize("value, error", [("10.0.0.1", TypeError), (["not an ip"], ValueError)])
def test_trusted_proxies_are_checked(value, error):
    with pytest.raises(error):
        wsfast.Application([], trusted_proxies=value)


# -- token auth at the handshake --------------------------------------------------------------


def _example():
    import importlib.util

    spec = importlib.util.spec_from_file_location("token_auth_example",
                                                  os.path.join(ROOT, "examples", "token_auth.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOKEN_SECRET_LOOKING = "tok-ZZ9-plural-Z-alpha"


def test_token_auth_valid_missing_wrong_expired_cross_origin(run, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    example = _example()

    async def main():
        store = example.TokenStore(lifetime=60)
        app = example.make_app(store)
        server = await app.listen(0, host="127.0.0.1")
        port = server.port
        url = f"ws://127.0.0.1:{port}/ws"
        try:
            # issued by the app's own endpoint
            body = b"user=ada"
            answer = await _raw(port, (
                "POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
            import json

            token = json.loads(answer.split(b"\r\n\r\n", 1)[1])["access_token"]
            # valid, in the header and in the URL: the handler knows who
            async with wsfast.connect(url, extra_headers={"Authorization": f"Bearer {token}"}) as ws:
                assert await ws.recv() == "hello ada"
            async with wsfast.connect(f"{url}?access_token={token}") as ws:
                assert await ws.recv() == "hello ada"
                await ws.send("echo")
                assert await ws.recv() == "echo"
            # missing
            with pytest.raises(wsfast.HandshakeError) as info:
                await wsfast.connect(url)
            assert info.value.status == 401
            assert ("WWW-Authenticate", 'Bearer realm="example"') in info.value.headers
            # wrong (and a secret-looking one, to look for in the logs)
            for wrong in ("nope", TOKEN_SECRET_LOOKING):
                for how in ({"extra_headers": {"Authorization": f"Bearer {wrong}"}},
                            {"uri": f"{url}?access_token={wrong}"}):
                    with pytest.raises(wsfast.HandshakeError) as info:
                        await wsfast.connect(how.get("uri", url), **{k: v for k, v in how.items()
                                                                    if k != "uri"})
                    assert info.value.status == 401
                    assert ("WWW-Authenticate", 'Bearer realm="example", error="invalid_token"') \
                        in info.value.headers
            # both ways at once: 400
            with pytest.raises(wsfast.HandshakeError) as info:
                await wsfast.connect(f"{url}?access_token={token}",
                                     extra_headers={"Authorization": f"Bearer {token}"})
            assert info.value.status == 400
            # a valid token from a page of another site: check_origin still says no
            with pytest.raises(wsfast.HandshakeError) as info:
                await wsfast.connect(f"{url}?access_token={token}", origin="https://evil.example")
            assert info.value.status == 403
            # the answers say nothing more than the status
            answer = await _raw(port, (
                f"GET /ws?access_token={TOKEN_SECRET_LOOKING} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode())
            assert answer.split(b"\r\n\r\n", 1)[1] == b"401 Unauthorized\n"
            # expired
            store.lifetime = 0.05
            short = store.issue("bob")
            async with wsfast.connect(f"{url}?access_token={short}") as ws:
                assert await ws.recv() == "hello bob"
            await asyncio.sleep(0.1)
            with pytest.raises(wsfast.HandshakeError) as info:
                await wsfast.connect(f"{url}?access_token={short}")
            assert info.value.status == 401
        finally:
            await app.stop(timeout=1)
        # a trusted origin may use its token
        app = example.make_app(store, trusted_origins=["https://app.example"])
        server = await app.listen(0, host="127.0.0.1")
        try:
            store.lifetime = 60
            token = store.issue("cy")
            async with wsfast.connect(f"ws://127.0.0.1:{server.port}/ws?access_token={token}",
                                      origin="https://app.example") as ws:
                assert await ws.recv() == "hello cy"
        finally:
            await app.stop(timeout=1)

    run(main())
    lines = [r.getMessage() for r in caplog.records]
    assert any("access_token=***" in line for line in lines), lines
    assert not [line for line in lines if TOKEN_SECRET_LOOKING in line]
    assert not [r for r in caplog.records if r.name.startswith("wsfast") and r.levelno >= logging.WARNING]


async def _raw(port, data):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    try:
        return await asyncio.wait_for(reader.read(), 3)
    finally:
        writer.close()


def test_bearer_token_parsing():
    from wsfast.auth import bearer_token
    from wsfast.http import Headers, Request

    def token(uri="/", **headers):
        return bearer_token(Request("GET", uri, Headers(list(headers.items()))))

    assert token() is None
    assert token(Authorization="Bearer abc") == "abc"
    assert token(Authorization="bearer   abc  ") == "abc"
    assert token(Authorization="Basic Zm9vOmJhcg==") is None
    assert token("/?access_token=q%2Bz") == "q+z"
    assert token("/?access_token=") is None
    for bad in ({"uri": "/?access_token=a&access_token=b"},
                {"uri": "/?access_token=a", "Authorization": "Bearer a"},
                {"Authorization": "Bearer"}):
        with pytest.raises(wsfast.HTTPError) as info:
            token(**bad)
        assert info.value.status_code == 400


def test_cli_chat_on_a_unix_socket_behind_a_trusted_proxy(tmp_path):
    # As behind nginx: any Host (the proxy decides), client addresses from
    # X-Forwarded-For, so the per-address limit counts clients, not the proxy.
    path = str(tmp_path / "chat.sock")
    proc = subprocess.Popen([sys.executable, "-m", "wsfast", "chat", "--uds", path,
                             "--trusted-proxy", "unix", "--max-per-address", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        line = proc.stdout.readline()
        assert f"ws+unix:{path}" in line, (line, proc.poll() and proc.stderr.read())

        async def main():
            def proxied(ip):
                return {"X-Forwarded-For": ip}
            kwargs = dict(origin="http://localhost")  # the page, as the proxy's Host says
            a = await connect_unix(path, "/chat", extra_headers=proxied("203.0.113.1"), **kwargs)
            b = await connect_unix(path, "/chat", extra_headers=proxied("203.0.113.2"), **kwargs)
            with pytest.raises(wsfast.HandshakeError) as info:
                await connect_unix(path, "/chat", extra_headers=proxied("203.0.113.1"), **kwargs)
            assert info.value.status == 429
            await a.close()
            await b.close()

        asyncio.run(asyncio.wait_for(main(), 10))
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_run_on_a_unix_socket_says_where(tmp_path):
    path = str(tmp_path / "run.sock")
    script = (
        "import wsfast\n"
        "class Page(wsfast.RequestHandler):\n"
        "    def get(self): self.write('ok')\n"
        f"wsfast.run(wsfast.Application([(r'/', Page)]), path={path!r}, use_uvloop=False)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        line = proc.stderr.readline()
        assert f"http+unix:{path}" in line, line
        answer = asyncio.run(unix_exchange(path, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"ok")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


@pytest.mark.parametrize("use_uvloop", [False, True])
@pytest.mark.parametrize("serve", ["wsfast.run", "chat.serve"])
def test_a_sigterm_right_after_the_server_says_it_listens_stops_it_gracefully(serve, use_uvloop):
    """A process manager may stop a server as soon as it is ready (the chat
    supervisor's rolling restart does): wsfast.run() and chat.serve() take
    SIGINT/SIGTERM over before they announce themselves (here on_start sends
    the SIGTERM), so that one is a graceful stop too, not Python's default
    death by the signal (the announcement went first, and a SIGTERM landing
    in between killed the process; test_doc_examples' server examples met
    it once under load)."""
    kill = "on_start=lambda server: os.kill(os.getpid(), signal.SIGTERM)"
    if serve == "wsfast.run":
        body = f"wsfast.run(wsfast.Application([]), host='127.0.0.1', port=0, use_uvloop={use_uvloop!r}, {kill})\n"
    else:
        body = ("from wsfast import chat\n"
                + ("import uvloop; uvloop.install()\n" if use_uvloop else "")
                + f"asyncio.run(chat.serve(chat.ChatServer(), host='127.0.0.1', port=0, {kill}))\n")
    script = "import asyncio, os, signal, wsfast\n" + body + "print('stopped gracefully')\n"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0 and out.stdout == "stopped gracefully\n", (out.returncode, out.stderr)


# -- the PROXY protocol ---------------------------------------------------------------------


def _v2(ip, port, ipv6=False):
    import ipaddress

    family = 0x21 if ipv6 else 0x11
    source = ipaddress.ip_address(ip).packed
    dest = ipaddress.ip_address("::1" if ipv6 else "10.0.0.1").packed
    body = source + dest + port.to_bytes(2, "big") + (80).to_bytes(2, "big")
    return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, family]) + len(body).to_bytes(2, "big")
            + body)


@pytest.mark.parametrize("header, client", [
    (b"PROXY TCP4 203.0.113.9 10.0.0.1 56324 80\r\n", "203.0.113.9"),
    (b"PROXY TCP6 2001:db8::7 ::1 56324 80\r\n", "2001:db8::7"),
    (b"PROXY UNKNOWN\r\n", "127.0.0.1"),  # a health check: the peer's address
    (_v2("203.0.113.10", 4242), "203.0.113.10"),
    (_v2("2001:db8::8", 4242, ipv6=True), "2001:db8::8"),
    (b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00", "127.0.0.1"),  # v2 LOCAL
])
@pytest.mark.parametrize("piecewise", [False, True])
def test_proxy_protocol_header_gives_the_client_address(run, header, client, piecewise):
    async def main():
        app = wsfast.Application([(r"/who", WhoAmI)], proxy_protocol=True)
        server = await app.listen(0, host="127.0.0.1")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            data = header + _who()
            if piecewise:  # one byte at a time across the header
                for i in range(len(header) + 3):
                    writer.write(data[i:i + 1])
                    await writer.drain()
                    await asyncio.sleep(0)
                data = data[len(header) + 3:]
            writer.write(data)
            answer = await asyncio.wait_for(reader.read(), 3)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 200"), answer
            assert answer.split(b"\r\n\r\n", 1)[1].decode().split("|")[0] == client
        finally:
            await app.stop(timeout=1)

    run(main())


@pytest.mark.parametrize("data", [
    b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n",  # no header: not from the proxy
    b"PROXY TCP4 not-an-ip 10.0.0.1 1 2\r\nGET /who HTTP/1.1\r\nHost: x\r\n\r\n",
    b"PROXY " + b"x" * 200,
    b"\r\n\r\n\x00\r\nQUIT\n\x99\x11\x00\x0c" + b"\x00" * 12,
])
def test_proxy_protocol_drops_a_connection_without_a_valid_header(run, data):
    async def main():
        app = wsfast.Application([(r"/who", WhoAmI)], proxy_protocol=True)
        server = await app.listen(0, host="127.0.0.1")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(data)
            try:
                answer = await asyncio.wait_for(reader.read(), 3)
            except ConnectionResetError:
                answer = b""
            writer.close()
            assert answer == b""
        finally:
            await app.stop(timeout=1)

    run(main())
