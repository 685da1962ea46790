"""websockets echo + fan-out server on uvloop: the asyncio API
(``websockets.asyncio.server.serve``), compression off, no size limit,
keepalive pings off; fan-out with ``websockets.broadcast``."""

import asyncio

import _common
import websockets
from websockets.asyncio.server import broadcast, serve


async def handler(ws):
    async for message in ws:
        if type(message) is str:
            command = _common.parse_broadcast(message)
            if command is not None:
                for payload in _common.payloads(*command):
                    broadcast(ws.server.connections, payload)
                continue
        await ws.send(message)


async def main(args):
    async with serve(handler, args.host, args.port, compression=None, max_size=None,
                     max_queue=None, ping_interval=None, backlog=4096) as server:
        print(f"websockets {websockets.__version__}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    args = _common.parse_args(__doc__)
    _common.raise_nofile()
    _common.install_uvloop()
    asyncio.run(main(args))
