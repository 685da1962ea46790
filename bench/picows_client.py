"""A second, independent load client for the echo scenarios, built on
picows' client (its own handshake check, frame parser and masking), to
cross-check bench/loadclient.py:

    python bench/picows_client.py echo --port P --server-pid PID --connections 16 --inflight 8 --size 256
    python bench/run.py --quick --client picows --scenarios echo,rr --servers wsfast,picows

Nothing is shared with loadclient.py but the measuring window (CPU time of
both processes from /proc, the same as there, so the numbers compare) and
the JSON it prints. picows rejects a wrong ``Sec-WebSocket-Accept`` itself;
every echo is compared with the payload sent, byte for byte, and a
mismatch, a text frame or a close ends the run with an error.

Like loadclient.py it answers the echoes of one read together (at
``WSFrame.last_in_buffer``), but picows sends each message in its own
write, so the server gets them in more, smaller reads than from
loadclient.py (which sends them in one write): pipelined servers that
batch per read batch less. ``--cork`` puts the messages of one answer in one
TCP segment (TCP_CORK), the load loadclient.py makes.
"""

import argparse
import asyncio
import json
import os
import random
import socket
import sys
import time

from loadclient import Window  # the same CPU accounting as the main client

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect


class Mismatch(Exception):
    pass


async def run_echo(args):
    loop = asyncio.get_running_loop()
    payload = random.Random(args.size + 1).randbytes(args.size)
    stall = loop.create_future()
    state = {"total": 0, "record": False, "closing": False}
    rtts = []

    class Echo(WSListener):
        def on_ws_connected(self, transport: WSTransport):
            self.sent_at = time.perf_counter()
            self.due = 0
            self.sock = transport.underlying_transport.get_extra_info("socket") if args.cork else None
            for _ in range(args.inflight):
                transport.send(WSMsgType.BINARY, payload)

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame):
            if frame.msg_type != WSMsgType.BINARY or frame.get_payload_as_bytes() != payload:
                if not stall.done():
                    stall.set_exception(Mismatch(f"{frame.msg_type!r} frame of {frame.payload_size} bytes "
                                                 "is not the echo of the payload sent"))
                return
            state["total"] += 1
            self.due += 1
            if not frame.last_in_buffer:  # answer the echoes of one read together, as loadclient.py does
                return
            if state["record"]:
                now = time.perf_counter()
                rtts.append(now - self.sent_at)
                self.sent_at = now
            elif args.inflight == 1:
                self.sent_at = time.perf_counter()
            if self.due > 1 and self.sock is not None:  # --cork: the k frames leave in one segment
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
                for _ in range(self.due):
                    transport.send(WSMsgType.BINARY, payload)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
            else:
                for _ in range(self.due):
                    transport.send(WSMsgType.BINARY, payload)
            self.due = 0

        def on_ws_disconnected(self, transport: WSTransport):
            if not stall.done() and not state["closing"]:
                stall.set_exception(ConnectionError("the server closed the connection"))

    url = f"ws://127.0.0.1:{args.port}/"
    conns = [await ws_connect(Echo, url, max_frame_size=64 * 2**20) for _ in range(args.connections)]
    await asyncio.wait([stall], timeout=args.warmup)
    window = Window(args.server_pid)
    n0 = state["total"]
    window.start()
    state["record"] = args.inflight == 1
    await asyncio.wait([stall], timeout=args.duration)
    result = window.stop()
    state["record"] = False
    n = state["total"] - n0
    state["closing"] = True
    for transport, _ in conns:
        transport.disconnect()
    if stall.done():
        stall.result()
    if n == 0:
        raise Mismatch("no echo came back in the measured window")
    result.update(round_trips=n, round_trips_per_s=n / window.elapsed,
                  server_cpu_us_per_rt=1e6 * window.server_cpu / n, mb_per_s=n * args.size / window.elapsed / 1e6,
                  client="picows" + (" --cork" if args.cork else ""))
    if rtts:
        rtts.sort()
        result.update(rtt_p50_us=1e6 * rtts[len(rtts) // 2], rtt_p99_us=1e6 * rtts[int(len(rtts) * 0.99)])
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["echo", "latency"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--connections", type=int, default=None)
    parser.add_argument("--inflight", type=int, default=None)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--split", action="store_true",
                        help="one write per message: what this client always does without --cork")
    parser.add_argument("--cork", action="store_true",
                        help="send the messages that answer one read in one TCP segment (TCP_CORK around the "
                             "sends), as loadclient.py does with one write; without it each message is a write")
    args = parser.parse_args(argv)
    if args.split:
        args.cork = False
    if args.connections is None:
        args.connections = 16 if args.mode == "echo" else 1
    if args.inflight is None:
        args.inflight = 8 if args.mode == "echo" else 1
    import uvloop

    try:
        result = uvloop.run(asyncio.wait_for(run_echo(args), args.timeout * 3))
    except Exception as exc:  # noqa: BLE001 - one JSON line either way, the orchestrator reads it
        result = {"error": f"{type(exc).__name__}: {exc}"}
    result["mode"] = args.mode
    print(json.dumps(result), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main())
