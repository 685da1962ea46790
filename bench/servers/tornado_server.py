"""tornado echo + fan-out server on uvloop: a ``WebSocketHandler``,
compression off (``get_compression_options`` returns None, the default)."""

import asyncio
from typing import ClassVar

import _common
import tornado
import tornado.web
import tornado.websocket


class Bench(tornado.websocket.WebSocketHandler):
    clients: ClassVar[set] = set()

    def check_origin(self, origin):
        return True

    def get_compression_options(self):
        return None

    def open(self):
        self.clients.add(self)

    def on_close(self):
        self.clients.discard(self)

    def on_message(self, message):
        if type(message) is str:
            command = _common.parse_broadcast(message)
            if command is not None:
                for payload in _common.payloads(*command):
                    for client in list(self.clients):
                        try:
                            client.write_message(payload, binary=True)
                        except tornado.websocket.WebSocketClosedError:
                            self.clients.discard(client)
                return
            self.write_message(message)
        else:
            self.write_message(message, binary=True)


async def main(args):
    app = tornado.web.Application([(r"/.*", Bench)], websocket_max_message_size=64 * 2**20)
    app.listen(args.port, args.host, backlog=4096)
    print(f"tornado {tornado.version}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    args = _common.parse_args(__doc__)
    _common.raise_nofile()
    _common.install_uvloop()
    asyncio.run(main(args))
