"""Tornado's own WebSocket tests, run against :mod:`wsfast.tornado`.

The module ``tornado/test/websocket_test.py`` of the *installed* Tornado (its
tests ship in the wheel) is imported while ``tornado.websocket``'s
``WebSocketHandler`` and ``websocket_connect`` are wsfast's, so every handler
it defines subclasses ``wsfast.tornado.WebSocketHandler`` and every client is
``wsfast.tornado.websocket_connect``; Tornado's names are restored right
after the import (the rest of the process sees Tornado unchanged) and the
file itself is neither edited nor copied. Each of its test classes runs on
an asyncio and on a uvloop event loop, with each of wsfast's codecs (the
Cython one and the pure-Python twin; the ``wsfast_codec`` setting).

Excluded (they test Tornado's internals, not the API; shown as skipped with
the reason):
"""

import asyncio
import importlib
import logging
import sys
import unittest

import pytest

pytest.importorskip("tornado")

import tornado.websocket  # noqa: E402

import wsfast.tornado  # noqa: E402
from wsfast import codec as _codec  # noqa: E402

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is in the [test] extra
    uvloop = None

#: class or class.method -> why it does not run against wsfast.
EXCLUDED = {
    "PythonMaskFunctionTest": (
        "tests Tornado's own masking function tornado.util._websocket_mask_python, "
        "which wsfast does not replace (wsfast's codec has its own tests)"
    ),
    "CythonMaskFunctionTest": (
        "tests Tornado's own C masking function tornado.speedups.websocket_mask, "
        "which wsfast does not replace"
    ),
    "PingCalculationTest": (
        "tests Tornado's ping-interval arithmetic (WebSocketProtocol13.ping_sleep_time), "
        "a Tornado internal; wsfast schedules pings with loop timers"
    ),
    "FloodTest.test_pong_most_recent_ping": (
        "replaces Tornado's private WebSocketProtocol13._write_frame to watch how "
        "Tornado drops pongs while one is being written; wsfast has no _write_frame "
        "and answers every ping, in order, in the read's one write"
    ),
}

__doc__ += "".join(f"\n* ``{name}``: {why}." for name, why in EXCLUDED.items())


@pytest.fixture(autouse=True)
def _tornado_test_environment():
    # As Tornado's test runner (tornado/test/runtests.py) sets it: its tests
    # fail on any unexpected log record, and the access log is not one.
    access = logging.getLogger("tornado.access")
    level = access.level
    access.setLevel(logging.CRITICAL)
    yield
    access.setLevel(level)


def _load_tornado_suite():
    """Import Tornado's websocket_test with wsfast's handler and client."""
    saved = tornado.websocket.WebSocketHandler, tornado.websocket.websocket_connect
    name = "tornado.test.websocket_test"
    previous = sys.modules.pop(name, None)
    tornado.websocket.WebSocketHandler = wsfast.tornado.WebSocketHandler
    tornado.websocket.websocket_connect = wsfast.tornado.websocket_connect
    try:
        module = importlib.import_module(name)
    finally:
        tornado.websocket.WebSocketHandler, tornado.websocket.websocket_connect = saved
        if previous is not None:
            sys.modules[name] = previous
        else:
            sys.modules.pop(name, None)
    assert module.WebSocketHandler is wsfast.tornado.WebSocketHandler
    assert module.websocket_connect is wsfast.tornado.websocket_connect
    return module


def _on_uvloop(cls):
    """setUp/tearDown that make Tornado's own get_new_ioloop() build a uvloop
    loop (through the event loop policy; overriding get_new_ioloop is
    deprecated in Tornado and warns on every test)."""

    def setUp(self):
        self._saved_policy = asyncio.get_event_loop_policy()
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        try:
            cls.setUp(self)
        finally:
            asyncio.set_event_loop_policy(self._saved_policy)
        asyncio.set_event_loop(self.io_loop.asyncio_loop)  # as Tornado's setUp did, in this policy
        assert isinstance(self.io_loop.asyncio_loop, uvloop.Loop)

    return setUp


def _with_codec(codec):
    def get_app(self):
        app = super(type(self), self).get_app()
        app.settings["wsfast_codec"] = codec
        return app

    return get_app


def _make_classes(module):
    made = {}
    for name, obj in sorted(vars(module).items()):
        if not (isinstance(obj, type) and issubclass(obj, unittest.TestCase)):
            continue
        if obj.__module__ != module.__name__ or obj.__name__ == "AbstractBaseWrapper":
            continue  # imported helpers, and Tornado's abstract bases (@abstract_base_test)
        if not unittest.defaultTestLoader.getTestCaseNames(obj):
            continue
        variants = [(loop, codec) for loop in ("asyncio", "uvloop") for codec in ("cython", "python")]
        for loop, codec in variants:
            attrs = {"__module__": __name__}
            if codec not in _codec.AVAILABLE:
                attrs["__unittest_skip__"] = True
                attrs["__unittest_skip_why__"] = f"the {codec} codec is not available"
            elif hasattr(obj, "get_app"):
                attrs["get_app"] = _with_codec(codec)
            if loop == "uvloop":
                if uvloop is None:
                    attrs["__unittest_skip__"] = True
                    attrs["__unittest_skip_why__"] = "uvloop is not installed"
                else:
                    attrs["setUp"] = _on_uvloop(obj)
            if name in EXCLUDED:
                attrs["__unittest_skip__"] = True
                attrs["__unittest_skip_why__"] = "excluded: " + EXCLUDED[name]
            for key, why in EXCLUDED.items():
                cls_name, _, method = key.partition(".")
                if cls_name == name and method:
                    attrs[method] = unittest.skip("excluded: " + why)(getattr(obj, method))
            new_name = f"{name}_{loop}_{codec}"
            new = type(new_name, (obj,), attrs)
            new.__qualname__ = new_name
            made[new_name] = new
    return made


_suite = _load_tornado_suite()
globals().update(_make_classes(_suite))
del _suite
