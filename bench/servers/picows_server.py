"""picows echo + fan-out server on uvloop, as picows' docs show: a
WSListener per connection, ``transport.send()`` per frame (picows hands the
application frames; the load client never fragments).

``--batched`` (``picows-batched``): the replies to the frames of one read are
joined into one write: each echo frame is built here (an unmasked header +
the payload) and kept until ``WSFrame.last_in_buffer``, then written with one
``underlying_transport.write``: what batching gives picows, beside what
wsfast does."""

import asyncio

import _common
import picows
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

transports = set()


def frame_header(opcode, n):
    if n < 126:
        return bytes((0x80 | opcode, n))
    if n < 65536:
        return bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    return bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")


class Listener(WSListener):
    def on_ws_connected(self, transport: WSTransport):
        self.transport = transport
        transports.add(transport)

    def on_ws_disconnected(self, transport: WSTransport):
        transports.discard(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame):
        msg_type = frame.msg_type
        if msg_type == WSMsgType.BINARY:
            transport.send(WSMsgType.BINARY, frame.get_payload_as_memoryview())
        elif msg_type == WSMsgType.TEXT:
            command = _common.parse_broadcast(frame.get_payload_as_utf8_text())
            if command is None:
                transport.send(WSMsgType.TEXT, frame.get_payload_as_memoryview())
                return
            for payload in _common.payloads(*command):
                for t in transports:
                    t.send(WSMsgType.BINARY, payload)
        elif msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()


class BatchedListener(Listener):
    def on_ws_connected(self, transport: WSTransport):
        super().on_ws_connected(transport)
        self.out = []
        self.write = transport.underlying_transport.write

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame):
        if frame.msg_type == WSMsgType.BINARY:
            out = self.out
            if frame.last_in_buffer and not out:  # a lone frame: picows' own send, no copy
                transport.send(WSMsgType.BINARY, frame.get_payload_as_memoryview())
                return
            out.append(frame_header(2, frame.payload_size))
            out.append(frame.get_payload_as_bytes())  # the view is valid only during this call
            if frame.last_in_buffer:
                self.write(b"".join(out))
                out.clear()
            return
        if self.out:  # keep the order
            self.write(b"".join(self.out))
            self.out.clear()
        super().on_ws_frame(transport, frame)


async def main(args):
    listener = BatchedListener if args.batched else Listener
    server = await ws_create_server(lambda request: listener(), args.host, args.port,
                                    max_frame_size=64 * 2**20, backlog=4096)
    version = getattr(picows.version, "__version__", "")
    print(f"picows {version}{' batched (one write per read)' if args.batched else ''}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    args = _common.parse_args(__doc__, lambda p: p.add_argument("--batched", action="store_true"))
    _common.raise_nofile()
    _common.install_uvloop()
    asyncio.run(main(args))
