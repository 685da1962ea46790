"""Shared fixtures: every codec test runs on each available implementation."""

import os
import shutil
import ssl
import subprocess

import pytest

from wsfast import codec as _codec

from interop_helpers import LOOP_KINDS, loop_factory, run_on


def _implementations():
    names = sorted(_codec.AVAILABLE)
    # CI sets WSFAST_REQUIRE_EXTENSIONS=1: then a missing extension already
    # failed at import; elsewhere, a missing one is a visible skip, not a pass.
    return names if "cython" in names else names + ["cython"]


@pytest.fixture(params=_implementations())
def impl(request):
    """The codec module under test: ``wsfast._frame`` or ``wsfast._frame_py``."""
    name = request.param
    if name not in _codec.AVAILABLE:
        pytest.skip("the Cython extension is not built (python setup.py build_ext --inplace)")
    return _codec.AVAILABLE[name]


@pytest.fixture
def codec(impl):
    """Alias of ``impl`` for layers above the codec (Connection(codec=...))."""
    return impl


@pytest.fixture(params=LOOP_KINDS)
def run(request):
    """``run(coro, timeout=None)``: run ``coro`` on a fresh stdlib or uvloop
    event loop (the fixture's two parameters), failing after ``timeout``
    seconds. A module or test sets the defaults with
    ``pytest.mark.run_loop(timeout=15, set_event_loop=True)``; without the
    mark: 10 s, and the loop is not made the thread's current loop."""
    factory = loop_factory(request.param)  # skips where uvloop is not installed
    mark = request.node.get_closest_marker("run_loop")
    options = dict(mark.kwargs) if mark else {}
    default_timeout = options.pop("timeout", 10)
    set_event_loop = options.pop("set_event_loop", False)
    if options or (mark and mark.args):
        raise TypeError(f"run_loop takes timeout= and set_event_loop= only, not {mark}")

    def runner(coro, timeout=None):
        return run_on(factory, coro, default_timeout if timeout is None else timeout,
                      set_event_loop=set_event_loop)

    runner.loop_name = request.param
    return runner


def pytest_report_header(config):
    return (
        f"wsfast codecs available: {sorted(_codec.AVAILABLE)}; default {_codec.IMPLEMENTATION}; "
        f"WSFAST_REQUIRE_EXTENSIONS={os.environ.get('WSFAST_REQUIRE_EXTENSIONS', '')}"
    )


@pytest.fixture(scope="session")
def certificate(tmp_path_factory):
    """A self-signed certificate for localhost and 127.0.0.1, made by openssl
    for this test run: ``(certfile, keyfile)``."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (apt-get install openssl)")
    d = tmp_path_factory.mktemp("tls")
    key, cert = d / "key.pem", d / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return str(cert), str(key)


@pytest.fixture(scope="session")
def tls_contexts(certificate):
    """``(server_ctx, client_ctx)`` for :func:`certificate`; the client trusts it."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(*certificate)
    client_ctx = ssl.create_default_context(cafile=certificate[0])
    return server_ctx, client_ctx
