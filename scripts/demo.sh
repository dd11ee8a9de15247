#!/usr/bin/env bash
# The podswitch demo: one node with three pods on the switch, traffic between them and the
# node, then podswitchctl's view of it all. The node is a network namespace of its own, so the
# demo leaves this machine's network alone; everything is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "the demo creates namespaces and tap devices: run it as root" >&2; exit 1; }
./scripts/install-deps.sh
cargo build --release --quiet -p podswitch-dataplane -p podswitch-cli --bins
BIN=$PWD/target/release
RUN=$(mktemp -d /tmp/podswitch-demo.XXXXXX)
SOCK=$RUN/dataplane.sock
NODE=psw-demo-node
PODS=(web db cache)
GW=10.244.1.1

cleanup() {
    [ -n "${DAEMON:-}" ] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null || true
    for p in "${PODS[@]}"; do ip netns del "psw-demo-$p" 2>/dev/null || true; done
    ip netns del "$NODE" 2>/dev/null || true
    rm -rf "$RUN"
}
trap cleanup EXIT
cleanup_stale() { for ns in $(ip netns list | awk '/^psw-demo-/ {print $1}'); do ip netns del "$ns"; done; }
cleanup_stale

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ctl() { "$BIN/podswitchctl" --socket "$SOCK" "$@"; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

say "node: namespace $NODE, podswitchd with 1 adaptive worker"
ip netns add "$NODE"
ip -n "$NODE" link set lo up
ip netns exec "$NODE" "$BIN/podswitchd" --socket "$SOCK" 2>"$RUN/podswitchd.log" &
DAEMON=$!
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done

say "configure the switch: pod CIDR 10.244.1.0/24, gateway $GW, host port psw0"
ctl dp set-node --pod-cidr 10.244.1.0/24 --gateway $GW
ctl dp add-port psw0 --host
ctl dp add-route 0.0.0.0/0 --host
ctl dp add-route 10.244.1.0/24 --unreachable

say "three pods, each a namespace whose eth0 is a tap of the switch"
i=2
for p in "${PODS[@]}"; do
    ns=psw-demo-$p ip=10.244.1.$i mac=$(printf '02:00:0a:f4:01:%02x' $i) tap=tap-$p
    ip netns add "$ns"
    ctl dp add-port "$tap" --pod --mac "$mac" --ip "$ip" --namespace default --pod-name "$p"
    # What the CNI plugin will do (issue 3): move the tap into the pod, /32 address, routes.
    ip -n "$NODE" link set "$tap" netns "$ns"
    ip -n "$ns" link set "$tap" name eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip -n "$ns" addr add "$ip/32" dev eth0
    ip -n "$ns" route add $GW dev eth0 scope link
    ip -n "$ns" route add default via $GW
    echo "pod $p: $ip $mac on port $tap"
    i=$((i + 1))
done

say "ping: web → gateway, web → db, db → cache, node → web"
in_ns psw-demo-web ping -n -c 2 -i 0.2 $GW | tail -2
in_ns psw-demo-web ping -n -c 2 -i 0.2 10.244.1.3 | tail -2
in_ns psw-demo-db ping -n -c 2 -i 0.2 10.244.1.4 | tail -2
in_ns $NODE ping -n -c 2 -i 0.2 10.244.1.2 | tail -2

say "TCP: 10 MB web → db, and web → node (port 8080 on the gateway address)"
head -c 10485760 /dev/urandom > "$RUN/blob"
in_ns psw-demo-db socat -u TCP-LISTEN:5001,reuseaddr OPEN:"$RUN/db.recv",creat,trunc &
SERVERS=$!
in_ns $NODE socat -u TCP-LISTEN:8080,bind=$GW,reuseaddr OPEN:"$RUN/node.recv",creat,trunc &
SERVERS="$SERVERS $!"
sleep 0.3
start=$(date +%s.%N)
in_ns psw-demo-web socat -u OPEN:"$RUN/blob" TCP:10.244.1.3:5001
in_ns psw-demo-web socat -u OPEN:"$RUN/blob" TCP:$GW:8080
end=$(date +%s.%N)
# shellcheck disable=SC2086
wait $SERVERS
for f in db node; do
    if cmp -s "$RUN/blob" "$RUN/$f.recv"; then echo "web → $f: 10485760 bytes, identical"; else echo "web → $f: MISMATCH" >&2; exit 1; fi
done
awk -v s="$start" -v e="$end" 'BEGIN { printf "both transfers: %.2f s, %.0f Mbit/s\n", e - s, 2 * 10485760 * 8 / (e - s) / 1e6 }'

say "an unassigned pod address: the gateway answers host unreachable"
in_ns psw-demo-web ping -n -c 1 -W 1 10.244.1.99 | grep -E "Unreachable" || true

say "podswitchctl ports"
ctl ports
say "podswitchctl routes"
ctl routes
say "podswitchctl neighbors"
ctl neighbors
say "podswitchctl counters"
ctl counters
