#!/usr/bin/env python3
"""The race's table: medians over the rounds of each variant, ratios to `direct`.

usage: report.py RESULTS.tsv TITLE VARIANT...   (RESULTS: variant, round, key, value per line)
"""
import statistics
import sys
from collections import defaultdict


def main():
    results, title, variants = sys.argv[1], sys.argv[2], sys.argv[3:]
    values = defaultdict(lambda: defaultdict(list))  # variant -> key -> [float]
    notes = defaultdict(list)  # variant -> [text]
    rounds = defaultdict(set)
    failed_rounds = defaultdict(set)
    for line in open(results):
        parts = line.rstrip("\n").split("\t", 3)
        if len(parts) != 4:
            continue
        v, r, k, val = parts
        rounds[v].add(r)
        if k == "failed":
            failed_rounds[v].add(r)
            notes[v].append(val)
        elif k == "note":
            notes[v].append(val)
        else:
            try:
                values[v][k].append(float(val))
            except ValueError:
                notes[v].append(f"{k}={val}")

    def med(v, k):
        xs = values[v].get(k)
        return statistics.median(xs) if xs else None

    def ratio(v, k, digits=2):
        m, d = med(v, k), med("direct", k)
        if m is None or d is None or d == 0 or v == "direct":
            return ""
        return f" ({m / d:.{digits}f}×)"

    def num(x, fmt):
        return "—" if x is None else format(x, fmt)

    out = [f"**{title}**", ""]
    out.append(
        "| variant | 64 B rx pps | offered pps | dropped | TCP Gbit/s | RR p50 µs | RR p99 µs "
        "| CPU % flood / TCP / RR | switch idle % | rounds ok |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for v in variants:
        ok = len(rounds[v]) - len(failed_rounds[v])
        if ok == 0:
            reason = notes[v][0] if notes[v] else "no result"
            out.append(f"| {v} | failed: {reason} | | | | | | | | 0/{len(rounds[v])} |")
            continue
        cpu = " / ".join(num(med(v, k), ".0f") for k in ("cpu_flood", "cpu_tcp", "cpu_rr"))
        rx = med(v, "rx_pps")
        out.append(
            "| {v} | {rx}{rxr} | {off} | {drop} | {tcp}{tcpr} | {p50}{p50r} | {p99}{p99r} | {cpu} | {idle} | {ok}/{n} |".format(
                v=v,
                rx=num(rx and rx / 1000, ".0f") + ("k" if rx else ""),
                rxr=ratio(v, "rx_pps"),
                off=num(med(v, "offered_pps") and med(v, "offered_pps") / 1000, ".0f")
                + ("k" if med(v, "offered_pps") else ""),
                drop=num(med(v, "drop_pct"), ".1f") + ("%" if med(v, "drop_pct") is not None else ""),
                tcp=num(med(v, "tcp_gbps"), ".2f"),
                tcpr=ratio(v, "tcp_gbps"),
                p50=num(med(v, "rr_p50"), ".1f"),
                p50r=ratio(v, "rr_p50"),
                p99=num(med(v, "rr_p99"), ".1f"),
                p99r=ratio(v, "rr_p99"),
                cpu=cpu,
                idle=num(med(v, "cpu_idle"), ".1f"),
                ok=ok,
                n=len(rounds[v]),
            )
        )
    extra = [(v, n) for v in variants for n in dict.fromkeys(notes[v]) if len(failed_rounds[v]) < len(rounds[v])]
    if extra:
        out.append("")
        for v, n in extra:
            out.append(f"- {v}: {n}")
    out.append("")
    out.append(
        "Medians over the rounds; (×) = ratio to direct. CPU = the switch's processes (ovs-vswitchd, "
        "podswitchd: all threads) plus every ksoftirqd, utime+stime as % of one core over each "
        "measurement; for the kernel variants only ksoftirqd shows (the kernel forwards in the "
        "senders' and receivers' own context). Idle = the switch's processes over a quiet interval."
    )
    print("\n".join(out))


if __name__ == "__main__":
    main()
