"""Client speed: clients of each library in request/response loops against
one server (picows' echo server on uvloop, bench/servers/picows_server.py),
each client process pinned to its own core, the server to another.

    python bench/client_bench.py                       # 3 interleaved rounds, every case
    python bench/client_bench.py --rounds 1 --duration 1 --sizes 256 --conns 1
    python bench/client_bench.py --commit HEAD         # wsfast as committed (git archive + build)
    python bench/client_bench.py --instructions        # callgrind instructions per round trip

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
aiohttp (``ClientSession.ws_connect``), ``wsfast-callback``
(``connect(uri, on_message=callback)``, the next send from the callback with
``ws.write_message``: picows' structure behind wsfast's API), and
``asyncio-floor``: an asyncio
client that does the same awaits as wsfast's loop with no WebSocket work at
all (a ``Protocol`` that echoes nothing but wakes a future per reply, and
writes the bytes of a masked frame built once), the floor of any
``await send(); await recv()`` API on that loop. None compresses.

``--commit REF`` benchmarks wsfast as committed: ``git archive`` of REF,
built in a temporary directory outside the checkout and imported from there
(as ``bench/run.py --commit``); without it the worker imports this
checkout's wsfast (its extension built in place).

Each cell says what bounded the rate: the share of a core the client
process and the server process used over the window (``client %``,
``server %``); a side above 90 % is the bottleneck (``client-bound``,
``server-bound``), otherwise the round trips waited on wake-ups.

``--instructions`` runs each client under ``valgrind --tool=callgrind``
for two counts of round trips and reports the difference ÷ the difference
of counts: user-space instructions per round trip, which do not depend on
the machine's load (the kernel's part, the syscalls, is not counted).
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
CLIENTS = ("wsfast", "wsfast-callback", "picows", "websockets", "aiohttp", "asyncio-floor")


# -- the client side (one process per case) ----------------------------------------------


async def wsfast_client(uri, conns, payload, state):
    import wsfast

    async def one():
        ws = await wsfast.connect(uri, ping_interval=None, max_message_size=2**24)
        send, recv = ws.send, ws.recv
        while state["n"] < state["limit"]:
            await send(payload)
            await recv()
            state["n"] += 1
        await ws.close()

    await asyncio.gather(*(one() for _ in range(conns)))


async def wsfast_callback_client(uri, conns, payload, state):
    """wsfast's callback path: ``connect(uri, on_message=callback)`` (the
    message, a memoryview for binary, handed over inside the read), the next
    send from the callback with ``ws.write_message`` (no await): picows'
    structure behind wsfast's API."""
    import wsfast

    loop = asyncio.get_running_loop()

    async def one():
        finished = loop.create_future()
        ws = None

        def on_message(message):
            state["n"] += 1
            if state["n"] >= state["limit"]:
                if not finished.done():
                    finished.set_result(None)
                return
            ws.write_message(payload)

        ws = await wsfast.connect(uri, ping_interval=None, max_message_size=2**24, on_message=on_message)
        ws.write_message(payload)
        await finished
        await ws.close()

    await asyncio.gather(*(one() for _ in range(conns)))


async def websockets_client(uri, conns, payload, state):
    from websockets.asyncio.client import connect

    async def one():
        async with connect(uri, max_size=None, compression=None, ping_interval=None) as ws:
            send, recv = ws.send, ws.recv
            while state["n"] < state["limit"]:
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
                while state["n"] < state["limit"]:
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
            if state["n"] >= state["limit"]:
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


async def floor_client(uri, conns, payload, state):
    """The same awaits as wsfast's loop (``await send(p)``, ``await recv()``,
    a future per reply waited for), no WebSocket work: the frame is built
    once, a reply is counted in bytes, never parsed."""
    import base64

    loop = asyncio.get_running_loop()
    n = len(payload)
    head = bytes((0x82, 0x80 | n)) if n < 126 else (
        bytes((0x82, 0xFE)) + n.to_bytes(2, "big") if n < 65536 else bytes((0x82, 0xFF)) + n.to_bytes(8, "big"))
    frame = head + b"\0\0\0\0" + payload  # mask 0: the payload unchanged
    reply = (2 if n < 126 else 4 if n < 65536 else 10) + n
    host, port = uri.split("//")[1].rstrip("/").split(":")
    done = loop.create_future()
    done.set_result(None)

    class Floor(asyncio.Protocol):
        def __init__(self):
            self.got = 0
            self.waiter = None
            self.open = loop.create_future()
            self.head = b""

        def connection_made(self, transport):
            self.transport = transport
            key = base64.b64encode(os.urandom(16)).decode()
            transport.write((f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                             "Sec-WebSocket-Version: 13\r\n\r\n").encode())

        def data_received(self, data):
            if not self.open.done():
                self.head += data
                if b"\r\n\r\n" in self.head:
                    self.got = len(self.head) - self.head.index(b"\r\n\r\n") - 4
                    self.open.set_result(None)
                return
            self.got += len(data)
            waiter = self.waiter
            if waiter is not None and self.got >= reply and not waiter.done():
                waiter.set_result(None)

        async def send(self, message):
            self.transport.write(frame)
            await done

        async def recv(self):
            while self.got < reply:
                waiter = self.waiter = loop.create_future()
                try:
                    await waiter
                finally:
                    self.waiter = None
            self.got -= reply
            return None

    async def one():
        _, ws = await loop.create_connection(Floor, host, int(port))
        await ws.open
        send, recv = ws.send, ws.recv
        while state["n"] < state["limit"]:
            await send(payload)
            await recv()
            state["n"] += 1
        ws.transport.close()

    await asyncio.gather(*(one() for _ in range(conns)))


CLIENT_FUNCS = {
    "wsfast": wsfast_client,
    "wsfast-callback": wsfast_callback_client,
    "picows": picows_client,
    "websockets": websockets_client,
    "aiohttp": aiohttp_client,
    "asyncio-floor": floor_client,
}


def proc_cpu(pid):
    """User + system CPU seconds of process ``pid`` (from /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def worker(args):
    payload = os.urandom(args.size)
    loop = asyncio.get_running_loop()
    if args.count:  # a fixed number of round trips (--instructions)
        state = {"n": 0, "limit": args.count}
        await CLIENT_FUNCS[args.client](args.uri, args.conns, payload, state)
        print(json.dumps({"round_trips": state["n"]}))
        return
    state = {"n": 0, "limit": float("inf")}
    task = asyncio.ensure_future(CLIENT_FUNCS[args.client](args.uri, args.conns, payload, state))
    await asyncio.sleep(args.warmup)
    if task.done():
        task.result()
    n0, cpu0, t0, s0 = state["n"], time.process_time(), time.perf_counter(), proc_cpu(args.server_pid)
    await asyncio.sleep(args.duration)
    n1, cpu1, t1, s1 = state["n"], time.process_time(), time.perf_counter(), proc_cpu(args.server_pid)
    state["limit"] = 0
    try:
        await asyncio.wait_for(task, 5)
    except asyncio.TimeoutError:
        pass
    server = None if s0 is None or s1 is None else s1 - s0
    print(json.dumps({"round_trips": n1 - n0, "wall": t1 - t0, "cpu": cpu1 - cpu0, "server_cpu": server}))
    del loop


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


def worker_cmd(args, client, port, n, size, cpu, server_pid, count=None):
    cmd = [sys.executable, __file__, "--worker", "--client", client,
           "--uri", f"ws://127.0.0.1:{port}/", "--conns", str(n),
           "--size", str(size), "--cpu", str(cpu), "--server-pid", str(server_pid),
           "--duration", str(args.duration), "--warmup", str(args.warmup)]
    if count:
        cmd += ["--count", str(count)]
    return cmd


def run_json(cmd, env, timeout, prefix=()):
    out = subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=timeout, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def callgrind_instructions(cmd, env):
    """(round trips, instructions) of ``cmd`` run under callgrind."""
    import re
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        r, err = run_json(cmd, env, 1800, prefix=(
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out", "--dump-instr=no"))
    m = re.findall(r"Collected : (\d+)", err)
    if not m:
        raise RuntimeError(f"no callgrind total in: {err[-1000:]}")
    return r["round_trips"], int(m[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--conns", default="1,16")
    parser.add_argument("--sizes", default="256,8192,102400")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--commit", default=None,
                        help="benchmark wsfast as committed at this git commit (exported and built in a temp dir)")
    parser.add_argument("--instructions", action="store_true",
                        help="callgrind instructions per round trip instead of timing")
    parser.add_argument("--counts", default="1000,4000",
                        help="--instructions: the two round-trip counts whose difference is measured")
    parser.add_argument("--json", help="write the raw results here")
    # worker mode
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--uri", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
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
    env = dict(os.environ)
    import tempfile

    workdir = tempfile.mkdtemp(prefix="wsfast-client-bench-")
    if args.commit:
        sys.path.insert(0, HERE)
        from run import git, wsfast_tree

        print(f"building wsfast at {args.commit} in {workdir} ...", file=sys.stderr)
        tree, sha = wsfast_tree(args.commit, workdir)
        where = f"wsfast at `{sha[:12]}` (git archive, built outside the checkout)"
    else:
        sys.path.insert(0, HERE)
        from run import git

        tree = ROOT
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
        where = f"wsfast of the checkout at `{git('rev-parse', '--short', 'HEAD')}`" + (
            " (with uncommitted changes)" if dirty else "")
    env["PYTHONPATH"] = tree + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if "wsfast" in clients:
        probe = subprocess.run([sys.executable, "-c", "import wsfast, wsfast._frame; print(wsfast.__file__)"],
                               env=env, capture_output=True, text=True, cwd=workdir)
        if probe.returncode != 0 or not probe.stdout.startswith(tree):
            raise SystemExit(f"wsfast not importable from {tree}: {probe.stdout}{probe.stderr}")
    import picows

    port = free_port()
    server = start_server(port, server_cpu)
    results = {}
    load = [os.getloadavg()[0]]
    try:
        if args.instructions:
            lo, hi = (int(c) for c in args.counts.split(","))
            for size in sizes:
                for n in conns:
                    for client in clients:
                        try:
                            r_lo, i_lo = callgrind_instructions(
                                worker_cmd(args, client, port, n, size, client_cpu, server.pid, lo), env)
                            r_hi, i_hi = callgrind_instructions(
                                worker_cmd(args, client, port, n, size, client_cpu, server.pid, hi), env)
                        except Exception as exc:
                            print(f"{client} {n} {size}: failed\n{exc}", file=sys.stderr)
                            continue
                        results[client, n, size] = (i_hi - i_lo) / (r_hi - r_lo)
                        print(f"{client} {n} {size}: {results[client, n, size]:,.0f} instructions/round trip",
                              file=sys.stderr)
        else:
            for rnd in range(args.rounds):
                order = clients[rnd % len(clients):] + clients[:rnd % len(clients)]  # rotate who goes first
                for size in sizes:
                    for n in conns:
                        for client in order:
                            try:
                                r, _ = run_json(worker_cmd(args, client, port, n, size, client_cpu, server.pid),
                                                env, 60)
                            except Exception as exc:
                                print(f"{client} {n} {size}: failed\n{exc}", file=sys.stderr)
                                continue
                            results.setdefault((client, n, size), []).append(r)
                load.append(os.getloadavg()[0])
                print(f"round {rnd + 1}/{args.rounds} done (loadavg {load[-1]:.1f})", file=sys.stderr)
    finally:
        server.terminate()
        server.wait(5)

    versions = f"{where}; picows {picows.__version__}"
    if args.instructions:
        print(f"{versions}. callgrind user-space instructions per round trip "
              f"((I({hi}) - I({lo})) / round trips between), picows echo server on uvloop")
        print()
        print("| size | conns | client | instructions / round trip | ÷ picows | ÷ websockets |")
        print("|---:|---:|---|---:|---:|---:|")
        for size in sizes:
            for n in conns:
                for client in clients:
                    if (client, n, size) not in results:
                        continue
                    v = results[client, n, size]
                    ref = results.get(("picows", n, size))
                    ws_ref = results.get(("websockets", n, size))
                    print(f"| {size} | {n} | {client} | {v:,.0f} | "
                          f"{v / ref if ref else float('nan'):.2f} | {v / ws_ref if ws_ref else float('nan'):.2f} |")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"counts": [lo, hi], "results": [
                    {"client": c, "conns": n, "size": s, "instructions": v} for (c, n, s), v in results.items()
                ]}, f, indent=1)
        return

    print(f"{versions}. picows echo server on uvloop (CPU {server_cpu}), clients on CPU {client_cpu}; "
          f"medians of {args.rounds} interleaved rounds of {args.duration} s; "
          f"1-min loadavg {min(load):.1f}-{max(load):.1f} on {os.cpu_count()} CPUs")
    print()
    print("| size | conns | client | round trips/s | client CPU µs / round trip | ÷ picows | ÷ websockets "
          "| client % | server % | bound |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---|")
    table = {}
    for (client, n, size), runs in results.items():
        rate = statistics.median(r["round_trips"] / r["wall"] for r in runs)
        cpu = statistics.median(1e6 * r["cpu"] / max(r["round_trips"], 1) for r in runs)
        busy = statistics.median(r["cpu"] / r["wall"] for r in runs)
        sbusy = [r["server_cpu"] / r["wall"] for r in runs if r.get("server_cpu") is not None]
        table[client, n, size] = (rate, cpu, busy, statistics.median(sbusy) if sbusy else None)
    for size in sizes:
        for n in conns:
            for client in clients:
                if (client, n, size) not in table:
                    continue
                rate, cpu, busy, sbusy = table[client, n, size]
                ref = table.get(("picows", n, size), (0, 0))[1]
                ws_ref = table.get(("websockets", n, size), (0, 0))[1]
                bound = ("client-bound" if busy > 0.9 else
                         "server-bound" if sbusy is not None and sbusy > 0.9 else "wake-ups")
                print(f"| {size} | {n} | {client} | {rate:,.0f} | {cpu:.1f} | "
                      f"{cpu / ref if ref else float('nan'):.2f} | {cpu / ws_ref if ws_ref else float('nan'):.2f} "
                      f"| {100 * busy:.0f} | {'–' if sbusy is None else f'{100 * sbusy:.0f}'} | {bound} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"load": load, "results": [
                {"client": c, "conns": n, "size": s, "runs": runs} for (c, n, s), runs in results.items()
            ]}, f, indent=1)


if __name__ == "__main__":
    main()
