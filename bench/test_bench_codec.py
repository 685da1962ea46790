"""Codec micro-benchmarks: Cython and Python side by side, with the peers'
fastest equivalents as references in the same run.

    python -m pytest bench/test_bench_codec.py --benchmark-warmup=on --benchmark-json=bench/results/codec.json
    python bench/codec_report.py bench/results/codec.json > bench/results/codec.md

Groups: mask-<size> (copying), mask-inplace-<size>, parse-10k-64B, parse-1MiB,
utf8-ascii-1MiB, utf8-mixed-1MiB. The ratios, not the absolute numbers, are
what to compare: these machines are noisy.
"""

import os

import pytest

from wsfast import codec

PY = codec.AVAILABLE["python"]
CY = codec.AVAILABLE.get("cython")

try:
    from websockets.speedups import apply_mask as websockets_apply_mask
except ImportError:  # pragma: no cover - reference only
    websockets_apply_mask = None
try:
    from aiohttp._websocket.mask import _websocket_mask_cython as aiohttp_mask
except ImportError:  # pragma: no cover - reference only
    aiohttp_mask = None

MASK = b"\x37\xfa\x21\x3d"
SIZES = {"125B": 125, "1KiB": 1024, "64KiB": 65536, "1MiB": 2**20, "16MiB": 16 * 2**20}


def _impls():
    out = [("wsfast-python", PY)]
    if CY is not None:
        out.insert(0, ("wsfast-cython", CY))
    return out


# -- masking ---------------------------------------------------------------------

copying = [(name, m.apply_mask) for name, m in _impls()]
if websockets_apply_mask is not None:
    copying.append(("websockets-c", websockets_apply_mask))


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("name,fn", copying, ids=[c[0] for c in copying])
def test_mask(benchmark, name, fn, size):
    data = os.urandom(SIZES[size])
    benchmark.group = f"mask-{size}"
    benchmark.extra_info["bytes"] = len(data)
    out = benchmark(fn, data, MASK)
    assert len(out) == len(data)


inplace = [(name, m.apply_mask_inplace) for name, m in _impls()]
if aiohttp_mask is not None:
    inplace.append(("aiohttp-cython", lambda buf, mask: aiohttp_mask(mask, buf)))


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("name,fn", inplace, ids=[c[0] for c in inplace])
def test_mask_inplace(benchmark, name, fn, size):
    buf = bytearray(os.urandom(SIZES[size]))
    benchmark.group = f"mask-inplace-{size}"
    benchmark.extra_info["bytes"] = len(buf)
    benchmark(fn, buf, MASK)


def test_memcpy_reference(benchmark):
    """A plain copy of 1 MiB, the floor for a copying mask."""
    data = os.urandom(2**20)
    benchmark.group = "mask-1MiB"
    benchmark.extra_info["bytes"] = len(data)
    benchmark(bytes, bytearray(data))


# -- parsing ---------------------------------------------------------------------


def _parse_all(impl, data):
    return impl.FrameParser(mask_required=True).feed(data)


@pytest.mark.parametrize("name,impl", _impls(), ids=[c[0] for c in _impls()])
def test_parse_10k_frames(benchmark, name, impl):
    data = b"".join(PY.build_frame(2, os.urandom(64), mask_key=os.urandom(4)) for _ in range(10_000))
    benchmark.group = "parse-10k-64B"
    benchmark.extra_info["bytes"] = len(data)
    frames = benchmark(_parse_all, impl, data)
    assert len(frames) == 10_000


@pytest.mark.parametrize("name,impl", _impls(), ids=[c[0] for c in _impls()])
def test_parse_1mib_frame(benchmark, name, impl):
    data = PY.build_frame(2, os.urandom(2**20), mask_key=MASK)
    benchmark.group = "parse-1MiB"
    benchmark.extra_info["bytes"] = len(data)
    frames = benchmark(_parse_all, impl, data)
    assert len(frames[0].payload) == 2**20


# -- UTF-8 -----------------------------------------------------------------------

ASCII = (b"The quick brown fox jumps over the lazy dog. " * 30000)[: 2**20]
_mixed = ("Grüße, κόσμε, こんにちは, 😀 emoji, plain ascii text " * 20000).encode("utf-8")
MIXED = _mixed[: 2**20].decode("utf-8", "ignore").encode("utf-8")


def _validator(impl):
    def run(data):
        v = impl.Utf8Validator()
        v.feed(data, final=True)

    return run


def _decode(data):
    data.decode("utf-8")


utf8 = []
for _name, _m in _impls():
    utf8.append((_name + " validate_utf8", _m.validate_utf8))
    utf8.append((_name + " Utf8Validator", _validator(_m)))
utf8.append(("bytes.decode", _decode))


@pytest.mark.parametrize("corpus", ["ascii", "mixed"])
@pytest.mark.parametrize("name,fn", utf8, ids=[u[0].replace(" ", "-") for u in utf8])
def test_utf8(benchmark, name, fn, corpus):
    data = ASCII if corpus == "ascii" else MIXED
    benchmark.group = f"utf8-{corpus}-1MiB"
    benchmark.extra_info["bytes"] = len(data)
    benchmark(fn, data)
