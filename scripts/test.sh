#!/usr/bin/env bash
# Runs every test of podswitch: unit tests, packet-format differential tests, and the
# integration tests that build real pods as network namespaces (root required; they skip
# loudly without it). Benchmarks are compiled and run once each in test mode.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -eq 0 ]; then
    ./scripts/install-deps.sh
    ./scripts/install-containerd.sh
else
    echo "warning: not root: integration tests will be skipped" >&2
fi
cargo test --workspace --all-targets
