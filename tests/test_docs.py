"""The documentation site (docs/, Sphinx + MyST): it builds with warnings as
errors, and every guide has examples. tests/test_doc_examples.py runs every
code example of the site and of README.md.
"""

import os
import re
import socket
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
GUIDES = sorted(name for name in os.listdir(os.path.join(DOCS, "guide")) if name.endswith(".md"))

BLOCK = re.compile(r"^(<!-- server -->\n)?```python\n(.*?)^```", re.M | re.S)


def examples(page):
    """``[(is_server, code)]`` of a guide page."""
    with open(os.path.join(DOCS, "guide", page), encoding="utf-8") as f:
        text = f.read()
    return [(bool(m.group(1)), m.group(2)) for m in BLOCK.finditer(text)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server example exited with {proc.returncode}: "
                                 + proc.stderr.read().decode(errors="replace"))
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"the server example does not listen on {port} after {timeout} s")


def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx", reason="sphinx is in the test extra")
    pytest.importorskip("myst_parser", reason="myst-parser is in the test extra")
    out = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", DOCS,
         str(tmp_path / "html")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    index = (tmp_path / "html" / "index.html").read_text(encoding="utf-8")
    for page in GUIDES:
        assert f'guide/{page[:-3]}.html' in index, page
    api = (tmp_path / "html" / "api.html").read_text(encoding="utf-8")
    assert "write_message" in api and "broadcast" in api
    for name in ("wsfast.sync.connect", "asgi_authenticate", "WSFastProtocol", "websocket_connect",
                 "negotiate_server", "ProxyError"):
        assert name in api, name
    # the performance page has the method and the numbers (README.md's Benchmarks, included)
    performance = (tmp_path / "html" / "guide" / "performance.html").read_text(encoding="utf-8")
    assert "CPU wsfast ÷ picows" in performance and "bench/run.py" in performance


def test_every_guide_has_examples():
    assert len(GUIDES) >= 10
    assert sum(len(examples(page)) for page in GUIDES) >= 12
