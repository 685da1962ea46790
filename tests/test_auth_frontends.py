"""Token auth at the handshake (wsfast.auth) on the other front-ends: the
mixin on a wsfast.tornado.WebSocketHandler under Tornado's HTTP server, and
asgi_authenticate / TokenAuthMiddleware in Starlette and FastAPI under
uvicorn with wsfast.asgi. Real servers on 127.0.0.1, a real client
(websockets), on asyncio and uvloop: valid (header and URL), missing,
wrong, expired, cross-origin, and no log line shows a token. wsfast.web's
own path is tested in tests/test_web_deploy.py."""

import logging
import time

import pytest

pytest.importorskip("tornado")
pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")
websockets = pytest.importorskip("websockets")

import tornado.web  # noqa: E402
from fastapi import FastAPI, WebSocket  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from starlette.routing import WebSocketRoute  # noqa: E402
from test_asgi import serve as asgi_serve  # noqa: E402
from test_tornado import serve as tornado_serve  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

import wsfast.tornado as wt  # noqa: E402
from wsfast.auth import (  # noqa: E402
    TokenAuthMiddleware,
    TokenAuthMixin,
    asgi_authenticate,
    constant_time_equal,
)

GOOD = "tok-GOOD-4f1c9a77e2"
OLD = "tok-OLD-0b77c3d9aa"
WRONG = "tok-WRONG-9911aa"
SECRETS = (GOOD, OLD, WRONG)


def verify(token):
    # A store of two tokens, one expired; async like a real store.
    now = time.time()
    for known, user, expires in ((GOOD, "ann", now + 60), (OLD, "bob", now - 1)):
        if constant_time_equal(token, known):
            return user if expires > now else None
    return None


async def averify(token):
    return verify(token)


# run: conftest.py's asyncio/uvloop fixture
pytestmark = pytest.mark.run_loop(timeout=30)


async def refused(url, **kwargs):
    with pytest.raises(websockets.InvalidStatus) as info:
        async with connect(url, **kwargs):
            pass
    return info.value.response


async def check_all(base, challenge_realm, cross_origin_status):
    """The five cases against ``base`` (ws://127.0.0.1:port/path)."""
    async with connect(base, additional_headers={"Authorization": f"Bearer {GOOD}"}) as ws:
        assert await ws.recv() == "hello ann"
    async with connect(f"{base}?access_token={GOOD}") as ws:
        assert await ws.recv() == "hello ann"
    response = await refused(base)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == f'Bearer realm="{challenge_realm}"'
    for token in (WRONG, OLD):
        for kwargs in ({"uri": f"{base}?access_token={token}"},
                       {"uri": base, "additional_headers": {"Authorization": f"Bearer {token}"}}):
            response = await refused(kwargs.pop("uri"), **kwargs)
            assert response.status_code == 401
            assert response.headers["WWW-Authenticate"] == \
                f'Bearer realm="{challenge_realm}", error="invalid_token"'
            # no detail: wrong and expired look alike
            assert token.encode() not in response.body and b"expired" not in response.body
    # both ways at once: 400 invalid_request
    response = await refused(f"{base}?access_token={GOOD}",
                             additional_headers={"Authorization": f"Bearer {GOOD}"})
    assert response.status_code == 400
    assert 'error="invalid_request"' in response.headers["WWW-Authenticate"]
    # cross-origin: no token is still 401; a valid token gets the front-end's origin policy
    response = await refused(base, origin="https://evil.example")
    assert response.status_code == 401
    if cross_origin_status is None:
        async with connect(f"{base}?access_token={GOOD}", origin="https://evil.example") as ws:
            assert await ws.recv() == "hello ann"
    else:
        response = await refused(f"{base}?access_token={GOOD}", origin="https://evil.example")
        assert response.status_code == cross_origin_status


def assert_no_token_logged(caplog):
    # the server's records (the test's client, websockets, logs what it sends)
    lines = [record.getMessage() for record in caplog.records
             if not record.name.startswith("websockets")]
    assert lines  # the refusals were logged (so the check below can fail)
    for line in lines:
        for secret in SECRETS:
            assert secret not in line, line


# -- wsfast.tornado ------------------------------------------------------------------------------

class TornadoChat(TokenAuthMixin, wt.WebSocketHandler):
    token_realm = "tornado"

    async def verify_token(self, token):
        return await averify(token)

    def open(self):
        self.write_message(f"hello {self.current_user}")


class TornadoOwnPrepare(wt.WebSocketHandler):
    async def prepare(self):
        from wsfast.auth import authenticate
        self.current_user = await authenticate(self, verify, realm="own")

    def open(self):
        self.write_message(f"hello {self.current_user}")


def test_tornado_handler(run, caplog):
    caplog.set_level(logging.DEBUG)

    async def main():
        app = tornado.web.Application([(r"/ws", TornadoChat), (r"/own", TornadoOwnPrepare)])
        server, port = await tornado_serve(app)
        try:
            await check_all(f"ws://127.0.0.1:{port}/ws", "tornado", 403)
            await check_all(f"ws://127.0.0.1:{port}/own", "own", 403)
        finally:
            server.stop()

    run(main())
    assert any("access_token=***" in record.getMessage() for record in caplog.records
               if record.name == "tornado.access")
    assert_no_token_logged(caplog)


# -- ASGI ----------------------------------------------------------------------------------------

def _fastapi_app():
    app = FastAPI()

    @app.websocket("/ws")
    async def chat(websocket: WebSocket):
        user = await asgi_authenticate(websocket.scope, websocket.send, averify, realm="asgi")
        if user is None:
            return
        await websocket.accept()
        await websocket.send_text(f"hello {user}")
        await websocket.close()

    return app


def _starlette_middleware_app():
    async def chat(websocket):
        await websocket.accept()
        await websocket.send_text(f"hello {websocket.user}")
        await websocket.close()

    return Starlette(routes=[WebSocketRoute("/ws", chat)],
                     middleware=[Middleware(TokenAuthMiddleware, verify=verify, realm="mw")])


@pytest.mark.parametrize("kind", ["endpoint", "middleware"])
def test_asgi(run, caplog, kind):
    caplog.set_level(logging.DEBUG)
    app, realm = (_fastapi_app(), "asgi") if kind == "endpoint" else \
        (_starlette_middleware_app(), "mw")

    async def main():
        async with asgi_serve(app) as (_, port):
            logging.getLogger("uvicorn.error").setLevel(logging.DEBUG)
            # ASGI has no default origin check: the origin policy is the app's.
            await check_all(f"ws://127.0.0.1:{port}/ws", realm, None)

    run(main())
    assert any("access_token=***" in record.getMessage() for record in caplog.records)
    assert_no_token_logged(caplog)


def test_asgi_without_the_denial_extension_closes_before_accept(run):
    sent = []

    async def send(message):
        sent.append(message)

    async def main():
        scope = {"type": "websocket", "headers": [], "query_string": b"access_token=" + WRONG.encode()}
        assert await asgi_authenticate(scope, send, verify) is None
        assert sent == [{"type": "websocket.close", "code": 1008}]
        scope["headers"] = [(b"authorization", b"Bearer " + GOOD.encode())]
        scope["query_string"] = b""
        assert await asgi_authenticate(scope, send, verify) == "ann"

    run(main())
