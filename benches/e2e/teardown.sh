# Sourced by race.sh and kubeproxy.sh: stopping what a run started.

# Stops processes: TERM, then KILL whatever has not gone within 2.5 s.
kill_pids() {
    local p
    for p in "$@"; do kill "$p" 2>/dev/null || true; done
    for p in "$@"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
        kill -9 "$p" 2>/dev/null || true
    done
}

# Deletes every network namespace named PREFIX-*, killing whatever still runs in it (a server or
# client left by a failed step).
delete_namespaces() {
    local prefix=$1 ns p
    for ns in $(ip netns list | awk -v p="$prefix-" 'index($1, p) == 1 {print $1}'); do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
}
