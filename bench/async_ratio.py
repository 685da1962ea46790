"""Async handler vs sync handler: server CPU per round trip, side by side.

    python bench/async_ratio.py                      # this checkout (extension built in place)
    python bench/async_ratio.py --tree /tmp/wsfast-x  # a wsfast exported elsewhere
    python bench/async_ratio.py --rounds 5 --sizes 256,8192 --connections 16 --inflight 8
    python bench/async_ratio.py --commit da7701c --commit HEAD   # commits side by side (git archive + build)

Issue 12's target for ``async def on_message`` (a coroutine that only calls
``write_message``): server CPU µs per round trip at most 1.5 × the sync
handler's, pipelined 16 connections × 8 in flight, 256 B and 8 KiB. The two
servers are ``bench/servers/wsfast_server.py`` without and with ``--async``
(uvloop, Cython codec), each pinned to CPU 0 and the load client
(``bench/loadclient.py``) to CPU 1, as ``bench/run.py`` runs them; rounds
interleave sync and async so that machine noise falls on both. Prints one
line per measurement and a table of medians with the ratio.
"""

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import at_commit  # noqa: E402  (bench/at_commit.py: wsfast exported at a commit, built outside the checkout)
import run as _run  # noqa: E402  (bench/run.py: start_server, run_client, stop_server)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", default=None, help="import wsfast from this directory (default: this checkout)")
    parser.add_argument("--commit", action="append", default=[],
                        help="wsfast at this commit, exported and built (repeat to compare; rounds interleave)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="256,8192")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--inflight", type=int, default=8)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    args = parser.parse_args()
    trees = {}  # label -> env
    workdir = tempfile.mkdtemp(prefix="async_ratio_")
    for commit in args.commit:
        tree, sha = at_commit.wsfast_tree(commit, workdir)
        trees[f"{commit}={sha[:8]}"] = dict(os.environ, WSFAST_TREE=tree)
    if not trees:
        env = dict(os.environ)
        if args.tree:
            env["WSFAST_TREE"] = os.path.abspath(args.tree)
        trees[args.tree or "checkout"] = env
    sizes = [int(s) for s in args.sizes.split(",")]
    cost = {}  # (tree, mode, size) -> [µs per round trip]
    with tempfile.NamedTemporaryFile("w", prefix="async_ratio_", suffix=".log", delete=False) as log:
        for rnd in range(args.rounds):
            for size in sizes:
                for (label, env), mode in [(t, m) for t in trees.items() for m in ("wsfast", "wsfast-async")]:
                    proc, port, banner = _run.start_server(mode, args.server_cpu, env, log)
                    try:
                        result = _run.run_client(
                            ["echo", "--connections", str(args.connections), "--inflight",
                             str(args.inflight), "--size", str(size), "--duration", str(args.duration)],
                            port, proc.pid, args.client_cpu, 60,
                        )
                    finally:
                        _run.stop_server(proc)
                    if "error" in result:
                        raise SystemExit(f"{mode} {size} B: {result['error']}")
                    us = result["server_cpu_us_per_rt"]
                    cost.setdefault((label, mode, size), []).append(us)
                    print(f"round {rnd + 1} {label} {mode:13} {size:6} B  {us:6.2f} µs/rt  "
                          f"{result['round_trips_per_s']:>10.0f} rt/s  "
                          f"client CPU {result.get('client_cpu_pct', '?')} %", flush=True)
                    if rnd == 0 and size == sizes[0]:
                        print("   ", banner, flush=True)
    print(f"\n{args.connections} conns x {args.inflight} in flight, medians of {args.rounds}")
    print("wsfast              size      sync µs/rt   async µs/rt   async/sync")
    for label in trees:
        for size in sizes:
            sync = statistics.median(cost[(label, "wsfast", size)])
            asyn = statistics.median(cost[(label, "wsfast-async", size)])
            print(f"{label[:18]:18} {size:6} B  {sync:10.2f}   {asyn:11.2f}   {asyn / sync:9.2f}")


if __name__ == "__main__":
    main()
