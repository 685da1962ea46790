"""Command line: ``python -m wsfast COMMAND``.

* ``echo``: an echo server (text back as text, binary as binary) on every
  path, for conformance runs and benchmarks; ``--deflate`` accepts
  permessage-deflate (RFC 7692) offers.
* ``demo``: a page at ``/`` whose script talks to a small chat at
  ``/websocket``; open it in a browser (two tabs chat with each other).
"""

import argparse
import itertools
import logging
import os
import sys

import wsfast
from wsfast import codec as _codec
from wsfast.deflate import DeflateOptions

DEMO_PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static", "demo.html")


class EchoHandler(wsfast.WebSocketHandler):
    """Echoes every message with its type: str as text, bytes as binary."""

    def check_origin(self, origin):
        return True  # a test server: any page may connect

    def on_message(self, message):
        self.write_message(message)


class DemoPage(wsfast.RequestHandler):
    def get(self):
        with open(DEMO_PAGE, "rb") as f:
            self.set_header("Content-Type", "text/html; charset=UTF-8")
            self.write(f.read())


class ChatHandler(wsfast.WebSocketHandler):
    """Every text message goes to everyone connected, with the sender's
    name; binary messages are echoed to the sender."""

    clients = set()
    _numbers = itertools.count(1)

    def open(self):
        self.name = f"guest-{next(self._numbers)}"
        ChatHandler.clients.add(self)
        self.write_message(f"* welcome, you are {self.name}; {len(self.clients)} online")
        self.broadcast(f"* {self.name} joined", skip=self)

    def on_message(self, message):
        if isinstance(message, bytes):
            self.write_message(message)
            return
        self.broadcast(f"{self.name}: {message}")

    def on_close(self):
        ChatHandler.clients.discard(self)
        self.broadcast(f"* {self.name} left")

    @classmethod
    def broadcast(cls, text, skip=None):
        for client in list(cls.clients):
            if client is skip:
                continue
            try:
                client.write_message(text)
            except wsfast.ConnectionClosed:
                cls.clients.discard(client)


def _size(text):
    """``16777216``, ``16MiB``, ``64KiB`` or ``1M`` → bytes."""
    text = text.strip()
    units = {"k": 2**10, "kib": 2**10, "m": 2**20, "mib": 2**20, "g": 2**30, "gib": 2**30}
    lower = text.lower()
    for suffix in sorted(units, key=len, reverse=True):
        if lower.endswith(suffix):
            return int(float(lower[: -len(suffix)]) * units[suffix])
    return int(text)


def _common(parser, default_port):
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
                        help="send keepalive pings (default: off)")
    parser.add_argument("--deflate", action="store_true",
                        help="accept permessage-deflate (RFC 7692) offers (default: off)")
    parser.add_argument("--deflate-threshold", type=_size, default=None, metavar="N",
                        help="with --deflate: send messages shorter than N bytes uncompressed "
                             "(default 128)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")


def build_parser():
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
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    codec_name = "python" if args.pure_python else _codec.IMPLEMENTATION
    settings = dict(
        websocket_max_message_size=args.max_message_size,
        websocket_ping_interval=args.ping_interval,
        codec=codec_name,
    )
    if args.deflate:
        deflate = {}
        if args.deflate_threshold is not None:
            deflate["threshold"] = args.deflate_threshold
        settings["websocket_compression"] = DeflateOptions(**deflate)
    if args.command == "echo":
        app = wsfast.Application([(r"/.*", EchoHandler)], **settings)
        path = "/"
    else:
        app = wsfast.Application([(r"/", DemoPage), (r"/websocket", ChatHandler)], **settings)
        path = "/websocket"

    def started(server):
        loop_name = type(__import__("asyncio").get_running_loop()).__module__.split(".")[0]
        host = args.host if ":" not in args.host else f"[{args.host}]"
        kind = "echo server" if args.command == "echo" else "demo: open http://%s:%d/ in a browser;" % (host, server.port)
        print(f"wsfast {kind} ws://{host}:{server.port}{path} "
              f"(codec {codec_name}, loop {loop_name}, max message {args.max_message_size} bytes"
              f"{', permessage-deflate' if args.deflate else ''})",
              flush=True)

    try:
        wsfast.run(app, host=args.host, port=args.port, use_uvloop=False if args.no_uvloop else None,
                   on_start=started)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"wsfast: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
