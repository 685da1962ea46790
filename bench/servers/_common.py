"""What every benchmark server shares: the command line, the file-descriptor
limit, the event loop, and the fan-out payloads.

Every server echoes binary messages back as binary, and on the text message
``"!broadcast START COUNT SIZE"`` sends COUNT binary messages of SIZE bytes
to every connected client, back to back, with its library's idiomatic
broadcast. Message ``i`` (``START <= i < START + COUNT``) starts with
``struct.pack("<Id", i, time.monotonic())`` taken just before it is sent, so
the load client can tell how long the last client waited for it
(CLOCK_MONOTONIC is the same clock in every process on Linux).
"""

import argparse
import resource
import struct
import time

_HEAD = struct.Struct("<Id")


def parse_args(description, extra=None):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    if extra is not None:
        extra(parser)
    return parser.parse_args()


def raise_nofile():
    """Lift the soft RLIMIT_NOFILE to the hard limit (the connection-count
    scenario needs one descriptor per connection); return the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def install_uvloop():
    import asyncio

    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def parse_broadcast(text):
    """``"!broadcast START COUNT SIZE"`` → (start, count, size), else None."""
    if not text.startswith("!broadcast "):
        return None
    _, start, count, size = text.split()
    return int(start), int(count), int(size)


def payloads(start, count, size):
    """The fan-out messages, each built (and time-stamped) just before it is
    sent: a generator, so the timestamp is taken as late as possible."""
    pad = b"\0" * (size - _HEAD.size)
    pack = _HEAD.pack
    now = time.monotonic
    for seq in range(start, start + count):
        yield pack(seq, now()) + pad
