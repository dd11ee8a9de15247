#!/usr/bin/env bash
# AF_XDP ports against tap ports (issue 16), side by side in one run: the rate at which one
# podswitchd worker, pinned to one CPU, forwards a 64-byte UDP flood from one pod to another
# when both pods are on tap ports and when both are on afxdp ports (a veth pair each, the node
# end bound by AF_XDP sockets). Run by hand, as root; never from tests or CI.
#
#   sudo ./benches/e2e/afxdp.sh            # 3 interleaved rounds of 2M packets per variant
#   sudo ./benches/e2e/afxdp.sh -r 1 -n 500000 -v tap,afxdp
#
# Flags: -r rounds (3); -n packets per measurement (2000000); -v variants (tap,afxdp,
# afxdp-generic); --worker-cpu CPU of the worker (0); --gen-cpu CPU of the sender (1); --pool
# small buffers per worker (32768); --sink drop|udp: drop (the default) is an nftables netdev
# ingress chain with policy drop on pod b's eth0, so the worker's cost is the switch's plus
# handing the frame to pod b's device, without pod b's IP and UDP receive, which the worker's
# write also runs and which was ~60% of its profile with `udp`; --idle adaptive|busy: adaptive
# (the default) makes the worker's CPU time the work it did, which "worker ns/packet" divides;
# busy spins and bills the spinning too.
#
# Environment: PERF=1 prints the worker thread's top symbols during each flood (perf record),
# PERF_G=1 with call graphs, PERF_LINES=N lines of it (25).
#
# The sender is `newconn_udp send --flows 16` (AF_PACKET, sendmmsg, qdisc bypassed) in pod a,
# pinned to its own CPU; pod b runs `newconn_udp sink` (bound, never read). "forwarded" is the
# switch's own count of frames written to pod b's port (tx_packets) over the sender's wall
# time; "offered" is what the sender got into pod a's interface per second. When forwarded is
# well below offered the switch is the bottleneck; when they are close, the sender is, and the
# switch's rate is at least that. On a shared machine the wall rates move with whatever else
# runs; "worker ns/packet" (the worker thread's CPU time from schedstat, per frame forwarded,
# including what the kernel runs in its context) moves much less, and 1e9 / it is the rate one
# core sustains: that is the column compared across variants. Everything lives in namespaces
# named afx<pid>-*, deleted on exit (trap).
set -euo pipefail

ROUNDS=3
PACKETS=2000000
VARIANTS=tap,afxdp,afxdp-generic
WORKER_CPU=0
GEN_CPU=1
IDLE=adaptive
POOL=32768
SINK=drop
while [ $# -gt 0 ]; do
    case $1 in
    -r) ROUNDS=$2; shift 2 ;;
    -n) PACKETS=$2; shift 2 ;;
    -v) VARIANTS=$2; shift 2 ;;
    --worker-cpu) WORKER_CPU=$2; shift 2 ;;
    --gen-cpu) GEN_CPU=$2; shift 2 ;;
    --idle) IDLE=$2; shift 2 ;;
    --pool) POOL=$2; shift 2 ;;
    --sink) SINK=$2; shift 2 ;;
    *) echo "unknown flag $1 (see the first lines of $0)" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }

REPO=$(cd "$(dirname "$0")/../.." && pwd)
source "$REPO/benches/e2e/teardown.sh"
BIN=$REPO/target/release
PREFIX=afx$$
NODE=$PREFIX-node
RUN=$(mktemp -d /tmp/podswitch-afxdp.XXXXXX)
PIDS=()
SWITCH_MAC=02:50:53:00:00:01

log() { echo "afxdp.sh: $*" >&2; }

teardown() {
    kill_pids "${PIDS[@]}"
    PIDS=()
    delete_namespaces "$PREFIX"
}
trap 'teardown; rm -rf "$RUN"' EXIT

log "building podswitchd, podswitchctl and newconn_udp (release)"
(cd "$REPO" && cargo build -q --release -p podswitch-dataplane -p podswitch-cli -p podswitch-benches \
    --bin podswitchd --bin podswitchctl --bin newconn_udp)

ctl() { "$BIN/podswitchctl" --socket "$RUN/dp.sock" "$@"; }

# A pod namespace with eth0 configured as the switch expects: its /32, the gateway on-link,
# the default route via it.
pod_addr() {
    local ns=$1 ip=$2
    ip -n "$ns" addr add "$ip/32" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add 10.244.1.1 dev eth0 scope link
    ip -n "$ns" route add default via 10.244.1.1
}

# One JSON add_port op for pod $1 (a or b) on a port of kind $2.
port_op() {
    local p=$1 kind=$2 ip mac
    case $p in a) ip=10.244.1.2; mac=02:00:0a:f4:01:02 ;; b) ip=10.244.1.3; mac=02:00:0a:f4:01:03 ;; esac
    if [ "$kind" = tap ]; then
        echo '{"op":"add_port","name":"tap-'"$p"'","kind":"tap","offloads":false,"role":{"role":"pod","mac":"'"$mac"'","ip":"'"$ip"'"},"netns":{"path":"/run/netns/'"$PREFIX-$p"'","ifname":"eth0"}}'
    else
        echo '{"op":"add_port","name":"vx-'"$p"'","kind":"afxdp","offloads":false,"role":{"role":"pod","mac":"'"$mac"'","ip":"'"$ip"'"}}'
    fi
}

# Sets up the node, its podswitchd (one worker pinned to WORKER_CPU) and pods a and b on ports
# of kind $1 (tap or afxdp); $2 extra podswitchd flags.
setup() {
    local kind=$1 extra=${2:-}
    ip netns add "$NODE"
    ip -n "$NODE" link set lo up
    for p in a b; do ip netns add "$PREFIX-$p"; ip -n "$PREFIX-$p" link set lo up; done
    # 32768 buffers (64 MiB): an afxdp queue keeps an eighth lent for receiving, 4096 chunks,
    # ~30 ms of the flood, so a worker preempted on a shared machine drops less of it.
    echo "pool_buffers = $POOL" >"$RUN/podswitchd.toml"
    nsenter --net="/run/netns/$NODE" "$BIN/podswitchd" -c "$RUN/podswitchd.toml" --socket "$RUN/dp.sock" --workers 1 \
        --worker-cpus "$WORKER_CPU" --idle "$IDLE" $extra 2>"$RUN/podswitchd.log" &
    PIDS+=($!)
    for _ in $(seq 100); do [ -S "$RUN/dp.sock" ] && break; sleep 0.05; done
    [ -S "$RUN/dp.sock" ] || { log "podswitchd did not start: $(cat "$RUN/podswitchd.log")"; return 1; }
    if [ "$kind" = afxdp ]; then
        for p in a b; do
            ip -n "$NODE" link add "vx-$p" type veth peer name eth0 netns "$PREFIX-$p"
            # AF_XDP carries no checksum or GSO state: the pod sends whole frames.
            ip netns exec "$PREFIX-$p" ethtool -K eth0 tx off tso off gso off >/dev/null
        done
    fi
    ip -n "$PREFIX-a" link set eth0 address 02:00:0a:f4:01:02 2>/dev/null || true
    ip -n "$PREFIX-b" link set eth0 address 02:00:0a:f4:01:03 2>/dev/null || true
    cat >"$RUN/tx.json" <<EOF
{"ops":[
 {"op":"set_node","pod_cidr":"10.244.1.0/24","gateway":"10.244.1.1"},
 $(port_op a "$kind"),
 $(port_op b "$kind")
]}
EOF
    ctl dp apply "$RUN/tx.json" >/dev/null
    pod_addr "$PREFIX-a" 10.244.1.2
    pod_addr "$PREFIX-b" 10.244.1.3
    ip netns exec "$PREFIX-b" "$BIN/newconn_udp" sink --ports 9000 >/dev/null &
    PIDS+=($!)
    ip netns exec "$PREFIX-a" ping -c 1 -W 2 10.244.1.3 >/dev/null ||
        { log "$kind: pod a cannot ping pod b"; return 1; }
    if [ "$SINK" = drop ]; then
        ip netns exec "$PREFIX-b" nft 'add table netdev sink; add chain netdev sink in { type filter hook ingress device eth0 priority 0; policy drop; }'
    fi
}

# tx_packets of port $1 in a counters dump on stdin.
tx_of() {
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(next(p["tx_packets"] for p in d["ports"] if p["port"]==sys.argv[1]))' "$1"
}

# The worker thread's id.
worker_tid() {
    local t
    for t in /proc/"${PIDS[0]}"/task/*; do
        [ "$(cat "$t/comm")" = psw-worker-0 ] && { basename "$t"; return; }
    done
}

# CPU time (ns) the worker thread has had so far (schedstat: time on a CPU, softirq work run
# in its context included).
worker_ns() {
    local t
    for t in /proc/"${PIDS[0]}"/task/*; do
        if [ "$(cat "$t/comm")" = psw-worker-0 ]; then cut -d' ' -f1 "$t/schedstat"; return; fi
    done
    echo 0
}

# Runs the flood once on the current setup; prints "offered_pps fwd_pps worker_ns_per_packet".
measure() {
    local out_port=$1 before after out cpu0 cpu1
    before=$(ctl counters -o json | tx_of "$out_port")
    cpu0=$(worker_ns)
    local perf=
    if [ -n "${PERF:-}" ]; then
        # Where the worker's time goes during the flood (PERF=1): its top symbols, kernel
        # included (the tx path runs pod b's receive in the worker's context).
        perf record -q ${PERF_G:+-g} -t "$(worker_tid)" -o "$RUN/perf.data" -- sleep 2 2>/dev/null &
        perf=$!
    fi
    out=$(ip netns exec "$PREFIX-a" taskset -c "$GEN_CPU" "$BIN/newconn_udp" send --iface eth0 \
        --dst-mac "$SWITCH_MAC" --src 10.244.1.2 --dst 10.244.1.3 --dport 9000 \
        --packets "$PACKETS" --flows 16 --batch 64)
    sleep 0.2 # the last bursts through the switch
    if [ -n "$perf" ]; then
        wait "$perf" || true
        perf report -q -i "$RUN/perf.data" --stdio --no-children --sort symbol ${PERF_G:+-G} 2>/dev/null |
            grep -v "^$" | head -${PERF_LINES:-25} | sed 's/^/  perf: /' >&2 || true
    fi
    cpu1=$(worker_ns)
    after=$(ctl counters -o json | tx_of "$out_port")
    python3 - "$out" "$before" "$after" "$cpu0" "$cpu1" <<'EOF'
import sys
kv = dict(f.split("=") for f in sys.argv[1].split())
wall = int(kv["wall_ns"]) / 1e9
fwd = int(sys.argv[3]) - int(sys.argv[2])
print(f'{int(kv["sent"]) / wall:.0f} {fwd / wall:.0f} {(int(sys.argv[5]) - int(sys.argv[4])) / max(fwd, 1):.0f}')
EOF
}

declare -A RESULTS
IFS=, read -r -a VLIST <<<"$VARIANTS"
for round in $(seq "$ROUNDS"); do
    for v in "${VLIST[@]}"; do
        case $v in
        tap) setup tap && r=$(measure tap-b) || r="failed failed failed" ;;
        afxdp) setup afxdp && r=$(measure vx-b) || r="failed failed failed" ;;
        afxdp-generic) setup afxdp --xdp-generic && r=$(measure vx-b) || r="failed failed failed" ;;
        *) log "unknown variant $v"; exit 2 ;;
        esac
        [ "$v" = tap ] || ctl ports | sed -n 2,3p | sed 's/^/  /' >&2 || true
        # Where frames were lost, if they were: the switch's drops and the ports' counters.
        ctl counters -o json 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
for p in d["ports"]:
    print("  port %s: rx %d tx %d tx_errors %d" % (p["port"], p["rx_packets"], p["tx_packets"], p["tx_errors"]))
print("  drops:", {x["reason"]: x["count"] for x in d["drops"] if x["count"]})
print("  events:", {x["event"]: x["count"] for x in d["events"] if x["count"]})' >&2 || true
        log "round $round $v: offered pps, forwarded pps, worker ns/packet = $r"
        RESULTS[$v]="${RESULTS[$v]:-} $r"
        teardown
    done
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
echo "afxdp.sh -r $ROUNDS -n $PACKETS --sink $SINK --idle $IDLE: $(date -u +%FT%TZ); $(nproc) CPUs, $(uname -r); podswitch $(cd "$REPO" && git rev-parse --short HEAD)"
echo
echo "| variant | offered pps | forwarded pps | forwarded, each round | worker ns/packet | one core's rate (1e9/ns) | ratio to tap |"
echo "|---|---:|---:|---|---:|---:|---:|"
tap_rate=
for v in "${VLIST[@]}"; do
    read -r -a xs <<<"${RESULTS[$v]}"
    offered=() fwd=() ns=()
    for ((i = 0; i < ${#xs[@]}; i += 3)); do offered+=("${xs[i]}"); fwd+=("${xs[i + 1]}"); ns+=("${xs[i + 2]}"); done
    mo=$(median "${offered[@]}")
    mf=$(median "${fwd[@]}")
    mn=$(median "${ns[@]}")
    rate=failed ratio=-
    [ "$mn" != failed ] && rate=$(python3 -c "print(round(1e9 / $mn))")
    [ "$v" = tap ] && tap_rate=$rate
    [ -n "$tap_rate" ] && [ "$tap_rate" != failed ] && [ "$rate" != failed ] && ratio=$(python3 -c "print(f'{$rate / $tap_rate:.2f}x')")
    echo "| $v | $mo | $mf | ${fwd[*]} | $mn | $rate | $ratio |"
done
