"""wsfast.web never fails silently for a Tornado habit (issue 13, part 2):
a setting it does not implement is an error, an overridden get() guards
the upgrade as in Tornado, and app.listen() without await listens.

Every server test runs on stdlib asyncio and on uvloop (``run`` fixture).
"""

import asyncio
import socket

import pytest
from test_server import Echo, handshake_bytes, raw_exchange, serving, status_of
from test_web_security import head_of

import wsfast
from wsfast.web import SETTINGS

pytestmark = pytest.mark.run_loop(set_event_loop=True)  # as in test_server.py

# -- settings ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "xsrf_cookies", "cookie_secret", "template_path", "login_url", "debug", "autoreload",
    "serve_traceback", "compress_response", "ui_modules", "static_handler_class", "xheaders",
])
def test_a_tornado_setting_that_is_not_implemented_is_an_error(name):
    with pytest.raises(ValueError) as info:
        wsfast.Application([], **{name: True})
    message = str(info.value)
    assert name in message and "does not implement" in message


@pytest.mark.parametrize("name", ["websocket_max_mesage_size", "ping_interval", "hanshake_timeout"])
def test_an_unknown_setting_is_an_error_that_lists_the_known_ones(name):
    with pytest.raises(TypeError) as info:
        wsfast.Application([], **{name: 1})
    message = str(info.value)
    assert name in message and "websocket_max_message_size" in message and "allowed_hosts" in message


def test_every_known_setting_is_accepted():
    values = {"allowed_hosts": ["localhost"], "trusted_origins": ["https://a.example"],
              "max_connections": 10, "default_handler_class": wsfast.RequestHandler,
              "default_handler_args": {}, "static_path": None, "codec": None}
    settings = {name: values.get(name, default) for name, default in SETTINGS.items()}
    app = wsfast.Application([], **settings)
    assert app.settings == settings


def test_default_host_and_host_patterns_are_refused():
    with pytest.raises(TypeError):
        wsfast.Application([], default_host="example.com")
    app = wsfast.Application([])
    with pytest.raises(ValueError):
        app.add_handlers(r"www\.example\.com$", [(r"/", wsfast.RequestHandler)])
    app.add_handlers(".*$", [(r"/", wsfast.RequestHandler)])  # every host: fine


class Fallback(wsfast.RequestHandler):
    def initialize(self, word="none"):
        self.word = word

    def get(self):
        self.set_status(404)
        self.write(f"fallback {self.word} {self.request.path}")


def test_default_handler_class_answers_unknown_paths(run):
    async def main():
        async with serving([(r"/ws", Echo)], default_handler_class=Fallback,
                           default_handler_args={"word": "here"}) as server:
            answer = await raw_exchange(
                server.port, b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert status_of(answer) == 404 and answer.endswith(b"fallback here /nowhere")

    run(main())
    with pytest.raises(TypeError):
        wsfast.Application([], default_handler_class=object)
    with pytest.raises(ValueError):
        wsfast.Application([], default_handler_args={})


# -- get() overridden on a WebSocketHandler -------------------------------------------


class Guarded(Echo):
    """Tornado's guard pattern: get() decides, then super().get()."""

    calls = []

    def get(self, *args, **kwargs):
        Guarded.calls.append(("get", args))
        if self.get_argument("user", None) != "ada":
            raise wsfast.HTTPError(401, headers={"WWW-Authenticate": "Bearer"})
        return super().get(*args, **kwargs)

    def open(self, *args):
        Guarded.calls.append(("open", args))


class AsyncGuarded(Echo):
    async def get(self, *args, **kwargs):
        await asyncio.sleep(0)
        if self.get_cookie("session") != "ok":
            self.redirect("/login")  # an HTTP answer instead of the upgrade
            return
        await super().get(*args, **kwargs)


class SilentGet(Echo):
    def get(self, *args, **kwargs):
        pass  # neither upgrades nor answers: an empty 200, then closed


def test_an_overridden_get_runs_before_the_upgrade(run):
    Guarded.calls.clear()

    async def main():
        async with serving([(r"/ws/(\w+)", Guarded)]) as server:
            answer = await raw_exchange(server.port, handshake_bytes("/ws/room1"))
            assert status_of(answer) == 401 and b"WWW-Authenticate: Bearer" in answer
            async with wsfast.connect(f"ws://127.0.0.1:{server.port}/ws/room2?user=ada") as ws:
                await ws.send("in")
                assert await ws.recv() == "in"

    run(main())
    assert Guarded.calls == [("get", ("room1",)), ("get", ("room2",)), ("open", ("room2",))]


def test_an_async_get_may_redirect_or_await_the_upgrade(run):
    async def main():
        async with serving([(r"/ws", AsyncGuarded), (r"/silent", SilentGet)]) as server:
            answer = await raw_exchange(server.port, handshake_bytes())
            assert status_of(answer) == 302 and b"Location: /login" in answer
            assert await head_of(server.port, handshake_bytes(Cookie="session=ok")) == 101
            answer = await raw_exchange(server.port, handshake_bytes("/silent"))
            assert status_of(answer) == 200 and b"Connection: close" in answer

    run(main())


# -- listen() without await ------------------------------------------------------------------


def test_listen_without_await_listens(run):
    async def main():
        app = wsfast.Application([(r"/ws", Echo)])
        listening = app.listen(0, host="127.0.0.1")  # Tornado's habit: no await
        port = listening.port  # bound already
        assert isinstance(port, int) and port > 0
        async with wsfast.connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send("served")
            assert await ws.recv() == "served"
        server = await listening  # awaiting it still works
        assert server.port == port
        await app.stop(timeout=1)

    run(main())


def test_listen_on_a_port_in_use_raises_at_once(run):
    async def main():
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            app = wsfast.Application([(r"/ws", Echo)])
            with pytest.raises(OSError):
                app.listen(taken.getsockname()[1], host="127.0.0.1")  # no await needed to see it
            assert app._servers == []

    run(main())


def test_listen_outside_an_event_loop_raises():
    app = wsfast.Application([(r"/ws", Echo)])
    with pytest.raises(RuntimeError, match="running event loop"):
        app.listen(0, host="127.0.0.1")


def test_listen_on_all_interfaces_uses_one_port(run):
    async def main():
        app = wsfast.Application([(r"/ws", Echo)])
        server = await app.listen(0)
        ports = {sock.getsockname()[1] for sock in server.sockets}
        assert ports == {server.port}
        await app.stop(timeout=1)

    run(main())


# -- aligned with Tornado -----------------------------------------------------------------


class Args(wsfast.RequestHandler):
    def post(self):
        self.write({
            "q": self.get_argument("q"), "raw": self.get_argument("q", strip=False),
            "b": self.get_body_argument("b"), "all": self.get_arguments("q"),
            "ctl": self.get_query_argument("ctl"),
        })


def test_arguments_are_stripped_as_in_tornado(run):
    import json

    async def main():
        async with serving([(r"/args", Args)]) as server:
            body = b"b=%20body%20&q=%09two"
            answer = await raw_exchange(server.port, (
                "POST /args?q=+one+&ctl=a%01b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
            assert status_of(answer) == 200, answer
            data = json.loads(answer.split(b"\r\n\r\n", 1)[1])
            assert data == {"q": "two", "raw": "\ttwo", "b": "body", "all": ["one", "two"],
                            "ctl": "a b"}

    run(main())


class Broken(wsfast.RequestHandler):
    def get(self):
        raise KeyError("boom")

    def write_error(self, status_code, **kwargs):
        kind, value, tb = kwargs["exc_info"]
        self.write(f"{status_code} {kind.__name__} {value} {tb is not None} {kwargs['exc'] is value}")


def test_write_error_gets_exc_info_as_in_tornado(run):
    async def main():
        async with serving([(r"/broken", Broken)]) as server:
            answer = await raw_exchange(
                server.port, b"GET /broken HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert status_of(answer) == 500
            assert answer.endswith(b"500 KeyError 'boom' True True")

    run(main())


class NoPings(Echo):
    ping_interval = 0


def test_zero_turns_pings_and_ping_timeout_off(run):
    async def main():
        async with serving([(r"/ws", NoPings)], websocket_ping_timeout=0) as server:
            app = server.application
            assert app._options.ping_timeout is None
            handler_options = NoPings(app, _fake_request())._websocket_options()
            assert handler_options.ping_interval is None and handler_options.ping_timeout is None
            async with wsfast.connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
                await ws.send("x")
                assert await ws.recv() == "x"

    run(main())


def _fake_request():
    from wsfast.http import Request

    return Request("GET", "/ws")
