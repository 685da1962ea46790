"""What a newcomer meets in the first hour: the version in one place and on
the command line, error pages that say their detail once, a favicon in the
chat, and ``wsfast.run`` saying where it listens."""

import asyncio
import os
import re
import select
import signal
import subprocess
import sys
import textwrap

import pytest

import wsfast
from wsfast.chat import ChatServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None


def test_version_on_the_command_line():
    out = subprocess.run([sys.executable, "-m", "wsfast", "--version"], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"wsfast {wsfast.__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:(?:a|b|rc|\.dev)\d+)?", wsfast.__version__)


def test_version_is_written_in_one_place():
    if tomllib is None:
        pytest.skip("tomllib is Python 3.11+")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "wsfast.__version__"}
    with open(os.path.join(ROOT, "CHANGELOG.md"), encoding="utf-8") as f:
        changelog = f.read()
    # the newest entry is this version (or the unreleased work towards the next)
    first = re.search(r"^## \[?([^\]\s]+)", changelog, re.M).group(1)
    assert first in (wsfast.__version__, "Unreleased")
    assert f"## [{wsfast.__version__}]" in changelog or f"## {wsfast.__version__}" in changelog


async def _raw(port, request):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


class Echo(wsfast.WebSocketHandler):
    def on_message(self, message):
        self.write_message(message)


async def test_error_page_has_the_standard_reason_and_the_detail_once():
    app = wsfast.Application([(r"/ws", Echo)])
    server = await app.listen(0, host="127.0.0.1")
    try:
        # a browser opening the WebSocket's URL as a page
        response = await _raw(server.port, b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    finally:
        await app.stop(timeout=2)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 400 Bad Request"
    assert response.count(b'Can "Upgrade" only to "WebSocket".') == 1
    assert b'Can "Upgrade" only to "WebSocket".' in body


async def test_http_error_reason_still_names_the_status_line():
    class Teapot(wsfast.RequestHandler):
        def get(self):
            raise wsfast.HTTPError(418, reason="Short And Stout")

    app = wsfast.Application([(r"/", Teapot)])
    server = await app.listen(0, host="127.0.0.1")
    try:
        response = await _raw(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    finally:
        await app.stop(timeout=2)
    assert response.split(b"\r\n")[0] == b"HTTP/1.1 418 Short And Stout"


async def test_chat_serves_a_favicon():
    chat = ChatServer()
    await chat.start()
    app = chat.application()
    server = await app.listen(0, host="127.0.0.1")
    try:
        response = await _raw(server.port, b"GET /favicon.ico HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        page = await _raw(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    finally:
        await app.stop(timeout=2)
        await chat.close()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert re.search(rb"(?im)^content-type: image/", head), head
    assert body[:4] == b"\x00\x00\x01\x00"  # an ICO file
    assert b'rel="icon" href="favicon.ico"' in page


def test_run_says_where_it_listens():
    script = textwrap.dedent("""
        import wsfast
        class Page(wsfast.RequestHandler):
            def get(self):
                self.write("hi")
        wsfast.run(wsfast.Application([(r"/", Page)]), host="127.0.0.1", port=0, use_uvloop=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stderr], [], [], 30)  # never hang on a silent run()
        line = proc.stderr.readline() if ready else "(nothing printed in 30 s)"
        match = re.fullmatch(r"wsfast: listening on http://127\.0\.0\.1:(\d+) \(Ctrl-C to stop\)\n", line)
        assert match, line
        port = int(match.group(1))
        response = asyncio.run(_raw(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        assert response.startswith(b"HTTP/1.1 200 ") and response.endswith(b"hi")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def _project_warnings(output):
    """Warning lines of ``output``, less the environment's own (byte-compiling
    off under PYTHONDONTWRITEBYTECODE; a pip index location that is absent)."""
    return [line for line in output.splitlines()
            if re.search(r"warn|deprecat", line, re.I)
            and "byte-compiling is disabled" not in line
            and "is ignored: it is neither a file nor a directory" not in line]


def test_building_the_package_prints_no_warning(tmp_path):
    # build_py reads the whole packaging configuration (license, packages,
    # package data, dynamic version) and copies the files: the warnings
    # setuptools has about them show here, in a second or two.
    out = subprocess.run([sys.executable, "setup.py", "build_py", "-d", str(tmp_path / "lib")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, WSFAST_NO_EXTENSIONS=""))
    assert out.returncode == 0, out.stdout + out.stderr
    assert _project_warnings(out.stdout + out.stderr) == []
    assert (tmp_path / "lib" / "wsfast" / "static" / "chat.html").exists()
    assert (tmp_path / "lib" / "wsfast" / "static" / "favicon.ico").exists()


def test_a_test_run_prints_no_warning():
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/test_newcomer.py::test_version_on_the_command_line"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert _project_warnings(out.stdout + out.stderr) == [], out.stdout


def test_the_package_ships_its_types(tmp_path):
    out = subprocess.run([sys.executable, "setup.py", "build_py", "-d", str(tmp_path / "lib")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "lib" / "wsfast" / "py.typed").exists()
    assert (tmp_path / "lib" / "wsfast" / "_frame.pyi").exists()
