#!/usr/bin/env bash
# The long version of tests/integration/soak.rs, run by hand: mixed runs
# side by side on a loaded machine (two CPU hogs) for MINUTES (default 20),
# in a private cache. It fails unless every run after the first round
# restored every kernel, and the store ends with exactly one saved VM per
# kernel.
#
#   tests/soak.sh [MINUTES [KERNELS]]   (KERNELS: a --kernels selection,
#                                        default every amd64 kernel)
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-20}
kernels=${2:-all}
cargo build --release -p kmatrix
kmatrix=$PWD/target/release/kmatrix
shared=$("$kmatrix" kernels cache-dir)
"$kmatrix" kernels fetch --arch amd64 --kernels "$kernels" >/dev/null
work=$(mktemp -d "$shared/tmp/soak-XXXXXX")
hogs=()
cleanup() {
    for pid in "${hogs[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
# The kernels come from the shared cache (hard links); saved VMs start
# from nothing.
mkdir -p "$work/cache"
cp -al "$shared/kernels" "$work/cache/"
export KMATRIX_CACHE_DIR=$work/cache
for _ in 1 2; do (while :; do :; done) & hogs+=($!); done

end=$((SECONDS + minutes * 60))
round=0
while [ $SECONDS -lt $end ]; do
    round=$((round + 1))
    # A loaded machine boots slowly: the deadlines are raised.
    slow=(--boot-timeout 300 --run-timeout 600)
    "$kmatrix" test "${slow[@]}" --arch amd64 --kernels "$kernels" --suite tests/example/kmatrix-suite.toml \
        --json "$work/suite-$round.json" >"$work/suite-$round.log" 2>&1 &
    a=$!
    "$kmatrix" exec "${slow[@]}" --arch amd64 --kernels "$kernels" --no-share --json "$work/exec-$round.json" \
        -- /bin/true >"$work/exec-$round.log" 2>&1 &
    b=$!
    "$kmatrix" test "${slow[@]}" --kernels 6.1,7.3 tests/bpf/xdp_pass.bpf.c \
        --json "$work/one-$round.json" >"$work/one-$round.log" 2>&1 &
    c=$!
    for run in "$a:suite" "$b:exec" "$c:one"; do
        wait "${run%%:*}" || { echo "round $round: the ${run#*:} run failed:"; tail -n 30 "$work/${run#*:}-$round.log"; exit 1; }
    done
    if [ $round -gt 1 ]; then
        cold=$(cat "$work"/*-"$round".json | grep '"type":"kernel-booted"' | grep -vc '"restored":true' || true)
        [ "$cold" -eq 0 ] || { echo "round $round: $cold kernels booted cold"; exit 1; }
    fi
    echo "round $round: done ($((SECONDS / 60)) min)"
done
# One saved VM per kernel: as many as kernels booted in a round, no
# release twice.
booted=$(cat "$work"/*-1.json | grep '"type":"kernel-booted"' | grep -o '"kernel":"[^"]*"' | sort -u | wc -l)
releases=$(find "$work/cache/snapshots" -name meta.json -exec grep -ho '"kernel_release": *"[^"]*"' {} + | sort)
saved=$(echo "$releases" | grep -c . || true)
twice=$(echo "$releases" | uniq -d)
echo "$round rounds in $minutes min; $booted kernels; saved VMs: $saved"
[ -z "$twice" ] || { echo "saved twice: $twice"; exit 1; }
[ "$saved" -eq "$booted" ] || { echo "expected $booted saved VMs"; exit 1; }
"$kmatrix" kernels list | tail -n 3
