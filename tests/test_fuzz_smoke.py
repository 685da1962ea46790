"""The fuzz harnesses of fuzz/ in the default test run, briefly: each one
replays its seed corpus and a fixed number of deterministic mutants of it
in-process (a few thousand inputs, no libFuzzer: the same inputs every run,
so a failure here reproduces), and ``fuzz/run.py`` drives one real atheris
run. Long runs: ``python fuzz/run.py --minutes 30`` (fuzz/README.md)."""

import importlib
import os
import random
import subprocess
import sys

import pytest

atheris = pytest.importorskip("atheris")

from wsfast import codec  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUZZ = os.path.join(ROOT, "fuzz")
MUTANTS = 1500

needs_cython = pytest.mark.skipif(
    "cython" not in codec.AVAILABLE, reason="the Cython extension is not built: no differential"
)


@pytest.fixture(scope="module")
def harnesses():
    sys.path.insert(0, FUZZ)
    try:
        yield importlib.import_module
    finally:
        sys.path.remove(FUZZ)


def seeds_of(name):
    folder = os.path.join(FUZZ, "corpus", name)
    names = sorted(os.listdir(folder))
    assert names, f"no seed corpus for {name}"
    out = []
    for n in names:
        with open(os.path.join(folder, n), "rb") as f:
            out.append(f.read())
    return out


@pytest.mark.parametrize("name", [
    pytest.param("frame_differential", marks=needs_cython),
    pytest.param("connection_differential", marks=needs_cython),
    "http_handshake",
    "origin",  # a seed is issue 11 (5)'s "http://[", a 500 before its fix
])
def test_harness_on_seeds_and_mutants(harnesses, name):
    module = harnesses(name)
    common = harnesses("_common")
    seeds = seeds_of(name)
    tokens = common.read_dict(os.path.join(FUZZ, "dict", name + ".dict"))
    assert tokens
    for data in seeds:
        module.test_one_input(data)
    rng = random.Random(name)
    for data in common.mutants(seeds, tokens, MUTANTS, rng):
        try:
            module.test_one_input(data)
        except BaseException:
            print(f"failing input for fuzz/{name}.py: {data!r}")
            raise


@needs_cython
def test_run_py_counts_inputs(tmp_path):
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(FUZZ, "run.py"), "--runs", "300", "--harness",
         "frame_differential", "--workdir", str(tmp_path), "--json", str(report)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import json

    result = json.loads(report.read_text())
    assert result["inputs"] >= 300
    assert result["crashes"] == result["disagreements"] == 0
    assert "frame_differential" in proc.stdout
