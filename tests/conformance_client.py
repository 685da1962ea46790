"""An echo client built on ``wsfast.connect``: it sends every message back.

The conformance tests (tests/test_conformance.py) drive :func:`echo_once`
from a raw server. Run as a script, it is the client side of the external
conformance suite (Autobahn|Testsuite's ``fuzzingserver``)::

    wstest -m fuzzingserver -s fuzzingserver.json        # listens on 9001
    python tests/conformance_client.py --uri ws://127.0.0.1:9001 [--pure-python] [--no-uvloop]

It asks the suite for the number of cases, runs each (``/runCase?case=N``),
then asks it to write its reports (``/updateReports``).
"""

import argparse
import asyncio
import sys
from urllib.parse import quote

import wsfast


async def echo_once(uri, **connect_kwargs):
    """Connect to ``uri``, echo every message until the connection closes;
    return ``(close_code, close_reason, messages_echoed)``. A refused or
    failed handshake raises; a connection that closes with an error does not."""
    echoed = 0
    async with wsfast.connect(uri, **connect_kwargs) as ws:
        try:
            async for message in ws:
                await ws.send(message)
                echoed += 1
        except wsfast.ConnectionClosed:
            pass
    return ws.close_code, ws.close_reason, echoed


async def run_suite(uri, agent, **connect_kwargs):
    async with wsfast.connect(f"{uri}/getCaseCount") as ws:
        count = int(await ws.recv())
    print(f"{count} cases", flush=True)
    for case in range(1, count + 1):
        try:
            await echo_once(f"{uri}/runCase?case={case}&agent={quote(agent)}", **connect_kwargs)
        except (OSError, wsfast.WebSocketError, TimeoutError) as exc:
            print(f"case {case}: {exc!r}", flush=True)
    async with wsfast.connect(f"{uri}/updateReports?agent={quote(agent)}") as ws:
        async for _ in ws:
            pass


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", default="ws://127.0.0.1:9001")
    parser.add_argument("--agent", default=None)
    parser.add_argument("--pure-python", action="store_true", help="use the pure-Python codec")
    parser.add_argument("--no-uvloop", action="store_true", help="use the stdlib event loop")
    parser.add_argument("--max-message-size", type=int, default=16 * 2**20)
    args = parser.parse_args(argv)
    codec = "python" if args.pure_python else None
    agent = args.agent or f"wsfast-{'python' if args.pure_python else wsfast.IMPLEMENTATION}"
    coro = run_suite(
        args.uri, agent, codec=codec, max_message_size=args.max_message_size
    )
    if not args.no_uvloop:
        try:
            import uvloop
        except ImportError:
            uvloop = None
        if uvloop is not None:
            if sys.version_info >= (3, 11):
                with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                    return runner.run(coro)
            uvloop.install()
    return asyncio.run(coro)


if __name__ == "__main__":
    main()
