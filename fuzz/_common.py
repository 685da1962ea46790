"""What the harnesses share: the import path, the two codecs, how an outcome
is compared, and the entry point that hands a harness to atheris.

A harness module defines ``test_one_input(data: bytes)`` and calls
:func:`main` under ``if __name__ == "__main__"``. Inside it, a documented
exception of the code under test is an *outcome* (compared between the twins
where there are two); any other exception, and any difference between the
twins, escapes and is a finding: atheris stops, prints the traceback and
writes the input to ``crash-<sha1>`` (``fuzz/run.py`` collects them).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# The wsfast to fuzz: this checkout's, or another tree's (fuzz/sanitize.sh
# points WSFAST_FUZZ_TREE at a copy with an ASan/UBSan-built extension).
ROOT = os.environ.get("WSFAST_FUZZ_TREE") or os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import atheris  # noqa: E402

if os.environ.get("WSFAST_FUZZ_NO_INSTRUMENT"):  # fuzz/replay.py: no coverage to collect
    from wsfast import codec as _codec  # noqa: E402
else:
    with atheris.instrument_imports(include=["wsfast"]):
        from wsfast import codec as _codec  # noqa: E402

if os.environ.get("WSFAST_FUZZ_TREE") and not _codec.__file__.startswith(ROOT):
    raise ImportError(f"wsfast came from {_codec.__file__}, not from WSFAST_FUZZ_TREE={ROOT}")

PY = _codec.AVAILABLE["python"]
CY = _codec.AVAILABLE.get("cython")  # None without the extension: no differential


class Disagreement(AssertionError):
    """The two codecs (or two feedings that must be equal) differ."""


def described(exc):
    """An exception as comparable data: its type and what it says (for a
    ProtocolError its close code and reason)."""
    code = getattr(exc, "code", None)
    if code is not None:
        return ("raised", type(exc).__name__, code, exc.reason)
    status = getattr(exc, "status", None)
    if status is not None:
        return ("raised", type(exc).__name__, status, exc.reason)
    return ("raised", type(exc).__name__, str(exc))


def agree(what, a, b, context=None):
    if a != b:
        raise Disagreement(f"{what}: python {a!r} != cython {b!r}" + (f" ({context})" if context else ""))


def main(test_one_input):
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


class Reader:
    """The fuzzer's bytes read as a little program's operands. Simpler than
    atheris' FuzzedDataProvider on purpose: :class:`Writer` produces the same
    layout, so ``fuzz/seeds.py`` can write meaningful seed inputs. Reads past
    the end give zeros (and empty bytes)."""

    __slots__ = ("data", "pos")

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def u8(self):
        pos = self.pos
        if pos >= len(self.data):
            return 0
        self.pos = pos + 1
        return self.data[pos]

    def int(self, lo, hi):
        span = hi - lo + 1
        value = self.u8()
        if span > 256:
            value |= self.u8() << 8
            if span > 65536:
                value |= self.u8() << 16
        return lo + value % span

    def bool(self):
        return bool(self.u8() & 1)

    def pick(self, values):
        return values[self.u8() % len(values)]

    def take(self, n):
        pos = self.pos
        self.pos = min(pos + n, len(self.data))
        return self.data[pos : self.pos]

    def blob(self, maximum):
        """A length (up to ``maximum``), then that many bytes."""
        return self.take(self.int(0, maximum))

    def text(self, maximum):
        raw = self.blob(maximum)
        if raw[:1] == b"\x00":  # any code point below 256, NUL and controls included
            return raw[1:].decode("latin-1")
        return raw.decode("utf-8", "replace")

    def rest(self):
        data = self.data[self.pos :]
        self.pos = len(self.data)
        return data

    @property
    def exhausted(self):
        return self.pos >= len(self.data)


class Writer:
    """Builds the input a :class:`Reader` reads back (for seeds)."""

    def __init__(self):
        self.out = bytearray()

    def u8(self, value):
        self.out.append(value & 0xFF)
        return self

    def int(self, lo, hi, value):
        span = hi - lo + 1
        v = value - lo
        self.out.append(v & 0xFF)
        if span > 256:
            self.out.append((v >> 8) & 0xFF)
            if span > 65536:
                self.out.append((v >> 16) & 0xFF)
        return self

    def bool(self, value):
        return self.u8(1 if value else 0)

    def pick(self, values, value):
        return self.u8(values.index(value))

    def take(self, data):
        self.out += data
        return self

    def blob(self, maximum, data):
        assert len(data) <= maximum
        self.int(0, maximum, len(data))
        self.out += data
        return self

    def text(self, maximum, text):
        return self.blob(maximum, text.encode("utf-8"))

    def bytes(self):
        return bytes(self.out)


def read_dict(path):
    """The tokens of a libFuzzer dictionary file."""
    tokens = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and '"' in line:
                raw = line[line.index('"') + 1 : line.rindex('"')]
                tokens.append(raw.encode("latin-1").decode("unicode_escape").encode("latin-1"))
    return tokens


def mutants(seeds, tokens, count, rng):
    """``count`` inputs made from ``seeds`` by a few random edits each (bit
    flips, byte changes, cuts, duplications, dictionary tokens, splices):
    a small deterministic stand-in for libFuzzer, for tests that must run
    in a fixed time without it."""
    seeds = [s for s in seeds if s] or [b"\x00" * 8]
    for _ in range(count):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(7)
            pos = rng.randrange(len(data) + 1)
            if op == 0 and data:
                i = rng.randrange(len(data))
                data[i] ^= 1 << rng.randrange(8)
            elif op == 1 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif op == 2 and data:
                del data[pos : pos + rng.randint(1, 16)]
            elif op == 3:
                data[pos:pos] = data[pos : pos + rng.randint(1, 32)]
            elif op == 4 and tokens:
                data[pos:pos] = rng.choice(tokens)
            elif op == 5:
                other = rng.choice(seeds)
                data[pos:] = other[rng.randrange(len(other) + 1) :]
            else:
                data[pos:pos] = bytes([rng.choice((0, 0xFF, 0x7F, 0x80, 126, 127))])
        yield bytes(data)
