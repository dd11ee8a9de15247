#!/usr/bin/env bash
# kube-proxy's first-packet cost beside podswitch (issue 14): UDP datagrams, each a new
# connection (a fresh source port), from a client namespace to a Service VIP, through a "node"
# namespace holding what kube-proxy programs (iptables mode, nftables mode) at 1, 1k and 10k
# Services of 10 endpoints, into a backend namespace; and the same through podswitchd with its
# own Service NAT. Reports new connections per second reaching the backend and CPU per packet,
# beside the same path with no rules. See README.md here and BENCHMARKS.md, "Issue 14".
#
# A benchmark, run by hand as root: never from CI (--smoke is the short self-check). Everything
# lives in network namespaces named "$PREFIX-…" created here and deleted on exit (Ctrl-C too);
# no rule is written outside them; the machine's own network is left alone.
set -euo pipefail

ALL_VARIANTS=iptables,nftables,podswitch
usage() {
    cat <<EOF
usage: $0 [-r ROUNDS] [-n PACKETS] [-s SCALES] [-v VARIANTS] [--cpu C] [-o FILE] [--smoke] [--no-install]
  -r ROUNDS     measurements of each (variant, Services, target) (default 3; the median is shown)
  -n PACKETS    datagrams per measurement, each a new connection (default 40000, at most 64000)
  -s SCALES     comma-separated Service counts (default 1,1000,10000); 10 endpoints each
  -v VARIANTS   comma-separated subset of: $ALL_VARIANTS,iptables-nft
                iptables = kube-proxy's iptables mode on x_tables (iptables-legacy-restore);
                iptables-nft = the same rules through iptables-nft-restore (slow to load: at
                10k Services it did not finish in 10 minutes here); the plain and conntrack-only
                baselines always run
  --cpu C       CPU the sender (and so the kernel's forwarding) is pinned to (default 1);
                podswitchd's worker is pinned to the other CPU (C xor 1)
  -o FILE       also write the markdown tables to FILE, and the raw measurements to FILE.tsv
  --smoke       a quick self-check: Services 1,10, 1 round, 2000 packets, kernel variants
                (and podswitch if -v names it); fails unless every run delivers ≥ 99 %
  --no-install  do not apt-get iptables, nftables, conntrack
EOF
}

ROUNDS=3 PACKETS=40000 SCALES=1,1000,10000 VARIANTS=$ALL_VARIANTS CPU=1 OUT='' SMOKE=0 INSTALL=1
VARIANTS_SET=0
while [ $# -gt 0 ]; do
    case $1 in
    -r) ROUNDS=$2; shift 2 ;;
    -n) PACKETS=$2; shift 2 ;;
    -s) SCALES=$2; shift 2 ;;
    -v) VARIANTS=$2; VARIANTS_SET=1; shift 2 ;;
    --cpu) CPU=$2; shift 2 ;;
    -o) OUT=$2; shift 2 ;;
    --smoke) SMOKE=1; shift ;;
    --no-install) INSTALL=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "kubeproxy.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
if [ "$SMOKE" = 1 ]; then
    ROUNDS=1 PACKETS=2000 SCALES=1,10
    [ "$VARIANTS_SET" = 1 ] || VARIANTS=iptables,nftables
fi
for n in "$ROUNDS" "$PACKETS" "$CPU"; do
    [[ $n =~ ^[0-9]+$ ]] || { echo "kubeproxy.sh: '$n' is not a whole number: -r, -n and --cpu take one" >&2; exit 2; }
done
[ "$PACKETS" -ge 1 ] && [ "$PACKETS" -le 64000 ] || { echo "kubeproxy.sh: -n must be 1..64000 (one source port per packet)" >&2; exit 2; }
[ "$CPU" -lt "$(nproc)" ] || { echo "kubeproxy.sh: --cpu $CPU: this machine has CPUs 0..$(($(nproc) - 1))" >&2; exit 2; }
IFS=, read -r -a RUN_SCALES <<<"$SCALES"
for s in "${RUN_SCALES[@]}"; do
    [[ $s =~ ^[0-9]+$ ]] && [ "$s" -ge 1 ] && [ "$s" -le 60000 ] ||
        { echo "kubeproxy.sh: Service count '$s' must be 1..60000" >&2; exit 2; }
done
IFS=, read -r -a RUN_VARIANTS <<<"$VARIANTS"
for v in "${RUN_VARIANTS[@]}"; do
    [[ ",$ALL_VARIANTS,iptables-nft," == *",$v,"* ]] || { echo "kubeproxy.sh: unknown variant '$v'; known: $ALL_VARIANTS,iptables-nft" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "kubeproxy.sh: builds namespaces and netfilter rules: run it as root" >&2; exit 1; }

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PREFIX=kp$$
RUN=$(mktemp -d /tmp/podswitch-kubeproxy.XXXXXX)
RESULTS=$RUN/results.tsv
: >"$RESULTS"
PIDS=() # processes of the current setup (sinks, daemons), killed by teardown
exec 3>&2
log() { printf '[%s] %s\n' "$(date -u +%T)" "$*" >&3; }
die() { log "kubeproxy.sh: $*"; exit 1; }

# shellcheck source=teardown.sh
. "$HERE/teardown.sh"
teardown() {
    [ ${#PIDS[@]} -gt 0 ] && kill_pids "${PIDS[@]}"
    PIDS=()
    delete_namespaces "$PREFIX"
}
cleanup() {
    trap - EXIT INT TERM
    teardown
    rm -rf "$RUN"
}
trap cleanup EXIT
trap 'echo "kubeproxy.sh: interrupted, cleaning up" >&3; exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# Tools: the kernel's rule loaders (bench-only packages), the sender, podswitch.
if [ "$INSTALL" = 1 ]; then
    log "installing iptables, nftables, conntrack (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -qq update
    apt-get -qq install -y --no-install-recommends iptables nftables conntrack iproute2 util-linux \
        iputils-ping python3 >/dev/null
fi
for t in ip nsenter taskset timeout python3 iptables-legacy-restore nft conntrack ping; do
    command -v "$t" >/dev/null || die "'$t' is missing: run without --no-install or install it"
done
PSW=0
[[ ",$VARIANTS," == *",podswitch,"* ]] && PSW=1
log "building newconn_udp$([ "$PSW" = 1 ] && echo " and podswitch") (release)"
(cd "$REPO" && cargo build -q --release -p podswitch-benches --bin newconn_udp)
if [ "$PSW" = 1 ]; then
    (cd "$REPO" && cargo build -q --release -p podswitch-dataplane -p podswitch-control -p podswitch-cli -p podswitch-cni --bins)
fi
BIN=${CARGO_TARGET_DIR:-$REPO/target}/release
TOOL=$BIN/newconn_udp
COMMIT=$(git -C "$REPO" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
git -C "$REPO" diff --quiet HEAD 2>/dev/null || COMMIT="$COMMIT (dirty)"
OTHER_CPU=$((CPU ^ 1))
[ "$OTHER_CPU" -lt "$(nproc)" ] || OTHER_CPU=$CPU

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
vip() { python3 -c "import ipaddress,sys; print(ipaddress.IPv4Address('10.96.0.0') + 1 + int(sys.argv[1]))" "$1"; }
# CPU time (ns) of processes (all their threads) and of every ksoftirqd: /proc/*/schedstat.
KSOFT=$(for d in /proc/[0-9]*; do case $(cat "$d/comm" 2>/dev/null) in ksoftirqd/*) echo "${d#/proc/}" ;; esac; done | tr '\n' ' ')
cpu_ns() {
    local t=0 p f
    for p in "$@"; do
        for f in /proc/"$p"/task/*/schedstat; do
            [ -r "$f" ] || continue
            read -r ns _ <"$f" 2>/dev/null || continue
            t=$((t + ns))
        done
    done
    echo $t
}
record() { local IFS=$'\t'; echo "$*" >>"$RESULTS"; }

# ---------------------------------------------------------------------------------------------
# Kernel topology: client (10.98.1.2) → node (10.98.1.1 | 10.98.2.1, forwarding, the rules) →
# server (10.98.2.2, endpoints 10.98.2.10-19 on the same interface, a sink on udp/10000).
CLIENT=$PREFIX-client NODE=$PREFIX-node SERVER=$PREFIX-server
CLUSTER_CIDR=10.98.0.0/16
ENDPOINTS=$(seq -s, -f '10.98.2.%g' 10 19)

setup_kernel() {
    local ns
    for ns in "$CLIENT" "$NODE" "$SERVER"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
    ip -n "$CLIENT" link add eth0 type veth peer name vc netns "$NODE"
    ip -n "$SERVER" link add eth0 type veth peer name vs netns "$NODE"
    ip -n "$CLIENT" addr add 10.98.1.2/24 dev eth0
    ip -n "$NODE" addr add 10.98.1.1/24 dev vc
    ip -n "$NODE" addr add 10.98.2.1/24 dev vs
    ip -n "$SERVER" addr add 10.98.2.2/24 dev eth0
    local ep
    for ep in ${ENDPOINTS//,/ }; do ip -n "$SERVER" addr add "$ep/32" dev eth0; done
    for ns in "$CLIENT" "$SERVER"; do ip -n "$ns" link set eth0 up; done
    ip -n "$NODE" link set vc up
    ip -n "$NODE" link set vs up
    ip -n "$CLIENT" route add default via 10.98.1.1
    ip -n "$SERVER" route add default via 10.98.2.1
    nsx "$NODE" sysctl -qw net.ipv4.ip_forward=1
    # `ip netns exec` execs the command, so $! is the sink itself (its /proc/PID/net/dev is the
    # server namespace's view); a shell function in the background would be a host subshell.
    ip netns exec "$SERVER" "$TOOL" sink --ports 10000 >/dev/null &
    PIDS+=("$!")
    SINK_PIDS=("$!")
    # Neighbours resolved before measuring: ARP is not part of a new connection's cost.
    for ep in ${ENDPOINTS//,/ }; do nsx "$NODE" ping -c 1 -W 1 "$ep" >/dev/null || die "node cannot reach endpoint $ep"; done
    NODE_MAC=$(nsx "$NODE" cat /sys/class/net/vc/address)
    SRC=10.98.1.2 SEND_NS=$CLIENT
}

# What each variant loads into the node. iptables*/nftables: kube-proxy's rules for $1
# Services (kubeproxy_rules.py); conntrack: a nat table with no rules (conntrack and NAT hooks
# only); plain: nothing.
load_kernel() { # variant services
    local v=$1 n=$2 f=$RUN/rules
    case $v in
    plain) ;;
    conntrack)
        nsx "$NODE" nft -f - <<'EOF'
table ip kp-baseline {
    chain pre { type nat hook prerouting priority -100; policy accept; }
    chain post { type nat hook postrouting priority 100; policy accept; }
}
EOF
        ;;
    iptables | iptables-nft)
        python3 "$HERE/kubeproxy_rules.py" iptables --services "$n" --endpoints "$ENDPOINTS" --cluster-cidr $CLUSTER_CIDR >"$f"
        local restore=iptables-legacy-restore
        [ "$v" = iptables-nft ] && restore=iptables-nft-restore
        # As kube-proxy loads them: one iptables-restore of whole tables, --noflush.
        timeout 900 ip netns exec "$NODE" $restore --noflush <"$f" || die "$restore of $n Services failed or took over 15 min"
        ;;
    nftables)
        python3 "$HERE/kubeproxy_rules.py" nftables --services "$n" --endpoints "$ENDPOINTS" --cluster-cidr $CLUSTER_CIDR >"$f"
        timeout 900 ip netns exec "$NODE" nft -f "$f" || die "nft -f of $n Services failed or took over 15 min"
        ;;
    esac
    rm -f "$f"
}

# One measurement: PACKETS datagrams from $SEND_NS (source $SRC, fresh ports) to $1 (or one of
# $2 consecutive addresses at random), port $3; the sender pinned to $CPU. Prints the record.
send() { # dst count dport
    local out
    local rx=()
    local p
    for p in "${SINK_PIDS[@]}"; do rx+=(--rx "$p:eth0"); done
    out=$(timeout 120 ip netns exec "$SEND_NS" taskset -c "$CPU" "$TOOL" send --iface eth0 --dst-mac "$DST_MAC" \
        --src "$SRC" --dst "$1" --dst-count "$2" --dport "$3" --packets "$PACKETS" --seed "$RANDOM" "${rx[@]}") ||
        die "the sender failed: $out"
    echo "$out"
}
field() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k {print $2}'; }
target_of() { # target services → "dst count dport"
    case $1 in
    direct) echo "${DIRECT_DST} 1 10000" ;;
    first) echo "$(vip 0) 1 80" ;;
    last) echo "$(vip $(($2 - 1))) 1 80" ;;
    random) echo "$(vip 0) $2 80" ;;
    esac
}

measure_kernel() { # variant services round target
    local v=$1 n=$2 r=$3 t=$4 dst count dport out k0 k1
    read -r dst count dport <<<"$(target_of "$t" "$n")"
    k0=$(cpu_ns $KSOFT)
    out=$(send "$dst" "$count" "$dport")
    k1=$(cpu_ns $KSOFT)
    sleep 0.1
    local rx
    rx=$(nsx "$SERVER" cat /sys/class/net/eth0/statistics/rx_packets)
    record "$v" "$n" "$t" "$r" "$(field "$out" sent)" "$(field "$out" wall_ns)" \
        "$(($(field "$out" cpu_ns) + k1 - k0))" "$(field "$out" rx_in_window)" "$((rx - RX_BASE))" 0
    RX_BASE=$rx
    # Each run starts with no connections in the node (this namespace's entries only).
    nsx "$NODE" conntrack -F >/dev/null 2>&1 || true
}

run_kernel() { # variant services
    local v=$1 n=$2 r t targets
    setup_kernel
    DST_MAC=$NODE_MAC DIRECT_DST=10.98.2.10
    local t0=$SECONDS
    load_kernel "$v" "$n"
    [ "$v" = plain ] || [ "$v" = conntrack ] || log "  $v: $n Services loaded in $((SECONDS - t0)) s"
    RX_BASE=$(nsx "$SERVER" cat /sys/class/net/eth0/statistics/rx_packets)
    case $v in
    plain | conntrack) targets=direct ;;
    *) targets="first random last" ;;
    esac
    for ((r = 1; r <= ROUNDS; r++)); do
        for t in $targets; do measure_kernel "$v" "$n" "$r" "$t"; done
    done
    teardown
}

# ---------------------------------------------------------------------------------------------
# podswitch: podswitchd + podswitch-control in the node namespace (as race.sh and scripts/demo.sh
# run them), 10 backend pods b0..b9 attached by the CNI plugin with a sink each, the Services
# applied as manifests (ClusterIP, 10 endpoints: the backends' addresses, port 10000). Each
# measurement sends from a new client pod, so every tuple is new to the switch's conntrack
# (which cannot be flushed from outside); the pod is deleted after.
PSW_DIR=$RUN/psw
setup_podswitch() {
    ip netns add "$NODE"
    ip -n "$NODE" link set lo up
    rm -rf "$PSW_DIR"
    mkdir -p "$PSW_DIR"
    local sock=$PSW_DIR/dataplane.sock csock=$PSW_DIR/control.sock
    nsenter --net="/run/netns/$NODE" "$BIN/podswitchd" --socket "$sock" --worker-cpus "$OTHER_CPU" \
        --conntrack-capacity 1048576 2>"$PSW_DIR/podswitchd.log" &
    PSWD_PID=$!
    PIDS+=("$PSWD_PID")
    for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
    [ -S "$sock" ] || die "podswitchd did not open its socket: $(tail -1 "$PSW_DIR/podswitchd.log")"
    nsenter --net="/run/netns/$NODE" "$BIN/podswitch-control" --node-name kp-node --pod-cidr 10.244.1.0/24 \
        --state-dir "$PSW_DIR/state" --dataplane-socket "$sock" --socket "$csock" 2>"$PSW_DIR/control.log" &
    PIDS+=("$!")
    for _ in $(seq 100); do [ -S "$csock" ] && break; sleep 0.05; done
    [ -S "$csock" ] || die "podswitch-control did not open its socket: $(tail -1 "$PSW_DIR/control.log")"
    "$BIN/podswitchctl" --socket "$sock" --control-socket "$csock" install-cni --bin-dir "$PSW_DIR/cni-bin" \
        --conf-dir "$PSW_DIR/cni-conf" --cni-binary "$BIN/podswitch-cni" >/dev/null
    local j ips=()
    SINK_PIDS=()
    for j in $(seq 0 9); do
        cni_add "b$j" || die "CNI ADD of backend pod b$j failed: $(cat "$RUN/why")"
        ips+=("$POD_IP")
        ip netns exec "$PREFIX-b$j" "$TOOL" sink --ports 10000 >/dev/null &
        PIDS+=("$!")
        SINK_PIDS+=("$!")
    done
    BACKENDS=$(IFS=,; echo "${ips[*]}")
    DIRECT_DST=${ips[0]}
}
cni_add() { # pod → POD_IP
    local netconf='{"cniVersion":"1.0.0","name":"podswitch","type":"podswitch","controlSocket":"'"$PSW_DIR/control.sock"'"}'
    local result
    ip netns add "$PREFIX-$1"
    ip -n "$PREFIX-$1" link set lo up
    result=$(echo "$netconf" | CNI_COMMAND=ADD CNI_CONTAINERID="kp-$1" CNI_NETNS="/run/netns/$PREFIX-$1" \
        CNI_IFNAME=eth0 CNI_PATH="$PSW_DIR/cni-bin" CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=kp;K8S_POD_NAME=$1" \
        "$PSW_DIR/cni-bin/podswitch" 2>"$RUN/why") || return 1
    POD_IP=$(echo "$result" | grep -o '"address":"[0-9./]*"' | cut -d'"' -f4 | cut -d/ -f1)
    [ -n "$POD_IP" ]
}
cni_del() { # pod
    local netconf='{"cniVersion":"1.0.0","name":"podswitch","type":"podswitch","controlSocket":"'"$PSW_DIR/control.sock"'"}'
    echo "$netconf" | CNI_COMMAND=DEL CNI_CONTAINERID="kp-$1" CNI_NETNS="/run/netns/$PREFIX-$1" \
        CNI_IFNAME=eth0 CNI_PATH="$PSW_DIR/cni-bin" CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=kp;K8S_POD_NAME=$1" \
        "$PSW_DIR/cni-bin/podswitch" >/dev/null 2>&1 || true
    ip netns del "$PREFIX-$1" 2>/dev/null || true
}
apply_services() { # services
    local n=$1 have=0
    python3 "$HERE/kubeproxy_rules.py" manifests --services "$n" --endpoints "$BACKENDS" --cluster-cidr $CLUSTER_CIDR >"$RUN/svc.yaml"
    timeout 900 "$BIN/podswitchctl" --control-socket "$PSW_DIR/control.sock" apply -f "$RUN/svc.yaml" >/dev/null 2>"$RUN/why" ||
        die "podswitchctl apply of $n Services failed: $(head -c 300 "$RUN/why")"
    for _ in $(seq 600); do
        have=$("$BIN/podswitchctl" --socket "$PSW_DIR/dataplane.sock" services 2>/dev/null | grep -c 'kp/svc-' || true)
        [ "$have" -ge "$n" ] && return 0
        sleep 0.5
    done
    die "podswitchd shows $have of $n Services after 5 min"
}
wait_quiet() { # pid: until it used < 10 ms of CPU in 300 ms (at most 30 s)
    local a b
    for _ in $(seq 100); do
        a=$(cpu_ns "$1")
        sleep 0.3
        b=$(cpu_ns "$1")
        [ $((b - a)) -lt 10000000 ] && return 0
    done
    log "  podswitchd still busy after 30 s; measuring anyway"
}
CLIENT_SEQ=0
measure_podswitch() { # services round target
    local n=$1 r=$2 t=$3 dst count dport out c0 c1 pod rx0 rx1 p
    read -r dst count dport <<<"$(target_of "$t" "$n")"
    CLIENT_SEQ=$((CLIENT_SEQ + 1))
    pod=c$CLIENT_SEQ
    cni_add "$pod" || die "CNI ADD of client pod $pod failed: $(cat "$RUN/why")"
    SEND_NS=$PREFIX-$pod SRC=$POD_IP
    # The pod's gateway MAC (the switch answers ARP for it).
    local gw
    gw=$(ip -n "$SEND_NS" route show default | awk '{print $3; exit}')
    nsx "$SEND_NS" ping -c 1 -W 1 "$gw" >/dev/null 2>&1 || true
    DST_MAC=$(ip -n "$SEND_NS" neigh show "$gw" | awk '{for (i = 1; i < NF; i++) if ($i == "lladdr") print $(i + 1)}')
    [ -n "$DST_MAC" ] || die "client pod $pod did not resolve its gateway $gw"
    # Adding a pod makes control push the node's state and podswitchd recompile its tables
    # (10k Services: ~1 s of CPU): wait until podswitchd is quiet, so that work is not measured.
    wait_quiet "$PSWD_PID"
    rx0=0
    for p in "${SINK_PIDS[@]}"; do rx0=$((rx0 + $(awk '$1 == "eth0:" {print $3}' "/proc/$p/net/dev"))); done
    c0=$(cpu_ns "$PSWD_PID" $KSOFT)
    out=$(send "$dst" "$count" "$dport")
    c1=$(cpu_ns "$PSWD_PID" $KSOFT)
    sleep 0.3
    rx1=0
    for p in "${SINK_PIDS[@]}"; do rx1=$((rx1 + $(awk '$1 == "eth0:" {print $3}' "/proc/$p/net/dev"))); done
    # CPU: the switch (podswitchd, all threads) and softirq, plus the sender's own thread (its
    # sends into the tap), which is also recorded apart.
    record podswitch "$n" "$t" "$r" "$(field "$out" sent)" "$(field "$out" wall_ns)" \
        "$((c1 - c0 + $(field "$out" cpu_ns)))" "$(field "$out" rx_in_window)" "$((rx1 - rx0))" "$(field "$out" cpu_ns)"
    cni_del "$pod"
}
run_podswitch() { # services
    local n=$1 r t
    setup_podswitch
    local t0=$SECONDS
    apply_services "$n"
    log "  podswitch: $n Services applied in $((SECONDS - t0)) s"
    for ((r = 1; r <= ROUNDS; r++)); do
        measure_podswitch "$n" "$r" direct
        for t in first random last; do measure_podswitch "$n" "$r" "$t"; done
    done
    "$BIN/podswitchctl" --socket "$PSW_DIR/dataplane.sock" counters >"$RUN/counters.txt" 2>&1 || true
    if grep -q conntrack_full "$RUN/counters.txt"; then log "  podswitch: conntrack_full drops: $(grep conntrack_full "$RUN/counters.txt")"; fi
    teardown
}

# ---------------------------------------------------------------------------------------------
MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
MACHINE="$(nproc) vCPU, ${MODEL:-unknown CPU}, kernel $(uname -r)"
STARTED=$(date -u '+%Y-%m-%d %H:%M UTC')
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
log "kubeproxy: Services ${SCALES}; ${RUN_VARIANTS[*]}; $ROUNDS rounds of $PACKETS packets; sender on CPU $CPU; load $LOAD0"
baselines() {
    log "baselines: plain forwarding, conntrack + NAT hooks"
    run_kernel plain 0
    run_kernel conntrack 0
}
baselines
for n in "${RUN_SCALES[@]}"; do
    for v in "${RUN_VARIANTS[@]}"; do
        log "$v, $n Services"
        if [ "$v" = podswitch ]; then run_podswitch "$n"; else run_kernel "$v" "$n"; fi
    done
done
baselines # again at the end: how far the machine drifted during the run
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

TITLE="kubeproxy.sh -r $ROUNDS -n $PACKETS -s $SCALES -v $VARIANTS --cpu $CPU: $STARTED; $MACHINE; load $LOAD0 → $LOAD1; podswitch $COMMIT"
SMOKE_FLAG=()
[ "$SMOKE" = 1 ] && SMOKE_FLAG=(--smoke)
status=0
python3 "$HERE/kubeproxy_report.py" "$RESULTS" "$TITLE" "${SMOKE_FLAG[@]}" >"$RUN/table.md" || status=$?
cat "$RUN/table.md"
[ -z "$OUT" ] || { cp "$RUN/table.md" "$OUT"; cp "$RESULTS" "$OUT.tsv"; }
exit "$status"
