#!/usr/bin/env bash
# Builds every fuzz target, then runs each for N seconds (first argument, default 10), one after
# another on one core, from its corpus seeded with seeds/. Prints runs and runs/s per target;
# exits non-zero if any target crashed (the input is then in artifacts/<target>/).
#
#   fuzz/smoke.sh        # 10 s per target
#   fuzz/smoke.sh 60
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). Works on a stable toolchain: cargo-fuzz
# passes -Z flags (sanitizer, coverage), which RUSTC_BOOTSTRAP=1 lets stable rustc accept.
set -euo pipefail

secs=${1:-10}
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "smoke.sh: cargo-fuzz is not installed; run: cargo install cargo-fuzz --locked" >&2
    exit 2
fi

# Writes the bytes spelt by a .hex seed (hex digits; lines starting with # are comments).
hex_to_bin() {
    local hex
    hex=$(grep -v '^#' "$1" | tr -cd '0-9a-fA-F')
    printf '%b' "$(sed 's/../\\x&/g' <<<"$hex")" >"$2"
}

# Puts the seeds of every target into its corpus (fuzz/corpus/ is not committed).
seed_corpora() {
    mkdir -p corpus/packet_parsers corpus/pipeline corpus/proto_decode corpus/apply_ops \
        corpus/manifests corpus/cni_stdin corpus/vxlan_uplink corpus/gro
    local f name len cmd
    for f in seeds/pipeline/*.hex; do
        name=$(basename "$f" .hex)
        hex_to_bin "$f" "corpus/pipeline/seed-$name"
        # Without its two header bytes it starts with a frame: a packet_parsers seed too.
        tail -c +3 "corpus/pipeline/seed-$name" >"corpus/packet_parsers/seed-$name"
        # And, behind a flags byte, a vxlan_uplink seed: wrapped in VXLAN from node 2 (0x03),
        # and from pod A to node 2 resolved, in VXLAN (0x0d) and routed (0x0c).
        for flag in 03 0d 0c; do
            { printf '%b' "\\x$flag"; tail -c +3 "corpus/pipeline/seed-$name"; } \
                >"corpus/vxlan_uplink/seed-$flag-$name"
        done
    done
    for f in seeds/gro/*.hex; do
        hex_to_bin "$f" "corpus/gro/seed-$(basename "$f" .hex)"
    done
    for f in seeds/proto_decode/*.json; do
        name=$(basename "$f" .json)
        cp "$f" "corpus/proto_decode/seed-$name"
        # The same message as one frame on the socket: 4-byte big-endian length, then the body.
        len=$(wc -c <"$f")
        { printf '%b' "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' \
            $((len >> 24 & 255)) $((len >> 16 & 255)) $((len >> 8 & 255)) $((len & 255)))"
          cat "$f"; } >"corpus/proto_decode/seed-framed-$name"
    done
    cp seeds/apply_ops/*.json corpus/apply_ops/
    # The crate's own test manifests, then ours.
    cp ../k8s/testdata/*.yaml seeds/manifests/*.yaml corpus/manifests/
    # Each config under every CNI_COMMAND (byte 0: 0 ADD, 1 DEL, 2 CHECK, 3 VERSION, 4 GC,
    # 5 STATUS), with byte 1 = 1: containerd's CNI_ARGS, control answering success, first identity.
    for f in seeds/cni_stdin/*.json; do
        name=$(basename "$f" .json)
        for cmd in 0 1 2 3 4 5; do
            { printf '%b' "\\x0$cmd\\x01"; cat "$f"; } >"corpus/cni_stdin/seed-$cmd-$name"
        done
    done
}

dict_for() {
    case $1 in
        pipeline) echo "-dict=dict/pipeline.dict" ;;
        proto_decode | apply_ops) echo "-dict=dict/proto.dict" ;;
        manifests) echo "-dict=dict/manifests.dict" ;;
        cni_stdin) echo "-dict=dict/cni.dict" ;;
    esac
}

cargo fuzz build
seed_corpora
mkdir -p artifacts/smoke

failed=()
summary=()
for target in $(cargo fuzz list); do
    log=artifacts/smoke/$target.log
    echo "== $target: ${secs}s (log: fuzz/$log)"
    # shellcheck disable=SC2046 # dict_for prints zero or one word
    if cargo fuzz run "$target" -- -max_total_time="$secs" $(dict_for "$target") >"$log" 2>&1; then
        status=ok
    else
        status=CRASH
        failed+=("$target")
        grep -E 'panicked at|ERROR: (AddressSanitizer|libFuzzer)' -A2 "$log" | head -n 8 || true
        grep -E '^Reproduce with:' -A2 "$log" | tail -n 1 || true
    fi
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
    last_line=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    line=${done_line:-$last_line}
    runs=$(sed -E 's/^#([0-9]+).*/\1/' <<<"$line")
    rate=$(sed -nE 's/.*exec\/s: ([0-9]+).*/\1/p' <<<"$line")
    cov=$(sed -nE 's/.*cov: ([0-9]+).*/\1/p' <<<"$line")
    summary+=("$(printf '%-16s %-6s runs %-10s runs/s %-8s cov %s' \
        "$target" "$status" "${runs:-?}" "${rate:-?}" "${cov:-?}")")
done

echo
printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
    echo "crashed: ${failed[*]} (inputs in fuzz/artifacts/<target>/)" >&2
    exit 1
fi
