"""wsfast echo + fan-out server (Cython codec, or the pure-Python twin with
``--pure-python``; ``--no-numpy`` keeps the twin from masking with numpy), on
uvloop, written as wsfast's README shows. ``--async``: the same handler as a
coroutine (``async def on_message``), as Tornado coroutine code and ASGI-style
applications write it."""

import os
import sys
from typing import ClassVar

if "--no-numpy" in sys.argv:  # before wsfast is imported
    os.environ["WSFAST_NO_NUMPY"] = "1"

# WSFAST_TREE: wsfast exported at a commit (bench/run.py --commit); else this checkout
sys.path.insert(0, os.environ.get("WSFAST_TREE")
                or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import _common

import wsfast

try:  # docs/DESIGN.md "Broadcast": encode once, the same bytes to every transport
    from wsfast import broadcast as _broadcast
except ImportError:  # not landed yet: the loop of write_message it replaces
    _broadcast = None

BROADCAST_API = "wsfast.broadcast" if _broadcast is not None else "write_message loop"


class Bench(wsfast.WebSocketHandler):
    clients: ClassVar[set] = set()

    def check_origin(self, origin):
        return True

    def open(self):
        self.clients.add(self)

    def on_close(self):
        self.clients.discard(self)

    def on_message(self, message):
        if type(message) is not str:
            self.write_message(message)
            return
        command = _common.parse_broadcast(message)
        if command is None:
            self.write_message(message)
            return
        clients = self.clients
        for payload in _common.payloads(*command):
            if _broadcast is not None:
                _broadcast(clients, payload, slow="queue")
            else:
                for client in list(clients):
                    try:
                        client.write_message(payload)
                    except wsfast.WebSocketError:
                        clients.discard(client)


class AsyncBench(Bench):
    async def on_message(self, message):
        # the echo as a coroutine, awaiting the write as the README says: it
        # suspends only over the write buffer's high-water mark (without the
        # await, 8 pipelined 1 MiB echoes pass max_write_buffer: 1008)
        if type(message) is not str:
            await self.write_message(message)
            return
        Bench.on_message(self, message)


class ZeroCopyBench(Bench):
    # The opt-in zero-copy receive: binary messages as a memoryview valid
    # during the call, the receive storage reused (docs/DESIGN.md). An echo
    # must copy what it keeps past the call: the write does (build_frame).
    zero_copy = True


def main():
    def options(p):
        p.add_argument("--zero-copy", action="store_true", help="a handler with zero_copy = True")
        p.add_argument("--pure-python", action="store_true")
        p.add_argument("--no-numpy", action="store_true")
        p.add_argument("--async", dest="use_async", action="store_true", help="async def on_message")
        p.add_argument("--no-ping", action="store_true",
                       help="no keepalive pings (runs slowed down past 20 s: bench/fanout_instr.py)")

    args = _common.parse_args(__doc__, options)
    _common.raise_nofile()
    app = wsfast.Application(
        [(r"/.*", AsyncBench if args.use_async else ZeroCopyBench if args.zero_copy else Bench)],
        codec="python" if args.pure_python else None,
        websocket_max_message_size=64 * 2**20,
        **({"websocket_ping_interval": 0} if args.no_ping else {}),
    )
    wsfast.run(app, host=args.host, port=args.port, use_uvloop=True, backlog=4096,
               on_start=lambda server: print(
                   f"wsfast {wsfast.__version__} codec={'python' if args.pure_python else wsfast.IMPLEMENTATION} "
                   f"numpy-masking={'off' if args.no_numpy else 'when importable'} "
                   f"broadcast={BROADCAST_API} on_message={'async' if args.use_async else 'sync'} from {os.path.dirname(wsfast.__file__)}", flush=True))


if __name__ == "__main__":
    main()
