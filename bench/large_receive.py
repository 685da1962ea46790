"""In-process cost of receiving large binary messages, with and without the
opt-in zero-copy receive (``zero_copy = True`` on the handler: a memoryview
valid during ``on_message``, and the parser's ``reuse_buffer``)::

    python bench/large_receive.py                      # 16 MiB messages, 20 per round
    python bench/large_receive.py --size 1MiB --messages 200

A ``WebSocketProtocol`` (server side, compiled codec unless
``WSFAST_NO_EXTENSIONS=1``) is fed masked frames through its real read path:
``get_buffer()`` (which lends the frame's own storage once a large frame is
under way, ``Connection.read_window``) and ``buffer_updated()``, 256 KiB per
read, as the event loop does from a socket. The handler reads the message
(sums 1 byte per 4 KiB page, so every page is touched, as a consumer would)
and answers nothing. Prints MB/s per variant, best of the rounds, rounds
interleaved; the difference is the allocation and first touch (page faults)
of a fresh payload per message, which the reuse saves.
"""

import argparse
import asyncio
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import wsfast  # noqa: E402
from hotpath_micro import NullTransport, Owner  # noqa: E402
from wsfast.connection import Side  # noqa: E402
from wsfast.protocol import Options, WebSocketProtocol  # noqa: E402


class Reader(wsfast.WebSocketHandler):
    total = 0

    def on_message(self, message):
        # touch one byte per page, as a consumer of the data would
        Reader.total += sum(message[::4096])


class ViewReader(Reader):
    zero_copy = True


def protocol_for(handler_class, codec):
    protocol = WebSocketProtocol(Side.SERVER, Options(codec=codec, max_message_size=2**30), Owner())
    protocol.connection_made(NullTransport())
    app = wsfast.Application([(r"/", handler_class)])
    handler = handler_class(app, None)
    handler.ws_connection = protocol
    protocol.upgrade(handler)
    return protocol


def parse_size(text):
    for suffix, mult in (("KiB", 2**10), ("MiB", 2**20), ("GiB", 2**30)):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * mult)
    return int(text)


def run(protocol, data, messages, read):
    view = memoryview(data)
    n = len(data)
    t0 = time.perf_counter()
    for _ in range(messages):
        pos = 0
        while pos < n:
            buf = protocol.get_buffer(read)
            k = min(len(buf), read, n - pos)
            buf[:k] = view[pos : pos + k]
            protocol.buffer_updated(k)
            pos += k
    return time.perf_counter() - t0


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=parse_size, default=16 * 2**20)
    ap.add_argument("--messages", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--read", type=parse_size, default=256 * 2**10)
    args = ap.parse_args()
    codec = "python" if os.environ.get("WSFAST_NO_EXTENSIONS") else None
    data = wsfast.codec.get_codec(codec).build_frame(2, os.urandom(args.size), mask_key=b"\x37\xfa\x21\x3d")
    best = {}
    for _ in range(args.rounds):
        for name, cls in (("bytes (default)", Reader), ("zero_copy", ViewReader)):
            protocol = protocol_for(cls, codec)
            run(protocol, data, 2, args.read)  # warm up
            seconds = run(protocol, data, args.messages, args.read)
            best[name] = min(best.get(name, seconds), seconds)
    for name, seconds in best.items():
        rate = args.size * args.messages / seconds / 1e6
        print(f"{name:16} {rate:8.0f} MB/s  ({seconds / args.messages * 1e3:.2f} ms per "
              f"{args.size} B message, best of {args.rounds})")


if __name__ == "__main__":
    asyncio.run(main())
