#!/usr/bin/env bash
# Run the codec and Connection tests against an AddressSanitizer + UBSan build
# of wsfast._frame, in a scratch copy of the tree (the in-place build is left
# alone). Any ASan/UBSan report aborts the run.
#   bash ci/sanitize.sh
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git ls-files -z | xargs -0 cp --parents -t "$work"
cd "$work"
CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -O1 -g" \
LDFLAGS="-fsanitize=address,undefined" python setup.py -q build_ext --inplace
nm -D wsfast/_frame*.so | grep -q __asan_report || { echo "FAIL: not an ASan build"; exit 1; }
LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" \
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
WSFAST_REQUIRE_EXTENSIONS=1 python -m pytest -q -p no:cacheprovider \
    tests/test_frame.py tests/test_frame_differential.py tests/test_frame_cython_specific.py \
    tests/test_connection.py tests/test_deflate.py
