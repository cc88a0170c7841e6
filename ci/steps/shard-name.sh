#!/usr/bin/env bash
# Checks KMATRIX_CI_SHARD (K/N, as `kmatrix matrix` names shards) and
# prints `name=kmatrix-shard-K-of-N`, the name of its results' artifact.
set -euo pipefail
shard=${KMATRIX_CI_SHARD:-}
if ! [[ "$shard" =~ ^([1-9][0-9]*)/([1-9][0-9]*)$ ]]; then
    echo "kmatrix-ci: shard '$shard' is not K/N: give a shard of \`kmatrix matrix\` (its \"shard\" field, e.g. 1/3)" >&2
    exit 2
fi
echo "name=kmatrix-shard-${BASH_REMATCH[1]}-of-${BASH_REMATCH[2]}"
