"""bench/run.py --smoke: the whole-system benchmark scripts still run (one
server, the 64-byte echo, a fraction of a second). Not a timed test: it
checks that the load client got echoes back, not how many."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(ROOT, "bench", "run.py")

pytest.importorskip("uvloop")
if not sys.platform.startswith("linux"):
    pytest.skip("the benchmark scripts read /proc", allow_module_level=True)


def test_bench_smoke():
    out = subprocess.run([sys.executable, RUN, "--smoke", "--no-progress"], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])["results"]
    (runs,) = results["echo-64"].values()
    assert runs and "error" not in runs[0], runs
    assert runs[0]["round_trips"] > 0
    assert runs[0]["server_cpu_s"] >= 0 and runs[0]["client_cpu_s"] >= 0


LOADCLIENT = os.path.join(ROOT, "bench", "loadclient.py")


async def _bad_server(accept, echo):
    """An asyncio server that upgrades with Sec-WebSocket-Accept ``accept(key)``
    and answers each binary frame with ``echo(payload)`` (unmasked)."""
    import asyncio
    import struct

    async def handle(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:"))
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept(key) + b"\r\n\r\n")
        try:
            while True:
                b0, b1 = await reader.readexactly(2)
                n = b1 & 127
                if n == 126:
                    (n,) = struct.unpack("!H", await reader.readexactly(2))
                mask = await reader.readexactly(4)
                data = bytes(c ^ mask[i & 3] for i, c in enumerate(await reader.readexactly(n)))
                out = echo(data)
                writer.write(bytes((0x82, len(out))) + out if len(out) < 126 else
                             bytes((0x82, 126)) + struct.pack("!H", len(out)) + out)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def _accept(key):
    import base64
    import hashlib

    return base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())


@pytest.mark.parametrize("case", ["honest", "wrong-accept", "wrong-byte", "wrong-length"])
async def test_loadclient_rejects_a_server_that_does_not_echo(case):
    """The load client fails loudly, not miscounts, when the upgrade's
    Sec-WebSocket-Accept is wrong (the old ceiling's GUID typo) or an echo
    differs from what was sent, in one byte or in length."""
    import asyncio

    accept = (lambda key: _accept(key)[:-4] + b"AAA=") if case == "wrong-accept" else _accept
    echo = {"honest": lambda d: d, "wrong-accept": lambda d: d, "wrong-byte": lambda d: d[:-1] + bytes((d[-1] ^ 1,)),
            "wrong-length": lambda d: d + b"!"}[case]
    server = await _bad_server(accept, echo)
    port = server.sockets[0].getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, LOADCLIENT, "echo", "--port", str(port), "--server-pid", str(os.getpid()),
        "--connections", "2", "--inflight", "2", "--size", "64", "--warmup", "0.05", "--duration", "0.1",
        "--timeout", "5", stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    server.close()
    result = json.loads(out.decode().strip().splitlines()[-1])
    if case == "honest":  # the same fake server, echoing right: counted, no error
        assert proc.returncode == 0 and result["round_trips"] > 0, result
        return
    assert proc.returncode == 1
    assert "ProtocolViolation" in result.get("error", ""), result
    assert ("Sec-WebSocket-Accept" in result["error"]) == (case == "wrong-accept"), result


@pytest.mark.slow
def test_deploy_bench_smoke(tmp_path):
    """bench/deploy_bench.py (docs/deploy.md's table) still runs: every path
    (direct, nginx, HAProxy; TCP and Unix socket) echoed and held idle
    connections."""
    import shutil

    for tool in ("nginx", "haproxy", "openssl"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            pytest.skip(f"{tool} is not installed (ci/test.sh installs it)")
    out_json = tmp_path / "deploy.json"
    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "deploy_bench.py"),
                          "--rounds", "1", "--window", "0.2", "--warmup", "0.1", "--idle", "20",
                          "--json", str(out_json)],
                         capture_output=True, text=True, timeout=180, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    paths = json.loads(out_json.read_text())["paths"]
    assert len(paths) == 6, list(paths)
    for name, path in paths.items():
        assert path["rt_per_s"] > 0 and path["p99_us"] >= path["p50_us"] > 0, name
        assert path["idle"]["connections"] == 20, name
        if name.startswith(("nginx", "HAProxy")):
            assert path["proxy_us_per_rt"] > 0, name
    assert "| nginx → Unix socket |" in out.stdout


@pytest.mark.skipif(__import__("shutil").which("cc") is None, reason="no C compiler")
def test_floor_server_builds_and_echoes():
    """bench/servers/floor_server.c (the floor: a C server doing only the
    syscalls) builds with cc at run time and echoes what the load client
    checks byte for byte, after an upgrade whose Sec-WebSocket-Accept it
    checks too: small frames one in flight, and 16 MiB frames (a frame
    bigger than its read buffer, and writes the kernel takes in parts)."""
    out = subprocess.run([sys.executable, RUN, "--smoke", "--no-progress", "--servers", "floor-c",
                          "--scenarios", "rr,single"], capture_output=True, text=True, timeout=120, cwd=ROOT,
                         check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])["results"]
    for case in ("rr16-64", "latency-64", f"large-{16 * 2**20}"):
        (runs,) = results[case].values()
        assert runs and "error" not in runs[0], (case, runs)
        assert runs[0]["round_trips"] > 0, case


PROFILE_ECHO = os.path.join(ROOT, "bench", "profile_echo.py")


def test_profile_echo_a_b_smoke():
    """bench/profile_echo.py's A/B still runs: the base servers from the tree
    WSFAST_BASE_TREE names (here this checkout: --base REV builds an export,
    which takes too long here), each server checked to import wsfast from
    the tree it was given, and which wsfast each side ran is said."""
    argv = [sys.executable, PROFILE_ECHO, "--servers", "wsfast-base,wsfast", "--sizes", "64",
            "--seconds", "0.3", "--warmup", "0.1"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
                         env=dict(os.environ, WSFAST_BASE_TREE=ROOT))
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    assert "wsfast: wsfast `" in out.stdout and f"wsfast-base: wsfast from {ROOT}" in out.stdout, out.stdout
    rows = {line.split()[0]: line for line in out.stdout.splitlines() if line.startswith("wsfast")}
    assert "k (" in rows["wsfast-base"] and "k (" in rows["wsfast"], out.stdout
    env = {k: v for k, v in os.environ.items() if k != "WSFAST_BASE_TREE"}
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT, check=False, env=env)
    assert out.returncode != 0 and "need --base REV" in out.stderr, out.stderr[-2000:]
