"""Our own Autobahn-style conformance suite, over raw TCP.

Each case is written once, against a :class:`~interop_helpers.RawWebSocket`
peer, and run two ways:

* ``test_server``: the peer is a raw *client* and the endpoint under test is
  the echo server: the CLI (``python -m wsfast echo``, with and without
  ``--pure-python`` / ``--no-uvloop``) in a subprocess, or, while the CLI is
  not there, an in-process ``Application`` echo server in a thread on asyncio
  or uvloop with either codec (``WSFAST_CONFORMANCE_TARGET=inproc|cli|both``
  forces a choice);
* ``test_client``: the peer is a raw *server* and the endpoint under test is
  the ``wsfast.connect`` echo client of ``tests/conformance_client.py``, in a
  thread on asyncio or uvloop with either codec.

Strict, as the external suite's "strict" verdict: the exact close code, then
the server closes TCP, within a timeout; nothing sent for a frame that failed
the connection; UTF-8 failing in the fragment where the bad byte arrives.
Section numbers follow Autobahn|Testsuite's. The opening-handshake cases at the
end check refusals and that the server keeps serving everyone else.
"""

import asyncio
import functools
import importlib.util
import os
import re
import select
import subprocess
import sys
import time

import pytest
from conformance_client import echo_once
from interop_helpers import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    LoopThread,
    RawWebSocket,
    close_payload,
    echo_app,
    parse_head,
    require_codec,
    run_in_loop,
)

import wsfast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MiB = 2**20
LIMIT = MiB  # the message limit of the "limited" server and client (section 9.x over-limit cases)

# -- the case registry ------------------------------------------------------------


class Case:
    def __init__(self, fn, limited=False, slow=False, sides=("server", "client"), timeout=15.0):
        self.fn, self.limited, self.slow, self.sides, self.timeout = fn, limited, slow, sides, timeout


CASES = {}


def add(case_id, fn, **meta):
    assert case_id not in CASES, case_id
    CASES[case_id] = Case(fn, **meta)


def case(case_id, **meta):
    def deco(fn):
        add(case_id, fn, **meta)
        return fn

    return deco


def text_payload(n):
    return b"*" * n


def binary_payload(n):
    return (bytes(range(256)) * (n // 256 + 1))[:n]


def payload_for(op, n):
    return text_payload(n) if op == TEXT else binary_payload(n)


OPNAME = {TEXT: "text", BINARY: "binary"}


async def echo_check(ws, op, payload, *, chop=None, fragment=None):
    """Send ``payload`` as one message (in fragments of ``fragment`` bytes if
    given; written in writes of ``chop`` bytes if given), expect it back."""
    if fragment:
        frames = []
        for i in range(0, max(len(payload), 1), fragment):
            part = payload[i : i + fragment]
            last = i + fragment >= len(payload)
            frames.append(ws.frame(op if i == 0 else CONT, part, fin=last))
        data = b"".join(frames)
    else:
        data = ws.frame(op, payload)
    if chop:
        await ws.send_chopped(data, chop)
    else:
        await ws.send(data)
    await ws.expect((op, payload), timeout=30)


# -- 1: framing ------------------------------------------------------------------

for _op in (TEXT, BINARY):
    for _n in (0, 1, 125, 126, 127, 128, 65535, 65536):
        # Small frames one byte per write; big ones in 997-byte writes (Autobahn 1.1.8).
        for _how, _chop in (("whole", None), ("bytewise", 1) if _n < 1000 else ("chops-of-997", 997)):

            async def _framing(ws, op=_op, n=_n, chop=_chop):
                await echo_check(ws, op, payload_for(op, n), chop=chop)
                return await ws.close()

            add(f"1-{OPNAME[_op]}-{_n}-{_how}", _framing)


@case("1-two-messages-one-write")
async def _(ws):
    await ws.send(ws.frame(TEXT, b"first"), ws.frame(BINARY, b"\x00second"))
    await ws.expect((TEXT, b"first"), (BINARY, b"\x00second"))
    return await ws.close()


@case("1-64bit-length-msb-set")
async def _(ws):
    # RFC 6455 §5.2: the most significant bit of a 64-bit length must be 0.
    await ws.send(ws.frame(BINARY, b"x", length=2**63 + 1))
    return await ws.expect_close(1002)


@case("1-wrong-masking-direction")
async def _(ws):
    # RFC 6455 §5.1: client frames are masked, server frames are not.
    await ws.send(ws.frame(TEXT, b"Hello", mask=not ws.client))
    return await ws.expect_close(1002)


# -- 2: pings and pongs --------------------------------------------------------------

for _name, _payload in (
    ("empty", b""),
    ("text", b"Hello, world!"),
    ("binary", bytes([0x00, 0xFF, 0xFE, 0xFD, 0xFC, 0xFB, 0x00, 0xFF])),
    ("125", binary_payload(125)),
):

    async def _ping(ws, payload=_payload):
        await ws.send_frame(PING, payload)
        await ws.expect((PONG, payload))
        return await ws.close()

    add(f"2-ping-{_name}", _ping)


@case("2-ping-126-fails")
async def _(ws):
    await ws.send_frame(PING, binary_payload(126))
    return await ws.expect_close(1002)


@case("2-ping-125-bytewise")
async def _(ws):
    await ws.send_chopped(ws.frame(PING, binary_payload(125)), 1)
    await ws.expect((PONG, binary_payload(125)))
    return await ws.close()


@case("2-unsolicited-pong-empty")
async def _(ws):
    await ws.send_frame(PONG, b"")
    return await ws.close()  # nothing may come before the close reply


@case("2-unsolicited-pong-payload")
async def _(ws):
    await ws.send_frame(PONG, b"unsolicited pong payload")
    return await ws.close()


@case("2-unsolicited-pong-then-ping")
async def _(ws):
    await ws.send(ws.frame(PONG, b"unsolicited"), ws.frame(PING, b"solicited"))
    await ws.expect((PONG, b"solicited"))
    return await ws.close()


@case("2-ten-pings-one-write")
async def _(ws):
    payloads = [f"payload-{i}".encode() for i in range(10)]
    await ws.send(*(ws.frame(PING, p) for p in payloads))
    await ws.expect(*((PONG, p) for p in payloads))
    return await ws.close()


@case("2-ten-pings-separate-writes")
async def _(ws):
    payloads = [f"payload-{i}".encode() for i in range(10)]
    for p in payloads:
        await ws.send_frame(PING, p)
        await asyncio.sleep(0.001)
    await ws.expect(*((PONG, p) for p in payloads))
    return await ws.close()


# -- 3: reserved bits ------------------------------------------------------------------

for _rsv in range(1, 8):

    async def _rsv_text(ws, rsv=_rsv):
        await ws.send_frame(TEXT, b"Hello", rsv=rsv)
        return await ws.expect_close(1002)

    add(f"3-rsv{_rsv}-text", _rsv_text)


async def _rsv_after_valid(ws, rsv, how):
    frames = [ws.frame(TEXT, b"Hello"), ws.frame(TEXT, b"Hello", rsv=rsv), ws.frame(PING, b"ping")]
    if how == "one-write":
        await ws.send(*frames)
    elif how == "separate-writes":
        for f in frames:
            await ws.send(f)
            await asyncio.sleep(0.002)
    else:
        await ws.send_chopped(b"".join(frames), 1)
    # The valid message is echoed; the bad frame fails the connection; the
    # ping behind it is never answered.
    await ws.expect((TEXT, b"Hello"))
    return await ws.expect_close(1002)


for _rsv in (2, 4):
    for _how in ("one-write", "separate-writes", "bytewise"):
        add(f"3-rsv{_rsv}-after-valid-{_how}", functools.partial(_rsv_after_valid, rsv=_rsv, how=_how))

for _name, _op, _payload, _rsv in (
    ("binary", BINARY, b"\x00\xff", 5),
    ("ping", PING, b"Hello", 6),
    ("close", CLOSE, close_payload(1000), 7),
    ("pong", PONG, b"", 1),
):

    async def _rsv_other(ws, op=_op, payload=_payload, rsv=_rsv):
        await ws.send_frame(op, payload, rsv=rsv)
        return await ws.expect_close(1002)

    add(f"3-rsv{_rsv}-{_name}", _rsv_other)


@case("3-rsv1-continuation")
async def _(ws):
    await ws.send(ws.frame(TEXT, b"frag", fin=False), ws.frame(CONT, b"ment", rsv=4))
    return await ws.expect_close(1002)


# -- 4: reserved opcodes -------------------------------------------------------------------

for _op in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15):

    async def _reserved(ws, op=_op):
        await ws.send_frame(op, b"")
        return await ws.expect_close(1002)

    async def _reserved_payload(ws, op=_op):
        await ws.send_frame(op, b"reserved opcode payload")
        return await ws.expect_close(1002)

    async def _reserved_after_valid(ws, op=_op):
        await ws.send(ws.frame(TEXT, b"Hello"), ws.frame(op, b"x"), ws.frame(PING, b"ping"))
        await ws.expect((TEXT, b"Hello"))
        return await ws.expect_close(1002)  # and no pong: nothing after the close

    add(f"4-opcode{_op}-empty", _reserved)
    add(f"4-opcode{_op}-payload", _reserved_payload)
    add(f"4-opcode{_op}-after-valid-then-ping", _reserved_after_valid)


# -- 5: fragmentation --------------------------------------------------------------------------


@case("5-ping-fragmented")
async def _(ws):
    await ws.send(ws.frame(PING, b"frag", fin=False), ws.frame(CONT, b"ment"))
    return await ws.expect_close(1002)


@case("5-pong-fragmented")
async def _(ws):
    await ws.send(ws.frame(PONG, b"frag", fin=False), ws.frame(CONT, b"ment"))
    return await ws.expect_close(1002)


@case("5-close-fragmented")
async def _(ws):
    await ws.send(ws.frame(CLOSE, close_payload(1000), fin=False), ws.frame(CONT, b""))
    return await ws.expect_close(1002)


for _op in (TEXT, BINARY):
    for _how in ("one-write", "separate-writes", "bytewise"):

        async def _two_fragments(ws, op=_op, how=_how):
            frames = [ws.frame(op, b"fragment1", fin=False), ws.frame(CONT, b"fragment2")]
            if how == "one-write":
                await ws.send(*frames)
            elif how == "separate-writes":
                for f in frames:
                    await ws.send(f)
                    await asyncio.sleep(0.002)
            else:
                await ws.send_chopped(b"".join(frames), 1)
            await ws.expect((op, b"fragment1fragment2"))
            return await ws.close()

        add(f"5-{OPNAME[_op]}-two-fragments-{_how}", _two_fragments)

for _how in ("one-write", "separate-writes", "bytewise"):

    async def _ping_between(ws, how=_how):
        frames = [
            ws.frame(TEXT, b"fragment1", fin=False),
            ws.frame(PING, b"ping payload"),
            ws.frame(CONT, b"fragment2"),
        ]
        if how == "one-write":
            await ws.send(*frames)
        elif how == "separate-writes":
            for f in frames:
                await ws.send(f)
                await asyncio.sleep(0.002)
        else:
            await ws.send_chopped(b"".join(frames), 1)
        # The pong goes out at once, before the message is complete.
        await ws.expect((PONG, b"ping payload"), (TEXT, b"fragment1fragment2"))
        return await ws.close()

    add(f"5-ping-between-fragments-{_how}", _ping_between)


@case("5-pong-between-fragments")
async def _(ws):
    await ws.send(
        ws.frame(BINARY, b"\x01", fin=False), ws.frame(PONG, b"unsolicited"), ws.frame(CONT, b"\x02")
    )
    await ws.expect((BINARY, b"\x01\x02"))
    return await ws.close()


@case("5-ping-answered-before-the-message-ends")
async def _(ws):
    await ws.send(ws.frame(TEXT, b"fragment1", fin=False), ws.frame(PING, b"now"))
    await ws.expect((PONG, b"now"), timeout=2)  # while the message is still open
    await ws.send_frame(CONT, b"fragment2")
    await ws.expect((TEXT, b"fragment1fragment2"))
    return await ws.close()


@case("5-five-fragments-two-pings-with-pauses")
async def _(ws):
    for i, (op, fin) in enumerate(((TEXT, False), (CONT, False), (CONT, False), (CONT, False), (CONT, True))):
        await ws.send_frame(op, f"fragment{i + 1}".encode(), fin=fin)
        if i in (1, 3):
            await ws.send_frame(PING, f"pongme {i}".encode())
            await ws.expect((PONG, f"pongme {i}".encode()))
        await asyncio.sleep(0.01)
    await ws.expect((TEXT, b"fragment1fragment2fragment3fragment4fragment5"))
    return await ws.close()


for _how in ("one-write", "separate-writes", "bytewise"):

    async def _cont_without_start(ws, how=_how):
        frames = [ws.frame(CONT, b"non-continuation payload"), ws.frame(TEXT, b"Hello, world!")]
        if how == "one-write":
            await ws.send(*frames)
        elif how == "separate-writes":
            for f in frames:
                await ws.send(f)
                await asyncio.sleep(0.002)
        else:
            await ws.send_chopped(b"".join(frames), 1)
        return await ws.expect_close(1002)  # the text is never echoed

    add(f"5-continuation-fin-without-start-{_how}", _cont_without_start)


@case("5-continuation-nofin-without-start")
async def _(ws):
    await ws.send(ws.frame(CONT, b"fragment1", fin=False), ws.frame(TEXT, b"Hello, world!"))
    return await ws.expect_close(1002)


@case("5-continuation-after-complete-message")
async def _(ws):
    await ws.send(
        ws.frame(TEXT, b"fragment1", fin=False),
        ws.frame(CONT, b"fragment2"),
        ws.frame(CONT, b"fragment3", fin=False),
        ws.frame(TEXT, b"fragment4"),
    )
    await ws.expect((TEXT, b"fragment1fragment2"))
    return await ws.expect_close(1002)


@case("5-text-inside-fragmented-text")
async def _(ws):
    await ws.send(ws.frame(TEXT, b"fragment1", fin=False), ws.frame(TEXT, b"fragment2"))
    return await ws.expect_close(1002)


@case("5-binary-inside-fragmented-text")
async def _(ws):
    await ws.send(ws.frame(TEXT, b"fragment1", fin=False), ws.frame(BINARY, b"fragment2", fin=False))
    return await ws.expect_close(1002)


@case("5-text-three-empty-fragments")
async def _(ws):
    await ws.send(ws.frame(TEXT, b"", fin=False), ws.frame(CONT, b"", fin=False), ws.frame(CONT, b""))
    await ws.expect((TEXT, b""))
    return await ws.close()


@case("5-text-empty-middle-empty")
async def _(ws):
    await ws.send(ws.frame(TEXT, b"", fin=False), ws.frame(CONT, b"middle", fin=False), ws.frame(CONT, b""))
    await ws.expect((TEXT, b"middle"))
    return await ws.close()


@case("5-binary-empty-first-fragment")
async def _(ws):
    await ws.send(ws.frame(BINARY, b"", fin=False), ws.frame(CONT, b"\x00\x01\x02"))
    await ws.expect((BINARY, b"\x00\x01\x02"))
    return await ws.close()


@case("5-text-hundred-one-byte-fragments")
async def _(ws):
    await echo_check(ws, TEXT, text_payload(100), fragment=1)
    return await ws.close()


# -- 6: UTF-8 -------------------------------------------------------------------------------------

VALID_UTF8 = {
    "hello": "Hello-\u00b5@\u00df\u00f6\u00e4\u00fc\u00e0\u00e1-UTF-8!!",
    "kosme": "\u03ba\u1f79\u03c3\u03bc\u03b5",
    "u0000": "\x00",
    "u007f": "\x7f",
    "u0080": "\x80",
    "u07ff": "\u07ff",
    "u0800": "\u0800",
    "ud7ff": "\ud7ff",
    "ue000": "\ue000",
    "ufffd": "\ufffd",
    "ufffe": "\ufffe",
    "uffff": "\uffff",
    "u10000": "\U00010000",
    "u10ffff": "\U0010ffff",
    "mixed": "a\x00\u00df\u0800\U0001f600\ufeffz",
}

# name -> (bytes, truncated): truncated sequences are only invalid at the end
# of the message; the others are invalid at the byte that proves it.
INVALID_UTF8 = {
    "surrogate-in-kosme": (b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited", False),
    "above-10ffff": (b"\xf4\x90\x80\x80", False),
    "overlong-slash-2": (b"\xc0\xaf", False),
    "overlong-slash-3": (b"\xe0\x80\xaf", False),
    "overlong-slash-4": (b"\xf0\x80\x80\xaf", False),
    "overlong-max-2": (b"\xc1\xbf", False),
    "overlong-max-3": (b"\xe0\x9f\xbf", False),
    "overlong-max-4": (b"\xf0\x8f\xbf\xbf", False),
    "surrogate-d800": (b"\xed\xa0\x80", False),
    "surrogate-dfff": (b"\xed\xbf\xbf", False),
    "surrogate-pair": (b"\xed\xa0\x80\xed\xb0\x80", False),
    "stray-continuation": (b"\x80", False),
    "stray-continuations": (b"\x80\xbf\x80", False),
    "byte-fe": (b"\xfe", False),
    "byte-ff": (b"\xff", False),
    "byte-f5": (b"\xf5\x80\x80\x80", False),
    "five-byte-form": (b"\xf8\x88\x80\x80\x80", False),
    "lead-then-ascii": (b"\xc2A", False),
    "hello-then-ff": (b"Hello\xff", False),
    "truncated-2": (b"\xc2", True),
    "truncated-3": (b"\xe0\xa0", True),
    "truncated-4": (b"\xf0\x90\x80", True),
    "truncated-kosme": (b"\xce\xba\xe1\xbd", True),
}

for _name, _text in VALID_UTF8.items():
    _data = _text.encode("utf-8")

    async def _valid_whole(ws, data=_data):
        await echo_check(ws, TEXT, data)
        return await ws.close()

    async def _valid_per_byte(ws, data=_data):
        await echo_check(ws, TEXT, data, fragment=1)  # sequences split across fragments
        return await ws.close()

    add(f"6-valid-{_name}-one-frame", _valid_whole)
    add(f"6-valid-{_name}-fragment-per-byte", _valid_per_byte)

for _name, (_data, _truncated) in INVALID_UTF8.items():

    async def _invalid_whole(ws, data=_data):
        await ws.send_frame(TEXT, data)
        return await ws.expect_close(1007)

    async def _invalid_per_byte(ws, data=_data):
        frames = [ws.frame(TEXT if i == 0 else CONT, data[i : i + 1], fin=i == len(data) - 1)
                  for i in range(len(data))]
        await ws.send(*frames)
        return await ws.expect_close(1007)

    add(f"6-invalid-{_name}-one-frame", _invalid_whole)
    add(f"6-invalid-{_name}-fragment-per-byte", _invalid_per_byte)

    if not _truncated:

        async def _fail_fast(ws, data=_data):
            # The bad fragment is not the last one, and the rest never comes:
            # the endpoint must fail at once (RFC 6455 §8.1), not wait for it.
            await ws.send(ws.frame(TEXT, "\u03ba\u1f79\u03c3\u03bc\u03b5".encode(), fin=False),
                          ws.frame(CONT, data, fin=False))
            return await ws.expect_close(1007, timeout=1.0)

        add(f"6-fail-fast-{_name}-in-fragment", _fail_fast)


@case("6-fail-fast-first-fragment")
async def _(ws):
    # A fragmented text whose FIRST fragment is invalid; later fragments never come.
    await ws.send_frame(TEXT, b"\xce\xba\xff", fin=False)
    return await ws.expect_close(1007, timeout=1.0)


@case("6-fail-fast-lead-byte-ends-fragment")
async def _(ws):
    # Autobahn 6.4.2: the lead byte ends fragment 1, the byte proving it bad
    # starts fragment 2; the message never ends.
    kosme = "\u03ba\u1f79\u03c3\u03bc\u03b5".encode()
    await ws.send(ws.frame(TEXT, kosme + b"\xf4", fin=False), ws.frame(CONT, b"\x90\x80\x80", fin=False))
    return await ws.expect_close(1007, timeout=1.0)


async def _fail_fast_in_frame(ws, split):
    # Autobahn 6.4.3 / 6.4.4: ONE frame, written in chops; the chop with the
    # invalid byte arrives, the rest of the frame never does.
    kosme = "\u03ba\u1f79\u03c3\u03bc\u03b5".encode()
    payload = kosme + b"\xf4\x90\x80\x80" + b"edited"
    data = ws.frame(TEXT, payload)
    header = len(data) - len(payload)
    await ws.send(data[: header + len(kosme)])
    await ws.expect_silence(0.05)  # valid so far
    await ws.send(data[header + len(kosme) : header + len(kosme) + split])
    return await ws.expect_close(1007, timeout=0.5)


add("6-fail-fast-inside-one-frame-4-bytes", functools.partial(_fail_fast_in_frame, split=4))
add("6-fail-fast-inside-one-frame-2-bytes", functools.partial(_fail_fast_in_frame, split=2))


# -- 7: closing -------------------------------------------------------------------------------------


@case("7-echo-then-close")
async def _(ws):
    await echo_check(ws, TEXT, b"Hello World!")
    return await ws.close()


@case("7-text-then-close-one-write")
async def _(ws):
    # Autobahn 7.1.1's bytes, in one write: the message read before the close
    # is still answered (RFC 6455 §5.5.1 allows finishing the current message).
    await ws.send(ws.frame(TEXT, b"Hello World!"), ws.frame(CLOSE, close_payload(1000)))
    await ws.expect((TEXT, b"Hello World!"))
    return await ws.expect_close(1000)


@case("7-close-twice")
async def _(ws):
    await ws.send(ws.frame(CLOSE, close_payload(1000)), ws.frame(CLOSE, close_payload(1000)))
    return await ws.expect_close(1000)  # one reply, then TCP closes


@case("7-ping-after-close")
async def _(ws):
    await ws.send(ws.frame(CLOSE, close_payload(1000)), ws.frame(PING, b"Hello World!"))
    return await ws.expect_close(1000)  # no pong


@case("7-text-after-close")
async def _(ws):
    await ws.send(ws.frame(CLOSE, close_payload(1000)), ws.frame(TEXT, b"Hello World!"))
    return await ws.expect_close(1000)  # no echo


@case("7-close-between-fragments")
async def _(ws):
    await ws.send(
        ws.frame(TEXT, b"fragment1", fin=False), ws.frame(CLOSE, close_payload(1000)), ws.frame(CONT, b"fragment2")
    )
    return await ws.expect_close(1000)


@case("7-big-message-then-close-then-ping")
async def _(ws):
    big = text_payload(256 * 1024)
    await ws.send(ws.frame(TEXT, big), ws.frame(CLOSE, close_payload(1000)), ws.frame(PING, b"x"))
    await ws.expect((TEXT, big))
    return await ws.expect_close(1000)


@case("7-close-empty")
async def _(ws):
    await ws.send_frame(CLOSE, b"")
    await ws.expect_close(None)  # an empty close or 1000
    return 1005  # what the application sees: no status received


@case("7-close-one-byte")
async def _(ws):
    await ws.send_frame(CLOSE, b"\x03")
    return await ws.expect_close(1002)


@case("7-close-1000-no-reason")
async def _(ws):
    await ws.send_frame(CLOSE, close_payload(1000))
    return await ws.expect_close(1000)


@case("7-close-1000-reason")
async def _(ws):
    await ws.send_frame(CLOSE, close_payload(1000, b"Hello World!"))
    return await ws.expect_close(1000)


@case("7-close-reason-123-bytes")
async def _(ws):
    await ws.send_frame(CLOSE, close_payload(1000, b"*" * 123))
    return await ws.expect_close(1000)


@case("7-close-reason-124-bytes")
async def _(ws):
    await ws.send_frame(CLOSE, close_payload(1000, b"*" * 124))  # payload 126 > 125
    return await ws.expect_close(1002)


@case("7-close-reason-invalid-utf8")
async def _(ws):
    await ws.send_frame(CLOSE, close_payload(1000, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"))
    return await ws.expect_close(1007)


@case("7-close-reason-valid-utf8")
async def _(ws):
    await ws.send_frame(CLOSE, close_payload(1000, "\u03ba\u1f79\u03c3\u03bc\u03b5 \U0001f600".encode()))
    return await ws.expect_close(1000)


for _code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999):

    async def _valid_code(ws, code=_code):
        await ws.send_frame(CLOSE, close_payload(code))
        return await ws.expect_close(code)  # echoed (docs/DESIGN.md)

    add(f"7-close-code-{_code}-valid", _valid_code)

for _code in (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535):

    async def _invalid_code(ws, code=_code):
        await ws.send_frame(CLOSE, close_payload(code))
        return await ws.expect_close(1002)

    add(f"7-close-code-{_code}-invalid", _invalid_code)


# -- 9: limits and performance -------------------------------------------------------------------

for _op in (TEXT, BINARY):
    for _size, _sname in ((MiB, "1MiB"), (16 * MiB, "16MiB")):

        async def _big_one_frame(ws, op=_op, size=_size):
            await echo_check(ws, op, payload_for(op, size))
            return await ws.close()

        add(f"9-{OPNAME[_op]}-{_sname}-one-frame", _big_one_frame, timeout=60)

        for _frag in (64, 256, 1024, 4096, 16384, 65536):
            # 1 MiB in every fragment size; 16 MiB in 64 KiB ones by default, in
            # smaller ones in the slow run.
            _slow = _size > MiB and _frag < 65536

            async def _big_fragmented(ws, op=_op, size=_size, frag=_frag):
                await echo_check(ws, op, payload_for(op, size), fragment=frag)
                return await ws.close()

            add(f"9-{OPNAME[_op]}-{_sname}-fragments-of-{_frag}", _big_fragmented, slow=_slow, timeout=120)


@case("9-1MiB-bytewise-chops-of-997", timeout=60)
async def _(ws):
    await echo_check(ws, BINARY, binary_payload(MiB), chop=997)
    return await ws.close()


@case("9-at-limit-echoed", limited=True)
async def _(ws):
    await echo_check(ws, BINARY, binary_payload(LIMIT))
    return await ws.close()


@case("9-over-limit-one-frame", limited=True)
async def _(ws):
    # The header announces LIMIT + 1 bytes: fail before the payload arrives.
    data = ws.frame(BINARY, binary_payload(LIMIT + 1))
    await ws.send(data[:14 + 1000])
    return await ws.expect_close(1009, timeout=2)


@case("9-over-limit-text-one-frame", limited=True)
async def _(ws):
    data = ws.frame(TEXT, text_payload(LIMIT + 1))
    await ws.send(data[:14 + 1000])
    return await ws.expect_close(1009, timeout=2)


@case("9-over-limit-fragments", limited=True)
async def _(ws):
    payload = binary_payload(LIMIT + 1)
    frag = 65536
    frames = [ws.frame(BINARY if i == 0 else CONT, payload[i : i + frag], fin=i + frag >= len(payload))
              for i in range(0, len(payload), frag)]
    try:
        await ws.send(*frames)
    except ConnectionError:
        pass  # the endpoint may have closed already
    return await ws.expect_close(1009, timeout=5)


@case("9-over-limit-text-fragments-never-finished", limited=True)
async def _(ws):
    # The limit applies to the sum of the fragments, as they arrive.
    frames = [ws.frame(TEXT if i == 0 else CONT, text_payload(65536), fin=False) for i in range(17)]
    try:
        await ws.send(*frames)
    except ConnectionError:
        pass
    return await ws.expect_close(1009, timeout=5)


# -- running the cases: the server under test -----------------------------------------------------

CLI_READY = importlib.util.find_spec("wsfast.__main__") is not None
_choice = os.environ.get("WSFAST_CONFORMANCE_TARGET", "").strip().lower()
CLI_VARIANTS = {
    "cli": [],
    "cli-pure-python": ["--pure-python"],
    "cli-no-uvloop": ["--no-uvloop"],
    "cli-pure-python-no-uvloop": ["--pure-python", "--no-uvloop"],
}
INPROC_VARIANTS = [f"inproc-{loop}-{codec}" for loop in ("asyncio", "uvloop") for codec in ("cython", "python")]
if _choice == "cli" or (_choice == "" and CLI_READY):
    TARGETS = list(CLI_VARIANTS)
elif _choice == "both":
    TARGETS = list(CLI_VARIANTS) + INPROC_VARIANTS
else:
    TARGETS = INPROC_VARIANTS


def wait_for_cli(proc, timeout=15.0):
    """The port a server from :func:`launch_cli` announces once it listens
    (its first line: ``wsfast echo server ws://127.0.0.1:PORT/ ...``)."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline().decode() if ready else ""
    match = re.search(r"ws://127\.0\.0\.1:(\d+)/", line)
    if match is None:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate(timeout=5)
        raise AssertionError(f"`{' '.join(proc.args)}` did not announce its port "
                             f"(exit {proc.returncode}, said {line!r}):\n{err.decode()}")
    return int(match.group(1))


def launch_cli(flags, *extra):
    """Start ``python -m wsfast echo`` on port 0 and return the process at
    once (see :func:`wait_for_cli`). The kernel picks the port as the server
    binds, so two servers started together (or another process on the
    machine) cannot end up on one port, as they could with a port found
    free a moment before."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "wsfast", "echo", "--host", "127.0.0.1", "--port", "0", *flags, *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def stop_process(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


class CliPool:
    """Every CLI variant of ``TARGETS``, each twice (16 MiB and 1 MiB limits),
    started at once (they take a few hundred ms each to import) and stopped
    together at the end of the module."""

    def __init__(self, names):
        self.procs = {}
        self.ports = {}
        try:
            for name in names:
                flags = CLI_VARIANTS[name]
                self.procs[name, "full"] = launch_cli(flags)
                self.procs[name, "limited"] = launch_cli(flags, "--max-message-size", str(LIMIT))
            for key, proc in self.procs.items():
                self.ports[key] = wait_for_cli(proc)
        except BaseException:
            self.close()
            raise

    def close(self):
        for proc in self.procs.values():
            stop_process(proc)


class Target:
    """The echo server under test: ``port`` (16 MiB limit) and
    ``port_limited`` (1 MiB limit)."""

    def __init__(self, name, cli_pool):
        self.name = name
        self._thread = None
        self._servers = []
        if name.startswith("cli"):
            self.port = cli_pool.ports[name, "full"]
            self.port_limited = cli_pool.ports[name, "limited"]
        else:
            _, loop_kind, codec = name.split("-")
            require_codec(codec)
            self._thread = LoopThread(loop_kind)

            async def start():
                a = await echo_app(codec=codec).listen(0, host="127.0.0.1")
                b = await echo_app(codec=codec, websocket_max_message_size=LIMIT).listen(0, host="127.0.0.1")
                return [a, b]

            self._servers = self._thread.run(start(), 10)
            self.port, self.port_limited = (s.port for s in self._servers)

    def close(self):
        if self._thread is not None:
            async def stop():
                await asyncio.gather(*(s.stop(timeout=1.0) for s in self._servers))

            try:
                self._thread.run(stop(), 10)
            finally:
                self._thread.close()


@pytest.fixture(scope="module")
def cli_pool():
    names = [t for t in TARGETS if t.startswith("cli")]
    if not names:
        yield None
        return
    if not CLI_READY:
        pytest.skip("wsfast/__main__.py (the CLI) is not there yet")
    pool = CliPool(names)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="module", params=TARGETS)
def target(request, cli_pool):
    t = Target(request.param, cli_pool)
    try:
        yield t
    finally:
        t.close()


def _params(side):
    return [
        pytest.param(cid, marks=[pytest.mark.slow] if c.slow else [], id=cid)
        for cid, c in CASES.items()
        if side in c.sides
    ]


@pytest.mark.parametrize("case_id", _params("server"))
async def test_server(target, case_id):
    c = CASES[case_id]
    port = target.port_limited if c.limited else target.port

    async def go():
        ws = await RawWebSocket.connect(port, "/")
        try:
            await c.fn(ws)
        finally:
            ws.abort()

    await asyncio.wait_for(go(), c.timeout)


# -- running the cases: the client under test -------------------------------------------------------


class ClientSide:
    def __init__(self, loop_kind, codec):
        self.codec = require_codec(codec)
        self.thread = LoopThread(loop_kind)


@pytest.fixture(
    scope="module",
    params=[(loop, codec) for loop in ("asyncio", "uvloop") for codec in ("cython", "python")],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def client_side(request):
    side = ClientSide(*request.param)
    try:
        yield side
    finally:
        side.thread.close()


async def drive_client(client_side, scenario, *, timeout=15.0, **connect_kwargs):
    """Start a raw server, let the ``wsfast.connect`` echo client (in its own
    loop thread) connect, run ``scenario(ws)``; return ``(scenario result,
    (close_code, close_reason, echoed))`` of the client."""
    accepted = asyncio.get_running_loop().create_future()

    async def on_connection(reader, writer):
        if accepted.done():
            writer.close()
        else:
            accepted.set_result((reader, writer))

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    kwargs = {"codec": client_side.codec, "close_timeout": 2.0}
    kwargs.update(connect_kwargs)
    client = asyncio.ensure_future(
        client_side.thread.arun(echo_once(f"ws://127.0.0.1:{port}/", **kwargs), timeout)
    )
    ws = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.shield(accepted), 5)
        ws = await RawWebSocket.accept(reader, writer)
        result = await asyncio.wait_for(scenario(ws), timeout)
        outcome = await asyncio.wait_for(client, timeout)
        return result, outcome
    finally:
        if ws is not None:
            ws.abort()
        client.cancel()
        server.close()


@pytest.mark.parametrize("case_id", _params("client"))
async def test_client(client_side, case_id):
    c = CASES[case_id]
    kwargs = {"max_message_size": LIMIT} if c.limited else {}
    expected, (code, reason, _) = await drive_client(client_side, c.fn, timeout=c.timeout, **kwargs)
    if expected is not None:
        assert code == expected, f"the client reports close code {code} ({reason!r}), expected {expected}"


@pytest.mark.parametrize("how", ["abort", "eof"])
async def test_client_server_drops_tcp(client_side, how):
    """The server drops TCP without a close frame: the client sees 1006."""

    async def scenario(ws):
        await echo_check(ws, TEXT, b"before the drop")
        if how == "abort":
            ws.abort()
        else:
            ws.writer.write_eof()

    _, (code, _, echoed) = await drive_client(client_side, scenario)
    assert (code, echoed) == (1006, 1)


# -- the opening handshake: refusals, and the server keeps serving ------------------------------------


async def raw_http(port, data, *, timeout=5.0, chop=None):
    """Send ``data``, return ``(status line, fields, whether the server closed
    the connection within timeout)``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if chop:
            for i in range(0, len(data), chop):
                writer.write(data[i : i + chop])
                await writer.drain()
        else:
            writer.write(data)
            await writer.drain()
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        except asyncio.IncompleteReadError as exc:
            head = exc.partial
        except ConnectionError:
            head = b""
        status, fields = parse_head(head) if head else ("", {})
        try:
            while await asyncio.wait_for(reader.read(65536), timeout):
                pass
            closed = True
        except ConnectionError:
            closed = True
        except asyncio.TimeoutError:
            closed = False
        return status, fields, closed
    finally:
        writer.transport.abort()


def upgrade_request(port, *, method="GET", drop=(), extra=(), version="13", key="dGhlIHNhbXBsZSBub25jZQ=="):
    fields = [
        ("Host", f"127.0.0.1:{port}"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", version),
    ]
    lines = [f"{method} / HTTP/1.1"] + [f"{n}: {v}" for n, v in fields if n not in drop]
    lines += [f"{n}: {v}" for n, v in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


BAD_HANDSHAKES = {
    # name -> (request bytes given the port, acceptable statuses)
    "no-key": (lambda p: upgrade_request(p, drop=("Sec-WebSocket-Key",)), ("400",)),
    "bad-key": (lambda p: upgrade_request(p, key="c2hvcnQ="), ("400",)),
    "no-version": (lambda p: upgrade_request(p, drop=("Sec-WebSocket-Version",)), ("426", "400")),
    "wrong-version": (lambda p: upgrade_request(p, version="8"), ("426",)),
    "post": (lambda p: upgrade_request(p, method="POST", extra=(("Content-Length", "0"),)), ("405",)),
    "no-upgrade": (lambda p: upgrade_request(p, drop=("Upgrade",)), ("400", "426")),
    "no-connection": (lambda p: upgrade_request(p, drop=("Connection",)), ("400", "426")),
    "http-1.0": (lambda p: upgrade_request(p).replace(b"HTTP/1.1", b"HTTP/1.0", 1), ("400", "426", "505")),
    "garbage": (lambda p: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", ("400",)),
    "headers-too-big": (
        lambda p: b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Filler: " + b"a" * 100_000 + b"\r\n\r\n",
        ("431", "400"),
    ),
}


@pytest.mark.parametrize("name", list(BAD_HANDSHAKES))
async def test_bad_handshake(target, name):
    build, statuses = BAD_HANDSHAKES[name]

    async def go():
        # Someone else is connected, and stays served.
        other = await RawWebSocket.connect(target.port, "/")
        status, fields, closed = await raw_http(target.port, build(target.port), chop=65536)
        code = status.split()[1] if len(status.split()) > 1 else None
        assert code in statuses, f"{name}: got {status!r}, expected one of {statuses}"
        if code == "426":
            assert fields.get("sec-websocket-version") == "13"
        assert closed, f"{name}: the server did not close the connection after {code}"
        await echo_check(other, TEXT, b"still served")
        await other.close()
        newcomer = await RawWebSocket.connect(target.port, "/")
        await echo_check(newcomer, BINARY, b"\x00new")
        await newcomer.close()

    await asyncio.wait_for(go(), 15)


async def test_handshake_list_valued_headers(target):
    async def go():
        # RFC 6455 §4.2.1: token match, case-insensitive, list-valued.
        ws = await RawWebSocket.connect(
            target.port, "/", headers=[("Connection", "keep-alive, Upgrade"), ("Upgrade", "WebSocket")]
        )
        await echo_check(ws, TEXT, b"ok")
        await ws.close()

    await asyncio.wait_for(go(), 10)


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_handshake_never_ends(loop_kind):
    """A request head that never ends (and a silent connection) is dropped
    after ``handshake_timeout``; meanwhile everyone else is served."""

    async def main():
        server = await echo_app(handshake_timeout=0.5).listen(0, host="127.0.0.1")
        try:
            port = server.port
            slow_r, slow_w = await asyncio.open_connection("127.0.0.1", port)
            slow_w.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
            silent_r, silent_w = await asyncio.open_connection("127.0.0.1", port)
            ws = await RawWebSocket.connect(port, "/")
            await echo_check(ws, TEXT, b"not blocked")
            start = time.monotonic()
            for reader in (slow_r, silent_r):
                try:
                    rest = await asyncio.wait_for(reader.read(), 3)
                except ConnectionError:
                    rest = b""
                assert not rest.startswith(b"HTTP/1.1 101")
            assert time.monotonic() - start < 3
            await echo_check(ws, TEXT, b"still served")
            await ws.close()
            slow_w.transport.abort()
            silent_w.transport.abort()
        finally:
            await server.stop(timeout=1)

    run_in_loop(loop_kind, main(), timeout=15)


# -- soak (slow) -----------------------------------------------------------------------------------


@pytest.mark.slow
async def test_server_soak(target):
    """50 raw clients at once, 200 messages each: random sizes (0 .. 70 000
    bytes), random fragmentation and chopping, pings in between; every
    message comes back whole, in order, to the right client."""
    import random

    async def one(seed):
        rng = random.Random(seed)
        ws = await RawWebSocket.connect(target.port, "/")
        try:
            for i in range(200):
                op = rng.choice((TEXT, BINARY))
                size = rng.choice((0, 1, 125, 126, 1000, 65535, 65536, 70000, rng.randrange(70000)))
                data = payload_for(op, size)
                fragment = rng.choice((None, None, 1 + rng.randrange(max(size, 1)), 64))
                chop = rng.choice((None, None, None, 997))
                if rng.random() < 0.2:
                    await ws.send_frame(PING, b"%d-%d" % (seed, i))
                    await ws.expect((PONG, b"%d-%d" % (seed, i)))
                await echo_check(ws, op, data, chop=chop, fragment=fragment)
            await ws.close()
        finally:
            ws.abort()

    await asyncio.wait_for(asyncio.gather(*(one(seed) for seed in range(50))), 300)


# -- close timeout: a peer that never answers the close ----------------------------------------------


class _ClosesAtOnce(wsfast.WebSocketHandler):
    def open(self):
        self.close(4002, "going")

    def on_message(self, message):
        pass


@pytest.mark.parametrize("codec", ["cython", "python"])
@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_server_close_timeout(loop_kind, codec):
    """The server closes; the client never answers: TCP is dropped after
    ``websocket_close_timeout`` (RFC 6455 §7.1.1 bounds the wait)."""
    require_codec(codec)

    async def main():
        app = wsfast.Application([(r"/", _ClosesAtOnce)], codec=codec, websocket_close_timeout=0.3)
        server = await app.listen(0, host="127.0.0.1")
        try:
            ws = await RawWebSocket.connect(server.port, "/")
            start = time.monotonic()
            assert await ws.expect_close(4002, eof=False) == 4002
            await ws.expect_eof(timeout=2)  # we never answered
            assert 0.2 < time.monotonic() - start < 1.5
            ws.abort()
        finally:
            await server.stop(timeout=1)

    run_in_loop(loop_kind, main(), timeout=10)


async def test_client_close_timeout(client_side):
    """The client closes; the server never answers: ``close()`` returns
    after a bounded wait and the client drops TCP."""

    async def client(port):
        ws = await wsfast.connect(f"ws://127.0.0.1:{port}/", codec=client_side.codec, close_timeout=0.3)
        start = time.monotonic()
        await ws.close(4003, "client going")
        return time.monotonic() - start, ws.closed

    async def on_connection(reader, writer):
        ws = await RawWebSocket.accept(reader, writer)
        seen.set_result(await ws.read_event())
        await asyncio.sleep(5)  # never answer, never close

    seen = asyncio.get_running_loop().create_future()
    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        elapsed, closed = await client_side.thread.arun(client(port), 10)
        assert await asyncio.wait_for(seen, 1) == (CLOSE, close_payload(4003, b"client going"))
        assert closed and elapsed < 2.0, elapsed
    finally:
        server.close()
