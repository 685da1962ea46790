#!/usr/bin/env bash
# Packaging check: `python -m build` makes an sdist and a wheel holding the
# compiled wsfast._frame and wsfast._connection (Connection, compiled from
# wsfast/_connection_py.py); the wheel installs into a fresh venv where
# wsfast.IMPLEMENTATION and wsfast.connection.IMPLEMENTATION are "cython".
# The sdist builds in a second fresh venv too.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$PYTHON" -m venv "$work/build-env"
"$work/build-env/bin/python" -m pip install -q --upgrade pip build
"$work/build-env/bin/python" -m build --outdir "$work/dist" . >"$work/build.log" 2>&1 || {
    cat "$work/build.log"; exit 1; }
ls -l "$work/dist"
wheel=$(ls "$work"/dist/*.whl)
sdist=$(ls "$work"/dist/*.tar.gz)
case "$wheel" in
    *-none-any.whl) echo "FAIL: $wheel is a pure-Python wheel: the extension was not built"; exit 1;;
esac
for module in _frame _connection; do
    "$PYTHON" -m zipfile -l "$wheel" | grep -E "wsfast/$module\..*\.so" >/dev/null || {
        echo "FAIL: no compiled wsfast/$module module in $wheel"; exit 1; }
done
"$PYTHON" -m zipfile -l "$wheel" | grep -E 'wsfast/_connection_py\.py' >/dev/null || {
    echo "FAIL: no pure-Python twin wsfast/_connection_py.py in $wheel"; exit 1; }
tar -tzf "$sdist" | grep -E 'wsfast/_connection\.pxd$' >/dev/null || {
    echo "FAIL: the sdist lacks wsfast/_connection.pxd (the compiled Connection would lose its declarations)"; exit 1; }

check() {  # $1: venv dir, $2: what to install
    "$PYTHON" -m venv "$1"
    "$1/bin/python" -m pip install -q --upgrade pip
    WSFAST_REQUIRE_EXTENSIONS=1 "$1/bin/python" -m pip install -q "$2"
    (cd "$work" && WSFAST_REQUIRE_EXTENSIONS=1 "$1/bin/python" - <<'PY'
import wsfast
import wsfast.connection
from wsfast import _connection, _frame
assert wsfast.IMPLEMENTATION == "cython", wsfast.IMPLEMENTATION
assert wsfast.connection.IMPLEMENTATION == "cython", wsfast.connection.IMPLEMENTATION
assert issubclass(wsfast.connection.Connection, _connection.Connection)
conn = wsfast.connection.Connection(wsfast.connection.Side.SERVER)
assert conn.send_text("Hello") == bytes.fromhex("810548656c6c6f")
assert _frame.build_frame(1, b"Hello", mask_key=b"\x37\xfa\x21\x3d") == bytes.fromhex("818537fa213d7f9f4d5158")
print("ok:", wsfast.__file__, "IMPLEMENTATION =", wsfast.IMPLEMENTATION)
PY
    )
}
check "$work/wheel-env" "$wheel"
check "$work/sdist-env" "$sdist"

# Without a working C compiler the sdist still installs, with the pure-Python
# codec, and says so once.
"$PYTHON" -m venv "$work/nocc-env"
"$work/nocc-env/bin/python" -m pip install -q --upgrade pip
env -u WSFAST_REQUIRE_EXTENSIONS CC=/bin/false "$work/nocc-env/bin/python" -m pip install -v "$sdist" >"$work/nocc.log" 2>&1 || {
    cat "$work/nocc.log"; echo "FAIL: the install without a compiler failed"; exit 1; }
for module in _frame _connection; do
    notes=$(grep -c "wsfast: the Cython extension wsfast.$module was not built" "$work/nocc.log" || true)
    [ "$notes" = 1 ] || { echo "FAIL: expected the fallback note for wsfast.$module once, saw it $notes times"; exit 1; }
done
impl=$(cd "$work" && env -u WSFAST_REQUIRE_EXTENSIONS "$work/nocc-env/bin/python" -c \
    "import wsfast, wsfast.connection; print(wsfast.IMPLEMENTATION, wsfast.connection.IMPLEMENTATION)")
[ "$impl" = "python python" ] || { echo "FAIL: without a compiler IMPLEMENTATION is $impl"; exit 1; }
echo "ok: without a compiler the sdist installs the pure-Python codec and says so once"
echo "wheel check passed: $(basename "$wheel")"
