"""wsfast behind real reverse proxies, started here on loopback: Debian's
nginx (-> TCP and -> a Unix socket) and HAProxy in HTTP mode (the same two),
with the configurations of docs/deploy.md. Through each: the handshake,
text and binary echo from 0 B to 16 MiB, ping/pong, a close with code and
reason both ways, the client's address from X-Forwarded-For (the backend
trusts the proxy only), a connection idle for longer than the proxy's
timeout that survives because of wsfast's keepalive pings (and one without
pings that the proxy cuts), and wss terminated at the proxy.
"""

import asyncio
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import pytest
from interop_helpers import free_port

import wsfast

pytestmark = pytest.mark.run_loop(set_event_loop=True)  # as in test_server.py

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
READ_TIMEOUT = 2  # the proxies' idle timeout (nginx proxy_read_timeout, HAProxy timeout tunnel), s
CLIENT_IP = "127.0.0.3"  # the test's clients connect from here (all of 127/8 is local)
PROXY_IP = "127.0.0.2"  # the proxies reach the TCP backend from here: the one trusted proxy

# The part of the configuration docs/deploy.md shows, with the addresses filled in.
SITE = """
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    upstream wsfast_tcp {{ server 127.0.0.1:{backend_port}; }}
    upstream wsfast_uds {{ server unix:{backend_path}; }}
    server {{
        listen 127.0.0.1:{port};
        location /tcp/ {{
            proxy_pass http://wsfast_tcp/;
            proxy_bind {proxy_ip};
            include {proxy_conf};
        }}
        location /uds/ {{
            proxy_pass http://wsfast_uds/;
            include {proxy_conf};
        }}
    }}
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location /uds/ {{
            proxy_pass http://wsfast_uds/;
            include {proxy_conf};
        }}
    }}
"""

PROXY_CONF = """
proxy_http_version 1.1;
proxy_set_header Upgrade $http_upgrade;
proxy_set_header Connection $connection_upgrade;
proxy_set_header Host $host;
proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
proxy_set_header X-Forwarded-Proto $scheme;
proxy_read_timeout {read_timeout}s;
proxy_buffering off;
"""


def _die_with_parent():
    """In the child: SIGTERM when the test process dies, even killed (Linux
    PR_SET_PDEATHSIG), so that no proxy outlives a test run."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Nginx:
    """nginx in the foreground with a configuration in a temporary directory."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="wsfast-nginx-")
        self.port = free_port()
        self.backend_port = free_port()
        self.backend_path = os.path.join(self.dir, "backend.sock")
        self.tls_port = free_port()
        self.cert = os.path.join(self.dir, "cert.pem")
        key = os.path.join(self.dir, "key.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
             "-out", self.cert, "-days", "2", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        proxy_conf = os.path.join(self.dir, "proxy.conf")
        with open(proxy_conf, "w") as f:
            f.write(PROXY_CONF.format(read_timeout=READ_TIMEOUT))
        site = SITE.format(backend_port=self.backend_port, backend_path=self.backend_path,
                           port=self.port, proxy_ip=PROXY_IP, proxy_conf=proxy_conf,
                           tls_port=self.tls_port, cert=self.cert, key=key)
        temp = "\n".join(f"    {name}_temp_path {self.dir}/{name};"
                         for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        user = "user root;" if os.geteuid() == 0 else ""  # workers must reach the socket in dir
        conf = (f"{user}\nworker_processes 1;\ndaemon off;\npid {self.dir}/nginx.pid;\n"
                f"error_log {self.dir}/error.log warn;\nevents {{ worker_connections 256; }}\n"
                f"http {{\n    access_log off;\n{temp}\n{site}}}\n")
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.proc = None

    stop_signal = signal.SIGQUIT  # nginx: graceful shutdown

    def command(self):
        return [NGINX, "-p", self.dir, "-c", self.conf]

    def start(self):
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.command()[0]} exited: {self.proc.stderr.read().decode()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"{self.command()[0]} did not listen")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)

# docs/deploy.md shows the same, with the test's addresses filled in.
HAPROXY_CONF = """
global
    maxconn 256
defaults
    mode http
    option forwardfor
    timeout connect 5s
    timeout client {read_timeout}s
    timeout server {read_timeout}s
    timeout tunnel {read_timeout}s
frontend web
    bind 127.0.0.1:{port}
    bind 127.0.0.1:{tls_port} ssl crt {pem}
    http-request set-header X-Forwarded-Proto https if {{ ssl_fc }}
    http-request set-header X-Forwarded-Proto http if !{{ ssl_fc }}
    http-request set-var(txn.via) path,field(2,/)
    http-request set-path %[path,regsub(^/[a-z0-9]+/,/)]
    use_backend wsfast_uds if {{ var(txn.via) -m str uds }}
    use_backend wsfast_pp1 if {{ var(txn.via) -m str pp1 }}
    use_backend wsfast_pp2 if {{ var(txn.via) -m str pp2 }}
    default_backend wsfast_tcp
backend wsfast_tcp
    server tcp 127.0.0.1:{backend_port} source {proxy_ip}
backend wsfast_uds
    server uds {backend_path}
backend wsfast_pp1
    server pp1 127.0.0.1:{pp_port} send-proxy
backend wsfast_pp2
    server pp2 127.0.0.1:{pp_port} send-proxy-v2
"""


class HAProxy(Nginx):
    """haproxy in the foreground (-db), same addresses as :class:`Nginx`."""

    def __init__(self):
        super().__init__()  # the directory, ports, certificate
        pem = os.path.join(self.dir, "combined.pem")
        with open(pem, "w") as out:
            for name in ("cert.pem", "key.pem"):
                with open(os.path.join(self.dir, name)) as f:
                    out.write(f.read())
        self.conf = os.path.join(self.dir, "haproxy.cfg")
        self.pp_port = free_port()  # a backend that takes the PROXY protocol
        with open(self.conf, "w") as f:
            f.write(HAPROXY_CONF.format(pp_port=self.pp_port,
                read_timeout=READ_TIMEOUT, port=self.port, tls_port=self.tls_port, pem=pem,
                backend_port=self.backend_port, proxy_ip=PROXY_IP, backend_path=self.backend_path))

    stop_signal = signal.SIGTERM

    def command(self):
        return [HAPROXY, "-db", "-f", self.conf]


@pytest.fixture(scope="module", params=["nginx", "haproxy"])
def proxy(request):
    """A proxy in front of the backend addresses (nginx or HAProxy)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (apt-get install openssl)")
    if request.param == "nginx":
        if NGINX is None:
            pytest.skip("nginx is not installed (apt-get install nginx-light; ci/test.sh does it)")
        server = Nginx()
    else:
        if HAPROXY is None:
            pytest.skip("haproxy is not installed (apt-get install haproxy; ci/test.sh does it)")
        server = HAProxy()
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Echo(wsfast.WebSocketHandler):
    closes = []

    def open(self):
        if self.get_argument("who", None):
            proto = self.request.headers.get("X-Forwarded-Proto", "-")
            self.write_message(f"you are {self.request.remote_ip} over {proto}")

    def on_message(self, message):
        if message == "close me":
            self.close(4002, "server says bye")
        else:
            self.write_message(message)

    def on_close(self):
        Echo.closes.append((self.close_code, self.close_reason))


class QuietEcho(Echo):
    ping_interval = 0  # no keepalive: the proxy cuts it after READ_TIMEOUT


async def backend(proxy, **settings):
    """The app on the proxy's TCP and Unix-socket upstreams."""
    settings.setdefault("trusted_proxies", [PROXY_IP, "unix"])
    app = wsfast.Application([(r"/ws", Echo), (r"/quiet", QuietEcho)], **settings)
    await app.listen(proxy.backend_port, host="127.0.0.1")
    await app.listen(path=proxy.backend_path)
    return app


async def connect(proxy, via, path="/ws", tls=False, **kwargs):
    sock = socket.socket()
    sock.setblocking(False)
    sock.bind((CLIENT_IP, 0))
    port = proxy.tls_port if tls else proxy.port
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    if tls:
        kwargs["ssl"] = ssl.create_default_context(cafile=proxy.cert)
    scheme = "wss" if tls else "ws"
    return await wsfast.connect(f"{scheme}://127.0.0.1:{port}/{via}{path}", sock=sock,
                                max_message_size=32 * 2**20, **kwargs)


VIAS = ["tcp", "uds"]


@pytest.mark.parametrize("via", VIAS)
def test_echo_through_the_proxy(run, proxy, via):
    async def main():
        app = await backend(proxy)
        try:
            ws = await connect(proxy, via)
            for size in (0, 1, 125, 126, 65535, 65536, 2**20, 16 * 2**20):
                text = "é" * (size // 2) + "x" * (size % 2)
                await ws.send(text)
                assert await ws.recv() == text
                data = os.urandom(size)
                await ws.send(data)
                assert await ws.recv() == data
            assert await asyncio.wait_for(ws.ping(b"through the proxy"), 5) >= 0  # its pong came back
            await ws.close(4001, "client says bye")
            for _ in range(100):
                if (4001, "client says bye") in Echo.closes:
                    break
                await asyncio.sleep(0.02)
            assert (4001, "client says bye") in Echo.closes
            # and the other way
            ws = await connect(proxy, via)
            await ws.send("close me")
            with pytest.raises(wsfast.ConnectionClosed) as info:
                await ws.recv()
            assert (info.value.code, info.value.reason) == (4002, "server says bye")
        finally:
            await app.stop(timeout=2)

    run(main(), timeout=60)


@pytest.mark.parametrize("via", VIAS)
def test_deflate_through_the_proxy(run, proxy, via):
    """permessage-deflate is negotiated end to end (the proxy passes the
    Sec-WebSocket-Extensions headers and the RSV1 frames through untouched)."""
    async def main():
        app = await backend(proxy, websocket_compression="deflate")
        try:
            ws = await connect(proxy, via, compression="deflate")
            assert [type(ext).__name__ for ext in ws.extensions] == ["PerMessageDeflate"]
            text = "wsfast through a proxy, compressed. " * 30_000  # ~1 MiB, compressible
            await ws.send(text)
            assert await ws.recv() == text
            data = os.urandom(2**20)  # incompressible: the frame grows a little
            await ws.send(data)
            assert await ws.recv() == data
            for size in (0, 1, 200, 70_000):
                await ws.send("z" * size)
                assert await ws.recv() == "z" * size
            await ws.close(1000, "done")
        finally:
            await app.stop(timeout=2)

    run(main(), timeout=60)


@pytest.mark.parametrize("via", VIAS)
def test_the_client_address_comes_from_the_proxy_and_cannot_be_spoofed(run, proxy, via):
    async def main():
        app = await backend(proxy)
        try:
            ws = await connect(proxy, via, "/ws?who=1",
                               extra_headers={"X-Forwarded-For": "6.6.6.6"})
            assert await ws.recv() == f"you are {CLIENT_IP} over http"
            await ws.close()
        finally:
            await app.stop(timeout=2)
        # a backend that trusts no proxy sees the proxy itself
        app = await backend(proxy, trusted_proxies=None)
        try:
            ws = await connect(proxy, via, "/ws?who=1")
            assert await ws.recv() == ("you are " + (PROXY_IP if via == "tcp" else "") + " over http")
            await ws.close()
        finally:
            await app.stop(timeout=2)

    run(main(), timeout=30)


def test_keepalive_pings_keep_an_idle_connection_through_the_proxy(proxy):
    from interop_helpers import run_in_loop

    async def main():
        app = await backend(proxy, websocket_ping_interval=READ_TIMEOUT / 4)
        try:
            kept = await connect(proxy, "uds")
            cut = await connect(proxy, "uds", "/quiet", ping_interval=None)
            await asyncio.sleep(READ_TIMEOUT * 1.5)
            await kept.send("still here")
            assert await kept.recv() == "still here"
            with pytest.raises(wsfast.ConnectionClosed):
                await cut.send("too late")
                await asyncio.wait_for(cut.recv(), 5)
            await kept.close()
        finally:
            await app.stop(timeout=2)

    run_in_loop("asyncio", main(), timeout=30)


def test_tls_terminated_at_the_proxy(run, proxy):
    async def main():
        app = await backend(proxy)
        try:
            ws = await connect(proxy, "uds", "/ws?who=1", tls=True)
            assert await ws.recv() == f"you are {CLIENT_IP} over https"
            for size in (0, 70000, 4 * 2**20):
                data = os.urandom(size)
                await ws.send(data)
                assert await ws.recv() == data
            await ws.close(4001, "bye over tls")
        finally:
            await app.stop(timeout=2)

    run(main(), timeout=30)


@pytest.mark.parametrize("via", ["pp1", "pp2"])
def test_the_proxy_protocol_from_haproxy(run, proxy, via):
    # send-proxy (v1) and send-proxy-v2: the client's address comes in the
    # PROXY header, whatever X-Forwarded-For says, with no trusted_proxies.
    if not isinstance(proxy, HAProxy):
        pytest.skip("nginx speaks the PROXY protocol to backends only in its stream module")

    async def main():
        app = wsfast.Application([(r"/ws", Echo)], proxy_protocol=True)
        await app.listen(proxy.pp_port, host="127.0.0.1")
        try:
            ws = await connect(proxy, via, "/ws?who=1", extra_headers={"X-Forwarded-For": "6.6.6.6"})
            assert await ws.recv() == f"you are {CLIENT_IP} over http"
            await ws.send(b"x" * 100000)
            assert await ws.recv() == b"x" * 100000
            await ws.close()
        finally:
            await app.stop(timeout=2)

    run(main(), timeout=30)
