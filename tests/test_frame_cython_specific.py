"""Tests for what only the Cython codec has: its vector paths (AVX2, SSE2 and
the portable uint64 path, each forced in turn), alignment heads and tails, the
GIL-free path for big buffers, the parser's own partial-payload storage, and
buffer exports (the parser must not keep one).

The behaviour both codecs share is tested in test_frame.py and
test_frame_differential.py; everything here is checked against a trivial
reference or against the pure-Python twin.
"""

import gc
import os
import random
import sys

import pytest

from wsfast import codec
from wsfast.exceptions import InvalidUTF8, PayloadTooBig, ProtocolError

pytestmark = pytest.mark.skipif(
    "cython" not in codec.AVAILABLE, reason="the Cython extension is not built"
)

C = codec.AVAILABLE.get("cython")
P = codec.AVAILABLE["python"]

MASK = b"\x01\x80\xff\x7e"


def ref_mask(data, mask, phase=0):
    return bytes(b ^ mask[(i + phase) % 4] for i, b in enumerate(bytes(data)))


def _levels():
    if C is None:
        return [0]
    best = C._set_simd_level(2)
    return list(range(best + 1))


@pytest.fixture(params=_levels(), ids=lambda lv: ["uint64", "sse2", "avx2"][lv])
def level(request):
    """Force one vector path for the test, then go back to the best one."""
    got = C._set_simd_level(request.param)
    assert got == request.param
    yield got
    C._set_simd_level(2)


def test_best_level_is_used_by_default():
    assert C._simd_level() == C._set_simd_level(2)
    if sys.platform.startswith("linux") and os.uname().machine == "x86_64":
        with open("/proc/cpuinfo") as f:
            flags = f.read()
        assert C._simd_level() == (2 if " avx2" in flags else 1)


# -- masking: every start offset, every short length, every path --------------


def test_mask_every_offset_and_length(level):
    base = os.urandom(64 + 131)
    for offset in range(64):
        for length in range(131):
            view = memoryview(base)[offset : offset + length]
            expected = ref_mask(view, MASK)
            assert C.apply_mask(view, MASK) == expected
            buf = bytearray(base)
            C.apply_mask_inplace(memoryview(buf)[offset : offset + length], MASK)
            assert buf[offset : offset + length] == expected
            assert buf[:offset] == base[:offset]
            assert buf[offset + length :] == base[offset + length :]


@pytest.mark.parametrize("length", [511, 512, 513, 1000, 4096 + 37])
def test_mask_aligned_head_path(level, length):
    """From 512 bytes on, the vector loops first align the destination: the
    key must be rotated by the head length, whatever the start offset."""
    base = os.urandom(length + 64)
    for offset in range(0, 64, 3):
        view = memoryview(base)[offset : offset + length]
        expected = ref_mask(view, MASK)
        assert C.apply_mask(view, MASK) == expected
        buf = bytearray(base)
        C.apply_mask_inplace(memoryview(buf)[offset : offset + length], MASK)
        assert buf[offset : offset + length] == expected
        assert buf[:offset] == base[:offset] and buf[offset + length :] == base[offset + length :]


@pytest.mark.parametrize("offset", [0, 1, 2, 3, 5, 31])
def test_mask_big_buffers_without_the_gil(level, offset):
    """Over 256 KiB the GIL is released; bytearray exports keep buffers fixed."""
    n = 2**20 + 7
    data = os.urandom(n + offset)
    view = memoryview(data)[offset:]
    out = C.apply_mask(view, MASK)
    assert out == P.apply_mask(view, MASK)
    buf = bytearray(data)
    C.apply_mask_inplace(memoryview(buf)[offset:], MASK)
    assert bytes(buf[offset:]) == out and buf[:offset] == data[:offset]
    whole = bytearray(data[offset:])
    C.apply_mask_inplace(whole, MASK)
    assert whole == out


def test_mask_accepts_any_contiguous_buffer():
    import array

    a = array.array("I", range(100))
    raw = a.tobytes()
    assert C.apply_mask(a, MASK) == ref_mask(raw, MASK)
    assert C.apply_mask(memoryview(a), memoryview(MASK)) == ref_mask(raw, MASK)
    C.apply_mask_inplace(a, array.array("B", MASK))
    assert a.tobytes() == ref_mask(raw, MASK)
    with pytest.raises(TypeError):
        C.apply_mask(memoryview(raw)[::2], MASK)  # not contiguous: as the twin
    with pytest.raises(TypeError):
        C.apply_mask(raw, "abcd")
    with pytest.raises(TypeError):
        C.apply_mask_inplace(memoryview(raw), MASK)  # read-only
    with pytest.raises(TypeError):
        C.apply_mask_inplace("abcd", MASK)


def test_mask_key_read_before_bytearray_pointer():
    """The bytearray fast path takes the pointer after reading the key, so a
    key whose buffer export resizes the target cannot leave a stale pointer."""
    target = bytearray(b"abcdefgh")

    class NastyKey:
        def __buffer__(self, flags):
            target.extend(b"ijkl" * 100)
            return memoryview(MASK)

    if sys.version_info < (3, 12):
        pytest.skip("__buffer__ needs Python 3.12")
    expected = ref_mask(b"abcdefgh" + b"ijkl" * 100, MASK)
    C.apply_mask_inplace(target, NastyKey())
    assert target == expected


# -- build_frame through the vector paths ------------------------------------


@pytest.mark.parametrize("length", [0, 1, 31, 32, 33, 125, 126, 511, 512, 513, 65535, 65536, 70001])
def test_build_frame_matches_twin(level, length):
    payload = os.urandom(length)
    for key in (None, MASK):
        for p in (payload, bytearray(payload), memoryview(b"x" + payload)[1:]):
            assert C.build_frame(2, p, mask_key=key) == P.build_frame(2, payload, mask_key=key)


# -- FrameParser: own storage, no kept export, big partial frames ---------------


def test_feed_keeps_no_buffer_export():
    wire = C.build_frame(2, b"abcdefgh" * 100, mask_key=MASK)
    parser = C.FrameParser(mask_required=True)
    buf = bytearray(wire[:100])
    assert parser.feed(buf) == []
    buf.extend(b"x" * 10)  # BufferError if the parser held an export
    view = memoryview(bytearray(wire[100:]))
    (frame,) = parser.feed(view)
    view.release()  # BufferError if an export were still held
    assert frame.payload == b"abcdefgh" * 100


@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("chunk", [1000, 65536, 65537, 300007])
def test_partial_payload_growth(masked, chunk):
    """Frames over 1 MiB are stored growing as their bytes arrive."""
    payload = os.urandom(3 * 2**20 + 5)
    wire = C.build_frame(2, payload, mask_key=MASK if masked else None) + C.build_frame(
        9, b"after", mask_key=MASK if masked else None
    )
    parser = C.FrameParser(mask_required=masked)
    got = []
    for i in range(0, len(wire), chunk):
        got += parser.feed(memoryview(wire)[i : i + chunk])
    refs = sys.getrefcount(got[0].payload)
    assert refs == 2  # the frame's reference (+ the argument): the parser kept none
    assert [(f.opcode, f.payload) for f in got] == [(2, payload), (9, b"after")]


def test_parser_freed_with_a_partial_frame():
    wire = C.build_frame(2, os.urandom(2**21), mask_key=MASK)
    for size in (10, 5000, 2**20 + 9, 2**21):
        parser = C.FrameParser(mask_required=True)
        assert parser.feed(wire[:size]) == []
        del parser
    gc.collect()


def test_settings_apply_to_the_frame_in_progress():
    """Like the twin (which re-reads the bytes it buffered), a frame whose
    header arrived is checked again with the settings of the next feed()."""
    for impl in (C, P):
        wire = impl.build_frame(2, os.urandom(3000), mask_key=MASK)
        parser = impl.FrameParser(mask_required=True)
        assert parser.feed(wire[:100]) == []
        parser.max_frame_size = 10
        with pytest.raises(PayloadTooBig) as info:
            parser.feed(wire[100:])
        assert info.value.reason == "frame of 3000 bytes exceeds the limit of 10 bytes"
        parser = impl.FrameParser(mask_required=True, allow_rsv1=True)
        wire = impl.build_frame(1, os.urandom(3000), rsv1=True, mask_key=MASK)
        assert parser.feed(wire[:2000]) == []
        parser.allow_rsv1 = False
        with pytest.raises(ProtocolError) as info:
            parser.feed(b"")
        assert info.value.reason == "reserved bit RSV1 set without a negotiated extension"


def test_max_frame_size_beyond_c_range():
    parser = C.FrameParser(mask_required=False, max_frame_size=2**70)
    assert parser.max_frame_size == 2**70
    header = bytes([0x82, 127]) + (2**62).to_bytes(8, "big")
    assert parser.feed(header) == []  # accepted, waiting for the payload
    parser = C.FrameParser(mask_required=False, max_frame_size=-5)
    with pytest.raises(PayloadTooBig) as info:
        parser.feed(b"\x82\x00")
    assert info.value.reason == "frame of 0 bytes exceeds the limit of -5 bytes"


def test_many_small_frames_random_chunks_match_twin():
    rng = random.Random(7)
    specs = [(rng.choice([0, 1, 2, 9, 10]), rng.randint(0, 300), rng.random() < 0.8) for _ in range(400)]
    wire = b"".join(
        P.build_frame(op, os.urandom(min(n, 125) if op >= 8 else n), fin=fin or op >= 8,
                      mask_key=os.urandom(4))
        for op, n, fin in specs
    )
    for _ in range(20):
        cy, py = C.FrameParser(mask_required=True), P.FrameParser(mask_required=True)
        got_c, got_p, i = [], [], 0
        while i < len(wire):
            j = i + rng.choice([1, 2, 3, 7, 14, 100, 1000, 5000])
            got_c += cy.feed(wire[i:j])
            got_p += py.feed(wire[i:j])
            i = j
        assert [(f.opcode, f.fin, f.rsv1, f.payload) for f in got_c] == [
            (f.opcode, f.fin, f.rsv1, f.payload) for f in got_p
        ]


# -- Frame --------------------------------------------------------------------


def test_frame_is_compact_and_immutable():
    f = C.Frame(1, b"abc")
    with pytest.raises(AttributeError):
        f.payload = b"x"
    with pytest.raises(AttributeError):
        f.other = 1  # no __dict__
    with pytest.raises(TypeError):
        hash(f)
    assert f.fin is True and f.rsv1 is False
    frames = C.FrameParser(mask_required=False).feed(b"\x01\x00")
    assert frames[0].fin is False and frames[0] == C.Frame(1, b"", fin=False)


# -- UTF-8: ASCII runs and multi-byte characters on every path ----------------


def test_ascii_run_every_position(level):
    """A single non-ASCII byte at every position of buffers of every length
    up to 200 (the 128/64/32/16/8-byte blocks and their tails)."""
    for n in range(0, 201):
        base = b"a" * n
        assert C.validate_utf8(base)
        for pos in range(n):
            bad = base[:pos] + b"\xff" + base[pos + 1 :]
            assert not C.validate_utf8(bad)
            v = C.Utf8Validator()
            with pytest.raises(InvalidUTF8) as info:
                v.feed(bad)
            assert info.value.reason == f"invalid UTF-8 at byte {pos}"
            good = base[:pos] + b"\xc3\xa9" + base[pos + 1 :]
            assert C.validate_utf8(good)


def test_utf8_random_split_against_twin(level):
    rng = random.Random(99)
    atoms = [b"a", b" ", b"abcdefghijklmnopqrstuvwxyz0123456789" * 3, "é".encode(), "€".encode(),
             "😀".encode(), "中".encode(), b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xef\xbf\xbf",
             b"\xf4\x8f\xbf\xbf", b"\xf4\x90\x80\x80", b"\xe0\xa0", b"\xf0\x90\x80", b"\xff"]
    for _ in range(1500):
        data = b"".join(rng.choice(atoms) for _ in range(rng.randint(0, 30)))
        assert C.validate_utf8(data) == P.validate_utf8(data)
        cuts = sorted(rng.randint(0, len(data)) for _ in range(rng.randint(0, 4)))
        pieces, last = [], 0
        for c in cuts + [len(data)]:
            pieces.append(data[last:c])
            last = c
        outcome = []
        for impl in (C, P):
            v, out = impl.Utf8Validator(), []
            for k, piece in enumerate(pieces):
                try:
                    v.feed(piece, final=k == len(pieces) - 1)
                    out.append("ok")
                except InvalidUTF8 as exc:
                    out.append((type(exc).__name__, exc.reason))
                    break
            outcome.append(out)
        assert outcome[0] == outcome[1], (data, pieces)


def test_utf8_big_buffers(level):
    text = ("naïve café, 中文, 😀 " * 50000).encode()
    assert C.validate_utf8(text) and C.validate_utf8(bytearray(text))
    assert C.validate_utf8(memoryview(b"x" + text)[1:])
    for pos in (0, 1, 4095, len(text) // 2, len(text) - 1):
        bad = bytearray(text)
        bad[pos] = 0xC0
        assert not C.validate_utf8(bad)
    with pytest.raises(TypeError):
        C.validate_utf8("text")
    with pytest.raises(TypeError):
        C.Utf8Validator().feed("text")


# -- reuse_buffer: the storage of a large payload serves the next one once free -------


def _feed_in_reads(parser, data, read=65536):
    frames = []
    for pos in range(0, len(data), read):
        frames += parser.feed(data[pos : pos + read])
    return frames


def _through_windows(parser, data):
    frames = parser.feed(data[:100])
    pos = 100
    while pos < len(data):
        win = parser.window()
        if win is None:
            frames += parser.feed(data[pos : pos + 65536])
            pos += 65536
            continue
        n = min(len(win), len(data) - pos, 300_000)
        win[:n] = data[pos : pos + n]
        pos += n
        frames += parser.commit(n)
    return frames


@pytest.mark.parametrize("path", [_feed_in_reads, _through_windows])
def test_reuse_buffer_reuses_a_dropped_payload(path):
    rnd = random.Random(3)
    first, second = rnd.randbytes(3 * 2**20), rnd.randbytes(2 * 2**20 + 5)
    parser = C.FrameParser(mask_required=True, reuse_buffer=True)
    assert parser.reuse_buffer
    (frame,) = path(parser, C.build_frame(2, first, mask_key=MASK))
    assert frame.payload == first
    address = id(frame.payload)
    hash(frame.payload)  # a cached hash must not survive the reuse
    del frame
    (frame,) = path(parser, C.build_frame(2, second, mask_key=MASK))
    assert id(frame.payload) == address  # the same object, refilled
    assert frame.payload == second and len(frame.payload) == len(second)
    assert hash(frame.payload) == hash(bytes(bytearray(second)))


def test_reuse_buffer_never_touches_a_payload_still_held():
    rnd = random.Random(4)
    first, second = rnd.randbytes(2 * 2**20), rnd.randbytes(2 * 2**20)
    parser = C.FrameParser(mask_required=False, reuse_buffer=True)
    (kept,) = _feed_in_reads(parser, C.build_frame(2, first))
    view = memoryview(kept.payload)[10:]  # a view keeps it too
    payload = kept.payload
    del kept
    (frame,) = _feed_in_reads(parser, C.build_frame(2, second))
    assert frame.payload == second and frame.payload is not payload
    assert payload == first and view == first[10:]
    # Off (the default): never reused.
    parser = C.FrameParser(mask_required=False)
    (frame,) = _feed_in_reads(parser, C.build_frame(2, first))
    payload = frame.payload
    del frame
    (frame,) = _feed_in_reads(parser, C.build_frame(2, second))
    assert frame.payload == second and payload == first


def test_reuse_buffer_small_frames_and_the_twin():
    parser = C.FrameParser(mask_required=False, reuse_buffer=True)
    (frame,) = _feed_in_reads(parser, C.build_frame(2, b"x" * 1000), read=100)
    assert frame.payload == b"x" * 1000  # below 1 MiB: not kept
    twin = P.FrameParser(mask_required=False, reuse_buffer=True)
    assert twin.reuse_buffer
    (frame,) = _feed_in_reads(twin, P.build_frame(2, b"y" * 2**21))
    assert frame.payload == b"y" * 2**21
    parser.reuse_buffer = False
    assert not parser.reuse_buffer
