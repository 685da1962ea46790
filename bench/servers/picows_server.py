"""picows echo + fan-out server on uvloop, as picows' docs show: a
WSListener per connection, ``transport.send()`` per frame (picows hands the
application frames; the load client never fragments)."""

import asyncio

import _common
import picows
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

transports = set()


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


async def main(args):
    server = await ws_create_server(lambda request: Listener(), args.host, args.port,
                                    max_frame_size=64 * 2**20, backlog=4096)
    print(f"picows {picows.version.__version__ if hasattr(picows.version, '__version__') else ''}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    args = _common.parse_args(__doc__)
    _common.raise_nofile()
    _common.install_uvloop()
    asyncio.run(main(args))
