"""Run the fuzz harnesses of this directory and report, per harness, the
inputs tried, the time, and the crashes and disagreements found.

    python fuzz/run.py --runs 2000            # CI: a fixed count per harness
    python fuzz/run.py --minutes 30           # long: the time split between harnesses
    python fuzz/run.py --minutes 30 --harness frame_differential
    bash fuzz/sanitize.sh --minutes 60        # on an ASan/UBSan build (see there)

Each harness runs under atheris (libFuzzer) in its own process, one after
the other (``--parallel`` runs them side by side), from the committed seed
corpus (``fuzz/corpus/<harness>``) with its dictionary
(``fuzz/dict/<harness>.dict``). What the fuzzer finds new goes to
``<workdir>/corpus/<harness>`` (default ``fuzz/.work``, not committed), so a
later run continues from it; a failing input goes to
``<workdir>/artifacts/<harness>/crash-*`` and the harness restarts (at most
``--max-findings`` times) for the rest of its time. Replay one with
``python fuzz/<harness>.py <that file>``. The exit status is 1 when anything
was found.
"""

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HARNESSES = ["frame_differential", "connection_differential", "http_handshake", "origin"]

_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_STAT = re.compile(r"stat::number_of_executed_units:\s*(\d+)")
_PROGRESS = re.compile(r"^#(\d+)\s", re.M)
_ARTIFACT = re.compile(r"Test unit written to (\S+)")


def commit():
    try:
        out = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "wsfast", "fuzz"],
                               capture_output=True, text=True).stdout.strip()
        return out + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def command(harness, args, work, budget):
    corpus = os.path.join(work, "corpus", harness)
    artifacts = os.path.join(work, "artifacts", harness) + os.sep
    os.makedirs(corpus, exist_ok=True)
    os.makedirs(artifacts, exist_ok=True)
    if args.replay:  # no libFuzzer: the corpora given, then mutants of them
        dirs = [os.path.join(d, harness) for d in args.replay] + [os.path.join(HERE, "corpus", harness)]
        cmd = [sys.executable, os.path.join(HERE, "replay.py"), harness]
        cmd += [d for d in dirs if os.path.isdir(d)] + ["--artifacts", artifacts]
        if args.runs is not None:
            return cmd + ["--runs", str(budget)]
        return cmd + ["--seconds", str(max(1, int(budget)))]
    cmd = [sys.executable, os.path.join(HERE, harness + ".py"), corpus,
           os.path.join(HERE, "corpus", harness),
           f"-dict={os.path.join(HERE, 'dict', harness + '.dict')}",
           f"-artifact_prefix={artifacts}", "-print_final_stats=1", f"-max_len={args.max_len}",
           f"-timeout={args.timeout}", f"-rss_limit_mb={args.rss_limit_mb}", "-close_fd_mask=0"]
    if args.runs is not None:
        cmd.append(f"-runs={budget}")
    else:
        cmd.append(f"-max_total_time={max(1, int(budget))}")
    if args.seed is not None:
        cmd.append(f"-seed={args.seed}")
    return cmd


def run_once(harness, args, work, budget, log):
    cmd = command(harness, args, work, budget)
    env = dict(os.environ)
    if args.tree:
        env["WSFAST_FUZZ_TREE"] = os.path.abspath(args.tree)
    start = time.monotonic()
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    elapsed = time.monotonic() - start
    with open(log, errors="replace") as f:
        text = f.read()
    text = text[text.rfind(f"$ {' '.join(cmd)}"):]
    m = _STAT.search(text) or _DONE.search(text)
    if m:
        runs = int(m.group(1))
    else:  # a crash: the last progress line is the best count there is
        progress = _PROGRESS.findall(text)
        runs = int(progress[-1]) if progress else 0
    artifacts = _ARTIFACT.findall(text)
    disagreement = "Disagreement" in text
    return proc.returncode, runs, elapsed, artifacts, disagreement, text


def salvage(folder):
    """The input replay.py was running when the process died (``current``),
    saved as a crash file; [] if there is none."""
    try:
        with open(os.path.join(folder, "current"), "rb") as f:
            raw = f.read()
    except OSError:
        return []
    data = raw[4 : 4 + int.from_bytes(raw[:4], "little")]
    path = os.path.join(folder, "crash-" + hashlib.sha1(data).hexdigest())
    with open(path, "wb") as f:
        f.write(data)
    return [path]


def fuzz(harness, args, work):
    log = os.path.join(work, f"{harness}.log")
    open(log, "w").close()
    total = {"harness": harness, "inputs": 0, "seconds": 0.0, "crashes": [], "disagreements": []}
    deadline = None if args.runs is not None else time.monotonic() + args.seconds_each
    remaining_runs = args.runs
    while True:
        budget = remaining_runs if args.runs is not None else deadline - time.monotonic()
        code, runs, elapsed, artifacts, disagreement, text = run_once(harness, args, work, budget, log)
        total["inputs"] += runs
        total["seconds"] += elapsed
        if code == 0:
            break
        if not artifacts and args.replay:  # a sanitizer abort: replay.py kept the input
            artifacts = salvage(os.path.join(work, "artifacts", harness))
        if not artifacts:  # no input to blame: the harness itself broke
            total["crashes"].append(f"exit {code} without an artifact, see {log}")
            break
        seen = set(total["crashes"]) | set(total["disagreements"])
        new = [a for a in artifacts if a not in seen]
        (total["disagreements"] if disagreement else total["crashes"]).extend(new)
        if not new:  # the same input again (a seed fails): rerunning finds nothing else
            break
        found = len(total["crashes"]) + len(total["disagreements"])
        if found >= args.max_findings:
            break
        if args.runs is not None:
            remaining_runs -= runs
            if remaining_runs <= 0:
                break
        elif deadline - time.monotonic() < 2:
            break
    total["seconds"] = round(total["seconds"], 1)
    return total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--runs", type=int, help="inputs per harness (CI)")
    budget.add_argument("--minutes", type=float, help="total time, split between the harnesses")
    parser.add_argument("--harness", action="append", choices=HARNESSES,
                        help="run only this one (repeatable; default: all)")
    parser.add_argument("--parallel", action="store_true", help="run the harnesses side by side")
    parser.add_argument("--workdir", default=os.path.join(HERE, ".work"))
    parser.add_argument("--tree", help="import wsfast from this tree (e.g. an ASan build)")
    parser.add_argument("--replay", action="append", metavar="CORPUS_ROOT",
                        help="no libFuzzer: run fuzz/replay.py on CORPUS_ROOT/<harness> "
                             "(repeatable) and the seeds, then mutants of them")
    parser.add_argument("--seed", type=int, help="libFuzzer -seed, for a reproducible run")
    parser.add_argument("--max-len", type=int, default=4096)
    parser.add_argument("--timeout", type=int, default=30, help="seconds per input")
    parser.add_argument("--rss-limit-mb", type=int, default=2048)
    parser.add_argument("--max-findings", type=int, default=5, help="per harness")
    parser.add_argument("--json", help="write the report here too")
    args = parser.parse_args(argv)
    harnesses = args.harness or HARNESSES
    if args.minutes is not None:
        share = 1 if args.parallel else len(harnesses)
        args.seconds_each = args.minutes * 60 / share
    work = os.path.abspath(args.workdir)
    os.makedirs(work, exist_ok=True)

    started = time.time()
    tested = commit()  # now: the tree may change while the run goes on
    if args.parallel:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(len(harnesses)) as pool:
            results = list(pool.map(lambda h: fuzz(h, args, work), harnesses))
    else:
        results = [fuzz(h, args, work) for h in harnesses]

    report = {
        "command": " ".join(["python", "fuzz/run.py"] + (argv if argv is not None else sys.argv[1:])),
        "commit": tested,
        "tree": args.tree,
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
        "wall_seconds": round(time.time() - started, 1),
        "harnesses": results,
        "inputs": sum(r["inputs"] for r in results),
        "crashes": sum(len(r["crashes"]) for r in results),
        "disagreements": sum(len(r["disagreements"]) for r in results),
    }
    print(f"{'harness':<26} {'inputs':>11} {'seconds':>9} {'inputs/s':>9} {'crashes':>8} {'disagree':>9}")
    for r in results:
        rate = r["inputs"] / r["seconds"] if r["seconds"] else 0
        print(f"{r['harness']:<26} {r['inputs']:>11,} {r['seconds']:>9.1f} {rate:>9.0f} "
              f"{len(r['crashes']):>8} {len(r['disagreements']):>9}")
        for path in r["crashes"] + r["disagreements"]:
            print(f"    {path}   (replay: python fuzz/{r['harness']}.py {path})")
    print(f"{'total':<26} {report['inputs']:>11,} {report['wall_seconds']:>9.1f}"
          f" {'':>9} {report['crashes']:>8} {report['disagreements']:>9}")
    print(f"commit {report['commit']}, {report['started']}: {report['command']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 1 if report["crashes"] or report["disagreements"] else 0


if __name__ == "__main__":
    sys.exit(main())
