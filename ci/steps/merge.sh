#!/usr/bin/env bash
# The merge job: `kmatrix report merge` over every shard's JSON file under
# KMATRIX_CI_SHARDS_DIR (each artifact in a directory of its own), with
# JUnit to KMATRIX_CI_JUNIT, the Markdown summary to KMATRIX_CI_SUMMARY
# (default: appended to $GITHUB_STEP_SUMMARY when set) and the HTML page
# to KMATRIX_CI_HTML, each when given. Exits with kmatrix's status: 1 if a
# test failed, 2 if a shard's file is missing or cut short.
set -euo pipefail
dir=${KMATRIX_CI_SHARDS_DIR:?KMATRIX_CI_SHARDS_DIR: where the shards results were downloaded}
files=()
while IFS= read -r -d '' file; do
    files+=("$file")
done < <(find "$dir" -name '*.json' -type f -print0 2>/dev/null | sort -z)
if [ ${#files[@]} -eq 0 ]; then
    echo "kmatrix-ci: no shard results (*.json) under $dir: did the shard jobs run and upload them?" >&2
    exit 2
fi
args=(report merge)
[ -z "${KMATRIX_CI_JUNIT:-}" ] || args+=(--junit "$KMATRIX_CI_JUNIT")
[ -z "${KMATRIX_CI_SUMMARY:-}" ] || args+=(--summary "$KMATRIX_CI_SUMMARY")
[ -z "${KMATRIX_CI_HTML:-}" ] || args+=(--html "$KMATRIX_CI_HTML")
exec kmatrix "${args[@]}" "${files[@]}"
