#!/usr/bin/env bash
# Installs the system packages podswitch's demo and tests use, only those missing.
# iproute2: namespaces and links for the test harness and demo; iputils-ping: ping;
# socat: the demo's TCP transfer. Needs root (it is run by demo.sh and test.sh).
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "install-deps.sh: run it as root" >&2; exit 1; }
need=()
for pkg in iproute2 iputils-ping socat; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    # -qq and noninteractive: no progress or prompts. apt's chatter on stderr (debconf's
    # "delaying package configuration" without apt-utils) reads as a problem to a newcomer, so
    # it goes to a log that is shown only when apt fails.
    log=$(mktemp /tmp/podswitch-apt.XXXXXX)
    if ! { DEBIAN_FRONTEND=noninteractive apt-get -qq update &&
        DEBIAN_FRONTEND=noninteractive apt-get -qq install -y --no-install-recommends "${need[@]}"; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "install-deps.sh: apt-get failed installing ${need[*]} (its output is above)" >&2
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
fi
