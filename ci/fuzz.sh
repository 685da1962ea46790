#!/usr/bin/env bash
# A short fuzz run for CI: every harness of fuzz/ under atheris for a fixed
# number of inputs (default 2000 each, about a minute in all), from the
# committed seeds. Fails on any crash or disagreement; the failing inputs are
# left in fuzz/.work/artifacts/<harness>/ (replay: python fuzz/<harness>.py FILE).
# The default test run covers the harnesses too (tests/test_fuzz_smoke.py);
# long runs: python fuzz/run.py --minutes 30 (fuzz/README.md).
#   bash ci/fuzz.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
WSFAST_REQUIRE_EXTENSIONS=1 "$PYTHON" fuzz/run.py --runs "${1:-2000}" --workdir "$(mktemp -d)"
