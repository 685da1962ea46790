#!/usr/bin/env bash
# The test command: installs everything the tests need on a fresh machine
# (Debian packages, a virtualenv .venv-test/ with wsfast built in place and
# the test extras), then runs pytest. Extra arguments go to pytest.
# ci/demo.sh has its own .venv-demo/: the chat keeps running meanwhile.
#
#   bash ci/test.sh              # the default, fast run
#   bash ci/test.sh -m slow      # the soak and load tests
#
# Set WSFAST_REQUIRE_EXTENSIONS=1 (as .ci/run does) to fail when the Cython
# extension cannot be built or imported, instead of testing the fallback only.
set -euo pipefail
cd "$(dirname "$0")/.."

# -- system packages: Chromium for the browser tests, Redis for the pub/sub ones,
# -- openssl and ICU for the security tests ------------------------------------
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v openssl >/dev/null 2>&1 || need+=(openssl)  # certificates for the TLS tests
# tests/test_proxies.py: wsfast behind real reverse proxies
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
[ -x /usr/sbin/haproxy ] || command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
# tests/test_client_proxy.py: the client through real forward proxies (HTTP CONNECT, SOCKS)
command -v tinyproxy >/dev/null 2>&1 || need+=(tinyproxy)
[ -x /usr/sbin/danted ] || need+=(dante-server)
command -v microsocks >/dev/null 2>&1 || need+=(microsocks)  # SOCKS5 with username/password
# PyICU (the chat's nick check) builds against the system's ICU.
pkg-config --exists icu-i18n 2>/dev/null || need+=(libicu-dev pkg-config)
command -v g++ >/dev/null 2>&1 || need+=(g++)
if [ ${#need[@]} -gt 0 ]; then
    echo "ci/test.sh: installing Debian packages: ${need[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# -- Python environment ---------------------------------------------------------
VENV="${WSFAST_TEST_VENV:-.venv-test}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip setuptools wheel "Cython>=3.0"
python -m pip install -q -e ".[test]"
# Build the extension next to the sources so the tests import the fresh one.
python setup.py -q build_ext --inplace
python -c "import wsfast, sys; print('wsfast', wsfast.__version__, 'codec:', wsfast.IMPLEMENTATION, 'python', sys.version.split()[0])"

if [ -n "${WSFAST_SETUP_ONLY:-}" ]; then  # tests/test_setup_scripts.py: the install step alone
    exit 0
fi
exec python -m pytest "$@"
