#!/usr/bin/env bash
# Stops daemons that are not this shell's children (start_slurm.sh and start_sshd.sh start them
# in their own shells, so `wait` cannot wait for them): SIGTERM to each, then waits until each has
# exited, so that whatever it writes on the way out (slurmctld saves its state) is written before
# the caller removes the directories. 20 s is a failure guard: a daemon still there gets SIGKILL.
#
#   tests/cluster/stop_daemons.sh PID...
for pid in "$@"; do kill "$pid" 2>/dev/null || true; done
for pid in "$@"; do
  if ! timeout 20 tail --pid="$pid" -f /dev/null; then
    echo "stop_daemons.sh: $pid outlived SIGTERM by 20 s; SIGKILL" >&2
    kill -9 "$pid" 2>/dev/null || true
    timeout 5 tail --pid="$pid" -f /dev/null || true
  fi
done
