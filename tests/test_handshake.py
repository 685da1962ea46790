"""wsfast.handshake: RFC 6455 §4 on both sides, sans I/O."""

import base64

import pytest

from wsfast import handshake as hs
from wsfast.exceptions import HandshakeError
from wsfast.http import Headers, Request, RequestParser, ResponseParser

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3


def make_request(method="GET", version="1.1", drop=(), **overrides):
    headers = {
        "Host": "example.com",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
    }
    headers.update({k.replace("_", "-"): v for k, v in overrides.items()})
    items = [(k, v) for k, v in headers.items() if k not in drop]
    return Request(method, "/chat", Headers(items), version=version, upgrade=True)


def test_accept_key_rfc_example():
    assert hs.accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert hs.accept_key(KEY.encode()) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_generate_key_is_16_bytes_base64():
    key = hs.generate_key()
    assert len(base64.b64decode(key)) == 16
    assert key != hs.generate_key()


def test_check_request_ok():
    assert hs.check_request(make_request()) == KEY


def test_tokens_are_case_insensitive_and_list_valued():
    req = make_request(Upgrade="WebSocket", Connection="keep-alive, UPGRADE")
    assert hs.check_request(req) == KEY


def status_of(req):
    with pytest.raises(HandshakeError) as info:
        hs.check_request(req)
    return info.value


def test_non_get_is_405():
    err = status_of(make_request(method="POST"))
    assert err.status == 405 and ("Allow", "GET") in err.headers


def test_http10_is_400():
    assert status_of(make_request(version="1.0")).status == 400


@pytest.mark.parametrize("missing", ["Host", "Upgrade", "Connection", "Sec-WebSocket-Key"])
def test_missing_header_is_400(missing):
    err = status_of(make_request(drop=(missing,)))
    assert err.status == 400 and err.reason


@pytest.mark.parametrize("upgrade", ["h2c", "websocket2", ""])
def test_wrong_upgrade_is_400(upgrade):
    assert status_of(make_request(Upgrade=upgrade)).status == 400


def test_connection_without_upgrade_token_is_400():
    assert status_of(make_request(Connection="keep-alive")).status == 400


@pytest.mark.parametrize("version", ["8", "12", "14", "13, 8", "abc"])
def test_other_version_is_426_with_version_header(version):
    err = status_of(make_request(Sec_WebSocket_Version=version))
    assert err.status == 426
    assert ("Sec-WebSocket-Version", "13") in err.headers


def test_missing_version_is_426():
    assert status_of(make_request(drop=("Sec-WebSocket-Version",))).status == 426


@pytest.mark.parametrize(
    "key",
    [
        "",
        "not base64!!",
        base64.b64encode(b"x" * 15).decode(),
        base64.b64encode(b"x" * 17).decode(),
        "dGhlIHNhbXBsZSBub25jZQ",  # missing padding
    ],
)
def test_bad_key_is_400(key):
    assert status_of(make_request(Sec_WebSocket_Key=key)).status == 400


def test_two_keys_is_400():
    req = make_request()
    req.headers.add("Sec-WebSocket-Key", KEY)
    assert status_of(req).status == 400


def test_parse_subprotocols():
    h = Headers([("Sec-WebSocket-Protocol", "chat, superchat"), ("Sec-WebSocket-Protocol", "x")])
    assert hs.parse_subprotocols(h) == ["chat", "superchat", "x"]


def test_parse_extensions():
    h = Headers(
        [
            ("Sec-WebSocket-Extensions", 'permessage-deflate; client_max_window_bits, foo; a="x,y"'),
            ("Sec-WebSocket-Extensions", "bar"),
        ]
    )
    assert hs.parse_extensions(h) == [
        ("permessage-deflate", [("client_max_window_bits", None)]),
        ("foo", [("a", "x,y")]),
        ("bar", []),
    ]


def test_negotiate_extensions_declines_everything_for_now():
    offers = [("permessage-deflate", [])]
    assert hs.negotiate_extensions(offers) == (None, [])


def test_accept_response():
    data = hs.build_accept_response(KEY, subprotocol="chat", extra_headers=[("X-A", "1")])
    assert data.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    r = ResponseParser().feed(data)
    assert r.status == 101
    assert r.headers["Sec-WebSocket-Accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert r.headers["Sec-WebSocket-Protocol"] == "chat"
    assert r.headers["X-A"] == "1"
    assert hs.check_response(r, KEY, ["chat"]) == "chat"


def test_build_request_round_trips_through_the_server_checks():
    data = hs.build_request(
        "example.com:8080", "/p?q=1", KEY, ["a", "b"], {"Authorization": "Bearer t"}, "http://o"
    )
    (req,) = RequestParser().feed(data)
    assert req.upgrade and req.uri == "/p?q=1"
    assert hs.check_request(req) == KEY
    assert req.headers["Origin"] == "http://o"
    assert req.headers["Authorization"] == "Bearer t"
    assert hs.parse_subprotocols(req.headers) == ["a", "b"]


def test_build_request_refuses_header_injection():
    with pytest.raises(ValueError):
        hs.build_request("h", "/", KEY, extra_headers=[("X", "a\r\nB: c")])


def response(status=101, **headers):
    base = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Accept": hs.accept_key(KEY),
    }
    base.update({k.replace("_", "-"): v for k, v in headers.items()})
    from wsfast.http import Response

    return Response(status, "x", Headers([(k, v) for k, v in base.items() if v is not None]))


def test_check_response_ok():
    assert hs.check_response(response(), KEY) is None


@pytest.mark.parametrize(
    "resp",
    [
        response(status=200),
        response(status=403),
        response(Upgrade=None),
        response(Upgrade="h2c"),
        response(Connection=None),
        response(Sec_WebSocket_Accept=None),
        response(Sec_WebSocket_Accept="wrong"),
        response(Sec_WebSocket_Extensions="permessage-deflate"),
        response(Sec_WebSocket_Protocol="unoffered"),
    ],
)
def test_check_response_rejects(resp):
    with pytest.raises(HandshakeError) as info:
        hs.check_response(resp, KEY, ["chat"])
    assert info.value.status == resp.status


def test_check_response_rejects_two_subprotocols():
    with pytest.raises(HandshakeError):
        hs.check_response(response(Sec_WebSocket_Protocol="a, b"), KEY, ["a", "b"])
