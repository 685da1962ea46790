"""aiohttp echo + fan-out server on uvloop: ``web.Application`` with a
``WebSocketResponse`` handler, as aiohttp's docs show."""

import asyncio

import _common
import aiohttp
from aiohttp import WSMsgType, web

clients = set()


async def handler(request):
    ws = web.WebSocketResponse(max_msg_size=0, compress=False)
    await ws.prepare(request)
    clients.add(ws)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                command = _common.parse_broadcast(msg.data)
                if command is None:
                    await ws.send_str(msg.data)
                    continue
                for payload in _common.payloads(*command):
                    for client in list(clients):
                        if not client.closed:
                            await client.send_bytes(payload)
    finally:
        clients.discard(ws)
    return ws


async def main(args):
    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port, backlog=4096).start()
    print(f"aiohttp {aiohttp.__version__}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    args = _common.parse_args(__doc__)
    _common.raise_nofile()
    _common.install_uvloop()
    asyncio.run(main(args))
