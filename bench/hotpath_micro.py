"""In-process cost of the echo hot path, without sockets: ns per message.

    python bench/hotpath_micro.py                 # wsfast (compiled codec) vs the ceiling's parser
    python bench/hotpath_micro.py --size 256 --batch 8
    python bench/hotpath_micro.py --batch 1 --async   # request/response shape, async def on_message
    WSFAST_NO_EXTENSIONS=1 python bench/hotpath_micro.py
    # instructions per message, steadier than time on a shared machine:
    perf stat -e instructions:u python bench/hotpath_micro.py --only wsfast --rounds 1 --reads 20000
    (and --reads 40000: the difference over 160,000 messages)

A ``WebSocketProtocol`` upgraded with a ``WebSocketHandler`` that echoes as
bench/servers/wsfast_server.py does, fed reads of ``--batch`` masked binary
frames through ``get_buffer``/``buffer_updated``, writing to a transport that
drops the bytes; beside it bench/servers/ceiling_server.py's ``Ceiling``
protocol fed the same reads. The difference is what wsfast's Python and C
cost per message beyond the least a Python server must do; the syscalls both
make come on top (bench/run.py measures the whole).
"""

import argparse
import asyncio
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "servers"))

import wsfast
from wsfast.connection import Side
from wsfast.protocol import Options, WebSocketProtocol


class NullTransport(asyncio.Transport):
    def __init__(self):
        super().__init__()
        self.written = 0

    def write(self, data):
        self.written += len(data)

    def writelines(self, parts):
        for part in parts:
            self.written += len(part)

    def set_write_buffer_limits(self, high=None, low=None):
        pass

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 1) if name in ("peername", "sockname") else default

    def is_closing(self):
        return False

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass


class Echo(wsfast.WebSocketHandler):
    def on_message(self, message):  # as bench/servers/wsfast_server.py
        if type(message) is not str:
            self.write_message(message)
            return
        self.write_message(message)


class AsyncEcho(wsfast.WebSocketHandler):
    async def on_message(self, message):  # as bench/servers/wsfast_server.py --async
        if type(message) is not str:
            await self.write_message(message)
            return
        await self.write_message(message)


class Owner:
    def connection_made(self, protocol):
        pass

    def connection_lost(self, protocol):
        pass


def frame(size, text=False):
    from wsfast import codec
    return codec.get_codec().build_frame(1 if text else 2, b"x" * size, mask_key=b"\x37\xfa\x21\x3d")


def feed(protocol, data, reads):
    n = len(data)
    t0 = time.perf_counter_ns()
    for _ in range(reads):
        view = protocol.get_buffer(n)
        view[:n] = data
        protocol.buffer_updated(n)
    return time.perf_counter_ns() - t0


def wsfast_protocol(codec, handler_class=Echo):
    protocol = WebSocketProtocol(Side.SERVER, Options(codec=codec), Owner())
    protocol.connection_made(NullTransport())
    app = wsfast.Application([(r"/", handler_class)])
    handler = handler_class(app, None)
    handler.ws_connection = protocol
    if type(handler).write_message is wsfast.WebSocketHandler.write_message:
        handler.write_message = protocol.write_message  # as web.py does at the upgrade
    protocol.upgrade(handler)
    return protocol


def ceiling_protocol():
    import ceiling_server
    protocol = ceiling_server.Ceiling()
    protocol.connection_made(NullTransport())
    protocol.upgraded = True
    return protocol


async def outside_task(fn, *args):
    """fn(*args) called from a loop callback, outside any task, as the event
    loop calls buffer_updated (an async on_message then runs in the read)."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    loop.call_soon(lambda: fut.set_result(fn(*args)))
    return await fut


async def main(args):
    data = frame(args.size, args.text) * args.batch
    messages = args.reads * args.batch
    codec = "python" if os.environ.get("WSFAST_NO_EXTENSIONS") else None
    handler_class = AsyncEcho if args.use_async else Echo
    results = {}
    for _ in range(args.rounds):
        for name, make in (("wsfast", lambda: wsfast_protocol(codec, handler_class)), ("ceiling", ceiling_protocol)):
            if args.only and name != args.only:
                continue
            protocol = make()
            await outside_task(feed, protocol, data, 200)  # warm up
            ns = await outside_task(feed, protocol, data, args.reads) / messages
            results.setdefault(name, []).append(ns)
    for name, values in results.items():
        print(f"{name:8} {min(values):7.1f} ns/message (best of {args.rounds}; "
              f"{args.size} B {'text' if args.text else 'binary'}, {args.batch} per read"
              f"{', async def on_message' if args.use_async and name == 'wsfast' else ''})")
    if not args.only:
        print(f"wsfast - ceiling: {min(results['wsfast']) - min(results['ceiling']):.1f} ns/message")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=8, help="frames per read")
    p.add_argument("--reads", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--text", action="store_true")
    p.add_argument("--async", dest="use_async", action="store_true", help="wsfast with async def on_message")
    p.add_argument("--only", choices=["wsfast", "ceiling"],
                   help="run one side (for perf stat / callgrind instruction counts)")
    asyncio.run(main(p.parse_args()))
