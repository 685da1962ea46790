"""The client through real proxies started here on loopback: Debian's
tinyproxy for HTTP CONNECT (basic auth, a wrong password, a proxy that
refuses the port), Dante (danted) for SOCKS5 / SOCKS4 and microsocks for
SOCKS5 with username/password (RFC 1929); ws:// and wss:// through them,
explicit ``proxy=`` and the environment variables.

Every test runs on stdlib asyncio and on uvloop (``run``).
"""

import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import time
from urllib.parse import urlsplit

import pytest

import wsfast
from wsfast.codec import get_codec

from test_client_redirect import serving

# ``run`` (asyncio and uvloop) and tls_contexts come from conftest.py
pytestmark = pytest.mark.run_loop(timeout=15)

TINYPROXY = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
DANTED = shutil.which("danted") or "/usr/sbin/danted"
MICROSOCKS = shutil.which("microsocks") or "/usr/bin/microsocks"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


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

    def saw(self, port, host="127.0.0.1"):
        """The proxy logged a connection to host:port (tinyproxy, microsocks:
        host:port, Dante: host.port); logs come a moment late."""
        deadline = time.monotonic() + 3
        while True:
            text = open(self.log, errors="replace").read()
            if f"{host}:{port}" in text or f"{host}.{port}" in text:
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


#: microsocks' user and password (a password that needs percent-encoding in a URI)
SOCKS_USER, SOCKS_PASSWORD, SOCKS_PASSWORD_IN_URI = "alice", "s3:cr@t", "s3%3Acr%40t"


@pytest.fixture(scope="module")
def socks_auth_proxy(tmp_path_factory):
    """microsocks on loopback, requiring SOCKS5 username/password auth
    (RFC 1929): ``.uri`` is host:port, without the credentials."""
    pytest.importorskip("python_socks")
    if not os.path.exists(MICROSOCKS):
        pytest.skip("microsocks is not installed (apt-get install microsocks)")
    port = free_port()
    log = tmp_path_factory.mktemp("microsocks") / "microsocks.log"
    proc = start([MICROSOCKS, "-i", "127.0.0.1", "-p", str(port), "-u", SOCKS_USER,
                  "-P", SOCKS_PASSWORD], port, log)
    try:
        yield Proxy(f"127.0.0.1:{port}", log)
    finally:
        stop(proc)


class Echo(wsfast.WebSocketHandler):
    def on_message(self, message):
        self.write_message(message)


async def echo_once(uri, **kwargs):
    async with wsfast.connect(uri, **kwargs) as ws:
        if "codec" in kwargs:
            assert ws.protocol.connection.codec is get_codec(kwargs["codec"])
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
    for bad in ("ftp://127.0.0.1:1", "http://", "http://h:1/path", "https://h:1/path", "https://"):
        with pytest.raises(ValueError):
            wsfast.connect("ws://x/", proxy=bad)
    with pytest.raises(ValueError, match="proxy_ssl.*https:// proxy"):
        wsfast.connect("ws://x/", proxy="http://h:3128", proxy_ssl=True)
    with pytest.raises(ValueError, match="https:// proxy"):
        wsfast.connect("ws://x/", proxy="socks5://h:1080", proxy_server_hostname="h")


# -- HTTPS proxies: TLS to the proxy (HAProxy terminating TLS in front of tinyproxy) --------

HAPROXY_TLS_FRONT = """
global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend auth
    bind 127.0.0.1:{front_auth} ssl crt {pem}
    default_backend auth
backend auth
    server tinyproxy 127.0.0.1:{auth}
frontend strict
    bind 127.0.0.1:{front_strict} ssl crt {pem}
    default_backend strict
backend strict
    server tinyproxy 127.0.0.1:{strict}
"""


@pytest.fixture(scope="module")
def https_proxies(http_proxies, certificate, tmp_path_factory):
    """https:// proxies: HAProxy on loopback terminating TLS (the run's
    self-signed certificate for localhost) in front of the two tinyproxies
    of ``http_proxies``: ``(with basic auth alice:s3cret, port 443 only)``;
    their ``.log`` is tinyproxy's."""
    if not os.path.exists(HAPROXY):
        pytest.skip("haproxy is not installed (apt-get install haproxy; ci/test.sh does it)")
    auth, strict = http_proxies
    d = tmp_path_factory.mktemp("haproxy")
    pem = d / "combined.pem"
    pem.write_text("".join(open(name).read() for name in certificate))
    front_auth, front_strict = free_port(), free_port()
    conf = d / "haproxy.cfg"
    conf.write_text(HAPROXY_TLS_FRONT.format(
        front_auth=front_auth, front_strict=front_strict, pem=pem,
        auth=urlsplit(auth.uri).port, strict=urlsplit(strict.uri).port))
    proc = start([HAPROXY, "-db", "-f", str(conf)], front_strict, d / "haproxy.log")
    try:
        start_deadline = time.monotonic() + 5
        while True:  # both frontends
            try:
                socket.create_connection(("127.0.0.1", front_auth), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > start_deadline:
                    raise
                time.sleep(0.05)
        yield (Proxy(f"https://alice:s3cret@localhost:{front_auth}", auth.log),
               Proxy(f"https://localhost:{front_strict}", strict.log))
    finally:
        stop(proc)


def test_https_proxy_ws_and_wss(run, https_proxies, tls_contexts, codec):
    """TLS to the proxy, CONNECT over it; wss:// is TLS inside that TLS."""
    proxy, _ = https_proxies
    server_ctx, client_ctx = tls_contexts

    async def main():
        async with serving([(r"/ws", Echo)]) as port:
            await echo_once(f"ws://127.0.0.1:{port}/ws", proxy=proxy.uri, proxy_ssl=client_ctx,
                            codec=codec)
            assert proxy.saw(port)
        async with serving([(r"/ws", Echo)], ssl=server_ctx) as port:
            async with wsfast.connect(f"wss://localhost:{port}/ws", proxy=proxy.uri,
                                      proxy_ssl=client_ctx, ssl=client_ctx, codec=codec) as ws:
                # the server's TLS runs inside the proxy's
                assert ws.protocol.transport.get_extra_info("ssl_object").server_hostname == "localhost"
                await ws.send(b"y" * 300000)
                assert await ws.recv() == b"y" * 300000
            assert proxy.saw(port, "localhost")
            # proxy_server_hostname: the name the proxy's certificate is checked against
            await echo_once(f"wss://localhost:{port}/ws", proxy=proxy.uri.replace("localhost", "127.0.0.1"),
                            proxy_ssl=client_ctx, proxy_server_hostname="localhost",
                            ssl=client_ctx, codec=codec)

    run(main())


def test_https_proxy_refusals(run, https_proxies, http_proxies, tls_contexts):
    proxy, strict = https_proxies
    server_ctx, client_ctx = tls_contexts

    async def main():
        async with serving([(r"/ws", Echo)], ssl=server_ctx) as port:
            uri = f"wss://localhost:{port}/ws"
            with pytest.raises(wsfast.ProxyError) as info:
                await wsfast.connect(uri, ssl=client_ctx, proxy_ssl=client_ctx,
                                     proxy=proxy.uri.replace("s3cret", "wrong"))
            assert info.value.status in (401, 407)
            assert "wrong" not in str(info.value)
            with pytest.raises(wsfast.ProxyError, match="HTTP 403") as info:
                await wsfast.connect(uri, ssl=client_ctx, proxy_ssl=client_ctx, proxy=strict.uri)
            assert not wsfast.client.retryable(info.value)
            # The proxy's certificate is verified (by default against the system's CAs).
            with pytest.raises(ssl.SSLCertVerificationError) as info:
                await wsfast.connect(uri, ssl=client_ctx, proxy=proxy.uri)
            assert not wsfast.client.retryable(info.value)
            with pytest.raises(ssl.SSLCertVerificationError):  # the name does not match
                await wsfast.connect(uri, ssl=client_ctx, proxy=proxy.uri, proxy_ssl=client_ctx,
                                     proxy_server_hostname="proxy.example")
            # https:// naming a plain HTTP proxy (tinyproxy itself, which
            # waits for a request head in the TLS hello): bounded by open_timeout.
            plain = urlsplit(http_proxies[1].uri).port
            with pytest.raises(TimeoutError):
                await wsfast.connect(uri, ssl=client_ctx, proxy_ssl=client_ctx, open_timeout=1,
                                     proxy=f"https://127.0.0.1:{plain}")
            with pytest.raises(OSError):  # nothing there
                await wsfast.connect(uri, ssl=client_ctx, proxy_ssl=client_ctx,
                                     proxy=f"https://127.0.0.1:{free_port()}")

    run(main())


def test_https_proxy_from_the_environment(run, https_proxies, http_proxies, certificate, monkeypatch):
    """HTTPS_PROXY=https://user:pass@host:port and nothing else in the code
    (the certificates trusted through SSL_CERT_FILE, as a deployment would)."""
    proxy, strict = https_proxies
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy",
                 "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", certificate[0])
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(*certificate)

    async def main():
        async with serving([(r"/ws", Echo)], ssl=server_ctx) as port:
            uri = f"wss://localhost:{port}/ws"
            monkeypatch.setenv("HTTPS_PROXY", proxy.uri)
            monkeypatch.setenv("HTTP_PROXY", http_proxies[1].uri)  # http://, for ws:// only
            await echo_once(uri)
            assert proxy.saw(port, "localhost")
            monkeypatch.setenv("HTTPS_PROXY", strict.uri)
            with pytest.raises(wsfast.ProxyError, match="HTTP 403"):
                await wsfast.connect(uri)
            with pytest.raises(ValueError, match="https:// proxy"):  # HTTP_PROXY's is http://
                await wsfast.connect(uri.replace("wss:", "ws:"), proxy_ssl=ssl.create_default_context())

    run(main())


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


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
def test_socks5_username_password(run, socks_auth_proxy, tls_contexts, scheme, codec, monkeypatch):
    """RFC 1929 auth against microsocks: ws:// and wss:// with the right
    (percent-encoded) credentials; a wrong password, none at all, or a
    missing password are a ProxyError saying so, final for reconnecting."""
    server_ctx, client_ctx = tls_contexts
    good = f"{scheme}://{SOCKS_USER}:{SOCKS_PASSWORD_IN_URI}@{socks_auth_proxy.uri}"
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy",
                 "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)

    async def main():
        async with serving([(r"/ws", Echo)]) as port:
            uri = f"ws://127.0.0.1:{port}/ws"
            await echo_once(uri, proxy=good, codec=codec)
            assert socks_auth_proxy.saw(port)
            with pytest.raises(wsfast.ProxyError, match="SOCKS.*(authentication|password)") as info:
                await wsfast.connect(uri, proxy=good.replace(SOCKS_PASSWORD_IN_URI, "wrong"))
            assert info.value.status is None and not wsfast.client.retryable(info.value)
            assert "wrong" not in str(info.value)  # the password is not in the message
            with pytest.raises(wsfast.ProxyError, match="SOCKS.*authentication"):
                await wsfast.connect(uri, proxy=f"{scheme}://{socks_auth_proxy.uri}")
            with pytest.raises(wsfast.ProxyError, match="SOCKS"):
                await wsfast.connect(uri, proxy=f"{scheme}://{SOCKS_USER}@{socks_auth_proxy.uri}")
            with pytest.raises(wsfast.ProxyError):  # reconnecting stops on it
                async for ws in wsfast.connect(uri, proxy=good.replace(SOCKS_PASSWORD_IN_URI, "x"),
                                               backoff_min=0.01):
                    pass
            monkeypatch.setenv("ALL_PROXY", good)  # from the environment
            await echo_once(uri, codec=codec)
            monkeypatch.delenv("ALL_PROXY")
        async with serving([(r"/ws", Echo)], ssl=server_ctx) as port:
            await echo_once(f"wss://localhost:{port}/ws", proxy=good, ssl=client_ctx, codec=codec)
            # socks5h: the proxy resolved the name; socks5: it got an address
            assert socks_auth_proxy.saw(port, "localhost" if scheme == "socks5h" else "127.0.0.1")

    run(main())


# -- the other client features through a proxy ----------------------------------------------


def test_redirect_and_reconnect_through_a_proxy(run, http_proxies):
    """A redirect to another server goes through the proxy too; reconnecting
    through a proxy retries its 5xx (tinyproxy's answer while the server is
    down) until the server is back."""
    proxy, _ = http_proxies

    async def main():
        async with serving([(r"/ws", Echo)]) as target:
            async with serving([(r"/old", wsfast.RedirectHandler,
                                 {"url": f"ws://127.0.0.1:{target}/ws"})]) as first:
                await echo_once(f"ws://127.0.0.1:{first}/old", proxy=proxy.uri)
                assert proxy.saw(first) and proxy.saw(target)
        port = free_port()
        app = wsfast.Application([(r"/ws", Echo)])

        async def start_later():
            await asyncio.sleep(0.5)
            await app.listen(port, host="127.0.0.1")

        later = asyncio.ensure_future(start_later())
        try:
            with pytest.raises(wsfast.ProxyError) as info:  # down: the proxy answers 5xx
                await wsfast.connect(f"ws://127.0.0.1:{port}/ws", proxy=proxy.uri)
            assert info.value.status in wsfast.client.RETRY_STATUSES
            async for ws in wsfast.connect(f"ws://127.0.0.1:{port}/ws", proxy=proxy.uri,
                                           backoff_min=0.05, backoff_max=0.2):
                await ws.send("back")
                assert await ws.recv() == "back"
                break
            await later
        finally:
            await app.stop(timeout=1)

    run(main())
