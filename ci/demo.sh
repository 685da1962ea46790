#!/usr/bin/env bash
# The main job: install wsfast (with its Cython extension, and uvloop) into a
# virtualenv and start the chat: the page at / and its WebSocket at /chat on
# the same port, rooms in-process (no Redis needed). Open
# http://127.0.0.1:8888/ in two browser tabs and chat.
#
#   bash ci/demo.sh                      # 127.0.0.1:8888
#   HOST=0.0.0.0 PORT=9000 bash ci/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${WSFAST_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip
python -m pip install -q ".[uvloop]"
cd /  # import the installed package, not the source tree
python -c "import wsfast; print('wsfast', wsfast.__version__, 'codec:', wsfast.IMPLEMENTATION)"
exec python -m wsfast chat --host "${HOST:-127.0.0.1}" --port "${PORT:-8888}"
