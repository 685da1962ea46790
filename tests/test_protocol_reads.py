"""WebSocketProtocol driven the way event loops drive a BufferedProtocol:
``get_buffer()``, then ``buffer_updated(n)`` after a read, and sometimes
``get_buffer()`` with no ``buffer_updated()`` behind it (libuv asks for a
buffer before every read attempt; one that finds nothing, EAGAIN, is not
reported). Large frames go into windows of the frame's own storage
(Connection.read_window), small ones through the loop's shared buffer; every
message must come out whole and in order whatever the reads look like.
"""

import asyncio
import random

import pytest

import wsfast
from wsfast.connection import Side
from wsfast.protocol import Options, WebSocketProtocol


class Transport(asyncio.Transport):
    def __init__(self):
        super().__init__()
        self.out = []

    def write(self, data):
        self.out.append(bytes(data))

    def writelines(self, parts):
        self.out.extend(bytes(p) for p in parts)

    def set_write_buffer_limits(self, high=None, low=None):
        pass

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 1) if name in ("peername", "sockname") else default

    def is_closing(self):
        return False

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass


class Recorder(wsfast.WebSocketHandler):
    def initialize(self, log):
        self.log = log

    def on_message(self, message):
        self.log.append(message)


def upgraded(codec, log):
    protocol = WebSocketProtocol(Side.SERVER, Options(codec=codec), _Owner())
    protocol.connection_made(Transport())
    app = wsfast.Application([(r"/", Recorder, {"log": log})])
    handler = Recorder(app, None, log=log)
    handler.ws_connection = protocol
    protocol.upgrade(handler)
    return protocol


class _Owner:
    def connection_made(self, protocol):
        pass

    def connection_lost(self, protocol):
        pass


@pytest.mark.parametrize("seed", range(6))
def test_any_pattern_of_reads_delivers_every_message(codec, seed):
    rng = random.Random(seed)
    from wsfast import codec as codecs

    impl = codecs.get_codec(codec)
    messages = []
    for _ in range(14):
        size = rng.choice([0, 5, 300, 70_000, 200_000, 1_100_000])
        messages.append(rng.randbytes(size) if rng.random() < 0.5
                        else "ü".join("x" * rng.randint(0, 9) for _ in range(size // 10)))
    wire = b"".join(impl.build_frame(1 if type(m) is str else 2, m, mask_key=rng.randbytes(4))
                    for m in messages)

    async def main():
        log = []
        protocol = upgraded(codec, log)
        pos = windows = 0
        while pos < len(wire):
            buf = protocol.get_buffer(-1)
            if rng.random() < 0.3:
                continue  # a read that found nothing: no buffer_updated
            if buf is not protocol._view:
                windows += 1
            n = min(len(buf), len(wire) - pos, rng.choice([1, 100, 5000, 100_000, 10**7]))
            buf[:n] = wire[pos : pos + n]
            protocol.buffer_updated(n)
            pos += n
        assert protocol.connection.failed is None
        return log, windows

    log, windows = asyncio.run(main())
    assert len(log) == len(messages)
    for got, sent in zip(log, messages):
        assert type(got) is type(sent) and got == sent
    if any(len(m) >= 200_000 for m in messages):
        assert windows > 0  # the large frames did go through windows
