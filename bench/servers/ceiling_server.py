"""The ceiling: the least work any Python WebSocket server could do per
message. An ``asyncio.BufferedProtocol`` on uvloop that completes the
upgrade, then reads only each client frame's header and answers a binary
frame with a pre-built unmasked binary frame of the same length (the payload
is never unmasked or copied). One write per read. Text frames are unmasked
only to recognise the fan-out command; close frames get a close back.

Not a WebSocket server anyone should run (it echoes nothing); it is the
bound that a real one is measured against.
"""

import asyncio
import base64
import hashlib

import _common

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B85"
READ_SIZE = 256 * 1024
_buffer = bytearray(READ_SIZE)  # one read buffer for every connection (nothing is kept in it)
_view = memoryview(_buffer)
transports = set()
_frames = {}  # payload length -> a pre-built unmasked binary frame


def frame_header(opcode, n):
    if n < 126:
        return bytes((0x80 | opcode, n))
    if n < 65536:
        return bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    return bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")


def prebuilt(n):
    frame = _frames.get(n)
    if frame is None:
        frame = _frames[n] = frame_header(2, n) + bytes(n)
    return frame


class Ceiling(asyncio.BufferedProtocol):
    def __init__(self):
        self.head = b""  # the request head, then a split frame header
        self.upgraded = False
        self.skip = 0  # payload bytes of the current frame still to come
        self.text = None  # (mask, remaining length, bytes so far) of a text frame

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        transports.discard(self.transport)

    def get_buffer(self, sizehint):
        return _view

    def buffer_updated(self, nbytes):
        if not self.upgraded:
            self.head += bytes(_buffer[:nbytes])
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            rest = self.head[end + 4:]
            key = b""
            for line in self.head[:end].split(b"\r\n"):
                if line[:18].lower() == b"sec-websocket-key:":
                    key = line[18:].strip()
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            self.upgraded = True
            transports.add(self.transport)
            self.head = b""
            if rest:
                self.frames(rest, len(rest))
            return
        if self.head:
            data = self.head + bytes(_buffer[:nbytes])
            self.head = b""
            self.frames(data, len(data))
        else:
            self.frames(_buffer, nbytes)

    def frames(self, data, n):
        out = []
        pos = self.skip
        if pos:
            if self.text is not None:
                self.collect_text(data, 0, min(pos, n))
            if pos >= n:
                self.skip = pos - n
                return
            self.skip = 0
        while pos < n:
            if n - pos < 2:
                self.head = bytes(data[pos:n])
                break
            b0 = data[pos]
            length = data[pos + 1] & 127
            if length < 126:
                hl = 6
            elif length == 126:
                hl = 8
            else:
                hl = 14
            if n - pos < hl:
                self.head = bytes(data[pos:n])
                break
            if length == 126:
                length = (data[pos + 2] << 8) | data[pos + 3]
            elif length == 127:
                length = int.from_bytes(data[pos + 2:pos + 10], "big")
            opcode = b0 & 15
            start = pos + hl
            pos = start + length
            if opcode == 2:
                out.append(prebuilt(length))
            elif opcode == 1:
                self.text = (bytes(data[start - 4:start]), length, bytearray())
                self.collect_text(data, start, min(pos, n))
            elif opcode == 8:
                self.transport.write(b"".join(out) + b"\x88\x02\x03\xe8")
                self.transport.close()
                return
            if pos > n:
                self.skip = pos - n
                break
        if out:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def collect_text(self, data, start, end):
        mask, length, got = self.text
        got += data[start:end]
        if len(got) < length:
            return
        self.text = None
        text = bytes(b ^ mask[i & 3] for i, b in enumerate(got)).decode()
        command = _common.parse_broadcast(text)
        if command is None:
            return
        for payload in _common.payloads(*command):
            frame = frame_header(2, len(payload)) + payload
            for transport in transports:
                transport.write(frame)


async def main(args):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Ceiling, args.host, args.port, backlog=4096)
    print("ceiling (asyncio.BufferedProtocol)", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    args = _common.parse_args(__doc__)
    _common.raise_nofile()
    _common.install_uvloop()
    asyncio.run(main(args))
