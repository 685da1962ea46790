"""bench/stress.py's attacks of issue 11 (hostile clients), each a test,
at a quarter of the counts: peak server RSS within the row's bound, the
server doing what the row requires (closing, refusing, answering), and a
normal client served. Slow (minutes): ``pytest -m slow tests/test_stress.py``;
the full-size table is in docs/hostile-clients.md."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import stress  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("attack", list(stress.ATTACKS))
def test_attack(attack):
    row = stress.run_one(attack, 0.25, None)
    assert row["alive"], row
    assert row["growth"] <= row["bound"], row
    assert row["expect_ok"], row
    assert row["served"], row
