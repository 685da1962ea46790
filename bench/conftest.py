"""Micro-benchmarks run with pytest-benchmark: `python -m pytest bench`."""

import os


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """``--benchmark-json`` keeps every timing sample (100+ MB for the codec
    run): the file written for git holds the statistics only. Set
    ``WSFAST_BENCH_RAW=path.json`` to also write the samples there (outside
    git: bench/results/raw/ is ignored)."""
    raw = os.environ.get("WSFAST_BENCH_RAW")
    if raw:
        import gzip
        import json

        os.makedirs(os.path.dirname(os.path.abspath(raw)), exist_ok=True)
        opener = gzip.open if raw.endswith(".gz") else open
        with opener(raw, "wt") as f:
            json.dump(output_json, f)
    for bench in output_json.get("benchmarks", ()):
        bench.get("stats", {}).pop("data", None)
