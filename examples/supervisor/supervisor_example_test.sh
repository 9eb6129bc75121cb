#!/usr/bin/env bash
# Runs the supervisor example as a user would: every job is done despite the crashes, each crash
# is reported as a restart with the next generation, and no process is left behind. Then once
# with --intensity=1, which must fail with harrow.RestartIntensity.
set -euo pipefail
binary="$1"
# Never the machine-wide default registry (see examples/counter's test).
export HARROW_REGISTRY="${HARROW_REGISTRY:-none}"
out=$("$binary" --jobs=10 2>&1) || { echo "example failed:"; echo "$out"; exit 1; }
echo "$out"
# 10 jobs on instances that crash at their third call: crashes at jobs 3, 5, 7, 9.
for expected in "job 1: 1^2 = 1" \
                "job 3 failed: harrow.ActorRestarted: actor 'worker' restarted (generation 2)" \
                "exited with status 42" "retrying job 3 on the new instance" "job 3: 3^2 = 9" \
                "restarted (generation 5)" "job 10: 10^2 = 100" "done: 10 jobs, 4 restarts" \
                "supervisor closed: the worker cancelled and reaped"; do
  grep -qF -- "$expected" <<<"$out" || { echo "missing: $expected"; exit 1; }
done
for pid in $(grep -oE '\(worker pid [0-9]+' <<<"$out" | grep -oE '[0-9]+' | sort -u); do
  if kill -0 "$pid" 2>/dev/null; then echo "worker $pid is still alive"; exit 1; fi
done

if out=$("$binary" --jobs=10 --intensity=1 2>&1); then
  echo "with --intensity=1 the example should have failed:"; echo "$out"; exit 1
fi
echo "$out"
grep -qF "harrow.RestartIntensity: actor 'worker' (generation 2" <<<"$out" \
  || { echo "missing: the RestartIntensity error"; exit 1; }
echo "2 passed, 0 failed"
