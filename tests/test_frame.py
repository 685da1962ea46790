"""Frame codec tests, run on both implementations (the ``impl`` fixture).

Every wire case is fed whole, one byte at a time, and followed by the bytes of
a next frame (h11's habit). Lengths straddle the length-class and SIMD edges.
"""

import os
import random

import pytest

from wsfast.exceptions import InvalidUTF8, PayloadTooBig, ProtocolError

MASK = b"\x37\xfa\x21\x3d"
LENGTHS = [0, 1, 7, 8, 15, 16, 31, 32, 33, 63, 64, 65, 125, 126, 127, 128, 65535, 65536, 2**20]


def ref_mask(data, mask):
    """The obvious byte loop, as the reference."""
    return bytes(b ^ mask[i % 4] for i, b in enumerate(bytes(data)))


def frames_of(impl, data, chunking, **kw):
    """Feed ``data`` to a new parser in the given chunking; return the frames."""
    kw.setdefault("mask_required", True)
    parser = impl.FrameParser(**kw)
    out = []
    if chunking == "whole":
        out += parser.feed(data)
    elif chunking == "bytewise":
        for i in range(len(data)):
            out += parser.feed(data[i : i + 1])
    elif chunking == "memoryview":
        out += parser.feed(memoryview(bytearray(b"xx" + data))[2:])
    else:
        raise AssertionError(chunking)
    return out, parser


CHUNKINGS = ["whole", "bytewise", "memoryview"]


def as_tuple(frame):
    return (frame.opcode, frame.fin, frame.rsv1, frame.payload)


# -- RFC 6455 §5.7 examples ---------------------------------------------------

RFC_EXAMPLES = [
    # (wire bytes, mask_required, expected frames as tuples)
    (bytes.fromhex("810548656c6c6f"), False, [(1, True, False, b"Hello")]),
    (bytes.fromhex("818537fa213d7f9f4d5158"), True, [(1, True, False, b"Hello")]),
    (
        bytes.fromhex("010348656c") + bytes.fromhex("80026c6f"),
        False,
        [(1, False, False, b"Hel"), (0, True, False, b"lo")],
    ),
    (bytes.fromhex("890548656c6c6f"), False, [(9, True, False, b"Hello")]),
    (bytes.fromhex("8a8537fa213d7f9f4d5158"), True, [(10, True, False, b"Hello")]),
    (bytes.fromhex("827e0100") + bytes(256), False, [(2, True, False, bytes(256))]),
    (bytes.fromhex("827f0000000000010000") + bytes(65536), False, [(2, True, False, bytes(65536))]),
]


@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize("wire,mask_required,expected", RFC_EXAMPLES)
def test_rfc_examples_parse(impl, wire, mask_required, expected, chunking):
    if chunking == "bytewise" and len(wire) > 1000:
        wire_frames, _ = frames_of(impl, wire, "whole", mask_required=mask_required)
    else:
        wire_frames, _ = frames_of(impl, wire, chunking, mask_required=mask_required)
    assert [as_tuple(f) for f in wire_frames] == expected


def test_rfc_examples_build(impl):
    assert impl.build_frame(1, b"Hello") == bytes.fromhex("810548656c6c6f")
    assert impl.build_frame(1, "Hello", mask_key=MASK) == bytes.fromhex("818537fa213d7f9f4d5158")
    assert impl.build_frame(1, b"Hel", fin=False) == bytes.fromhex("010348656c")
    assert impl.build_frame(0, b"lo") == bytes.fromhex("80026c6f")
    assert impl.build_frame(9, b"Hello") == bytes.fromhex("890548656c6c6f")
    assert impl.build_frame(10, b"Hello", mask_key=MASK) == bytes.fromhex("8a8537fa213d7f9f4d5158")
    assert impl.build_frame(2, bytes(256)) == bytes.fromhex("827e0100") + bytes(256)
    assert impl.build_frame(2, bytes(65536)) == bytes.fromhex("827f0000000000010000") + bytes(65536)


# -- every length class, every chunking, followed by a next frame --------------


@pytest.mark.parametrize("masked", [True, False], ids=["client-frame", "server-frame"])
@pytest.mark.parametrize("length", LENGTHS)
def test_lengths_roundtrip(impl, length, masked):
    payload = os.urandom(length)
    key = os.urandom(4) if masked else None
    wire = impl.build_frame(2, payload, mask_key=key)
    header_len = 2 + (2 if length >= 126 else 0) + (6 if length >= 65536 else 0) + (4 if masked else 0)
    assert len(wire) == header_len + length
    nxt = impl.build_frame(9, b"next", mask_key=key)
    # whole, plus a following frame in the same buffer
    frames, parser = frames_of(impl, wire + nxt, "whole", mask_required=masked)
    assert [as_tuple(f) for f in frames] == [(2, True, False, payload), (9, True, False, b"next")]
    # the following frame split off: only the first frame comes out, the rest waits
    frames, parser = frames_of(impl, wire + nxt[:3], "whole", mask_required=masked)
    assert [as_tuple(f) for f in frames] == [(2, True, False, payload)]
    assert [as_tuple(f) for f in parser.feed(nxt[3:])] == [(9, True, False, b"next")]
    # byte by byte (the long ones in 4 KiB steps plus the header byte by byte)
    parser = impl.FrameParser(mask_required=masked)
    got = []
    if length <= 4096:
        for i in range(len(wire)):
            got += parser.feed(wire[i : i + 1])
    else:
        for i in range(header_len):
            got += parser.feed(wire[i : i + 1])
        for i in range(header_len, len(wire), 4096):
            got += parser.feed(wire[i : i + 4096])
    assert [as_tuple(f) for f in got] == [(2, True, False, payload)]


def test_many_frames_in_one_read(impl):
    frames = [impl.build_frame(1 + i % 2, os.urandom(i), mask_key=os.urandom(4)) for i in range(300)]
    got, _ = frames_of(impl, b"".join(frames), "whole")
    assert [len(f.payload) for f in got] == list(range(300))


def test_parser_does_not_keep_the_fed_buffer(impl):
    wire = impl.build_frame(2, b"abcdefgh" * 100, mask_key=MASK)
    shared = bytearray(len(wire))
    parser = impl.FrameParser(mask_required=True)
    shared[:] = wire
    assert parser.feed(memoryview(shared)[:100]) == []
    shared[:] = b"\xff" * len(shared)  # the caller reuses its buffer
    shared[: len(wire) - 100] = wire[100:]
    (frame,) = parser.feed(memoryview(shared)[: len(wire) - 100])
    assert frame.payload == b"abcdefgh" * 100


def test_sixteen_mib_frame_in_small_reads(impl):
    payload = os.urandom(16 * 2**20)
    wire = impl.build_frame(2, payload, mask_key=MASK)
    parser = impl.FrameParser(mask_required=True)
    got = []
    view = memoryview(wire)
    for i in range(0, len(wire), 65536):
        got += parser.feed(view[i : i + 65536])
    assert len(got) == 1 and got[0].payload == payload


def test_frame_flags_and_fragments(impl):
    wire = (
        impl.build_frame(1, b"a", fin=False, rsv1=True, mask_key=MASK)
        + impl.build_frame(0, b"", fin=False, mask_key=MASK)
        + impl.build_frame(9, b"p", mask_key=MASK)
        + impl.build_frame(0, b"b", mask_key=MASK)
    )
    for chunking in CHUNKINGS:
        got, _ = frames_of(impl, wire, chunking, allow_rsv1=True)
        assert [as_tuple(f) for f in got] == [
            (1, False, True, b"a"),
            (0, False, False, b""),
            (9, True, False, b"p"),
            (0, True, False, b"b"),
        ]


# -- violations: the right close code, as soon as the bytes arrive -------------


def hdr(b0, b1, rest=b""):
    return bytes([b0, b1]) + rest


BAD = [
    # (name, wire, parser kwargs, exception type, code, reason)
    *[
        (f"opcode{op}", hdr(0x80 | op, 0x80) + MASK, {}, ProtocolError, 1002, f"reserved opcode {op}")
        for op in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15)
    ],
    ("rsv2", hdr(0xA1, 0x80) + MASK, {}, ProtocolError, 1002, "reserved bits RSV2/RSV3 must be 0"),
    ("rsv3", hdr(0x91, 0x80) + MASK, {}, ProtocolError, 1002, "reserved bits RSV2/RSV3 must be 0"),
    ("rsv1", hdr(0xC1, 0x80) + MASK, {}, ProtocolError, 1002,
     "reserved bit RSV1 set without a negotiated extension"),
    ("rsv1-ping", hdr(0xC9, 0x80) + MASK, {"allow_rsv1": True}, ProtocolError, 1002,
     "RSV1 set on a control frame"),
    ("rsv1-cont", hdr(0xC0, 0x80) + MASK, {"allow_rsv1": True}, ProtocolError, 1002,
     "RSV1 set on a continuation frame"),
    ("frag-ping", hdr(0x09, 0x80) + MASK, {}, ProtocolError, 1002, "fragmented control frame"),
    ("frag-close", hdr(0x08, 0x80) + MASK, {}, ProtocolError, 1002, "fragmented control frame"),
    ("long-ping", hdr(0x89, 0x80 | 126, b"\x00\x7e") + MASK + bytes(126), {}, ProtocolError, 1002,
     "control frame payload longer than 125 bytes"),
    ("long-close", hdr(0x88, 0x80 | 127, bytes(7) + b"\x7e") + MASK, {}, ProtocolError, 1002,
     "control frame payload longer than 125 bytes"),
    ("unmasked", hdr(0x81, 0x00), {}, ProtocolError, 1002, "client frame is not masked"),
    ("masked", hdr(0x81, 0x80) + MASK, {"mask_required": False}, ProtocolError, 1002,
     "server frame is masked"),
    ("msb", hdr(0x82, 0xFF, b"\x80" + bytes(7)) + MASK, {}, ProtocolError, 1002,
     "frame length has the most significant bit set"),
    ("too-big-7", hdr(0x82, 0x80 | 11) + MASK + bytes(11), {"max_frame_size": 10}, PayloadTooBig, 1009,
     "frame of 11 bytes exceeds the limit of 10 bytes"),
    ("too-big-16", hdr(0x82, 0x80 | 126, b"\x01\x00") + MASK, {"max_frame_size": 255}, PayloadTooBig,
     1009, "frame of 256 bytes exceeds the limit of 255 bytes"),
    ("too-big-64", hdr(0x82, 0x80 | 127, b"\x00\x00\x00\x01\x00\x00\x00\x00") + MASK, {},
     PayloadTooBig, 1009, "frame of 4294967296 bytes exceeds the limit of 16777216 bytes"),
    ("too-big-rsv1", hdr(0xC2, 0x80 | 126, b"\x01\x2d") + MASK,
     {"allow_rsv1": True, "max_frame_size": 255, "max_rsv1_frame_size": 300}, PayloadTooBig, 1009,
     "frame of 301 bytes exceeds the limit of 300 bytes"),
    ("too-big-rsv1-default", hdr(0xC2, 0x80 | 126, b"\x01\x00") + MASK,
     {"allow_rsv1": True, "max_frame_size": 255}, PayloadTooBig, 1009,
     "frame of 256 bytes exceeds the limit of 255 bytes"),
    ("too-big-no-rsv1", hdr(0x82, 0x80 | 126, b"\x01\x00") + MASK,
     {"allow_rsv1": True, "max_frame_size": 255, "max_rsv1_frame_size": 300}, PayloadTooBig, 1009,
     "frame of 256 bytes exceeds the limit of 255 bytes"),
    # the order of the checks: opcode before RSV, RSV before control rules, ...
    ("order-opcode-rsv", hdr(0xF3, 0x00), {}, ProtocolError, 1002, "reserved opcode 3"),
    ("order-rsv-frag", hdr(0x29, 0x80) + MASK, {}, ProtocolError, 1002,
     "reserved bits RSV2/RSV3 must be 0"),
    ("order-frag-len", hdr(0x09, 0xFE), {}, ProtocolError, 1002, "fragmented control frame"),
    ("order-len-mask", hdr(0x89, 0x7E), {}, ProtocolError, 1002,
     "control frame payload longer than 125 bytes"),
]


@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize(
    "wire,kwargs,exc_type,code,reason", [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_violations(impl, wire, kwargs, exc_type, code, reason, chunking):
    kwargs = {"mask_required": True, **kwargs}
    with pytest.raises(exc_type) as info:
        frames_of(impl, wire, chunking, **kwargs)
    assert info.value.code == code
    assert info.value.reason == reason
    assert str(info.value) == reason


@pytest.mark.parametrize("name,wire,kwargs,exc_type,code,reason", BAD, ids=[b[0] for b in BAD])
def test_violation_fails_before_payload_arrives(impl, name, wire, kwargs, exc_type, code, reason):
    """The header alone (up to the extended length) is enough to fail."""
    needed = {"msb": 10, "too-big-16": 4, "too-big-64": 10, "too-big-rsv1": 4, "too-big-rsv1-default": 4,
              "too-big-no-rsv1": 4}.get(name, 2)
    parser = impl.FrameParser(**{"mask_required": True, **kwargs})
    for i in range(needed - 1):
        assert parser.feed(wire[i : i + 1]) == []
    with pytest.raises(exc_type):
        parser.feed(wire[needed - 1 : needed])


def test_violation_after_valid_frames_is_deferred(impl):
    good = impl.build_frame(1, b"hi", mask_key=MASK)
    bad = hdr(0x85, 0x80) + MASK
    ping = impl.build_frame(9, b"", mask_key=MASK)
    parser = impl.FrameParser(mask_required=True)
    frames = parser.feed(good + good + bad + ping)
    assert [f.payload for f in frames] == [b"hi", b"hi"]
    assert isinstance(parser.error, ProtocolError) and parser.error.code == 1002
    with pytest.raises(ProtocolError) as first:
        parser.feed(b"")
    with pytest.raises(ProtocolError) as again:
        parser.feed(good)
    assert first.value is again.value is parser.error
    assert first.value.reason == "reserved opcode 5"


def test_violation_alone_raises_at_once_and_sticks(impl):
    parser = impl.FrameParser(mask_required=True)
    with pytest.raises(ProtocolError) as first:
        parser.feed(hdr(0x81, 0x00))
    assert parser.error is first.value
    with pytest.raises(ProtocolError) as again:
        parser.feed(impl.build_frame(1, b"x", mask_key=MASK))
    assert again.value is first.value


def test_parser_settings_are_writable(impl):
    parser = impl.FrameParser(mask_required=True, max_frame_size=4)
    parser.allow_rsv1 = True
    parser.max_frame_size = 8
    (frame,) = parser.feed(impl.build_frame(1, b"12345678", rsv1=True, mask_key=MASK))
    assert frame.rsv1 and parser.allow_rsv1 and parser.max_frame_size == 8


def test_max_rsv1_frame_size(impl):
    # Frames with RSV1 set (compressed ones) have a limit of their own;
    # None (the default) means max_frame_size's. Writable, like the others.
    parser = impl.FrameParser(mask_required=True, max_frame_size=4, allow_rsv1=True)
    assert parser.max_rsv1_frame_size is None
    parser.max_rsv1_frame_size = 8
    assert parser.max_rsv1_frame_size == 8
    (frame,) = parser.feed(impl.build_frame(2, b"12345678", rsv1=True, mask_key=MASK))
    assert frame.rsv1 and frame.payload == b"12345678"
    (frame,) = parser.feed(impl.build_frame(2, b"1234", mask_key=MASK))
    parser.max_frame_size = 2  # lowering max_frame_size leaves it alone
    (frame,) = parser.feed(impl.build_frame(2, b"12345678", rsv1=True, mask_key=MASK))
    parser.max_rsv1_frame_size = None  # back to max_frame_size's
    with pytest.raises(PayloadTooBig, match="frame of 3 bytes exceeds the limit of 2 bytes"):
        parser.feed(impl.build_frame(2, b"123", rsv1=True, mask_key=MASK))
    # Checked again on an unfinished frame, with the settings of the moment.
    parser = impl.FrameParser(mask_required=False, max_frame_size=4, allow_rsv1=True,
                              max_rsv1_frame_size=100)
    data = impl.build_frame(1, b"x" * 50, rsv1=True)
    assert parser.feed(data[:10]) == []
    parser.max_rsv1_frame_size = 49
    with pytest.raises(PayloadTooBig, match="frame of 50 bytes exceeds the limit of 49 bytes"):
        parser.feed(data[10:])


def test_feed_rejects_str(impl):
    with pytest.raises(TypeError):
        impl.FrameParser(mask_required=True).feed("text")


# -- Frame objects -------------------------------------------------------------


def test_frame_object(impl):
    f = impl.Frame(1, b"x" * 40, fin=False, rsv1=True)
    assert (f.opcode, f.fin, f.rsv1, f.payload) == (1, False, True, b"x" * 40)
    assert f == impl.Frame(1, b"x" * 40, fin=False, rsv1=True)
    assert f != impl.Frame(1, b"x" * 40)
    assert repr(f) == "Frame(opcode=1, fin=False, rsv1=True, payload=" + repr(b"x" * 32) + "...)"
    assert repr(impl.Frame(2, b"ab")) == "Frame(opcode=2, fin=True, rsv1=False, payload=b'ab')"
    for attr in ("opcode", "fin", "rsv1", "payload"):
        with pytest.raises(AttributeError):
            setattr(f, attr, 0)


# -- build_frame ---------------------------------------------------------------


@pytest.mark.parametrize("length", LENGTHS)
def test_build_frame_headers(impl, length):
    payload = b"\xab" * length
    wire = impl.build_frame(2, payload)
    if length < 126:
        assert wire[:2] == bytes([0x82, length])
    elif length < 65536:
        assert wire[:4] == bytes([0x82, 126]) + length.to_bytes(2, "big")
    else:
        assert wire[:10] == bytes([0x82, 127]) + length.to_bytes(8, "big")
    assert wire.endswith(payload)
    masked = impl.build_frame(2, payload, mask_key=MASK)
    assert masked[1] & 0x80
    assert masked[-length - 4 : len(masked) - length] == MASK if length else masked.endswith(MASK)
    assert masked[len(masked) - length :] == ref_mask(payload, MASK)


def test_build_frame_accepts_buffers_and_flags(impl):
    for payload in (b"abc", bytearray(b"abc"), memoryview(b"xabc")[1:], "abc"):
        assert impl.build_frame(1, payload) == b"\x81\x03abc"
    assert impl.build_frame(1, "é") == b"\x81\x02\xc3\xa9"
    assert impl.build_frame(1, b"", fin=False, rsv1=True) == b"\x41\x00"
    assert impl.build_frame(8, b"\x03\xe8") == b"\x88\x02\x03\xe8"
    with pytest.raises(ValueError):
        impl.build_frame(1, b"x", mask_key=b"abc")


# -- masking -------------------------------------------------------------------


@pytest.mark.parametrize("length", LENGTHS + [3, 5, 17, 100, 1000, 4099])
def test_apply_mask(impl, length):
    data = os.urandom(length)
    mask = os.urandom(4)
    expected = ref_mask(data, mask) if length <= 70000 else None
    for buf in (data, bytearray(data), memoryview(data)):
        out = impl.apply_mask(buf, mask)
        assert type(out) is bytes and len(out) == length
        if expected is not None:
            assert out == expected
        assert impl.apply_mask(out, mask) == data
    inplace = bytearray(data)
    impl.apply_mask_inplace(inplace, mask)
    assert bytes(inplace) == impl.apply_mask(data, mask)


def test_apply_mask_every_offset(impl):
    """Misaligned starts and short tails exercise the vector heads and tails."""
    base = os.urandom(300)
    mask = b"\x01\x80\xff\x7e"
    for offset in range(0, 40):
        for length in (0, 1, 3, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 200):
            view = memoryview(base)[offset : offset + length]
            assert impl.apply_mask(view, mask) == ref_mask(view, mask)
            buf = bytearray(base)
            impl.apply_mask_inplace(memoryview(buf)[offset : offset + length], mask)
            assert bytes(buf[offset : offset + length]) == ref_mask(view, mask)
            assert buf[:offset] == base[:offset] and buf[offset + length :] == base[offset + length :]


def test_apply_mask_errors(impl):
    with pytest.raises(ValueError):
        impl.apply_mask(b"abc", b"abc")
    with pytest.raises(ValueError):
        impl.apply_mask(b"abc", b"abcde")
    with pytest.raises(TypeError):
        impl.apply_mask("text", b"abcd")
    with pytest.raises(TypeError):
        impl.apply_mask_inplace(b"read-only", b"abcd")
    assert impl.apply_mask(b"", b"abcd") == b""
    assert impl.apply_mask(b"abcd", bytearray(b"\x00\x00\x00\x00")) == b"abcd"


# -- UTF-8 ---------------------------------------------------------------------

VALID_UTF8 = [
    "",
    "\x00",
    "\x7f",
    "\x80",
    "\u07ff",
    "\u0800",
    "\ufffe",
    "\uffff",
    "\U00010000",
    "\U0010ffff",
    "κόσμε",
    "Hello-µ@ßöäüàá-UTF-8!!",
    "ascii " * 50 + "\u20ac" + "x" * 37 + "\U0001f600",
]

# (bytes, index of the byte that proves it invalid) ; -1: truncated at the end
INVALID_UTF8 = [
    (b"\x80", 0),
    (b"\xbf", 0),
    (b"a\x80b", 1),
    (b"\xc0\x80", 0),  # overlong NUL, C0/C1 never valid
    (b"\xc1\xbf", 0),
    (b"\xe0\x80\x80", 1),  # overlong 3-byte
    (b"\xe0\x9f\xbf", 1),
    (b"\xf0\x80\x80\x80", 1),  # overlong 4-byte
    (b"\xf0\x8f\xbf\xbf", 1),
    (b"\xed\xa0\x80", 1),  # U+D800 surrogate
    (b"\xed\xbf\xbf", 1),  # U+DFFF
    (b"\xf4\x90\x80\x80", 1),  # U+110000
    (b"\xf5\x80\x80\x80", 0),
    (b"\xff", 0),
    (b"\xfe", 0),
    (b"\xc2\x41", 1),
    (b"\xe2\x82\x41", 2),
    (b"\xf0\x9f\x98\x41", 3),
    (b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited", 12),
    (b"x" * 100 + b"\xc3", -1),
    (b"\xe2\x82", -1),
    (b"\xf0\x9f\x98", -1),
]


@pytest.mark.parametrize("text", VALID_UTF8)
def test_utf8_valid(impl, text):
    data = text.encode("utf-8")
    assert impl.validate_utf8(data)
    v = impl.Utf8Validator()
    v.feed(data, final=True)
    v = impl.Utf8Validator()
    for i in range(len(data)):
        v.feed(data[i : i + 1])
    v.feed(b"", final=True)


@pytest.mark.parametrize("data,index", INVALID_UTF8)
def test_utf8_invalid_whole(impl, data, index):
    assert not impl.validate_utf8(data)
    v = impl.Utf8Validator()
    with pytest.raises(InvalidUTF8) as info:
        v.feed(data, final=True)
    assert info.value.code == 1007
    if index < 0:
        assert info.value.reason == "truncated UTF-8 sequence at end of message"
        v2 = impl.Utf8Validator()
        v2.feed(data)  # not final: a truncated tail may still be completed
    else:
        assert info.value.reason == f"invalid UTF-8 at byte {index}"
    with pytest.raises(InvalidUTF8) as again:  # stays failed until reset()
        v.feed(b"ok")
    assert again.value.reason == info.value.reason
    v.reset()
    v.feed(b"ok", final=True)


@pytest.mark.parametrize("data,index", INVALID_UTF8)
def test_utf8_fails_fast_bytewise(impl, data, index):
    """Fed a byte at a time, the error comes with the byte that proves it."""
    v = impl.Utf8Validator()
    for i in range(len(data)):
        if i == index:
            with pytest.raises(InvalidUTF8) as info:
                v.feed(data[i : i + 1])
            assert info.value.reason == "invalid UTF-8 at byte 0"
            return
        v.feed(data[i : i + 1])
    assert index < 0
    with pytest.raises(InvalidUTF8):
        v.feed(b"", final=True)


def test_utf8_split_points(impl):
    text = ("aé€😀" * 40).encode("utf-8")
    for cut in range(1, 40):
        v = impl.Utf8Validator()
        v.feed(text[:cut])
        v.feed(memoryview(text)[cut:], final=True)
    bad = text[:50] + b"\xed\xa0\x80" + text[50:]
    for cut in range(1, 53):
        v = impl.Utf8Validator()
        if cut <= 51:
            v.feed(bad[:cut])
            with pytest.raises(InvalidUTF8) as info:
                v.feed(bad[cut:])
            assert info.value.reason == f"invalid UTF-8 at byte {51 - cut}"
        else:
            with pytest.raises(InvalidUTF8) as info:
                v.feed(bad[:cut])
            assert info.value.reason == "invalid UTF-8 at byte 51"


def test_utf8_large(impl):
    ascii_mib = b"abcdefgh" * (2**17)
    assert impl.validate_utf8(ascii_mib)
    mixed = ("κόσμε 😀 naïve €uro " * 40000).encode("utf-8")
    assert impl.validate_utf8(mixed)
    v = impl.Utf8Validator()
    v.feed(mixed, final=True)
    broken = bytearray(mixed)
    broken[len(broken) // 2] = 0xFF
    assert not impl.validate_utf8(bytes(broken))
    with pytest.raises(InvalidUTF8) as info:
        impl.Utf8Validator().feed(broken)
    assert info.value.reason == f"invalid UTF-8 at byte {len(broken) // 2}"


def test_utf8_random_against_cpython(impl):
    rng = random.Random(1234)
    alphabet = [b"a", b"\xc3\xa9", b"\xe2\x82\xac", b"\xf0\x9f\x98\x80", b"\x80", b"\xed\xa0\x80", b"\xf4\x90"]
    for _ in range(500):
        data = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20)))
        try:
            data.decode("utf-8")
            ok = True
        except UnicodeDecodeError:
            ok = False
        assert impl.validate_utf8(data) is ok
        v = impl.Utf8Validator()
        try:
            v.feed(data, final=True)
            assert ok
        except InvalidUTF8:
            assert not ok


# -- property: whatever build_frame writes, FrameParser reads back -------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    specs=st.lists(
        st.tuples(
            st.sampled_from([0, 1, 2, 8, 9, 10]),
            st.binary(max_size=300),
            st.booleans(),
            st.booleans(),
        ),
        min_size=1,
        max_size=8,
    ),
    cuts=st.lists(st.integers(0, 5000), max_size=10),
    masked=st.booleans(),
)
def test_build_then_parse_roundtrip(impl, specs, cuts, masked):
    expected, wire = [], b""
    for opcode, payload, fin, rsv1 in specs:
        if opcode >= 8:
            payload, fin, rsv1 = payload[:125], True, False
        if opcode == 0:
            rsv1 = False
        expected.append((opcode, fin, rsv1, payload))
        wire += impl.build_frame(opcode, payload, fin=fin, rsv1=rsv1, mask_key=MASK if masked else None)
    parser = impl.FrameParser(mask_required=masked, allow_rsv1=True)
    got, last = [], 0
    for cut in sorted(c % (len(wire) + 1) for c in cuts) + [len(wire)]:
        got += parser.feed(wire[last:cut])
        last = cut
    assert [as_tuple(f) for f in got] == expected


# -- the unfinished frame: buffered / partial() (fail-fast checks inside a frame) --


@pytest.mark.parametrize("masked", [True, False])
def test_partial_frame(impl, masked):
    payload = ("héllo wörld " * 30).encode("utf-8")
    key = MASK if masked else None
    wire = impl.build_frame(1, payload, mask_key=key)
    hlen = len(wire) - len(payload)
    parser = impl.FrameParser(mask_required=masked)
    assert parser.buffered == 0 and parser.partial() is None
    assert parser.feed(wire[:2]) == []
    assert parser.buffered == 2 and parser.partial() is None  # header incomplete
    assert parser.partial_opcode == -1
    parser.feed(wire[2:hlen])
    assert parser.buffered == hlen and parser.partial() == (1, b"")
    assert parser.partial_opcode == 1
    seen = 0
    for cut in (hlen + 1, hlen + 5, hlen + 6, hlen + 100, len(wire) - 1):
        parser.feed(wire[hlen + seen : cut])
        assert parser.buffered == cut
        op, data = parser.partial(seen)
        assert op == 1 and data == payload[seen : cut - hlen]
        assert parser.partial(0)[1] == payload[: cut - hlen]
        seen = cut - hlen
    assert parser.partial(10**6) == (1, b"")
    (frame,) = parser.feed(wire[-1:])
    assert frame.payload == payload
    assert parser.buffered == 0 and parser.partial() is None


def test_partial_after_error_is_none(impl):
    parser = impl.FrameParser(mask_required=True)
    wire = impl.build_frame(1, b"abcdef", mask_key=MASK)
    parser.feed(wire[:8])
    assert parser.partial() == (1, b"ab")
    frames = parser.feed(wire[8:] + b"\x85\x80")  # completes the frame, then a bad header
    assert [f.payload for f in frames] == [b"abcdef"] and parser.error is not None
    assert parser.partial() is None and parser.buffered == 0


def test_no_hold_on_the_fed_buffer_after_an_error(impl):
    """The stored error must not keep a view of the caller's buffer alive."""
    buf = bytearray(b"\x85\x80" + MASK)
    parser = impl.FrameParser(mask_required=True)
    with pytest.raises(ProtocolError):
        parser.feed(memoryview(buf))
    buf.extend(b"resizable")  # BufferError if a view were still exported
    data = bytearray(b"ok \xff")
    v = impl.Utf8Validator()
    with pytest.raises(InvalidUTF8):
        v.feed(memoryview(data))
    data.extend(b"resizable")


@pytest.mark.parametrize("opcode", [-1, 16, 255, 256])
def test_build_frame_rejects_bad_opcodes(impl, opcode):
    with pytest.raises(ValueError):
        impl.build_frame(opcode, b"")
    with pytest.raises(ValueError):
        impl.build_frame(opcode, bytes(70000))


# -- feed_messages: complete single-frame messages as str/bytes ------------------


def test_feed_messages_converts_complete_data_frames(impl):
    parser = impl.FrameParser(mask_required=True)
    wire = (impl.build_frame(2, b"bin", mask_key=MASK) + impl.build_frame(1, "tëxt", mask_key=MASK)
            + impl.build_frame(2, b"", mask_key=MASK))
    assert parser.feed_messages(wire) == [b"bin", "tëxt", b""]


def test_feed_messages_frames_from_the_first_other_frame_on(impl):
    parser = impl.FrameParser(mask_required=True)
    wire = (impl.build_frame(2, b"a", mask_key=MASK)
            + impl.build_frame(9, b"p", mask_key=MASK)       # a ping: a Frame ...
            + impl.build_frame(2, b"b", mask_key=MASK)       # ... and so is all after it
            + impl.build_frame(1, b"c", fin=False, mask_key=MASK))
    got = parser.feed_messages(wire)
    assert got[0] == b"a"
    assert [(f.opcode, f.fin, f.payload) for f in got[1:]] == [(9, True, b"p"), (2, True, b"b"),
                                                             (1, False, b"c")]
    parser = impl.FrameParser(mask_required=True)
    got = parser.feed_messages(impl.build_frame(1, b"x", fin=False, mask_key=MASK)
                               + impl.build_frame(2, b"y", mask_key=MASK))
    assert [type(f).__name__ for f in got] == ["Frame", "Frame"]


def test_feed_messages_text_that_began_earlier_stays_a_frame(impl):
    """A caller may have checked the start of a text frame through partial()."""
    for opcode in (1, 2):
        wire = impl.build_frame(opcode, b"hello world", mask_key=MASK) + impl.build_frame(
            2, b"next", mask_key=MASK)
        for cut in (1, 7, 10):  # in the header, at its end, in the payload
            parser = impl.FrameParser(mask_required=True)
            assert parser.feed_messages(wire[:cut]) == []
            got = parser.feed_messages(wire[cut:])
            if opcode == 2:
                assert got == [b"hello world", b"next"]
            else:
                assert (got[0].opcode, got[0].payload) == (1, b"hello world")
                assert got[1].payload == b"next"  # after a Frame: Frames


def test_feed_messages_invalid_utf8_is_a_violation(impl):
    parser = impl.FrameParser(mask_required=True)
    good = impl.build_frame(2, b"ok", mask_key=MASK)
    bad = impl.build_frame(1, b"ab\xff", mask_key=MASK)
    assert parser.feed_messages(good + bad + good) == [b"ok"]  # the frames before it
    assert isinstance(parser.error, InvalidUTF8)
    assert (parser.error.code, parser.error.reason) == (1007, "invalid UTF-8 at byte 2")
    with pytest.raises(InvalidUTF8):
        parser.feed_messages(b"")
    parser = impl.FrameParser(mask_required=True)
    with pytest.raises(InvalidUTF8, match="at byte 2"):  # nothing before it: raised now
        parser.feed_messages(bad)


def test_feed_messages_rsv1_and_unmasked_client_frames(impl):
    parser = impl.FrameParser(mask_required=False, allow_rsv1=True)
    wire = impl.build_frame(2, b"z", rsv1=True) + impl.build_frame(2, b"w")
    got = parser.feed_messages(wire)
    assert (got[0].rsv1, got[0].payload) == (True, b"z") and got[1].payload == b"w"
    parser = impl.FrameParser(mask_required=False)
    assert parser.feed_messages(impl.build_frame(1, "ß") + impl.build_frame(2, b"w")) == ["ß", b"w"]


# -- the twin's masking paths: numpy (when importable) and pure Python ------------


def _reference_mask(data, mask):
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


@pytest.fixture(params=["numpy", "no-numpy"])
def twin_mask_path(request, monkeypatch):
    from wsfast import _frame_py

    if request.param == "numpy":
        np = pytest.importorskip("numpy")
        monkeypatch.setattr(_frame_py, "_np", np)
    else:
        monkeypatch.setattr(_frame_py, "_np", None)
    monkeypatch.setattr(_frame_py, "_np_tried", True)
    return _frame_py


@pytest.mark.parametrize("n", [0, 1, 3, 8, 9, 1023, 1024, 1025, 1027, 2047, 2048, 2049, 2055, 16384, 100_001])
@pytest.mark.parametrize("offset", [0, 3])
def test_twin_masking_paths(twin_mask_path, n, offset):
    py = twin_mask_path
    buf = bytes(range(256)) * ((n + offset) // 256 + 1)
    data = memoryview(buf)[offset : offset + n]  # a view at an odd offset, too
    key = b"\x9d\x01\xf3\x5a"
    expected = _reference_mask(data, key)
    got = py.apply_mask(data, key)
    assert type(got) is bytes and got == expected
    inplace = bytearray(data)
    py.apply_mask_inplace(inplace, key)
    assert inplace == expected
    parser = py.FrameParser(mask_required=True, max_frame_size=2**24)
    (frame,) = parser.feed(py.build_frame(2, bytes(data), mask_key=key))
    assert frame.payload == bytes(data)


def test_twin_numpy_path_beyond_the_kept_scratch_buffer(monkeypatch):
    np = pytest.importorskip("numpy")
    from wsfast import _frame_py

    monkeypatch.setattr(_frame_py, "_np_tried", True)
    data = bytes(range(251)) * (_frame_py._SCRATCH_MAX // 251 + 7)  # > the kept buffer
    key = b"\x01\x80\xff\x10"
    monkeypatch.setattr(_frame_py, "_np", np)
    with_numpy = _frame_py.apply_mask(data, key)
    monkeypatch.setattr(_frame_py, "_np", None)
    assert with_numpy == _frame_py.apply_mask(data, key)
    assert _frame_py.apply_mask(with_numpy, key) == data


# -- window()/commit(): reading a payload straight into the frame's storage ------


def read_through_windows(parser, data, rng, minimum=1):
    """Give ``data`` to ``parser`` as a socket reader would: into the window
    while there is one (random short reads), else through feed(). Returns
    the frames and how many bytes went through windows."""
    frames, pos, windowed = [], 0, 0
    while pos < len(data):
        win = parser.window(minimum)
        if win is None:
            n = min(len(data) - pos, rng.randint(1, 70_000))
            frames += parser.feed(data[pos : pos + n])
        else:
            assert 0 < len(win) and not win.readonly
            n = min(len(win), len(data) - pos, rng.randint(1, 300_000))
            win[:n] = data[pos : pos + n]
            frames += parser.commit(n)
            windowed += n
        pos += n
    return frames, windowed


@pytest.mark.parametrize("masked", [True, False])
def test_window_reads_payloads_straight_in(impl, masked):
    rng = random.Random(5)
    key = MASK if masked else None
    sizes = [0, 1, 125, 126, 70_000, 2**20, 3 * 2**20 + 3, 17]  # 3 MiB: past the first allocation
    payloads = [rng.randbytes(n) for n in sizes]
    specs = [(2, p, True) for p in payloads] + [(1, "wörld".encode() * 30_000, False),
                                                (0, b"tail", True)]
    wire = b"".join(impl.build_frame(op, p, fin=fin, mask_key=key) for op, p, fin in specs)
    parser = impl.FrameParser(mask_required=masked)
    frames, windowed = read_through_windows(parser, wire, rng)
    assert [as_tuple(f) for f in frames] == [(op, fin, False, p) for op, p, fin in specs]
    assert windowed > 4 * 2**20 and parser.buffered == 0 and parser.window() is None


def test_window_and_partial_agree(impl):
    payload = ("héllo wörld " * 10_000).encode("utf-8")
    wire = impl.build_frame(1, payload, mask_key=MASK)
    h = len(wire) - len(payload)
    parser = impl.FrameParser(mask_required=True)
    assert parser.feed(wire[:1001]) == []
    seen = 1001 - h
    win = parser.window()
    assert len(win) <= len(payload) - seen
    for n in (1, 3, 4, 4093):  # at phases 3, 0, 3, 3: the key rotates as bytes arrive
        win = parser.window()
        win[:n] = wire[h + seen : h + seen + n]
        assert parser.commit(n) == []
        assert parser.partial(seen) == (1, payload[seen : seen + n])
        seen += n
        assert parser.buffered == h + seen and parser.partial_opcode == 1
    assert parser.partial(0) == (1, payload[:seen])
    (frame,) = parser.feed(wire[h + seen :])
    assert frame.payload == payload


def test_window_is_none_without_a_payload_in_progress(impl):
    parser = impl.FrameParser(mask_required=True)
    assert parser.window() is None  # nothing buffered
    wire = impl.build_frame(2, bytes(100_000), mask_key=MASK)
    parser.feed(wire[:5])
    assert parser.window() is None  # header incomplete
    parser.feed(wire[5:14])  # header complete, 100,000 bytes missing
    assert parser.window(100_001) is None and parser.window(100_000) is not None
    parser.feed(wire[14:-10])
    assert parser.window(11) is None and len(parser.window(10)) == 10
    (frame,) = parser.feed(wire[-10:])
    assert frame.payload == bytes(100_000)


def test_window_checks_the_frame_with_the_settings_of_now(impl):
    """As feed() re-checks an unfinished frame (Connection lowers the limit
    between fragments), so does window(): None, the error stored, raised next."""
    parser = impl.FrameParser(mask_required=True)
    parser.feed(impl.build_frame(2, bytes(100_000), mask_key=MASK)[:50])
    parser.max_frame_size = 1000
    assert parser.window() is None
    assert isinstance(parser.error, PayloadTooBig) and parser.error.code == 1009
    with pytest.raises(PayloadTooBig):
        parser.feed(b"")
    assert parser.window() is None


def test_window_misuse_is_an_error_not_a_corruption(impl):
    parser = impl.FrameParser(mask_required=True)
    with pytest.raises(ValueError, match="without a window"):
        parser.commit(0)
    wire = impl.build_frame(2, bytes(range(256)) * 400, mask_key=MASK)
    parser.feed(wire[:100])
    win = parser.window()
    with pytest.raises(ValueError, match="outside the window"):
        parser.commit(len(win) + 1)
    stale = parser.window()
    parser.feed(wire[100:200])  # any later call releases the view it gave
    with pytest.raises(ValueError):
        stale[0] = 1
    win = parser.window()
    win[:10] = wire[200:210]
    assert parser.commit(10) == []
    with pytest.raises(ValueError):  # that window is spent
        win[0] = 1
    with pytest.raises(ValueError, match="without a window"):
        parser.commit(1)
    (frame,) = parser.feed(wire[210:])
    assert frame.payload == bytes(range(256)) * 400


def test_a_window_kept_too_long_is_released(impl):
    """Released when its parser goes (the extension's view points into the
    parser's storage), or when another parser lends a window (the twin's
    view is a per-thread scratch buffer)."""
    wire = impl.build_frame(2, bytes(100_000), mask_key=MASK)
    parser = impl.FrameParser(mask_required=True)
    parser.feed(wire[:50])
    win = parser.window()
    del parser
    other = impl.FrameParser(mask_required=True)
    other.feed(wire[:50])
    assert other.window() is not None
    with pytest.raises(ValueError):
        win[0] = 1
