#!/usr/bin/env bash
# Runs the counter example as a user would and checks what it prints, its exit status, and that
# it leaves no process behind.
set -euo pipefail
binary="$1"
# Never the user's default registry (unix:<runtime dir>/registry.sock): copies of this test running side
# by side would meet in it. (.bazelrc sets this for every test; this keeps it so when run by hand.)
export HARROW_REGISTRY="${HARROW_REGISTRY:-none}"
out=$("$binary" 2>&1) || { echo "example failed:"; echo "$out"; exit 1; }
echo "$out"
for expected in "add(5) -> total 5" "tick 2" "session started at 5" "sent +4, total now 14" \
                "session returned total 14" "nursery closed: counter-1 cancelled and reaped"; do
  grep -qF -- "$expected" <<<"$out" || { echo "missing: $expected"; exit 1; }
done
child_pid=$(grep -oE '^\[counter ([0-9]+)\]' <<<"$out" | head -1 | grep -oE '[0-9]+')
if [ -n "$child_pid" ] && kill -0 "$child_pid" 2>/dev/null; then
  echo "child $child_pid is still alive"; exit 1
fi
echo "1 passed, 0 failed"
