"""The README's two commands, run as a newcomer runs them: ``ci/demo.sh``
keeps serving the chat while ``ci/test.sh`` installs what the tests need, and
a second ``ci/demo.sh`` with nothing changed starts in a few seconds.

Slow (two virtualenvs built from scratch in a copy of the checkout):
``pytest -m slow tests/test_setup_scripts.py``.
"""

import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _copy_checkout(dest):
    """The tracked files of this checkout (what a fresh clone has)."""
    try:
        files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True,
                               capture_output=True).stdout.split(b"\0")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    for name in filter(None, files):
        name = name.decode()
        src = os.path.join(ROOT, name)
        if not os.path.isfile(src):
            continue  # deleted in the work tree
        os.makedirs(os.path.join(dest, os.path.dirname(name)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, name))


class Demo:
    """``bash ci/demo.sh`` in ``src`` on a free port; ``url`` once it listens."""

    def __init__(self, src):
        env = dict(os.environ, PORT="0")
        for name in ("VIRTUAL_ENV", "WSFAST_NO_EXTENSIONS", "PYTHONPATH"):
            env.pop(name, None)
        self.lines = []
        self.started = time.monotonic()
        self.proc = subprocess.Popen(["bash", "ci/demo.sh"], cwd=src, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.url = None
        deadline = time.monotonic() + 300
        for line in self.proc.stdout:
            self.lines.append(line)
            match = re.search(r"open (http://\S+/) in a browser", line)
            if match:
                self.url = match.group(1)
                break
            if time.monotonic() > deadline:
                break
        self.ready_after = time.monotonic() - self.started
        if self.url is None:
            self.stop()
            pytest.fail("ci/demo.sh did not start:\n" + "".join(self.lines))
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.slow
def test_demo_serves_while_the_test_command_installs_and_restarts_fast(tmp_path):
    src = str(tmp_path / "checkout")
    _copy_checkout(src)
    demo = Demo(src)
    try:
        text = "".join(demo.lines)
        assert "first start" in text and "installing wsfast" in text, text
        assert _get(demo.url)[0] == 200

        statuses = []
        stop = threading.Event()

        def poll():
            while not stop.is_set():
                status, body = _get(demo.url)
                statuses.append(status)
                if status == 200:
                    assert b"chat.js" in body
                time.sleep(0.2)

        poller = threading.Thread(target=poll)
        poller.start()
        env = dict(os.environ, WSFAST_SETUP_ONLY="1")
        for name in ("VIRTUAL_ENV", "WSFAST_NO_EXTENSIONS", "PYTHONPATH"):
            env.pop(name, None)
        setup = subprocess.run(["bash", "ci/test.sh"], cwd=src, env=env, capture_output=True,
                               text=True, timeout=900)
        stop.set()
        poller.join()
        assert setup.returncode == 0, setup.stdout + setup.stderr
        assert os.path.isdir(os.path.join(src, ".venv-test"))
        assert os.path.isdir(os.path.join(src, ".venv-demo"))
        assert len(statuses) > 10, statuses  # the install step took a while: many requests
        assert set(statuses) == {200}, statuses
        assert _get(demo.url + "static/chat.js")[0] == 200
    finally:
        demo.stop()

    again = Demo(src)  # nothing changed: no install, no build
    try:
        text = "".join(again.lines)
        assert "sources are unchanged" in text and "installing" not in text, text
        assert again.ready_after < 10, again.ready_after
        assert _get(again.url)[0] == 200
    finally:
        again.stop()
