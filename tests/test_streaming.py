"""Messages in pieces, sans I/O: ``Connection.send_fragment`` (sending a
message as fragments, RFC 6455 §5.4) and ``Connection.streaming`` /
``stream_next()`` (receiving one as :class:`Fragment` events, without
assembling it), on both codecs and both sides, with and without
permessage-deflate."""

import pytest

from wsfast.connection import Close, Fragment, Ping, Side, State, get_connection_class
from wsfast.deflate import accept_client, client_offer, negotiate_server
from wsfast.exceptions import ConnectionClosed, InvalidUTF8, PayloadTooBig

MASK = b"\x37\xfa\x21\x3d"
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0, 1, 2, 8, 9, 10


@pytest.fixture(params=[Side.SERVER, Side.CLIENT], ids=["server", "client"])
def side(request):
    return request.param


def other(side):
    return Side.CLIENT if side is Side.SERVER else Side.SERVER


def frames_of(codec, side, data, rsv1=False):
    """(opcode, payload, fin[, rsv1]) of what a ``side`` connection wrote."""
    parser = codec.FrameParser(mask_required=side is Side.CLIENT, allow_rsv1=rsv1)
    frames = parser.feed(data)
    assert parser.error is None and parser.buffered == 0
    if rsv1:
        return [(f.opcode, f.payload, f.fin, f.rsv1) for f in frames]
    assert not any(f.rsv1 for f in frames)
    return [(f.opcode, f.payload, f.fin) for f in frames]


def peer_frame(codec, side, op, payload=b"", fin=True, rsv1=False):
    mask = MASK if side is Side.SERVER else None
    return codec.build_frame(op, payload, fin=fin, rsv1=rsv1, mask_key=mask)


def deflate_pair(codec, **kwargs):
    header, server_ext = negotiate_server([client_offer()])
    client_ext = accept_client(header)
    return (get_connection_class(codec)(Side.SERVER, codec=codec, extensions=[server_ext], **kwargs),
            get_connection_class(codec)(Side.CLIENT, codec=codec, extensions=[client_ext], **kwargs))


# -- sending ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["text", "binary"])
def test_send_fragment(codec, side, kind):
    conn = get_connection_class(codec)(side, codec=codec)
    pieces = ["hé", "", "llo"] if kind == "text" else [b"\x00", b"", bytearray(b"\xff"), memoryview(b"z")]
    out = b""
    for piece in pieces:
        out += conn.send_fragment(piece)
        assert conn.sending_fragments
    out += conn.send_fragment(pieces[0][:0], fin=True)
    assert not conn.sending_fragments
    op = TEXT if kind == "text" else BINARY
    raw = [p.encode() if isinstance(p, str) else bytes(p) for p in pieces]
    assert frames_of(codec, side, out) == (
        [(op, raw[0], False)] + [(CONT, p, False) for p in raw[1:]] + [(CONT, b"", True)]
    )
    # The peer gets it whole.
    peer = get_connection_class(codec)(other(side), codec=codec)
    assert peer.receive_data(out) == [pieces[0][:0].join(pieces) if kind == "text" else b"".join(raw)]
    # Then whole messages again.
    assert frames_of(codec, side, conn.send_text("next")) == [(TEXT, b"next", True)]


def test_send_fragment_one_piece_with_fin(codec, side):
    conn = get_connection_class(codec)(side, codec=codec)
    assert frames_of(codec, side, conn.send_fragment(b"all", fin=True)) == [(BINARY, b"all", True)]
    assert not conn.sending_fragments


def test_no_interleaving_control_frames_between(codec, side):
    conn = get_connection_class(codec)(side, codec=codec)
    out = conn.send_fragment("a")
    with pytest.raises(RuntimeError, match="fragmented message is being sent"):
        conn.send_text("b")
    with pytest.raises(RuntimeError):
        conn.send_binary(b"b")
    if side is Side.SERVER:
        with pytest.raises(RuntimeError):
            conn.send_prepared(codec.build_frame(2, b"x"))
        with pytest.raises(RuntimeError):
            conn.send_binary_parts(b"x" * 100)
    out += conn.send_ping(b"p")
    out += conn.send_pong(b"q")
    # A ping from the peer is answered between the pieces too.
    conn.receive_data(peer_frame(codec, side, PING, b"r"))
    out += conn.data_to_send()
    out += conn.send_fragment("b", fin=True)
    assert frames_of(codec, side, out) == [
        (TEXT, b"a", False), (PING, b"p", True), (PONG, b"q", True), (PONG, b"r", True),
        (CONT, b"b", True),
    ]


def test_pieces_keep_the_type_of_the_first(codec, side):
    conn = get_connection_class(codec)(side, codec=codec)
    conn.send_fragment("text")
    with pytest.raises(TypeError, match="str pieces"):
        conn.send_fragment(b"bytes")
    conn = get_connection_class(codec)(side, codec=codec)
    conn.send_fragment(b"bytes")
    with pytest.raises(TypeError, match="bytes-like pieces"):
        conn.send_fragment("text")
    conn = get_connection_class(codec)(side, codec=codec)
    with pytest.raises(TypeError):
        conn.send_fragment(12)
    assert not conn.sending_fragments
    assert conn.send_text("fine")


def test_close_between_pieces(codec, side):
    conn = get_connection_class(codec)(side, codec=codec)
    conn.send_fragment(b"a")
    assert conn.send_close(1000)
    with pytest.raises(ConnectionClosed):
        conn.send_fragment(b"b", fin=True)
    with pytest.raises(ConnectionClosed):
        conn.send_binary(b"c")


def test_peer_close_between_pieces(codec, side):
    # The peer's close arrives while we send pieces: until its reply is
    # taken, the pieces may still go (as whole messages may); then not.
    conn = get_connection_class(codec)(side, codec=codec)
    conn.send_fragment(b"a")
    assert conn.receive_data(peer_frame(codec, side, CLOSE, b"\x03\xe8")) == [Close(1000, "")]
    assert conn.send_fragment(b"b")
    conn.data_to_send()
    with pytest.raises(ConnectionClosed):
        conn.send_fragment(b"c", fin=True)


@pytest.mark.parametrize("kind", ["text", "binary"])
def test_send_fragment_compressed(codec, kind):
    server, client = deflate_pair(codec)
    for sender, receiver in ((client, server), (server, client)):
        pieces = ["abc" * 100, "déf" * 100, "g"] if kind == "text" else [b"abc" * 100, b"\x00" * 500, b"g"]
        out = b"".join(sender.send_fragment(p) for p in pieces) + sender.send_fragment(pieces[0][:0], fin=True)
        frames = frames_of(codec, sender.side, out, rsv1=True)
        assert [f[3] for f in frames] == [True, False, False, False]  # RFC 7692 §6: RSV1 on the first only
        assert sum(len(f[1]) for f in frames) < sum(len(p) for p in pieces) // 2
        assert receiver.receive_data(out) == [pieces[0][:0].join(pieces)]
        # compress=False at the first piece: the whole message goes as it is.
        out = sender.send_fragment(pieces[0], compress=False) + sender.send_fragment(pieces[1], fin=True)
        assert [f[3] for f in frames_of(codec, sender.side, out, rsv1=True)] == [False, False]
        assert receiver.receive_data(out) == [pieces[0] + pieces[1]]


# -- receiving as a stream -------------------------------------------------------------


def test_streaming_binary(codec, side):
    conn = get_connection_class(codec)(side, codec=codec, max_message_size=1000)
    conn.streaming = True
    data = (peer_frame(codec, side, BINARY, b"ab", fin=False) + peer_frame(codec, side, PING, b"p")
            + peer_frame(codec, side, CONT, b"", fin=False) + peer_frame(codec, side, CONT, b"c"))
    assert conn.receive_data(data) == [
        Fragment(b"ab", False), Ping(b"p"), Fragment(b"", False), Fragment(b"c", True)
    ]
    # A single-frame message is one fragment; messages go on streamed.
    assert conn.receive_data(peer_frame(codec, side, BINARY, b"whole")) == [Fragment(b"whole", True)]
    # The message as a whole has no limit (each frame has): 3 x 900 > 1000.
    data = b"".join(peer_frame(codec, side, BINARY if i == 0 else CONT, bytes(900), fin=i == 2)
                    for i in range(3))
    assert conn.receive_data(data) == [Fragment(bytes(900), False)] * 2 + [Fragment(bytes(900), True)]
    assert conn.failed is None
    # ... nor a count: 2000 empty fragments > max_fragments (1024).
    data = peer_frame(codec, side, BINARY, b"", fin=False) * 1 + peer_frame(codec, side, CONT, b"", fin=False) * 2000
    events = conn.receive_data(data + peer_frame(codec, side, CONT, b"", fin=True))
    assert len(events) == 2002 and conn.failed is None
    # A frame over max_message_size fails at its header.
    conn.receive_data(peer_frame(codec, side, BINARY, bytes(1001))[:4])
    assert isinstance(conn.failed, PayloadTooBig)


def test_streaming_text_never_splits_a_character(codec, side):
    conn = get_connection_class(codec)(side, codec=codec)
    conn.streaming = True
    euro = "€".encode()
    data = (peer_frame(codec, side, TEXT, b"a" + euro[:1], fin=False)
            + peer_frame(codec, side, CONT, euro[1:2], fin=False)
            + peer_frame(codec, side, CONT, euro[2:] + b"b", fin=True))
    assert conn.receive_data(data) == [Fragment("a", False), Fragment("", False), Fragment("€b", True)]


def test_streaming_text_fails_fast(codec, side):
    conn = get_connection_class(codec)(side, codec=codec)
    conn.streaming = True
    assert conn.receive_data(peer_frame(codec, side, TEXT, b"ok", fin=False)) == [Fragment("ok", False)]
    assert conn.receive_data(peer_frame(codec, side, CONT, b"\xed\xa0", fin=False)) == []
    assert isinstance(conn.failed, InvalidUTF8)
    # Truncated at the end of the message.
    conn = get_connection_class(codec)(side, codec=codec)
    conn.streaming = True
    conn.receive_data(peer_frame(codec, side, TEXT, b"x\xe2\x82", fin=False))
    assert conn.failed is None
    conn.receive_data(peer_frame(codec, side, CONT, b"", fin=True))
    assert isinstance(conn.failed, InvalidUTF8)
    # Inside one long frame, before it ends (RFC 6455 §8.1).
    conn = get_connection_class(codec)(side, codec=codec)
    conn.streaming = True
    data = peer_frame(codec, side, TEXT, b"abc\xff" + bytes(1000))
    conn.receive_data(data[:20])
    assert isinstance(conn.failed, InvalidUTF8)


def test_stream_next_is_one_message(codec, side):
    conn = get_connection_class(codec)(side, codec=codec)
    # The first piece of a message arrives and is assembled, then the
    # application asks for it as a stream: the part so far comes first.
    assert conn.receive_data(peer_frame(codec, side, TEXT, "dé".encode()[:2], fin=False)) == []
    conn.stream_next()
    data = (peer_frame(codec, side, CONT, "dé".encode()[2:], fin=False)
            + peer_frame(codec, side, CONT, b"!", fin=True)
            + peer_frame(codec, side, TEXT, b"after")
            + peer_frame(codec, side, BINARY, b"a", fin=False) + peer_frame(codec, side, CONT, b"b"))
    assert conn.receive_data(data) == [Fragment("dé", False), Fragment("!", True), "after", b"ab"]
    # Asked before the message starts: the next one.
    conn.stream_next()
    assert conn.receive_data(peer_frame(codec, side, BINARY, b"x")) == [Fragment(b"x", True)]
    assert conn.receive_data(peer_frame(codec, side, BINARY, b"y")) == [b"y"]


def test_streaming_off_mid_message(codec, side):
    conn = get_connection_class(codec)(side, codec=codec)
    conn.streaming = True
    assert conn.receive_data(peer_frame(codec, side, BINARY, b"a", fin=False)) == [Fragment(b"a", False)]
    conn.streaming = False  # the message in progress goes on as fragments
    data = peer_frame(codec, side, CONT, b"b") + peer_frame(codec, side, BINARY, b"c")
    assert conn.receive_data(data) == [Fragment(b"b", True), b"c"]


def test_streaming_compressed(codec):
    # Compressed fragments inflate piece by piece through one stream; the
    # message is longer than max_message_size, each piece is not.
    server, client = deflate_pair(codec, max_message_size=10_000)
    server.streaming = True
    chunk = b"0123456789" * 900
    out = b"".join(client.send_fragment(chunk) for _ in range(5)) + client.send_fragment(b"", fin=True)
    events = server.receive_data(out)
    assert all(type(e) is Fragment for e in events)
    assert b"".join(e.data for e in events) == chunk * 5 and events[-1].fin
    assert server.failed is None
    # A compressed frame that inflates beyond max_message_size: 1009.
    out = client.send_fragment(bytes(20_000), fin=True)
    server.receive_data(out)
    assert isinstance(server.failed, PayloadTooBig)
