#!/usr/bin/env bash
# Starts a small Slurm cluster for harrow's Slurm backend on one machine: a munged of its own (its
# own key and socket in DIR/munge), slurmctld in one network namespace and a slurmd in each of the
# others, nodes n1, n2, ... in the order given, one CPU each, all in one default partition.
# Writes DIR/slurm.conf (export SLURM_CONF=DIR/slurm.conf for salloc/srun) and prints the
# daemons' pids, one a line, once every slurmd has started. Needs root, slurm-wlm and munge.
#
#   tests/cluster/start_slurm.sh DIR CONTROLLER_NETNS=ADDRESS NODE_NETNS=ADDRESS [...]
set -euo pipefail
dir=$1
controller=$2
shift 2
for daemon in slurmctld slurmd munged; do
  [ -x "/usr/sbin/$daemon" ] || { echo "start_slurm.sh: needs /usr/sbin/$daemon" >&2; exit 77; }
done
mkdir -p "$dir/munge" "$dir/state"
chmod 700 "$dir/munge"
head -c 64 /dev/urandom > "$dir/munge/key"
chmod 400 "$dir/munge/key"
source "$(dirname "$0")/started.sh"
# munged's last line once its socket accepts.
started "work threads" "$dir/munged.log" /usr/sbin/munged -F --force \
  --socket="$dir/munge/socket" --key-file="$dir/munge/key" --pid-file="$dir/munge/pid" \
  --seed-file="$dir/munge/seed" --log-file=/dev/null
printf 'CgroupPlugin=cgroup/v1\nCgroupMountpoint=/sys/fs/cgroup\n' > "$dir/cgroup.conf"
nodes=
names=
i=1
for spec in "$@"; do
  nodes+="NodeName=n$i NodeAddr=${spec#*=} CPUs=1 State=UNKNOWN"$'\n'
  names+="${names:+,}n$i"
  mkdir -p "$dir/spool-n$i"
  i=$((i + 1))
done
cat > "$dir/slurm.conf" <<EOF
ClusterName=harrow
SlurmctldHost=$(hostname)(${controller#*=})
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool-%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd-%n.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/linear
ReturnToService=2
MpiDefault=none
${nodes}PartitionName=harrow Nodes=$names Default=YES MaxTime=INFINITE State=UP
EOF
ip netns exec "${controller%%=*}" /usr/sbin/slurmctld -D -i -f "$dir/slurm.conf" \
  > "$dir/slurmctld.log" 2>&1 < /dev/null &
echo $!
i=1
for spec in "$@"; do
  started "slurmd started on" "$dir/slurmd-n$i.log" \
    ip netns exec "${spec%%=*}" /usr/sbin/slurmd -D -N "n$i" -f "$dir/slurm.conf"
  i=$((i + 1))
done
