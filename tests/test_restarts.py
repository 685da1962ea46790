"""Restarts without dropping users (issue 15).

SIGTERM: ``python -m wsfast echo|demo|chat`` (``wsfast.run`` and
``wsfast.chat.run``) stops accepting, closes every WebSocket with 1001,
waits for the closing handshakes at most ``--shutdown-timeout`` seconds
(a client that never answers is dropped then) and exits 0.
"""

import asyncio
import json
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


# --- rolling restart of --workers N (SIGHUP) --------------------------------

ROOMS = 10


def _probe(port, stop, results):
    """Until ``stop`` is set: connect, ask for /status, read the answer.
    ``results`` gets "ok" or the error of each attempt."""
    request = f"GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), 5) as sock:
                sock.settimeout(5)
                sock.sendall(request)
                head = sock.recv(64)
            results.append("ok" if head.startswith(b"HTTP/1.1 200") else f"answer {head!r}")
        except OSError as exc:
            results.append(f"{type(exc).__name__}: {exc}")
        time.sleep(0.005)


class _Member:
    """A chat page without the page: joins ``room`` as ``nick`` (with a
    claim, as the page does), says something every ``period`` s while
    ``talking``, and reconnects at once when the server closes with 1001,
    reading what it missed from the welcome's history."""

    def __init__(self, port, number, period):
        import secrets

        self.url = f"ws://127.0.0.1:{port}/chat"
        self.nick = f"u{number}"
        self.room = f"r{number % ROOMS}"
        self.claim = secrets.token_hex(16)
        self.period = period
        self.seen = set()  # texts of the room's messages this member saw (live or history)
        self.sent = []  # texts whose send() returned
        self.unsent = []  # texts whose send() raised: not transmitted, said again after reconnecting
        self.connects = 0
        self.closes = []  # close codes the server sent
        self.errors = []
        self.talking = True
        self.joined = asyncio.Event()
        self.ws = None
        self._count = 0

    async def run(self, done):
        while not done.is_set():
            try:
                ws = await wsfast.connect(self.url, open_timeout=10)
            except (OSError, wsfast.WebSocketError, asyncio.TimeoutError) as exc:
                self.errors.append(f"connect: {type(exc).__name__}: {exc}")
                await asyncio.sleep(0.05)
                continue
            self.ws = ws
            self.connects += 1
            try:
                await ws.send(json.dumps({"type": "join", "nick": self.nick, "room": self.room,
                                          "claim": self.claim}))
                sender = None
                while True:
                    event = json.loads(await ws.recv())
                    if event["type"] == "welcome":
                        self.seen.update(e["text"] for e in event["history"] if e["type"] == "msg")
                        self.joined.set()
                        sender = asyncio.ensure_future(self._talk(ws))
                    elif event["type"] == "msg":
                        self.seen.add(event["text"])
                    elif event["type"] == "error":
                        self.errors.append(event["error"])
            except wsfast.ConnectionClosed:
                self.closes.append(ws.close_code)
            finally:
                if sender is not None:
                    sender.cancel()
                    try:
                        await sender
                    except (asyncio.CancelledError, wsfast.ConnectionClosed):
                        pass
            if ws.close_code != 1001:
                break  # the test closed it (1000), or something went wrong: stop here

    async def _talk(self, ws):
        while self.unsent:  # what could not go out before the reconnect
            text = self.unsent[0]
            await ws.send(json.dumps({"type": "msg", "text": text}))
            self.sent.append(self.unsent.pop(0))
        while self.talking:
            await asyncio.sleep(self.period)
            if not self.talking:
                break
            self._count += 1
            text = f"{self.nick}:{self._count}"
            try:
                await ws.send(json.dumps({"type": "msg", "text": text}))
            except wsfast.ConnectionClosed:
                self.unsent.append(text)
                raise
            self.sent.append(text)


def _wait_output(proc, text, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in proc.output_now():
            return
        time.sleep(0.05)
    raise AssertionError(f"no {text!r} in {timeout} s:\n{proc.output_now()}")


@pytest.mark.parametrize("count, loop_flag", [
    (10, ()),
    pytest.param(50, (), marks=pytest.mark.slow),
    pytest.param(50, ("--no-uvloop",), marks=pytest.mark.slow),
])
def test_rolling_restart_keeps_the_port_open_and_loses_no_message(count, loop_flag):
    """``count`` chat members (50 in the slow run) in 10 rooms on ``--workers
    2 --redis``; SIGHUP. Every member is on an old worker, so each is closed with 1001 and reconnects;
    a prober asks for /status all along and is always answered (the port
    never refuses); every message the chat accepted is seen by every member
    of its room (live, or in the history after reconnecting), and every
    message a member sent was accepted."""
    import threading

    from chat_helpers import ChatProcess, RedisServer, require_redis

    require_redis()
    with RedisServer() as redis_server, ChatProcess(
            "--workers", "2", "--redis", redis_server.url, "--max-per-address", "0",
            "--shutdown-timeout", "3", *loop_flag) as proc:
        proc.output_now = lambda: open(proc.log_path, encoding="utf-8", errors="replace").read()
        _wait_output(proc, "workers on port", 20)
        stop, probes = threading.Event(), []
        prober = threading.Thread(target=_probe, args=(proc.port, stop, probes))

        async def main():
            done = asyncio.Event()
            members = [_Member(proc.port, n, period=0.5) for n in range(count)]
            tasks = [asyncio.ensure_future(m.run(done)) for m in members]
            try:
                await asyncio.wait_for(asyncio.gather(*(m.joined.wait() for m in members)), 30)
                prober.start()
                await asyncio.sleep(1.0)
                proc.proc.send_signal(signal.SIGHUP)
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, _wait_output, proc, "rolling restart done", 60)
                # everyone back (the reconnects are quick), still talking
                deadline = time.monotonic() + 20
                while any(m.connects < 2 or not m.ws or m.ws.close_code for m in members):
                    assert time.monotonic() < deadline, [m.connects for m in members]
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)
                for m in members:
                    m.talking = False
                # quiet: everything accepted reaches everyone
                accepted = {}
                deadline = time.monotonic() + 15
                while True:
                    await asyncio.sleep(0.2)
                    for room in {m.room for m in members}:
                        inroom = [m for m in members if m.room == room]
                        accepted[room] = set().union(*(m.seen for m in inroom))
                    complete = all(m.seen == accepted[m.room] for m in members) and all(
                        set(m.sent) <= accepted[m.room] for m in members)
                    if complete or time.monotonic() > deadline:
                        break
            finally:
                stop.set()
                done.set()
                for m in members:
                    if m.ws is not None:
                        await m.ws.close()
                await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
            return members, accepted

        members, accepted = asyncio.run(main())
        prober.join(10)
        output = proc.output_now()

    assert "rolling restart done" in output, output
    refused = [p for p in probes if p != "ok"]
    assert probes and not refused, (len(probes), refused[:5])
    assert len(probes) > 20, len(probes)
    for m in members:
        assert not m.errors, (m.nick, m.errors, output)
        assert m.connects >= 2 and 1001 in m.closes, (m.nick, m.connects, m.closes)
        assert not m.unsent, (m.nick, m.unsent)
        lost = set(m.sent) - accepted[m.room]
        assert not lost, (m.nick, sorted(lost))
        missed = accepted[m.room] - m.seen
        assert not missed, (m.nick, sorted(missed))
    total = sum(len(a) for a in accepted.values())
    assert total > 2 * count, total  # they did talk, across the restart
