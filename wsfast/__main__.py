"""Command line: ``python -m wsfast COMMAND``.

* ``echo``: an echo server (text back as text, binary as binary) on every
  path, for conformance runs and benchmarks; ``--deflate`` accepts
  permessage-deflate (RFC 7692) offers.
* ``demo``: a page at ``/`` whose script talks to a small chat at
  ``/websocket``; open it in a browser (two tabs chat with each other).
* ``chat``: the chat (nicks, rooms, history, presence, reconnection) of
  :mod:`wsfast.chat`; ``--redis redis://host:port`` shares rooms between
  processes and machines, ``--workers N`` starts N processes on one port
  (SO_REUSEPORT), each with its own event loop; SIGHUP restarts them one at
  a time without closing the port.

SIGTERM/SIGINT: stop accepting, close every WebSocket with 1001, wait at
most ``--shutdown-timeout`` seconds for the closing handshakes, exit 0.
* ``asgi``: an ASGI application (FastAPI, Starlette) under uvicorn, with
  wsfast's WebSocket protocol class (:mod:`wsfast.asgi`); the arguments are
  uvicorn's (``python -m wsfast asgi app:app --port 8000``).
"""

import argparse
import itertools
import logging
import os
import signal
import ssl
import subprocess
import sys
import time
from types import FrameType
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Set, Tuple, Union

import wsfast
from wsfast import codec as _codec
from wsfast.deflate import DeflateOptions

DEMO_PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static", "demo.html")


class EchoHandler(wsfast.WebSocketHandler):
    """Echoes every message with its type: str as text, bytes as binary."""

    def check_origin(self, origin: str) -> bool:
        return True  # a test server: any page may connect

    def on_message(self, message: Union[str, bytes]) -> None:
        self.write_message(message)


class DemoPage(wsfast.RequestHandler):
    def get(self) -> None:
        with open(DEMO_PAGE, "rb") as f:
            self.set_header("Content-Type", "text/html; charset=UTF-8")
            self.write(f.read())


class ChatHandler(wsfast.WebSocketHandler):
    """Every text message goes to everyone connected, with the sender's
    name; binary messages are echoed to the sender."""

    clients: ClassVar[Set["ChatHandler"]] = set()
    _numbers = itertools.count(1)

    def open(self) -> None:
        self.name = f"guest-{next(self._numbers)}"
        ChatHandler.clients.add(self)
        self.write_message(f"* welcome, you are {self.name}; {len(self.clients)} online")
        self.broadcast(f"* {self.name} joined", skip=self)

    def on_message(self, message: Union[str, bytes]) -> None:
        if isinstance(message, bytes):
            self.write_message(message)
            return
        self.broadcast(f"{self.name}: {message}")

    def on_close(self) -> None:
        ChatHandler.clients.discard(self)
        self.broadcast(f"* {self.name} left")

    @classmethod
    def broadcast(cls, text: str, skip: Optional["ChatHandler"] = None) -> None:
        for client in list(cls.clients):
            if client is skip:
                continue
            try:
                client.write_message(text)
            except wsfast.ConnectionClosed:
                cls.clients.discard(client)


def _size(text: str) -> int:
    """``16777216``, ``16MiB``, ``64KiB`` or ``1M`` → bytes."""
    text = text.strip()
    units = {"k": 2**10, "kib": 2**10, "m": 2**20, "mib": 2**20, "g": 2**30, "gib": 2**30}
    lower = text.lower()
    for suffix in sorted(units, key=len, reverse=True):
        if lower.endswith(suffix):
            return int(float(lower[: -len(suffix)]) * units[suffix])
    return int(text)


def _common(parser: argparse.ArgumentParser, default_port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=default_port, help="port (default: %(default)s)")
    parser.add_argument(
        "--max-message-size", type=_size, default=16 * 2**20, metavar="N",
        help="largest message accepted, in bytes (suffixes KiB/MiB ok; default 16 MiB)",
    )
    parser.add_argument("--pure-python", action="store_true",
                        help="use the pure-Python frame codec instead of the Cython one")
    parser.add_argument("--no-uvloop", action="store_true", help="use the stdlib asyncio event loop")
    parser.add_argument("--ping-interval", type=float, default=None, metavar="SECONDS",
                        help="keepalive ping interval (default: 20 s, the library's; 0 turns pings off)")
    parser.add_argument("--deflate", action="store_true",
                        help="accept permessage-deflate (RFC 7692) offers (default: off)")
    parser.add_argument("--deflate-threshold", type=_size, default=None, metavar="N",
                        help="with --deflate: send messages shorter than N bytes uncompressed "
                             "(default 128)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    _tls(parser)
    _origins(parser)
    _limits(parser)
    _uds(parser)


def _origins(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allowed-host", action="append", default=None, metavar="NAME", dest="allowed_hosts",
        help="answer only requests whose Host header names NAME (repeat for several; "
             "'.example.com' for a domain and its subdomains, '*' for any). Default: "
             "localhost, 127.0.0.1 and ::1 when listening on a loopback address, else (and "
             "with --uds) any "
             "(see docs/security.md: DNS rebinding)")
    parser.add_argument(
        "--trusted-origin", action="append", default=None, metavar="ORIGIN", dest="trusted_origins",
        help="also accept WebSocket connections from pages of ORIGIN "
             "(e.g. https://app.example.com; repeat for several). Default: same origin only")


_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _server_settings(args: argparse.Namespace, loopback_default: bool = True) -> Dict[str, Any]:
    """``allowed_hosts``, ``trusted_origins``, ``trusted_proxies`` and ``max_connections``
    settings from the flags."""
    hosts = args.allowed_hosts
    # On a Unix socket the proxy in front decides which names reach us.
    if hosts is None and loopback_default and not args.uds and _is_loopback(args.host):
        hosts = list(_LOOPBACK_NAMES)
        if args.host not in hosts:
            hosts.append(args.host)
    settings: Dict[str, Any] = {}
    if hosts is not None:
        settings["allowed_hosts"] = hosts
    if args.max_connections is not None:
        settings["max_connections"] = args.max_connections
    if args.trusted_origins:
        settings["trusted_origins"] = args.trusted_origins
    if args.trusted_proxies:
        settings["trusted_proxies"] = args.trusted_proxies
    if args.proxy_protocol:
        settings["proxy_protocol"] = True
    return settings


def _uds(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--uds", metavar="PATH", default=None,
                        help="listen on the Unix socket PATH instead of --host/--port "
                             "(e.g. behind nginx: proxy_pass http://unix:PATH;)")
    parser.add_argument(
        "--trusted-proxy", action="append", default=None, metavar="ADDR", dest="trusted_proxies",
        help="believe the client address in Forwarded/X-Forwarded-For/X-Real-IP from this "
             "peer (an address, a network like 10.0.0.0/8, or 'unix'; repeatable)")
    parser.add_argument(
        "--proxy-protocol", action="store_true",
        help="every connection starts with a PROXY protocol v1/v2 header (HAProxy's send-proxy): "
             "the client's address comes from it; only for a port that the proxy alone can reach")


def _where(args: argparse.Namespace, srv: wsfast.Server, scheme: str) -> str:
    """``scheme://host:port`` or ``scheme+unix:PATH`` for the banner."""
    if args.uds:
        return f"{scheme}+unix:{srv.path}:"
    host = args.host if ":" not in args.host else f"[{args.host}]"
    return f"{scheme}://{host}:{srv.port}"


def _shutdown(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shutdown-timeout", type=float, default=None, metavar="SECONDS",
        help="on SIGTERM/SIGINT: stop accepting, close every WebSocket with 1001 and wait "
             "this long for the clients' closing handshakes before dropping the rest "
             "(default: 6 s, the close timeout + 1)")


def _limits(parser: argparse.ArgumentParser) -> None:
    _shutdown(parser)
    parser.add_argument("--max-connections", type=int, default=None, metavar="N",
                        help="answer 503 past N open connections (default: from the limit "
                             "on open files, `ulimit -n`, less a reserve)")


def _tls(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--certfile", metavar="PEM", default=None,
                        help="serve https/wss with this certificate chain (PEM)")
    parser.add_argument("--keyfile", metavar="PEM", default=None,
                        help="the private key of --certfile (default: in --certfile)")


def _ssl_context(args: argparse.Namespace, command: str) -> Optional[ssl.SSLContext]:
    """The server's SSLContext from --certfile/--keyfile, or None; exits
    with a readable message when the files cannot be used."""
    if args.certfile is None:
        if args.keyfile is not None:
            sys.exit(f"wsfast {command}: --keyfile needs --certfile")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(args.certfile, args.keyfile)
    except (OSError, ssl.SSLError) as exc:
        sys.exit(f"wsfast {command}: cannot load the certificate {args.certfile}"
                 f"{' / key ' + args.keyfile if args.keyfile else ''}: {exc}")
    return context


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wsfast",
        description="wsfast: a fast, conformant WebSocket server and client for asyncio.",
    )
    parser.add_argument("--version", action="version", version=f"wsfast {wsfast.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    echo = sub.add_parser("echo", help="run an echo server (conformance runs, benchmarks)",
                          description="Echo every message back, text as text and binary as binary, on every path.")
    _common(echo, 9001)
    demo = sub.add_parser("demo", help="serve a demo page and a chat at /websocket",
                          description="Serve a page at / whose script chats over ws://HOST:PORT/websocket.")
    _common(demo, 8888)
    chat = sub.add_parser(
        "chat", help="serve the chat: rooms, history, presence; --redis to share rooms between workers",
        description="Serve the chat page at / and its WebSocket at /chat on one port. Rooms are "
                    "in-process unless --redis is given; --workers N starts N processes on the "
                    "port (SO_REUSEPORT), which then need --redis to share rooms.")
    chat.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    chat.add_argument("--port", type=int, default=8888, help="port (default: %(default)s)")
    chat.add_argument("--redis", metavar="URL", default=None,
                      help="share rooms through Redis, e.g. redis://127.0.0.1:6379 (default: in-process)")
    chat.add_argument("--workers", type=int, default=1, metavar="N",
                      help="processes serving the port (default 1; more than 1 needs --redis)")
    # Set by the --workers supervisor: the slot's listening socket(s), and a
    # pipe to say "serving" on.
    chat.add_argument("--worker-fd", type=int, action="append", default=None,
                      help=argparse.SUPPRESS)
    chat.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    chat.add_argument("--reuse-port", action="store_true",
                      help="listen with SO_REUSEPORT, so other processes can serve the same port")
    chat.add_argument("--no-uvloop", action="store_true", help="use the stdlib asyncio event loop")
    chat.add_argument("-v", "--verbose", action="store_true", help="log every request")
    _tls(chat)
    _origins(chat)
    _limits(chat)
    _uds(chat)
    chat.add_argument("--max-per-address", type=int, default=None, metavar="N",
                      help="WebSocket connections one client address may hold, else 429 "
                           "(default 16; 0: no limit; behind a proxy, see docs/security.md)")
    sub.add_parser("asgi", add_help=False,
                   help="run an ASGI app (FastAPI, Starlette) under uvicorn with wsfast's WebSocket class; "
                        "uvicorn's options follow")
    sub.add_parser("bench", add_help=False,
                   help="run the whole-system benchmarks (bench/run.py of a checkout; its options follow)")
    return parser


def _bench_main(argv: List[str]) -> int:
    """``python -m wsfast bench ARGS``: bench/run.py ARGS in a child process.
    The benchmark code lives in the checkout, not in the package."""
    import subprocess

    run = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "run.py")
    if not os.path.exists(run):
        print("wsfast bench: bench/run.py is not next to this wsfast (it ships with the source "
              "checkout, not the wheel); run it from a checkout: python bench/run.py", file=sys.stderr)
        return 2
    return subprocess.call([sys.executable, run, *argv])


def _asgi_main(argv: List[str]) -> int:
    """``python -m wsfast asgi APP [uvicorn options]``: uvicorn's command line
    with ``--ws wsfast.asgi:WSFastProtocol`` (needs ``pip install 'wsfast[asgi]'``)."""
    try:
        from uvicorn.main import main as uvicorn_main
    except ImportError:
        print("wsfast asgi: uvicorn is not installed (pip install 'wsfast[asgi]')", file=sys.stderr)
        return 2
    if any(arg == "--ws" or arg.startswith("--ws=") for arg in argv):
        print("wsfast asgi: --ws is wsfast's here; run uvicorn itself for another WebSocket class",
              file=sys.stderr)
        return 2
    status: int = uvicorn_main.main(args=[*argv, "--ws", "wsfast.asgi:WSFastProtocol"],
                                    prog_name="python -m wsfast asgi")
    return status


def _chat_main(args: argparse.Namespace) -> int:
    from wsfast import chat as _chat
    from wsfast.pubsub import RedisHub

    if args.workers < 1:
        print("wsfast chat: --workers must be at least 1", file=sys.stderr)
        return 2
    context = _ssl_context(args, "chat")
    if args.workers > 1:
        if not args.redis:
            print("wsfast chat: --workers N > 1 needs --redis redis://HOST:PORT: each worker "
                  "has its own rooms otherwise, and people on different workers would not "
                  "see each other's messages", file=sys.stderr)
            return 2
        if args.port == 0:
            print("wsfast chat: --workers N > 1 needs a fixed --port", file=sys.stderr)
            return 2
        if args.uds:
            print("wsfast chat: --workers N > 1 cannot share one --uds socket; start one "
                  "process per socket and list them in the proxy", file=sys.stderr)
            return 2
        return _supervise(args)
    if args.redis:
        try:
            import redis.asyncio  # noqa: F401
        except ImportError:
            print("wsfast chat: --redis needs redis-py: pip install 'redis>=5' hiredis", file=sys.stderr)
            return 2
        hub: Optional[RedisHub] = RedisHub(args.redis, history=_chat.HISTORY)
    else:
        hub = None
    limits = {} if args.max_per_address is None else {"max_per_address": args.max_per_address}
    server = _chat.ChatServer(hub, **limits)

    def started(srv: wsfast.Server) -> None:
        import asyncio

        loop_name = type(asyncio.get_running_loop()).__module__.split(".")[0]
        rooms = f"rooms shared through {args.redis}" if args.redis else "in-process rooms"
        s = "s" if context is not None else ""
        print(f"wsfast chat: open {_where(args, srv, 'http' + s)}/ in a browser "
              f"(WebSocket {_where(args, srv, 'ws' + s)}/chat; {rooms}; pid {os.getpid()}, "
              f"codec {_codec.IMPLEMENTATION}, loop {loop_name})", flush=True)
        if args.ready_fd is not None:
            os.write(args.ready_fd, b"1")
            os.close(args.ready_fd)

    sock = None
    if args.worker_fd:
        import socket

        sock = [socket.socket(fileno=fd) for fd in args.worker_fd]
    try:
        _chat.run(server, args.host, args.port, reuse_port=args.reuse_port, ssl=context, path=args.uds,
                  sock=sock,
                  use_uvloop=False if args.no_uvloop else None, on_start=started,
                  shutdown_timeout=args.shutdown_timeout,
                  **_server_settings(args))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        where = args.uds or f"{args.host}:{args.port}"
        print(f"wsfast chat: cannot listen on {where}: {exc}", file=sys.stderr)
        return 1
    return 0


def _supervise(args: argparse.Namespace) -> int:
    """Serve the port with ``args.workers`` single-worker processes.

    The supervisor binds one SO_REUSEPORT socket per worker slot and keeps
    them all open; a worker serves its slot's socket (inherited, ``--worker-fd``),
    so the kernel spreads connections over the workers and a slot's queue
    outlives its worker: nothing is refused while a worker is replaced.
    SIGINT/SIGTERM: stop every worker (each closes 1001, waits bounded) and
    exit. SIGHUP: a rolling restart, one slot at a time: start the
    replacement, wait until it serves, then SIGTERM the old worker. A worker
    that dies is replaced."""
    from wsfast.web import bind_sockets

    try:
        slots = [bind_sockets(args.host, args.port, reuse_port=True) for _ in range(args.workers)]
    except OSError as exc:
        print(f"wsfast chat: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    command = [sys.executable, "-m", "wsfast", "chat", "--host", args.host, "--port", str(args.port),
               "--redis", args.redis, "--workers", "1"]
    if args.no_uvloop:
        command.append("--no-uvloop")
    if args.verbose:
        command.append("-v")
    if args.certfile:
        command += ["--certfile", args.certfile]
    if args.keyfile:
        command += ["--keyfile", args.keyfile]
    for name in args.allowed_hosts or ():
        command += ["--allowed-host", name]
    for origin in args.trusted_origins or ():
        command += ["--trusted-origin", origin]
    for proxy in args.trusted_proxies or ():
        command += ["--trusted-proxy", proxy]
    if args.proxy_protocol:
        command.append("--proxy-protocol")
    if args.max_connections is not None:
        command += ["--max-connections", str(args.max_connections)]
    if args.max_per_address is not None:
        command += ["--max-per-address", str(args.max_per_address)]
    if args.shutdown_timeout is not None:
        command += ["--shutdown-timeout", str(args.shutdown_timeout)]
    # How long a stopping worker may take: its shutdown timeout (default
    # close timeout + 1 s), the hub's drain (2 s) and a margin.
    stop_wait = (6.0 if args.shutdown_timeout is None else args.shutdown_timeout) + 10.0
    stopping = False
    reloads = 0

    def stop(signum: int, frame: Optional[FrameType]) -> None:
        nonlocal stopping
        stopping = True

    def reload(signum: int, frame: Optional[FrameType]) -> None:
        nonlocal reloads
        reloads += 1

    def spawn(slot: int) -> "Tuple[subprocess.Popen[bytes], int]":
        """A worker for ``slot`` and the read end of its ready pipe."""
        fds = [sock.fileno() for sock in slots[slot]]
        ready_r, ready_w = os.pipe()
        extra = [arg for fd in fds for arg in ("--worker-fd", str(fd))]
        try:
            worker = subprocess.Popen([*command, *extra, "--ready-fd", str(ready_w)],
                                      pass_fds=[*fds, ready_w])
        finally:
            os.close(ready_w)
        return worker, ready_r

    def wait_ready(worker: "subprocess.Popen[bytes]", ready_r: int, timeout: float = 30.0) -> bool:
        """True once ``worker`` serves; False if it exits or takes longer
        than ``timeout`` (or the supervisor is told to stop)."""
        import select

        deadline = time.monotonic() + timeout
        try:
            while not stopping and time.monotonic() < deadline:
                if select.select([ready_r], [], [], 0.2)[0]:
                    return os.read(ready_r, 1) == b"1"  # b"": it exited first
            return False
        finally:
            os.close(ready_r)

    def retire(worker: "subprocess.Popen[bytes]") -> None:
        """SIGTERM ``worker`` and wait (bounded) for its graceful exit."""
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(stop_wait)
        except subprocess.TimeoutExpired:
            print(f"wsfast chat: worker {worker.pid} still running {stop_wait:g} s after "
                  "SIGTERM; killing it", file=sys.stderr, flush=True)
            worker.kill()
            worker.wait()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, reload)
    workers: "List[subprocess.Popen[bytes]]" = []
    status = 0
    try:
        for slot in range(args.workers):
            worker, ready_r = spawn(slot)
            workers.append(worker)
            if not wait_ready(worker, ready_r):
                if not stopping:
                    code = worker.poll()
                    print(f"wsfast chat: worker {worker.pid} "
                          f"{'exited with %s' % code if code is not None else 'did not start'} "
                          "at start; stopping", file=sys.stderr)
                    status = code or 1
                return status
        print(f"wsfast chat: {args.workers} workers on port {args.port} "
              f"(pids {' '.join(str(w.pid) for w in workers)}), rooms shared through {args.redis}; "
              "SIGHUP: rolling restart", flush=True)
        done_reloads = 0
        while not stopping:
            time.sleep(0.2)
            for slot, worker in enumerate(workers):
                code = worker.poll()
                if code is None or stopping:
                    continue
                print(f"wsfast chat: worker {worker.pid} exited with {code}; starting another",
                      file=sys.stderr, flush=True)
                workers[slot], ready_r = spawn(slot)
                if not wait_ready(workers[slot], ready_r):
                    time.sleep(1.0)  # a worker that cannot start: not a busy loop
            if reloads != done_reloads and not stopping:
                done_reloads = reloads
                print("wsfast chat: SIGHUP: rolling restart", flush=True)
                for slot in range(len(workers)):
                    if stopping:
                        break
                    new, ready_r = spawn(slot)
                    if not wait_ready(new, ready_r):
                        if stopping:
                            retire(new)
                            break
                        print(f"wsfast chat: the new worker {new.pid} did not start; keeping "
                              f"{workers[slot].pid} and the rest, rolling restart abandoned",
                              file=sys.stderr, flush=True)
                        retire(new)
                        break
                    old, workers[slot] = workers[slot], new
                    retire(old)
                else:
                    print(f"wsfast chat: rolling restart done (pids "
                          f"{' '.join(str(w.pid) for w in workers)})", flush=True)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + stop_wait
        for worker in workers:
            try:
                worker.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        for sockets in slots:
            for sock in sockets:
                sock.close()
    return status


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # every later argument belongs to bench/run.py
        return _bench_main(argv[1:])
    if argv[:1] == ["asgi"]:  # every later argument belongs to uvicorn
        return _asgi_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if args.shutdown_timeout is not None and not args.shutdown_timeout >= 0:
        print(f"wsfast {args.command}: --shutdown-timeout must be 0 or more seconds",
              file=sys.stderr)
        return 2
    if args.command == "chat":
        return _chat_main(args)
    codec_name = "python" if args.pure_python else _codec.IMPLEMENTATION
    context = _ssl_context(args, args.command)
    settings = dict(
        websocket_max_message_size=args.max_message_size,
        codec=codec_name,
        # echo is a test server (conformance suites, benchmarks): any host
        # unless asked; the demo is a page for a browser.
        **_server_settings(args, loopback_default=args.command == "demo"),
    )
    if args.ping_interval is not None:  # else the library's default (keepalive on)
        settings["websocket_ping_interval"] = args.ping_interval
    if args.deflate:
        deflate: Dict[str, Any] = {}
        if args.deflate_threshold is not None:
            deflate["threshold"] = args.deflate_threshold
        settings["websocket_compression"] = DeflateOptions(**deflate)
    if args.command == "echo":
        app = wsfast.Application([(r"/.*", EchoHandler)], **settings)
        path = "/"
    else:
        app = wsfast.Application([(r"/", DemoPage), (r"/websocket", ChatHandler)], **settings)
        path = "/websocket"

    def started(server: wsfast.Server) -> None:
        loop_name = type(__import__("asyncio").get_running_loop()).__module__.split(".")[0]
        s = "s" if context is not None else ""
        kind = ("echo server" if args.command == "echo"
                else f"demo: open {_where(args, server, 'http' + s)}/ in a browser;")
        print(f"wsfast {kind} {_where(args, server, 'ws' + s)}{path} "
              f"(codec {codec_name}, loop {loop_name}, max message {args.max_message_size} bytes"
              f"{', permessage-deflate' if args.deflate else ''})",
              flush=True)

    try:
        wsfast.run(app, host=args.host, port=args.port, ssl=context, path=args.uds,
                   use_uvloop=False if args.no_uvloop else None, on_start=started,
                   shutdown_timeout=args.shutdown_timeout)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        where = args.uds or f"{args.host}:{args.port}"
        print(f"wsfast: cannot listen on {where}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
