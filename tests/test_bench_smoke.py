"""bench/run.py --smoke: the whole-system benchmark scripts still run (one
server, the 64-byte echo, a fraction of a second). Not a timed test: it
checks that the load client got echoes back, not how many."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(ROOT, "bench", "run.py")

pytest.importorskip("uvloop")
if not sys.platform.startswith("linux"):
    pytest.skip("the benchmark scripts read /proc", allow_module_level=True)


def test_bench_smoke():
    out = subprocess.run([sys.executable, RUN, "--smoke", "--no-progress"], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])["results"]
    (runs,) = results["echo-64"].values()
    assert runs and "error" not in runs[0], runs
    assert runs[0]["round_trips"] > 0
    assert runs[0]["server_cpu_s"] >= 0 and runs[0]["client_cpu_s"] >= 0
