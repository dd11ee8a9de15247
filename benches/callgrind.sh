#!/usr/bin/env bash
# Instructions per packet of the hot paths, counted by callgrind (repeatable where wall-clock
# time is not: STYLE.md §16).
#
# Builds the driver in release (the workspace release profile keeps line tables), runs each mode
# with N and 2N packets and reports (I(2N) - I(N)) / N, which cancels start-up (pool and table
# construction, ring set-up). Modes: worker (Worker::poll_once on memory ports), pipeline
# (batch refill + pipeline::run), refill (refill alone; pipeline - refill = the stages).
#
# Usage: benches/callgrind.sh [N] [BURST]      (defaults 1000000 and 32)
# Env:   MODES (default "worker pipeline refill"; the policy modes of issue 15, e.g.
#        MODES="policy-syn:none policy-syn:10000 policy-est:none policy-est:10000", burst 64
#        whatever BURST says; run them with N = 100000, the new-connection conntrack's size;
#        the Service modes of issue 14, MODES="vip-syn:1 vip-syn:10000 vip-est:1 vip-est:10000",
#        burst 64 too: new connections and established flows through a VIP at P Service ports),
#        CARGO_TARGET_DIR (default: the workspace target/), OUT (default $CARGO_TARGET_DIR/callgrind),
#        REUSE=1 to report from the profiles already in $OUT instead of running valgrind again.
set -euo pipefail

N=${1:-1000000}
BURST=${2:-32}
ROOT_GUESS=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT_GUESS/target}
OUT=${OUT:-$CARGO_TARGET_DIR/callgrind}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind not found (apt-get install valgrind)" >&2; exit 1; }
(cd "$ROOT" && cargo build --release -q -p podswitch-benches --bin callgrind_pipeline)
BIN=$CARGO_TARGET_DIR/release/callgrind_pipeline
mkdir -p "$OUT"

# Total instructions (Ir) of one run.
instructions() {
    local mode=$1 packets=$2 file="$OUT/callgrind.$1.$2.out"
    valgrind --tool=callgrind --callgrind-out-file="$file" "$BIN" "$mode" "$packets" "$BURST" \
        >/dev/null 2>"$OUT/valgrind.$mode.$packets.log"
    sed -n 's/^summary: *//p' "$file"
}

printf '%-18s %16s %16s %14s\n' mode "I(N=$N)" "I(2N)" "instr/packet"
declare -A per_packet
MODES=${MODES:-worker pipeline refill}
for mode in $MODES; do
    if [ "${REUSE:-0}" = 1 ]; then
        i1=$(sed -n 's/^summary: *//p' "$OUT/callgrind.$mode.$N.out")
        i2=$(sed -n 's/^summary: *//p' "$OUT/callgrind.$mode.$((2 * N)).out")
    else
        i1=$(instructions "$mode" "$N")
        i2=$(instructions "$mode" $((2 * N)))
    fi
    per_packet[$mode]=$(awk -v a="$i1" -v b="$i2" -v n="$N" 'BEGIN { printf "%.1f", (b - a) / n }')
    printf '%-18s %16s %16s %14s\n' "$mode" "$i1" "$i2" "${per_packet[$mode]}"
done
if [ -n "${per_packet[pipeline]:-}" ] && [ -n "${per_packet[refill]:-}" ]; then
    awk -v p="${per_packet[pipeline]}" -v r="${per_packet[refill]}" \
        'BEGIN { printf "%-18s %16s %16s %14.1f\n", "stages", "", "(pipeline-refill)", p - r }'
fi
[ -n "${per_packet[worker]:-}" ] || exit 0

# Per-function costs of one profile, "cost<TAB>function", from callgrind_annotate's summary table,
# which has one line per (source file, function): code inlined from another file gets its own
# line. Self costs (inclusive=no) add a function's lines up; its inclusive cost is its largest
# line (the one of the whole function). Run from $OUT: callgrind_annotate shortens paths under
# the working directory, which splits one file's lines in two.
costs() {
    local file=$1 inclusive=$2
    (cd "$OUT" && callgrind_annotate --auto=no --threshold=100 --inclusive="$inclusive" "$file") |
        awk -v incl="$inclusive" '
            /file:function/ { on = 1; next }
            on && /^ *[0-9,]+ +\(/ {
                n = $1; gsub(",", "", n); n += 0
                line = $0; sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "", line)
                obj = index(line, " [/"); if (obj > 0) line = substr(line, 1, obj - 1)
                fn = substr(line, index(line, ":") + 1)
                if (incl == "no") cost[fn] += n
                else if (n > cost[fn]) cost[fn] = n
            }
            END { for (f in cost) printf "%d\t%s\n", cost[f], f }'
}

# (cost at 2N - cost at N) / N per function, largest first.
per_packet() {
    local mode=$1 inclusive=$2 a="$OUT/costs.$1.$2.N" b="$OUT/costs.$1.$2.2N"
    costs "$OUT/callgrind.$mode.$N.out" "$inclusive" | LC_ALL=C sort -t $'\t' -k2,2 >"$a"
    costs "$OUT/callgrind.$mode.$((2 * N)).out" "$inclusive" | LC_ALL=C sort -t $'\t' -k2,2 >"$b"
    LC_ALL=C join -t $'\t' -1 2 -2 2 -a 2 -e 0 -o 0,1.1,2.1 "$a" "$b" |
        awk -F '\t' -v n="$N" '{ d = ($3 - $2) / n; if (d >= 0.5) printf "%8.1f  %s\n", d, $1 }' |
        LC_ALL=C sort -rn
}

echo
echo "Worker path, instructions per packet by function, self (inlined code counted in its caller):"
per_packet worker no >"$OUT/self.txt"
head -15 "$OUT/self.txt"
echo
echo "Worker path, instructions per packet by function, inclusive:"
per_packet worker yes >"$OUT/inclusive.txt"
grep -E 'poll_once|pipeline::|rx_burst|tx_burst|verify_checksum|decrement_ttl|mac_at|memcpy' \
    "$OUT/inclusive.txt" | head -12
echo
echo "Profiles (N and 2N runs) are in $OUT; e.g. callgrind_annotate --auto=no $OUT/callgrind.worker.$((2 * N)).out"
