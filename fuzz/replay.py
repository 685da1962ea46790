"""Run one harness without libFuzzer: every input of the given corpus
directories, then mutants of them (``_common.mutants``) until a count or a
time is reached. For the sanitizer build (fuzz/sanitize.sh): gcc's libasan
defines the ``__sanitizer_cov_*`` hooks itself and, preloaded first as ASan
requires, shadows atheris' libFuzzer ones, so libFuzzer would run blind
there. This driver instead starts from the corpus the coverage-guided runs
grew (``fuzz/.work/corpus/<harness>``) and mutates it.

    python fuzz/replay.py HARNESS [--runs N | --seconds S] [--artifacts DIR] DIR...

The input being run is kept in ``<artifacts>/current`` (a memory map, so a
sanitizer abort leaves it behind); a Python exception writes
``<artifacts>/crash-<sha1>``. Prints ``Done <n> runs in <s> second(s)``
(libFuzzer's words, so fuzz/run.py reads both alike) and exits 1 on a
finding.
"""

import argparse
import hashlib
import importlib
import mmap
import os
import random
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
# Without libFuzzer nobody reads the coverage: skip atheris' bytecode
# instrumentation (several times faster).
os.environ.setdefault("WSFAST_FUZZ_NO_INSTRUMENT", "1")

import _common  # noqa: E402

MAX_LEN = 1 << 16


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("harness")
    parser.add_argument("dirs", nargs="*")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--artifacts", default=".")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    module = importlib.import_module(args.harness)
    inputs = []
    for folder in args.dirs:
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    inputs.append(f.read(MAX_LEN))
    tokens = _common.read_dict(os.path.join(HERE, "dict", args.harness + ".dict"))
    os.makedirs(args.artifacts, exist_ok=True)
    with open(os.path.join(args.artifacts, "current"), "w+b") as f:
        f.truncate(MAX_LEN + 4)
        current = mmap.mmap(f.fileno(), MAX_LEN + 4)
    rng = random.Random(args.seed)
    start = time.monotonic()
    deadline = None if args.seconds is None else start + args.seconds
    limit = args.runs
    print(f"INFO: {len(inputs)} corpus inputs from {args.dirs}", flush=True)

    def source():
        yield from inputs
        while True:
            yield from _common.mutants(inputs, tokens, 1000, rng)

    runs = 0
    for data in source():
        if limit is not None and runs >= limit:
            break
        if deadline is not None and runs % 256 == 0 and time.monotonic() > deadline:
            break
        data = data[:MAX_LEN]
        current[:4] = len(data).to_bytes(4, "little")
        current[4 : 4 + len(data)] = data
        runs += 1
        try:
            module.test_one_input(data)
        except Exception:
            traceback.print_exc()
            path = os.path.join(args.artifacts, "crash-" + hashlib.sha1(data).hexdigest())
            with open(path, "wb") as out:
                out.write(data)
            print(f"#{runs} finding\nTest unit written to {path}", flush=True)
            print(f"Done {runs} runs in {int(time.monotonic() - start)} second(s)", flush=True)
            return 1
        if runs % 100000 == 0:
            print(f"#{runs}\tpulse exec/s: {runs / (time.monotonic() - start):.0f}", flush=True)
    print(f"Done {runs} runs in {int(time.monotonic() - start)} second(s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
