"""Every code example of the documentation runs (issue 17): README.md,
docs/*.md and the site's guides (docs/guide/*.md).

Each page's fenced blocks run in order, in a fresh temporary directory:

* ``python``: a script in a fresh process (code with top-level ``await`` runs
  inside a coroutine), which must exit 0. A block after ``<!-- server -->``
  is a server: it runs in the background until the page is done (then it
  must stop cleanly on SIGTERM, having printed what a ``# prints: ...``
  comment says), and the next block starts once it listens.
* ``sh``: each command runs where it can (servers are started, a real
  client talks to them, they are stopped with SIGTERM and must exit 0);
  the commands in ``NOT_RUN`` are checked instead (the file exists, the
  extras exist, the options are in ``--help``), with the reason there.
* ``nginx`` / ``haproxy``: the configuration runs in a real nginx / HAProxy
  in front of ``python -m wsfast``, and a client talks through it.
* A block after ``<!-- example: harness NAME -->`` is a fragment (it uses
  names the page's prose defines: ``routes``, ``handler``, a user store...):
  it runs inside the harness ``HARNESSES[NAME]``, which gives it those names
  and then checks what the page says it does, against real servers.
* A block after ``<!-- example: api MODULE -->`` is an interface listing
  (signatures without bodies): every ``class``, ``def`` and its parameters
  named there must exist in MODULE.
* A block after ``<!-- example: alternatives -->`` shows ways to say the
  same thing (an import before and after switching): each line runs alone.
* A block after ``<!-- example: file app.py -->`` is a file the other
  examples run (``app:app``): written into every page's directory.
* A block after ``<!-- example: not run: REASON -->`` is not run; such
  blocks must be listed in ``EXCLUDED`` with the same reason.

The literal blocks of the package's docstrings (the API reference shows
them) run too, each in its harness in ``DOCSTRING_HARNESSES``; the few that
are not Python (a wire format, a state diagram) are in
``DOCSTRING_NOT_PYTHON`` with what they are.

The well-known ports of the examples (8000, 8888, 9001, Redis' 6379) are
replaced by free ones, so the examples never meet a running demo.
"""

import ast
import asyncio
import inspect
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request

import pytest

import wsfast
from wsfast.sync import connect as sync_connect

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
PYTHON = sys.executable


def _pages():
    pages = ["README.md"]
    for sub in ("docs", os.path.join("docs", "guide")):
        pages += sorted(os.path.join(sub, n) for n in os.listdir(os.path.join(ROOT, sub)) if n.endswith(".md"))
    return pages


PAGES = _pages()

FENCE = re.compile(r"((?:^<!--[^\n]*-->\n)*)^```([^\s`]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
MARKER = re.compile(r"<!--\s*(server|example:\s*(.*?))\s*-->")


class Block:
    def __init__(self, page, line, lang, code, marker):
        self.page, self.line, self.lang, self.code = page, line, lang, code
        self.kind, _, self.arg = (marker or "").partition(" ")
        self.arg = self.arg.strip()

    def __repr__(self):
        return f"{self.page}:{self.line} ({self.lang} {self.kind} {self.arg})".strip()


def blocks(page):
    """The code blocks of a page, MyST directives (```{toctree} ...) left out."""
    with open(os.path.join(ROOT, page), encoding="utf-8") as f:
        text = f.read()
    found = []
    for m in FENCE.finditer(text):
        lang = m.group(2)
        if lang.startswith("{"):
            continue
        marker = None
        for mm in MARKER.finditer(m.group(1)):
            marker = "server" if mm.group(1) == "server" else mm.group(2)
        line = text.count("\n", 0, m.start(2)) + 1
        found.append(Block(page, line, lang, m.group(3), marker))
    return found


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc=None, timeout=30, what="the server example"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}: " + _output(proc))
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{what} does not listen on {port} after {timeout} s")


def _output(proc):
    out = b""
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            try:
                out += stream.read() or b""
            except (OSError, ValueError):
                pass
    return out.decode(errors="replace")


def stop(proc, what, timeout=15):
    """SIGTERM; the process must exit 0 (a clean shutdown)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"{what} did not stop within {timeout} s of SIGTERM: " + _output(proc))
    if proc.returncode == -signal.SIGTERM:  # uvicorn: a clean shutdown, then the signal re-raised
        err = _output(proc)
        assert "Finished server process" in err, f"{what} killed by SIGTERM: " + err
        return
    assert proc.returncode == 0, f"{what} exited with {proc.returncode} on SIGTERM: " + _output(proc)


def kill(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait()


# -- commands of ``sh`` blocks that are checked, not run ----------------------

NOT_RUN = {
    "bash ci/": "CI scripts: they install packages (apt, pip) and run the whole test suite or build "
                "wheels (minutes; CI runs them). Checked: the script exists and bash parses it.",
    "pip install": "installs from PyPI into the environment running the tests. Checked: the extras "
                   "named exist in pyproject.toml.",
    "python bench/": "benchmarks (minutes). Checked: the script's --help lists every option used.",
    "python -m wsfast bench": "the benchmark suite (15-20 minutes). Checked: its --help lists every option used.",
    "pytest": "a slow test run of its own. Checked: the test file exists and has slow tests.",
}

# Blocks marked ``<!-- example: not run: REASON -->``: (page, reason).
EXCLUDED = []


def pyproject_extras():
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        text = f.read()
    section = re.search(r"^\[project\.optional-dependencies\]\n(.*?)(?=^\[)", text, re.M | re.S).group(1)
    return set(re.findall(r"^([A-Za-z0-9_-]+)\s*=", section, re.M))


def check_pip(args):
    extras = pyproject_extras()
    for spec in args:
        if spec.startswith("-") or spec == ".":
            continue
        m = re.fullmatch(r"wsfast(?:\[([\w,-]+)\])?", spec)
        assert m, f"pip install {spec}: not wsfast"
        for extra in (m.group(1) or "").split(","):
            assert not extra or extra in extras, f"pip install {spec}: no extra {extra!r} in pyproject.toml"


def check_help_options(argv, used):
    out = subprocess.run(argv + ["--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    for option in used:
        if option.startswith("--"):
            assert option.split("=")[0] in out.stdout, f"{' '.join(argv)}: no option {option} in --help"


class Page:
    """One page's run: its directory, port map, background processes."""

    def __init__(self, page, tmp_path):
        self.page = page
        self.dir = tmp_path
        self.ports = {p: free_port() for p in (8000, 8888, 9001, 6379)}
        self.env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
                        PYTHONUNBUFFERED="1")
        for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            self.env.pop(name, None)
        self.servers = []  # [(script, proc, port)]
        self.others = []  # processes stopped at the end without checks (redis)
        self.redis = None
        self.cleanup = []
        self.certificate = None
        for name, code in APP_FILES.items():
            (tmp_path / name).write_text(code, encoding="utf-8")

    def sub(self, code):
        for port, new in self.ports.items():
            code = re.sub(rf"(?<![\d.]){port}(?!\d)", str(new), code)
        return code

    # -- processes

    def popen(self, argv, **kw):
        return subprocess.Popen(argv, cwd=self.dir, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, **kw)

    def start_redis(self):
        if self.redis is None:
            exe = shutil.which("redis-server") or "/usr/bin/redis-server"
            if not os.path.exists(exe):
                pytest.skip("redis-server is not installed (ci/test.sh installs it)")
            port = self.ports[6379]
            self.redis = self.popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                     "--appendonly", "no"])
            self.others.append(self.redis)
            wait_listening(port, self.redis, what="redis-server")

    def start_server_script(self, script, port):
        proc = self.popen([PYTHON, str(script)])
        self.servers.append((script, proc, port))
        wait_listening(port, proc)

    def stop_servers(self):
        for script, proc, port in self.servers:
            stop(proc, f"the server example {script.name}")
            printed = proc.stdout.read().decode(errors="replace") + proc.stderr.read().decode(errors="replace")
            for expected in re.findall(r"# prints: (.*)", script.read_text(encoding="utf-8")):
                assert expected.strip() in printed, f"{script.name} did not print {expected!r}: {printed}"

    def restart_servers(self):
        old, self.servers = self.servers, []
        for script, proc, port in old:
            self.start_server_script(script, port)

    def close(self, ok):
        try:
            if ok:
                self.stop_servers()
        finally:
            for _, proc, _ in self.servers:
                kill(proc)
            for proc in self.others:  # SIGTERM first: nginx's master then stops its workers
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        pass
                kill(proc)
            for f in self.cleanup:
                f()

    def run_script(self, code, name, timeout=60, stdin=None):
        script = self.dir / name
        script.write_text(code, encoding="utf-8")
        out = subprocess.run([PYTHON, str(script)], cwd=self.dir, env=self.env, capture_output=True,
                             text=True, timeout=timeout)
        assert out.returncode == 0, f"{name}:\n{code}\n--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}"
        return out.stdout


def has_top_level_await(code):
    try:
        compile(code, "<example>", "exec")
        return False
    except SyntaxError:
        compile(code, "<example>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)  # else: a real error
        return True


def as_coroutine(code, name="example"):
    """The block as ``async def example()`` returning its locals (a snippet
    with top-level ``await`` is a fragment of a coroutine that has imported
    wsfast)."""
    return "import asyncio\n\nimport wsfast\n\n\n" + f"async def {name}():\n" + textwrap.indent(code, "    ") + "\n    return locals()\n"


# -- running the blocks ---------------------------------------------------------

def run_python(page, block, i):
    code = page.sub(block.code)
    if block.kind == "server":
        script = page.dir / f"example_{i}.py"
        script.write_text(code, encoding="utf-8")
        ports = [page.ports[p] for p in (8000, 8888, 9001) if re.search(rf"(?<!\d){p}(?!\d)", block.code)]
        assert ports, f"{block}: a server example names its port (8000)"
        page.start_server_script(script, ports[0])
        return
    if block.kind == "file":
        ast.parse(block.code)  # written into every page's directory; run by the sh examples
        page.run_script(code, f"example_{i}.py")
        return
    if block.kind == "api":
        check_api_listing(block)
        return
    if block.kind == "alternatives":  # "before" / "after" lines: each is a program of its own
        for j, line in enumerate(l for l in code.splitlines() if l.strip()):
            page.run_script(line + "\n", f"example_{i}_{j}.py")
        return
    if block.kind == "harness":
        HARNESSES[block.arg](page, block, i)
        return
    assert not block.kind, f"{block}: unknown marker"
    if has_top_level_await(code):
        code = "import asyncio\n\n" + as_coroutine(code) + "\n\nasyncio.run(example())\n"
    page.run_script(code, f"example_{i}.py")


def run_sh(page, block, i):
    for line in block.code.splitlines():
        argv = shlex.split(line, comments=True)
        if not argv:
            continue
        background = argv[-1] == "&"
        if background:
            argv = argv[:-1]
        command = " ".join(argv)
        not_run = next((prefix for prefix in NOT_RUN if command.startswith(prefix)), None)
        checked_only = True
        if argv[:2] == ["pip", "install"]:
            check_pip(argv[2:])
        elif argv[0] == "bash" and len(argv) > 1 and argv[1].startswith("ci/"):
            path = os.path.join(ROOT, argv[1])
            assert os.path.exists(path), f"{block}: {argv[1]} does not exist"
            assert subprocess.run(["bash", "-n", path]).returncode == 0, f"{block}: bash -n {argv[1]}"
        elif argv[0] == "python" and len(argv) > 1 and argv[1].startswith("bench/"):
            assert os.path.exists(os.path.join(ROOT, argv[1])), f"{block}: {argv[1]} does not exist"
            check_help_options([PYTHON, argv[1]], argv[2:])
        elif argv[:4] == ["python", "-m", "wsfast", "bench"]:
            check_help_options([PYTHON, "-m", "wsfast", "bench"], argv[4:])
        elif argv[0] == "pytest":
            files = [a for a in argv[1:] if a.startswith("tests/")]
            assert files, f"{block}: {command}"
            for name in files:
                with open(os.path.join(ROOT, name.split("::")[0]), encoding="utf-8") as f:
                    assert "pytest.mark.slow" in f.read() or "-m" not in argv, f"{block}: {name} has no slow tests"
        else:
            checked_only = False
            if argv[0] == "redis-server":
                assert background and len(argv) == 1, f"{block}: {command}"
                page.start_redis()
            elif argv[:3] == ["python", "-m", "wsfast"]:
                run_cli(page, block, argv[3:])
            elif argv[0] == "uvicorn":
                run_server_command(page, block, [PYTHON, "-m", "uvicorn"] + argv[1:], "asgi", argv[1])
            else:
                raise AssertionError(f"{block}: no way to run {command!r}: teach tests/test_doc_examples.py")
        assert checked_only == (not_run is not None), f"{block}: {command}: NOT_RUN says why it is not run"


def run_cli(page, block, args):
    if args[0] in ("--version", "--help", "-h"):
        out = subprocess.run([PYTHON, "-m", "wsfast"] + args, cwd=page.dir, env=page.env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        if args[0] == "--version":
            assert wsfast.__version__ in out.stdout
        return
    assert args[0] in ("echo", "demo", "chat", "asgi"), f"{block}: python -m wsfast {args[0]}"
    run_server_command(page, block, [PYTHON, "-m", "wsfast"] + args, args[0], args[1] if args[0] == "asgi" else None)


def run_server_command(page, block, argv, kind, app=None):
    """Start a server command on a free port, talk to it with a real client,
    stop it with SIGTERM: it must exit 0."""
    argv = [page.sub(a) for a in argv]
    port = free_port()
    if "--port" in argv:
        argv[argv.index("--port") + 1] = str(port)
    else:
        argv += ["--port", str(port)]
    proc = page.popen(argv)
    try:
        wait_listening(port, proc, what=" ".join(argv[1:]))
        PROBES[kind](port, argv, app)
    except BaseException:
        kill(proc)
        raise
    stop(proc, " ".join(argv[1:]))


def probe_echo(port, argv, app):
    options = {"compression": "deflate"} if "--deflate" in argv else {}
    from wsfast.client import connect
    from wsfast.deflate import PerMessageDeflate

    async def talk():
        async with connect(f"ws://127.0.0.1:{port}/", **options) as ws:
            if options:
                assert any(isinstance(e, PerMessageDeflate) for e in ws.extensions), ws.extensions
            for message in ("hello " * 100, b"\x00\x01" * 300):
                await ws.send(message)
                assert await asyncio.wait_for(ws.recv(), 10) == message
    asyncio.run(talk())


def probe_demo(port, argv, app):
    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read().decode()
    assert "WebSocket" in page
    with sync_connect(f"ws://127.0.0.1:{port}/websocket") as ws:
        assert "welcome" in ws.recv(timeout=10)
        ws.send("hi")
        assert ws.recv(timeout=10).endswith(": hi")


def probe_chat(port, argv, app):
    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read().decode()
    assert "<html" in page.lower()
    with sync_connect(f"ws://127.0.0.1:{port}/chat") as ws:
        ws.send(json.dumps({"type": "join", "nick": "ada", "room": "lobby"}))
        events = []
        while not events or events[-1]["type"] != "welcome":
            events.append(json.loads(ws.recv(timeout=10)))
        ws.send(json.dumps({"type": "msg", "text": "hello from the docs"}))
        while True:
            event = json.loads(ws.recv(timeout=10))
            if event["type"] == "msg":
                assert event["text"] == "hello from the docs" and event["nick"] == "ada", event
                break


def probe_asgi(port, argv, app):
    # app.py is docs/asgi.md's FastAPI chat, as is tests.asgi_chat_app
    assert app in ("app:app", "tests.asgi_chat_app:app"), app
    with sync_connect(f"ws://127.0.0.1:{port}/ws/lobby?name=ann") as ann:
        assert ann.recv(timeout=10) == "* ann joined"
        with sync_connect(f"ws://127.0.0.1:{port}/ws/lobby?name=bob") as bob:
            assert bob.recv(timeout=10) == "* bob joined"
            assert ann.recv(timeout=10) == "* bob joined"
            bob.send("hi ann")
            assert ann.recv(timeout=10) == "bob: hi ann"
            assert bob.recv(timeout=10) == "bob: hi ann"


PROBES = {"echo": probe_echo, "demo": probe_demo, "chat": probe_chat, "asgi": probe_asgi}


# -- interface listings ---------------------------------------------------------

def check_api_listing(block):
    """``class Name`` and ``def name(params)`` (indented under their class,
    or module functions) of the block exist in the module, with those
    parameter names; ``NAME(params)`` of a dotted name too."""
    import importlib

    module = importlib.import_module(block.arg)
    checked = 0
    owner = None
    for line in block.code.splitlines():
        code = line.split("#")[0].rstrip()
        if not code.strip():
            continue
        indent = len(code) - len(code.lstrip())
        m = re.match(r"class (\w+)", code.strip())
        if m and indent == 0:
            assert hasattr(module, m.group(1)), f"{block}: {block.arg}.{m.group(1)} does not exist"
            owner = getattr(module, m.group(1))
            checked += 1
            for rest in re.findall(r"(?:;\s*|:\s+)class (\w+)", code):  # class Ping: data ; class Pong: data
                assert hasattr(module, rest), f"{block}: {block.arg}.{rest} does not exist"
                checked += 1
            members = re.match(r"class \w+\((?:Enum|IntEnum)\):\s*(.*)", code.strip())
            if members:
                for name in re.findall(r"\w+", members.group(1)):
                    assert hasattr(owner, name), f"{block}: {owner.__name__}.{name} does not exist"
            continue
        if indent == 0:
            owner = None
        for m in re.finditer(r"\bdef (\w+)\(([^)]*)\)?", code):
            target = owner if owner is not None and indent else module
            assert hasattr(target, m.group(1)), f"{block}: {getattr(target, '__name__', target)}.{m.group(1)} does not exist"
            check_params(block, getattr(target, m.group(1)), m.group(2))
            checked += 1
        m = re.match(r"\s*(?:\w+ = )?((?:\w+\.)+\w+)\((.*)\)\s*$", code)
        if m and indent == 0 and m.group(1).split(".")[0] == "wsfast":
            obj = importlib.import_module("wsfast")
            for part in m.group(1).split(".")[1:]:
                obj = getattr(obj, part)
            check_params(block, obj, m.group(2))
            checked += 1
    assert checked, f"{block}: an interface listing with nothing checked"


def check_params(block, func, params):
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return
    names = set(signature.parameters)
    for param in params.split(","):
        name = re.match(r"\s*\**\s*(\w*)", param).group(1)
        if name and name != "self":
            assert name in names, f"{block}: {func.__qualname__} has no parameter {name!r} ({signature})"


# -- harnesses for the fragments ------------------------------------------------

# Harness code shared by the auth examples' scripts (a postlude before theirs).
EXPECT_REFUSED = """
    async def expect_refused(url, *cases):
        \"\"\"Each ``(headers, challenge)`` of ``cases`` is refused with 401 and a
        WWW-Authenticate header that contains ``challenge``.\"\"\"
        for headers, challenge in cases:
            try:
                await wsfast.connect(url, additional_headers=headers)
            except wsfast.HandshakeError as exc:
                assert exc.status == 401, exc
                assert challenge in dict((k.lower(), v) for k, v in exc.headers)["www-authenticate"]
            else:
                raise AssertionError(f"{headers}: accepted")
    """


def harness_script(prelude, block_code, *postludes, wrap=False):
    """A script: ``prelude``, the page's code (in a coroutine with ``wrap``),
    then the ``postludes``, each dedented on its own."""
    body = as_coroutine(block_code) if wrap else block_code
    return "\n".join([textwrap.dedent(prelude), body] + [textwrap.dedent(p) for p in postludes])


def h_until_shutdown(page, block, i):
    """A client that reads ``async for message in ws`` until the server
    closes normally: it must end cleanly when the page's server stops."""
    code = "import asyncio\n" + as_coroutine(page.sub(block.code)) + "\nasyncio.run(example())\n"
    script = page.dir / f"example_{i}.py"
    script.write_text(code, encoding="utf-8")
    proc = page.popen([PYTHON, str(script)])
    try:
        first = proc.stdout.readline().decode()
        assert first.strip(), f"{block}: printed nothing: " + _output(proc)
        page.stop_servers()  # 1001: the client's loop ends, no exception
        assert proc.wait(15) == 0, f"{block}:\n{code}\n{first}" + _output(proc)
    finally:
        kill(proc)
    page.restart_servers()


def h_reconnect(page, block, i):
    url = re.search(r'"(wss?://[^"]+)"', block.code).group(1)
    code = harness_script("""
        import asyncio, contextlib, io
        import wsfast

        connections = 0

        class Feed(wsfast.WebSocketHandler):  # a message, then the connection drops (1011)
            async def open(self):
                global connections
                connections += 1
                await self.write_message(f"message {connections}")
                self.close(1011, "going down")
        """, block.code.replace(f'"{url}"', "FEED_URL"), """
        async def main():
            global FEED_URL
            app = wsfast.Application([(r"/feed", Feed)])
            server = await app.listen(0, host="127.0.0.1")
            FEED_URL = f"ws://127.0.0.1:{server.port}/feed"
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                task = asyncio.ensure_future(example())
                for _ in range(200):
                    if "message 3" in out.getvalue():
                        break
                    await asyncio.sleep(0.05)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            assert out.getvalue().splitlines()[:3] == ["message 1", "message 2", "message 3"], out.getvalue()
            await app.stop()

        asyncio.run(main())
        """, wrap=True)
    page.run_script(code, f"example_{i}.py")


def h_upload(page, block, i):
    own = free_port()
    code = harness_script("", block.code.replace("8000", str(own)), f"""
        import asyncio, os, tempfile

        class Upload(wsfast.WebSocketHandler):
            def on_message(self, message):
                self.write_message(message, binary=True)

        async def main():
            app = wsfast.Application([(r"/upload", Upload)])
            await app.listen({own}, host="127.0.0.1")
            data = os.urandom(300_000)
            with tempfile.NamedTemporaryFile(delete=False) as f:
                f.write(data)
            await upload(f.name)
            sys.stdout.flush()
            await app.stop()
            os.unlink(f.name)
            with open("uploaded", "wb") as f:
                f.write(data)

        asyncio.run(main())
        """)
    script = page.dir / f"example_{i}.py"
    script.write_text(code, encoding="utf-8")
    out = subprocess.run([PYTHON, str(script)], cwd=page.dir, env=page.env, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    assert out.stdout == (page.dir / "uploaded").read_bytes(), "the echoed upload differs"


def h_lobby_redis(page, block, i):
    page.start_redis()
    page.run_script(harness_script("", page.sub(block.code), """
        import asyncio

        async def main():
            await hub.start()
            app = wsfast.Application([(r"/lobby", Lobby)])
            server = await app.listen(0, host="127.0.0.1")
            url = f"ws://127.0.0.1:{server.port}/lobby"
            async with wsfast.connect(url) as ada, wsfast.connect(url) as bob:
                await asyncio.sleep(0.3)  # both subscribed on Redis
                await ada.send("hello, lobby")
                assert await asyncio.wait_for(ada.recv(), 10) == "hello, lobby"
                assert await asyncio.wait_for(bob.recv(), 10) == "hello, lobby"
            await app.stop()
            await hub.close()

        asyncio.run(main())
        """), f"example_{i}.py")


def h_deflate_on(page, block, i):
    page.run_script(harness_script("""
        import asyncio
        import wsfast
        from wsfast.deflate import PerMessageDeflate

        routes = []
        blob = b"\\x89PNG already compressed"
        jpeg_bytes = b"\\xff\\xd8\\xff\\xe0 already compressed"
        """, block.code, """
        class Echo(wsfast.WebSocketHandler):
            def on_message(self, message):
                self.write_message(message)

        async def main():
            global uri
            server_app = wsfast.Application([(r"/echo", Echo)], websocket_compression="deflate")
            server = await server_app.listen(0, host="127.0.0.1")
            uri = f"ws://127.0.0.1:{server.port}/echo"
            names = await example()
            assert names["app"].settings["websocket_compression"] == "deflate"
            # the per-handler hook: Chat compresses with its options
            chat_app = wsfast.Application([(r"/chat", names["Chat"])])
            chat_server = await chat_app.listen(0, host="127.0.0.1")
            async with wsfast.connect(f"ws://127.0.0.1:{chat_server.port}/chat", compression="deflate") as ws:
                assert [type(e) for e in ws.extensions] == [PerMessageDeflate], ws.extensions
                await ws.send("compressible " * 100)
                assert await ws.recv() == "compressible " * 100
                assert await ws.recv() == blob
            await chat_app.stop()
            await server_app.stop()

        asyncio.run(main())
        """, wrap=True), f"example_{i}.py")


def h_deflate_api(page, block, i):
    # the server half's ext is kept (the client half reuses the name) for the Connection
    code = block.code.replace("# client\n", "ext_server = ext\n# client\n", 1)
    code = code.replace("\n# sending one message uncompressed\n",
                        "\nconn = Connection(Side.SERVER, extensions=[ext_server])\n"
                        "# sending one message uncompressed\n", 1)
    assert "ext_server = ext" in code and "conn = Connection" in code, "the deflate API block changed shape"
    page.run_script(harness_script("""
        from types import SimpleNamespace
        from wsfast.connection import Connection, Side
        from wsfast.deflate import PerMessageDeflate
        from wsfast.http import Headers

        # a browser's offer, and a response carrying the server's answer below
        request = SimpleNamespace(headers=Headers([
            ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")]))

        class Response:
            @property
            def headers(self):
                return Headers([("Sec-WebSocket-Extensions", header)])

        response = Response()
        text, data = "hello " * 50, b"\\x00" * 300
        """, code, """
        assert header.startswith("permessage-deflate"), header
        assert isinstance(ext_server, PerMessageDeflate) and isinstance(ext, PerMessageDeflate)
        assert request_header == "permessage-deflate; client_max_window_bits", request_header
        plain = Connection(Side.SERVER)
        assert conn.send_text(text, compress=False) == plain.send_text(text)  # RSV1 clear, as is
        """), f"example_{i}.py")


def h_deflate_appendix(page, block, i):
    page.run_script(harness_script("", block.code, """
        ratio, c_us, d_us = run(zlib, msgs[:100], 12, 5, 6, True)
        assert 0.1 < ratio < 0.8 and c_us > 0 and d_us > 0, (ratio, c_us, d_us)
        comp, dec = memory(zlib, 12, 5, 6, msgs[0])
        assert comp > 0 and dec > 0, (comp, dec)
        assert len(msgs) == 2000 and big.startswith(b"[{")
        """), f"example_{i}.py")


def h_pubsub_api(page, block, i):
    page.start_redis()
    page.run_script(harness_script("""
        import asyncio
        import wsfast

        opened = None

        class Member(wsfast.WebSocketHandler):
            def open(self):
                opened.set_result(self)
        """, page.sub(block.code), """
        async def main():
            global handler, opened
            opened = asyncio.get_running_loop().create_future()
            app = wsfast.Application([(r"/member", Member)])
            server = await app.listen(0, host="127.0.0.1")
            async with wsfast.connect(f"ws://127.0.0.1:{server.port}/member") as ws:
                handler = await opened
                names = await example()
                assert await asyncio.wait_for(ws.recv(), 10) == "hello"
                result = names["result"]
                assert result.local.sent == 1 and result.accepted, result
            await app.stop()

        asyncio.run(main())
        """, wrap=True), f"example_{i}.py")


def h_allowed_hosts(page, block, i):
    page.run_script(harness_script("""
        import asyncio
        import wsfast

        class Echo(wsfast.WebSocketHandler):
            def on_message(self, message):
                self.write_message(message)

        routes = [(r"/ws", Echo)]
        """, block.code, """
        async def status(port, host, origin=None):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            head = (f"GET /ws HTTP/1.1\\r\\nHost: {host}\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n")
            if origin:
                head += f"Origin: {origin}\\r\\n"
            writer.write((head + "\\r\\n").encode())
            line = await reader.readline()
            writer.close()
            return int(line.split()[1])

        async def main():
            server = await app.listen(0, host="127.0.0.1")
            assert await status(server.port, "chat.example.org") == 101
            assert await status(server.port, "evil.example") == 400
            assert await status(server.port, "chat.example.org", "https://chat.example.org") == 101
            assert await status(server.port, "chat.example.org", "https://www.example.org") == 101
            assert await status(server.port, "chat.example.org", "https://evil.example") == 403
            await app.stop()

        asyncio.run(main())
        """), f"example_{i}.py")


def h_auth_mixin(page, block, i):
    page.run_script(harness_script("""
        import asyncio
        from types import SimpleNamespace

        class Sessions:  # the page's "your store"
            async def find(self, token):
                return {"good": SimpleNamespace(user="ada", expired=False),
                        "old": SimpleNamespace(user="bob", expired=True)}.get(token)

        sessions = Sessions()
        """, block.code, EXPECT_REFUSED, """
        async def main():
            app = wsfast.Application([(r"/chat", Chat)])
            server = await app.listen(0, host="127.0.0.1")
            url = f"ws://127.0.0.1:{server.port}/chat"
            async with wsfast.connect(url, additional_headers={"Authorization": "Bearer good"}) as ws:
                assert await ws.recv() == "hello ada"
            async with wsfast.connect(url + "?access_token=good") as ws:
                assert await ws.recv() == "hello ada"
            await expect_refused(url, ({}, 'Bearer realm="chat"'),
                                 ({"Authorization": "Bearer old"}, 'error="invalid_token"'),
                                 ({"Authorization": "Bearer nope"}, 'error="invalid_token"'))
            await app.stop()

        asyncio.run(main())
        """), f"example_{i}.py")


def h_auth_tornado(page, block, i):
    pytest.importorskip("tornado")
    page.run_script(harness_script("", block.code, EXPECT_REFUSED, """
        import asyncio
        import tornado.web
        import wsfast

        async def main():
            app = tornado.web.Application([(r"/chat", Chat)])
            server = app.listen(0, address="127.0.0.1")
            port = next(iter(server._sockets.values())).getsockname()[1]
            url = f"ws://127.0.0.1:{port}/chat"
            # the page's verify_token is `...`: it returns None, so every token is refused
            await expect_refused(url, ({}, 'Bearer realm="chat"'),
                                 ({"Authorization": "Bearer any"}, 'error="invalid_token"'))
            server.stop()

        asyncio.run(main())
        """), f"example_{i}.py")


def asgi_token_prelude(*imports):
    """The top of a harness script for an ASGI token-auth example: FastAPI's
    ``app``, a ``verify(token)`` that knows the token "good" (user "ada"), the
    ``imports`` the example needs beyond those, and ``uvicorn_serving()``,
    which serves ``app`` with wsfast's ASGI protocol on a free loopback port."""
    return "\n".join(("import asyncio", "import contextlib", "import socket", "import uvicorn",
                      "import wsfast", "from fastapi import FastAPI, WebSocket",
                      "from wsfast.asgi import WSFastProtocol") + imports) + textwrap.dedent("""

        app = FastAPI()

        def verify(token):
            return "ada" if token == "good" else None

        @contextlib.asynccontextmanager
        async def uvicorn_serving():
            \"\"\"Serve ``app`` on 127.0.0.1; yields its ws:// base URL.\"\"\"
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            server = uvicorn.Server(uvicorn.Config(app, ws=WSFastProtocol, log_level="warning"))
            task = asyncio.ensure_future(server.serve(sockets=[sock]))
            try:
                while not server.started:
                    if task.done():  # it failed to start: say why rather than wait out a timeout
                        task.result()
                        raise RuntimeError("uvicorn returned without starting")
                    await asyncio.sleep(0.02)
                yield f"ws://127.0.0.1:{sock.getsockname()[1]}"
            finally:
                server.should_exit = True
                await task
        """)


def h_auth_asgi(page, block, i):
    pytest.importorskip("fastapi")
    page.run_script(harness_script(asgi_token_prelude(), block.code, EXPECT_REFUSED, """
        async def main():
            async with uvicorn_serving() as base:
                url = base + "/ws"
                ws = await wsfast.connect(url, additional_headers={"Authorization": "Bearer good"})
                await ws.close()  # accepted (the endpoint then returns)
                await expect_refused(url, ({}, 'Bearer realm="chat"'),
                                     ({"Authorization": "Bearer bad"}, 'error="invalid_token"'))

        asyncio.run(main())
        """), f"example_{i}.py")


def h_private(page, block, i):
    page.run_script(harness_script("", block.code, """
        import asyncio

        async def main():
            app = wsfast.Application([(r"/private", Private)])
            server = await app.listen(0, host="127.0.0.1")
            url = f"ws://127.0.0.1:{server.port}/private"
            try:
                await wsfast.connect(url + "?token=wrong")
            except wsfast.HandshakeError as exc:
                assert exc.status == 401 and ("WWW-Authenticate", "Bearer") in exc.headers, exc.headers
            else:
                raise AssertionError("accepted without the token")
            async with wsfast.connect(url + "?token=s3cret") as ws:
                await ws.send("in")
                assert await ws.recv() == "in"
            await app.stop()

        asyncio.run(main())
        """), f"example_{i}.py")


def h_handler_settings(page, block, i):
    page.run_script(harness_script("", block.code, """
        import asyncio

        class Echo(wsfast.WebSocketHandler):
            def on_message(self, message):
                self.write_message(len(message).to_bytes(4, "big"))

        Uploads.on_message = Echo.on_message

        async def main():
            server = await app.listen(0, host="127.0.0.1")
            async with wsfast.connect(f"ws://127.0.0.1:{server.port}/up", max_message_size=2**27) as ws:
                await ws.send(b"x" * (3 * 2**20))  # over the application's 1 MiB, under Uploads' 64 MiB
                assert int.from_bytes(await ws.recv(), "big") == 3 * 2**20
            await app.stop()

        asyncio.run(main())
        """), f"example_{i}.py")


def h_trusted_origin(page, block, i):
    page.run_script(harness_script("", block.code, """
        import asyncio

        async def main():
            app = wsfast.Application([(r"/api", Api)])
            server = await app.listen(0, host="127.0.0.1")
            url = f"ws://127.0.0.1:{server.port}/api"
            async with wsfast.connect(url, origin="https://app.example.com") as ws:
                await ws.send("ok")
                assert await ws.recv() == "ok"
            try:
                await wsfast.connect(url, origin="https://evil.example")
            except wsfast.HandshakeError as exc:
                assert exc.status == 403, exc
            else:
                raise AssertionError("another origin was accepted")
            await app.stop()

        asyncio.run(main())
        """), f"example_{i}.py")


HARNESSES = {
    "until-shutdown": h_until_shutdown,
    "reconnect": h_reconnect,
    "upload": h_upload,
    "lobby-redis": h_lobby_redis,
    "deflate-on": h_deflate_on,
    "deflate-api": h_deflate_api,
    "deflate-appendix": h_deflate_appendix,
    "pubsub-api": h_pubsub_api,
    "allowed-hosts": h_allowed_hosts,
    "auth-mixin": h_auth_mixin,
    "auth-tornado": h_auth_tornado,
    "auth-asgi": h_auth_asgi,
    "private": h_private,
    "handler-settings": h_handler_settings,
    "trusted-origin": h_trusted_origin,
}


# -- proxy configurations -------------------------------------------------------

def _uds(page):
    path = tempfile.mktemp(prefix="wsfast-doc-", suffix=".sock")  # short: sun_path has ~107 bytes
    page.cleanup.append(lambda: os.path.exists(path) and os.unlink(path))
    return path


def _start_backend(page, argv, port=None, uds=None):
    proc = page.popen([PYTHON, "-m", "wsfast"] + argv)
    page.others.append(proc)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise AssertionError(" ".join(argv) + ": " + _output(proc))
        if port is not None:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return proc
            except OSError:
                pass
        elif os.path.exists(uds):
            return proc
        assert time.monotonic() < deadline, " ".join(argv) + " does not listen"
        time.sleep(0.05)


def _client_tls(page):
    import ssl
    return ssl.create_default_context(cafile=page.certificate[0])


def config_nginx(page, block, i):
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        pytest.skip("nginx is not installed (ci/test.sh installs it)")
    conf = page.sub(block.code)
    port = free_port()
    d = page.dir
    if "listen 443 ssl;" in conf:  # docs/deploy.md: a whole site, TLS at nginx, the chat on a Unix socket
        uds = _uds(page)
        conf = (conf.replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
                .replace("/etc/ssl/chat.example.org.pem", page.certificate[0])
                .replace("/etc/ssl/chat.example.org.key", page.certificate[1])
                .replace("/run/wsfast/chat.sock", uds))
        _start_backend(page, ["chat", "--uds", uds], uds=uds)
        url, tls = f"wss://localhost:{port}/chat", _client_tls(page)
    else:  # docs/guide/deployment.md: a location block, to an echo server on port 8000
        m = re.search(r"proxy_pass http://127\.0\.0\.1:(\d+);", conf)
        _start_backend(page, ["echo", "--port", m.group(1)], port=int(m.group(1)))
        conf = f"server {{ listen 127.0.0.1:{port}; {conf} }}"
        url, tls = f"ws://127.0.0.1:{port}/websocket", None
    temp = "".join(f"{t}_temp_path {d}/{t};\n" for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (d / "nginx.conf").write_text(
        ("user root;\n" if os.geteuid() == 0 else "")  # the workers must reach the chat's socket
        # one process, no workers: nothing outlives the process the test stops
        + f"daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log;\n"
        f"events {{ worker_connections 64; }}\nhttp {{\naccess_log off;\n{temp}{conf}\n}}\n")
    proc = page.popen([nginx, "-c", str(d / "nginx.conf"), "-p", str(d), "-e", f"{d}/nginx-error.log"])
    page.others.append(proc)
    wait_listening(port, proc, what="nginx")
    _probe_through(url, tls, "chat" if tls else "echo")


def config_haproxy(page, block, i):
    haproxy = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)
    if haproxy is None:
        pytest.skip("haproxy is not installed (ci/test.sh installs it)")
    port = free_port()
    uds = _uds(page)
    pem = page.dir / "chat.pem"
    pem.write_text(open(page.certificate[0]).read() + open(page.certificate[1]).read())
    conf = (page.sub(block.code).replace("bind :443 ssl", f"bind 127.0.0.1:{port} ssl")
            .replace("/etc/ssl/chat.example.org.pem", str(pem)).replace("/run/wsfast/chat.sock", uds))
    assert str(port) in conf and uds in conf, "the HAProxy block changed shape"
    (page.dir / "haproxy.cfg").write_text(conf)
    _start_backend(page, ["chat", "--uds", uds], uds=uds)
    proc = page.popen([haproxy, "-db", "-f", str(page.dir / "haproxy.cfg")])
    page.others.append(proc)
    wait_listening(port, proc, what="haproxy")
    _probe_through(f"wss://localhost:{port}/chat", _client_tls(page), "chat")


def _probe_through(url, tls, kind):
    with sync_connect(url, ssl=tls) as ws:
        if kind == "echo":
            for message in ("through the proxy", b"\x00" * 70000):
                ws.send(message)
                assert ws.recv(timeout=10) == message
            return
        ws.send(json.dumps({"type": "join", "nick": "ada", "room": "lobby"}))
        while json.loads(ws.recv(timeout=10))["type"] != "welcome":
            pass
        ws.send(json.dumps({"type": "msg", "text": "through the proxy"}))
        while True:
            event = json.loads(ws.recv(timeout=10))
            if event["type"] == "msg":
                assert event["text"] == "through the proxy", event
                return


CONFIGS = {"nginx": config_nginx, "haproxy": config_haproxy}


def _app_files():
    files = {}
    for page in PAGES:
        for block in blocks(page):
            if block.kind == "file":
                files[block.arg] = block.code
    return files


APP_FILES = _app_files()


# -- the tests ------------------------------------------------------------------

def test_every_block_is_known():
    """Every block of every page is run or checked one of the ways above;
    the harnesses and exclusions listed here are all used."""
    used, excluded = set(), []
    for page in PAGES:
        for block in blocks(page):
            assert block.lang in ("python", "sh", "nginx", "haproxy"), f"{block}: say which language"
            assert block.kind in ("", "server", "harness", "api", "file", "alternatives", "not"), f"{block}: unknown marker"
            if block.kind == "harness":
                assert block.arg in HARNESSES, f"{block}: no harness {block.arg!r}"
                used.add(block.arg)
            if block.kind == "not":
                excluded.append((block.page, block.arg))
            if block.kind == "server":
                assert block.lang == "python"
    assert set(HARNESSES) == used, set(HARNESSES) - used
    assert sorted(excluded) == sorted(EXCLUDED)
    assert "app.py" in APP_FILES


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page, tmp_path, request):
    todo = blocks(page)
    if not todo:
        pytest.skip(f"{page} has no code block")
    run = Page(page, tmp_path)
    if any(b.lang in CONFIGS for b in todo):
        run.certificate = request.getfixturevalue("certificate")
    ok = False
    try:
        for i, block in enumerate(todo):
            if block.kind == "not":
                continue
            if block.lang == "python":
                run_python(run, block, i)
            elif block.lang == "sh":
                run_sh(run, block, i)
            else:
                CONFIGS[block.lang](run, block, i)
        ok = True
    finally:
        run.close(ok)


def test_examples_type_check(tmp_path):
    """mypy on the python blocks of docs/*.md and of the docstrings, as a
    user's code (README.md's and the guides' are checked by
    tests/test_typing.py). A fragment run by a
    harness uses names its page's prose defines (``routes``, ``handler``):
    they are left unknown (``name-defined`` off for it), everything else is
    checked."""
    pytest.importorskip("mypy", reason="mypy is in the test extra")
    package = tmp_path / "docs_examples"  # pyproject.toml: docs_examples.* is checked as user code
    package.mkdir()
    (package / "__init__.py").write_text("")
    count = 0
    for page in PAGES:
        if page == "README.md" or page.startswith(os.path.join("docs", "guide")):
            continue
        for block in blocks(page):
            if block.lang != "python" or block.kind in ("api", "not"):
                continue
            codes = [block.code]
            if block.kind == "alternatives":
                codes = [line + "\n" for line in block.code.splitlines() if line.strip()]
            for j, code in enumerate(codes):
                code = as_coroutine(code) if has_top_level_await(code) else code
                if block.kind == "harness":
                    code = '# mypy: disable-error-code="name-defined"\n' + code
                name = re.sub(r"\W", "_", f"{page[:-3]}_{block.line}_{j}")
                (package / f"{name}.py").write_text(code, encoding="utf-8")
                count += 1
    # the docstrings' examples, as fragments (their harnesses' names left unknown)
    for key, code in docstring_blocks().items():
        if key in DOCSTRING_NOT_PYTHON:
            continue
        if key == "wsfast.web.WebSocketHandler.get#0":  # a method
            code = "import wsfast\n\n\nclass Guarded(wsfast.WebSocketHandler):\n" + textwrap.indent(code, "    ")
        elif key == "wsfast.auth.asgi_authenticate#0":  # an endpoint's body
            code = "async def endpoint(websocket):\n" + textwrap.indent(code, "    ")
        elif has_top_level_await(code):
            code = as_coroutine(code)
        codes = [code]
        if DOCSTRING_HARNESSES[key] is d_alternatives:
            codes = [line + "\n" for line in code.splitlines() if line.strip()]
        for j, code in enumerate(codes):
            code = '# mypy: disable-error-code="name-defined"\n' + code
            (package / (re.sub(r"\W", "_", key) + f"_{j}.py")).write_text(code, encoding="utf-8")
            count += 1
    assert count >= 20
    out = subprocess.run([PYTHON, "-m", "mypy", "--cache-dir", os.path.join(ROOT, ".mypy_cache"),
                          str(package)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr


# -- examples in docstrings -----------------------------------------------------

def docstring_blocks():
    """``{"module.qualname#n": code}``: the literal blocks (``::``) of every
    docstring of the package (the site's API reference shows them)."""
    found = {}
    package = os.path.join(ROOT, "wsfast")
    for filename in sorted(os.listdir(package)):
        if not filename.endswith(".py"):
            continue
        with open(os.path.join(package, filename), encoding="utf-8") as f:
            tree = ast.parse(f.read())
        module = "wsfast" if filename == "__init__.py" else f"wsfast.{filename[:-3]}"

        def visit(node, qualname):
            doc = ast.get_docstring(node)
            if doc and "::" in doc:
                lines = doc.split("\n")
                n = i = 0
                while i < len(lines):
                    if not lines[i].rstrip().endswith("::"):
                        i += 1
                        continue
                    j = i + 1
                    while j < len(lines) and not lines[j].strip():
                        j += 1
                    k = j
                    while k < len(lines) and (not lines[k].strip() or lines[k][:1].isspace()):
                        k += 1
                    found[f"{qualname}#{n}"] = textwrap.dedent("\n".join(lines[j:k])).strip() + "\n"
                    n += 1
                    i = k
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    visit(child, f"{qualname}.{child.name}")

        visit(tree, module)
    return found


# Literal blocks of docstrings that are not Python: why.
DOCSTRING_NOT_PYTHON = {
    "wsfast.chat#0": "the chat's wire protocol: JSON messages the page sends",
    "wsfast.chat#1": "the chat's wire protocol: JSON messages the page gets (field names only)",
    "wsfast.connection#0": "a state diagram",
    "wsfast._connection_py.Connection._decode_extensions#0": "an interface listing (attributes and "
                                                         "methods an extension provides)",
}


def d_auth_module(page, code, i):
    """The TokenAuthMixin example: a user store, then 401 without a token or
    with a wrong/expired one, the upgrade and open() with a good one."""
    out = page.run_script(harness_script("""
        import asyncio
        from types import SimpleNamespace
        import wsfast

        class Sessions:  # the example's "your store"
            async def find(self, token):
                return {"good": SimpleNamespace(user="ada", expired=False),
                        "old": SimpleNamespace(user="bob", expired=True)}.get(token)

        sessions = Sessions()
        """, code, """
        async def main():
            app = wsfast.Application([(r"/chat", Chat)])
            server = await app.listen(0, host="127.0.0.1")
            url = f"ws://127.0.0.1:{server.port}/chat"
            async with wsfast.connect(url, additional_headers={"Authorization": "Bearer good"}) as ws:
                await ws.ping()
            for token in (None, "old", "nope"):
                try:
                    await wsfast.connect(url, additional_headers={"Authorization": f"Bearer {token}"} if token else {})
                except wsfast.HandshakeError as exc:
                    assert exc.status == 401, exc
                else:
                    raise AssertionError(f"{token}: accepted")
            await app.stop()

        asyncio.run(main())
        """), f"doc_{i}.py")
    assert "hello ada" in out, out


def d_asgi_authenticate(page, code, i):
    pytest.importorskip("fastapi")
    endpoint = ('@app.websocket("/ws")\nasync def chat(websocket: WebSocket):\n'
                + textwrap.indent(code, "    "))
    page.run_script(harness_script(asgi_token_prelude("from wsfast.auth import asgi_authenticate"),
                                   endpoint, """
        async def main():
            async with uvicorn_serving() as base:
                url = base + "/ws"
                ws = await wsfast.connect(url + "?access_token=good")
                await ws.close()
                try:
                    await wsfast.connect(url + "?access_token=bad")
                except wsfast.HandshakeError as exc:
                    assert exc.status == 401, exc
                else:
                    raise AssertionError("a bad token was accepted")

        asyncio.run(main())
        """), f"doc_{i}.py")


def d_broadcast(page, code, i):
    page.run_script(harness_script("""
        import asyncio
        import wsfast

        room = set()
        payload = b"\\x00\\x01" * 100

        class Member(wsfast.WebSocketHandler):
            def open(self):
                room.add(self)
        """, as_coroutine(code), """
        async def main():
            app = wsfast.Application([(r"/room", Member)])
            server = await app.listen(0, host="127.0.0.1")
            url = f"ws://127.0.0.1:{server.port}/room"
            async with wsfast.connect(url) as a, wsfast.connect(url) as b:
                while len(room) < 2:
                    await asyncio.sleep(0.01)
                names = await example()
                assert names["result"].sent == 2, names["result"]
                for ws in (a, b):
                    assert await ws.recv() == "hello"
                    assert await ws.recv() == payload
            await app.stop()

        asyncio.run(main())
        """), f"doc_{i}.py")


def _echo_server(page, port_in_code):
    script = page.dir / "echo_server.py"
    script.write_text(page.sub(textwrap.dedent(f"""
        import wsfast

        class Echo(wsfast.WebSocketHandler):
            def on_message(self, message):
                self.write_message(message)

        wsfast.run(wsfast.Application([(r"/.*", Echo)]), host="127.0.0.1", port={port_in_code})
        """)), encoding="utf-8")
    page.start_server_script(script, page.ports[port_in_code])


def _until_shutdown(port_in_code):
    def harness(page, code, i):
        _echo_server(page, port_in_code)
        h_until_shutdown(page, Block("docstring", 0, "python", code.replace("localhost", "127.0.0.1"), None), i)
    return harness


def d_pubsub(page, code, i):
    page.run_script(harness_script("", as_coroutine(code), """
        async def main():
            names = await example()
            app = wsfast.Application([(r"/room/(\\w+)", names["Room"])])
            server = await app.listen(0, host="127.0.0.1")
            url = f"ws://127.0.0.1:{server.port}/room/lobby"
            async with wsfast.connect(url) as a, wsfast.connect(url) as b:
                await asyncio.sleep(0.1)
                await a.send("hi, lobby")
                assert await a.recv() == "hi, lobby"
                assert await b.recv() == "hi, lobby"
            await app.stop()

        asyncio.run(main())
        """), f"doc_{i}.py")


def d_web_module(page, code, i):
    script = page.dir / f"doc_{i}.py"
    script.write_text(harness_script("""
        import wsfast

        class MainPage(wsfast.RequestHandler):
            def get(self):
                self.write("<p>the page</p>")
        """, page.sub(code), ""), encoding="utf-8")
    page.start_server_script(script, page.ports[8888])
    port = page.ports[8888]
    assert "the page" in urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read().decode()
    with sync_connect(f"ws://127.0.0.1:{port}/websocket") as ws:
        ws.send("hi")
        assert ws.recv(timeout=10) == "You said: hi"
    script, proc, _ = page.servers.pop()
    stop(proc, "the wsfast.web example")
    out = proc.stdout.read().decode()
    assert "opened" in out and "closed 1000" in out, out


def d_web_prepare(page, code, i):
    page.run_script(harness_script("""
        import asyncio
        import wsfast

        async def valid_token(token):  # the example's check
            return token == "s3cret"
        """, code, """
        Chat.on_message = lambda self, message: self.write_message(message)

        async def main():
            app = wsfast.Application([(r"/chat", Chat)])
            server = await app.listen(0, host="127.0.0.1")
            url = f"ws://127.0.0.1:{server.port}/chat"
            try:
                await wsfast.connect(url)
            except wsfast.HandshakeError as exc:
                assert exc.status == 401 and ("WWW-Authenticate", "Bearer") in exc.headers, exc
            else:
                raise AssertionError("accepted without a token")
            async with wsfast.connect(url + "?token=s3cret") as ws:
                await ws.send("in")
                assert await ws.recv() == "in"
            await app.stop()

        asyncio.run(main())
        """), f"doc_{i}.py")


def d_web_get(page, code, i):
    handler = "class Guarded(wsfast.WebSocketHandler):\n" + textwrap.indent(code, "    ")
    page.run_script(harness_script("""
        import asyncio
        import wsfast
        """, handler, """
        async def main():
            app = wsfast.Application([(r"/ws", Guarded)])
            server = await app.listen(0, host="127.0.0.1")
            url = f"ws://127.0.0.1:{server.port}/ws"
            try:
                await wsfast.connect(url, max_redirects=0)
            except wsfast.HandshakeError as exc:
                assert exc.status == 302 and ("Location", "/login") in exc.headers, (exc, exc.headers)
            else:
                raise AssertionError("upgraded without the cookie")
            async with wsfast.connect(url, additional_headers={"Cookie": "session=1"}) as ws:
                await ws.ping()
            await app.stop()

        asyncio.run(main())
        """), f"doc_{i}.py")


def d_alternatives(page, code, i):
    for j, line in enumerate(l for l in code.splitlines() if l.strip()):
        page.run_script(line + "\n", f"doc_{i}_{j}.py")


DOCSTRING_HARNESSES = {
    "wsfast.auth#0": d_auth_module,
    "wsfast.auth.asgi_authenticate#0": d_asgi_authenticate,
    "wsfast.broadcast#0": d_broadcast,
    "wsfast.client#0": _until_shutdown(8888),
    "wsfast.pubsub#0": d_pubsub,
    "wsfast.sync#0": _until_shutdown(8000),
    "wsfast.tornado#0": d_alternatives,
    "wsfast.web#0": d_web_module,
    "wsfast.web#1": d_web_prepare,
    "wsfast.web.WebSocketHandler.get#0": d_web_get,
}


def test_every_docstring_example_is_known():
    found = docstring_blocks()
    assert set(found) == set(DOCSTRING_HARNESSES) | set(DOCSTRING_NOT_PYTHON), (
        "docstring examples without a harness: " + ", ".join(sorted(set(found) - set(DOCSTRING_HARNESSES)
                                                                   - set(DOCSTRING_NOT_PYTHON)))
        + "; harnesses without an example: " + ", ".join(sorted(set(DOCSTRING_HARNESSES) | set(DOCSTRING_NOT_PYTHON)
                                                               - set(found))))


@pytest.mark.parametrize("key", sorted(DOCSTRING_HARNESSES))
def test_docstring_example_runs(key, tmp_path):
    code = docstring_blocks()[key]
    page = Page(key, tmp_path)
    ok = False
    try:
        DOCSTRING_HARNESSES[key](page, code, 0)
        ok = True
    finally:
        page.close(ok)
