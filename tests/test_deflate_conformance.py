"""Autobahn-12/13-style permessage-deflate checks against the CLI echo server
(``python -m wsfast echo --deflate``, both codecs, in a subprocess).

A tiny raw client, independent of wsfast's codec (Python's zlib and the
frame helpers of ``interop_helpers``), makes each of the offers Autobahn's
section 13 makes (plain, ``client_no_context_takeover``,
``server_no_context_takeover``, ``client_max_window_bits`` with and without
a value, ``server_max_window_bits`` 8..15, combinations, several offers in
one header), checks the answer against RFC 7692 §7.1, then sends messages of
16 B .. 128 KiB compressed with the negotiated client window and context
mode, whole and fragmented (the compressed payload cut at arbitrary bytes, as
Autobahn's auto-fragmentation does, with a ping between fragments), and
inflates the echoes with the negotiated server window, a few bytes of output
at a time so that a back reference beyond the window fails.
"""

import asyncio
import base64
import hashlib
import json
import os
import random
import subprocess
import sys
import zlib

import pytest
from interop_helpers import (
    BINARY,
    CLOSE,
    CONT,
    GUID,
    PING,
    PONG,
    TEXT,
    RawWebSocket,
    free_port,
    parse_head,
    require_codec,
    run_in_loop,
)

import wsfast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAIL = b"\x00\x00\xff\xff"


@pytest.fixture(scope="module", params=["cython", "python"])
def server_port(request):
    """The CLI echo server with --deflate, one per codec for the module."""
    flags = ["--pure-python"] if request.param == "python" else []
    if request.param == "cython":
        require_codec("cython")
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsfast", "echo", "--deflate", "--host", "127.0.0.1",
         "--port", str(port), *flags],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        line = proc.stdout.readline().decode()
        if "permessage-deflate" not in line:
            proc.kill()
            pytest.fail(f"the server did not start: {line!r} {proc.stderr.read().decode()!r}")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- negotiation -------------------------------------------------------------------


def parse_answer(value):
    """``{param: value_or_None}`` of a single permessage-deflate answer."""
    elements = [e.strip() for e in value.split(",")]
    assert len(elements) == 1, f"more than one extension accepted: {value!r}"
    name, *params = [p.strip() for p in elements[0].split(";")]
    assert name == "permessage-deflate", value
    found = {}
    for p in params:
        key, _, val = p.partition("=")
        assert key not in found, f"repeated {key}: {value!r}"
        found[key] = val.strip('"') or None
    return found


def negotiated(offer, answer):
    """What the client must do after ``offer`` (the accepted element's
    params, a dict) and ``answer``: (client_bits, client_reset, server_bits,
    server_reset); checks the answer follows RFC 7692 §7.1."""
    for key, val in answer.items():
        assert key in ("server_no_context_takeover", "client_no_context_takeover",
                       "server_max_window_bits", "client_max_window_bits"), key
        if key.endswith("takeover"):
            assert val is None
        else:
            assert val is not None and val in {str(b) for b in range(8, 16)}, (key, val)
    if "server_no_context_takeover" in offer:
        assert "server_no_context_takeover" in answer  # §7.1.1.1: must be accepted
    if "server_max_window_bits" in offer:
        assert "server_max_window_bits" in answer
        assert int(answer["server_max_window_bits"]) <= int(offer["server_max_window_bits"])
    if "client_max_window_bits" not in offer:
        assert "client_max_window_bits" not in answer  # §7.1.2.2
    elif offer["client_max_window_bits"] is not None and "client_max_window_bits" in answer:
        assert int(answer["client_max_window_bits"]) <= int(offer["client_max_window_bits"])
    client_bits = int(answer.get("client_max_window_bits") or offer.get("client_max_window_bits") or 15)
    # Autobahn's reading: client_no_context_takeover in an offer means "I
    # accept it if asked"; the client resets only if the answer says so. (The
    # RFC's reading, a promise to reset, is the easier case for a server.)
    client_reset = "client_no_context_takeover" in answer
    server_bits = int(answer.get("server_max_window_bits") or 15)
    server_reset = "server_no_context_takeover" in answer
    return client_bits, client_reset, server_bits, server_reset


# (header value, index of the element expected to be accepted)
OFFERS = [
    "permessage-deflate",
    "permessage-deflate; client_no_context_takeover",
    "permessage-deflate; server_no_context_takeover",
    "permessage-deflate; client_max_window_bits",
    "permessage-deflate; client_no_context_takeover; client_max_window_bits",  # Autobahn's default
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
] + [f"permessage-deflate; server_max_window_bits={b}" for b in range(8, 16)] + [
    f"permessage-deflate; client_max_window_bits={b}" for b in (8, 9, 12, 15)
] + [
    "permessage-deflate; client_max_window_bits; server_max_window_bits=8; server_no_context_takeover",
    "permessage-deflate; client_no_context_takeover; client_max_window_bits=8; server_max_window_bits=15",
    'permessage-deflate; server_max_window_bits="10"; client_max_window_bits="9"',
    # Autobahn 13.7: several offers, the first valid one wins
    ("permessage-deflate; server_max_window_bits=8; server_no_context_takeover, "
     "permessage-deflate; server_no_context_takeover, permessage-deflate"),
    # invalid first offers are declined, the valid one after them accepted
    ("permessage-deflate; server_max_window_bits=7, permessage-deflate; foo, "
     "permessage-deflate; server_no_context_takeover; server_no_context_takeover, "
     "x-webkit-deflate-frame, permessage-deflate; client_max_window_bits=10"),
]


def accepted_element(header):
    """The params of the element a conforming server accepts: the first valid one."""
    for element in header.split(","):
        name, *params = [p.strip() for p in element.split(";")]
        if name != "permessage-deflate":
            continue
        found = {}
        ok = True
        for p in params:
            key, eq, val = p.partition("=")
            val = val.strip('"') if eq else None
            if key in found or key not in ("server_no_context_takeover", "client_no_context_takeover",
                                           "server_max_window_bits", "client_max_window_bits") or key.endswith("takeover") and val is not None or key == "server_max_window_bits" and val not in {str(b) for b in range(8, 16)} or key == "client_max_window_bits" and val is not None and val not in {
                str(b) for b in range(8, 16)
            }:
                ok = False
            found[key] = val
        if ok:
            return found
    raise AssertionError(f"no valid offer in {header!r}")


# -- the client's codec --------------------------------------------------------------


class Deflater:
    """The raw client's compressor: the negotiated window (8 served by zlib's
    9, which never references beyond 250 bytes) and context mode."""

    def __init__(self, bits, reset):
        self.bits = max(bits, 9)
        self.reset = reset
        self.c = None

    def message(self, data):
        if self.c is None or self.reset:
            self.c = zlib.compressobj(6, zlib.DEFLATED, -self.bits, 8)
        out = self.c.compress(data) + self.c.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(TAIL)
        return out[:-4]


class StrictInflater:
    """Inflates the server's messages with exactly the negotiated window,
    ``2**(bits-2)`` bytes of output at a time: a back reference further than
    the window cannot be served from the output buffer and fails."""

    def __init__(self, bits, reset):
        self.bits = bits
        self.reset = reset
        self.d = None
        self.step = 2 ** (bits - 2)

    def message(self, payload):
        if self.d is None or self.reset:
            self.d = zlib.decompressobj(wbits=-self.bits)
        d = self.d
        out = []
        data = payload + TAIL
        while True:
            chunk = d.decompress(data, self.step)
            out.append(chunk)
            data = d.unconsumed_tail
            if not data and len(chunk) < self.step:
                break
        return b"".join(out)


def corpus(seed):
    rnd = random.Random(seed)
    words = ["".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(3, 9)))
             for _ in range(300)]

    def text(size):
        parts = []
        n = 0
        while n < size:
            s = json.dumps({"id": rnd.randint(0, 10**6), "w": " ".join(rnd.choice(words) for _ in range(8))})
            parts.append(s)
            n += len(s)
        return "".join(parts)[:size]

    def binary(size):
        block = bytes(rnd.getrandbits(8) for _ in range(97))
        data = bytearray()
        while len(data) < size:
            data += block if rnd.random() < 0.6 else bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 40)))
        return bytes(data[:size])

    return text, binary


# Autobahn 12.x / 13.x payload sizes, fewer messages per size.
SIZES = [(16, 24), (64, 24), (256, 16), (1024, 12), (4096, 6), (8192, 4), (16384, 3),
         (32768, 2), (65536, 2), (131072, 2)]


async def read_message(raw, inflater):
    """The next data message from the server: (opcode, bytes), inflated
    when RSV1 is set on its first frame. Answers nothing; pongs are returned
    as (PONG, payload)."""
    first = None
    parts = []
    while True:
        f = await raw.read_frame(10)
        assert f is not None, "the server closed the connection"
        if f.op >= 8:
            assert f.rsv == 0, f  # RSV1 never on a control frame
            if first is None:
                return f.op, f.payload
            continue
        if first is None:
            assert f.op in (TEXT, BINARY), f
            assert f.rsv in (0, 4), f
            first = f
        else:
            assert f.op == CONT and f.rsv == 0, f  # RSV1 on the first frame only
        parts.append(f.payload)
        if f.fin:
            payload = b"".join(parts)
            if first.rsv:
                payload = inflater.message(payload)
            return first.op, payload


async def run_offer(port, header, fragment):
    raw = await RawWebSocket.connect(port, headers={"Sec-WebSocket-Extensions": header})
    answer_value = raw.response_fields.get("sec-websocket-extensions")
    assert answer_value, f"offer {header!r} declined"
    offer = accepted_element(header)
    client_bits, client_reset, server_bits, server_reset = negotiated(offer, parse_answer(answer_value))
    deflater = Deflater(client_bits, client_reset)
    inflater = StrictInflater(server_bits, server_reset)
    text, binary = corpus(hash(header) & 0xFFFF)
    rnd = random.Random(len(header))
    compressed_echoes = 0
    for size, count in SIZES:
        for i in range(count):
            if i % 2:
                op, data = BINARY, binary(size)
            else:
                op, data = TEXT, text(size).encode()
            payload = deflater.message(data)
            if fragment and len(payload) > 1:
                # cut the compressed payload at arbitrary bytes; a ping in the middle
                cuts = sorted(rnd.sample(range(1, len(payload)), min(3, len(payload) - 1)))
                pieces = [payload[a:b] for a, b in zip([0] + cuts, cuts + [len(payload)])]
                frames = [raw.frame(op, pieces[0], fin=False, rsv=4)]
                for j, piece in enumerate(pieces[1:]):
                    if j == 0:
                        frames.append(raw.frame(PING, b"mid"))
                    frames.append(raw.frame(CONT, piece, fin=j == len(pieces) - 2))
                await raw.send(*frames)
                assert await read_message(raw, inflater) == (PONG, b"mid")
            else:
                await raw.send_frame(op, payload, rsv=4)
            got_op, got = await read_message(raw, inflater)
            assert got_op == op and got == data, (size, i, len(got), len(data))
            compressed_echoes += size >= 128
    # an uncompressed message (RSV1 clear) is fine too, at any time
    await raw.send_frame(TEXT, b"plain")
    assert await read_message(raw, inflater) == (TEXT, b"plain")
    await raw.send_frame(CLOSE, b"\x03\xe8")
    f = await raw.read_frame(5)
    assert f.op == CLOSE and f.code == 1000
    await raw.expect_eof(5)
    return compressed_echoes


@pytest.mark.parametrize("fragment", [False, True], ids=["whole", "fragmented"])
@pytest.mark.parametrize("header", OFFERS)
def test_offer(server_port, header, fragment):
    assert run_in_loop("asyncio", run_offer(server_port, header, fragment), timeout=60) > 0


@pytest.mark.parametrize(
    "header",
    [
        "permessage-deflate; server_max_window_bits",  # needs a value
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; client_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; mystery",
        "x-webkit-deflate-frame",
    ],
)
def test_invalid_offers_are_declined(server_port, header):
    async def main():
        raw = await RawWebSocket.connect(server_port, headers={"Sec-WebSocket-Extensions": header})
        assert "sec-websocket-extensions" not in raw.response_fields
        # and the connection works without compression; RSV1 is now an error
        await raw.send_frame(TEXT, b"x" * 300)
        f = await raw.read_frame()
        assert (f.op, f.rsv, f.payload) == (TEXT, 0, b"x" * 300)
        await raw.send_frame(TEXT, zlib.compress(b"y")[2:-4], rsv=4)
        await raw.expect_close(1002)

    run_in_loop("asyncio", main())


@pytest.mark.parametrize(
    "frames, code",
    [
        # RSV1 on a continuation frame
        (lambda raw, z: [raw.frame(TEXT, z[:3], fin=False, rsv=4), raw.frame(CONT, z[3:], rsv=4)], 1002),
        # RSV1 on a control frame
        (lambda raw, z: [raw.frame(PING, b"p", rsv=4)], 1002),
        # compressed garbage
        (lambda raw, z: [raw.frame(BINARY, b"\x07\xff\x00garbage", rsv=4)], 1007),
        # compressed text that inflates to invalid UTF-8
        (lambda raw, z: [raw.frame(TEXT, Deflater(15, True).message(b"ok \xc3\x28"), rsv=4)], 1007),
    ],
    ids=["rsv1-on-continuation", "rsv1-on-ping", "garbage", "bad-utf8-inside"],
)
def test_compression_errors(server_port, frames, code):
    async def main():
        raw = await RawWebSocket.connect(server_port, headers={"Sec-WebSocket-Extensions": "permessage-deflate"})
        z = Deflater(15, False).message(b"hello hello hello hello")
        await raw.send(*frames(raw, z))
        await raw.expect_close(code)

    run_in_loop("asyncio", main())


# -- the client: wsfast.connect against a raw server's answers ---------------------------

# What an Autobahn fuzzing server answers to our offer (``permessage-deflate;
# client_max_window_bits``) in sections 12 and 13: (answer, client_bits,
# client_reset, server_bits, server_reset) as the raw server then applies them.
ANSWERS = [
    ("permessage-deflate", 15, False, 15, False),
    ("permessage-deflate; client_max_window_bits=8", 8, False, 15, False),
    ("permessage-deflate; client_max_window_bits=15", 15, False, 15, False),
    ("permessage-deflate; client_no_context_takeover; client_max_window_bits=8", 8, True, 15, False),
    ("permessage-deflate; client_no_context_takeover; client_max_window_bits=15", 15, True, 15, False),
    ("permessage-deflate; client_no_context_takeover", 15, True, 15, False),
    ("permessage-deflate; server_no_context_takeover", 15, False, 15, True),
    ("permessage-deflate; server_max_window_bits=8", 15, False, 8, False),
    ("permessage-deflate; server_max_window_bits=9; server_no_context_takeover", 15, False, 9, True),
    (("permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
      "server_max_window_bits=10; client_max_window_bits=11"), 11, True, 10, True),
]


async def run_client_against(answer, client_bits, client_reset, server_bits, server_reset,
                             fragment, codec):
    # Our client compresses with at most 12 bits (DeflateOptions' default)
    # whatever a larger answer allows; the strict inflater checks the limit
    # the answer set, which is the contract.
    deflater = Deflater(server_bits, server_reset)
    inflater = StrictInflater(client_bits, client_reset)
    text, binary = corpus(len(answer))
    rnd = random.Random(len(answer))
    done = asyncio.get_running_loop().create_future()

    async def handle(reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            _, fields = parse_head(head)
            assert fields["sec-websocket-extensions"] == "permessage-deflate; client_max_window_bits"
            accept = base64.b64encode(
                hashlib.sha1((fields["sec-websocket-key"] + GUID).encode()).digest()
            ).decode()
            writer.write(
                ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Extensions: {answer}\r\n\r\n").encode()
            )
            raw = RawWebSocket(reader, writer, client=False)
            n = 0
            for size, count in SIZES:
                for i in range(count):
                    op, data = (BINARY, binary(size)) if i % 2 else (TEXT, text(size).encode())
                    payload = deflater.message(data)
                    if fragment and len(payload) > 1:
                        cuts = sorted(rnd.sample(range(1, len(payload)), min(3, len(payload) - 1)))
                        pieces = [payload[a:b] for a, b in zip([0] + cuts, cuts + [len(payload)])]
                        frames = [raw.frame(op, pieces[0], fin=False, rsv=4)]
                        frames += [raw.frame(CONT, p, fin=j == len(pieces) - 2)
                                   for j, p in enumerate(pieces[1:])]
                        await raw.send(*frames)
                    else:
                        await raw.send_frame(op, payload, rsv=4)
                    got_op, got = await read_message(raw, inflater)
                    assert got_op == op and got == data, (size, i)
                    n += 1
            await raw.send_frame(CLOSE, b"\x03\xe8")
            f = await raw.read_frame(5)
            assert f.op == CLOSE
            writer.close()
            done.set_result(n)
        except BaseException as exc:  # noqa: BLE001 - reported by the test, not lost in the server task
            if not done.done():
                done.set_exception(exc)
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        async with wsfast.connect(f"ws://127.0.0.1:{port}/", compression="deflate", codec=codec) as ws:
            (ext,) = ws.extensions
            assert ext.local_max_window_bits <= client_bits
            assert ext.remote_max_window_bits == server_bits
            assert ext.local_no_context_takeover == client_reset
            assert ext.remote_no_context_takeover == server_reset
            async for message in ws:
                await ws.send(message)
        return await asyncio.wait_for(done, 5)


@pytest.mark.parametrize("codec", ["cython", "python"])
@pytest.mark.parametrize("fragment", [False, True], ids=["whole", "fragmented"])
@pytest.mark.parametrize("answer, client_bits, client_reset, server_bits, server_reset", ANSWERS,
                         ids=[a[0].replace("permessage-deflate", "pmd") for a in ANSWERS])
def test_client_answer(answer, client_bits, client_reset, server_bits, server_reset, fragment, codec):
    require_codec(codec)
    n = run_in_loop("asyncio", run_client_against(
        answer, client_bits, client_reset, server_bits, server_reset, fragment, codec), timeout=60)
    assert n == sum(count for _, count in SIZES)
