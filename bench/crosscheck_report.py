"""Put bench/run.py results taken with different load clients side by side
(the cross-check of bench/loadclient.py against bench/picows_client.py):

    python bench/run.py --quick --client loadclient --servers wsfast,picows --scenarios echo,rr --out /tmp/xc-loadclient
    python bench/run.py --quick --client picows ... --out /tmp/xc-picows
    python bench/run.py --quick --client picows-cork ... --out /tmp/xc-picows-cork
    python bench/crosscheck_report.py /tmp/xc-loadclient /tmp/xc-picows /tmp/xc-picows-cork > bench/results/crosscheck.md

For every scenario: server CPU µs per round trip of wsfast and of picows
(medians over the rounds) and their ratio, per load client; ‡ = client-bound.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402 - the same medians, labels and client-bound rule as the tables


def main(dirs):
    runs = []
    for d in dirs:
        with open(os.path.join(d, "system.json")) as f:
            runs.append(json.load(f))
    a, b = "wsfast", "picows"
    print("# Load-client cross-check\n")
    print("The same servers measured with each load client; server CPU µs per round trip, "
          f"{a} / {b} (median over the rounds), and the ratio (‡: client-bound, left out).\n")
    for r in runs:
        m = r["meta"]
        la0, la1 = m["loadavg_start"], m["loadavg_end"]
        print(f"- **{m.get('client', 'loadclient')}**: `{m['command']}`, wsfast `{m['wsfast_commit'][:7]}`, "
              f"{m['rounds']} rounds, {m['started']}, load average {la0[0]:.1f} → {la1[0]:.1f}")
    print()
    print("| scenario | " + " | ".join(r["meta"].get("client", "loadclient") for r in runs) + " |")
    print("|---|" + "---|" * len(runs))
    cases = [c for c in run.rt_cases(runs[0]["results"])]
    for c in cases:
        row = []
        for r in runs:
            res = r["results"]
            if c not in res:
                row.append("–")
                continue
            x = run.metric(res, c, a, "server_cpu_us_per_rt", allow_client_bound=True)
            y = run.metric(res, c, b, "server_cpu_us_per_rt", allow_client_bound=True)
            q = run.cost_ratio(res, c, a, b)
            marks = ["‡" if run.client_bound(run.ok_runs(res, c, s)) else "" for s in (a, b)]
            row.append(f"{run.fmt(x)}{marks[0]} / {run.fmt(y)}{marks[1]} = " + (f"**{q:.2f}**" if q else "–"))
        print(f"| {run.case_label(c)} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
