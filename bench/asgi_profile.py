"""Where one round trip's time goes under uvicorn (issue 14): the same bare
ASGI echo app (bench/servers/uvicorn_server.py) with ``--ws wsfast`` and
``--ws websockets-sansio``, one message in flight, measured in units that do
not depend on the machine's load.

    python bench/asgi_profile.py                       # all four, 64 B, wsfast of this checkout
    python bench/asgi_profile.py --commit HEAD         # wsfast exported and built outside the checkout
    python bench/asgi_profile.py --only callgrind,split --size 8192

Per server (each its own process, one load client, 127.0.0.1):

* ``syscalls``: ``strace -f -c`` over N round trips on one connection:
  system calls per round trip, by name;
* ``callgrind``: user-space instructions per round trip (``valgrind
  --tool=callgrind``, kernel not counted): the difference between a run of
  ``--count`` and one of ``--count // 5`` round trips, divided by the
  difference in round trips (start-up cancels out); uvicorn runs without its
  0.1 s tick (``Server.startup()`` only), so the count does not depend on
  how long valgrind took;
* ``opcodes``: Python bytecodes per round trip, by function (a
  ``sys.settrace`` opcode counter, switched on by a signal after a warm-up);
* ``split``: 16 connections × 1 in flight for ``--seconds``, pinned as
  bench/run.py pins (server CPU 0, client CPU 1): server CPU µs per round
  trip and its user/system split (``/proc/PID/stat`` utime/stime).

Prints a Markdown report (``--out`` writes it too).
"""

import argparse
import base64
import collections
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLIENT = os.path.join(HERE, "loadclient.py")
PY = sys.executable
KINDS = ["syscalls", "callgrind", "opcodes", "split"]
WS = ["wsfast", "websockets-sansio"]

# uvicorn with the bench's echo app and settings, started without its main
# loop (no tick), for the instruction counts; and the opcode counter around it
SERVE = r'''
import asyncio, collections, json, os, signal, sys
sys.path.insert(0, os.environ["WSFAST_TREE"])
sys.path.insert(0, os.path.join(os.environ["BENCH_DIR"], "servers"))
import uvicorn, uvloop
from uvicorn_server import asgi_echo, ws_class
counts = collections.Counter()
if os.environ.get("OPCODES"):
    on = [False]
    def local(frame, event, arg):
        if on[0] and event == "opcode":
            counts[frame.f_code.co_filename.rsplit("/", 1)[-1] + ":" + frame.f_code.co_name] += 1
        return local
    def glob(frame, event, arg):
        frame.f_trace_opcodes = True
        return local
    def start(*_):
        counts.clear(); on[0] = True
    def dump(*_):
        on[0] = False
        with open(os.environ["OPCODES"], "w") as f:
            json.dump(counts.most_common(), f)
    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, dump)
    sys.settrace(glob)
async def main(ws, port):
    config = uvicorn.Config(asgi_echo, host="127.0.0.1", port=port, ws=ws_class(ws), http="httptools",
                            lifespan="off", ws_max_size=64 * 2**20, ws_per_message_deflate=False,
                            ws_ping_interval=None, log_level="warning", access_log=False)
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    await server.startup()
    print("started", flush=True)
    await asyncio.Future()
uvloop.run(main(sys.argv[1], int(sys.argv[2])))
'''


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd, env, log, marker=None, port=None, timeout=600):
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=HERE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {cmd}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


def children(proc):
    try:
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
            return [int(pid) for pid in f.read().split()]
    except OSError:
        return []


def stop(proc, child=False):
    """SIGINT to the server (``child``: to the process under strace, whose
    exit makes strace write its summary), then harder if need be."""
    pids = children(proc) if child else []
    for pid in pids or [proc.pid]:
        try:
            os.kill(pid, signal.SIGINT)
        except OSError:
            pass
    try:
        proc.wait(60)
        return
    except subprocess.TimeoutExpired:
        pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def load(port, pid, size, count=None, connections=1, seconds=None, pin=None):
    cmd = [PY, CLIENT, "echo", "--port", str(port), "--server-pid", str(pid), "--connections",
           str(connections), "--inflight", "1", "--size", str(size), "--timeout", "600"]
    if count:
        cmd += ["--count", str(count), "--duration", "600", "--warmup", "0"]
    else:
        cmd += ["--duration", str(seconds), "--warmup", "1"]
    if pin is not None:
        cmd = ["taskset", "-c", str(pin)] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    res = json.loads(out.stdout or "{}")
    if "error" in res or not out.stdout:
        raise RuntimeError(f"load client: {res.get('error') or out.stderr[-500:]}")
    return res


class Raw:
    """One upgraded connection sending masked binary frames, one at a time."""

    def __init__(self, port, size):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall(f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += self.s.recv(4096)
        assert buf.startswith(b"HTTP/1.1 101"), buf[:100]
        self.rest = buf.split(b"\r\n\r\n", 1)[1]
        if size < 126:
            head = bytes([0x82, 0x80 | size])
        elif size < 65536:
            head = bytes([0x82, 0x80 | 126]) + struct.pack("!H", size)
        else:
            head = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", size)
        self.frame = head + b"\x00\x00\x00\x00" + os.urandom(size)
        self.echo = len(head) + size

    def round_trip(self):
        self.s.sendall(self.frame)
        while len(self.rest) < self.echo:
            self.rest += self.s.recv(1 << 20)
        self.rest = self.rest[self.echo:]


def serve_cmd(ws, port):
    return [PY, "-c", SERVE, ws, str(port)]


def syscalls(ws, env, size, count, log):
    """System calls per round trip: strace -c of a run of ``count`` round
    trips less one of ``count // 5`` (start-up cancels out)."""
    runs = []
    for n in (count // 5, count):
        port = free_port()
        out = tempfile.mktemp(suffix=".strace")
        proc = start(["strace", "-f", "-c", "-o", out] + serve_cmd(ws, port), env, log, port=port)
        try:
            time.sleep(1)
            raw = Raw(port, size)
            for _ in range(n):
                raw.round_trip()
            raw.s.close()
            time.sleep(0.5)
        finally:
            stop(proc, child=True)
        calls = collections.Counter()
        for line in open(out):
            parts = line.split()
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                calls[parts[-1]] = int(parts[3])
        os.unlink(out)
        runs.append(calls)
    per = {name: (runs[1][name] - runs[0][name]) / (count - count // 5) for name in runs[1]}
    return {name: v for name, v in sorted(per.items(), key=lambda kv: -kv[1]) if v >= 0.05}


def instructions(ws, env, size, count, log):
    totals = []
    for n in (count // 5, count):
        port = free_port()
        out = tempfile.mktemp(suffix=".callgrind")
        proc = start(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] + serve_cmd(ws, port),
                     env, log, port=port)
        try:
            time.sleep(1)
            load(port, proc.pid, size, count=n)
        finally:
            stop(proc)
        text = open(out).read()
        os.unlink(out)
        totals.append(int(re.search(r"^summary: (\d+)", text, re.M).group(1)))
    return (totals[1] - totals[0]) / (count - count // 5)


def opcodes(ws, env, size, count, log):
    port = free_port()
    out = tempfile.mktemp(suffix=".json")
    env = dict(env, OPCODES=out)
    proc = start(serve_cmd(ws, port), env, log, port=port)
    try:
        raw = Raw(port, size)
        for _ in range(200):
            raw.round_trip()
        proc.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
        for _ in range(count):
            raw.round_trip()
        proc.send_signal(signal.SIGUSR2)
        time.sleep(1)
        raw.s.close()
    finally:
        stop(proc)
    rows = json.load(open(out))
    os.unlink(out)
    return {name: n / count for name, n in rows}


def split(ws, env, size, seconds, log):
    port = free_port()
    script = os.path.join(HERE, "servers", "uvicorn_server.py")
    proc = start(["taskset", "-c", "0", PY, script, "--port", str(port), "--ws", ws], env, log, port=port)
    try:
        import threading

        ticks = {}

        def sample():
            time.sleep(1.5)
            with open(f"/proc/{proc.pid}/stat") as f:
                a = f.read().rsplit(")", 1)[1].split()
            time.sleep(seconds - 1)
            with open(f"/proc/{proc.pid}/stat") as f:
                b = f.read().rsplit(")", 1)[1].split()
            ticks["user"] = int(b[11]) - int(a[11])
            ticks["system"] = int(b[12]) - int(a[12])

        t = threading.Thread(target=sample)
        t.start()
        res = load(port, proc.pid, size, connections=16, seconds=seconds + 1, pin=1)
        t.join()
    finally:
        stop(proc)
    user = ticks["user"] / max(1, ticks["user"] + ticks["system"])
    return {"cpu_us_per_rt": res["server_cpu_us_per_rt"], "round_trips_per_s": res["round_trips_per_s"],
            "user_share": user, "ticks": ticks["user"] + ticks["system"]}


def export(commit):
    """wsfast at ``commit``, exported with git archive and built in a temp directory."""
    work = tempfile.mkdtemp(prefix="wsfast-asgi-profile-")
    tree = os.path.join(work, "wsfast")
    os.makedirs(tree)
    archive = subprocess.run(["git", "-C", ROOT, "archive", commit], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
    subprocess.run([PY, "setup.py", "-q", "build_ext", "--inplace"], cwd=tree, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sha = subprocess.run(["git", "-C", ROOT, "rev-parse", commit], capture_output=True, text=True,
                         check=True).stdout.strip()
    return tree, sha


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commit", default=None, help="wsfast at this commit, built outside the checkout")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--count", type=int, default=5000, help="round trips (callgrind: this and a fifth)")
    parser.add_argument("--seconds", type=float, default=15.0, help="split: measured seconds")
    parser.add_argument("--only", default=",".join(KINDS), help=f"comma-separated, from {','.join(KINDS)}")
    parser.add_argument("--ws", default=",".join(WS), help="uvicorn --ws classes, comma-separated")
    parser.add_argument("--out", default=None, help="write the Markdown report here too")
    args = parser.parse_args()
    kinds = args.only.split(",")
    tree, sha = (export(args.commit) if args.commit else (ROOT, "this checkout"))
    env = dict(os.environ, WSFAST_TREE=tree, BENCH_DIR=HERE)
    env.pop("WSFAST_NO_EXTENSIONS", None)
    results = collections.defaultdict(dict)
    log = open(os.path.join(tempfile.gettempdir(), "asgi_profile_servers.log"), "w")
    for ws in args.ws.split(","):
        for kind in kinds:
            print(f"{ws}: {kind} ...", file=sys.stderr, flush=True)
            if kind == "syscalls":
                results[ws][kind] = syscalls(ws, env, args.size, args.count, log)
            elif kind == "callgrind":
                results[ws][kind] = instructions(ws, env, args.size, args.count, log)
            elif kind == "opcodes":
                results[ws][kind] = opcodes(ws, env, args.size, min(args.count, 2000), log)
            elif kind == "split":
                results[ws][kind] = split(ws, env, args.size, args.seconds, log)
    names = list(results)
    L = [f"# One message in flight under uvicorn, {args.size} B: where a round trip goes", "",
         f"wsfast: {sha}. Command: `python bench/asgi_profile.py {' '.join(sys.argv[1:])}`"
         f" ({time.strftime('%Y-%m-%dT%H:%M:%S')}).", ""]
    if "split" in kinds:
        L += ["16 connections × 1 in flight, server pinned to CPU 0, client to CPU 1:", "",
              "| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        rows = [("server CPU µs per round trip", lambda r: f"{r['cpu_us_per_rt']:.2f}"),
                ("of it user / system", lambda r: f"{100 * r['user_share']:.0f} % / {100 - 100 * r['user_share']:.0f} %"),
                ("user µs / system µs", lambda r: f"{r['cpu_us_per_rt'] * r['user_share']:.2f} / "
                                                  f"{r['cpu_us_per_rt'] * (1 - r['user_share']):.2f}"),
                ("round trips/s (load-dependent)", lambda r: f"{r['round_trips_per_s']:,.0f}")]
        for label, f in rows:
            L.append(f"| {label} | " + " | ".join(f(results[n]["split"]) for n in names) + " |")
        L.append("")
    if "callgrind" in kinds:
        L += ["User-space instructions per round trip (callgrind, one connection): " + ", ".join(
            f"{n} {results[n]['callgrind']:,.0f}" for n in names) + ".", ""]
    if "syscalls" in kinds:
        L += ["System calls per round trip (strace -c, one connection): "]
        for n in names:
            L.append(f"* {n}: " + ", ".join(f"{k} {v:.2f}" for k, v in results[n]["syscalls"].items()))
        L.append("")
    if "opcodes" in kinds:
        for n in names:
            rows = results[n]["opcodes"]
            total = sum(rows.values())
            by_file = collections.Counter()
            for name, v in rows.items():
                by_file[name.split(":")[0]] += v
            L.append(f"Python bytecodes per round trip, {n}: {total:.0f}; by file: " + ", ".join(
                f"{f} {v:.0f}" for f, v in by_file.most_common() if v >= 1) + "; by function: " + ", ".join(
                f"{k} {v:.0f}" for k, v in sorted(rows.items(), key=lambda kv: -kv[1]) if v >= 1) + ".")
            L.append("")
    text = "\n".join(L)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
