#!/usr/bin/env python3
"""Tables for benches/e2e/kubeproxy.sh: medians over rounds, ratios to plain forwarding.

Input: a TSV of variant, services, target, round, sent, wall_ns, cpu_ns, rx_in_window,
delivered, sender_cpu_ns (see kubeproxy.sh). For the kernel variants cpu_ns is the sender's
thread (which runs the forwarding in its softirq) plus every ksoftirqd; for podswitch it is
podswitchd (all threads) plus every ksoftirqd plus the sender's thread, which sender_cpu_ns
also gives apart. Either way: the whole path's CPU.
With --smoke, exits 1 unless every kernel run delivered ≥ 99 % and every podswitch run > 0.
"""

import statistics
import sys
from collections import defaultdict

NAMES = {
    "plain": "plain forwarding, no rules",
    "conntrack": "conntrack + NAT hooks, no rules",
    "iptables": "kube-proxy iptables (x_tables)",
    "iptables-nft": "kube-proxy iptables (iptables-nft)",
    "nftables": "kube-proxy nftables",
    "podswitch": "podswitch",
}
ORDER = ["plain", "conntrack", "iptables", "iptables-nft", "nftables", "podswitch"]
TARGETS = ["direct", "first", "random", "last"]


def main():
    path, title = sys.argv[1], sys.argv[2]
    smoke = "--smoke" in sys.argv[3:]
    runs = defaultdict(list)
    failures = []
    for line in open(path):
        f = line.rstrip("\n").split("\t")
        if len(f) < 10:
            continue
        v, n, t, _r = f[0], int(f[1]), f[2], f[3]
        sent, wall, cpu, rx_win, delivered, sender = map(int, f[4:10])
        runs[(v, n, t)].append((sent, wall, cpu, rx_win, delivered, sender))
        need = 0.99 * sent if v != "podswitch" else 1
        if delivered < need:
            failures.append(f"{v} {n} Services {t}: {delivered} of {sent} delivered")

    def med(key, fn):
        vals = [fn(*x) for x in runs[key] if x[1] > 0 and x[4] > 0]
        return statistics.median(vals) if vals else None

    def rate(key):  # new connections per second reaching the backend(s) while sending
        return med(key, lambda s, w, c, rw, d, sc: rw / (w / 1e9))

    def cpu(key):  # CPU ns per delivered packet
        return med(key, lambda s, w, c, rw, d, sc: c / d)

    def sender_cpu(key):
        return med(key, lambda s, w, c, rw, d, sc: sc / d)

    def delivered(key):
        return med(key, lambda s, w, c, rw, d, sc: 100.0 * d / s)

    base_rate = rate(("plain", 0, "direct"))
    base_cpu = cpu(("plain", 0, "direct"))
    print(f"**{title}**\n")
    print("| path | Services | destination | new conn/s at the backend | ratio to plain | CPU ns per new conn | extra ns over plain | delivered | rounds |")
    print("|---|---|---|---|---|---|---|---|---|")
    keys = sorted(runs, key=lambda k: (ORDER.index(k[0]), k[1], TARGETS.index(k[2])))
    for key in keys:
        v, n, t = key
        r, c, d = rate(key), cpu(key), delivered(key)
        if r is None:
            print(f"| {NAMES[v]} | {n or '—'} | {t} | failed | | | | | {len(runs[key])} |")
            continue
        dest = {"direct": "endpoint (no VIP)" if v != "podswitch" else "pod (no VIP)",
                "first": "VIP, first Service", "random": "VIP, random Service",
                "last": "VIP, last Service"}[t]
        ratio = f"{r / base_rate:.2f}×" if base_rate else "—"
        cpu_text = f"{c:.0f}"
        extra = f"{c - base_cpu:+.0f}" if base_cpu else "—"
        if v == "podswitch":
            cpu_text = f"{c:.0f} ({c - sender_cpu(key):.0f} switch)"
        print(f"| {NAMES[v]} | {n or '—'} | {dest} | {r / 1e3:.0f}k | {ratio} | {cpu_text} | {extra} | {d:.1f}% | {len(runs[key])} |")

    scales = sorted({k[1] for k in runs if k[1] > 0})
    cols = [(v, t) for v in ORDER for t in ("first", "random", "last")
            if any(k[0] == v and k[2] == t for k in runs)]
    if scales and cols and base_cpu:
        # CPU time is what a new connection costs whatever else runs on the machine; the wall
        # rate above moves with the load of a shared machine.
        print("\nSide by side: CPU µs per new connection, whole path (in brackets: ratio to plain "
              f"forwarding, {base_cpu / 1e3:.2f} µs)\n")
        print("| Services | " + " | ".join(f"{v} {t}" for v, t in cols) + " |")
        print("|---|" + "---|" * len(cols))
        for n in scales:
            cells = []
            for v, t in cols:
                c = cpu((v, n, t))
                cells.append(f"{c / 1e3:.2f} ({c / base_cpu:.2f}×)" if c else "—")
            print(f"| {n} | " + " | ".join(cells) + " |")
    if failures:
        print("\nRuns that lost datagrams:\n")
        for f in failures:
            print(f"- {f}")
    if smoke and (failures or not runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
