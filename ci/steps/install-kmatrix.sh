#!/usr/bin/env bash
# Puts the kmatrix binary in place: the one the build job uploaded, already
# downloaded into KMATRIX_CI_BIN_DIR (artifacts lose the executable bit),
# or, with KMATRIX_CI_BINARY_URL, one downloaded from there (a release's
# asset), checked against KMATRIX_CI_BINARY_SHA256 when given. Prints the
# directory, for the PATH.
set -euo pipefail
dir=${KMATRIX_CI_BIN_DIR:?KMATRIX_CI_BIN_DIR: the directory of the kmatrix binary}
bin=$dir/kmatrix
if [ -n "${KMATRIX_CI_BINARY_URL:-}" ]; then
    mkdir -p "$dir"
    curl --fail --silent --show-error --location --retry 3 --output "$bin" "$KMATRIX_CI_BINARY_URL"
    if [ -n "${KMATRIX_CI_BINARY_SHA256:-}" ]; then
        echo "$KMATRIX_CI_BINARY_SHA256  $bin" | sha256sum --check --quiet
    fi
elif [ ! -f "$bin" ]; then
    echo "kmatrix-ci: no kmatrix binary at $bin: download the build job's artifact there, or give a binary URL" >&2
    exit 2
fi
chmod +x "$bin"
"$bin" --version >&2
echo "$dir"
