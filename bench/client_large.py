"""Client CPU per large message: ``await ws.recv()`` against the opt-in
zero-copy callback (``wsfast.connect(uri, on_message=callback)``: a
memoryview valid during the call, the parser reusing a large message's
storage for the next)::

    python bench/client_large.py                       # 16 MiB, 30 per run, 3 rounds
    python bench/client_large.py --size 1MiB --messages 300 --loop asyncio

A wsfast server in its own process (pinned to the last CPU) sends
``--messages`` binary messages of ``--size`` bytes (one frame each, random
bytes) as fast as the client takes them; the client (pinned to the first
CPU, uvloop by default, the compiled codec unless ``WSFAST_NO_EXTENSIONS=1``)
receives them with each variant in turn, rounds interleaved. Variants: the
message untouched, or read whole (``zlib.crc32`` of the payload, as a
consumer that parses or hashes it would). Reported per message, medians of
the rounds: the client process's CPU time (user + system, getrusage) and its
minor page faults (the first touch of freshly allocated memory).
"""

import argparse
import asyncio
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import wsfast  # noqa: E402


def parse_size(text):
    for suffix, mult in (("KiB", 2**10), ("MiB", 2**20), ("GiB", 2**30)):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * mult)
    return int(text)


# -- the server (a subprocess) ---------------------------------------------------------


class Sender(wsfast.WebSocketHandler):
    """On "N SIZE": N binary messages of SIZE bytes, then the text "done"."""

    payloads = {}

    async def on_message(self, message):
        count, size = map(int, message.split())
        data = Sender.payloads.get(size)
        if data is None:
            data = Sender.payloads[size] = os.urandom(size)
        for _ in range(count):
            await self.write_message(data, binary=True)
        await self.write_message("done")


def serve(port):
    app = wsfast.Application([(r"/", Sender)], websocket_max_message_size=2**31)
    wsfast.run(app, host="127.0.0.1", port=port)


# -- the client ---------------------------------------------------------------------------


def usage():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_minflt


async def with_recv(uri, count, size, work):
    async with wsfast.connect(uri, max_message_size=2 * size) as ws:
        await ws.send("1 16")  # warm up (connection, first allocations)
        while await ws.recv() != "done":
            pass
        cpu0, faults0 = usage()
        await ws.send(f"{count} {size}")
        while True:
            message = await ws.recv()
            if type(message) is str:
                break
            if work:
                zlib.crc32(message)
        cpu1, faults1 = usage()
    return cpu1 - cpu0, faults1 - faults0


async def with_callback(uri, count, size, work):
    done = asyncio.get_running_loop().create_future()

    def on_message(message):
        if type(message) is str:
            if message == "done":
                done.set_result(None)
        elif work:
            zlib.crc32(message)

    async with wsfast.connect(uri, max_message_size=2 * size, on_message=on_message) as ws:
        await ws.send("1 16")
        await done
        done = asyncio.get_running_loop().create_future()
        cpu0, faults0 = usage()
        await ws.send(f"{count} {size}")
        await done
        cpu1, faults1 = usage()
    return cpu1 - cpu0, faults1 - faults0


VARIANTS = {
    "recv(), untouched": (with_recv, False),
    "on_message view, untouched": (with_callback, False),
    "recv() + crc32": (with_recv, True),
    "on_message view + crc32": (with_callback, True),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=parse_size, default=16 * 2**20)
    ap.add_argument("--messages", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(args.serve)
    cpus = sorted(os.sched_getaffinity(0))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", str(port)])
    try:
        os.sched_setaffinity(server.pid, {cpus[-1]})
        os.sched_setaffinity(0, {cpus[0]})
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        if args.loop == "uvloop":
            import uvloop

            new_loop = uvloop.new_event_loop
        else:
            new_loop = asyncio.new_event_loop
        uri = f"ws://127.0.0.1:{port}/"
        results = {name: [] for name in VARIANTS}
        for _ in range(args.rounds):
            for name, (variant, work) in VARIANTS.items():
                loop = new_loop()
                try:
                    results[name].append(
                        loop.run_until_complete(variant(uri, args.messages, args.size, work))
                    )
                finally:
                    loop.close()
    finally:
        server.terminate()
        server.wait()
    codec = wsfast.codec.IMPLEMENTATION
    load = os.getloadavg()[0]
    print(f"{args.messages} messages of {args.size} B per run, {args.loop}, {codec} codec, "
          f"medians of {args.rounds} interleaved rounds; 1-min loadavg {load:.1f}")
    print()
    print("| variant | client CPU ms / message | minor page faults / message |")
    print("|---|---:|---:|")
    for name, runs in results.items():
        cpu = statistics.median(c for c, _ in runs) / args.messages * 1e3
        faults = statistics.median(f for _, f in runs) / args.messages
        print(f"| {name} | {cpu:.2f} | {faults:,.0f} |")


if __name__ == "__main__":
    main()
