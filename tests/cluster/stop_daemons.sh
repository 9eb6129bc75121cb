#!/usr/bin/env bash
# Stops daemons that are not this shell's children (start_slurm.sh and start_sshd.sh start them
# in their own shells, so `wait` cannot wait for them), last-started first, each gone before the
# next is asked: a slurmd or slurmctld shutting down still needs the munged started before it,
# and whatever one writes on the way out (slurmctld saves its state) is written before the caller
# removes the directories. 20 s per daemon is a failure guard: one still there gets SIGKILL.
#
#   tests/cluster/stop_daemons.sh PID...   (in the order they were started)
for ((i = $#; i >= 1; i--)); do
  pid=${!i}
  kill "$pid" 2>/dev/null || continue
  if ! timeout 20 tail --pid="$pid" -f /dev/null; then
    echo "stop_daemons.sh: $pid outlived SIGTERM by 20 s; SIGKILL" >&2
    kill -9 "$pid" 2>/dev/null || true
    timeout 5 tail --pid="$pid" -f /dev/null || true
  fi
done
