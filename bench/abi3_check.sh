#!/usr/bin/env bash
# Is a limited-API (abi3) wheel worth it? Build the codec twice in scratch
# copies of the tree, as it is and for CPython's limited API 3.11
# (CYTHON_LIMITED_API + Py_LIMITED_API, with the three private or macro
# calls it needs replaced by their public, slower forms), then run the codec
# micro-benchmarks (bench/test_bench_codec.py, the wsfast-cython entries) on
# each and print the medians side by side.
#
#   bash bench/abi3_check.sh [pytest -k expression]     # docs/wheels.md has the result
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
FILTER="${1:-cython}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for variant in full abi3; do
    mkdir -p "$work/$variant"
    git ls-files -z | xargs -0 cp --parents -t "$work/$variant"
done

# The limited API has no _PyBytes_Resize (private), PyBytes_AS_STRING and
# the other access macros: use new-bytes-and-copy and the function forms.
"$PYTHON" - "$work/abi3/wsfast/_frame.pyx" <<'PY'
import sys
path = sys.argv[1]
src = open(path).read()
src = src.replace(
    "    int _PyBytes_Resize(PyObject **pv, Py_ssize_t newsize) except -1\n",
    "    char *PyBytes_AsString(object o) except NULL\n"
    "    Py_ssize_t PyBytes_Size(object o) except -1\n"
    "    char *PyByteArray_AsString(object o) except NULL\n"
    "    Py_ssize_t PyByteArray_Size(object o) except -1\n")
src = src.replace('char *_bytes_ptr "PyBytes_AS_STRING" (PyObject *o)',
                  'char *_bytes_ptr "PyBytes_AsString" (PyObject *o)')
src = src.replace('_bytes_size "PyBytes_GET_SIZE" (PyObject *o)', '_bytes_size "PyBytes_Size" (PyObject *o)')
# A bytes object's cached hash is not reachable through the limited API:
# FrameParser(reuse_buffer=True) would have to go (it is off by default and
# in these benchmarks).
old_hash = src[src.index("    static void wsf_bytes_forget_hash"):src.index("    }\n", src.index("    static void wsf_bytes_forget_hash")) + 6]
src = src.replace(old_hash, "    static void wsf_bytes_forget_hash(PyObject *o) { (void)o; }\n")
src = src.replace("    Py_ssize_t PyBytes_GET_SIZE(object o)\n", "")
src = src.replace("    char *PyByteArray_AS_STRING(object o)\n", "")
src = src.replace("    Py_ssize_t PyByteArray_GET_SIZE(object o)\n", "")
src = src.replace("from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize",
                  "from cpython.bytes cimport PyBytes_FromStringAndSize")
for macro, function in (("PyBytes_AS_STRING", "PyBytes_AsString"), ("PyBytes_GET_SIZE", "PyBytes_Size"),
                        ("PyByteArray_AS_STRING", "PyByteArray_AsString"),
                        ("PyByteArray_GET_SIZE", "PyByteArray_Size")):
    src = src.replace(macro + "(", function + "(")
src = src.replace("\nwsf_init()\n", '''

cdef int _PyBytes_Resize(PyObject **pv, Py_ssize_t newsize) except -1:
    # the limited API cannot resize a bytes object: a new one, and a copy
    cdef object old = <object>pv[0]
    cdef object new = PyBytes_FromStringAndSize(NULL, newsize)
    cdef Py_ssize_t keep = PyBytes_Size(old)
    memcpy(PyBytes_AsString(new), PyBytes_AsString(old), keep if keep < newsize else newsize)
    Py_INCREF(new)
    Py_DECREF(old)
    pv[0] = <PyObject *>new
    return 0


wsf_init()
''', 1)
open(path, "w").write(src)
PY

build() {  # $1: variant dir, then extra CFLAGS
    local dir="$1"; shift
    (cd "$dir" && CFLAGS="$*" WSFAST_REQUIRE_EXTENSIONS=1 "$PYTHON" setup.py -q build_ext --inplace \
        >"$dir/build.log" 2>&1) || { tail -40 "$dir/build.log"; exit 1; }
}
build "$work/full"
build "$work/abi3" -DCYTHON_LIMITED_API=1 -DPy_LIMITED_API=0x030B0000
for variant in full abi3; do
    (cd "$work/$variant" && WSFAST_REQUIRE_EXTENSIONS=1 "$PYTHON" -c \
        "import wsfast._frame as f; print('$variant:', f.__file__)")
done
nm -D "$work"/abi3/wsfast/_frame*.so | grep -E ' U (_PyBytes_Resize|_PyUnicode_|_PyLong_|_PyErr_|_PyType_)' && { echo "FAIL: the abi3 build uses non-limited symbols"; exit 1; } || true

for variant in full abi3; do
    (cd "$work/$variant" && WSFAST_REQUIRE_EXTENSIONS=1 "$PYTHON" -m pytest -q -p no:cacheprovider \
        bench/test_bench_codec.py -k "$FILTER" --benchmark-only --benchmark-warmup=on \
        --benchmark-min-rounds=20 --benchmark-max-time=0.3 --benchmark-json="$work/$variant.json" \
        >"$work/$variant.log" 2>&1) || { tail -30 "$work/$variant.log"; exit 1; }
done
# correctness first: the codec tests on the abi3 build
(cd "$work/abi3" && WSFAST_REQUIRE_EXTENSIONS=1 "$PYTHON" -m pytest -q -p no:cacheprovider \
    tests/test_frame.py tests/test_frame_cython_specific.py 2>&1 | grep -E "^FAILED|passed|failed" || true)

"$PYTHON" - "$work/full.json" "$work/abi3.json" <<'PY'
import json, sys
full, abi3 = (
    {(b["group"], b["name"]): b["stats"]["median"] for b in json.load(open(p))["benchmarks"]}
    for p in sys.argv[1:3])
print("| benchmark | full API median | abi3 median | abi3 / full |")
print("|---|---:|---:|---:|")
ratios = []
for key in sorted(full):
    if key in abi3:
        ratio = abi3[key] / full[key]
        ratios.append(ratio)
        print(f"| {key[0]}: {key[1]} | {full[key] * 1e6:.3f} µs | {abi3[key] * 1e6:.3f} µs | {ratio:.2f}× |")
ratios.sort()
print(f"\nmedian abi3/full time ratio over {len(ratios)} benchmarks: {ratios[len(ratios) // 2]:.2f}×"
      f" (min {ratios[0]:.2f}×, max {ratios[-1]:.2f}×)")
PY
