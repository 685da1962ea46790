"""Copied by tests/test_uvicorn_suite.py, as ``tests/protocols/conftest.py``,
into a fresh extract of uvicorn's sdist: it makes wsfast's protocol class the
``ws_protocol_cls`` of uvicorn's own ``tests/protocols/test_websocket.py``
(overriding the fixture of uvicorn's ``tests/conftest.py``, which offers
uvicorn's classes) and skips, with the reason, the tests that cannot apply to
a class other than uvicorn's own. Nothing else of uvicorn's tests changes."""

import pytest

from wsfast.asgi import WSFastProtocol

#: test name -> why it cannot apply to wsfast's class (reported as a skip)
NOT_APPLICABLE = {
    "test_server_keepalive_ping_pong": (
        "asserts isinstance(protocol, (uvicorn's WSProtocol, WebSocketsSansIOProtocol)); "
        "the same check without it: tests/test_asgi.py::test_keepalive_ping_pong"
    ),
    "test_server_keepalive_disabled": (
        "asserts isinstance(protocol, (uvicorn's WSProtocol, WebSocketsSansIOProtocol)); "
        "the same check without it: tests/test_asgi.py::test_keepalive_disabled"
    ),
    "test_send_binary_data_to_server_bigger_than_default_on_websockets": (
        "takes no ws_protocol_cls: it runs uvicorn's WebSocketsSansIOProtocol by name; "
        "the same cases with wsfast: tests/test_asgi.py::test_max_size"
    ),
}


@pytest.fixture
def ws_protocol_cls():
    return WSFastProtocol


def pytest_collection_modifyitems(items):
    for item in items:
        reason = NOT_APPLICABLE.get(getattr(item, "originalname", item.name))
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason="not applicable: " + reason))
