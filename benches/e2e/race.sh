#!/usr/bin/env bash
# The race: two pods, the same traffic, on every way of joining them that a node might use —
# a direct veth pair (the limit), the Linux bridge, the bridge with kube-proxy's iptables and
# nftables rules to a Service VIP, Open vSwitch's userspace datapath (AF_XDP and tap ports), and
# podswitch. Interleaved rounds, medians, ratios to direct; one markdown table at the end.
#
# A benchmark, run by hand as root: never from tests or CI. Everything lives in network
# namespaces named "$PREFIX-…" that this script creates and deletes on exit (Ctrl-C too); the
# machine's own network, its OVS (if any) and /opt/cni are left alone. See README.md here.
set -euo pipefail

usage() {
    cat <<EOF
usage: $0 [-r ROUNDS] [-d SECONDS] [-o FILE] [-v VARIANTS] [--idle SECONDS] [--services N] [--rr-cpu C|none] [--no-install]
  -r ROUNDS     interleaved rounds (default 3)
  -d SECONDS    duration of each measurement (default 10)
  -o FILE       also write the markdown table to FILE
  -v VARIANTS   comma-separated subset, in this order by default:
                $ALL_VARIANTS
                (xnode-*: the pods on two nodes joined by a veth underlay: the kernel routing
                or through its VXLAN device, against podswitch with an afxdp uplink on each
                node, routed or VXLAN; compare each podswitch row with its kernel row)
  --idle S      seconds of no traffic over which the switch's idle CPU is measured (default 3)
  --services N  filler Services in the kube-proxy rule sets besides the measured one (default 100)
  --podswitch-args "ARGS"   extra podswitchd flags (e.g. "--idle busy" or "--workers 2")
  --underlay-mtu M   the xnode-* underlay's MTU (default 1500), in the kernel and podswitch
                rows alike; pods get M (routed) or M - 50 (VXLAN). Above 1500 it stands for a
                jumbo-frame underlay (podswitch's afxdp uplink takes at most one UMEM chunk)
  --rr-cpu C    CPU both sockperf ends are pinned to (default 0), or 'none' to let the
                scheduler place them (and move them towards the switch's worker)
  --no-install  do not apt-get the tools (iperf3, sockperf, openvswitch-switch, nftables, ...)
EOF
}

ALL_VARIANTS=direct,bridge,bridge-iptables,bridge-nftables,ovs-afxdp,ovs-tap,podswitch,podswitch-nooffloads,podswitch-afxdp,podswitch-vip,podswitch-pinned,podswitch-percpu,xnode-kernel,xnode-podswitch,xnode-kernel-vxlan,xnode-podswitch-vxlan
ROUNDS=3 DUR=10 OUT='' VARIANTS=$ALL_VARIANTS IDLE=3 SERVICES=100 INSTALL=1 PSW_ARGS='' RR_CPU=0 XNODE_MTU=1500
while [ $# -gt 0 ]; do
    case $1 in
    -r) ROUNDS=$2; shift 2 ;;
    -d) DUR=$2; shift 2 ;;
    -o) OUT=$2; shift 2 ;;
    -v) VARIANTS=$2; shift 2 ;;
    --idle) IDLE=$2; shift 2 ;;
    --rr-cpu) RR_CPU=$2; shift 2 ;;
    --underlay-mtu) XNODE_MTU=$2; shift 2 ;;
    --services) SERVICES=$2; shift 2 ;;
    --podswitch-args) PSW_ARGS=$2; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "race.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
for n in "$ROUNDS" "$DUR" "$IDLE" "$SERVICES" "$XNODE_MTU"; do
    [[ $n =~ ^[0-9]+$ ]] || { echo "race.sh: '$n' is not a whole number: -r, -d, --idle, --services and --underlay-mtu take one" >&2; exit 2; }
done
if [ "$RR_CPU" = none ]; then
    RR_PIN=()
elif [[ $RR_CPU =~ ^[0-9]+$ ]]; then
    RR_PIN=(taskset -c "$RR_CPU")
else
    echo "race.sh: --rr-cpu takes a CPU number or 'none', not '$RR_CPU'" >&2
    exit 2
fi
IFS=, read -r -a RUN_VARIANTS <<<"$VARIANTS"
for v in "${RUN_VARIANTS[@]}"; do
    [[ ",$ALL_VARIANTS," == *",$v,"* ]] || { echo "race.sh: unknown variant '$v'; known: $ALL_VARIANTS" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "race.sh: builds namespaces, bridges and OVS datapaths: run it as root" >&2; exit 1; }

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PREFIX=race$$
RUN=$(mktemp -d /tmp/podswitch-race.XXXXXX)
RESULTS=$RUN/results.tsv
: >"$RESULTS"
CUR_PIDS=() # daemons of the variant being measured, killed by teardown
SWITCH_PIDS=() # processes whose CPU is the switch's

# fd 3 is the script's own stderr: the signal trap and log() may run while a function's stderr
# is redirected into a file (nsx iperf3 ... 2>why), and must still reach the user.
exec 3>&2
log() { printf '[%s] %s\n' "$(date -u +%T)" "$*" >&3; }

# shellcheck source=teardown.sh
. "$HERE/teardown.sh"
teardown() {
    [ ${#CUR_PIDS[@]} -gt 0 ] && kill_pids "${CUR_PIDS[@]}"
    CUR_PIDS=() SWITCH_PIDS=()
    delete_namespaces "$PREFIX"
}
cleanup() {
    trap - EXIT INT TERM
    teardown
    rm -rf "$RUN"
}
trap cleanup EXIT
trap 'echo "race.sh: interrupted, cleaning up" >&3; exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# Tools.
if [ "$INSTALL" = 1 ]; then
    log "installing iperf3, sockperf, openvswitch-switch, nftables, iptables, ethtool (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -qq update
    # openvswitch-switch's postinst would start the machine's own OVS: policy-rc.d keeps it off
    # if the machine has one; the race starts its own private daemons either way.
    apt-get -qq install -y iperf3 sockperf openvswitch-switch nftables iptables ethtool iproute2 \
        util-linux procps >/dev/null
fi
for t in iperf3 sockperf ip nsenter taskset python3; do
    command -v "$t" >/dev/null || { echo "race.sh: '$t' is missing: run without --no-install or install it" >&2; exit 1; }
done

if [[ ",$VARIANTS," == *"podswitch"* ]]; then
    log "building podswitch (release)"
    (cd "$REPO" && cargo build -q --release -p podswitch-dataplane -p podswitch-control -p podswitch-cli -p podswitch-cni --bins)
fi
BIN=${CARGO_TARGET_DIR:-$REPO/target}/release
COMMIT=$(git -C "$REPO" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
git -C "$REPO" diff --quiet HEAD 2>/dev/null || COMMIT="$COMMIT (dirty)"

# ---------------------------------------------------------------------------------------------
# Topology helpers. Pods are namespaces $PREFIX-a (client) and $PREFIX-b (server); switches
# live in $PREFIX-node. Each setup_* sets CLIENT, SERVER, TARGET (the address the client
# sends to: the server pod, or a Service VIP).
NODE=$PREFIX-node
CLIENT=$PREFIX-a SERVER=$PREFIX-b
A_IP=10.99.0.1 B_IP=10.99.0.2 GW=10.99.0.254 VIP=10.96.0.10
TARGET=$B_IP

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
pods() { ip netns add "$CLIENT"; ip netns add "$SERVER"; ip -n "$CLIENT" link set lo up; ip -n "$SERVER" link set lo up; }
node() { ip netns add "$NODE"; ip -n "$NODE" link set lo up; }
addr() { # ns ip/len dev
    ip -n "$1" addr add "$2" dev "$3"
    ip -n "$1" link set "$3" up
}
# Pod eth0 = one end of a veth pair, the other end "$2" in the node namespace.
pod_veth() { ip -n "$1" link add eth0 type veth peer name "$2" netns "$NODE"; ip -n "$NODE" link set "$2" up; }

setup_direct() {
    pods
    ip -n "$CLIENT" link add eth0 type veth peer name eth0 netns "$SERVER"
    addr "$CLIENT" $A_IP/24 eth0
    addr "$SERVER" $B_IP/24 eth0
    TARGET=$B_IP
}

setup_bridge() {
    pods
    node
    ip -n "$NODE" link add br0 type bridge
    ip -n "$NODE" link set br0 up
    pod_veth "$CLIENT" va
    pod_veth "$SERVER" vb
    ip -n "$NODE" link set va master br0
    ip -n "$NODE" link set vb master br0
    addr "$CLIENT" $A_IP/24 eth0
    addr "$SERVER" $B_IP/24 eth0
    TARGET=$B_IP
}

# The bridge as a CNI "bridge" plugin leaves it (gateway address on br0, routing on), pods
# reaching Service VIPs through the gateway; kube-proxy with masqueradeAll so that replies come
# back through the node without br_netfilter (which would change every bridge of the machine).
setup_bridge_kube() {
    setup_bridge
    addr "$NODE" $GW/24 br0
    nsx "$NODE" sysctl -qw net.ipv4.ip_forward=1
    ip -n "$CLIENT" route add 10.96.0.0/12 via $GW
    ip -n "$SERVER" route add 10.96.0.0/12 via $GW
    TARGET=$VIP
}

# kube-proxy iptables mode: the chains it writes (KUBE-SERVICES → KUBE-SVC-… → KUBE-SEP-…,
# KUBE-MARK-MASQ, KUBE-POSTROUTING), one Service with the measured ports and $SERVICES filler
# Services before it in KUBE-SERVICES, as a real node has.
setup_bridge_iptables() {
    setup_bridge_kube
    command -v iptables-restore >/dev/null || { echo "iptables-restore missing" >"$RUN/why"; return 1; }
    {
        echo '*filter'
        echo ':KUBE-FORWARD - [0:0]'
        echo '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD'
        echo '-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP'
        echo '-A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT'
        echo '-A KUBE-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT'
        echo 'COMMIT'
        echo '*nat'
        echo ':KUBE-SERVICES - [0:0]'
        echo ':KUBE-POSTROUTING - [0:0]'
        echo ':KUBE-MARK-MASQ - [0:0]'
        echo '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'
        echo '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'
        echo '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'
        echo '-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000'
        echo '-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN'
        echo '-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0'
        echo '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully'
        local i
        for ((i = 0; i < SERVICES; i++)); do
            local vip=10.97.$((i / 250)).$((i % 250 + 1)) c
            c=$(printf '%04X' "$i")
            echo ":KUBE-SVC-FILL$c - [0:0]"
            echo ":KUBE-SEP-FILL$c - [0:0]"
            echo "-A KUBE-SERVICES -d $vip/32 -p tcp -m comment --comment \"filler/svc$i cluster IP\" -m tcp --dport 80 -j KUBE-SVC-FILL$c"
            echo "-A KUBE-SVC-FILL$c -d $vip/32 -p tcp -m tcp --dport 80 -j KUBE-MARK-MASQ"
            echo "-A KUBE-SVC-FILL$c -j KUBE-SEP-FILL$c"
            echo "-A KUBE-SEP-FILL$c -s 10.99.1.$((i % 250 + 1))/32 -j KUBE-MARK-MASQ"
            echo "-A KUBE-SEP-FILL$c -p tcp -m tcp -j DNAT --to-destination 10.99.1.$((i % 250 + 1)):80"
        done
        local proto port name
        for pp in tcp:5201 udp:5201 udp:11111; do
            proto=${pp%%:*} port=${pp##*:} name=$(echo "RACE${proto}${port}" | tr a-z A-Z)
            echo ":KUBE-SVC-$name - [0:0]"
            echo ":KUBE-SEP-$name - [0:0]"
            echo "-A KUBE-SERVICES -d $VIP/32 -p $proto -m comment --comment \"race/server:$proto$port cluster IP\" -m $proto --dport $port -j KUBE-SVC-$name"
            echo "-A KUBE-SVC-$name -d $VIP/32 -p $proto -m $proto --dport $port -j KUBE-MARK-MASQ"
            echo "-A KUBE-SVC-$name -m comment --comment \"race/server:$proto$port -> $B_IP:$port\" -j KUBE-SEP-$name"
            echo "-A KUBE-SEP-$name -s $B_IP/32 -j KUBE-MARK-MASQ"
            echo "-A KUBE-SEP-$name -p $proto -m $proto -j DNAT --to-destination $B_IP:$port"
        done
        echo '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports" -m addrtype --dst-type LOCAL -j RETURN'
        echo 'COMMIT'
    } >"$RUN/iptables.rules"
    nsx "$NODE" iptables-restore <"$RUN/iptables.rules" 2>"$RUN/why" || return 1
}

# kube-proxy nftables mode: table ip kube-proxy with the service-ips verdict map (daddr .
# proto . port → goto service chain), service chains choosing an endpoint with numgen + vmap,
# endpoint chains doing the dnat, masquerading by mark; filler Services as map elements.
setup_bridge_nftables() {
    setup_bridge_kube
    command -v nft >/dev/null || { echo "nft missing" >"$RUN/why"; return 1; }
    {
        cat <<EOF
table ip kube-proxy {
    comment "rules for kube-proxy"
    chain mark-for-masquerade { meta mark set meta mark | 0x4000; }
    chain masquerading {
        meta mark & 0x4000 == 0 return
        meta mark set meta mark ^ 0x4000
        masquerade fully-random
    }
    chain services {
        ip daddr . meta l4proto . th dport vmap @service-ips
        fib daddr type local ip daddr != 127.0.0.0/8 jump service-nodeports
    }
    chain service-nodeports { return; }
    chain nat-prerouting { type nat hook prerouting priority dstnat; policy accept; jump services; }
    chain nat-output { type nat hook output priority -100; policy accept; jump services; }
    chain nat-postrouting { type nat hook postrouting priority srcnat; policy accept; jump masquerading; }
    map no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict; }
    chain filter-forward {
        type filter hook forward priority -110; policy accept
        ct state new jump service-endpoints-check
    }
    chain service-endpoints-check {
        ip daddr . meta l4proto . th dport vmap @no-endpoint-services
    }
    chain forward { type filter hook forward priority filter; policy accept; ct state invalid drop; }
EOF
        local i elems=() proto port name
        for ((i = 0; i < SERVICES; i++)); do
            local vip=10.97.$((i / 250)).$((i % 250 + 1)) ep=10.99.1.$((i % 250 + 1))
            echo "    chain service-fill$i-tcp-80 { ip daddr $vip tcp dport 80 jump mark-for-masquerade; numgen random mod 1 vmap { 0 : goto endpoint-fill$i-tcp-80 }; }"
            echo "    chain endpoint-fill$i-tcp-80 { ip saddr $ep jump mark-for-masquerade; meta l4proto tcp dnat to $ep:80; }"
            elems+=("$vip . tcp . 80 : goto service-fill$i-tcp-80")
        done
        for pp in tcp:5201 udp:5201 udp:11111; do
            proto=${pp%%:*} port=${pp##*:} name=race-server-$proto-$port
            echo "    chain service-$name { ip daddr $VIP $proto dport $port jump mark-for-masquerade; numgen random mod 1 vmap { 0 : goto endpoint-$name }; }"
            echo "    chain endpoint-$name { ip saddr $B_IP jump mark-for-masquerade; meta l4proto $proto dnat to $B_IP:$port; }"
            elems+=("$VIP . $proto . $port : goto service-$name")
        done
        echo "    map service-ips {"
        echo "        type ipv4_addr . inet_proto . inet_service : verdict"
        local IFS=,
        echo "        elements = { ${elems[*]} }"
        echo "    }"
        echo "}"
    } >"$RUN/kube-proxy.nft"
    nsx "$NODE" nft -f "$RUN/kube-proxy.nft" 2>"$RUN/why" || return 1
}

# Open vSwitch, userspace datapath, daemons of our own: a fresh database and run directory
# under $RUN, ovs-vswitchd in the node namespace. Never the machine's OVS (if it has one).
OVSD=$RUN/ovs
ovs_start() {
    rm -rf "$OVSD"
    mkdir -p "$OVSD"
    export OVS_RUNDIR=$OVSD OVS_LOGDIR=$OVSD OVS_DBDIR=$OVSD OVS_SYSCONFDIR=$OVSD
    local schema=/usr/share/openvswitch/vswitch.ovsschema
    [ -f "$schema" ] || { echo "openvswitch-switch is not installed ($schema missing)" >"$RUN/why"; return 1; }
    ovsdb-tool create "$OVSD/conf.db" "$schema"
    ovsdb-server "$OVSD/conf.db" --remote=punix:"$OVSD/db.sock" --pidfile="$OVSD/ovsdb.pid" \
        --unixctl="$OVSD/ovsdb.ctl" --log-file="$OVSD/ovsdb.log" --detach --no-chdir
    CUR_PIDS+=("$(cat "$OVSD/ovsdb.pid")")
    vsctl --no-wait init
    nsenter --net="/run/netns/$NODE" ovs-vswitchd unix:"$OVSD/db.sock" --pidfile="$OVSD/vswitchd.pid" \
        --unixctl="$OVSD/vswitchd.ctl" --log-file="$OVSD/vswitchd.log" --detach --no-chdir
    local pid
    pid=$(cat "$OVSD/vswitchd.pid")
    CUR_PIDS+=("$pid")
    SWITCH_PIDS+=("$pid")
    vsctl add-br br0 -- set bridge br0 datapath_type=netdev
}
vsctl() { ovs-vsctl --db=unix:"$OVSD/db.sock" --timeout=10 "$@"; }

setup_ovs_afxdp() {
    pods
    node
    ovs_start || return 1
    if ! vsctl get Open_vSwitch . iface_types | grep -qw afxdp; then
        echo "this OVS build has no AF_XDP ports (iface_types: $(vsctl get Open_vSwitch . iface_types))" >"$RUN/why"
        return 1
    fi
    pod_veth "$CLIENT" va
    pod_veth "$SERVER" vb
    local p
    for p in a b; do
        local ns=$PREFIX-$p
        # AF_XDP takes no TSO/checksum offload: the pods' kernels segment and checksum
        # (OVS's AF_XDP guide does the same); GRO on the pod side gives the veth the NAPI that
        # native XDP redirect into it needs.
        nsx "$ns" ethtool -K eth0 tx off gro on >/dev/null 2>&1 || true
        vsctl add-port br0 v$p -- set interface v$p type=afxdp options:n_rxq=1 2>"$RUN/why" || return 1
    done
    addr "$CLIENT" $A_IP/24 eth0
    addr "$SERVER" $B_IP/24 eth0
    TARGET=$B_IP
}

setup_ovs_tap() {
    pods
    node
    ovs_start || return 1
    local p
    for p in a b; do
        # The tap is created by ovs-vswitchd in the node namespace, then moved into the pod.
        vsctl add-port br0 tap$p -- set interface tap$p type=tap 2>"$RUN/why" || return 1
        for _ in $(seq 50); do ip -n "$NODE" link show tap$p >/dev/null 2>&1 && break; sleep 0.1; done
        ip -n "$NODE" link set tap$p netns "$PREFIX-$p"
        ip -n "$PREFIX-$p" link set tap$p name eth0
    done
    addr "$CLIENT" $A_IP/24 eth0
    addr "$SERVER" $B_IP/24 eth0
    TARGET=$B_IP
}

# podswitch as a node runs it (scripts/demo.sh, tests/src/): podswitchd and podswitch-control in
# the node namespace, started with nsenter --net so they share the mount namespace, private
# sockets and state under $RUN; the two pods attached by calling the CNI plugin.
# podswitch-pinned: the same, with the worker pinned to CPU 0, where the benchmark pins both
# pods (OVS and VPP deployments pin their poll-mode threads likewise); see BENCHMARKS.md,
# "Where the latency goes".
setup_podswitch_pinned() {
    PSW_PIN="--worker-cpus 0" setup_podswitch
}

# podswitch-percpu: one worker per CPU, worker i pinned to CPU i, and the taps steering each
# frame to the queue of the CPU that sends it (DaemonConfig::steers_by_cpu): placement that
# knows nothing of where the pods run.
setup_podswitch_percpu() {
    PSW_PIN="--workers $(nproc) --worker-cpus $(seq -s, 0 $(($(nproc) - 1)))" setup_podswitch
}

# podswitch-afxdp: the same node, the pods attached with "attachment": "veth-afxdp" in the
# network config: control makes a veth pair per pod (the pod's end with transmit checksum, TSO
# and GSO off), podswitchd binds the node end with AF_XDP sockets. Beside "podswitch" (taps) in
# the same run, this is the issue's "measure both side by side".
setup_podswitch_afxdp() {
    PSW_ATTACH=veth-afxdp setup_podswitch
}

# podswitch-nooffloads: taps with "offloads": false in the network config: the pods exchange
# whole frames of at most the MTU, as veth-afxdp pods must; the per-frame comparison to it.
setup_podswitch_nooffloads() {
    PSW_OFFLOADS=false setup_podswitch
}

setup_podswitch() {
    node
    local dir=$RUN/psw sock csock
    rm -rf "$dir"
    mkdir -p "$dir"
    sock=$dir/dataplane.sock csock=$dir/control.sock
    # shellcheck disable=SC2086
    nsenter --net="/run/netns/$NODE" "$BIN/podswitchd" --socket "$sock" $PSW_ARGS ${PSW_PIN:-} 2>"$dir/podswitchd.log" &
    local pid=$!
    CUR_PIDS+=("$pid")
    SWITCH_PIDS+=("$pid")
    for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
    [ -S "$sock" ] || { echo "podswitchd did not open its socket: $(tail -1 "$dir/podswitchd.log")" >"$RUN/why"; return 1; }
    nsenter --net="/run/netns/$NODE" "$BIN/podswitch-control" --node-name race-node --pod-cidr 10.244.1.0/24 \
        --state-dir "$dir/state" --dataplane-socket "$sock" --socket "$csock" 2>"$dir/control.log" &
    CUR_PIDS+=("$!")
    for _ in $(seq 100); do [ -S "$csock" ] && break; sleep 0.05; done
    [ -S "$csock" ] || { echo "podswitch-control did not open its socket: $(tail -1 "$dir/control.log")" >"$RUN/why"; return 1; }
    "$BIN/podswitchctl" --socket "$sock" --control-socket "$csock" install-cni --bin-dir "$dir/cni-bin" \
        --conf-dir "$dir/cni-conf" --cni-binary "$BIN/podswitch-cni" >/dev/null
    local netconf='{"cniVersion":"1.0.0","name":"podswitch","type":"podswitch","controlSocket":"'"$csock"'","attachment":"'"${PSW_ATTACH:-tap}"'","offloads":'"${PSW_OFFLOADS:-true}"'}'
    local p result ip
    for p in a b; do
        ip netns add "$PREFIX-$p"
        result=$(echo "$netconf" | CNI_COMMAND=ADD CNI_CONTAINERID="race-$p" CNI_NETNS="/run/netns/$PREFIX-$p" \
            CNI_IFNAME=eth0 CNI_PATH="$dir/cni-bin" \
            CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=race;K8S_POD_NAME=$p" "$dir/cni-bin/podswitch" 2>"$RUN/why") || return 1
        ip=$(echo "$result" | grep -o '"address":"[0-9./]*"' | cut -d'"' -f4 | cut -d/ -f1)
        ip -n "$PREFIX-$p" link set lo up
        [ "$p" = b ] && TARGET=$ip
    done
}

# podswitch-vip: podswitch with the traffic sent to a ClusterIP whose one endpoint is pod b, as
# the bridge-iptables/nftables variants send it through kube-proxy's rules: a Service and its
# EndpointSlice applied through podswitch-control, DNAT and reverse NAT in the switch.
setup_podswitch_vip() {
    setup_podswitch || return 1
    local b=$TARGET dir=$RUN/psw
    cat >"$RUN/vip.yaml" <<YAML
apiVersion: v1
kind: Service
metadata: {name: server, namespace: race}
spec:
  clusterIP: $VIP
  ports:
  - {name: tcp-5201, protocol: TCP, port: 5201, targetPort: 5201}
  - {name: udp-5201, protocol: UDP, port: 5201, targetPort: 5201}
  - {name: udp-11111, protocol: UDP, port: 11111, targetPort: 11111}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: server-1
  namespace: race
  labels: {kubernetes.io/service-name: server}
addressType: IPv4
ports:
- {name: tcp-5201, protocol: TCP, port: 5201}
- {name: udp-5201, protocol: UDP, port: 5201}
- {name: udp-11111, protocol: UDP, port: 11111}
endpoints:
- addresses: ["$b"]
  conditions: {ready: true}
YAML
    "$BIN/podswitchctl" --control-socket "$dir/control.sock" apply -f "$RUN/vip.yaml" >/dev/null 2>"$RUN/why" || return 1
    local _
    for _ in $(seq 100); do
        "$BIN/podswitchctl" --socket "$dir/dataplane.sock" services 2>/dev/null | grep -q "race/server:udp-11111" && break
        sleep 0.05
    done
    SERVER_IP=$b TARGET=$VIP
}

# ---------------------------------------------------------------------------------------------
# Measurements. CPU is utime+stime from /proc: the switch's processes (all their threads) plus
# every ksoftirqd, as % of one core over the measurement.
# ---------------------------------------------------------------------------------------------
# Cross-node (issue 16): pod a on node 1 ($PREFIX-n1), pod b on node 2 ($PREFIX-n2), the nodes
# joined by one veth pair, the underlay (192.168.77.1 and .2). Pod CIDRs 10.244.1.0/24 and
# 10.244.2.0/24. With VXLAN (VNI 42, UDP 4789) every MTU on the pods' path is the underlay's
# ($XNODE_MTU, default 1500) less 50, in both the kernel and podswitch rows.
XN1=$PREFIX-n1 XN2=$PREFIX-n2
xnode_pods() { # mtu
    pods
    ip netns add "$XN1"; ip netns add "$XN2"
    ip -n "$XN1" link set lo up; ip -n "$XN2" link set lo up
    ip -n "$XN1" link add ul1 type veth peer name ul2 netns "$XN2"
    ip -n "$XN1" link set ul1 mtu "$XNODE_MTU" up; ip -n "$XN2" link set ul2 mtu "$XNODE_MTU" up
    A_XIP=10.244.1.2 B_XIP=10.244.2.2
    TARGET=$B_XIP SERVER_IP=$B_XIP
}
# The pod side of a kernel-routed pod: eth0 with a /32, the gateway on-link, default via it.
xnode_pod_routes() { # ns ip gateway mtu
    ip -n "$1" addr add "$2/32" dev eth0
    ip -n "$1" link set eth0 mtu "$4" up
    ip -n "$1" route add "$3" dev eth0 scope link
    ip -n "$1" route add default via "$3" dev eth0
}
# Kernel: each node a router (pod veth, forwarding on), routes to the other pod CIDR.
xnode_kernel() { # vxlan(0|1)
    local mtu=$XNODE_MTU n i
    [ "$1" = 1 ] && mtu=$((XNODE_MTU - 50))
    xnode_pods
    for i in 1 2; do
        n=$PREFIX-n$i
        nsx "$n" sysctl -qw net.ipv4.ip_forward=1
        ip -n "$n" addr add 192.168.77.$i/24 dev ul$i
    done
    ip -n "$CLIENT" link add eth0 type veth peer name pa netns "$XN1"
    ip -n "$SERVER" link add eth0 type veth peer name pb netns "$XN2"
    ip -n "$XN1" addr add 10.244.1.1/32 dev pa; ip -n "$XN1" link set pa mtu $mtu up
    ip -n "$XN2" addr add 10.244.2.1/32 dev pb; ip -n "$XN2" link set pb mtu $mtu up
    ip -n "$XN1" route add $A_XIP/32 dev pa
    ip -n "$XN2" route add $B_XIP/32 dev pb
    xnode_pod_routes "$CLIENT" $A_XIP 10.244.1.1 $mtu
    xnode_pod_routes "$SERVER" $B_XIP 10.244.2.1 $mtu
    if [ "$1" = 0 ]; then
        ip -n "$XN1" route add 10.244.2.0/24 via 192.168.77.2
        ip -n "$XN2" route add 10.244.1.0/24 via 192.168.77.1
        return
    fi
    # VXLAN as flannel programs it: a device per node, the other node's VTEP in the FDB, its
    # pod CIDR routed onlink to the VTEP address with a permanent neighbour.
    for i in 1 2; do
        n=$PREFIX-n$i
        ip -n "$n" link add vx0 type vxlan id 42 local 192.168.77.$i dev ul$i dstport 4789 nolearning
        ip -n "$n" link set vx0 address 0a:58:0a:f4:0$i:00 mtu $mtu up
        ip -n "$n" addr add 10.244.$i.0/32 dev vx0
    done
    ip -n "$XN1" neigh add 10.244.2.0 lladdr 0a:58:0a:f4:02:00 dev vx0 nud permanent
    ip -n "$XN2" neigh add 10.244.1.0 lladdr 0a:58:0a:f4:01:00 dev vx0 nud permanent
    nsx "$XN1" bridge fdb append 0a:58:0a:f4:02:00 dev vx0 dst 192.168.77.2
    nsx "$XN2" bridge fdb append 0a:58:0a:f4:01:00 dev vx0 dst 192.168.77.1
    ip -n "$XN1" route add 10.244.2.0/24 via 10.244.2.0 dev vx0 onlink
    ip -n "$XN2" route add 10.244.1.0/24 via 10.244.1.0 dev vx0 onlink
}
setup_xnode_kernel() { xnode_kernel 0; }
setup_xnode_kernel_vxlan() { xnode_kernel 1; }

# podswitch: a podswitchd per node, the pod a tap port of it, the underlay end an afxdp uplink,
# the other node's pod CIDR a node route (configured over the dataplane socket: no control).
xnode_podswitch() { # vxlan(0|1)
    local mtu=$XNODE_MTU encap='{"mode":"direct"}' i n dir sock pod ip peer
    [ "$1" = 1 ] && mtu=$((XNODE_MTU - 50)) encap='{"mode":"vxlan","vni":42}'
    xnode_pods
    for i in 1 2; do
        n=$PREFIX-n$i dir=$RUN/xn$i sock=$RUN/xn$i/dataplane.sock
        rm -rf "$dir"; mkdir -p "$dir"
        # shellcheck disable=SC2086
        nsenter --net="/run/netns/$n" "$BIN/podswitchd" --socket "$sock" $PSW_ARGS 2>"$dir/podswitchd.log" &
        CUR_PIDS+=("$!"); SWITCH_PIDS+=("$!")
        for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
        [ -S "$sock" ] || { echo "podswitchd on node $i did not open its socket: $(tail -1 "$dir/podswitchd.log")" >"$RUN/why"; return 1; }
        if [ $i = 1 ]; then pod=$CLIENT ip=$A_XIP peer=2; else pod=$SERVER ip=$B_XIP peer=1; fi
        cat >"$dir/tx.json" <<JSON
{"generation":null,"replace":false,"ops":[
 {"op":"set_node","pod_cidr":"10.244.$i.0/24","gateway":"10.244.$i.1","gateway_mac":"0a:58:0a:f4:0$i:01"},
 {"op":"add_port","name":"ul$i","kind":"afxdp","mtu":$XNODE_MTU,"offloads":false,
  "role":{"role":"uplink","mac":"0a:58:c0:a8:4d:0$i","ip":"192.168.77.$i","encap":$encap}},
 {"op":"add_port","name":"pod$i","kind":"tap","mtu":$mtu,
  "netns":{"path":"/run/netns/$pod","ifname":"eth0"},
  "role":{"role":"pod","mac":"0a:58:0a:f4:0$i:02","ip":"$ip"}},
 {"op":"add_route","prefix":"10.244.$i.0/24","target":{"via":"unreachable"}},
 {"op":"add_route","prefix":"10.244.$peer.0/24","target":{"via":"node","ip":"192.168.77.$peer"}}
]}
JSON
        "$BIN/podswitchctl" --socket "$sock" dp apply "$dir/tx.json" >/dev/null 2>"$RUN/why" || return 1
        xnode_pod_routes "$pod" "$ip" 10.244.$i.1 $mtu
    done
}
setup_xnode_podswitch() { xnode_podswitch 0; }
setup_xnode_podswitch_vxlan() { xnode_podswitch 1; }

ksoftirqd_pids() { for d in /proc/[0-9]*; do case $(cat "$d/comm" 2>/dev/null) in ksoftirqd/*) echo "${d#/proc/}" ;; esac; done; }
KSOFT=$(ksoftirqd_pids | tr '\n' ' ')
ticks() { # pids...: summed utime+stime
    local t=0 p f
    for p in "$@"; do
        f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        f=${f##*) } # after "(comm) "
        read -r -a s <<<"$f"
        t=$((t + s[11] + s[12]))
    done
    echo $t
}
HZ=$(getconf CLK_TCK)
now_ns() { date +%s%N; }
cpu_pct() { # ticks0 ticks1 ns0 ns1
    python3 -c "import sys; t0,t1,n0,n1=map(int,sys.argv[1:]); print(f'{(t1-t0)/$HZ/((n1-n0)/1e9)*100:.1f}')" "$@"
}
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"; }

measure() { # variant round
    local v=$1 r=$2 t0 t1 n0 n1 j
    # Reachability first: a variant that cannot ping is a failed row, not a zero.
    if ! nsx "$CLIENT" ping -n -c 3 -i 0.2 -W 2 "$TARGET" >/dev/null 2>&1; then
        # The VIP answers no ping (kube-proxy DNATs only the Service's ports): check the pod.
        if [ "$TARGET" != "$VIP" ] || ! nsx "$CLIENT" ping -n -c 3 -i 0.2 -W 2 "${SERVER_IP:-$B_IP}" >/dev/null 2>&1; then
            echo "no ping from pod a to $TARGET" >"$RUN/why"
            return 1
        fi
    fi
    # Idle: the switch with the pods attached and no traffic.
    if [ ${#SWITCH_PIDS[@]} -gt 0 ]; then
        sleep 1
        t0=$(ticks "${SWITCH_PIDS[@]}") n0=$(now_ns)
        sleep "$IDLE"
        t1=$(ticks "${SWITCH_PIDS[@]}") n1=$(now_ns)
        record "$v" "$r" cpu_idle "$(cpu_pct "$t0" "$t1" "$n0" "$n1")"
    fi
    nsx "$SERVER" iperf3 -s -p 5201 >/dev/null 2>&1 &
    local iperf=$!
    nsx "$SERVER" "${RR_PIN[@]}" sockperf sr -i 0.0.0.0 -p 11111 >/dev/null 2>&1 &
    local sockperf=$!
    sleep 0.5
    # shellcheck disable=SC2086
    # 1. 64-byte UDP flood, as fast as iperf3 sends: offered = sent, rx = sent - lost.
    t0=$(ticks ${SWITCH_PIDS[@]+"${SWITCH_PIDS[@]}"} $KSOFT) n0=$(now_ns)
    j=$RUN/udp.json
    if nsx "$CLIENT" iperf3 -c "$TARGET" -p 5201 -u -l 64 -b 0 -t "$DUR" --json >"$j" 2>"$RUN/why"; then
        t1=$(ticks ${SWITCH_PIDS[@]+"${SWITCH_PIDS[@]}"} $KSOFT) n1=$(now_ns)
        python3 - "$j" <<'PY' | while read -r k val; do record "$v" "$r" "$k" "$val"; done
import json, sys
s = json.load(open(sys.argv[1]))["end"]["sum"]
sec = s["seconds"] or 1
print("offered_pps", round(s["packets"] / sec))
print("rx_pps", round((s["packets"] - s["lost_packets"]) / sec))
print("drop_pct", round(100.0 * s["lost_packets"] / max(s["packets"], 1), 2))
PY
        record "$v" "$r" cpu_flood "$(cpu_pct "$t0" "$t1" "$n0" "$n1")"
    else
        record "$v" "$r" note "udp flood failed: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("error","?"))' "$j" 2>/dev/null || head -c 200 "$RUN/why")"
    fi
    sleep 1
    # 2. One TCP stream.
    t0=$(ticks ${SWITCH_PIDS[@]+"${SWITCH_PIDS[@]}"} $KSOFT) n0=$(now_ns)
    j=$RUN/tcp.json
    if nsx "$CLIENT" iperf3 -c "$TARGET" -p 5201 -t "$DUR" --json >"$j" 2>"$RUN/why"; then
        t1=$(ticks ${SWITCH_PIDS[@]+"${SWITCH_PIDS[@]}"} $KSOFT) n1=$(now_ns)
        record "$v" "$r" tcp_gbps "$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"]/1e9, 3))' "$j")"
        record "$v" "$r" cpu_tcp "$(cpu_pct "$t0" "$t1" "$n0" "$n1")"
    else
        record "$v" "$r" note "tcp failed: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("error","?"))' "$j" 2>/dev/null || true)"
    fi
    # 3. UDP request/response, 64-byte messages, client and server pinned to CPU 0.
    t0=$(ticks ${SWITCH_PIDS[@]+"${SWITCH_PIDS[@]}"} $KSOFT) n0=$(now_ns)
    if nsx "$CLIENT" "${RR_PIN[@]}" sockperf pp -i "$TARGET" -p 11111 -m 64 -t "$DUR" --full-rtt >"$RUN/rr.txt" 2>&1; then
        t1=$(ticks ${SWITCH_PIDS[@]+"${SWITCH_PIDS[@]}"} $KSOFT) n1=$(now_ns)
        local p50 p99
        p50=$(awk '/percentile 50.000/ {print $NF}' "$RUN/rr.txt")
        p99=$(awk '/percentile 99.000/ {print $NF}' "$RUN/rr.txt")
        if [ -n "$p50" ] && [ -n "$p99" ]; then
            record "$v" "$r" rr_p50 "$p50"
            record "$v" "$r" rr_p99 "$p99"
            record "$v" "$r" cpu_rr "$(cpu_pct "$t0" "$t1" "$n0" "$n1")"
        else
            record "$v" "$r" note "rr: no percentiles from sockperf ($(grep -m1 -i -E 'error|warn' "$RUN/rr.txt" || echo 'no replies?'))"
        fi
    else
        record "$v" "$r" note "rr failed: $(tail -1 "$RUN/rr.txt")"
    fi
    kill_pids "$iperf" "$sockperf"
}

MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
MACHINE="$(nproc) vCPU, ${MODEL:-unknown CPU}, kernel $(uname -r)"
STARTED=$(date -u '+%Y-%m-%d %H:%M UTC')
log "race: ${RUN_VARIANTS[*]}; $ROUNDS rounds of ${DUR}s; $MACHINE; podswitch $COMMIT"
for ((r = 1; r <= ROUNDS; r++)); do
    for v in "${RUN_VARIANTS[@]}"; do
        log "round $r/$ROUNDS: $v"
        : >"$RUN/why"
        SERVER_IP=
        fn=setup_${v//-/_}
        # Setup runs in this shell (it sets TARGET and the daemons' pids): a failing command
        # anywhere in it marks the variant failed, with the command, instead of ending the race.
        SETUP_FAILED=0
        set +e -E
        trap 'SETUP_FAILED=1; echo "$BASH_COMMAND: exit $?" >>"$RUN/why"' ERR
        "$fn" >>"$RUN/setup.log" 2>&1
        ok=$?
        trap - ERR
        set -e +E
        [ $SETUP_FAILED = 1 ] && ok=1
        if [ $ok -ne 0 ]; then
            why=$(tr '\n' ' ' <"$RUN/why" | cut -c1-160)
            record "$v" "$r" failed "setup: ${why:-see $(tail -1 "$RUN/setup.log")}"
            log "  $v failed: ${why:-$(tail -1 "$RUN/setup.log")}"
        elif ! measure "$v" "$r"; then
            record "$v" "$r" failed "$(tr '\n' ' ' <"$RUN/why" | cut -c1-160)"
            log "  $v failed: $(cat "$RUN/why")"
        fi
        teardown
    done
done

TITLE="race.sh -r $ROUNDS -d $DUR${PSW_ARGS:+ --podswitch-args \"$PSW_ARGS\"}$([ "$RR_CPU" = 0 ] || echo " --rr-cpu $RR_CPU"): $STARTED; $MACHINE; podswitch $COMMIT"
python3 "$HERE/report.py" "$RESULTS" "$TITLE" "${RUN_VARIANTS[@]}" | tee "$RUN/table.md"
[ -n "$OUT" ] && cp "$RUN/table.md" "$OUT"
exit 0
