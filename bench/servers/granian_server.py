"""granian (Rust HTTP/WebSocket server) running the same bare ASGI echo
application as uvicorn_server.py, embedded in this process's asyncio loop
(uvloop) with one Rust runtime thread, so the process's CPU time and RSS
cover everything (taskset pins every thread to the server's core)."""

import asyncio
import socket

import _common
import granian
from granian.constants import Interfaces
from granian.server.embed import Server
from uvicorn_server import asgi_echo


async def main(args):
    server = Server(asgi_echo, address=args.host, port=args.port, interface=Interfaces.ASGI,
                    websockets=True, backlog=4096, runtime_threads=1, log_enabled=False)
    task = asyncio.get_running_loop().create_task(server.serve())
    for _ in range(400):
        if task.done():
            task.result()
        try:
            socket.create_connection((args.host, args.port), 0.5).close()
            break
        except OSError:
            await asyncio.sleep(0.025)
    print(f"granian {granian.__version__} (embedded, ASGI)", flush=True)
    await task


if __name__ == "__main__":
    args = _common.parse_args(__doc__)
    _common.raise_nofile()
    _common.install_uvloop()
    asyncio.run(main(args))
