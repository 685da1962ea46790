#!/usr/bin/env bash
# The main job: install wsfast (with its Cython extension, and uvloop) into
# its own virtualenv, .venv-demo/ (ci/test.sh uses .venv-test/, so the tests
# can run while the chat is up), and start the chat: the page at / and its
# WebSocket at /chat on the same port, rooms in-process (no Redis needed).
# Open http://127.0.0.1:8888/ in two browser tabs and chat.
#
#   bash ci/demo.sh                      # 127.0.0.1:8888
#   HOST=0.0.0.0 PORT=9000 bash ci/demo.sh
#
# The first start builds and installs (about half a minute); later starts
# skip that while the sources are unchanged (a hash of them is kept in
# .venv-demo/wsfast-source.sha256) and take a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${WSFAST_DEMO_VENV:-.venv-demo}"
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
PYTHON="${PYTHON:-python3}"
say() { echo "ci/demo.sh: $*" >&2; }

# What the installed package is built from: the package, the build files and
# the Python that runs it. Build products (*.so, *.c) and caches do not count.
source_hash() {
    {
        "$VENV/bin/python" -c 'import sys; print(sys.version)'
        find wsfast pyproject.toml setup.py -type f \
            ! -name '*.so' ! -name '*.pyd' ! -name '*.c' ! -name '*.pyc' ! -path '*/__pycache__/*' \
            -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    } | sha256sum | cut -d' ' -f1
}

if [ ! -x "$VENV/bin/python" ]; then
    say "first start: creating the virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/wsfast-source.sha256"
want="$(source_hash)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] \
        || ! (cd / && "$VENV/bin/python" -c 'import wsfast' 2>/dev/null); then
    say "installing wsfast and uvloop into $VENV (builds the Cython codec; about half a minute)"
    rm -f "$stamp"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # Not editable: the chat runs the installed copy, whatever happens to the
    # source tree meanwhile (ci/test.sh builds the extension in place).
    "$VENV/bin/python" -m pip install -q ".[uvloop]"
    echo "$want" >"$stamp"
else
    say "wsfast is installed in $VENV and the sources are unchanged: starting"
fi
cd /  # import the installed package, not the source tree
"$VENV/bin/python" -c "import wsfast; print('wsfast', wsfast.__version__, 'codec:', wsfast.IMPLEMENTATION)"
exec "$VENV/bin/python" -m wsfast chat --host "${HOST:-127.0.0.1}" --port "${PORT:-8888}"
