"""Turn a pytest-benchmark JSON file into the markdown table of bench/README.md.

    python bench/codec_report.py bench/results/codec.json > bench/results/codec.md

For each group: every entry's median, min, throughput, and its speed relative
to the group's wsfast-cython entry (>1 means faster than wsfast-cython).
"""

import json
import sys
from collections import defaultdict


def fmt_time(seconds):
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def name_of(bench):
    params = bench.get("params") or {}
    if "name" in params:
        return params["name"]
    return {"test_memcpy_reference": "memcpy (bytes(bytearray))"}.get(bench["name"], bench["name"])


def main(path):
    data = json.load(open(path))
    groups = defaultdict(list)
    for b in data["benchmarks"]:
        groups[b["group"]].append(b)
    machine = data.get("machine_info", {})
    print(f"Machine: {machine.get('cpu', {}).get('brand_raw', '?')}, "
          f"{machine.get('cpu', {}).get('count', '?')} cores, Python {machine.get('python_version', '?')}; "
          f"run {data.get('datetime', '?')[:19]}")
    print()
    print("| group | implementation | median | min | throughput | speed vs wsfast-cython |")
    print("|---|---|---:|---:|---:|---:|")
    for group in sorted(groups):
        rows = groups[group]
        base = next((b for b in rows if name_of(b).startswith("wsfast-cython")), None)
        for b in sorted(rows, key=lambda b: b["stats"]["median"]):
            med = b["stats"]["median"]
            size = b.get("extra_info", {}).get("bytes")
            tput = f"{size / med / 1e9:.2f} GB/s" if size else ""
            ratio = f"{base['stats']['median'] / med:.2f}×" if base else ""
            if b is base:
                ratio = "1.00×"
            print(f"| {group} | {name_of(b)} | {fmt_time(med)} | {fmt_time(b['stats']['min'])} | {tput} | {ratio} |")


if __name__ == "__main__":
    main(sys.argv[1])
