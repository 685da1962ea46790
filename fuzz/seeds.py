"""Write the seed corpus (``fuzz/corpus/<harness>/``): a few small inputs
per harness in its :class:`~_common.Reader` layout, each one a meaningful
conversation (valid frames, messages, handshakes) that the fuzzer then
mutates. Run it again after changing a harness's layout:

    python fuzz/seeds.py
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import HERE, Writer  # noqa: E402
from wsfast import _frame_py as F  # noqa: E402

import connection_differential as CD  # noqa: E402
import frame_differential as FD  # noqa: E402
import http_handshake as HH  # noqa: E402

KEY = b"\x01\x02\x03\x04"


def frame(opcode, payload, fin=True, rsv1=False, masked=True):
    return F.build_frame(opcode, payload, fin=fin, rsv1=rsv1, mask_key=KEY if masked else None)


def frame_seeds():
    def start(mask_required=True, rsv1=False, size=16 * 2**20, rsv1_size=None):
        return Writer().bool(mask_required).bool(rsv1).pick(FD.SIZES, size).pick(FD.RSV1_SIZES, rsv1_size)

    def feed(w, data, op=0):
        return w.int(0, 9, op).blob(200, data)

    text = frame(1, "héllo wörld".encode())
    yield "text", feed(start(), text)
    yield "text_messages", feed(start(), text + frame(2, b"\x00\xff" * 20), op=3)
    yield "server_frames", feed(start(False), frame(1, b"hi", masked=False) + frame(9, b"p", masked=False))
    frag = frame(1, b"fra", fin=False) + frame(9, b"ping") + frame(0, b"gment")
    w = start()
    for i in range(0, len(frag), 3):
        feed(w, frag[i : i + 3])
    yield "fragments_bytewise", w
    long = frame(2, bytes(range(256)) * 2)
    w = start()
    feed(w, long[:20])
    w.int(0, 9, 5).int(0, 300, 3)  # partial(3)
    w.int(0, 9, 4).int(0, 300, 1).blob(300, long[20:300])  # window/commit
    w.int(0, 9, 4).int(0, 300, 1).blob(300, long[300:])
    yield "window_commit", w
    w = start(rsv1=True)
    feed(w, frame(1, b"\xf2\x48\xcd\xc9\xc9\x07\x00", rsv1=True))
    w.int(0, 9, 7).bool(True).bool(False)  # allow_rsv1 off mid-stream
    feed(w, frame(1, b"\xf2\x48\xcd\xc9\xc9\x07\x00", rsv1=True))
    yield "rsv1_then_off", w
    w = start(size=126)
    feed(w, frame(2, b"x" * 100, fin=False)[:50])
    w.int(0, 9, 6).pick(FD.SIZES, 1)  # max_frame_size lowered mid-frame
    w.int(0, 9, 9)
    yield "limit_lowered", w
    w = start(rsv1=True, rsv1_size=200)
    feed(w, frame(1, b"\xf2\x48\xcd\xc9\xc9\x07\x00" * 20, rsv1=True))
    w.int(0, 9, 7).bool(False).pick(FD.RSV1_SIZES, 126)  # max_rsv1_frame_size lowered
    feed(w, frame(1, b"\xf2\x48\xcd\xc9\xc9\x07\x00" * 20, rsv1=True))
    yield "rsv1_limit", w
    yield "len64", feed(start(), bytes([0x82, 0xFF]) + (70000).to_bytes(8, "big") + KEY + b"ab")
    yield "close", feed(start(), frame(8, b"\x03\xe8bye") + frame(1, b"after"))


def connection_seeds():
    def start(server=True, size=16 * 2**20, deflate=None, fragments=None):
        w = Writer().bool(server).pick(CD.SIZES, size).bool(deflate is not None)
        if deflate:
            local, remote, lreset, rreset = deflate
            w.int(8, 15, local).int(9, 15, remote).bool(lreset).bool(rreset)
            w.pick([0, 10, 128], 0).pick([0, 10, 128], 0)
        return w.pick(CD.FRAGMENTS, fragments)

    def message(w, payload, op=3, text=True, repeat=1, compress=True, cuts=(), splits=()):
        w.int(0, 11, op).bool(text).blob(300, payload).pick([1, 1, 1, 2, 100, 1000], repeat)
        w.bool(compress)
        if op != 3:
            w.int(0, 5, len(cuts))
            for c in cuts:
                w.int(0, 1 << 20, c)
        w.int(0, 4, len(splits))
        return w  # the split points depend on the stream length: none in seeds

    def send(w, what, text, code=1000, compress=True):
        return w.int(0, 11, 7).int(0, 5, what).text(300, text).pick(CD.CLOSE_CODES, code).bool(compress)

    def control(w, opcode, payload):
        w.int(0, 11, 6).pick([8, 9, 10], opcode).blob(125, payload)
        if opcode == 8:
            w.bool(False)
        return w

    for server in (True, False):
        side = "server" if server else "client"
        for deflate in (None, (15, 15, False, False), (12, 9, True, True), (8, 15, False, True)):
            name = f"{side}_{'deflate%d' % deflate[0] if deflate else 'plain'}"
            w = start(server, deflate=deflate)
            message(w, "hello ".encode() * 10)
            message(w, bytes(range(200)), text=False, repeat=100)
            message(w, "fragmented ünïcode ".encode() * 5, op=4, cuts=(7, 40, 41))
            control(w, 9, b"ping!")
            send(w, 0, "echo " * 30)
            send(w, 1, "binary")
            control(w, 8, b"")
            yield name, w
    w = start(size=125, fragments=3)
    message(w, b"y" * 120, text=False, compress=True)
    message(w, b"z" * 100, op=4, text=False, cuts=(60,))
    yield "small_limit", w
    for server in (True, False):
        w = start(server, deflate=(15, 15, False, False) if server else None)
        w.int(0, 13, 12).int(0, 2, 1)  # streaming on: Fragment events
        message(w, "streamed ünïcode ".encode() * 5, op=4, cuts=(3, 17, 40))
        w.int(0, 13, 13).bool(True).text(200, "piece one, ").bool(False).bool(True)
        w.int(0, 13, 13).bool(True).text(200, "piece twö").bool(True).bool(True)
        w.int(0, 13, 12).int(0, 2, 2)  # stream_next
        message(w, bytes(range(100)), text=False)
        yield f"streaming_{'server' if server else 'client'}", w
    w = start()
    w.int(0, 11, 0).blob(300, frame(1, b"raw text") + frame(0, b"orphan"))
    w.int(0, 11, 2).blob(300, frame(2, b"q" * 200)[:30]).int(0, 64, 1)
    w.int(0, 11, 2).blob(300, frame(2, b"q" * 200)[30:]).int(0, 64, 1)
    send(w, 4, "going away", code=1001)
    w.int(0, 11, 10).bool(False)
    w.int(0, 11, 9)
    yield "raw_window_eof", w


REQUEST = (
    b"GET /chat?room=1&access_token=x HTTP/1.1\r\nHost: example.com:8080\r\n"
    b"Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Origin: http://example.com:8080\r\nSec-WebSocket-Protocol: chat, superchat\r\n"
)
OFFERS = [
    b"permessage-deflate; client_max_window_bits",
    b"permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
    b'server_max_window_bits=10; client_max_window_bits="9", permessage-deflate',
    b"x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=8",
    b'permessage-deflate; client_max_window_bits="1\\5"',
]
RESPONSE = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
)
ANSWERS = [
    b"permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
    b"permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    b"permessage-deflate; server_max_window_bits=15",
    b"permessage-deflate, permessage-deflate",
]


def http_seeds():
    def server(data, cuts=(), head=64 * 1024, body=1024 * 1024):
        w = Writer().bool(True).pick(HH.HEAD_LIMITS, head).pick(HH.BODY_LIMITS, body)
        w.int(0, 6, len(cuts))
        for c in cuts:
            w.int(0, 4096, c)
        return w.take(data)

    def client(data, options=0, offered=(), cuts=()):
        w = Writer().bool(False).pick(HH.HEAD_LIMITS, 64 * 1024).u8(options)
        w.int(0, 3, len(offered))
        for p in offered:
            w.text(8, p)
        w.int(0, 6, len(cuts))
        for c in cuts:
            w.int(0, 4096, c)
        return w.take(data)

    yield "request", server(REQUEST + b"\r\n", cuts=(5, 60, 61))
    for i, offer in enumerate(OFFERS):
        yield f"request_offer{i}", server(REQUEST + b"Sec-WebSocket-Extensions: " + offer + b"\r\n\r\n")
    yield "pipelined", server(
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /y HTTP/1.0\r\n\r\n", cuts=(10, 40))
    yield "chunked_body", server(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        body=16)
    yield "small_head", server(REQUEST + b"\r\n", head=256)
    yield "response", client(RESPONSE + b"\r\n", offered=("chat",), cuts=(3, 90))
    for i, answer in enumerate(ANSWERS):
        yield f"response_answer{i}", client(
            RESPONSE + b"Sec-WebSocket-Extensions: " + answer + b"\r\n\r\n", options=i)
    yield "response_403", client(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope")


def origin_seeds():
    for i, (host, origin) in enumerate([
        ("example.com", "http://example.com"),
        ("example.com:8080", "https://EXAMPLE.com:8080"),
        ("localhost", "http://["),
        ("[::1]:8888", "http://[::1]:8888"),
        ("a.example", "null"),
        ("a.example", "http://a.example:99999"),
        ("a.example", "http://user@a.example"),
    ]):
        yield str(i), Writer().blob(200, host.encode()).take(origin.encode())


HARNESSES = {
    "frame_differential": frame_seeds,
    "connection_differential": connection_seeds,
    "http_handshake": http_seeds,
    "origin": origin_seeds,
}


def write_all():
    for harness, make in HARNESSES.items():
        folder = os.path.join(HERE, "corpus", harness)
        os.makedirs(folder, exist_ok=True)
        for name in os.listdir(folder):
            if name.startswith("seed-"):
                os.remove(os.path.join(folder, name))
        names = set()
        for name, w in make():
            data = w.bytes() if isinstance(w, Writer) else w
            assert name not in names, name
            names.add(name)
            with open(os.path.join(folder, f"seed-{name}"), "wb") as f:
                f.write(data)
        print(f"{harness}: {len(names)} seeds")


if __name__ == "__main__":
    write_all()
