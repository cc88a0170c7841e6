#!/usr/bin/env bash
# One shard job: `kmatrix test` on shard KMATRIX_CI_SHARD (K/N) of
# KMATRIX_CI_KERNELS (default all) and KMATRIX_CI_ARCH, with the suite
# KMATRIX_CI_SUITE and loader KMATRIX_CI_LOADER when given, and the words
# of KMATRIX_CI_ARGS; every event to KMATRIX_CI_JSON (the merge job's
# input), JUnit to KMATRIX_CI_JUNIT when given. With KMATRIX_CI_JOBS (the
# number of shard jobs), a shard count that differs from it is an error
# before anything boots. Exits with kmatrix's status.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/shard-name.sh" >/dev/null
shard=$KMATRIX_CI_SHARD
if [ -n "${KMATRIX_CI_JOBS:-}" ] && [ "${shard#*/}" != "$KMATRIX_CI_JOBS" ]; then
    echo "kmatrix-ci: shard $shard is one of ${shard#*/}, but there are $KMATRIX_CI_JOBS shard jobs: list the shards \`kmatrix matrix --shards $KMATRIX_CI_JOBS\` prints" >&2
    exit 2
fi
json=${KMATRIX_CI_JSON:?KMATRIX_CI_JSON: where the shard writes its results}
mkdir -p "$(dirname "$json")"
[ -z "${KMATRIX_CI_JUNIT:-}" ] || mkdir -p "$(dirname "$KMATRIX_CI_JUNIT")"
args=(test --kernels "${KMATRIX_CI_KERNELS:-all}" --shard "$shard" --json "$json")
[ -z "${KMATRIX_CI_ARCH:-}" ] || args+=(--arch "$KMATRIX_CI_ARCH")
[ -z "${KMATRIX_CI_SUITE:-}" ] || args+=(--suite "$KMATRIX_CI_SUITE")
[ -z "${KMATRIX_CI_LOADER:-}" ] || args+=(--loader "$KMATRIX_CI_LOADER")
[ -z "${KMATRIX_CI_JUNIT:-}" ] || args+=(--junit "$KMATRIX_CI_JUNIT")
# shellcheck disable=SC2206 # further arguments, split on blanks
args+=(${KMATRIX_CI_ARGS:-})
echo "kmatrix ${args[*]}" >&2
exec kmatrix "${args[@]}"
