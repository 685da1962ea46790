"""Fan-out lockstep: server user-space instructions per delivery (callgrind),
a figure that does not depend on the machine's load.

    python bench/fanout_instr.py --commit HEAD --servers wsfast,picows,ceiling-perframe
    python bench/fanout_instr.py --commit 1234abc --commit HEAD        # wsfast at two commits

Each server (``bench/servers/``, as bench/run.py starts it, unpinned) runs
under ``valgrind --tool=callgrind`` twice, serving bench/loadclient.py's
lockstep fan-out (``--clients`` connections, one 256 B broadcast at a time,
the next when the last client has the previous one): once with ``--base``
broadcasts and once with ``--base + --messages``. The difference of the
two runs' instruction totals over the difference of their deliveries
(``--messages`` × ``--clients``) is what one delivery costs in user space
(the server's Python, its extension, the event loop; the kernel's side of
each send is not counted, and is the same for every server); the start-up,
the handshakes and the warm-up cancel out. Prints one line per run and a
table; ``--json FILE`` writes them.
"""

import argparse
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import at_commit  # noqa: E402  (bench/at_commit.py: wsfast exported at a commit, built outside the checkout)
import run as _run  # noqa: E402  (bench/run.py: the servers, the load client)


def callgrind_run(name, env, clients, messages, workdir, log, keep=None):
    """Serve one lockstep fan-out of ``messages`` broadcasts under callgrind;
    return (instructions, the load client's result)."""
    _, script, extra, _, _ = _run.SERVERS[name]
    port = _run.free_port()
    out = os.path.join(workdir, f"callgrind.{name}.{messages}.{time.monotonic_ns()}")
    if script == "wsfast_server.py":
        extra = extra + ["--no-ping"]  # its 20 s keepalive ping would reach clients that never pong
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no",
           sys.executable, os.path.join(_run.SERVERS_DIR, script), "--port", str(port)] + extra
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env, cwd=_run.SERVERS_DIR)
    _run._children.append(proc)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 300)
        if not ready or not proc.stdout.readline():
            raise RuntimeError(f"{name} did not start under valgrind (see {log.name})")
        result = _run.run_client(["fanout", "--clients", str(clients), "--messages", str(messages),
                                  "--wave-deliveries", str(clients), "--window", "1", "--timeout", "600"],
                                 port, proc.pid, None, 1800)
        if "error" in result:
            raise RuntimeError(f"{name}, {messages} broadcasts: {result['error']}")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # callgrind writes its totals (asyncio.run may hang on SIGINT)
            try:
                proc.wait(900)  # closing 1,000 connections under valgrind takes a while
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"{name} did not exit on SIGTERM: no callgrind totals")
        _run._children.remove(proc)
    with open(out) as f:
        text = f.read()
    if keep:
        os.makedirs(keep, exist_ok=True)
        shutil.move(out, os.path.join(keep, f"callgrind.{name}.{messages}"))
    else:
        os.unlink(out)
    totals = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
    if not totals:
        raise RuntimeError(f"no instruction total in {out}")
    return int(totals.group(1)), result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default="wsfast", help="comma-separated bench/run.py server names")
    parser.add_argument("--commit", action="append", default=[], metavar="REV",
                        help="wsfast as committed at REV, exported and built outside the checkout "
                             "(repeat to compare commits; default: this checkout's in-place build)")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--base", type=int, default=10, help="broadcasts of the shorter run")
    parser.add_argument("--messages", type=int, default=40, help="broadcasts the longer run adds")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--keep", metavar="DIR", help="keep the callgrind files here (callgrind_annotate)")
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="wsfast-fanout-instr-")
    wsfast_envs = []  # (label, env, info)
    for rev in args.commit or [None]:
        env, info = at_commit.prepare(rev, workdir)
        wsfast_envs.append((rev or "checkout", env, info))
    plan = []
    for name in args.servers.split(","):
        if name not in _run.SERVERS:
            parser.error(f"unknown server {name!r}")
        if name.startswith("wsfast"):
            plan += [(f"{name}@{label} ({info['commit'][:8]})", name, env, info) for label, env, info in wsfast_envs]
        else:
            plan.append((name, name, wsfast_envs[0][1], None))
    rows = []
    with open(os.path.join(workdir, "servers.log"), "w") as log:
        for label, name, env, info in plan:
            keep = args.keep and os.path.join(args.keep, label.split()[0].replace("@", "-"))
            short, _ = callgrind_run(name, env, args.clients, args.base, workdir, log, keep)
            long, result = callgrind_run(name, env, args.clients, args.base + args.messages, workdir, log, keep)
            per = (long - short) / (args.messages * args.clients)
            rows.append({"server": label, "wsfast": at_commit.describe(info) if info else None,
                         "instructions_short": short, "instructions_long": long,
                         "deliveries": args.messages * args.clients, "instructions_per_delivery": per})
            print(f"{label:40} {per:10,.0f} instructions per delivery ({short:,} / {long:,})", flush=True)
    shutil.rmtree(workdir, ignore_errors=True)
    command = "python bench/fanout_instr.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"\n`{command}`, {args.clients} clients, lockstep, 256 B; load average "
          f"{os.getloadavg()[0]:.1f} (does not change instruction counts)\n")
    print("| server | instructions per delivery |\n|---|---:|")
    for r in rows:
        print(f"| {r['server']} | {r['instructions_per_delivery']:,.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": command, "clients": args.clients, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
