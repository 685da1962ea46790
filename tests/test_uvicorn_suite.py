"""uvicorn's own WebSocket tests, run with wsfast's protocol class.

The sdist of the pinned uvicorn version is fetched with ``pip download``
(cached in ``$WSFAST_CACHE_DIR`` or ``~/.cache/wsfast``), extracted into a
temporary directory, and its ``tests/protocols/test_websocket.py`` runs in a
subprocess with one file of ours added (``tests/uvicorn_ws_conftest.py`` as
``tests/protocols/conftest.py``) that makes ``ws_protocol_cls`` wsfast's
class. Its conftest, ``tests/utils.py`` and ``tests/response.py`` come from
the sdist. Once per HTTP protocol: httptools with the Cython codec, h11 with
the pure-Python codec (``WSFAST_NO_EXTENSIONS=1``).

Every test must pass, except those listed in ``NOT_APPLICABLE`` there, and
the zttp HTTP protocol's (skipped by uvicorn's conftest: not installed).
"""

import os
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("httpx2")  # uvicorn's tests use it

UVICORN_VERSION = "0.54.0"  # the newest on PyPI when pinned; the installed one must match
ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent


def _cache_dir():
    base = os.environ.get("WSFAST_CACHE_DIR") or os.path.join(Path.home(), ".cache", "wsfast")
    path = Path(base) / "sdist"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sdist():
    name = f"uvicorn-{UVICORN_VERSION}.tar.gz"
    cache = _cache_dir()
    path = cache / name
    if not path.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:",
             "--no-deps", f"uvicorn=={UVICORN_VERSION}", "-d", str(cache)],
            check=True, timeout=300,
        )
    return path


@pytest.fixture(scope="module")
def uvicorn_tests(tmp_path_factory):
    import uvicorn

    assert uvicorn.__version__ == UVICORN_VERSION, (
        f"uvicorn {uvicorn.__version__} is installed; the suite is pinned to {UVICORN_VERSION}"
    )
    where = tmp_path_factory.mktemp("uvicorn-sdist")
    with tarfile.open(_sdist()) as tar:
        members = [m for m in tar.getmembers() if "/tests/" in m.name or m.name.endswith("/tests")]
        if hasattr(tarfile, "data_filter"):  # Python 3.12, and 3.8.17+/3.9.17+/3.10.12+/3.11.4+
            tar.extractall(where, members=members, filter="data")
        else:  # an older patch release: the sdist comes from PyPI over pip, names checked here
            for m in members:
                if m.name.startswith("/") or ".." in m.name.split("/") or not (m.isfile() or m.isdir()):
                    raise ValueError(f"unexpected member in the uvicorn sdist: {m.name}")
            tar.extractall(where, members=members)
    root = where / f"uvicorn-{UVICORN_VERSION}"
    shutil.copyfile(HERE / "uvicorn_ws_conftest.py", root / "tests" / "protocols" / "conftest.py")
    (root / "pytest.ini").write_text(
        "[pytest]\n"
        "addopts = -p no:cacheprovider -p no:asyncio -rs\n"
        "filterwarnings =\n    error\n"
        "faulthandler_timeout = 60\n"
    )
    return root


#: one run per HTTP protocol: (pytest -k expression, extra environment)
RUNS = {
    "httptools-cython": ("httptools", {}),
    "h11-python": ("h11", {"WSFAST_NO_EXTENSIONS": "1"}),
}


@pytest.fixture(scope="module")
def suite_runs(uvicorn_tests, tmp_path_factory):
    """Start both runs at once (they mostly sleep: uvicorn's tests poll
    servers up and down), so the pair takes the time of one."""
    out = tmp_path_factory.mktemp("uvicorn-reports")
    running = {}
    for name, (keyword, extra_env) in RUNS.items():
        env = dict(os.environ, PYTHONPATH=str(ROOT), **extra_env)
        if extra_env:
            env.pop("WSFAST_REQUIRE_EXTENSIONS", None)
        report = out / f"{name}.xml"
        log = open(out / f"{name}.log", "w+")
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-q", "-c", str(uvicorn_tests / "pytest.ini"),
             "--rootdir", str(uvicorn_tests), f"--junitxml={report}", "-k", keyword,
             "tests/protocols/test_websocket.py"],
            cwd=uvicorn_tests, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        running[name] = (proc, report, log)
    yield running
    for proc, _, log in running.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.parametrize("run", list(RUNS))
def test_uvicorn_websocket_suite(suite_runs, run):
    proc, report, log = suite_runs[run]
    proc.wait(timeout=600)
    log.seek(0)
    output = log.read()
    assert report.exists(), output[-10000:]
    passed, skipped, failed = [], {}, []
    for case in ET.parse(report).iter("testcase"):
        name = case.get("name")
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(name)
        elif case.find("skipped") is not None:
            skipped[name] = case.find("skipped").get("message", "")
        else:
            passed.append(name)
    assert not failed, f"{len(failed)} of uvicorn's tests failed: {failed}\n" + output[-20000:]
    from uvicorn_ws_conftest import NOT_APPLICABLE  # tests/ is on sys.path

    for name, message in skipped.items():
        base = name.partition("[")[0]
        assert base in NOT_APPLICABLE or "zttp" in name, f"unexpected skip {name}: {message}"
    # 69 of the 75 cases of one HTTP protocol apply (uvicorn 0.54.0)
    assert len(passed) >= 69, (len(passed), output[-3000:])
    assert proc.returncode == 0, output[-5000:]
