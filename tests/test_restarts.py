"""Restarts without dropping users (issue 15).

SIGTERM: ``python -m wsfast echo|demo|chat`` (``wsfast.run`` and
``wsfast.chat.run``) stops accepting, closes every WebSocket with 1001,
waits for the closing handshakes at most ``--shutdown-timeout`` seconds
(a client that never answers is dropped then) and exits 0.
"""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from interop_helpers import free_port

import wsfast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _start(*args, port):
    proc = subprocess.Popen([sys.executable, "-m", "wsfast", *args, "--host", "127.0.0.1",
                             "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV, text=True,
                            cwd=ROOT)
    line = proc.stdout.readline()
    assert f"127.0.0.1:{port}" in line, (line, proc.stdout.read() if proc.poll() is not None else "")
    return proc


async def _silent_websocket(port, resource):
    """A WebSocket client that completes the handshake and then never reads
    nor answers the close: the shutdown must not wait for it for ever."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {resource} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 f"Origin: http://127.0.0.1:{port}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


@pytest.mark.parametrize("command, resource", [("echo", "/"), ("demo", "/websocket"),
                                               ("chat", "/chat")])
def test_sigterm_closes_1001_waits_bounded_and_exits_0(command, resource):
    port = free_port()
    proc = _start(command, "--shutdown-timeout", "1", port=port)
    try:
        async def main():
            url = f"ws://127.0.0.1:{port}{resource}"
            clients = [await wsfast.connect(url, origin=f"http://127.0.0.1:{port}")
                       for _ in range(3)]
            silent = await _silent_websocket(port, resource)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            for ws in clients:
                with pytest.raises(wsfast.ConnectionClosedOK) as info:
                    while True:  # the chat's welcome/join events come first
                        await asyncio.wait_for(ws.recv(), 5)
                assert (info.value.code, info.value.reason) == (1001, "server shutting down")
            # Stopped accepting at once: the 1001s went out after the listener closed.
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), 1).close()
            # The silent client holds the shutdown for --shutdown-timeout, not for ever.
            code = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 10)
            elapsed = time.monotonic() - started
            assert code == 0, proc.stdout.read()
            assert 0.8 < elapsed < 5, elapsed
            silent[1].close()

        asyncio.run(main())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_sigterm_with_clients_that_answer_exits_at_once():
    port = free_port()
    proc = _start("echo", "--shutdown-timeout", "30", port=port)
    try:
        async def main():
            clients = [await wsfast.connect(f"ws://127.0.0.1:{port}/") for _ in range(20)]
            for ws in clients:
                await ws.send("hi")
                assert await ws.recv() == "hi"
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 10)
            assert code == 0
            assert time.monotonic() - started < 5  # not the 30 s: everyone answered the close
            for ws in clients:
                await ws.wait_closed()
                assert ws.close_code == 1001

        asyncio.run(main())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_shutdown_timeout_must_not_be_negative():
    proc = subprocess.run([sys.executable, "-m", "wsfast", "echo", "--shutdown-timeout", "-1"],
                          capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=30)
    assert proc.returncode == 2
    assert "--shutdown-timeout must be 0 or more" in proc.stderr
