"""Hardening of wsfast.web against hostile or careless clients (issue 11):
malformed Origin, credentials in logs, TLS handshake timeout, connection
limits, Host/Origin checks against DNS rebinding.

Every test runs on stdlib asyncio and on uvloop (``run`` fixture).
"""

import asyncio
import logging

import pytest
from test_server import Echo, handshake_bytes, raw_exchange, run, serving, status_of  # noqa: F401

import wsfast
from wsfast.http import redact_uri

SECRET = "s3cr3t-VALUE-42"


def _records_above_debug(caplog):
    return [r for r in caplog.records if r.name.startswith("wsfast") and r.levelno > logging.DEBUG]


# -- a malformed Origin ---------------------------------------------------------------


@pytest.mark.parametrize("origin", ["http://[", "http://[::1", "http://[zz]:80", "http://a]b"])
def test_malformed_origin_is_403_and_logged_at_debug_only(run, caplog, origin):
    caplog.set_level(logging.DEBUG, logger="wsfast")

    async def main():
        async with serving([(r"/ws", Echo)]) as server:
            for _ in range(3):
                answer = await raw_exchange(server.port, handshake_bytes(Origin=origin))
                assert status_of(answer) == 403, answer
            # still serving
            async with wsfast.connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
                await ws.send("ok")
                assert await ws.recv() == "ok"

    run(main())
    loud = [r for r in caplog.records if r.name.startswith("wsfast")
            and (r.levelno >= logging.WARNING or r.exc_info)]
    assert loud == [], [r.getMessage() for r in loud]


def test_cross_origin_refusal_is_not_a_warning(run, caplog):
    caplog.set_level(logging.DEBUG, logger="wsfast")

    async def main():
        async with serving([(r"/ws", Echo)]) as server:
            answer = await raw_exchange(server.port, handshake_bytes(Origin="http://evil.example"))
            assert status_of(answer) == 403

    run(main())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- credentials never reach a log line ---------------------------------------------------


@pytest.mark.parametrize("uri, expected", [
    ("/ws", "/ws"),
    ("/ws?room=a&nick=b", "/ws?room=a&nick=b"),
    ("/ws?access_token=abc&room=x", "/ws?access_token=***&room=x"),
    ("/ws?x=1&API_KEY=zz&password=p&sig=a%20b", "/ws?x=1&API_KEY=***&password=***&sig=***"),
    ("/?Access%5FToken=q&client_secret=w&auth=e", "/?Access%5FToken=***&client_secret=***&auth=***"),
    ("/?token=1&token=2&sessionid=3", "/?token=***&token=***&sessionid=***"),
    ("/?empty_token=", "/?empty_token="),
    ("/a?b=1#access_token=zz", "/a?b=1#***"),
])
def test_redact_uri(uri, expected):
    assert redact_uri(uri) == expected


class Failing(wsfast.RequestHandler):
    def get(self):
        raise RuntimeError("boom")


class Refusing(wsfast.WebSocketHandler):
    def prepare(self):
        raise wsfast.HTTPError(401, "no entry")


def test_no_log_line_shows_a_token(run, caplog):
    caplog.set_level(logging.DEBUG)

    async def main():
        async with serving([(r"/ws", Echo), (r"/fail", Failing), (r"/refuse", Refusing)]) as server:
            url = f"ws://127.0.0.1:{server.port}/ws?access_token={SECRET}&room=1"
            async with wsfast.connect(url) as ws:
                await ws.send("x")
                assert await ws.recv() == "x"
            for path in (f"/fail?password={SECRET}", f"/refuse?api_key={SECRET}",
                         f"/missing?token={SECRET}"):
                answer = await raw_exchange(
                    server.port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                assert status_of(answer) in (401, 404, 500)

    run(main())
    lines = [r.getMessage() for r in caplog.records]
    lines += [logging.Formatter().formatException(r.exc_info) for r in caplog.records if r.exc_info]
    assert any("access_token=***" in line for line in lines), lines  # the access log ran
    assert any("boom" in line for line in lines)                      # so did the error log
    assert not [line for line in lines if SECRET in line]
