"""The Tornado echo + fan-out server of tornado_server.py with one line
changed: its ``WebSocketHandler`` is ``wsfast.tornado``'s. Tornado's
HTTPServer answers the handshake; wsfast serves the connection after it.
``--pure-python``: wsfast's pure-Python codec."""

import asyncio
import os
import sys
from typing import ClassVar

if "--pure-python" in sys.argv:  # before wsfast is imported
    os.environ["WSFAST_NO_EXTENSIONS"] = "1"
    sys.argv.remove("--pure-python")

sys.path.insert(0, os.environ.get("WSFAST_TREE")
                or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import _common
import tornado
import tornado.web

import wsfast
from wsfast.tornado import WebSocketClosedError, WebSocketHandler


class Bench(WebSocketHandler):
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
                        except WebSocketClosedError:
                            self.clients.discard(client)
                return
            self.write_message(message)
        else:
            self.write_message(message, binary=True)


async def main(args):
    app = tornado.web.Application([(r"/.*", Bench)], websocket_max_message_size=64 * 2**20)
    app.listen(args.port, args.host, backlog=4096)
    print(f"tornado {tornado.version} + wsfast.tornado {wsfast.__version__} "
          f"({wsfast.IMPLEMENTATION})", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    args = _common.parse_args(__doc__)
    _common.raise_nofile()
    _common.install_uvloop()
    asyncio.run(main(args))
