#!/usr/bin/env bash
# Runs the tree example as a user would — depth 3, width 2, every leaf failing — and checks that
# the root lists each of the 8 failing leaves exactly once, with its relay path, that it exits
# with status 1, and that no process of the tree is left afterwards.
set -uo pipefail
binary="$1"
# Never the user's default registry (unix:<runtime dir>/registry.sock): copies of this test running side
# by side would meet in it. (.bazelrc sets this for every test; this keeps it so when run by hand.)
export HARROW_REGISTRY="${HARROW_REGISTRY:-none}"

out=$(timeout 60 "$binary" --depth=3 --width=2 --fail=leaves 2>&1)
status=$?
echo "$out"
fail() { echo "FAIL: $*"; exit 1; }

[ "$status" -eq 1 ] || fail "exit status $status, expected 1"
grep -qF "harrow: tree.Failed: 8 node(s) failed" <<<"$out" || fail "no short error on stderr"
grep -qF "carrying 8 failure(s) in all" <<<"$out" || fail "the root does not count 8 failures"

# Each leaf n<a>.<b>.<c> is listed exactly once, relayed by its parent, then its grandparent.
for a in 0 1; do
  for b in 0 1; do
    for c in 0 1; do
      leaf="n$a.$b.$c"
      n=$(grep -cF "tree.NodeFailed from actor '$leaf': node $leaf (pid " <<<"$out")
      [ "$n" -eq 1 ] || fail "leaf $leaf is listed $n times, expected once"
      grep -A2 -F "from actor '$leaf'" <<<"$out" | grep -qxF "       relayed by n$a.$b -> n$a" \
        || fail "leaf $leaf: relay path is not n$a.$b -> n$a"
    done
  done
done
n=$(grep -cF "tree.NodeFailed from actor" <<<"$out")
[ "$n" -eq 8 ] || fail "$n failures listed, expected 8"

# Every node printed its pid: 14 of them, and none may exist any more (nor be a zombie).
pids=$(grep -oE '^\[n[0-9.]+\] pid [0-9]+' <<<"$out" | grep -oE '[0-9]+$' | sort -u)
count=$(wc -w <<<"$pids")
[ "$count" -eq 14 ] || fail "$count node pids printed, expected 14"
for pid in $pids; do
  if [ -e "/proc/$pid" ]; then
    fail "process $pid is left: $(cat /proc/$pid/stat 2>/dev/null)"
  fi
done

# A tree where nothing fails exits 0.
out=$(timeout 60 "$binary" --depth=2 --width=3 --fail=none 2>&1) || fail "a healthy tree failed: $out"
grep -qF "The tree grew 12 nodes below the root" <<<"$out" || fail "healthy tree: $out"

echo "PASS"
