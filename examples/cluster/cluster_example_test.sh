#!/usr/bin/env bash
# Runs examples/cluster/run.sh as a user would and checks that each worker ran on its own host
# (namespace), answered, and ended normally on its node. Skips (passes, saying so) without root.
#   cluster_example_test.sh RUN_SH PROGRAM HARROW_NODE [node|ssh|slurm]
set -uo pipefail
backend=${4:-node}
output=$("$1" "$2" "$3" "$backend" 2>&1)
status=$?
if [[ $status == 77 ]]; then echo "SKIPPED: $output"; exit 0; fi
echo "$output"
[[ $status == 0 ]] || { echo "FAIL: run.sh exited with $status"; exit 1; }
root_ns=$(grep -o '^root on .*net:\[[0-9]*\]' <<<"$output" | grep -o 'net:\[[0-9]*\]')
for node in b c; do
  line=$(grep -E "^worker on (node|host) '$node'" <<<"$output") ||
    { echo "FAIL: no worker on $node"; exit 1; }
  grep -q "sum of squares below 10: 285" <<<"$line" || { echo "FAIL: $line"; exit 1; }
  ns=$(grep -o 'net:\[[0-9]*\]' <<<"$line")
  [[ -n $ns && $ns != "$root_ns" ]] ||
    { echo "FAIL: worker-$node ran in the root's namespace"; exit 1; }
  [[ $backend != node ]] && continue  # no node to report; run.sh's exit status covers the end
  grep -q "harrow-node: worker-$node ended: exited with status 0" <<<"$output" ||
    { echo "FAIL: node $node did not report worker-$node's normal end"; exit 1; }
done
echo PASS
