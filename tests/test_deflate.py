"""permessage-deflate (RFC 7692): header grammar, negotiation on both sides,
the codec through two Connections on every codec, limits, and interop with
the websockets library's own implementation at the sans-IO level."""

import itertools
import os
import random
import tracemalloc
import zlib

import pytest

from wsfast import deflate
from wsfast.connection import Side, State, get_connection_class
from wsfast.deflate import (
    DeflateOptions,
    NegotiationError,
    PerMessageDeflate,
    accept_client,
    client_offer,
    negotiate_server,
    parse_extensions,
    serialize_extensions,
)
from wsfast.exceptions import HandshakeError, PayloadTooBig

PMD = "permessage-deflate"
MASK = b"\x01\x02\x03\x04"


def compressible(n, seed=0):
    """``n`` bytes of JSON-like text that compresses about 3:1."""
    rnd = random.Random(seed)
    words = [b"alpha", b"beta", b"gamma", b'{"id":', b'"price":', b"12.5,", b"delta"]
    out = bytearray()
    while len(out) < n:
        out += rnd.choice(words) + b" " + str(rnd.randint(0, 999)).encode()
    return bytes(out[:n])


# -- header grammar ---------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        ("permessage-deflate", [(PMD, [])]),
        (
            "Permessage-Deflate;Server_No_Context_Takeover",
            [(PMD, [("server_no_context_takeover", None)])],
        ),
        (
            "permessage-deflate ; client_max_window_bits ; server_max_window_bits = 10",
            [(PMD, [("client_max_window_bits", None), ("server_max_window_bits", "10")])],
        ),
        (
            'permessage-deflate; server_max_window_bits="10"',
            [(PMD, [("server_max_window_bits", "10")])],
        ),
        (
            'permessage-deflate; server_max_window_bits="1\\0"',
            [(PMD, [("server_max_window_bits", "10")])],
        ),
        ("a, b; x=1,, c", [("a", []), ("b", [("x", "1")]), ("c", [])]),
        (", a ,", [("a", [])]),
        ("", []),
    ],
)
def test_parse_extensions(value, expected):
    assert parse_extensions(value) == expected
    assert parse_extensions([value]) == expected


@pytest.mark.parametrize(
    "value",
    [
        "permessage-deflate; ",  # empty parameter
        "permessage-deflate; =1",
        "; x",
        "a b",
        "a; x=",
        'a; x="1 0"',  # a quoted value must unescape to a token (RFC 6455 §9.1)
        'a; x="a,b"',
        'a; x="10',
        "a; x=1=2",
        'a; x=""',
        "p\u00e9",
    ],
)
def test_parse_extensions_invalid(value):
    with pytest.raises(ValueError):
        parse_extensions(value)


def test_parse_extensions_several_header_values():
    assert parse_extensions(["a", "b; x"]) == [("a", []), ("b", [("x", None)])]


def test_serialize_extensions():
    assert (
        serialize_extensions(
            [
                (PMD, [("server_no_context_takeover", None), ("client_max_window_bits", "10")]),
                ("x", []),
            ]
        )
        == "permessage-deflate; server_no_context_takeover; client_max_window_bits=10, x"
    )
    for bad in ([("x", [("q", "a b")])], [("x y", [])], [("x", [("q r", None)])]):
        with pytest.raises(ValueError):
            serialize_extensions(bad)


# -- server negotiation -------------------------------------------------------------

# (offer header values, expected response, expected extension settings
#  (local bits, remote bits, local reset, remote reset)) with the default options.
SERVER_TABLE = [
    ("permessage-deflate", "permessage-deflate; server_max_window_bits=12", (12, 15, False, False)),
    (
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
        (12, 12, False, False),
    ),
    (
        "permessage-deflate; client_max_window_bits=10",
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=10",
        (12, 10, False, False),
    ),
    (
        "permessage-deflate; client_max_window_bits=15",
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
        (12, 12, False, False),
    ),
    (
        "permessage-deflate; client_max_window_bits=8",
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=8",
        (12, 8, False, False),
    ),
    (
        "permessage-deflate; server_max_window_bits=10",
        "permessage-deflate; server_max_window_bits=10",
        (10, 15, False, False),
    ),
    (
        "permessage-deflate; server_max_window_bits=15",
        "permessage-deflate; server_max_window_bits=12",
        (12, 15, False, False),
    ),
    (
        "permessage-deflate; server_max_window_bits=8",
        "permessage-deflate; server_max_window_bits=8",
        (8, 15, False, False),
    ),
    (
        'permessage-deflate; server_max_window_bits="9"',
        "permessage-deflate; server_max_window_bits=9",
        (9, 15, False, False),
    ),
    (
        "permessage-deflate; server_no_context_takeover",
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=12",
        (12, 15, True, False),
    ),
    (
        # The client says it resets (RFC 7692) or would accept to (Autobahn):
        # echoed, it binds under both readings, and our decoder resets too.
        "permessage-deflate; client_no_context_takeover",
        "permessage-deflate; client_no_context_takeover; server_max_window_bits=12",
        (12, 15, False, True),
    ),
    (
        "PERMESSAGE-DEFLATE; Client_No_Context_Takeover; SERVER_NO_CONTEXT_TAKEOVER; "
        "server_max_window_bits=9; client_max_window_bits=11",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=9; client_max_window_bits=11",
        (9, 11, True, True),
    ),
    # The first acceptable offer wins; invalid ones and other extensions are skipped.
    (
        "x-webkit-deflate-frame, permessage-deflate; client_max_window_bits=9, permessage-deflate",
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=9",
        (12, 9, False, False),
    ),
    (
        ["permessage-deflate; foo", "permessage-deflate; server_max_window_bits=11"],
        "permessage-deflate; server_max_window_bits=11",
        (11, 15, False, False),
    ),
    (
        'permessage-deflate; server_max_window_bits="1,0", permessage-deflate; server_no_context_takeover',
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=12",
        (12, 15, True, False),
    ),
    (
        "permessage-deflate; ;, permessage-deflate; client_max_window_bits=14",
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
        (12, 12, False, False),
    ),
    (
        "permessage-deflate; client_max_window_bits=16, permessage-deflate",
        "permessage-deflate; server_max_window_bits=12",
        (12, 15, False, False),
    ),
]


def settings(ext):
    return (
        ext.local_max_window_bits,
        ext.remote_max_window_bits,
        ext.local_no_context_takeover,
        ext.remote_no_context_takeover,
    )


@pytest.mark.parametrize("offer, response, expected", SERVER_TABLE)
def test_negotiate_server(offer, response, expected):
    header, ext = negotiate_server(offer if isinstance(offer, list) else [offer])
    assert header == response
    assert isinstance(ext, PerMessageDeflate)
    assert settings(ext) == expected
    # The answer is one the matching client accepts.
    assert parse_extensions(header)[0][0] == PMD


@pytest.mark.parametrize(
    "offer",
    [
        [],
        [""],
        ["x-webkit-deflate-frame"],
        ["permessage-deflate; foo"],
        ["permessage-deflate; foo=1"],
        ["permessage-deflate; server_max_window_bits"],  # a value is required
        ["permessage-deflate; server_max_window_bits=7"],
        ["permessage-deflate; server_max_window_bits=16"],
        ["permessage-deflate; server_max_window_bits=08"],
        ["permessage-deflate; server_max_window_bits=+9"],
        ["permessage-deflate; server_max_window_bits=9.0"],
        ["permessage-deflate; server_max_window_bits=0x9"],
        ["permessage-deflate; client_max_window_bits=7"],
        ["permessage-deflate; client_max_window_bits=abc"],
        ['permessage-deflate; client_max_window_bits="1 0"'],
        ['permessage-deflate; client_max_window_bits=""'],
        ["permessage-deflate; server_no_context_takeover=1"],
        ['permessage-deflate; client_no_context_takeover="x"'],
        ["permessage-deflate; server_no_context_takeover; server_no_context_takeover"],
        ["permessage-deflate; client_no_context_takeover; Client_No_Context_Takeover"],
        ["permessage-deflate; server_max_window_bits=10; server_max_window_bits=10"],
        ["permessage-deflate; client_max_window_bits; client_max_window_bits=10"],
        ["permessage-deflate; ;"],
        ['permessage-deflate; server_max_window_bits="10'],
        ["deflate-frame; permessage-deflate"],
    ],
)
def test_negotiate_server_declines(offer):
    assert negotiate_server(offer) == (None, None)


# (server options, offer, response, settings)
SERVER_OPTIONS_TABLE = [
    (
        dict(server_no_context_takeover=True),
        "permessage-deflate",
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=12",
        (12, 15, True, False),
    ),
    (
        dict(client_no_context_takeover=True),
        "permessage-deflate",
        "permessage-deflate; client_no_context_takeover; server_max_window_bits=12",
        (12, 15, False, True),
    ),
    (
        dict(server_max_window_bits=15),
        "permessage-deflate",
        "permessage-deflate; server_max_window_bits=15",
        (15, 15, False, False),
    ),
    (
        dict(server_max_window_bits=15),
        "permessage-deflate; server_max_window_bits=9",
        "permessage-deflate; server_max_window_bits=9",
        (9, 15, False, False),
    ),
    (
        dict(server_max_window_bits=8),
        "permessage-deflate; server_max_window_bits=10",
        "permessage-deflate; server_max_window_bits=8",
        (8, 15, False, False),
    ),
    (
        dict(client_max_window_bits=9),
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=9",
        (12, 9, False, False),
    ),
    (
        dict(client_max_window_bits=9),
        "permessage-deflate; client_max_window_bits=8",
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=8",
        (12, 8, False, False),
    ),
    (
        # Without the parameter in the offer the client's window cannot be
        # limited (RFC 7692 §7.1.2.2): accepted, decoded with 15 bits.
        dict(client_max_window_bits=9),
        "permessage-deflate",
        "permessage-deflate; server_max_window_bits=12",
        (12, 15, False, False),
    ),
    (
        dict(client_max_window_bits=15),
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=15",
        (12, 15, False, False),
    ),
]


@pytest.mark.parametrize("options, offer, response, expected", SERVER_OPTIONS_TABLE)
def test_negotiate_server_options(options, offer, response, expected):
    header, ext = negotiate_server([offer], DeflateOptions(**options))
    assert header == response
    assert settings(ext) == expected


def test_accept_hook_for_handshake_negotiate_extensions():
    options = DeflateOptions()
    header, ext = options.accept("Permessage-Deflate", [("Client_Max_Window_Bits", None)])
    assert header == "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
    assert settings(ext) == (12, 12, False, False)
    assert options.accept("x-foo", []) is None
    assert options.accept(PMD, [("foo", None)]) is None
    assert (
        options.accept(PMD, [("server_max_window_bits", "10"), ("server_max_window_bits", "10")])
        is None
    )
    assert options.accept(PMD, [], accepted=[ext]) is None  # RSV1 is taken


def test_handshake_negotiate_extensions_uses_the_hook():
    handshake = pytest.importorskip("wsfast.handshake")
    http = pytest.importorskip("wsfast.http")
    if not hasattr(handshake, "negotiate_extensions") or not hasattr(handshake, "parse_extensions"):
        pytest.skip("handshake.negotiate_extensions is not there")
    headers = http.Headers(
        [("Sec-WebSocket-Extensions", "foo, permessage-deflate; client_max_window_bits")]
    )
    header, extensions = handshake.negotiate_extensions(
        handshake.parse_extensions(headers), [DeflateOptions()]
    )
    assert header == "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
    assert [type(ext) for ext in extensions] == [PerMessageDeflate]


# -- client negotiation -------------------------------------------------------------


@pytest.mark.parametrize(
    "options, offer",
    [
        ({}, "permessage-deflate; client_max_window_bits"),
        (dict(client_max_window_bits=10), "permessage-deflate; client_max_window_bits=10"),
        (
            dict(
                server_no_context_takeover=True,
                client_no_context_takeover=True,
                server_max_window_bits=9,
                client_max_window_bits=8,
            ),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=9; client_max_window_bits=8",
        ),
    ],
)
def test_client_offer(options, offer):
    assert client_offer(DeflateOptions(**options)) == offer


# (client options, response, settings (local, remote, local reset, remote reset))
CLIENT_TABLE = [
    ({}, "permessage-deflate", (12, 15, False, False)),
    ({}, "Permessage-Deflate", (12, 15, False, False)),
    ({}, ["permessage-deflate"], (12, 15, False, False)),
    ({}, "permessage-deflate; server_max_window_bits=10", (12, 10, False, False)),
    ({}, "permessage-deflate; server_max_window_bits=8", (12, 8, False, False)),
    ({}, "permessage-deflate; client_max_window_bits=9", (9, 15, False, False)),
    ({}, "permessage-deflate; client_max_window_bits=8", (8, 15, False, False)),
    ({}, "permessage-deflate; client_max_window_bits=15", (12, 15, False, False)),
    ({}, 'permessage-deflate; client_max_window_bits="11"', (11, 15, False, False)),
    ({}, "permessage-deflate; server_no_context_takeover", (12, 15, False, True)),
    ({}, "permessage-deflate; client_no_context_takeover", (12, 15, True, False)),
    (
        dict(server_max_window_bits=10),
        "permessage-deflate; server_max_window_bits=10",
        (12, 10, False, False),
    ),
    (
        dict(server_max_window_bits=10),
        "permessage-deflate; server_max_window_bits=9",
        (12, 9, False, False),
    ),
    (dict(client_max_window_bits=10), "permessage-deflate", (10, 15, False, False)),
    (dict(client_max_window_bits=14), "permessage-deflate", (14, 15, False, False)),
    (
        dict(client_max_window_bits=10),
        "permessage-deflate; client_max_window_bits=10",
        (10, 15, False, False),
    ),
    (
        dict(client_max_window_bits=10),
        "permessage-deflate; client_max_window_bits=8",
        (8, 15, False, False),
    ),
    (
        dict(server_no_context_takeover=True),
        "permessage-deflate; server_no_context_takeover",
        (12, 15, False, True),
    ),
    (dict(client_no_context_takeover=True), "permessage-deflate", (12, 15, True, False)),
]


@pytest.mark.parametrize("options, response, expected", CLIENT_TABLE)
def test_accept_client(options, response, expected):
    ext = accept_client(response, DeflateOptions(**options))
    assert settings(ext) == expected


@pytest.mark.parametrize("response", [None, [], "", [""], " , "])
def test_accept_client_nothing_accepted(response):
    assert accept_client(response) is None


@pytest.mark.parametrize(
    "options, response, reason",
    [
        ({}, "x-foo", "'x-foo', which was not offered"),
        ({}, "permessage-deflate, permessage-deflate", "more than one extension"),
        ({}, ["permessage-deflate", "x-foo"], "more than one extension"),
        ({}, "permessage-deflate; foo", "unknown parameter foo"),
        ({}, "permessage-deflate; client_max_window_bits", "client_max_window_bits needs a value"),
        ({}, "permessage-deflate; server_max_window_bits", "server_max_window_bits needs a value"),
        ({}, "permessage-deflate; server_max_window_bits=16", "invalid server_max_window_bits"),
        ({}, "permessage-deflate; client_max_window_bits=7", "invalid client_max_window_bits"),
        ({}, "permessage-deflate; server_no_context_takeover=1", "takes no value"),
        (
            {},
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "repeated",
        ),
        ({}, "permessage-deflate; client_max_window_bits=9; client_max_window_bits=9", "repeated"),
        ({}, 'permessage-deflate; "x"', "invalid Sec-WebSocket-Extensions"),
        (
            dict(server_max_window_bits=10),
            "permessage-deflate",
            "did not accept server_max_window_bits",
        ),
        (
            dict(server_max_window_bits=10),
            "permessage-deflate; server_max_window_bits=11",
            "larger than the 10",
        ),
        (
            dict(client_max_window_bits=10),
            "permessage-deflate; client_max_window_bits=11",
            "larger than the 10",
        ),
        (dict(server_no_context_takeover=True), "permessage-deflate", "server_no_context_takeover"),
    ],
)
def test_accept_client_refuses(options, response, reason):
    with pytest.raises(NegotiationError) as info:
        accept_client(response, DeflateOptions(**options))
    assert isinstance(info.value, HandshakeError)
    assert reason in info.value.reason


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(server_max_window_bits=7),
        dict(server_max_window_bits=16),
        dict(client_max_window_bits=True),
        dict(client_max_window_bits="10"),
        dict(level=10),
        dict(mem_level=0),
        dict(threshold=-1),
        dict(backend="brotli"),
    ],
)
def test_options_invalid(kwargs):
    with pytest.raises(ValueError):
        DeflateOptions(**kwargs)


# -- round trips through two Connections ---------------------------------------------


def pair(codec, client_options=None, server_options=None, max_message_size=16 * 2**20):
    """A server and a client Connection wired with what they negotiate."""
    header, server_ext = negotiate_server([client_offer(client_options)], server_options)
    assert server_ext is not None
    client_ext = accept_client(header, client_options)
    server = get_connection_class(codec)(
        Side.SERVER, codec=codec, extensions=[server_ext], max_message_size=max_message_size
    )
    client = get_connection_class(codec)(
        Side.CLIENT, codec=codec, extensions=[client_ext], max_message_size=max_message_size
    )
    return server, client


def rsv1_of(wire):
    return bool(wire[0] & 0x40)


def fragments(conn, opcode, parts, compress=True):
    """The wire bytes of one fragmented message sent by ``conn``, through
    its extensions (Connection itself sends whole messages only)."""
    codec = conn.codec
    out = b""
    for i, part in enumerate(parts):
        frame = codec.Frame(opcode if i == 0 else 0, part, fin=i == len(parts) - 1)
        for ext in conn.extensions:
            frame = ext.encode(frame) if compress else ext.encode(frame, compress=False)
        mask = MASK if conn.side is Side.CLIENT else None
        out += codec.build_frame(
            frame.opcode, frame.payload, fin=frame.fin, rsv1=frame.rsv1, mask_key=mask
        )
    return out


COMBINATIONS = list(
    itertools.product(
        (False, True),  # server_no_context_takeover
        (False, True),  # client_no_context_takeover
        (None, 8, 9, 12, 15),  # server_max_window_bits (client's request)
        (None, 8, 10, 15),  # client_max_window_bits (client's offer)
    )
)


@pytest.mark.parametrize("snct, cnct, smwb, cmwb", COMBINATIONS)
def test_round_trip_every_combination(codec, snct, cnct, smwb, cmwb):
    options = DeflateOptions(
        server_no_context_takeover=snct,
        client_no_context_takeover=cnct,
        server_max_window_bits=smwb,
        client_max_window_bits=cmwb,
    )
    server, client = pair(
        codec, options, DeflateOptions(server_max_window_bits=15, client_max_window_bits=15)
    )
    s_ext, c_ext = server.extensions[0], client.extensions[0]
    assert s_ext.local_no_context_takeover == c_ext.remote_no_context_takeover == snct
    assert c_ext.local_no_context_takeover == s_ext.remote_no_context_takeover == cnct
    assert s_ext.local_max_window_bits == c_ext.remote_max_window_bits == (smwb or 15)
    assert c_ext.local_max_window_bits <= s_ext.remote_max_window_bits == (cmwb or 15)

    big = compressible(70_000, seed=1)
    for data in (
        b"",
        b"x",
        compressible(127),
        compressible(128),
        compressible(3000),
        big,
        os.urandom(2000),
    ):
        text = data.decode("latin-1")
        for sender, receiver in ((client, server), (server, client)):
            wire = sender.send_binary(data)
            assert rsv1_of(wire) == (len(data) >= deflate.DEFAULT_THRESHOLD)
            assert receiver.receive_data(wire) == [data]
            wire = sender.send_text(text)
            assert receiver.receive_data(wire) == [text]
            wire = fragments(sender, 1, [text[:10].encode(), b"", big[:5000], text.encode()])
            assert rsv1_of(wire)
            assert receiver.receive_data(wire) == [text[:10] + big[:5000].decode() + text]
    assert server.state is client.state is State.OPEN


@pytest.mark.parametrize("no_takeover", [False, True])
def test_context_takeover(codec, no_takeover):
    server, client = pair(
        codec,
        DeflateOptions(
            server_no_context_takeover=no_takeover, client_no_context_takeover=no_takeover
        ),
    )
    message = compressible(1000, seed=5)
    for sender, receiver in ((client, server), (server, client)):
        first = sender.send_binary(message)
        second = sender.send_binary(message)
        assert receiver.receive_data(first + second) == [message, message]
        if no_takeover:
            assert len(second) == len(first)
            assert sender.extensions[0]._compressor is None  # freed between messages
            assert receiver.extensions[0]._decompressor is None
        else:
            assert len(second) < len(first) // 4  # a back reference to the first


def test_one_direction_takeover_only(codec):
    # The server resets, the client keeps its context.
    server, client = pair(codec, DeflateOptions(server_no_context_takeover=True))
    message = compressible(1000, seed=6)
    a, b = server.send_binary(message), server.send_binary(message)
    assert len(a) == len(b)
    c, d = client.send_binary(message), client.send_binary(message)
    assert len(d) < len(c) // 4
    assert client.receive_data(a + b) == [message, message]
    assert server.receive_data(c + d) == [message, message]


def test_uncompressed_fragmented_message_passes_through(codec):
    server, client = pair(codec)
    wire = fragments(client, 2, [b"a" * 300, b"b" * 300], compress=False)
    assert not rsv1_of(wire)
    assert server.receive_data(wire) == [b"a" * 300 + b"b" * 300]
    # ... and the next compressed message is not disturbed by it.
    wire = client.send_binary(b"c" * 300)
    assert rsv1_of(wire)
    assert server.receive_data(wire) == [b"c" * 300]


def test_fragmented_compressed_message_bytewise_with_control_frames(codec):
    server, client = pair(codec)
    message = compressible(20_000, seed=2)
    wire = fragments(client, 2, [message[:7000], message[7000:7001], message[7001:]])
    ping = codec.build_frame(9, b"p", mask_key=MASK)
    # A ping between the fragments: find the end of the first frame.
    first_len = 2 + 2 + 4 + (wire[2] << 8 | wire[3])
    data = wire[:first_len] + ping + wire[first_len:]
    events = []
    for i in range(len(data)):
        events += server.receive_data(data[i : i + 1])
    assert events[-1] == message
    assert len(events) == 2


# -- the codec on its own: RFC 7692 §7.2.3 examples -----------------------------------


def test_rfc_examples(codec):
    Frame = codec.Frame
    ext = PerMessageDeflate()
    hello = bytes([0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00])
    # §7.2.3.1: one compressed block, whole and in two fragments.
    assert ext.decode(Frame(1, hello, rsv1=True), max_size=100) == Frame(1, b"Hello")
    first = ext.decode(Frame(1, hello[:3], fin=False, rsv1=True), max_size=100)
    last = ext.decode(Frame(0, hello[3:]), max_size=100)
    assert (first.opcode, first.fin, first.rsv1, last.opcode, last.fin) == (
        1,
        False,
        False,
        0,
        True,
    )
    assert first.payload + last.payload == b"Hello"
    # §7.2.3.2: the second "Hello" refers back to the first (context takeover).
    ext = PerMessageDeflate()
    assert ext.decode(Frame(1, hello, rsv1=True), max_size=100).payload == b"Hello"
    again = bytes([0xF2, 0x00, 0x11, 0x00, 0x00])
    assert ext.decode(Frame(1, again, rsv1=True), max_size=100).payload == b"Hello"
    # §7.2.3.3: a stored block.
    stored = bytes([0x00, 0x05, 0x00, 0xFA, 0xFF]) + b"Hello" + b"\x00"
    assert PerMessageDeflate().decode(Frame(1, stored, rsv1=True), max_size=100).payload == b"Hello"
    # §7.2.3.4: a block with BFINAL set; the next message still decodes.
    ext = PerMessageDeflate()
    final = bytes([0xF3, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00, 0x00])
    assert ext.decode(Frame(1, final, rsv1=True), max_size=100).payload == b"Hello"
    assert ext.decode(Frame(1, hello, rsv1=True), max_size=100).payload == b"Hello"
    # §7.2.3.5: two blocks in one message.
    two = bytes([0xF2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xCA, 0xC9, 0xC9, 0x07, 0x00])
    assert PerMessageDeflate().decode(Frame(1, two, rsv1=True), max_size=100).payload == b"Hello"
    # §7.2.3.6: an empty message as a single 0x00 byte.
    assert PerMessageDeflate().decode(Frame(2, b"\x00", rsv1=True), max_size=0).payload == b""


def test_encode_matches_rfc_example(codec):
    ext = PerMessageDeflate(threshold=0)
    frame = ext.encode(codec.Frame(1, b"Hello"))
    assert frame == codec.Frame(1, bytes([0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00]), rsv1=True)
    # Context takeover: the second one is a back reference (§7.2.3.2).
    assert ext.encode(codec.Frame(1, b"Hello")).payload == bytes([0xF2, 0x00, 0x11, 0x00, 0x00])


def test_encode_fragments(codec):
    ext = PerMessageDeflate()
    Frame = codec.Frame
    a = ext.encode(Frame(2, b"x" * 10, fin=False))
    b = ext.encode(Frame(0, b"y" * 10, fin=False))
    c = ext.encode(Frame(0, b"z" * 10))
    assert (a.rsv1, b.rsv1, c.rsv1) == (True, False, False)
    assert (a.fin, b.fin, c.fin) == (False, False, True)
    assert a.payload.endswith(b"\x00\x00\xff\xff") and b.payload.endswith(b"\x00\x00\xff\xff")
    assert not c.payload.endswith(b"\x00\x00\xff\xff")
    # Fragments of one message share one stream: decodable only in order.
    d = zlib.decompressobj(wbits=-15)
    assert (
        d.decompress(a.payload + b.payload + c.payload + b"\x00\x00\xff\xff")
        == b"x" * 10 + b"y" * 10 + b"z" * 10
    )


def test_control_frames_never_reach_the_extension(codec):
    server, client = pair(codec)
    wire = client.send_ping(b"p" * 125)
    assert not rsv1_of(wire)
    assert server.receive_data(wire)[0].data == b"p" * 125


# -- threshold and opt-out -------------------------------------------------------------


def test_threshold(codec):
    server, client = pair(codec, DeflateOptions(threshold=200), DeflateOptions(threshold=0))
    for size, compressed in ((0, False), (199, False), (200, True), (5000, True)):
        data = b"a" * size
        wire = client.send_binary(data)
        assert rsv1_of(wire) == compressed
        assert server.receive_data(wire) == [data]
    # threshold=0 compresses everything, even an empty message.
    wire = server.send_text("")
    assert rsv1_of(wire)
    assert client.receive_data(wire) == [""]
    wire = server.send_text("a")
    assert rsv1_of(wire)
    assert client.receive_data(wire) == ["a"]


def test_opt_out(codec):
    server, client = pair(codec)
    data = b"a" * 10_000
    for sender, receiver in ((client, server), (server, client)):
        wire = sender.send_binary(data, compress=False)
        assert not rsv1_of(wire)
        assert len(wire) > 10_000
        assert receiver.receive_data(wire) == [data]
        wire = sender.send_text("b" * 10_000, compress=False)
        assert not rsv1_of(wire)
        assert receiver.receive_data(wire) == ["b" * 10_000]
        wire = sender.send_binary(data)
        assert rsv1_of(wire) and len(wire) < 200
        assert receiver.receive_data(wire) == [data]


def test_opt_out_without_extensions_is_a_no_op(codec):
    conn = get_connection_class(codec)(Side.SERVER, codec=codec)
    assert conn.send_text("hi", compress=False) == conn.send_text("hi")
    assert conn.send_binary(b"hi", compress=False) == codec.build_frame(2, b"hi")


# -- limits ------------------------------------------------------------------------


def test_zip_bomb(codec):
    limit = 2**20
    server, client = pair(codec, max_message_size=limit)
    bomb = client.extensions[0].encode(codec.Frame(2, bytes(16 * 2**20)))
    assert len(bomb.payload) < 20 * 1024  # 16 MiB of zeros in ~16 KiB
    wire = codec.build_frame(2, bomb.payload, rsv1=True, mask_key=MASK)
    tracemalloc.start()
    try:
        events = server.receive_data(wire)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert events == []
    assert server.failed is not None and server.failed.code == 1009
    assert isinstance(server.failed, PayloadTooBig)
    assert server.state is State.CLOSED
    close = server.data_to_send()
    assert (close[0], close[2:4]) == (0x88, b"\x03\xf1")  # a close frame with 1009
    assert peak < 3 * limit, peak  # zlib's output buffer, then the bytes object
    assert current < limit // 4, current  # nothing of it kept (e.g. by the traceback)


def test_zip_bomb_in_fragments(codec):
    limit = 2**20
    server, client = pair(codec, max_message_size=limit)
    part = bytes(600 * 1024)
    wire = fragments(client, 2, [part, part])
    assert len(wire) < 10_000
    assert server.receive_data(wire) == []
    assert server.failed.code == 1009


@pytest.mark.parametrize("fragmented", [False, True])
def test_limit_is_exact(codec, fragmented):
    limit = 100_000
    for size, ok in ((limit, True), (limit + 1, False)):
        server, client = pair(codec, max_message_size=limit)
        data = bytes(size)
        if fragmented:
            wire = fragments(client, 2, [data[:5000], data[5000:]])
        else:
            wire = client.send_binary(data)
        events = server.receive_data(wire)
        if ok:
            assert events == [data]
        else:
            assert events == [] and server.failed.code == 1009


# -- compressed frames longer than the message limit (issue 11, item 7) --------------


def _peer_wire(side_to, payload, *, fin=True, opcode=2, rsv1=True, codec=None):
    """A frame as the peer of a ``side_to`` connection sends it."""
    mask = MASK if side_to is Side.SERVER else None
    return codec.build_frame(opcode, payload, fin=fin, rsv1=rsv1, mask_key=mask)


def _deflate_raw(data, level=6, wbits=15, mem_level=8, strategy=zlib.Z_DEFAULT_STRATEGY):
    c = zlib.compressobj(level, zlib.DEFLATED, -wbits, mem_level, strategy)
    return (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]  # RFC 7692 §7.2.1


# The compressors a peer may use on incompressible data, by zlib's parameters
# (the peer chooses them; RFC 7692 negotiates only the window): websockets'
# memLevel 5 (our default too), memLevel 1 (stored blocks of 127 bytes), and
# a small window with fixed codes, where stored blocks are impossible and
# bytes 144-255 take 9 bits each (zlib's worst case, ~12.5 %).
PEER_COMPRESSORS = [
    pytest.param(dict(wbits=12, mem_level=5), None, id="websockets-memlevel5"),
    pytest.param(dict(wbits=15, mem_level=8), None, id="zlib-defaults"),
    pytest.param(dict(wbits=15, mem_level=1), None, id="memlevel1-stored-127"),
    pytest.param(dict(level=1, wbits=9, mem_level=4), None, id="window9-memlevel4"),
    pytest.param(dict(wbits=9, mem_level=9, strategy=zlib.Z_FIXED), range(144, 256),
                 id="fixed-codes-9-bit-literals"),
]


@pytest.mark.parametrize("side", [Side.SERVER, Side.CLIENT], ids=["server", "client"])
@pytest.mark.parametrize("params, alphabet", PEER_COMPRESSORS)
def test_incompressible_message_at_the_limit_passes(codec, side, params, alphabet):
    # Issue 11: a 16 MiB random message (exactly the limit) was refused with
    # 1009, its compressed frame checked against the message limit. Here
    # 256 KiB: the same rule, fast.
    limit = 2**18
    rnd = random.Random(7)
    data = rnd.randbytes(limit)
    if alphabet:  # bytes 144-255 only
        data = data.translate(bytes(144 + b % 112 for b in range(256)))
    payload = _deflate_raw(data, **params)
    assert len(payload) > limit  # incompressible: the frame is longer than the message
    server, client = pair(codec, DeflateOptions(server_max_window_bits=15,
                                                client_max_window_bits=15),
                          max_message_size=limit)
    conn = server if side is Side.SERVER else client
    assert len(payload) <= conn._parser.max_rsv1_frame_size
    assert conn.receive_data(_peer_wire(side, payload, codec=codec)) == [data]
    assert conn.failed is None
    # In fragments too (each a sync-flushed piece of one stream).
    c = zlib.compressobj(params.get("level", 6), zlib.DEFLATED, -params["wbits"],
                         params["mem_level"], params.get("strategy", zlib.Z_DEFAULT_STRATEGY))
    step = 1000
    pieces = [data[i : i + step] for i in range(0, limit, step)]
    wire = b""
    for i, piece in enumerate(pieces):
        out = c.compress(piece) + c.flush(zlib.Z_SYNC_FLUSH)
        last = i == len(pieces) - 1
        wire += _peer_wire(side, out[:-4] if last else out, fin=last, opcode=0 if i else 2,
                           rsv1=i == 0, codec=codec)
    assert conn.receive_data(wire) == [data]
    assert conn.failed is None


@pytest.mark.parametrize("side", [Side.SERVER, Side.CLIENT], ids=["server", "client"])
def test_compressed_frame_beyond_the_bound_fails_before_its_payload(codec, side):
    limit = 2**20
    bound = PerMessageDeflate.max_encoded_size(limit)
    assert limit + 5 * (limit // 16384) < bound < 1.15 * limit
    for length, fails in ((bound, False), (bound + 1, True)):
        server, client = pair(codec, max_message_size=limit)
        conn = server if side is Side.SERVER else client
        header = _peer_wire(side, bytes(length), codec=codec)[: 10 + (4 if side is Side.SERVER else 0)]
        assert conn.receive_data(header) == []
        if fails:
            assert isinstance(conn.failed, PayloadTooBig)
            assert conn.failed.reason == f"frame of {bound + 1} bytes exceeds the limit of {bound} bytes"
        else:
            assert conn.failed is None
    # A frame sent uncompressed (RSV1 clear) gets no allowance.
    server, client = pair(codec, max_message_size=limit)
    conn = server if side is Side.SERVER else client
    conn.receive_data(_peer_wire(side, bytes(limit + 1), rsv1=False, codec=codec)[:14])
    assert isinstance(conn.failed, PayloadTooBig)


@pytest.mark.parametrize("side", [Side.SERVER, Side.CLIENT], ids=["server", "client"])
def test_compressed_fragments_share_one_bound(codec, side):
    # The frames of one compressed message together may carry the bound for
    # their count; the next one past it fails at its header.
    limit = 2**16
    server, client = pair(codec, max_message_size=limit)
    conn = server if side is Side.SERVER else client
    first = 60_000
    c = zlib.compressobj(0, zlib.DEFLATED, -15)  # stored blocks: longer than what they carry
    part = c.compress(bytes(first)) + c.flush(zlib.Z_SYNC_FLUSH)
    assert conn.receive_data(_peer_wire(side, part, fin=False, codec=codec)) == []
    assert conn.failed is None
    room = PerMessageDeflate.max_encoded_size(limit, 2) - len(part)
    assert conn._parser.max_frame_size == room
    conn.receive_data(_peer_wire(side, bytes(room + 1), opcode=0, rsv1=False, codec=codec)[:10])
    assert isinstance(conn.failed, PayloadTooBig)


@pytest.mark.parametrize("side", [Side.SERVER, Side.CLIENT], ids=["server", "client"])
def test_empty_compressed_fragments_are_limited(codec, side):
    # Issue 11, item 2 on the deflate path: each empty fragment is a sync
    # flush (5 bytes of compressed data, nothing inflated). 1009 after
    # max_fragments, with flat memory.
    limit = 2**16
    server, client = pair(codec, max_message_size=limit)
    conn = server if side is Side.SERVER else client
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    first = c.compress(b"x") + c.flush(zlib.Z_SYNC_FLUSH)
    empty = _peer_wire(side, c.compress(b"") + c.flush(zlib.Z_SYNC_FLUSH), fin=False, opcode=0,
                       rsv1=False, codec=codec)
    data = _peer_wire(side, first, fin=False, codec=codec) + empty * 50_000
    tracemalloc.start()
    try:
        for pos in range(0, len(data), 4096):
            conn.receive_data(data[pos : pos + 4096])
            if conn.failed is not None:
                break
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert conn.failed is not None and conn.failed.code == 1009
    assert conn.failed.reason == "message in more than 1024 fragments"
    assert peak < 2**18, peak


@pytest.mark.parametrize("side", [Side.SERVER, Side.CLIENT], ids=["server", "client"])
def test_one_byte_compressed_fragments_hold_their_payload_only(codec, side):
    server, client = pair(codec, max_message_size=2**18)
    conn = server if side is Side.SERVER else client
    n = 4096
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    frames = []
    for i in range(n):
        out = c.compress(b"ab"[i % 2 : i % 2 + 1]) + c.flush(zlib.Z_SYNC_FLUSH)
        last = i == n - 1
        frames.append(_peer_wire(side, out[:-4] if last else out, fin=last, opcode=0 if i else 2,
                                 rsv1=i == 0, codec=codec))
    data = b"".join(frames)
    events = []
    tracemalloc.start()
    try:
        for pos in range(0, len(data), 4096):
            events += conn.receive_data(data[pos : pos + 4096])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert events == [b"ab" * (n // 2)] and conn.failed is None
    assert peak < 150_000, peak


def test_decode_max_size(codec):
    frame = PerMessageDeflate().encode(codec.Frame(2, bytes(5000)))
    with pytest.raises(PayloadTooBig):
        PerMessageDeflate().decode(frame, max_size=4999)
    assert PerMessageDeflate().decode(frame, max_size=5000).payload == bytes(5000)
    # Big compressed frames take the two-call path (payload >= 4096 bytes).
    data = os.urandom(10_000)
    frame = PerMessageDeflate().encode(codec.Frame(2, data))
    assert len(frame.payload) > 4096
    assert PerMessageDeflate().decode(frame, max_size=10_000).payload == data
    with pytest.raises(PayloadTooBig):
        PerMessageDeflate().decode(frame, max_size=9_999)


# -- protocol errors ----------------------------------------------------------------


def test_rsv1_on_continuation_frame(codec):
    server, client = pair(codec)
    wire = codec.build_frame(1, b"\xf2\x48", fin=False, rsv1=True, mask_key=MASK)
    wire += codec.build_frame(0, b"\xcd\xc9\xc9\x07\x00", rsv1=True, mask_key=MASK)
    assert server.receive_data(wire) == []
    assert (server.failed.code, server.failed.reason) == (1002, "RSV1 set on a continuation frame")


def test_rsv1_on_control_frame(codec):
    server, _ = pair(codec)
    assert server.receive_data(codec.build_frame(9, b"", rsv1=True, mask_key=MASK)) == []
    assert server.failed.code == 1002


def test_rsv1_without_negotiation(codec):
    server = get_connection_class(codec)(Side.SERVER, codec=codec)
    assert (
        server.receive_data(
            codec.build_frame(1, b"\xf2\x48\xcd\xc9\xc9\x07\x00", rsv1=True, mask_key=MASK)
        )
        == []
    )
    assert server.failed.code == 1002


def test_invalid_compressed_data(codec):
    server, _ = pair(codec)
    wire = codec.build_frame(2, b"\xff\xff\xff\xff", rsv1=True, mask_key=MASK)
    assert server.receive_data(wire) == []
    assert server.failed.code == 1007
    assert "invalid compressed data" in server.failed.reason


def test_compressed_invalid_utf8(codec):
    server, client = pair(codec)
    payload = client.extensions[0].encode(codec.Frame(2, b"ok \xff" * 100)).payload
    assert server.receive_data(codec.build_frame(1, payload, rsv1=True, mask_key=MASK)) == []
    assert server.failed.code == 1007


def test_compressed_invalid_utf8_fails_fast_in_fragments(codec):
    server, client = pair(codec)
    codec = client.codec
    ext = client.extensions[0]
    wire = b""
    for i, part in enumerate(["é".encode() * 200, b"\xff" + b"a" * 300]):
        frame = ext.encode(codec.Frame(1 if i == 0 else 0, part, fin=False))
        wire += codec.build_frame(
            frame.opcode, frame.payload, fin=False, rsv1=frame.rsv1, mask_key=MASK
        )
    # The message is not finished: the bad byte fails in its own fragment.
    assert server.receive_data(wire) == []
    assert server.failed.code == 1007


# -- window bits 8 ----------------------------------------------------------------------


def inflate_with_window(data, wbits):
    """Inflate ``data`` with a ``wbits`` window, 16 bytes of output per call,
    so that any back reference beyond the window fails ("invalid distance
    too far back") instead of being served from the output buffer."""
    d = zlib.decompressobj(wbits=-wbits)
    out = []
    while True:
        chunk = d.decompress(data, 16)
        data = d.unconsumed_tail
        if not chunk and not data:
            return b"".join(out)
        out.append(chunk)


def test_inflate_with_window_detects_far_references():
    block = os.urandom(300)
    c = zlib.compressobj(6, zlib.DEFLATED, -10)
    far = c.compress(block * 4) + c.flush(zlib.Z_SYNC_FLUSH)
    with pytest.raises(zlib.error):
        inflate_with_window(far, 8)


@pytest.mark.parametrize("distance", [200, 250, 255, 256, 300, 511])
def test_window_bits_8_output_fits_a_256_byte_window(codec, distance):
    ext = PerMessageDeflate(local_max_window_bits=8, threshold=0)
    data = os.urandom(distance) * 8 + compressible(5000)
    frame = ext.encode(codec.Frame(2, data))
    assert inflate_with_window(frame.payload + b"\x00\x00\xff\xff", 8) == data
    # Context takeover across messages keeps within the window too.
    frame = ext.encode(codec.Frame(2, data))
    assert len(frame.payload) < len(data)


def test_window_bits_8_always_uses_the_standard_zlib():
    ext = PerMessageDeflate(local_max_window_bits=8, backend="auto")
    assert ext._compress_module is zlib
    assert ext._compress_args[2] == -9


@pytest.mark.parametrize("bits", range(9, 16))
def test_window_bits_are_honoured(codec, bits):
    ext = PerMessageDeflate(local_max_window_bits=bits, threshold=0)
    data = os.urandom((1 << bits) + 100) * 3
    frame = ext.encode(codec.Frame(2, data))
    assert inflate_with_window(frame.payload + b"\x00\x00\xff\xff", bits) == data


# -- backends ------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["zlib", "zlib-ng", "isal", "auto"])
def test_backends_round_trip(codec, backend):
    try:
        options = DeflateOptions(backend=backend, threshold=0)
    except ImportError:
        pytest.skip(f"{backend} is not installed")
    server, client = pair(codec, options, options)
    for data in (b"", b"a", compressible(50_000), os.urandom(1000)):
        for sender, receiver in ((client, server), (server, client)):
            assert receiver.receive_data(sender.send_binary(data)) == [data]
            assert receiver.receive_data(sender.send_binary(data)) == [data]
    limit_server, limit_client = pair(codec, options, options, max_message_size=1000)
    assert limit_server.receive_data(limit_client.send_binary(bytes(100_000))) == []
    assert limit_server.failed.code == 1009


# -- interop with the websockets library (sans I/O) ------------------------------------

try:
    from websockets import frames as ws_frames
    from websockets.extensions import permessage_deflate as ws_pmd
except ImportError:  # a test extra; the rest of this module runs without it
    ws_frames = ws_pmd = None

needs_websockets = pytest.mark.skipif(ws_pmd is None, reason="websockets is not installed")


def ws_frame(opcode, data, fin=True, rsv1=False):
    return ws_frames.Frame(ws_frames.Opcode(opcode), data, fin, rsv1)


@needs_websockets
@pytest.mark.parametrize(
    "our_bits, their_bits, our_reset, their_reset",
    list(itertools.product((8, 9, 12, 15), (9, 12, 15), (False, True), (False, True))),
)
def test_websockets_codec_both_directions(codec, our_bits, their_bits, our_reset, their_reset):
    ours = PerMessageDeflate(
        local_max_window_bits=our_bits,
        remote_max_window_bits=their_bits,
        local_no_context_takeover=our_reset,
        remote_no_context_takeover=their_reset,
        threshold=0,
    )
    theirs = ws_pmd.PerMessageDeflate(
        remote_no_context_takeover=our_reset,
        local_no_context_takeover=their_reset,
        remote_max_window_bits=our_bits,
        local_max_window_bits=their_bits,
    )
    messages = [
        b"Hello",
        compressible(3000, 1),
        compressible(3000, 1),
        os.urandom(700),
        compressible(70_000, 2),
    ]
    for data in messages:
        # ours -> websockets
        f = ours.encode(codec.Frame(2, data))
        got = theirs.decode(ws_frame(2, f.payload, True, f.rsv1), max_size=None)
        assert bytes(got.data) == data
        # websockets -> ours
        f = theirs.encode(ws_frame(2, data))
        assert f.rsv1
        got = ours.decode(codec.Frame(2, bytes(f.data), rsv1=True), max_size=len(data))
        assert got.payload == data and not got.rsv1
        # fragmented, both ways
        parts = [data[:100], data[100:1000], data[1000:]]
        out = b""
        for i, part in enumerate(parts):
            f = ours.encode(codec.Frame(2 if i == 0 else 0, part, fin=i == 2))
            out += bytes(
                theirs.decode(ws_frame(f.opcode, f.payload, f.fin, f.rsv1), max_size=None).data
            )
        assert out == data
        out = b""
        for i, part in enumerate(parts):
            f = theirs.encode(ws_frame(2 if i == 0 else 0, part, i == 2))
            g = ours.decode(
                codec.Frame(int(f.opcode), bytes(f.data), fin=f.fin, rsv1=f.rsv1), max_size=10**6
            )
            out += g.payload
        assert out == data


def ws_params(header):
    return parse_extensions(header)[0][1]


@needs_websockets
@pytest.mark.parametrize(
    "client_kwargs",
    [
        {},
        dict(server_no_context_takeover=True),
        dict(client_no_context_takeover=True),
        dict(server_max_window_bits=10),
        dict(client_max_window_bits=10),
        dict(client_max_window_bits=True),
        dict(server_max_window_bits=9, client_max_window_bits=11, server_no_context_takeover=True),
    ],
)
def test_websockets_client_against_our_server(codec, client_kwargs):
    factory = ws_pmd.ClientPerMessageDeflateFactory(**client_kwargs)
    offer = serialize_extensions([(PMD, factory.get_request_params())])
    header, ours = negotiate_server([offer], DeflateOptions(threshold=0))
    theirs = factory.process_response_params(ws_params(header), [])
    assert theirs.local_max_window_bits <= ours.remote_max_window_bits
    assert ours.local_max_window_bits <= theirs.remote_max_window_bits
    for data in (compressible(5000, 3), compressible(5000, 3)):
        f = ours.encode(codec.Frame(1, data))
        assert bytes(theirs.decode(ws_frame(1, f.payload, True, True), max_size=None).data) == data
        f = theirs.encode(ws_frame(1, data))
        assert ours.decode(codec.Frame(1, bytes(f.data), rsv1=True), max_size=10**6).payload == data


@needs_websockets
@pytest.mark.parametrize(
    "server_kwargs",
    [
        {},
        dict(server_no_context_takeover=True),
        dict(client_no_context_takeover=True),
        dict(server_max_window_bits=10),
        dict(client_max_window_bits=10),
        dict(
            server_max_window_bits=12, client_max_window_bits=12, compress_settings={"memLevel": 5}
        ),
    ],
)
@pytest.mark.parametrize(
    "client_options",
    [
        {},
        dict(client_max_window_bits=9),
        dict(server_max_window_bits=11),
        dict(server_no_context_takeover=True),
    ],
)
def test_our_client_against_websockets_server(codec, server_kwargs, client_options):
    options = DeflateOptions(threshold=0, **client_options)
    factory = ws_pmd.ServerPerMessageDeflateFactory(**server_kwargs)
    try:
        response_params, theirs = factory.process_request_params(
            ws_params(client_offer(options)), []
        )
    except Exception as exc:  # websockets declined the offer
        pytest.skip(f"websockets declines: {exc}")
    ours = accept_client(serialize_extensions([(PMD, response_params)]), options)
    assert ours.local_max_window_bits <= theirs.remote_max_window_bits
    assert theirs.local_max_window_bits <= ours.remote_max_window_bits
    for data in (compressible(5000, 4), compressible(5000, 4)):
        f = ours.encode(codec.Frame(2, data))
        assert bytes(theirs.decode(ws_frame(2, f.payload, True, True), max_size=None).data) == data
        f = theirs.encode(ws_frame(2, data))
        assert ours.decode(codec.Frame(2, bytes(f.data), rsv1=True), max_size=10**6).payload == data
