"""Tests of the sans-IO state machine ``wsfast.connection.Connection``.

Every wire case runs on both codecs (the ``codec`` fixture), on both sides
(server: the peer's frames are masked; client: they are not), and fed three
ways (h11's habit): whole, one byte at a time, and followed by the bytes of a
next frame (a ping, which must be answered unless the case closed the input).
"""

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsfast.connection import Close, Connection, Ping, Pong, Side, State, get_connection_class
from wsfast.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidUTF8,
    PayloadTooBig,
    ProtocolError,
)

MASK = b"\x37\xfa\x21\x3d"
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0, 1, 2, 8, 9, 10


@pytest.fixture(params=[Side.SERVER, Side.CLIENT], ids=["server", "client"])
def side(request):
    return request.param


@pytest.fixture(params=["whole", "bytewise", "next", "window"])
def chunking(request):
    """How the wire bytes arrive: in one read, a byte per read, in one read
    with a ping behind them, or in reads of 5 bytes that go into
    ``read_window()`` whenever the connection offers one."""
    return request.param


# -- helpers ----------------------------------------------------------------


def peer_frame(codec, side, op, payload=b"", fin=True, rsv1=False, masked=None):
    """A frame as the peer of a ``side`` connection sends it: masked to a
    server, unmasked to a client (RFC 6455 §5.1), unless ``masked`` says."""
    if masked is None:
        masked = side is Side.SERVER
    return codec.build_frame(op, payload, fin=fin, rsv1=rsv1, mask_key=MASK if masked else None)


def written(codec, side, data):
    """The (opcode, payload) frames a ``side`` connection wrote, parsed the way
    its peer parses them (which checks the masking direction too)."""
    parser = codec.FrameParser(mask_required=side is Side.CLIENT)
    frames = parser.feed(data)
    assert parser.error is None
    assert all(f.fin and not f.rsv1 for f in frames)
    return [(f.opcode, f.payload) for f in frames]


def close_payload(code, reason=b""):
    return code.to_bytes(2, "big") + reason


def wire(codec, side, frames):
    """Bytes of ``frames``: (op, payload[, fin]) tuples or raw bytes, or a
    callable (codec, side) -> bytes."""
    out = b""
    for spec in frames:
        if isinstance(spec, bytes):
            out += spec
        elif callable(spec):
            out += spec(codec, side)
        else:
            out += peer_frame(codec, side, *spec)
    return out


def feed(conn, data, chunking):
    """Feed ``data`` the ``chunking`` way; return (events, bytes written)."""
    if chunking == "bytewise":
        events, out = [], b""
        for i in range(len(data)):
            events += conn.receive_data(data[i : i + 1])
            out += conn.data_to_send()
        return events, out
    if chunking == "window":
        events, out, pos = [], b"", 0
        while pos < len(data):
            win = conn.read_window()
            if win is None:
                events += conn.receive_data(data[pos : pos + 5])
                pos += 5
            else:
                n = min(len(win), 5, len(data) - pos)
                win[:n] = data[pos : pos + n]
                events += conn.receive_window(n)
                pos += n
            out += conn.data_to_send()
        return events, out
    events = conn.receive_data(data)
    return events, conn.data_to_send()


def run(codec, side, chunking, frames, **kwargs):
    """Feed a wire case; return (connection, events, written frames), with the
    trailing ping of the "next" chunking checked and removed."""
    conn = get_connection_class(codec)(side, codec=codec, **kwargs)
    data = wire(codec, side, frames)
    if chunking == "next":
        data += peer_frame(codec, side, PING, b"next")
    events, out = feed(conn, data, chunking)
    sent = written(codec, side, out)
    if chunking == "next" and conn.state is not State.CLOSED:
        # The case left the input open: the next frame is processed too.
        assert events[-1] == Ping(b"next")
        assert sent[-1] == (PONG, b"next")
        del events[-1], sent[-1]
    return conn, events, sent


def check(codec, side, chunking, frames, events, replies=(), fail=None, **kwargs):
    conn, got, sent = run(codec, side, chunking, frames, **kwargs)
    assert got == events
    if fail is None:
        assert conn.failed is None
        assert sent == list(replies)
    else:
        assert conn.failed is not None, "the connection should have failed"
        assert conn.failed.code == fail, conn.failed
        assert conn.state is State.CLOSED
        assert sent[:-1] == list(replies)
        op, payload = sent[-1]
        assert op == CLOSE and int.from_bytes(payload[:2], "big") == fail
        assert len(payload) <= 125
        payload[2:].decode("utf-8")
        assert conn.close_sent.code == fail
        assert conn.receive_data(wire(codec, side, [(TEXT, "ignored")])) == []
        assert conn.data_to_send() == b""
    return conn


# -- wire cases ---------------------------------------------------------------

LENGTHS = [0, 1, 7, 8, 15, 16, 125, 126, 127, 1000, 65535, 65536]
VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014]
VALID_CODES += [3000, 3001, 3999, 4000, 4998, 4999]
INVALID_CODES = [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999]
INVALID_CODES += [5000, 5001, 65535]


def P(frames, events, replies=(), fail=None, id=None):
    return pytest.param(frames, events, list(replies), fail, id=id)


CASES = [
    # Messages of every length class (RFC 6455 §5.2).
    *[P([(TEXT, "é" * (n // 2) + "x" * (n % 2))], ["é" * (n // 2) + "x" * (n % 2)], id=f"text-{n}")
      for n in LENGTHS],
    *[P([(BINARY, bytes(range(256)) * (n // 256) + bytes(n % 256))],
        [bytes(range(256)) * (n // 256) + bytes(n % 256)], id=f"binary-{n}") for n in LENGTHS],
    P([(TEXT, "a"), (BINARY, b"b"), (TEXT, "c")], ["a", b"b", "c"], id="three-messages"),
    P([(TEXT, "\x00\x7f\x80\u07ff\u0800\uffff\U00010000\U0010ffff\ufffe")],
      ["\x00\x7f\x80\u07ff\u0800\uffff\U00010000\U0010ffff\ufffe"], id="utf8-edges"),
    # Fragmentation (RFC 6455 §5.4).
    P([(TEXT, "he", False), (CONT, "l", False), (CONT, "lo", True)], ["hello"], id="frag-text"),
    P([(BINARY, b"\x00", False), (CONT, b"\xff", True)], [b"\x00\xff"], id="frag-binary"),
    P([(TEXT, "", False), (CONT, "", False), (CONT, "", True)], [""], id="frag-empty-text"),
    P([(BINARY, b"", False), (CONT, b"x", False), (CONT, b"", True)], [b"x"], id="frag-empty"),
    P([(TEXT, "x", False)] + [(CONT, "y", False)] * 50 + [(CONT, "z", True)],
      ["x" + "y" * 50 + "z"], id="frag-52"),
    P([(TEXT, b"\xe2", False), (CONT, b"\x82", False), (CONT, b"\xac", True)], ["\u20ac"],
      id="frag-split-char"),
    P([(TEXT, "a", False), (CONT, "b", True), (BINARY, b"c", False), (CONT, b"d", True)],
      ["ab", b"cd"], id="frag-two-messages"),
    P([(TEXT, "a", False), (PING, b"p"), (CONT, "b", True)], [Ping(b"p"), "ab"],
      [(PONG, b"p")], id="frag-ping-between"),
    P([(TEXT, "a", False), (PONG, b"p"), (PING, b""), (CONT, "b", True)],
      [Pong(b"p"), Ping(b""), "ab"], [(PONG, b"")], id="frag-pong-ping-between"),
    P([(CONT, "x", True)], [], fail=1002, id="cont-without-message"),
    P([(CONT, "x", False)], [], fail=1002, id="cont-nofin-without-message"),
    P([(TEXT, "a"), (CONT, "b", True)], ["a"], fail=1002, id="cont-after-message"),
    P([(TEXT, "a", False), (TEXT, "b", True)], [], fail=1002, id="text-inside-fragmented"),
    P([(BINARY, b"a", False), (TEXT, "b", False)], [], fail=1002, id="text-inside-binary"),
    P([(TEXT, "a", False), (PING, b"p"), (BINARY, b"b")], [Ping(b"p")], [(PONG, b"p")],
      fail=1002, id="binary-inside-fragmented-after-ping"),
    # Control frames (RFC 6455 §5.5).
    P([(PING, b"")], [Ping(b"")], [(PONG, b"")], id="ping-0"),
    P([(PING, b"\xff" * 125)], [Ping(b"\xff" * 125)], [(PONG, b"\xff" * 125)], id="ping-125"),
    P([(PING, b"\xff" * 126)], [], fail=1002, id="ping-126"),
    P([(PING, b"a"), (PING, b"b"), (PING, b"c")], [Ping(b"a"), Ping(b"b"), Ping(b"c")],
      [(PONG, b"a"), (PONG, b"b"), (PONG, b"c")], id="three-pings"),
    P([(PONG, b"")], [Pong(b"")], id="pong-0"),
    P([(PONG, b"x" * 125)], [Pong(b"x" * 125)], id="pong-125"),
    P([(PONG, b"x" * 126)], [], fail=1002, id="pong-126"),
    P([(PING, b"x", False)], [], fail=1002, id="fragmented-ping"),
    P([(PONG, b"x", False)], [], fail=1002, id="fragmented-pong"),
    P([(CLOSE, b"", False)], [], fail=1002, id="fragmented-close"),
    # Reserved opcodes and bits (RFC 6455 §5.2): fail even after valid frames.
    *[P([(op, b"")], [], fail=1002, id=f"opcode-{op}") for op in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15)],
    P([(TEXT, "a"), (5, b"")], ["a"], fail=1002, id="text-then-opcode-5"),
    P([(PING, b"p"), (15, b"x")], [Ping(b"p")], [(PONG, b"p")], fail=1002,
      id="ping-then-opcode-15"),
    P([(TEXT, "a", True, True)], [], fail=1002, id="rsv1"),
    P([lambda codec, side: bytes([0xA1 if side is Side.CLIENT else 0x21]) + peer_frame(codec, side, TEXT, "a")[1:]],
      [], fail=1002, id="rsv2-nofin"),
    P([lambda codec, side: bytes([0x81 | 0x20]) + peer_frame(codec, side, TEXT, "a")[1:]],
      [], fail=1002, id="rsv2"),
    P([lambda codec, side: bytes([0x81 | 0x10]) + peer_frame(codec, side, TEXT, "a")[1:]],
      [], fail=1002, id="rsv3"),
    P([(TEXT, "a"), lambda codec, side: bytes([0x81 | 0x70]) + peer_frame(codec, side, TEXT, "a")[1:]],
      ["a"], fail=1002, id="text-then-rsv123"),
    # Masking direction (RFC 6455 §5.1, §5.3).
    P([lambda codec, side: peer_frame(codec, side, TEXT, "a", masked=side is Side.CLIENT)],
      [], fail=1002, id="wrong-masking"),
    P([(TEXT, "a"), lambda codec, side: peer_frame(codec, side, PING, b"", masked=side is Side.CLIENT)],
      ["a"], fail=1002, id="text-then-wrong-masking"),
    # 64-bit length with the most significant bit set.
    P([lambda codec, side: bytes([0x82, (0x80 if side is Side.SERVER else 0) | 127])
       + b"\x80" + bytes(7) + (MASK if side is Side.SERVER else b"")], [], fail=1002,
      id="length-msb"),
    # UTF-8 (RFC 6455 §5.6, §8.1).
    P([(TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited")], [], fail=1007,
      id="text-surrogate"),
    P([(TEXT, b"\xc0\xaf")], [], fail=1007, id="text-overlong"),
    P([(TEXT, b"\xf4\x90\x80\x80")], [], fail=1007, id="text-above-10ffff"),
    P([(TEXT, b"\x80")], [], fail=1007, id="text-continuation-byte"),
    P([(TEXT, b"ab\xe2\x82")], [], fail=1007, id="text-truncated"),
    P([(TEXT, "ok"), (TEXT, b"\xff")], ["ok"], fail=1007, id="text-then-bad-text"),
    P([(BINARY, b"\xff\xc0")], [b"\xff\xc0"], id="binary-not-utf8"),
    P([(TEXT, b"a", False), (CONT, b"\xff", False), (CONT, b"b", True)], [], fail=1007,
      id="frag-bad-middle"),
    P([(TEXT, b"a", False), (CONT, b"\xe2\x82", True)], [], fail=1007, id="frag-truncated-end"),
    P([(TEXT, b"\xed", False), (CONT, b"\xa0\x80", True)], [], fail=1007,
      id="frag-split-surrogate"),
    P([(BINARY, b"\xff", False), (CONT, b"\xfe", True)], [b"\xff\xfe"], id="frag-binary-not-utf8"),
    # Closing handshake (RFC 6455 §5.5.1, §7.4).
    P([(CLOSE, b"")], [Close(1005, "")], [(CLOSE, close_payload(1000))], id="close-empty"),
    P([(CLOSE, b"\x03")], [], fail=1002, id="close-1-byte"),
    *[P([(CLOSE, close_payload(code))], [Close(code, "")], [(CLOSE, close_payload(code))],
        id=f"close-{code}") for code in VALID_CODES],
    *[P([(CLOSE, close_payload(code))], [], fail=1002, id=f"close-invalid-{code}")
      for code in INVALID_CODES],
    P([(CLOSE, close_payload(1001, "bye ✓".encode()))], [Close(1001, "bye ✓")],
      [(CLOSE, close_payload(1001))], id="close-reason"),
    P([(CLOSE, close_payload(1000, b"x" * 123))], [Close(1000, "x" * 123)],
      [(CLOSE, close_payload(1000))], id="close-reason-123"),
    P([(CLOSE, close_payload(1000, b"x" * 124))], [], fail=1002, id="close-reason-124"),
    P([(CLOSE, close_payload(1000, b"\xce\xba\xed\xa0\x80"))], [], fail=1007,
      id="close-reason-invalid-utf8"),
    P([(CLOSE, close_payload(1000, b"ok\xe2\x82"))], [], fail=1007, id="close-reason-truncated"),
    P([(CLOSE, close_payload(1000)), (TEXT, "after")], [Close(1000, "")],
      [(CLOSE, close_payload(1000))], id="data-after-close-ignored"),
    P([(CLOSE, close_payload(1000)), (PING, b"p")], [Close(1000, "")],
      [(CLOSE, close_payload(1000))], id="ping-after-close-ignored"),
    P([(CLOSE, close_payload(1000)), (5, b"")], [Close(1000, "")],
      [(CLOSE, close_payload(1000))], id="bad-frame-after-close-ignored"),
    P([(TEXT, "a", False), (CLOSE, close_payload(1000))], [Close(1000, "")],
      [(CLOSE, close_payload(1000))], id="close-inside-fragmented"),
    P([(TEXT, "a"), (PING, b"p"), (CLOSE, b"")], ["a", Ping(b"p"), Close(1005, "")],
      [(PONG, b"p"), (CLOSE, close_payload(1000))], id="text-ping-close"),
]


@pytest.mark.parametrize("frames, events, replies, fail", CASES)
def test_wire(codec, side, chunking, frames, events, replies, fail):
    check(codec, side, chunking, frames, events, replies, fail)


def test_close_received_state(codec, side):
    conn = check(codec, side, "whole", [(CLOSE, close_payload(4000, b"done"))], [Close(4000, "done")],
                 [(CLOSE, close_payload(4000))])
    assert conn.state is State.CLOSED
    assert conn.close_received == Close(4000, "done")
    assert conn.close_sent == Close(4000, "")
    assert (conn.close_code, conn.close_reason) == (4000, "done")
    with pytest.raises(ConnectionClosedError) as info:
        conn.send_text("x")
    assert (info.value.code, info.value.reason) == (4000, "done")
    assert conn.send_close() == b""


def test_close_without_code_record(codec, side):
    conn = check(codec, side, "whole", [(CLOSE, b"")], [Close(1005, "")], [(CLOSE, close_payload(1000))])
    assert (conn.close_code, conn.close_reason) == (1005, "")


def test_failure_reason_sent(codec, side):
    conn, events, sent = run(codec, side, "whole", [(5, b"")])
    assert sent == [(CLOSE, close_payload(1002, b"reserved opcode 5"))]
    assert type(conn.failed) is ProtocolError
    assert (conn.failed.code, conn.failed.reason) == (1002, "reserved opcode 5")
    assert (conn.close_code, conn.close_reason) == (1002, "reserved opcode 5")
    assert conn.close_received is None


# -- message size limit (1009) ------------------------------------------------


@pytest.mark.parametrize(
    "frames, events, fail",
    [
        pytest.param([(BINARY, bytes(1000))], [bytes(1000)], None, id="one-frame-at-limit"),
        pytest.param([(BINARY, bytes(1001))], [], 1009, id="one-frame-over"),
        pytest.param([(TEXT, "x" * 1001)], [], 1009, id="one-text-frame-over"),
        pytest.param([(BINARY, bytes(500), False), (CONT, bytes(500), True)], [bytes(1000)], None,
                     id="fragments-at-limit"),
        pytest.param([(BINARY, bytes(500), False), (CONT, bytes(501), True)], [], 1009,
                     id="fragments-over"),
        pytest.param([(TEXT, "x" * 400, False), (PING, b"p"), (CONT, "y" * 400, False),
                      (CONT, "z" * 201, True)], [Ping(b"p")], 1009, id="three-fragments-over"),
        pytest.param([(BINARY, bytes(1000), False), (CONT, b"", False), (PING, b"x" * 125),
                      (CONT, b"", True)], [Ping(b"x" * 125), bytes(1000)], None,
                     id="ping-at-full-message"),
        pytest.param([(BINARY, b"", False)] + [(CONT, bytes(100), False)] * 10 + [(CONT, b"x", True)],
                     [], 1009, id="many-fragments-over"),
    ],
)
def test_max_message_size(codec, side, chunking, frames, events, fail):
    replies = [(PONG, e.data) for e in events if isinstance(e, Ping)]
    check(codec, side, chunking, frames, events, replies, fail, max_message_size=1000)


def test_too_big_header_fails_before_payload(codec, side):
    # The header alone says the frame is too big: fail before its payload.
    conn = get_connection_class(codec)(side, codec=codec, max_message_size=1000)
    data = peer_frame(codec, side, BINARY, bytes(70000))
    header = data[: 10 + (4 if side is Side.SERVER else 0)]
    assert conn.receive_data(header) == []
    assert isinstance(conn.failed, PayloadTooBig)
    assert written(codec, side, conn.data_to_send())[0][1][:2] == close_payload(1009)


def test_too_big_fragment_header_fails_before_payload(codec, side):
    conn = get_connection_class(codec)(side, codec=codec, max_message_size=1000)
    assert conn.receive_data(peer_frame(codec, side, BINARY, bytes(600), fin=False)) == []
    data = peer_frame(codec, side, CONT, bytes(500))
    assert conn.receive_data(data[:4]) == []
    assert isinstance(conn.failed, PayloadTooBig)
    # Once the message is over, the whole limit applies again.
    conn = get_connection_class(codec)(side, codec=codec, max_message_size=1000)
    conn.receive_data(peer_frame(codec, side, BINARY, bytes(600), fin=False))
    conn.receive_data(peer_frame(codec, side, CONT, bytes(400)))
    assert conn.receive_data(peer_frame(codec, side, TEXT, "x" * 1000)) == ["x" * 1000]
    assert conn.failed is None


def test_small_message_limit_keeps_control_frames(codec, side, chunking):
    # A limit below 125 bytes applies to messages, never to control frames.
    frames = [(PING, b"p" * 125), (TEXT, "x" * 10), (TEXT, "y" * 11)]
    check(codec, side, chunking, frames, [Ping(b"p" * 125), "x" * 10], [(PONG, b"p" * 125)], 1009,
          max_message_size=10)


def test_fragments_dropped_after_failure(codec, side):
    conn = get_connection_class(codec)(side, codec=codec, max_message_size=1000)
    conn.receive_data(peer_frame(codec, side, BINARY, bytes(900), fin=False))
    conn.receive_data(peer_frame(codec, side, CONT, bytes(200), fin=False))
    assert conn.failed.code == 1009
    assert conn._frag_buf is None and conn._frag_size == 0  # memory released


# -- fragments: bounded memory and count (issue 11, item 2) --------------------


def _fragmented_wire(codec, side, first, parts, last=b"", op=BINARY):
    """The wire bytes of one message: ``first``, then ``parts`` (bytes, a
    payload per continuation frame), then a last frame carrying ``last``."""
    one = {p: peer_frame(codec, side, CONT, p, fin=False) for p in set(parts)}
    return b"".join(
        [peer_frame(codec, side, op, first, fin=False)]
        + [one[p] for p in parts]
        + [peer_frame(codec, side, CONT, last, fin=True)]
    )


def _feed_traced(conn, data, chunk=4096):
    """Feed ``data`` in reads of ``chunk`` bytes (as an I/O adapter does)
    until the connection fails; return (events, tracemalloc peak)."""
    import tracemalloc

    events = []
    view = memoryview(data)
    tracemalloc.start()
    try:
        for pos in range(0, len(data), chunk):
            events += conn.receive_data(view[pos : pos + chunk])
            if conn.failed is not None:
                break
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return events, peak


def test_fragment_count_limit_default(codec, side):
    # max(1024, max_message_size // 64) frames per message: a message at the
    # limit in 64-byte fragments passes, one frame more fails with 1009.
    assert get_connection_class(codec)(side, codec=codec).max_fragments == 2**18
    assert get_connection_class(codec)(side, codec=codec, max_message_size=1000).max_fragments == 1024
    size = 2**17
    conn = get_connection_class(codec)(side, codec=codec, max_message_size=size)
    assert conn.max_fragments == 2048
    data = bytes(range(64)) * (size // 64)
    chunks = [data[i : i + 64] for i in range(0, size, 64)]
    wire_ = _fragmented_wire(codec, side, chunks[0], chunks[1:-1], chunks[-1])
    assert conn.receive_data(wire_) == [data]
    assert conn.failed is None
    conn = get_connection_class(codec)(side, codec=codec, max_message_size=size)
    wire_ = _fragmented_wire(codec, side, chunks[0], chunks[1:-1] + [b""], chunks[-1])
    assert conn.receive_data(wire_) == []
    assert isinstance(conn.failed, PayloadTooBig)
    assert conn.failed.reason == "message in more than 2048 fragments"
    assert written(codec, side, conn.data_to_send())[0][1][:2] == close_payload(1009)


@pytest.mark.parametrize("kind", ["text", "binary"])
def test_empty_continuation_frames_are_limited(codec, side, kind):
    # Issue 11: 35 M empty continuation frames grew one connection to 305 MB
    # and it stayed OPEN. Now: 1009 at frame max_fragments + 1, memory flat.
    conn = get_connection_class(codec)(side, codec=codec, max_message_size=2**16)
    op = TEXT if kind == "text" else BINARY
    data = _fragmented_wire(codec, side, b"x", [b""] * 100_000, op=op)
    events, peak = _feed_traced(conn, data)
    assert events == []
    assert conn.failed is not None and conn.failed.code == 1009, conn.failed
    assert conn.failed.reason == "message in more than 1024 fragments"
    assert conn._frag_buf is None  # released
    assert peak < 2**18, peak


def test_one_byte_fragments_hold_their_payload_only(codec, side):
    # Issue 11: 1-byte fragments under a 16 MiB limit took 937 MB, an object
    # per fragment. Now one bytearray holds the payload: memory in progress
    # is about the message's size, however it is cut up (here 16,384
    # fragments, the most a 1 MiB limit allows).
    size = 2**14
    conn = get_connection_class(codec)(side, codec=codec, max_message_size=2**20)
    data = _fragmented_wire(codec, side, b"a", [b"b"] * (size - 2), b"c")
    events, peak = _feed_traced(conn, data)
    assert events == [b"a" + b"b" * (size - 2) + b"c"]
    assert conn.failed is None
    # The message (16 KiB, twice at the end: the buffer and the bytes
    # returned) and one read's frames (4 KiB of 7-byte frames: ~600 objects).
    assert peak < 200_000, peak


def test_fragmented_text_still_fails_fast(codec, side):
    # One bytearray for the message does not delay the UTF-8 check: the
    # fragment with the bad byte fails the connection.
    conn = get_connection_class(codec)(side, codec=codec)
    conn.receive_data(peer_frame(codec, side, TEXT, "é".encode()[:1], fin=False))
    conn.receive_data(peer_frame(codec, side, CONT, b"\xa9", fin=False))
    assert conn.failed is None
    conn.receive_data(peer_frame(codec, side, CONT, b"ok\xff", fin=False))
    assert isinstance(conn.failed, InvalidUTF8)


def test_max_fragments_setting(codec, side):
    conn = get_connection_class(codec)(side, codec=codec, max_fragments=3)
    data = _fragmented_wire(codec, side, b"a", [b"b"], b"c")
    assert conn.receive_data(data) == [b"abc"]
    assert conn.receive_data(_fragmented_wire(codec, side, b"a", [b"b", b"c"], b"d")) == []
    assert conn.failed.reason == "message in more than 3 fragments"
    for bad in (0, -1, 1.5, "3"):
        with pytest.raises(ValueError):
            get_connection_class(codec)(side, codec=codec, max_fragments=bad)


def _feed_rss(conn, data, chunk=65536):
    """Feed ``data`` in reads of ``chunk`` bytes until the connection
    fails; return (events, growth of the process's peak RSS). Linux only:
    tracemalloc would make the millions of frames take many minutes."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := current RSS

    def hwm():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))

    before = hwm()
    events = []
    view = memoryview(data)
    for pos in range(0, len(data), chunk):
        events += conn.receive_data(view[pos : pos + chunk])
        if conn.failed is not None:
            break
    return events, hwm() - before


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="Linux peak-RSS reset")
def test_one_byte_fragments_16_mib(codec):
    # The big-number version: a 16 MiB message in 1-byte fragments, with the
    # count limit lifted, holds about the message (plus one read's frames).
    # (4 MiB on the twin: 16 M frames through its Python parser take minutes.)
    size = 16 * 2**20 if codec.__name__.endswith("_frame") else 4 * 2**20
    conn = get_connection_class(codec)(Side.CLIENT, codec=codec, max_fragments=size)
    data = _fragmented_wire(codec, Side.CLIENT, b"a", [b"b"] * (size - 2), b"c")
    events, growth = _feed_rss(conn, data)
    assert conn.failed is None and len(events) == 1 and len(events[0]) == size
    # the bytearray (with its slack) and the bytes handed over; a list of
    # 16 M bytes objects took ~900 MB
    assert growth < 3 * size + 16 * 2**20, growth


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="Linux peak-RSS reset")
def test_millions_of_empty_continuation_frames(codec):
    # Default limits: 1009 after 262,144 frames; nothing held meanwhile.
    conn = get_connection_class(codec)(Side.SERVER, codec=codec)
    data = _fragmented_wire(codec, Side.SERVER, b"x", [b""] * 2_000_000)
    events, growth = _feed_rss(conn, data)
    assert conn.failed.code == 1009 and events == []
    assert conn.failed.reason == "message in more than 262144 fragments"
    assert growth < 16 * 2**20, growth


# -- UTF-8: fail fast, in the fragment where the bad byte arrives --------------

FAIL_FAST = [
    # (fragments, index of the fragment that must fail)
    ([b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", b"\xf4\x90\x80\x80", b"edited"], 1),
    ([b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4", b"\x90\x80\x80", b"edited"], 1),
    ([b"hello", b"\xed", b"\xa0\x80", b"x"], 2),
    ([b"\xed\xa0", b"\x80", b"x"], 0),
    ([b"ok", b"", b"\xc0\xaf", b"x"], 2),
    ([b"\xe0", b"\x80", b"x"], 1),
    ([b"\xf0\x90", b"\x80", b"\x80", b"x\xff"], 3),
    ([b"abc", b"\xe2\x82", b""], 2),  # truncated at the end of the message
    ([b"\xf5", b"x"], 0),
    ([b"a", b"b", b"\x80"], 2),
]


@pytest.mark.parametrize("fragments, bad", FAIL_FAST)
def test_utf8_fail_fast(codec, side, fragments, bad):
    conn = get_connection_class(codec)(side, codec=codec)
    last = len(fragments) - 1
    for i, fragment in enumerate(fragments):
        frame = peer_frame(codec, side, TEXT if i == 0 else CONT, fragment, fin=i == last)
        assert conn.receive_data(frame) == []
        if i < bad:
            assert conn.failed is None, f"failed in fragment {i}, expected {bad}"
        else:
            assert isinstance(conn.failed, InvalidUTF8), f"not failed in fragment {bad}"
            assert written(codec, side, conn.data_to_send())[0][1][:2] == close_payload(1007)
            return
    pytest.fail("unreachable")


# -- sending ----------------------------------------------------------------------


def test_send_server_unmasked(codec):
    conn = get_connection_class(codec)(Side.SERVER, codec=codec)
    assert conn.send_text("héllo") == codec.build_frame(TEXT, "héllo".encode())
    assert conn.send_binary(b"\x00" * 200) == codec.build_frame(BINARY, b"\x00" * 200)
    assert conn.send_binary(bytearray(b"ab")) == codec.build_frame(BINARY, b"ab")
    assert conn.send_binary(memoryview(b"abc")) == codec.build_frame(BINARY, b"abc")
    assert conn.send_ping(b"p") == codec.build_frame(PING, b"p")
    assert conn.send_pong(b"q") == codec.build_frame(PONG, b"q")
    assert conn.send_close(1001, "bye") == codec.build_frame(CLOSE, close_payload(1001, b"bye"))


def test_send_client_masked(codec):
    conn = get_connection_class(codec)(Side.CLIENT, codec=codec)
    sizes = [0, 1, 125, 126, 65536]
    data = b"".join(conn.send_binary(bytes([n % 256]) * n) for n in sizes)
    data += conn.send_text("é" * 3)
    data += conn.send_ping(b"p") + conn.send_pong(b"") + conn.send_close()
    sent = written(codec, Side.CLIENT, data)  # a server's parser demands masks
    assert sent == [(BINARY, bytes([n % 256]) * n) for n in sizes] + [
        (TEXT, "é".encode() * 3), (PING, b"p"), (PONG, b""), (CLOSE, close_payload(1000))]


def test_client_mask_keys_fresh(codec):
    conn = get_connection_class(codec)(Side.CLIENT, codec=codec)
    keys = {conn.send_binary(b"x")[2:6] for _ in range(3000)}  # crosses the 4 KiB pool
    assert len(keys) > 2990


def test_send_after_close_sent(codec, side):
    conn = get_connection_class(codec)(side, codec=codec)
    assert conn.state is State.OPEN and conn.close_code is None
    data = conn.send_close(1000, "bye")
    assert written(codec, side, data) == [(CLOSE, close_payload(1000, b"bye"))]
    assert conn.state is State.CLOSING
    assert conn.close_sent == Close(1000, "bye")
    assert conn.close_code is None
    for send, arg in ((conn.send_text, "x"), (conn.send_binary, b"x")):
        with pytest.raises(ConnectionClosedOK) as info:
            send(arg)
        assert info.value.code == 1000
    assert conn.send_close() == b""
    # Control frames may follow our close (RFC 6455 §5.5.1 forbids data frames).
    assert written(codec, side, conn.send_ping(b"a") + conn.send_pong(b"b")) == [
        (PING, b"a"), (PONG, b"b")]
    # The peer may still send messages, and its pings are answered (§5.5.2).
    data = wire(codec, side, [(TEXT, "late"), (PING, b"p"), (CLOSE, close_payload(1000))])
    assert conn.receive_data(data) == ["late", Ping(b"p"), Close(1000, "")]
    assert written(codec, side, conn.data_to_send()) == [(PONG, b"p")]
    assert conn.state is State.CLOSED
    assert (conn.close_code, conn.close_reason) == (1000, "")
    for send in (conn.send_ping, conn.send_pong):
        with pytest.raises(ConnectionClosedOK):
            send(b"x")


def test_send_close_codes(codec):
    conn = get_connection_class(codec)(Side.SERVER, codec=codec)
    assert conn.send_close(1005) == codec.build_frame(CLOSE, b"")  # no status
    for code in (999, 1004, 1006, 1015, 2000, 5000):
        with pytest.raises(ValueError):
            get_connection_class(codec)(Side.SERVER, codec=codec).send_close(code)
    conn = get_connection_class(codec)(Side.SERVER, codec=codec)
    with pytest.raises(ValueError):
        conn.send_close(1015)
    assert conn.state is State.OPEN  # nothing changed


def test_send_close_going_away_error_class(codec):
    conn = get_connection_class(codec)(Side.SERVER, codec=codec)
    conn.send_close(4001)
    with pytest.raises(ConnectionClosedError):
        conn.send_text("x")


def test_send_control_too_long(codec, side):
    conn = get_connection_class(codec)(side, codec=codec)
    with pytest.raises(ValueError):
        conn.send_ping(b"x" * 126)
    with pytest.raises(ValueError):
        conn.send_pong(b"x" * 126)
    assert written(codec, side, conn.send_ping(b"x" * 125)) == [(PING, b"x" * 125)]


def test_queued_replies_come_first(codec, side):
    # A pong queued by receive_data is written before the next message.
    conn = get_connection_class(codec)(side, codec=codec)
    assert conn.receive_data(peer_frame(codec, side, PING, b"p")) == [Ping(b"p")]
    data = conn.send_text("after")
    assert written(codec, side, data) == [(PONG, b"p"), (TEXT, b"after")]
    assert conn.data_to_send() == b""


def test_receive_eof(codec, side):
    conn = get_connection_class(codec)(side, codec=codec)
    conn.receive_data(peer_frame(codec, side, TEXT, "a", fin=False))
    conn.receive_eof()
    assert conn.state is State.CLOSED
    assert conn.close_received is None and conn.failed is None
    assert (conn.close_code, conn.close_reason) == (1006, "")
    assert conn.receive_data(peer_frame(codec, side, CONT, "b")) == []
    with pytest.raises(ConnectionClosedError) as info:
        conn.send_text("x")
    assert info.value.code == 1006
    assert conn.send_close() == b""


def test_receive_eof_after_close(codec, side):
    conn = get_connection_class(codec)(side, codec=codec)
    conn.receive_data(peer_frame(codec, side, CLOSE, close_payload(1001)))
    conn.receive_eof()
    assert (conn.close_code, conn.state) == (1001, State.CLOSED)


def test_fail(codec, side):
    conn = get_connection_class(codec)(side, codec=codec)
    conn.receive_data(peer_frame(codec, side, PING, b"p"))
    data = conn.fail(1011, "é" * 100)  # 200 bytes: cut to 61 characters (122 bytes)
    sent = written(codec, side, data)
    assert sent == [(PONG, b"p"), (CLOSE, close_payload(1011, "é".encode() * 61))]
    assert conn.state is State.CLOSED
    assert conn.failed.code == 1011
    assert conn.close_sent == Close(1011, "é" * 61)
    assert (conn.close_code, conn.close_reason) == (1011, "é" * 100)
    assert conn.receive_data(peer_frame(codec, side, TEXT, "x")) == []
    assert conn.fail(1002, "again") == b""
    assert conn.failed.code == 1011
    with pytest.raises(ConnectionClosedError):
        conn.send_binary(b"x")


def test_fail_after_close_sent(codec, side):
    conn = get_connection_class(codec)(side, codec=codec)
    conn.send_close()
    assert conn.fail(1002, "x") == b""
    assert conn.state is State.CLOSED and conn.failed.code == 1002


@pytest.mark.parametrize("name", ["connection", "_connection_py", "_events"])
def test_no_asyncio_or_socket(name):
    import ast
    import importlib

    module = importlib.import_module(f"wsfast.{name}")
    tree = ast.parse(open(module.__file__, encoding="utf-8").read())
    names = {alias.name.split(".")[0] for node in ast.walk(tree)
             if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
    names |= {node.module.split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module}
    assert not names & {"asyncio", "socket", "selectors"}


# -- the two builds of Connection -------------------------------------------------


def test_each_codec_gets_its_build_of_connection(codec):
    """The pure-Python codec goes with the pure-Python Connection (the source
    as it is), the compiled codec with the compiled one (the same source,
    built by Cython): the tests of both codecs run both builds."""
    import wsfast._connection_py
    from wsfast import connection as module

    cls = get_connection_class(codec)
    if codec.__name__ == "wsfast._frame_py":
        assert cls is wsfast._connection_py.Connection is module.AVAILABLE["python"]
        assert type(cls.receive_data).__name__ == "function"  # not compiled
    else:
        assert cls is module.Connection
        if module.IMPLEMENTATION == "cython":
            import wsfast._connection

            assert issubclass(cls, wsfast._connection.Connection)
            assert type(cls.receive_data).__name__ != "function"  # compiled
    assert cls.__name__ == "Connection"
    import inspect

    assert inspect.signature(cls) == inspect.signature(module.AVAILABLE["python"])
    assert "max_fragments" in str(inspect.signature(cls))
    conn = cls(Side.SERVER, codec=codec)
    assert conn.codec is codec and isinstance(conn, cls)


def test_the_builds_share_their_events(codec):
    """Both builds make the same event classes (an adapter tests ``type(e) is
    Ping``), from one module."""
    import wsfast._connection_py
    from wsfast import _events

    for cls in (Ping, Pong, Close, Side, State):
        assert cls is getattr(_events, cls.__name__) is getattr(wsfast._connection_py, cls.__name__)
    conn = get_connection_class(codec)(Side.CLIENT, codec=codec)
    assert conn.state is State.OPEN
    events = conn.receive_data(codec.build_frame(PING, b"p") + codec.build_frame(CLOSE, b"\x03\xe8"))
    assert [type(e) for e in events] == [Ping, Close]
    assert conn.state is State.CLOSED


def test_a_connection_class_can_be_patched_and_subclassed(codec):
    """What wsfast.tornado and the tests do with the class, on both builds:
    override a method that the class's own code calls (``_fail``), reach
    the original through ``super()``, patch a method on the class, keep
    ``__slots__`` (no per-instance dict)."""
    base = get_connection_class(codec)
    seen = []

    class Sub(base):
        __slots__ = ()

        def _fail(self, exc):
            seen.append(exc.code)
            super()._fail(exc)

    conn = Sub(Side.SERVER, codec=codec)
    assert not hasattr(conn, "__dict__")
    conn.receive_data(b"\x8f\x80" + MASK)  # opcode 15: reserved
    assert seen == [1002] and conn.state is State.CLOSED and conn.failed.code == 1002
    calls = []
    original = base.send_text

    def counting(self, text, compress=True):
        calls.append(text)
        return original(self, text, compress)

    patched = type("Patched", (base,), {"__slots__": ()})
    patched.send_text = counting  # a class made at run time, patched
    assert written(codec, Side.SERVER, patched(Side.SERVER, codec=codec).send_text("hi")) == [(TEXT, b"hi")]
    assert calls == ["hi"]


def test_connection_build_selection_by_environment(tmp_path):
    """WSFAST_NO_EXTENSIONS=1 picks the pure-Python build (with the pure
    codec); without it the compiled one when it is importable;
    WSFAST_REQUIRE_EXTENSIONS=1 turns a missing one into an ImportError."""
    import subprocess
    import sys

    from wsfast import connection as module

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    probe = ("import wsfast.connection as c, wsfast.codec as k; "
             "print(c.IMPLEMENTATION, k.IMPLEMENTATION, c.Connection.__module__)")

    def run_probe(**env):
        environ = {k: v for k, v in os.environ.items() if not k.startswith("WSFAST_")}
        environ.update(env)
        return subprocess.run([sys.executable, "-c", probe], cwd=root, env=environ,
                              capture_output=True, text=True, timeout=60)

    out = run_probe(WSFAST_NO_EXTENSIONS="1")
    assert out.stdout.split() == ["python", "python", "wsfast._connection_py"], out.stderr
    if "cython" not in module.AVAILABLE:
        pytest.skip("the compiled Connection is not built (python setup.py build_ext --inplace)")
    out = run_probe()
    assert out.stdout.split() == ["cython", "cython", "wsfast.connection"], out.stderr
    # a build without the compiled Connection: a copy of the package without it
    import shutil

    package = os.path.dirname(module.__file__)
    copy = tmp_path / "wsfast"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("_connection.*.so", "_connection.*.pyd",
                                                                 "__pycache__"))
    probe_copy = dict(cwd=str(tmp_path))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("WSFAST_")}
    # An editable install (CI's `pip install -e`) has an import hook that finds
    # the copy's missing submodule in the checkout: take it out for the probe.
    probe = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path "
             "if '__editable__' not in getattr(f, '__module__', '')]; " + probe)
    out = subprocess.run([sys.executable, "-c", probe], env=environ, capture_output=True, text=True,
                         timeout=60, **probe_copy)
    assert out.stdout.split() == ["python", "cython", "wsfast._connection_py"], out.stderr
    out = subprocess.run([sys.executable, "-c", probe], env=dict(environ, WSFAST_REQUIRE_EXTENSIONS="1"),
                         capture_output=True, text=True, timeout=60, **probe_copy)
    assert out.returncode != 0 and "wsfast._connection" in out.stderr


def test_codec_by_name():
    from wsfast import codec as codec_module

    conn = Connection(Side.SERVER, codec="python")
    assert conn.codec is codec_module.AVAILABLE["python"]
    assert Connection(Side.SERVER).codec is codec_module.get_codec()
    with pytest.raises(TypeError):
        Connection("server")


# -- Close helper -----------------------------------------------------------------


def test_close_parse_serialize():
    assert Close.parse(b"") == Close(1005, "")
    assert Close.parse(close_payload(1000, b"ok")) == Close(1000, "ok")
    assert Close(1000, "ok").serialize() == close_payload(1000, b"ok")
    assert Close(1005).serialize() == b""
    assert Close(3000, "x" * 200).serialize() == close_payload(3000, b"x" * 123)
    # Truncation never splits a character: "€" is 3 bytes, 41 of them = 123.
    assert Close(1000, "€" * 50).serialize() == close_payload(1000, "€".encode() * 41)
    assert Close(1000, "a" + "€" * 50).serialize() == close_payload(1000, b"a" + "€".encode() * 40)
    with pytest.raises(ProtocolError) as info:
        Close.parse(b"\x03")
    assert info.value.code == 1002
    with pytest.raises(InvalidUTF8):
        Close.parse(close_payload(1000, b"\xff"))
    for code in INVALID_CODES:
        if code != 1005:  # 1005 serializes as the empty payload
            with pytest.raises(ValueError):
                Close(code).serialize()
        with pytest.raises(ProtocolError):
            Close.parse(close_payload(code))
    for code in VALID_CODES:
        assert Close.parse(Close(code, "r").serialize()) == Close(code, "r")
    assert repr(Close(1000, "x")) == "Close(1000, 'x')"
    assert repr(Ping(b"x")) == "Ping(b'x')" and repr(Pong(b"")) == "Pong(b'')"
    assert Ping(b"x") != Pong(b"x")


# -- extension hook -----------------------------------------------------------------


class Reverser:
    """A toy extension using RSV1: a message with RSV1 has its payload
    reversed frame by frame."""

    uses_rsv1 = True

    def __init__(self, codec):
        self.codec = codec
        self.decoding = False

    def decode(self, frame, *, max_size):
        if frame.opcode != CONT:
            self.decoding = frame.rsv1
        if not self.decoding:
            return frame
        payload = frame.payload[::-1]
        if len(payload) > max_size:
            raise PayloadTooBig("too big")
        return self.codec.Frame(frame.opcode, payload, frame.fin, False)

    def encode(self, frame):
        return self.codec.Frame(frame.opcode, frame.payload[::-1], frame.fin, True)


def test_extension_hook(codec, side):
    ext = Reverser(codec)
    conn = get_connection_class(codec)(side, codec=codec, extensions=[ext], max_message_size=100)
    assert conn._parser.allow_rsv1
    data = wire(codec, side, [(TEXT, "olleh", True, True), (BINARY, b"plain"),
                              (TEXT, "ba", False, True), (PING, b"p"), (CONT, "dc", True)])
    assert conn.receive_data(data) == ["hello", b"plain", Ping(b"p"), "abcd"]
    assert written(codec, side, conn.data_to_send()) == [(PONG, b"p")]  # no RSV1 on control frames
    parser = codec.FrameParser(mask_required=side is Side.CLIENT, allow_rsv1=True)
    frames = parser.feed(conn.send_text("abc") + conn.send_binary(b"xy"))
    assert [(f.opcode, f.rsv1, f.payload) for f in frames] == [(TEXT, True, b"cba"), (BINARY, True, b"yx")]
    assert conn.receive_data(peer_frame(codec, side, BINARY, bytes(101), rsv1=True)) == []
    assert conn.failed.code == 1009


def test_no_extension_rejects_rsv1(codec, side):
    conn = get_connection_class(codec)(side, codec=codec)
    assert not conn._parser.allow_rsv1


# -- property tests ---------------------------------------------------------------

messages = st.lists(
    st.tuples(
        st.one_of(st.text(max_size=300), st.binary(max_size=300)),
        st.lists(st.integers(0, 300), max_size=4),  # fragment cut points
        st.lists(st.binary(max_size=125), max_size=2),  # pings after the first fragment
    ),
    max_size=6,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(msgs=messages, cuts=st.lists(st.integers(1, 400), max_size=30), client=st.booleans())
def test_random_fragmentation_and_chunking(codec, msgs, cuts, client):
    side = Side.CLIENT if client else Side.SERVER
    data, expected, pongs = b"", [], []
    for message, points, pings in msgs:
        payload = message.encode() if isinstance(message, str) else message
        bounds = sorted({min(p, len(payload)) for p in points} | {0, len(payload)})
        pieces = [payload[a:b] for a, b in zip(bounds, bounds[1:])] or [b""]
        for i, piece in enumerate(pieces):
            op = CONT if i else (TEXT if isinstance(message, str) else BINARY)
            data += peer_frame(codec, side, op, piece, fin=i == len(pieces) - 1)
            if i == 0:
                if len(pieces) == 1:  # the pings follow the message
                    expected.append(message)
                for ping in pings:
                    data += peer_frame(codec, side, PING, ping)
                    expected.append(Ping(ping))
                    pongs.append((PONG, ping))
        if len(pieces) > 1:
            expected.append(message)
    conn = get_connection_class(codec)(side, codec=codec)
    events, out, pos = [], b"", 0
    for cut in cuts + [len(data)]:
        events += conn.receive_data(data[pos : pos + cut])
        out += conn.data_to_send()
        pos += cut
    events += conn.receive_data(data[pos:])
    assert conn.failed is None
    assert events == expected
    assert written(codec, side, out + conn.data_to_send()) == pongs


def _valid_prefix(data):
    """Whether ``data`` can begin a valid UTF-8 string (a reference for the
    fail-fast rule: at most 3 more bytes complete any valid prefix)."""
    for tail in (b"", b"\x80", b"\x90", b"\xa0"):
        for more in (b"", b"\x80", b"\x80\x80"):
            try:
                (data + tail + more).decode("utf-8")
                return True
            except UnicodeDecodeError:
                pass
    return False


utf8ish = st.lists(
    st.one_of(
        st.text(max_size=4).map(lambda s: s.encode()),
        st.sampled_from([b"\x80", b"\xbf", b"\xc0", b"\xc1", b"\xc2", b"\xe0", b"\xe0\x9f", b"\xe0\xa0",
                         b"\xed", b"\xed\x9f", b"\xed\xa0", b"\xef\xbf", b"\xf0", b"\xf0\x8f",
                         b"\xf0\x90", b"\xf4", b"\xf4\x8f", b"\xf4\x90", b"\xf5", b"\xff"]),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fragments=utf8ish)
def test_utf8_fail_fast_property(codec, fragments):
    # The connection fails in the first fragment after which the text so far
    # cannot begin valid UTF-8 (or, on the last one, is not valid UTF-8).
    conn = get_connection_class(codec)(Side.CLIENT, codec=codec)
    so_far = b""
    last = len(fragments) - 1
    for i, fragment in enumerate(fragments):
        so_far += fragment
        events = conn.receive_data(peer_frame(codec, Side.CLIENT, TEXT if i == 0 else CONT,
                                              fragment, fin=i == last))
        if i == last:
            try:
                expected = so_far.decode("utf-8")
            except UnicodeDecodeError:
                expected = None
            if expected is None:
                assert events == [] and conn.failed.code == 1007
            else:
                assert events == [expected] and conn.failed is None
            return
        if _valid_prefix(so_far):
            assert conn.failed is None, (i, so_far)
        else:
            assert conn.failed is not None and conn.failed.code == 1007, (i, so_far)
            return


# -- replies to messages go out before the close of the same read --------------


@pytest.mark.parametrize(
    "tail,code",
    [
        (lambda c, s: peer_frame(c, s, CLOSE, close_payload(1000)), 1000),
        (lambda c, s: peer_frame(c, s, CLOSE), 1000),
        (lambda c, s: bytes([0x85, 0x80 if s is Side.SERVER else 0]) + (MASK if s is Side.SERVER else b""), 1002),
        (lambda c, s: peer_frame(c, s, TEXT, b"\xff"), 1007),
        (lambda c, s: peer_frame(c, s, CONT, b"x"), 1002),
    ],
    ids=["close", "empty-close", "reserved-opcode", "bad-utf8", "stray-continuation"],
)
def test_echo_before_close_of_the_same_read(codec, side, tail, code):
    """A message and a close (or a violation) in one read: the application's
    reply to the message still goes out, before the close frame (RFC 6455
    §5.5.1 lets an endpoint finish its current message first)."""
    conn = get_connection_class(codec)(side, codec=codec)
    events = conn.receive_data(peer_frame(codec, side, TEXT, b"hello") + tail(codec, side))
    assert events[0] == "hello"
    assert conn.state is State.CLOSED
    echo = conn.send_text(events[0])  # allowed until data_to_send()
    out = conn.data_to_send()
    (first, second) = written(codec, side, echo + out)
    assert first == (TEXT, b"hello")
    assert second[0] == CLOSE and second[1][:2] == close_payload(code)
    with pytest.raises(ConnectionClosed):
        conn.send_text("too late")
    assert conn.data_to_send() == b""


def test_fail_returns_the_close_at_once(codec, side):
    conn = get_connection_class(codec)(side, codec=codec)
    out = conn.fail(1011, "oops")
    assert written(codec, side, out) == [(CLOSE, close_payload(1011, b"oops"))]
    with pytest.raises(ConnectionClosed):
        conn.send_text("x")


# -- fail fast on invalid UTF-8 inside one frame that is still arriving --------


@pytest.mark.parametrize("fragmented", [False, True])
def test_utf8_fail_fast_inside_a_frame(codec, side, fragmented):
    """Autobahn 6.4.3/6.4.4: one text frame arriving in chops; the chop with
    the bad byte fails the connection with 1007, before the frame ends."""
    good = "κόσμε".encode("utf-8")
    bad = b"\xf4\x90\x80\x80"  # above U+10FFFF
    payload = good + bad + b"edited" * 100
    conn = get_connection_class(codec)(side, codec=codec)
    data = b""
    if fragmented:
        data = peer_frame(codec, side, TEXT, b"ok ", fin=False)
        payload_op = CONT
    else:
        payload_op = TEXT
    data += peer_frame(codec, side, payload_op, payload)
    cut = len(data) - len(payload) + len(good)  # the header and the good part
    assert conn.receive_data(data[:cut]) == []
    assert conn.state is State.OPEN
    assert conn.receive_data(data[cut : cut + 2]) == []  # F4 90: already impossible
    assert conn.state is State.CLOSED and conn.failed.code == 1007
    assert written(codec, side, conn.data_to_send()) == [(CLOSE, close_payload(1007, conn.failed.reason.encode()))]


@pytest.mark.parametrize("chop", [1, 2, 3, 7, 64])
def test_valid_text_in_chops(codec, side, chop):
    """A valid long text frame fed in small chops is checked as it arrives and
    delivered once, whole and right."""
    text = "aé€😀 " * 500
    for fragmented in (False, True):
        conn = get_connection_class(codec)(side, codec=codec)
        if fragmented:
            data = peer_frame(codec, side, TEXT, b"", fin=False) + peer_frame(
                codec, side, CONT, text.encode("utf-8"))
        else:
            data = peer_frame(codec, side, TEXT, text.encode("utf-8"))
        events = []
        for i in range(0, len(data), chop):
            events += conn.receive_data(data[i : i + chop])
        assert events == [text] and conn.state is State.OPEN


# -- send_binary_parts: a large payload written after its header, not copied ------


@pytest.mark.parametrize("n", [0, 125, 126, 65535, 65536, 200_000])
def test_send_binary_parts_is_send_binary_without_the_copy(codec, n):
    conn = get_connection_class(codec)(Side.SERVER, codec=codec)
    payload = bytes(range(256)) * (n // 256) + bytes(n % 256)
    head, data = conn.send_binary_parts(payload)
    assert data is payload  # the same object: no copy
    assert head + data == get_connection_class(codec)(Side.SERVER, codec=codec).send_binary(payload)
    assert written(codec, Side.SERVER, head + data) == [(BINARY, payload)]


def test_send_binary_parts_after_a_queued_reply_and_the_rules(codec):
    conn = get_connection_class(codec)(Side.SERVER, codec=codec)
    conn.receive_data(peer_frame(codec, Side.SERVER, PING, b"p"))  # its pong is queued
    head, data = conn.send_binary_parts(b"x" * 70000)
    assert written(codec, Side.SERVER, head + data) == [(PONG, b"p"), (BINARY, b"x" * 70000)]
    with pytest.raises(TypeError):
        conn.send_binary_parts(bytearray(10))  # mutable: it could change once queued
    with pytest.raises(ValueError):
        get_connection_class(codec)(Side.CLIENT, codec=codec).send_binary_parts(b"x")  # a client masks
    conn.send_close()
    with pytest.raises(ConnectionClosed):
        conn.send_binary_parts(b"x")


# -- read_window / receive_window: large payloads read straight in -----------------


def test_read_window_takes_a_large_message(codec, side):
    conn = get_connection_class(codec)(side, codec=codec)
    payload = os.urandom(300_000)
    data = peer_frame(codec, side, BINARY, payload) + peer_frame(codec, side, PING, b"p")
    assert conn.in_frame is False and conn.read_window() is None
    assert conn.receive_data(data[:1000]) == []
    assert conn.in_frame is True  # the hint an I/O adapter tests first
    pos, events, windows = 1000, [], 0
    while pos < len(data):
        win = conn.read_window(64 * 1024)
        if win is None:  # the frame's last bytes (fewer than 64 KiB), and the ping
            assert conn.in_frame is False  # until a read leaves a frame unfinished again
            events += conn.receive_data(data[pos:])
            break
        assert conn.in_frame is True
        n = min(len(win), 100_000)
        win[:n] = data[pos : pos + n]
        events += conn.receive_window(n)
        pos += n
        windows += 1
    assert windows >= 2
    assert events == [payload, Ping(b"p")]
    assert written(codec, side, conn.data_to_send()) == [(PONG, b"p")]


def test_receive_window_fails_fast_on_invalid_utf8(codec, side):
    """RFC 6455 §8.1: the read that brings the bad byte fails the connection."""
    conn = get_connection_class(codec)(side, codec=codec)
    text = ("ab" * 100_000).encode()
    bad = text[:150_000] + b"\xff" + text[150_001:]
    data = peer_frame(codec, side, TEXT, bad)
    conn.receive_data(data[:2000])
    win = conn.read_window()
    n = 140_000 - 2000
    win[:n] = data[2000 : 2000 + n]
    assert conn.receive_window(n) == [] and conn.failed is None
    win = conn.read_window()
    win[:20_000] = data[140_000:160_000]
    assert conn.receive_window(20_000) == []
    assert isinstance(conn.failed, InvalidUTF8) and conn.failed.code == 1007
    assert written(codec, side, conn.data_to_send())[0][1][:2] == close_payload(1007)
    assert conn.read_window() is None  # the input is closed


def test_read_window_respects_the_message_limit_across_fragments(codec, side):
    conn = get_connection_class(codec)(side, codec=codec, max_message_size=100_000)
    first = peer_frame(codec, side, BINARY, bytes(60_000), fin=False)
    second = peer_frame(codec, side, CONT, bytes(60_000))  # 120,000 in all: too big
    assert conn.receive_data(first + second[:20]) == []
    assert conn.read_window() is None  # the second fragment breaks the lowered limit
    conn.receive_data(second[20:30])
    assert isinstance(conn.failed, PayloadTooBig) and conn.failed.code == 1009


def test_the_adapter_reads_slots_on_both_builds():
    """The attributes the adapter reads per message are plain slots on both
    builds (the interpreter specialises those reads); every other attribute
    of the compiled build is a field of the extension type."""
    import wsfast._connection_py as source
    from wsfast import connection as module

    assert set(source.ADAPTER_SLOTS) <= set(source.Connection.__slots__)
    if "cython" not in module.AVAILABLE:
        pytest.skip("the compiled Connection is not built")
    import wsfast._connection as compiled

    cls = module.AVAILABLE["cython"]
    for name in source.Connection.__slots__:
        owner = cls if name in source.ADAPTER_SLOTS else compiled.Connection
        assert name in vars(owner), name
        assert name not in vars(compiled.Connection if owner is cls else cls), name
