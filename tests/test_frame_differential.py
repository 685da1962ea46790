"""Differential tests: the Cython codec and its Python twin, fed the same
random frames in the same random chunkings, must give identical frames or
identical errors (type, close code, reason), call by call."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsfast import codec
from wsfast.exceptions import ProtocolError

pytestmark = pytest.mark.skipif(
    "cython" not in codec.AVAILABLE, reason="the Cython extension is not built"
)

PY = codec.AVAILABLE["python"]
CY = codec.AVAILABLE.get("cython")

LENGTH_EDGES = [0, 1, 7, 8, 15, 16, 31, 32, 33, 125, 126, 127, 128, 65535, 65536]
lengths = st.one_of(st.sampled_from(LENGTH_EDGES), st.integers(0, 300))


@st.composite
def raw_frame(draw):
    """A frame header + payload, sometimes breaking a rule on purpose."""
    opcode = draw(st.one_of(st.sampled_from([0, 1, 2, 8, 9, 10]), st.integers(0, 15)))
    fin = draw(st.booleans()) if draw(st.integers(0, 4)) == 0 else True
    rsv = draw(st.sampled_from([0, 0, 0, 0, 0x40, 0x20, 0x10]))
    masked = draw(st.booleans()) if draw(st.integers(0, 5)) == 0 else True
    n = draw(lengths)
    if n >= 512:
        payload = bytes(range(256)) * (n // 256) + bytes(n % 256)
    elif draw(st.booleans()):  # mostly valid UTF-8 (the cut may split a character)
        payload = draw(st.text(max_size=n)).encode("utf-8")[:n].ljust(n, b"a")
    else:
        payload = draw(st.binary(min_size=n, max_size=n))
    b0 = (0x80 if fin else 0) | rsv | opcode
    mbit = 0x80 if masked else 0
    form = draw(st.sampled_from(["minimal", "minimal", "minimal", "16", "64", "64msb"]))
    if form == "minimal":
        if n < 126:
            header = bytes([b0, mbit | n])
        elif n < 65536:
            header = bytes([b0, mbit | 126]) + n.to_bytes(2, "big")
        else:
            header = bytes([b0, mbit | 127]) + n.to_bytes(8, "big")
    elif form == "16" and n < 65536:
        header = bytes([b0, mbit | 126]) + n.to_bytes(2, "big")
    elif form == "64msb":
        header = bytes([b0, mbit | 127]) + (n | (1 << 63)).to_bytes(8, "big")
    else:
        header = bytes([b0, mbit | 127]) + n.to_bytes(8, "big")
    if masked:
        key = draw(st.binary(min_size=4, max_size=4))
        header += key
        payload = PY.apply_mask(payload, key)
    return header + payload


def item(f):
    if type(f) in (bytes, str):  # feed_messages: a message
        return (type(f).__name__, f)
    return (f.opcode, f.fin, f.rsv1, f.payload)


def described(exc):
    """A ProtocolError as comparable data: its type, close code and reason."""
    return (type(exc).__name__, exc.code, exc.reason)


def outcome(parser, chunks, messages=False):
    """What a parser does with each chunk: frames (or, with ``messages``,
    what feed_messages returns), or the error it raised."""
    feed = parser.feed_messages if messages else parser.feed
    result = []
    for chunk in chunks:
        try:
            frames = feed(chunk)
            result.append([item(f) for f in frames])
        except ProtocolError as exc:
            result.append(described(exc))
        except Exception as exc:  # anything else is a bug in either twin
            result.append(("UNEXPECTED", type(exc).__name__, str(exc)))
    err = parser.error
    result.append(None if err is None else described(err))
    return result


def chunked(data, cuts):
    cuts = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for c in cuts:
        pieces.append(data[last:c])
        last = c
    pieces.append(data[last:])
    return pieces + [b""]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    frames=st.lists(raw_frame(), min_size=1, max_size=6),
    cuts=st.lists(st.integers(0, 10**6), max_size=8),
    mask_required=st.booleans(),
    allow_rsv1=st.booleans(),
    max_frame_size=st.sampled_from([0, 1, 125, 126, 65535, 65536, 16 * 2**20]),
    max_rsv1_frame_size=st.sampled_from([None, 0, 125, 126, 65536]),
    messages=st.booleans(),
)
def test_parsers_agree(frames, cuts, mask_required, allow_rsv1, max_frame_size, max_rsv1_frame_size,
                       messages):
    data = b"".join(frames)
    chunks = chunked(data, cuts)
    kw = dict(mask_required=mask_required, allow_rsv1=allow_rsv1, max_frame_size=max_frame_size,
              max_rsv1_frame_size=max_rsv1_frame_size)
    py = outcome(PY.FrameParser(**kw), chunks, messages)
    cy = outcome(CY.FrameParser(**kw), chunks, messages)
    assert py == cy
    assert not any(isinstance(r, tuple) and r[0] == "UNEXPECTED" for r in py)


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(
        st.one_of(
            st.text(max_size=20).map(lambda s: s.encode("utf-8", "surrogatepass")),
            st.binary(max_size=12),
            st.sampled_from([b"\xed\xa0", b"\xf4\x90", b"\xe0\x9f", b"\xf0\x8f", b"\xc0", b"\x80"]),
        ),
        max_size=8,
    ),
    final=st.booleans(),
)
def test_utf8_validators_agree(pieces, final):
    results = []
    for impl in (PY, CY):
        v = impl.Utf8Validator()
        out = []
        for i, piece in enumerate(pieces):
            try:
                v.feed(piece, final=final and i == len(pieces) - 1)
                out.append("ok")
            except ProtocolError as exc:
                out.append(described(exc))
        results.append(out)
    assert results[0] == results[1]
    whole = b"".join(pieces)
    assert PY.validate_utf8(whole) == CY.validate_utf8(whole)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=3000), mask=st.binary(min_size=4, max_size=4), start=st.integers(0, 40))
def test_masks_agree(data, mask, start):
    view = memoryview(data)[min(start, len(data)) :]
    assert PY.apply_mask(view, mask) == CY.apply_mask(view, mask)
    a, b = bytearray(data), bytearray(data)
    PY.apply_mask_inplace(memoryview(a)[min(start, len(a)) :], mask)
    CY.apply_mask_inplace(memoryview(b)[min(start, len(b)) :], mask)
    assert a == b


@settings(max_examples=200, deadline=None)
@given(
    opcode=st.sampled_from([0, 1, 2, 8, 9, 10]),
    payload=st.binary(max_size=300),
    fin=st.booleans(),
    rsv1=st.booleans(),
    mask=st.one_of(st.none(), st.binary(min_size=4, max_size=4)),
)
def test_builders_agree(opcode, payload, fin, rsv1, mask):
    assert PY.build_frame(opcode, payload, fin=fin, rsv1=rsv1, mask_key=mask) == CY.build_frame(
        opcode, payload, fin=fin, rsv1=rsv1, mask_key=mask
    )


@settings(max_examples=200, deadline=None)
@given(
    payload=st.binary(max_size=400),
    opcode=st.sampled_from([0, 1, 2, 9]),
    masked=st.booleans(),
    cuts=st.lists(st.integers(0, 500), max_size=6),
    start=st.integers(0, 450),
)
def test_partials_agree(payload, opcode, masked, cuts, start):
    if opcode == 9:
        payload = payload[:125]
    wire = PY.build_frame(opcode, payload, mask_key=b"\x01\x02\x03\x04" if masked else None)
    parsers = [impl.FrameParser(mask_required=masked) for impl in (PY, CY)]
    last = 0
    for cut in sorted(c % (len(wire) + 1) for c in cuts):
        got = []
        for p in parsers:
            frames = p.feed(wire[last:cut])
            got.append(
                ([f.payload for f in frames], p.buffered, p.partial(start), p.partial(), p.partial_opcode)
            )
        assert got[0] == got[1]
        last = cut


def outcome_through_windows(parser, chunks, sizes):
    """What a parser gives for ``chunks`` read as a socket reader would read
    them: into window() while there is one (``sizes`` picks each read's
    length), else through feed(). The twins lend windows of different
    lengths, so this compares the flat sequence of frames and errors."""
    result = []
    sizes = iter(sizes)
    for chunk in chunks:
        pos = 0
        while True:
            try:
                win = parser.window(next(sizes, 1))
                if win is None:
                    result += [item(f) for f in parser.feed(chunk[pos:])]
                    break
                n = min(len(win), len(chunk) - pos)
                win[:n] = chunk[pos : pos + n]
                result += [item(f) for f in parser.commit(n)]
                pos += n
                if pos == len(chunk):
                    break
            except ProtocolError as exc:
                result.append(described(exc))
                break
            except Exception as exc:  # anything else is a bug in either twin
                result.append(("UNEXPECTED", type(exc).__name__, str(exc)))
                break
    err = parser.error
    result.append(None if err is None else described(err))
    return result


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    frames=st.lists(raw_frame(), min_size=1, max_size=6),
    cuts=st.lists(st.integers(0, 10**6), max_size=8),
    mask_required=st.booleans(),
    max_frame_size=st.sampled_from([0, 125, 65536, 16 * 2**20]),
    minimums=st.lists(st.integers(0, 300), max_size=12),
    lower_to=st.sampled_from([None, 0, 100]),
)
def test_parsers_agree_through_windows(frames, cuts, mask_required, max_frame_size, minimums,
                                       lower_to):
    data = b"".join(frames)
    chunks = chunked(data, cuts)
    results = []
    for twin in (PY, CY):
        parser = twin.FrameParser(mask_required=mask_required, max_frame_size=max_frame_size)
        got = outcome_through_windows(parser, chunks[:2], minimums)
        if lower_to is not None:  # as Connection does between fragments
            parser.max_frame_size = lower_to
        got += outcome_through_windows(parser, chunks[2:], minimums)
        results.append(got)
    assert results[0] == results[1]
    assert not any(isinstance(r, tuple) and r[0] == "UNEXPECTED" for r in results[0])
