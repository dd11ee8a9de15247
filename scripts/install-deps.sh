#!/usr/bin/env bash
# Installs the system packages podswitch's demo and tests use, only those missing.
# iproute2: namespaces and links for the test harness and demo; iputils-ping: ping;
# socat: the demo's TCP transfer. Needs root (it is run by demo.sh and test.sh).
set -euo pipefail
need=()
for pkg in iproute2 iputils-ping socat; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
