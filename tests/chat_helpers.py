"""Helpers of the chat and pub/sub tests: a real ``redis-server`` on a free
loopback port (:class:`RedisServer`), ``python -m wsfast chat`` as a
subprocess (:class:`ChatProcess`) and a chat client over ``wsfast.connect``
(:class:`ChatClient`). Every process started here is stopped by the test
that started it (context managers). No test lives here.
"""

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

import wsfast
from interop_helpers import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REDIS_SERVER = shutil.which("redis-server")


def redis_missing():
    """Why the Redis tests cannot run here, or None."""
    if REDIS_SERVER is None:
        return "redis-server is missing (apt-get install redis-server; ci/test.sh does it)"
    try:
        import redis.asyncio  # noqa: F401
    except ImportError:
        return "redis-py is missing (pip install 'redis>=5' hiredis; the test extra has it)"
    return None


def require_redis():
    reason = redis_missing()
    if reason:
        pytest.skip(reason)


def _wait_port(port, timeout, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class RedisServer:
    """``redis-server`` on 127.0.0.1:``port`` without persistence;
    ``stop()`` and ``start()`` again on the same port (a restart loses
    everything, as a crashed Redis without persistence would)."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port, 5, self.proc)
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class ChatProcess:
    """``python -m wsfast chat`` with ``args``, stopped with SIGTERM (then
    killed) on exit. ``output()`` is what it printed (stdout and stderr)."""

    def __init__(self, *args, port=None):
        self.port = port or free_port()
        self.args = ["--host", "127.0.0.1", "--port", str(self.port), *args]
        self.proc = None
        self.log_path = None
        self._output = None

    def start(self, timeout=10):
        import tempfile

        fd, self.log_path = tempfile.mkstemp(prefix="wsfast-chat-", suffix=".log")
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        with os.fdopen(fd, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "wsfast", "chat", *self.args],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _wait_port(self.port, timeout, self.proc)
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def output(self):
        if self._output is not None:
            return self._output
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        if self.log_path:
            self._output = self.output()
            os.unlink(self.log_path)


class ChatClient:
    """A chat page without the page: ``await ChatClient.join(port, nick, room)``."""

    def __init__(self, ws):
        self.ws = ws
        self.welcome = None

    @classmethod
    async def join(cls, port, nick, room="lobby", timeout=5):
        ws = await wsfast.connect(f"ws://127.0.0.1:{port}/chat")
        self = cls(ws)
        await ws.send(json.dumps({"type": "join", "nick": nick, "room": room}))
        self.welcome = await self.next("welcome", timeout)
        return self

    @property
    def worker(self):
        return self.welcome["worker"]

    async def say(self, text):
        await self.ws.send(json.dumps({"type": "msg", "text": text}))

    async def next(self, kind=None, timeout=5):
        """The next event (of type ``kind``, skipping others)."""
        async def get():
            while True:
                event = json.loads(await self.ws.recv())
                if kind is None or event["type"] == kind:
                    return event
        return await asyncio.wait_for(get(), timeout)

    async def texts(self, count, timeout=5):
        """The texts of the next ``count`` chat messages."""
        return [(await self.next("msg", timeout))["text"] for _ in range(count)]

    async def quiet(self, delay=0.2, kind="msg"):
        """No event of type ``kind`` arrives within ``delay`` s."""
        try:
            event = await self.next(kind, delay)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"unexpected event {event}")

    async def close(self):
        await self.ws.close()
