#!/usr/bin/env bash
# Records a `kmatrix shell` session for README.md's "Debugging a failing
# kernel" section: boots KERNEL (default 6.1) in a tmux window, types the
# commands below, and writes the screen between the README's
# shell-transcript markers. It boots a VM: run it by hand, with kmatrix
# built (KMATRIX, default target/debug/kmatrix).
#   tests/shell-transcript.sh [KERNEL]
set -euo pipefail
cd "$(dirname "$0")/.."
kernel=${1:-6.1}
kmatrix=${KMATRIX:-target/debug/kmatrix}
session=kmatrix-transcript-$$
block=$(mktemp)
trap 'tmux kill-session -t "$session" 2>/dev/null || true; rm -f "$block"' EXIT

tmux new-session -d -s "$session" -x 100 -y 50 \
    "'$kmatrix' shell --kernel '$kernel' --no-share; sleep 60"
screen() { tmux capture-pane -p -J -t "$session"; }
# Waits for $1 on the screen, at most $2 seconds.
wait_for() {
    for _ in $(seq $(($2 * 4))); do
        screen | grep -qF -- "$1" && return 0
        sleep 0.25
    done
    echo "shell-transcript.sh: no '$1' within $2 s:" >&2
    screen >&2
    exit 1
}

wait_for '# ' 180
for command in 'uname -r' 'ls /sys/fs/bpf' 'bpftool prog show | head -5' 'dmesg | tail -3'; do
    tmux send-keys -t "$session" "$command" Enter
done
# The end of the commands' output: a line the transcript leaves out.
tmux send-keys -t "$session" 'echo transcript-$((6*7))' Enter
wait_for transcript-42 60
{
    echo '```'
    echo "\$ kmatrix shell --kernel $kernel --no-share"
    # Without the end marker, the prompt after it, and blank lines at the end.
    screen | sed '/transcript-/,$d' | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}'
    echo '```'
} >"$block"
tmux send-keys -t "$session" C-]

awk -v block="$block" '
    /<!-- shell-transcript:end -->/ { while ((getline line < block) > 0) print line; skip = 0 }
    !skip { print }
    /<!-- shell-transcript:start -->/ { skip = 1 }
' README.md >README.md.new
mv README.md.new README.md
echo "shell-transcript.sh: README.md's session is now from $kernel:"
cat "$block"
