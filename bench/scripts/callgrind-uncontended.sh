#!/usr/bin/env bash
# Instructions per uncontended acquire+release cycle, from callgrind:
# runs the `uncontended` binary with N and 2N cycles and divides the
# difference of the instruction totals by N (the set-up cancels out).
#
#   bench/scripts/callgrind-uncontended.sh [BIN] [KIND...]
#
# BIN defaults to $CARGO_TARGET_DIR/release/uncontended (build it with
# CARGO_PROFILE_RELEASE_DEBUG=2 cargo build --release -p quickslot-bench
# --bin uncontended); KIND is quickslot, floor or deadpool (default: all
# three). N is $N or 100000. The callgrind files stay in $OUT_DIR (default
# a temporary directory) for callgrind_annotate.
set -euo pipefail
bin=${1:-${CARGO_TARGET_DIR:-target}/release/uncontended}
shift || true
kinds=("$@")
[ ${#kinds[@]} -gt 0 ] || kinds=(floor quickslot deadpool)
n=${N:-100000}
out=${OUT_DIR:-$(mktemp -d)}
mkdir -p "$out"
total() {
    # The "summary:" (or "totals:") line of a callgrind output file: Ir.
    awk '/^(summary|totals):/ { print $2; exit }' "$1"
}
for kind in "${kinds[@]}"; do
    for m in 1 2; do
        valgrind --tool=callgrind --callgrind-out-file="$out/$kind.$m.out" \
            "$bin" "$kind" $((n * m)) >/dev/null 2>"$out/$kind.$m.log"
    done
    a=$(total "$out/$kind.1.out")
    b=$(total "$out/$kind.2.out")
    awk -v k="$kind" -v a="$a" -v b="$b" -v n="$n" \
        'BEGIN { printf "%-10s %8.1f instructions/cycle  (%d at N=%d, %d at 2N)\n", k, (b - a) / n, a, n, b }'
done
echo "callgrind files: $out" >&2
