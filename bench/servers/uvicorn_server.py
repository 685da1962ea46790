"""uvicorn echo server for the ASGI comparison: the same application under
uvicorn (httptools, uvloop) with a chosen WebSocket class, ``--ws``:
``wsfast`` (``wsfast.asgi.WSFastProtocol``), ``websockets-sansio`` (uvicorn's
default), ``wsproto``. ``--app asgi`` (default): a bare ASGI echo coroutine;
``--app starlette``: a Starlette WebSocket route (``iter_bytes`` →
``send_bytes``). Binary back as binary, text as text. Compression and
keepalive off, no size limit worth the name (64 MiB), no fan-out command."""

import asyncio
import os
import sys

# WSFAST_TREE: wsfast exported at a commit (bench/run.py --commit); else this checkout
sys.path.insert(0, os.environ.get("WSFAST_TREE")
                or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import _common
import uvicorn


async def asgi_echo(scope, receive, send):
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        data = message.get("bytes")
        if data is not None:
            await send({"type": "websocket.send", "bytes": data})
        else:
            await send({"type": "websocket.send", "text": message["text"]})


def starlette_echo():
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute

    async def echo(websocket):
        await websocket.accept()
        async for data in websocket.iter_bytes():
            await websocket.send_bytes(data)

    return Starlette(routes=[WebSocketRoute("/", echo)])


def ws_class(name):
    if name == "wsfast":
        from wsfast.asgi import WSFastProtocol

        return WSFastProtocol
    return name  # uvicorn's own names


async def main(args):
    app = asgi_echo if args.app == "asgi" else starlette_echo()
    config = uvicorn.Config(
        app, host=args.host, port=args.port, ws=ws_class(args.ws), http="httptools", lifespan="off",
        ws_max_size=64 * 2**20, ws_per_message_deflate=False, ws_ping_interval=None,
        log_level="warning", access_log=False, backlog=4096,
    )
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    print(f"uvicorn {uvicorn.__version__} --ws {args.ws} ({args.app} app)", flush=True)
    await task


def extra(parser):
    parser.add_argument("--ws", default="wsfast", choices=["wsfast", "websockets-sansio", "wsproto"])
    parser.add_argument("--app", default="asgi", choices=["asgi", "starlette"])


if __name__ == "__main__":
    args = _common.parse_args(__doc__, extra)
    _common.raise_nofile()
    _common.install_uvloop()
    asyncio.run(main(args))
