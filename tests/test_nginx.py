"""wsfast behind a real nginx (Debian's package, started here on loopback):
nginx -> TCP and nginx -> a Unix socket, with the configuration of
docs/deploy.md. Through each: the handshake, text and binary echo from 0 B
to 16 MiB, ping/pong, a close with code and reason both ways, the client's
address from X-Forwarded-For (the backend trusts nginx only), and a
connection idle for longer than nginx's proxy_read_timeout that survives
because of wsfast's keepalive pings (and one without pings that nginx cuts);
and wss terminated at nginx, to the Unix-socket backend.
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
from test_server import run  # noqa: F401 (asyncio and uvloop)

import wsfast

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
READ_TIMEOUT = 2  # nginx's proxy_read_timeout here, seconds
CLIENT_IP = "127.0.0.3"  # the test's clients connect from here (all of 127/8 is local)
NGINX_IP = "127.0.0.2"  # nginx reaches the TCP backend from here: the one trusted proxy

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
            proxy_bind {nginx_ip};
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
                           port=self.port, nginx_ip=NGINX_IP, proxy_conf=proxy_conf,
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

    def start(self):
        self.proc = subprocess.Popen([NGINX, "-p", self.dir, "-c", self.conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.proc.stderr.read().decode()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("nginx did not listen")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def nginx():
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light; ci/test.sh does it)")
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (apt-get install openssl)")
    server = Nginx().start()
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
    ping_interval = 0  # no keepalive: nginx cuts it after proxy_read_timeout


async def backend(nginx, **settings):
    """The app on nginx's TCP and Unix-socket upstreams."""
    settings.setdefault("trusted_proxies", [NGINX_IP, "unix"])
    app = wsfast.Application([(r"/ws", Echo), (r"/quiet", QuietEcho)], **settings)
    await app.listen(nginx.backend_port, host="127.0.0.1")
    await app.listen(path=nginx.backend_path)
    return app


async def connect(nginx, via, path="/ws", tls=False, **kwargs):
    sock = socket.socket()
    sock.setblocking(False)
    sock.bind((CLIENT_IP, 0))
    port = nginx.tls_port if tls else nginx.port
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    if tls:
        kwargs["ssl"] = ssl.create_default_context(cafile=nginx.cert)
    scheme = "wss" if tls else "ws"
    return await wsfast.connect(f"{scheme}://127.0.0.1:{port}/{via}{path}", sock=sock,
                                max_message_size=32 * 2**20, **kwargs)


VIAS = ["tcp", "uds"]


@pytest.mark.parametrize("via", VIAS)
def test_echo_through_nginx(run, nginx, via):
    async def main():
        app = await backend(nginx)
        try:
            ws = await connect(nginx, via)
            for size in (0, 1, 125, 126, 65535, 65536, 2**20, 16 * 2**20):
                text = "é" * (size // 2) + "x" * (size % 2)
                await ws.send(text)
                assert await ws.recv() == text
                data = os.urandom(size)
                await ws.send(data)
                assert await ws.recv() == data
            assert await asyncio.wait_for(ws.ping(b"through nginx"), 5) >= 0  # its pong came back
            await ws.close(4001, "client says bye")
            for _ in range(100):
                if (4001, "client says bye") in Echo.closes:
                    break
                await asyncio.sleep(0.02)
            assert (4001, "client says bye") in Echo.closes
            # and the other way
            ws = await connect(nginx, via)
            await ws.send("close me")
            with pytest.raises(wsfast.ConnectionClosed) as info:
                await ws.recv()
            assert (info.value.code, info.value.reason) == (4002, "server says bye")
        finally:
            await app.stop(timeout=2)

    run(main(), timeout=60)


@pytest.mark.parametrize("via", VIAS)
def test_the_client_address_comes_from_nginx_and_cannot_be_spoofed(run, nginx, via):
    async def main():
        app = await backend(nginx)
        try:
            ws = await connect(nginx, via, "/ws?who=1",
                               extra_headers={"X-Forwarded-For": "6.6.6.6"})
            assert await ws.recv() == f"you are {CLIENT_IP} over http"
            await ws.close()
        finally:
            await app.stop(timeout=2)
        # a backend that trusts no proxy sees nginx itself
        app = await backend(nginx, trusted_proxies=None)
        try:
            ws = await connect(nginx, via, "/ws?who=1")
            assert await ws.recv() == ("you are " + (NGINX_IP if via == "tcp" else "") + " over http")
            await ws.close()
        finally:
            await app.stop(timeout=2)

    run(main(), timeout=30)


def test_keepalive_pings_keep_an_idle_connection_through_nginx(nginx):
    from interop_helpers import run_in_loop

    async def main():
        app = await backend(nginx, websocket_ping_interval=READ_TIMEOUT / 4)
        try:
            kept = await connect(nginx, "uds")
            cut = await connect(nginx, "uds", "/quiet", ping_interval=None)
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


def test_tls_terminated_at_nginx(run, nginx):
    async def main():
        app = await backend(nginx)
        try:
            ws = await connect(nginx, "uds", "/ws?who=1", tls=True)
            assert await ws.recv() == f"you are {CLIENT_IP} over https"
            for size in (0, 70000, 4 * 2**20):
                data = os.urandom(size)
                await ws.send(data)
                assert await ws.recv() == data
            await ws.close(4001, "bye over tls")
        finally:
            await app.stop(timeout=2)

    run(main(), timeout=30)
