"""Shared fixtures: every codec test runs on each available implementation."""

import os

import pytest

from wsfast import codec as _codec


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


def pytest_report_header(config):
    return (
        f"wsfast codecs available: {sorted(_codec.AVAILABLE)}; default {_codec.IMPLEMENTATION}; "
        f"WSFAST_REQUIRE_EXTENSIONS={os.environ.get('WSFAST_REQUIRE_EXTENSIONS', '')}"
    )
