#!/bin/bash
# Runs the nursery example and checks that every event it demonstrates happened.
set -u
binary="$1"
raw="$("$binary" 2>&1)"
status=$?
echo "$raw"
output="$(tr -s ' ' <<<"$raw")"  # squeeze the padding after task names
[[ $status -eq 0 ]] || { echo "FAIL: example exited with $status"; exit 1; }

expect() {
  grep -qF -- "$1" <<<"$output" || { echo "FAIL: missing line: $1"; exit 1; }
}
expect_not() {
  if grep -qF -- "$1" <<<"$output"; then echo "FAIL: unexpected line: $1"; exit 1; fi
}

# (a) concurrent workers all finish before the nursery closes
expect "[fast] step 3/3"
expect "[medium] step 2/2"
expect "[slow] done"
closed_line=$(grep -nF "nursery closed" <<<"$output" | cut -d: -f1)
slow_line=$(grep -nF "[slow] done" <<<"$output" | cut -d: -f1)
(( slow_line < closed_line )) || { echo "FAIL: nursery closed before its tasks"; exit 1; }
# (b) started handshake
expect "[server] listening on port 8080"
expect "[main] server is up on port 8080"
expect "[server] stopped listening"
# (c) deadline
expect "[download] started"
expect "[main] deadline passed: download abandoned"
expect_not "[download] finished"
# (d) failure cancels siblings, which clean up before the error reaches main
expect "[flaky] failing: disk on fire"
for who in alice bob; do
  expect "[$who] cancelled; cleaning up"
  expect "[$who] cleanup finished"
done
expect "[main] nursery raised:"
expect "disk on fire"
# (e) blocking work off the loop, cancelled work waited for, a thread calling into the loop
expect ", on a pool thread"
expect "[main] resumed on the loop's thread"
expect "[main] deadline passed; its thread had stopped before the scope ended"
expect "[thread] asked the loop: 2 tasks were cancelled so far"
expect "[main] everything behaved as expected"
echo PASS
