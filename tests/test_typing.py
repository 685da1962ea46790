"""Types: mypy (strict on the annotated modules, pyproject.toml [tool.mypy])
over the package and the README's examples; the extension's stub
``wsfast/_frame.pyi`` against the compiled module (mypy's stubtest); and the
pure-Python twin's signatures against the extension's."""

import inspect
import os
import re
import subprocess
import sys
import textwrap

import pytest

from wsfast import _frame_py, codec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, ".mypy_cache")

pytest.importorskip("mypy", reason="mypy is in the test extra (pip install -e '.[test]')")


def python_blocks(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return re.findall(r"^```python\n(.*?)^```", text, re.M | re.S)


def as_module(code):
    """A README snippet as a module mypy can check: code with top-level
    ``await`` goes into a coroutine function."""
    if re.search(r"^(?:await |async (?:with|for) |.*= await )", code, re.M):
        return "import wsfast\n\n\nasync def example():\n" + textwrap.indent(code, "    ")
    return code


def mypy(*args):
    return subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", CACHE, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_mypy_on_the_package_and_the_examples(tmp_path):
    blocks = python_blocks(os.path.join(ROOT, "README.md"))
    assert len(blocks) >= 3
    guides = os.path.join(ROOT, "docs", "guide")
    if os.path.isdir(guides):  # the docs site's examples (tests/test_docs.py runs them)
        for name in sorted(os.listdir(guides)):
            if name.endswith(".md"):
                blocks += python_blocks(os.path.join(guides, name))
    package = tmp_path / "docs_examples"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for i, code in enumerate(blocks):
        (package / f"example_{i}.py").write_text(as_module(code))
    # the package (strict where pyproject.toml says) and the examples
    # (checked as user code: bodies of unannotated functions too)
    out = mypy("wsfast", str(package))
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_examples_check_catches_a_mistake(tmp_path):
    package = tmp_path / "docs_examples"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "bad.py").write_text("import wsfast\n\n\ndef example(room):\n"
                                    "    wsfast.broadcast(room, 42)\n")
    out = mypy(str(package))
    assert out.returncode == 1 and 'Argument 2 to "broadcast"' in out.stdout, out.stdout


# A user's program under ``mypy --strict``: the public API's types are precise
# (assert_type fails on Any), so a regression to Any or a wrong type shows here.
TYPED_PROGRAM = '''
from typing import Awaitable, List, Optional, Union

from typing_extensions import assert_type

import uvicorn

import wsfast
from wsfast.asgi import WSFastProtocol
from wsfast.http import Headers, Request
from wsfast.pubsub import Hub, PublishResult

hub = Hub(history=10)


class Room(wsfast.WebSocketHandler):
    def open(self, name: str) -> None:
        hub.subscribe(name, self)

    async def on_message(self, message: Union[str, bytes]) -> None:
        result = await hub.publish(self.path_args[0] or "", message)
        assert_type(result, PublishResult)
        assert_type(result.accepted, bool)
        assert_type(self.write_message({"sent": result.local.sent}), Awaitable[None])
        assert_type(self.close_code, Optional[int])

    def on_close(self) -> None:
        hub.unsubscribe_all(self)


class Page(wsfast.RequestHandler):
    async def get(self) -> None:
        assert_type(self.get_argument("name"), str)
        assert_type(self.get_argument("token", None), Optional[str])
        assert_type(self.get_query_arguments("tag"), List[str])
        assert_type(self.get_cookie("session"), Optional[str])
        assert_type(self.request, Request)
        assert_type(self.request.headers, Headers)
        assert_type(self.request.headers.get("Host"), Optional[str])
        assert_type(self.request.remote_ip, Optional[str])
        self.set_header("X-Count", 3)
        self.write({"name": self.get_argument("name")})


async def main() -> None:
    app = wsfast.Application([(r"/", Page), (r"/room/([a-z]+)", Room)], websocket_ping_interval=10)
    server = await app.listen(0, host="127.0.0.1")
    assert_type(server, wsfast.Server)
    assert_type(server.port, Optional[int])
    result = wsfast.broadcast(hub.subscribers("a"), "hi")
    assert_type(result.sent, int)
    async with wsfast.connect(f"ws://127.0.0.1:{server.port}/room/a", compression="deflate") as ws:
        assert_type(ws, wsfast.ClientConnection)
        await ws.send("hello")
        await ws.send(piece for piece in (b"a", b"b"))
        assert_type(await ws.recv(), Union[str, bytes])
        assert_type(await ws.ping(), float)
        assert_type(ws.subprotocol, Optional[str])
        assert_type(ws.close_code, Optional[int])
        async for chunk in ws.recv_streaming():
            assert_type(chunk, Union[str, bytes])
    await server.stop()


def serve_asgi() -> None:
    # uvicorn's ws= takes the class (typed as an asyncio.Protocol subclass)
    config = uvicorn.Config("app:app", ws=WSFastProtocol, port=8000)
    uvicorn.Server(config).run()
    uvicorn.run("app:app", ws=WSFastProtocol)
'''


def test_a_strictly_typed_program_checks(tmp_path):
    (tmp_path / "typed_program.py").write_text(TYPED_PROGRAM)
    (tmp_path / "mypy.ini").write_text(
        "[mypy]\nstrict = True\nfollow_imports = silent\n"
        f"mypy_path = {ROOT}\n"
        "[mypy-httptools.*,tornado.*,redis.*,icu]\nignore_missing_imports = True\n")
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", os.path.join(CACHE, "typed-program"), "--config-file",
         str(tmp_path / "mypy.ini"), str(tmp_path / "typed_program.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_user_module_importing_wsfast_asgi_checks_from_a_cold_cache(tmp_path):
    """mypy run on a program's ``import wsfast.asgi`` reaches wsfast's import
    cycle from that side: protocol.WebSocketProtocol.__slots__ (read by
    broadcast.py at import) was "Cannot determine type" there, which the
    checks above, whose caches had it from an earlier order, did not see."""
    (tmp_path / "user.py").write_text("import wsfast.asgi\n")
    out = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", os.devnull, str(tmp_path / "user.py")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_stub_matches_the_compiled_module():
    if "cython" not in codec.AVAILABLE:
        pytest.skip("the Cython extension is not built")
    out = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "--mypy-config-file", "pyproject.toml",
         "--allowlist", "tests/stubtest_allowlist.txt", "wsfast._frame"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, MYPY_CACHE_DIR=CACHE))
    assert out.returncode == 0, out.stdout + out.stderr


def _bare(signature):
    """``signature`` without annotations: the extension's have none (its
    types are in the stub), the twin's are annotated."""
    return str(signature.replace(
        parameters=[p.replace(annotation=p.empty) for p in signature.parameters.values()],
        return_annotation=signature.empty))


def _signatures(obj):
    """Public callables of a codec class or module, by name: their signatures."""
    found = {}
    for name in dir(obj):
        if name.startswith("_") and name not in ("__init__", "__eq__"):
            continue
        value = getattr(obj, name)
        if callable(value) and not inspect.isclass(value):
            try:
                found[name] = _bare(inspect.signature(value))
            except (TypeError, ValueError):
                found[name] = "?"
    return found


def test_twin_has_the_extension_signatures():
    if "cython" not in codec.AVAILABLE:
        pytest.skip("the Cython extension is not built")
    cython = codec.AVAILABLE["cython"]
    assert set(_frame_py.__all__) <= set(dir(cython))
    for name in _frame_py.__all__:
        py, cy = getattr(_frame_py, name), getattr(cython, name)
        if inspect.isclass(py):
            py_sigs, cy_sigs = _signatures(py), _signatures(cy)
            # an extension type's __init__ shows as (*args, **kwargs): stubtest
            # checks it against wsfast/_frame.pyi instead
            py_sigs.pop("__init__"), cy_sigs.pop("__init__")
            py_sigs.pop("__eq__", None), cy_sigs.pop("__eq__", None)
            assert py_sigs == cy_sigs, name
        elif callable(py):
            assert _bare(inspect.signature(py)) == _bare(inspect.signature(cy)), name
        else:
            assert py == cy, name
