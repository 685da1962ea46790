"""The client through real proxies started here on loopback: Debian's
tinyproxy for HTTP CONNECT (basic auth, a wrong password, a proxy that
refuses the port) and Dante (danted) for SOCKS5 / SOCKS4; ws:// and wss://
through both, explicit ``proxy=`` and the environment variables.

Every test runs on stdlib asyncio and on uvloop (``run``).
"""

import os
import shutil
import socket
import subprocess
import time

import pytest

import wsfast

from test_client_redirect import run, serving  # noqa: F401 (run: the asyncio/uvloop fixture; tls_contexts comes from conftest)

TINYPROXY = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
DANTED = shutil.which("danted") or "/usr/sbin/danted"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv, port, log):
    out = open(log, "wb")
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{argv[0]} exited: {open(log).read()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{argv[0]} did not listen: {open(log).read()[-2000:]}")


def stop(proc):
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Proxy:
    def __init__(self, uri, log):
        self.uri, self.log = uri, log

    def saw(self, port):
        """The proxy logged a connection to port (tinyproxy: 127.0.0.1:port,
        Dante: 127.0.0.1.port); logs come a moment late."""
        deadline = time.monotonic() + 3
        while True:
            text = open(self.log, errors="replace").read()
            if f"127.0.0.1:{port}" in text or f"127.0.0.1.{port}" in text:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)


def tinyproxy(tmp_path, name, extra):
    if not os.path.exists(TINYPROXY):
        pytest.skip("tinyproxy is not installed (apt-get install tinyproxy)")
    port = free_port()
    conf = tmp_path / f"{name}.conf"
    user = ["User nobody", "Group nogroup"] if os.getuid() == 0 else []
    conf.write_text("\n".join(user + [
        f"Port {port}", "Listen 127.0.0.1", "Timeout 30", "MaxClients 50", "Allow 127.0.0.1",
        "LogLevel Connect", *extra]) + "\n")
    log = tmp_path / f"{name}.log"
    return start([TINYPROXY, "-d", "-c", str(conf)], port, log), port, log


@pytest.fixture(scope="module")
def http_proxies(tmp_path_factory):
    """(with basic auth alice:s3cret, one that allows CONNECT to port 443 only)."""
    d = tmp_path_factory.mktemp("tinyproxy")
    auth, aport, alog = tinyproxy(d, "auth", ["BasicAuth alice s3cret"])
    strict, sport, slog = tinyproxy(d, "strict", ["ConnectPort 443"])
    try:
        yield (Proxy(f"http://alice:s3cret@127.0.0.1:{aport}", alog),
               Proxy(f"http://127.0.0.1:{sport}", slog))
    finally:
        stop(auth)
        stop(strict)


@pytest.fixture(scope="module")
def socks_proxy(tmp_path_factory):
    """Dante on loopback, refusing connections to port 9 (the test's refusal)."""
    pytest.importorskip("python_socks")
    if not os.path.exists(DANTED):
        pytest.skip("dante-server is not installed (apt-get install dante-server)")
    d = tmp_path_factory.mktemp("dante")
    port = free_port()
    conf = d / "danted.conf"
    unprivileged = "nobody" if os.getuid() == 0 else os.environ.get("USER", "nobody")
    conf.write_text("\n".join([
        "logoutput: stderr",
        f"internal: 127.0.0.1 port = {port}",
        "external: 127.0.0.1",
        "clientmethod: none",
        "socksmethod: none",
        *(["user.privileged: root", f"user.unprivileged: {unprivileged}"] if os.getuid() == 0 else []),
        "client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 log: connect }",
        "socks block { from: 0.0.0.0/0 to: 127.0.0.1/32 port = 9 log: connect }",
        "socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 log: connect }",
    ]) + "\n")
    log = d / "danted.log"
    proc = start([DANTED, "-f", str(conf), "-N", "1"], port, log)
    try:
        yield Proxy(f"127.0.0.1:{port}", log)
    finally:
        stop(proc)


class Echo(wsfast.WebSocketHandler):
    def on_message(self, message):
        self.write_message(message)


async def echo_once(uri, **kwargs):
    async with wsfast.connect(uri, **kwargs) as ws:
        await ws.send("through")
        assert await ws.recv() == "through"
        await ws.send(b"x" * 100000)
        assert await ws.recv() == b"x" * 100000


# -- HTTP CONNECT --------------------------------------------------------------------------


def test_http_connect_with_basic_auth_ws_and_wss(run, http_proxies, tls_contexts):
    proxy, _ = http_proxies
    server_ctx, client_ctx = tls_contexts

    async def main():
        async with serving([(r"/ws", Echo)]) as port:
            await echo_once(f"ws://127.0.0.1:{port}/ws", proxy=proxy.uri)
            assert proxy.saw(port)
        async with serving([(r"/ws", Echo)], ssl=server_ctx) as port:
            await echo_once(f"wss://localhost:{port}/ws", proxy=proxy.uri, ssl=client_ctx)
            assert "localhost:%d" % port in open(proxy.log).read()  # the name went to the proxy

    run(main())


def test_http_proxy_refusals(run, http_proxies):
    proxy, strict = http_proxies

    async def main():
        async with serving([(r"/ws", Echo)]) as port:
            uri = f"ws://127.0.0.1:{port}/ws"
            with pytest.raises(wsfast.ProxyError) as info:
                await wsfast.connect(uri, proxy=proxy.uri.replace("s3cret", "wrong"))
            assert info.value.status in (401, 407)
            with pytest.raises(wsfast.ProxyError) as info:
                await wsfast.connect(uri, proxy=proxy.uri.replace("alice:s3cret@", ""))
            assert info.value.status in (401, 407)
            with pytest.raises(wsfast.ProxyError, match="HTTP 403") as info:
                await wsfast.connect(uri, proxy=strict.uri)  # ConnectPort 443 only
            assert info.value.status == 403
            assert not wsfast.client.retryable(info.value)
            # Reconnecting stops on a refusal too.
            with pytest.raises(wsfast.ProxyError):
                async for ws in wsfast.connect(uri, proxy=strict.uri, backoff_min=0.01):
                    pass
        # A proxy that is not there: an OSError (retried when reconnecting).
        with pytest.raises(OSError) as info:
            await wsfast.connect(f"ws://127.0.0.1:{port}/ws", proxy=f"http://127.0.0.1:{free_port()}")
        assert wsfast.client.retryable(info.value)

    run(main())


def test_proxy_from_the_environment(run, http_proxies, monkeypatch):
    proxy, _ = http_proxies
    dead = f"http://127.0.0.1:{free_port()}"
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy",
                 "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)

    async def main():
        async with serving([(r"/ws", Echo)]) as port:
            uri = f"ws://127.0.0.1:{port}/ws"
            monkeypatch.setenv("HTTP_PROXY", proxy.uri)
            monkeypatch.setenv("HTTPS_PROXY", dead)  # for wss:// only
            await echo_once(uri)
            assert proxy.saw(port)
            monkeypatch.setenv("HTTP_PROXY", dead)
            with pytest.raises(OSError):
                await wsfast.connect(uri)
            await echo_once(uri, proxy=None)  # off
            monkeypatch.setenv("NO_PROXY", "127.0.0.1")
            await echo_once(uri)  # bypassed
            monkeypatch.delenv("NO_PROXY")
            monkeypatch.delenv("HTTP_PROXY")
            monkeypatch.setenv("ALL_PROXY", proxy.uri)
            await echo_once(uri)  # all_proxy when no http_proxy
            monkeypatch.setenv("ALL_PROXY", "gopher://127.0.0.1:1")
            with pytest.raises(ValueError, match="unsupported proxy scheme"):
                await wsfast.connect(uri)

    run(main())


def test_bad_proxy_uris():
    for bad in ("ftp://127.0.0.1:1", "http://", "http://h:1/path", "https://h:3128"):
        with pytest.raises(ValueError):
            wsfast.connect("ws://x/", proxy=bad)


# -- SOCKS ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["socks5", "socks5h", "socks4", "socks4a"])
def test_socks_ws_and_wss(run, socks_proxy, tls_contexts, scheme):
    server_ctx, client_ctx = tls_contexts
    proxy = f"{scheme}://{socks_proxy.uri}"
    # Dante answers SOCKS4a's names with "rejected": an address there.
    name = "127.0.0.1" if scheme == "socks4a" else "localhost"

    async def main():
        async with serving([(r"/ws", Echo)]) as port:
            await echo_once(f"ws://127.0.0.1:{port}/ws", proxy=proxy)
            assert socks_proxy.saw(port)
        async with serving([(r"/ws", Echo)], ssl=server_ctx) as port:
            await echo_once(f"wss://{name}:{port}/ws", proxy=proxy, ssl=client_ctx)
        assert socks_proxy.saw(port)

    run(main())


def test_socks_refusal_and_environment(run, socks_proxy, monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy",
                 "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)

    async def main():
        with pytest.raises(wsfast.ProxyError, match="SOCKS"):
            await wsfast.connect("ws://127.0.0.1:9/", proxy=f"socks5://{socks_proxy.uri}")
        with pytest.raises(wsfast.ProxyError, match="SOCKS"):
            await wsfast.connect("ws://127.0.0.1:9/", proxy=f"socks4://{socks_proxy.uri}")
        async with serving([(r"/ws", Echo)]) as port:
            monkeypatch.setenv("ALL_PROXY", f"socks5h://{socks_proxy.uri}")
            await echo_once(f"ws://127.0.0.1:{port}/ws")
            assert socks_proxy.saw(port)

    run(main())
