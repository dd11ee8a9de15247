#!/usr/bin/env python3
"""The rules kube-proxy would program for N ClusterIP Services, for benches/e2e/kubeproxy.sh.

iptables mode: an iptables-restore file (filter and nat tables) with the chains of
pkg/proxy/iptables/proxier.go: KUBE-SERVICES with one rule per ClusterIP port jumping to
KUBE-SVC-<hash>, whose rules choose a KUBE-SEP-<hash> with `-m statistic --mode random
--probability 1/(n-i)` cascades, each SEP doing the DNAT after a KUBE-MARK-MASQ for hairpin
traffic; KUBE-NODEPORTS as the last rule of KUBE-SERVICES; KUBE-POSTROUTING masquerading by
mark; the filter jumps (KUBE-PROXY-FIREWALL, KUBE-FORWARD, KUBE-SERVICES and
KUBE-EXTERNAL-SERVICES for NEW connections). Rule order in KUBE-SERVICES is Service 0 first,
Service N-1 last (kube-proxy's order is its map's, effectively random). Like kube-proxy above
1000 endpoints ("large cluster mode"), endpoint rules carry no comments then.

manifests: the same Services as Service and EndpointSlice objects, for podswitch.

nftables mode: `nft -f` input for kube-proxy's `ip kube-proxy` table as
pkg/proxy/nftables/proxier.go writes it: the base chains (filter-* at dstnat-10, nat-*), the
service-ips verdict map keyed by `ip daddr . meta l4proto . th dport`, a service chain per port
(`numgen random mod N vmap`), an endpoint chain per endpoint (`dnat to`), no-endpoint and
firewall maps (empty here), mark-for-masquerade and masquerading.

Every Service i: UDP, ClusterIP = VIP_BASE + 1 + i, port 80, endpoints ENDPOINTS:10000 (the same
endpoint addresses for every Service: the rules are per Service and endpoint all the same).
The cluster CIDR (traffic from it is not masqueraded, as with kube-proxy's --cluster-cidr) is
--cluster-cidr. Nothing here is copied from kube-proxy; the shapes follow its source.
"""

import argparse
import base64
import hashlib
import ipaddress
import sys

NAMESPACE = "kp"
PORT_NAME = "p80"
PROTO = "udp"
SVC_PORT = 80
MASQ_MARK = "0x4000"
LARGE_CLUSTER_ENDPOINTS = 1000


def vip(base, i):
    return str(ipaddress.IPv4Address(base) + 1 + i)


def svc_port_name(i):
    return f"{NAMESPACE}/svc-{i}:{PORT_NAME}"


def b32_sha(text):
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()


def iptables(args, out):
    n, eps = args.services, args.endpoints
    large = n * len(eps) > LARGE_CLUSTER_ENDPOINTS
    w = out.write
    w("*filter\n")
    for c in ("KUBE-NODEPORTS", "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD",
              "KUBE-PROXY-FIREWALL"):
        w(f":{c} - [0:0]\n")
    new = "-m conntrack --ctstate NEW"
    w(f'-A INPUT {new} -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL\n')
    w('-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS\n')
    w(f'-A INPUT {new} -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES\n')
    w(f'-A FORWARD {new} -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL\n')
    w('-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD\n')
    w(f'-A FORWARD {new} -m comment --comment "kubernetes service portals" -j KUBE-SERVICES\n')
    w(f'-A FORWARD {new} -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES\n')
    w(f'-A OUTPUT {new} -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL\n')
    w(f'-A OUTPUT {new} -m comment --comment "kubernetes service portals" -j KUBE-SERVICES\n')
    w("-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n")
    w(f'-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT\n')
    w('-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n')
    w("COMMIT\n*nat\n")
    for c in ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"):
        w(f":{c} - [0:0]\n")
    names = []
    for i in range(n):
        name = svc_port_name(i)
        svc = "KUBE-SVC-" + b32_sha(name + PROTO)[:16]
        seps = ["KUBE-SEP-" + b32_sha(name + PROTO + f"{ep}:10000")[:16] for ep in eps]
        names.append((svc, seps))
        w(f":{svc} - [0:0]\n")
        for s in seps:
            w(f":{s} - [0:0]\n")
    w('-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES\n')
    w('-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES\n')
    w('-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING\n')
    w(f"-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN\n")
    w(f"-A KUBE-POSTROUTING -j MARK --xor-mark {MASQ_MARK}\n")
    w('-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully\n')
    w(f"-A KUBE-MARK-MASQ -j MARK --or-mark {MASQ_MARK}\n")
    for i, (svc, seps) in enumerate(names):
        name, ip = svc_port_name(i), vip(args.vip_base, i)
        match = f"-d {ip}/32 -p {PROTO} -m comment --comment \"{name} cluster IP\" -m {PROTO} --dport {SVC_PORT}"
        w(f"-A KUBE-SERVICES {match} -j {svc}\n")
        w(f"-A {svc} ! -s {args.cluster_cidr} {match} -j KUBE-MARK-MASQ\n")
        for k, (ep, sep) in enumerate(zip(eps, seps)):
            comment = "" if large else f'-m comment --comment "{name} -> {ep}:10000" '
            left = len(eps) - k
            stat = "" if left == 1 else f"-m statistic --mode random --probability {1.0 / left:.11f} "
            w(f"-A {svc} {comment}{stat}-j {sep}\n")
        for ep, sep in zip(eps, seps):
            comment = "" if large else f'-m comment --comment "{name}" '
            w(f"-A {sep} -s {ep}/32 {comment}-j KUBE-MARK-MASQ\n")
            w(f"-A {sep} -p {PROTO} {comment}-m {PROTO} -j DNAT --to-destination {ep}:10000\n")
    w('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n')
    w("COMMIT\n")


def nft_name(prefix, base):
    """kube-proxy's hashAndTruncate: 8 base32 characters of sha256, then the name."""
    return f"{prefix}{b32_sha(base)[:8]}-{base}"


def nftables(args, out):
    n, eps = args.services, args.endpoints
    w = out.write
    w('table ip kube-proxy {\n    comment "rules for kube-proxy"\n')
    bases = [
        ("filter-prerouting", "filter", "prerouting", "-110", ["ct state new jump firewall-check"]),
        ("filter-input", "filter", "input", "-110", ["ct state new jump endpoints-check"]),
        ("filter-forward", "filter", "forward", "-110", ["ct state new jump endpoints-check"]),
        ("filter-output", "filter", "output", "-110",
         ["ct state new jump endpoints-check", "ct state new jump firewall-check"]),
        ("nat-prerouting", "nat", "prerouting", "-100", ["jump services"]),
        ("nat-output", "nat", "output", "-100", ["jump services"]),
        ("nat-postrouting", "nat", "postrouting", "100", ["jump masquerading"]),
    ]
    # Priorities as numbers (dstnat = -100, srcnat = 100): nft 1.0.6 (Debian 12) accepts the
    # names only on the hooks they belong to; knftables writes "dstnat-10", the same value.
    for name, typ, hook, prio, rules in bases:
        w(f"    chain {name} {{\n        type {typ} hook {hook} priority {prio}; policy accept;\n")
        for r in rules:
            w(f"        {r}\n")
        w("    }\n")
    key = "ipv4_addr . inet_proto . inet_service : verdict"
    w(f"    map no-endpoint-services {{ type {key}; }}\n")
    w("    map no-endpoint-nodeports { type inet_proto . inet_service : verdict; }\n")
    w(f"    map firewall-ips {{ type {key}; }}\n")
    w("    map service-nodeports { type inet_proto . inet_service : verdict; }\n")
    w("    chain reject-chain { reject; }\n")
    w(f"    chain mark-for-masquerade {{ mark set mark or {MASQ_MARK}; }}\n")
    w(f"    chain masquerading {{\n        mark and {MASQ_MARK} == 0 return\n"
      f"        mark set mark xor {MASQ_MARK}\n        masquerade fully-random\n    }}\n")
    w("    chain endpoints-check {\n"
      "        ip daddr . meta l4proto . th dport vmap @no-endpoint-services\n"
      "        fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports\n"
      "    }\n")
    w("    chain firewall-check { ip daddr . meta l4proto . th dport vmap @firewall-ips; }\n")
    w("    chain services {\n"
      "        ip daddr . meta l4proto . th dport vmap @service-ips\n"
      "        fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports\n"
      "    }\n")
    elements = []
    for i in range(n):
        ip = vip(args.vip_base, i)
        base = f"{NAMESPACE}/svc-{i}/{PROTO}/{PORT_NAME}"
        svc = nft_name("service-", base)
        ep_chains = [nft_name("endpoint-", f"{base}__{ep}/10000") for ep in eps]
        for ep, chain in zip(eps, ep_chains):
            w(f"    chain {chain} {{\n        ip saddr {ep} jump mark-for-masquerade\n"
              f"        meta l4proto {PROTO} dnat to {ep}:10000\n    }}\n")
        vmap = ", ".join(f"{k} : goto {c}" for k, c in enumerate(ep_chains))
        w(f"    chain {svc} {{\n"
          f"        ip daddr {ip} {PROTO} dport {SVC_PORT} ip saddr != {args.cluster_cidr} jump mark-for-masquerade\n"
          f"        numgen random mod {len(eps)} vmap {{ {vmap} }}\n    }}\n")
        elements.append(f"{ip} . {PROTO} . {SVC_PORT} : goto {svc}")
    w(f"    map service-ips {{\n        type {key}\n")
    if elements:
        w("        elements = { " + ",\n            ".join(elements) + " }\n")
    w("    }\n}\n")


def manifests(args, out):
    """The same Services as Kubernetes objects, for podswitch (podswitchctl apply -f)."""
    w = out.write
    eps = "".join(f'\n  - addresses: ["{ep}"]\n    conditions: {{ready: true}}' for ep in args.endpoints)
    for i in range(args.services):
        w(f"""---
apiVersion: v1
kind: Service
metadata: {{name: svc-{i}, namespace: {NAMESPACE}}}
spec:
  clusterIP: {vip(args.vip_base, i)}
  ports:
  - {{name: {PORT_NAME}, protocol: UDP, port: {SVC_PORT}, targetPort: 10000}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc-{i}-1
  namespace: {NAMESPACE}
  labels: {{kubernetes.io/service-name: svc-{i}}}
addressType: IPv4
ports:
- {{name: {PORT_NAME}, protocol: UDP, port: 10000}}
endpoints:{eps}
""")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["iptables", "nftables", "manifests"])
    p.add_argument("--services", type=int, required=True)
    p.add_argument("--endpoints", required=True, help="comma-separated endpoint addresses")
    p.add_argument("--vip-base", default="10.96.0.0", help="Service i gets base + 1 + i")
    p.add_argument("--cluster-cidr", required=True)
    args = p.parse_args()
    args.endpoints = args.endpoints.split(",")
    {"iptables": iptables, "nftables": nftables, "manifests": manifests}[args.mode](args, sys.stdout)


if __name__ == "__main__":
    main()
