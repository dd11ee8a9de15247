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
    # -qq and noninteractive: apt's progress and prompts stay out of logs; errors still show.
    DEBIAN_FRONTEND=noninteractive apt-get -qq update
    DEBIAN_FRONTEND=noninteractive apt-get -qq install -y --no-install-recommends "${need[@]}" >/dev/null
fi
