"""Client speed: clients of each library in request/response loops against
one server (picows' echo server on uvloop, bench/servers/picows_server.py),
each client process pinned to its own core, the server to another.

    python bench/client_bench.py                       # 3 interleaved rounds, every case
    python bench/client_bench.py --rounds 1 --duration 1 --sizes 256 --conns 1

Each connection sends a binary message and waits for its echo, again and
again (``await ws.send(); await ws.recv()`` for the async clients, the next
send from ``on_ws_frame`` for picows' callback client). Reported per case:
round trips/s and the **client's CPU µs per round trip** (process CPU time,
user + system, over the measuring window, ÷ round trips): on a small,
loaded machine the rate is bounded by waking the other core, the CPU per
round trip is what a client costs. Medians over the rounds; the rounds
interleave the clients so that load changes hit them all alike.

Clients (all on uvloop): wsfast (``connect()``, ``send``/``recv``), picows
(its callback ``WSListener``), websockets (``websockets.asyncio.client``),
aiohttp (``ClientSession.ws_connect``). None compresses.
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLIENTS = ("wsfast", "picows", "websockets", "aiohttp")


# -- the client side (one process per case) ----------------------------------------------


async def wsfast_client(uri, conns, payload, state):
    sys.path.insert(0, ROOT)
    import wsfast

    async def one():
        ws = await wsfast.connect(uri, ping_interval=None, max_message_size=2**24)
        send, recv = ws.send, ws.recv
        while not state["stop"]:
            await send(payload)
            await recv()
            state["n"] += 1
        await ws.close()

    await asyncio.gather(*(one() for _ in range(conns)))


async def websockets_client(uri, conns, payload, state):
    from websockets.asyncio.client import connect

    async def one():
        async with connect(uri, max_size=None, compression=None, ping_interval=None) as ws:
            send, recv = ws.send, ws.recv
            while not state["stop"]:
                await send(payload)
                await recv()
                state["n"] += 1

    await asyncio.gather(*(one() for _ in range(conns)))


async def aiohttp_client(uri, conns, payload, state):
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async def one():
            async with session.ws_connect(uri, max_msg_size=0, autoping=True, compress=0) as ws:
                send, receive = ws.send_bytes, ws.receive
                while not state["stop"]:
                    await send(payload)
                    await receive()
                    state["n"] += 1

        await asyncio.gather(*(one() for _ in range(conns)))


async def picows_client(uri, conns, payload, state):
    from picows import WSListener, WSMsgType, ws_connect

    loop = asyncio.get_running_loop()
    done = loop.create_future()
    open_ = [conns]

    class Echo(WSListener):
        def on_ws_connected(self, transport):
            transport.send(WSMsgType.BINARY, payload)

        def on_ws_frame(self, transport, frame):
            if frame.msg_type != WSMsgType.BINARY:
                return
            state["n"] += 1
            if state["stop"]:
                transport.send_close()
                transport.disconnect()
                return
            transport.send(WSMsgType.BINARY, payload)

        def on_ws_disconnected(self, transport):
            open_[0] -= 1
            if not open_[0] and not done.done():
                done.set_result(None)

    for _ in range(conns):
        await ws_connect(Echo, uri, max_frame_size=2**24)
    await done


async def worker(args):
    payload = os.urandom(args.size)
    state = {"n": 0, "stop": False}
    client = globals()[f"{args.client}_client"]
    task = asyncio.ensure_future(client(args.uri, args.conns, payload, state))
    await asyncio.sleep(args.warmup)
    if task.done():
        task.result()
    n0, cpu0, t0 = state["n"], time.process_time(), time.perf_counter()
    await asyncio.sleep(args.duration)
    n1, cpu1, t1 = state["n"], time.process_time(), time.perf_counter()
    state["stop"] = True
    try:
        await asyncio.wait_for(task, 5)
    except asyncio.TimeoutError:
        pass
    rts = n1 - n0
    print(json.dumps({"round_trips": rts, "wall": t1 - t0, "cpu": cpu1 - cpu0}))


def run_worker(args):
    import uvloop

    os.sched_setaffinity(0, {args.cpu})
    uvloop.install()
    asyncio.run(worker(args))


# -- the driver ---------------------------------------------------------------------------


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port, cpu):
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "servers", "picows_server.py"), "--port", str(port)],
        cwd=os.path.join(HERE, "servers"),
    )
    os.sched_setaffinity(proc.pid, {cpu})
    import socket

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the picows server did not start")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--conns", default="1,16")
    parser.add_argument("--sizes", default="256,8192,102400")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--json", help="write the raw results here")
    # worker mode
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--uri", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.conns = int(args.conns)
        run_worker(args)
        return

    cpus = sorted(os.sched_getaffinity(0))
    client_cpu, server_cpu = cpus[0], cpus[-1]
    clients = args.clients.split(",")
    conns = [int(c) for c in args.conns.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    port = free_port()
    server = start_server(port, server_cpu)
    results = {}
    load = [os.getloadavg()[0]]
    try:
        for rnd in range(args.rounds):
            for size in sizes:
                for n in conns:
                    for client in clients:
                        out = subprocess.run(
                            [sys.executable, __file__, "--worker", "--client", client,
                             "--uri", f"ws://127.0.0.1:{port}/", "--conns", str(n),
                             "--size", str(size), "--cpu", str(client_cpu),
                             "--duration", str(args.duration), "--warmup", str(args.warmup)],
                            capture_output=True, text=True, timeout=60,
                        )
                        if out.returncode != 0:
                            print(f"{client} {n} {size}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
                            continue
                        r = json.loads(out.stdout.strip().splitlines()[-1])
                        results.setdefault((client, n, size), []).append(r)
            load.append(os.getloadavg()[0])
            print(f"round {rnd + 1}/{args.rounds} done (loadavg {load[-1]:.1f})", file=sys.stderr)
    finally:
        server.terminate()
        server.wait(5)

    print(f"picows echo server on uvloop (CPU {server_cpu}), clients on CPU {client_cpu}; "
          f"medians of {args.rounds} interleaved rounds of {args.duration} s; "
          f"1-min loadavg {min(load):.1f}-{max(load):.1f} on {os.cpu_count()} CPUs")
    print()
    print("| size | conns | client | round trips/s | client CPU µs / round trip | ÷ picows | ÷ websockets |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    table = {}
    for (client, n, size), runs in results.items():
        rate = statistics.median(r["round_trips"] / r["wall"] for r in runs)
        cpu = statistics.median(1e6 * r["cpu"] / max(r["round_trips"], 1) for r in runs)
        table[client, n, size] = (rate, cpu)
    for size in sizes:
        for n in conns:
            for client in clients:
                if (client, n, size) not in table:
                    continue
                rate, cpu = table[client, n, size]
                ref = table.get(("picows", n, size), (0, 0))[1]
                ws_ref = table.get(("websockets", n, size), (0, 0))[1]
                print(f"| {size} | {n} | {client} | {rate:,.0f} | {cpu:.1f} | "
                      f"{cpu / ref if ref else float('nan'):.2f} | {cpu / ws_ref if ws_ref else float('nan'):.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"load": load, "results": [
                {"client": c, "conns": n, "size": s, "runs": runs} for (c, n, s), runs in results.items()
            ]}, f, indent=1)


if __name__ == "__main__":
    main()
