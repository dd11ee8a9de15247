#!/usr/bin/env bash
# Runs every test of podswitch: unit tests, packet-format differential tests, and the
# integration tests that build real pods as network namespaces (root required). Benchmarks are
# compiled and run once each in test mode.
#
# Root: not root, it runs itself again with sudo; with no sudo either, it runs as it is and
# the tests that need root skip, each saying why, with a summary at the end.
# Skips: PODSWITCH_REQUIRE_ALL=1 makes every skip a failure. It is set here when running as
# root or when CI=true (`.ci/run`), where nothing may skip; set PODSWITCH_REQUIRE_ALL=0 to
# allow skips anyway. Every skip is also appended to PODSWITCH_SKIP_LOG, summarised below.
set -euo pipefail
. "$(dirname "$0")/become-root.sh"
root=1
become_root "$0" "$@" || root=0
cd "$(dirname "$0")/.."
if [ "$root" -eq 1 ]; then
    ./scripts/install-deps.sh
    ./scripts/install-containerd.sh
else
    echo "test.sh: not root and no sudo: the tests that need root will skip (fail, with CI=true)" >&2
fi
if [ -z "${PODSWITCH_REQUIRE_ALL+x}" ] && { [ "$root" -eq 1 ] || [ "${CI:-}" = true ]; }; then
    export PODSWITCH_REQUIRE_ALL=1
fi
PODSWITCH_SKIP_LOG=$(mktemp "${TMPDIR:-/tmp}/podswitch-skips.XXXXXX")
export PODSWITCH_SKIP_LOG
trap 'rm -f "$PODSWITCH_SKIP_LOG"' EXIT
# --no-fail-fast: a failing test binary does not hide the failures (or skips) of the others.
status=0
cargo test --workspace --all-targets --no-fail-fast || status=$?
skipped=$(wc -l <"$PODSWITCH_SKIP_LOG")
if [ "$skipped" -gt 0 ]; then
    echo
    echo "$skipped tests skipped (PODSWITCH_REQUIRE_ALL=1 makes a skip a failure):"
    sed 's/^/  /' "$PODSWITCH_SKIP_LOG"
fi
exit "$status"
