#!/usr/bin/env bash
# Follows docs/TUTORIAL.md to the letter: extracts every file it shows (the fenced block after a
# `<!-- file: NAME -->` line), builds it with CMake against the harrow installed in PREFIX, and
# runs it the three ways the tutorial does, checking what it prints and that no process is left.
#   docs/tutorial_test.sh PREFIX
set -euo pipefail
prefix="$1"
here="$(cd "$(dirname "$0")" && pwd)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

awk -v dir="$work" '
  /^<!-- file: .* -->$/ { name = $3; next }
  name != "" && /^```/ { if (inside) { inside = 0; name = "" } else { inside = 1 } ; next }
  inside { print > (dir "/" name) }
' "$here/TUTORIAL.md"
for f in greeter.capnp main.c++ CMakeLists.txt; do
  [ -s "$work/$f" ] || { echo "tutorial: $f was not extracted"; exit 1; }
done

cmake -S "$work" -B "$work/build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/build" -j2 >/dev/null
bin="$work/build/greeter"

fail() { echo "tutorial: $*"; exit 1; }
leftovers() {
  # Any process still running the tutorial's binary is a leftover of the tree.
  if pgrep -f "^$bin" >/dev/null; then pgrep -af "^$bin"; fail "processes left: $1"; fi
}

out=$("$bin" --harrow-registry=none 2>&1) || fail "the plain run failed: $out"
grep -q "^alice says: hello, tutorial, from process [0-9]*$" <<<"$out" || fail "no greeting: $out"
grep -q "^bob: 0 left$" <<<"$out" || fail "no countdown: $out"
grep -q "^all actors have exited$" <<<"$out" || fail "no teardown: $out"
leftovers "plain run"

set +e
out=$("$bin" fail --harrow-registry=none 2>&1); status=$?
set -e
[ $status -eq 1 ] || fail "'fail' exited $status, not 1: $out"
grep -q "harrow.RemoteActorError" <<<"$out" || fail "no RemoteActorError: $out"
grep -q "from actor 'alice'" <<<"$out" || fail "the error does not name alice: $out"
grep -q "the greeter refuses" <<<"$out" || fail "the error lost its message: $out"
leftovers "fail"

fifo="$work/out"; mkfifo "$fifo"
"$bin" wait --harrow-registry=none >"$fifo" 2>&1 &
pid=$!
exec 3<"$fifo"
while IFS= read -r -t 30 line <&3; do
  [ "$line" = "waiting; press Ctrl-C" ] && break
done
[ "${line:-}" = "waiting; press Ctrl-C" ] || fail "'wait' never got to waiting"
kill -INT "$pid"
set +e
wait "$pid"; status=$?
set -e
exec 3<&-
[ $status -eq 130 ] || fail "Ctrl-C: exit status $status, not 130"
leftovers "Ctrl-C"
echo "tutorial: followed to the letter, all three runs as described"
