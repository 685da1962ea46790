"""The ceilings: about the least work a Python WebSocket echo server can do
per message, in two flavours.

An ``asyncio.BufferedProtocol`` on uvloop that completes the upgrade (RFC
6455 §4.2.2, the real GUID), then parses each client frame's header in
Python, unmasks the payload with websockets' C ``apply_mask`` (a pure-Python
fallback if websockets is not installed) and sends it back in an unmasked
frame of the same opcode: a real echo, checked byte for byte by the load
client. No UTF-8 validation, no fragmentation, no control frames but close,
no limits: not a server anyone should run; it is the bound a real one is
measured against.

* default (``ceiling-batched``): the replies to the frames of one read go
  out in one ``transport.write`` (what wsfast does), and a broadcast
  command's messages are joined into one write per connection;
* ``--per-frame`` (``ceiling-perframe``): one ``transport.write`` per frame
  (what picows, websockets, aiohttp and tornado do), and one write per
  connection per broadcast message: the floor of a server that sends each
  message as it is made.

The gap between the two is what batching writes buys; the gap between a
server and the ceiling of its kind is what the rest of it costs.
"""

import asyncio
import base64
import hashlib

import _common

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets is in the bench extra
    def apply_mask(data, mask):
        n = len(data)
        key = (bytes(mask) * (n // 4 + 1))[:n]
        return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
READ_SIZE = 256 * 1024
_buffer = bytearray(READ_SIZE)  # one read buffer for every connection (nothing is kept in it)
_view = memoryview(_buffer)
transports = set()
PER_FRAME = False


def frame_header(opcode, n):
    if n < 126:
        return bytes((0x80 | opcode, n))
    if n < 65536:
        return bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    return bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")


def accept_value(key):
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


class Ceiling(asyncio.BufferedProtocol):
    def __init__(self):
        self.head = b""  # the request head while upgrading
        self.upgraded = False
        self.pending = bytearray()  # an incomplete frame carried over to the next read

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        transports.discard(self.transport)

    def get_buffer(self, sizehint):
        return _view

    def buffer_updated(self, nbytes):
        if not self.upgraded:
            self.upgrade(bytes(_buffer[:nbytes]))
            return
        if self.pending:
            self.pending += _view[:nbytes]
            self.drain_pending()
        else:
            used = self.frames(_view, nbytes)
            if used < nbytes:
                self.pending += _view[used:nbytes]

    def upgrade(self, data):
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            return
        rest = self.head[end + 4:]
        key = None
        for line in self.head[:end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        if not key:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            self.transport.close()
            return
        self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_value(key) + b"\r\n\r\n")
        self.upgraded = True
        transports.add(self.transport)
        self.head = b""
        if rest:
            self.pending += rest
            self.drain_pending()

    def drain_pending(self):
        data = self.pending
        with memoryview(data) as view:
            used = self.frames(view, len(data))
        del data[:used]

    def frames(self, data, n):
        """Echo the complete frames in data[:n]; return the bytes used."""
        out = []
        write = self.transport.write
        pos = 0
        while n - pos >= 6:
            b0 = data[pos]
            length = data[pos + 1] & 127
            if length < 126:
                hl = 6
            elif length == 126:
                hl = 8
                if n - pos < hl:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
            else:
                hl = 14
                if n - pos < hl:
                    break
                length = int.from_bytes(data[pos + 2:pos + 10], "big")
            start = pos + hl
            end = start + length
            if end > n:
                break
            opcode = b0 & 15
            payload = apply_mask(data[start:end], data[start - 4:start])
            pos = end
            if opcode == 2 or opcode == 1:
                if opcode == 1:
                    command = _common.parse_broadcast(payload.decode())
                    if command is not None:
                        if out:  # keep the order: the replies so far go first
                            write(b"".join(out))
                            out = []
                        self.broadcast(*command)
                        continue
                if PER_FRAME:
                    write(frame_header(opcode, length) + payload)
                else:
                    out.append(frame_header(opcode, length))
                    out.append(payload)
            elif opcode == 8:
                out.append(b"\x88\x02\x03\xe8")
                write(b"".join(out))
                self.transport.close()
                return n
        if out:
            write(b"".join(out))
        return pos

    @staticmethod
    def broadcast(start, count, size):
        if PER_FRAME:
            for payload in _common.payloads(start, count, size):
                frame = frame_header(2, len(payload)) + payload
                for transport in transports:
                    transport.write(frame)
            return
        data = b"".join(frame_header(2, len(p)) + p for p in _common.payloads(start, count, size))
        for transport in transports:
            transport.write(data)


async def main(args):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Ceiling, args.host, args.port, backlog=4096)
    kind = "one write per frame" if PER_FRAME else "one write per read"
    print(f"ceiling-{'perframe' if PER_FRAME else 'batched'} (asyncio.BufferedProtocol, {kind})", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    args = _common.parse_args(__doc__, lambda p: p.add_argument("--per-frame", action="store_true"))
    PER_FRAME = args.per_frame
    _common.raise_nofile()
    _common.install_uvloop()
    asyncio.run(main(args))
