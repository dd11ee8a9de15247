#!/usr/bin/env bash
# The podswitch demo: one node with three pods on the switch, traffic between them and the
# node, a Service load-balanced in the switch, NetworkPolicies that deny and allow, then
# podswitchctl's view of it all. The node is a network namespace of its own, so the
# demo leaves this machine's network alone; everything is removed on exit.
#
# Not root, it runs itself again with sudo. Colours only on a terminal and without NO_COLOR
# (https://no-color.org), so its output reads cleanly in a log.
set -euo pipefail
. "$(dirname "$0")/become-root.sh"
become_root "$0" "$@" || {
    echo "demo.sh: the demo creates namespaces and tap devices: run it as root (no sudo here)" >&2
    exit 1
}
cd "$(dirname "$0")/.."
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
    BOLD=$'\033[1m' PLAIN=$'\033[0m'
else
    BOLD='' PLAIN=''
    export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
fi
./scripts/install-deps.sh
# cargo's own progress (a bar on a terminal, a line per crate in a log), then the time taken.
echo "building podswitch (release): the first build takes a few minutes"
built_from=$SECONDS
cargo build --release -p podswitch-dataplane -p podswitch-cli -p podswitch-control -p podswitch-cni --bins
echo "built in $((SECONDS - built_from)) s"
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release
RUN=$(mktemp -d /tmp/podswitch-demo.XXXXXX)
SOCK=$RUN/dataplane.sock
CSOCK=$RUN/control.sock
NODE=psw-demo-node
PODS=(web db cache)
GW=10.244.1.1

cleanup() {
    # shellcheck disable=SC2086
    [ -n "${BACKENDS:-}" ] && kill $BACKENDS 2>/dev/null || true
    [ -n "${CONTROL:-}" ] && kill "$CONTROL" 2>/dev/null && wait "$CONTROL" 2>/dev/null || true
    [ -n "${DAEMON:-}" ] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null || true
    for p in "${PODS[@]}"; do ip netns del "psw-demo-$p" 2>/dev/null || true; done
    ip netns del "$NODE" 2>/dev/null || true
    rm -rf "$RUN"
}
trap cleanup EXIT
cleanup_stale() { for ns in $(ip netns list | awk '/^psw-demo-/ {print $1}'); do ip netns del "$ns"; done; }
cleanup_stale

say() { printf '\n%s== %s%s\n' "$BOLD" "$*" "$PLAIN"; }
ctl() { "$BIN/podswitchctl" --socket "$SOCK" --control-socket "$CSOCK" "$@"; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

say "node: namespace $NODE with podswitchd and podswitch-control (state in $RUN/state)"
ip netns add "$NODE"
ip -n "$NODE" link set lo up
ip netns exec "$NODE" "$BIN/podswitchd" --socket "$SOCK" 2>"$RUN/podswitchd.log" &
DAEMON=$!
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
ip netns exec "$NODE" "$BIN/podswitch-control" --node-name demo-node --pod-cidr 10.244.1.0/24 \
    --state-dir "$RUN/state" --dataplane-socket "$SOCK" --socket "$CSOCK" 2>"$RUN/control.log" &
CONTROL=$!
for _ in $(seq 100); do [ -S "$CSOCK" ] && break; sleep 0.05; done
ctl control-status

say "install the CNI plugin (into $RUN, not the machine's /opt/cni/bin)"
ctl install-cni --bin-dir "$RUN/cni-bin" --conf-dir "$RUN/cni-conf" --cni-binary "$BIN/podswitch-cni"

say "three pods, attached by calling the CNI plugin exactly as a container runtime does"
NETCONF='{"cniVersion":"1.0.0","name":"podswitch","type":"podswitch","controlSocket":"'"$CSOCK"'"}'
declare -A IP
for p in "${PODS[@]}"; do
    ns=psw-demo-$p
    ip netns add "$ns"
    result=$(echo "$NETCONF" | CNI_COMMAND=ADD CNI_CONTAINERID="demo-$p" CNI_NETNS="/run/netns/$ns" \
        CNI_IFNAME=eth0 CNI_PATH="$RUN/cni-bin" \
        CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=$p" "$RUN/cni-bin/podswitch")
    IP[$p]=$(echo "$result" | grep -o '"address":"[0-9./]*"' | cut -d'"' -f4 | cut -d/ -f1)
    echo "pod $p: ${IP[$p]}    CNI result: $result"
done

say "Kubernetes manifests: a namespace and the pods' labels"
cat > "$RUN/shop.yaml" <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web, tier: front}}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db, tier: back}}
---
apiVersion: v1
kind: Pod
metadata: {name: cache, namespace: shop, labels: {app: cache, tier: back}}
YAML
ctl apply -f "$RUN/shop.yaml"
ctl get pods

say "ping: web → gateway, web → db, db → cache, node → web"
in_ns psw-demo-web ping -n -c 2 -i 0.2 $GW | tail -2
in_ns psw-demo-web ping -n -c 2 -i 0.2 "${IP[db]}" | tail -2
in_ns psw-demo-db ping -n -c 2 -i 0.2 "${IP[cache]}" | tail -2
in_ns $NODE ping -n -c 2 -i 0.2 "${IP[web]}" | tail -2

say "TCP: 10 MB web → db, and web → node (port 8080 on the gateway address)"
head -c 10485760 /dev/urandom > "$RUN/blob"
in_ns psw-demo-db socat -u TCP-LISTEN:5001,reuseaddr OPEN:"$RUN/db.recv",creat,trunc &
SERVERS=$!
in_ns $NODE socat -u TCP-LISTEN:8080,bind=$GW,reuseaddr OPEN:"$RUN/node.recv",creat,trunc &
SERVERS="$SERVERS $!"
sleep 0.3
start=$(date +%s.%N)
in_ns psw-demo-web socat -u OPEN:"$RUN/blob" TCP:"${IP[db]}":5001
in_ns psw-demo-web socat -u OPEN:"$RUN/blob" TCP:$GW:8080
end=$(date +%s.%N)
# shellcheck disable=SC2086
wait $SERVERS
for f in db node; do
    if cmp -s "$RUN/blob" "$RUN/$f.recv"; then echo "web → $f: 10485760 bytes, identical"; else echo "web → $f: MISMATCH" >&2; exit 1; fi
done
awk -v s="$start" -v e="$end" 'BEGIN { printf "both transfers: %.2f s, %.0f Mbit/s\n", e - s, 2 * 10485760 * 8 / (e - s) / 1e6 }'

say "an unassigned pod address: the gateway answers host unreachable"
in_ns psw-demo-web ping -n -c 1 -W 1 10.244.1.200 | grep -E "Unreachable" || true

say "a Service: ClusterIP 10.96.0.10:80 in front of db and cache (targetPort 8080), load-balanced in the switch"
cat > "$RUN/service.yaml" <<YAML
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: backend-1
  namespace: shop
  labels: {kubernetes.io/service-name: backend}
addressType: IPv4
ports: [{name: http, protocol: TCP, port: 8080}]
endpoints:
- addresses: ["${IP[db]}"]
  conditions: {ready: true}
  targetRef: {kind: Pod, namespace: shop, name: db}
- addresses: ["${IP[cache]}"]
  conditions: {ready: true}
  targetRef: {kind: Pod, namespace: shop, name: cache}
YAML
ctl apply -f "$RUN/service.yaml"
for p in db cache; do
    # Each backend answers every connection with its name and the client address it sees.
    # ip netns exec itself in the background (not the in_ns function, which would fork a
    # subshell): $! is then socat's own pid, which cleanup kills.
    ip netns exec "psw-demo-$p" socat TCP-LISTEN:8080,bind="${IP[$p]}",reuseaddr,fork SYSTEM:"echo $p sees \$SOCAT_PEERADDR" &
    BACKENDS="${BACKENDS:-} $!"
done
for _ in $(seq 50); do ctl services 2>/dev/null | grep -q "shop/backend:http" && break; sleep 0.1; done
sleep 0.3
echo "40 connections from web to 10.96.0.10:80:"
for _ in $(seq 40); do in_ns psw-demo-web socat -T 2 - TCP:10.96.0.10:80 </dev/null; done | sort | uniq -c
echo "and one from the node itself (the Service CIDR is routed into the switch):"
in_ns $NODE socat -T 2 - TCP:10.96.0.10:80 </dev/null
ctl services
say "podswitchctl trace: a SYN from web to the VIP, stage by stage, without sending it"
WEB_PORT=$(ctl ports | awk '$5 == "shop/web" {print $2}')
ctl trace --in-port "$WEB_PORT" --dst 10.96.0.10 --dport 80
say "podswitchctl conntrack --service shop/backend:http (both tuples of each connection)"
ctl conntrack --service shop/backend:http --limit 5

# A connection attempt that may be denied: a policy drops silently, so a denied client's SYN
# goes unanswered and its connect times out (a refusal by RST would be something else).
try_connect() { local ns=$1 to=$2; in_ns "$ns" socat -T 2 - "TCP:$to,connect-timeout=1" </dev/null 2>/dev/null; }
expect_refused() {
    local who=$1 ns=$2 to=$3 t0 err
    t0=$(date +%s.%N)
    if err=$(in_ns "$ns" socat -T 2 - "TCP:$to,connect-timeout=1" </dev/null 2>&1); then
        echo "$who → $to: ANSWERED ($err) although a NetworkPolicy denies it" >&2
        exit 1
    fi
    case $err in
    *"timed out"*) ;;
    *) echo "$who → $to: failed, but not by a timeout: $err" >&2; exit 1 ;;
    esac
    awk -v who="$who" -v to="$to" -v s="$t0" -v e="$(date +%s.%N)" \
        'BEGIN { printf "%s → %s: no answer, connect timed out after %.1f s (the SYN was dropped, no RST)\n", who, to, e - s }'
}
expect_answer() {
    local who=$1 ns=$2 to=$3
    if ! answer=$(try_connect "$ns" "$to"); then
        echo "$who → $to: NO ANSWER, although it should be allowed" >&2
        exit 1
    fi
    echo "$who → $to: $answer"
}
DB_PORT=$(ctl ports | awk '$5 == "shop/db" {print $2}')

say "NetworkPolicy default-deny-ingress: every pod of namespace shop is isolated for ingress"
cat > "$RUN/deny.yaml" <<YAML
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-ingress, namespace: shop}
spec:
  podSelector: {}
  policyTypes: [Ingress]
YAML
ctl apply -f "$RUN/deny.yaml"
echo "web → the Service (the same ClusterIP that answered 40 times above):"
expect_refused web psw-demo-web 10.96.0.10:80
echo "the node still gets in (traffic from the host port is allowed: kubelet probes):"
expect_answer node $NODE 10.96.0.10:80
say "podswitchctl policies: each pod's effective rules, as control compiled them for the switch"
ctl policies
say "podswitchctl trace: web's SYN to the VIP, denied after DNAT by the backend's isolation"
ctl trace --in-port "$WEB_PORT" --dst 10.96.0.10 --dport 80

say "NetworkPolicy backend-from-web: the backends (tier: back) take TCP 8080 from app: web"
cat > "$RUN/allow.yaml" <<YAML
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: backend-from-web, namespace: shop}
spec:
  podSelector: {matchLabels: {tier: back}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{protocol: TCP, port: 8080}]
YAML
ctl apply -f "$RUN/allow.yaml"
echo "policies add up: web is allowed again; the rule names 8080, the backends' port, not the"
echo "Service's 80: ingress is checked after the switch's DNAT, against the endpoint it chose."
echo "10 connections from web to 10.96.0.10:80:"
for _ in $(seq 10); do try_connect psw-demo-web 10.96.0.10:80 || echo "NO ANSWER"; done | sort | uniq -c
echo "db is a backend too, but not app: web, so db → cache stays denied:"
expect_refused db psw-demo-db "${IP[cache]}:8080"
say "podswitchctl policies: db and cache now allow web's address on TCP 8080; web is still isolated"
ctl policies
say "podswitchctl trace: web → VIP allowed (policy and rule named); db → cache denied"
echo "web → 10.96.0.10:80, a SYN:"
ctl trace --in-port "$WEB_PORT" --dst 10.96.0.10 --dport 80
echo "db → ${IP[cache]}:8080 (cache), a SYN:"
ctl trace --in-port "$DB_PORT" --dst "${IP[cache]}" --dport 8080

say "podswitchctl ports"
ctl ports
say "podswitchctl routes"
ctl routes
say "podswitchctl neighbors"
ctl neighbors
say "podswitchctl counters"
ctl counters
say "podswitchctl conntrack --ip ${IP[web]}: web's tracked connections (denied ones are never tracked)"
ctl conntrack --ip "${IP[web]}" --limit 8

say "CNI DEL for every pod (twice, the second time without a netns, as containerd does)"
for p in "${PODS[@]}"; do
    echo "$NETCONF" | CNI_COMMAND=DEL CNI_CONTAINERID="demo-$p" CNI_NETNS="/run/netns/psw-demo-$p" \
        CNI_IFNAME=eth0 CNI_PATH="$RUN/cni-bin" "$RUN/cni-bin/podswitch"
    echo "$NETCONF" | CNI_COMMAND=DEL CNI_CONTAINERID="demo-$p" CNI_NETNS="" \
        CNI_IFNAME=eth0 CNI_PATH="$RUN/cni-bin" "$RUN/cni-bin/podswitch"
done
ctl control-status

say "what you just saw"
cat <<TEXT
- Three pods attached by the CNI plugin as containerd would call it: a /32 each from the node's
  pod CIDR, a MAC bound to its port, the switch answering ARP for the gateway.
- Pods reached each other and the node, at L3 through one userspace switch; an address with no
  pod got ICMP host unreachable from the gateway; 10 MB crossed byte-exact, twice.
- podswitchctl showed the switch's tables and its counters: every frame it read is counted, every
  drop under a reason (try \`podswitchctl counters -o json\`), beside the kernel's own tap counters.
- A Service: its ClusterIP answered from pods and from the node, connections spread over its two
  endpoints by Maglev in the switch (no kube-proxy, no iptables), each backend seeing the client's
  own address; \`podswitchctl trace\` explained the path of a packet stage by stage and
  \`conntrack\` showed both tuples of each connection.
- NetworkPolicy, enforced in the switch: a default deny made the Service unreachable from web
  (its SYN dropped silently, as Calico and Cilium do) while the node still got in; an allow for
  app: web made it answer again, and db, not selected by it, stayed out. \`podswitchctl policies\`
  showed each pod's effective rules (labels compiled to addresses and ports by control), \`trace\`
  named the policy and rule that allowed a packet or the isolation that denied it, and
  \`counters\` counted the drops as policy_denied.
Next: ./scripts/test.sh runs every test; README.md lists the podswitchctl verbs (try
\`podswitchctl trace --in-port PORT --dst 10.96.0.10 --protocol udp\` on your own node);
ARCHITECTURE.md is the map of the code.
TEXT
