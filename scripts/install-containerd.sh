#!/usr/bin/env bash
# Installs what the real-container-runtime test (podswitch-tests' `containerd` module) needs,
# only the packages that are missing. Root. Idempotent.
#
#   containerd                   1.6.x: the runtime, driven through its CRI API (kubelet's path)
#   runc                         the OCI runtime containerd uses (crun fails on this kernel)
#   containernetworking-plugins  /usr/lib/cni: loopback (always called by the CRI plugin),
#                                bridge and host-local (the reference network of the smoke test)
#   busybox-static               the pause image is built from it locally: no image registry
#   iptables                     a dependency of containernetworking-plugins (bridge/portmap)
#   iproute2, iputils-ping, util-linux: ip, ping, nsenter/mount/umount used by the tests
#
# Nothing is started here: the tests run their own containerd with a private config, root,
# state and socket (tests/src/containerd.rs). On a machine with systemd the package starts
# its own containerd.service with the default config; the tests neither use nor touch it.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "install-containerd.sh: run it as root" >&2; exit 1; }
need=()
for pkg in containerd runc containernetworking-plugins busybox-static iptables iproute2 \
    iputils-ping util-linux; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    # -qq and noninteractive: no progress or prompts. apt's chatter on stderr (debconf's
    # "delaying package configuration" without apt-utils) reads as a problem to a newcomer, so
    # it goes to a log that is shown only when apt fails (as in install-deps.sh).
    log=$(mktemp /tmp/podswitch-apt.XXXXXX)
    if ! { DEBIAN_FRONTEND=noninteractive apt-get -qq update &&
        DEBIAN_FRONTEND=noninteractive apt-get -qq install -y --no-install-recommends "${need[@]}"; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "install-containerd.sh: apt-get failed installing ${need[*]} (its output is above)" >&2
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
fi
for f in /usr/bin/containerd /usr/bin/ctr /usr/sbin/runc /usr/lib/cni/loopback \
    /usr/lib/cni/bridge /usr/lib/cni/host-local /bin/busybox; do
    [ -x "$f" ] || { echo "install-containerd.sh: $f missing after install" >&2; exit 1; }
done
