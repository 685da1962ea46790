#!/usr/bin/env bash
# The fuzz harnesses against an AddressSanitizer + UBSan build of the
# extension wsfast._frame (built in a scratch copy of the tree, as
# ci/sanitize.sh does; the in-place build is left alone). Arguments go to
# fuzz/run.py; the default is 10 minutes on the two harnesses that reach
# the extension:
#   bash fuzz/sanitize.sh
#   nice -n 10 bash fuzz/sanitize.sh --minutes 60 --harness frame_differential
#
# atheris links its own libFuzzer but no sanitizer runtime, and the extension
# is built by gcc: gcc's libasan and libubsan are preloaded into the Python
# process (LD_PRELOAD), before anything else, as ASan requires. With
# PYTHONMALLOC=malloc every Python object, bytes included, comes from ASan's
# malloc, so a write past a bytes buffer the extension fills is caught too.
# detect_leaks=0: the interpreter keeps memory until exit on purpose.
#
# gcc's libasan also defines the __sanitizer_cov_* hooks that atheris'
# libFuzzer gets Python coverage through; preloaded first, it shadows them
# and libFuzzer would fuzz blind. So this run uses fuzz/replay.py instead:
# the corpus the coverage-guided runs grew (fuzz/.work/corpus) and the seeds,
# then mutants of them, all through the sanitized extension.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git ls-files -z wsfast setup.py pyproject.toml README.md | xargs -0 cp --parents -t "$work"
(cd "$work" && CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -O1 -g" \
    LDFLAGS="-fsanitize=address,undefined" "$PYTHON" setup.py -q build_ext --inplace >/dev/null)
nm -D "$work"/wsfast/_frame*.so | grep -q __asan_report || { echo "FAIL: not an ASan build"; exit 1; }
[ $# -gt 0 ] || set -- --minutes 10 --harness frame_differential --harness connection_differential
LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" \
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:handle_abort=1:allocator_may_return_null=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
PYTHONMALLOC=malloc WSFAST_REQUIRE_EXTENSIONS=1 \
    "$PYTHON" fuzz/run.py --tree "$work" --workdir fuzz/.work/sanitized --replay fuzz/.work/corpus "$@"
