#!/usr/bin/env bash
# The plan job: `kmatrix matrix` for KMATRIX_CI_KERNELS (default all),
# KMATRIX_CI_ARCH and KMATRIX_CI_SHARDS (default one per kernel), printed
# as `matrix=JSON` (a GitHub step output).
set -euo pipefail
args=(matrix --kernels "${KMATRIX_CI_KERNELS:-all}")
[ -z "${KMATRIX_CI_ARCH:-}" ] || args+=(--arch "$KMATRIX_CI_ARCH")
[ -z "${KMATRIX_CI_SHARDS:-}" ] || args+=(--shards "$KMATRIX_CI_SHARDS")
matrix=$(kmatrix "${args[@]}")
echo "matrix=$matrix"
