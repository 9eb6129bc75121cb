#!/usr/bin/env bash
# Every row of cluster_bench (needs root and iproute2; openssl for the TLS row):
#   local      a child on this host (socketpair; the baseline)
#   local+zygote  the same, forked by the zygote (HARROW_SPAWN=forkserver)
#   loopback   a child behind harrow-node on 127.0.0.1 (the relay's cost, no network)
#   veth       a child behind harrow-node in another network namespace, over a veth pair (the
#              link's frames encrypted, the default)
#   veth+insecure  the same with --harrow-insecure-links on both ends (frames tagged only)
#   veth+tls   the same over TLS
#   ssh        a child through ssh (runtime/spawn/ssh.h) to an sshd in the other namespace, beside
#              a bare `ssh HOST /bin/true` in the same run (needs sshd: openssh-server)
#
#   slurm      a child as a job step on a slurmd in the other namespace, the root under salloc,
#              beside a bare `srun /bin/true` (needs slurm-wlm and munge)
#
# Each row runs unpinned, then pinned to CPU 0 (taskset -c 0: every process of the row on one CPU).
#   bazel build -c opt //bench:cluster_bench //programs/harrow-node
#   sudo bench/cluster_bench.sh [bazel-bin/bench/cluster_bench] [bazel-bin/programs/harrow-node/harrow-node]
set -euo pipefail
bench=$(readlink -f "${1:-bazel-bin/bench/cluster_bench}")
node=$(readlink -f "${2:-bazel-bin/programs/harrow-node/harrow-node}")
here=$(cd "$(dirname "$0")" && pwd)
tag=hwb$$
work=$(mktemp -d)
pids=()     # this shell's own children
daemons=()  # what start_sshd.sh / start_slurm.sh started (not our children), in start order
cleanup() {
  bash "$here/../tests/cluster/stop_daemons.sh" "${daemons[@]}"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in a b hub; do ip netns del "$tag-$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$tag-hub"
ip -n "$tag-hub" link add br0 type bridge
ip -n "$tag-hub" link set br0 up
i=1
for host in a b; do
  ip netns add "$tag-$host"
  ip -n "$tag-$host" link add eth0 type veth peer name "v$tag$host" netns "$tag-hub"
  ip -n "$tag-$host" addr add "10.77.0.$i/24" dev eth0
  ip -n "$tag-$host" link set eth0 up
  ip -n "$tag-$host" link set lo up
  ip -n "$tag-hub" link set "v$tag$host" master br0
  ip -n "$tag-hub" link set "v$tag$host" up
  i=$((i + 1))
done
(umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/cookie")
bash "$here/../tests/cluster/make_certs.sh" "$work/certs" a b >/dev/null
tls() {  # tls NAME: the TLS flags for NAME's certificate
  echo "--harrow-tls-cert=$work/certs/$1.pem --harrow-tls-key=$work/certs/$1.key" \
       "--harrow-tls-ca=$work/certs/ca.pem"
}

start_node() {  # start_node NAMESPACE ADDRESS LOG [FLAGS...]
  local ns=$1 address=$2 log=$3
  shift 3
  ip netns exec "$ns" "$node" --listen="tcp:$address" --allow="$bench" \
    --harrow-cookie="$work/cookie" "$@" > "$log" 2>&1 &
  pids+=($!)
  until grep -q listening "$log" 2>/dev/null; do sleep 0.05; done
}
start_node "$tag-a" 127.0.0.1:7000 "$work/loop.log"
start_node "$tag-b" 10.77.0.2:7000 "$work/b.log"
start_node "$tag-b" 10.77.0.2:7001 "$work/btls.log" $(tls b)
start_node "$tag-b" 10.77.0.2:7002 "$work/binsecure.log" --harrow-insecure-links

# sshd in b: key-only, a host key and a client key made here, strict known_hosts.
daemons+=($(bash "$here/../tests/cluster/start_sshd.sh" "$work" "$tag-b=10.77.0.2"))

run() {  # run LABEL [FLAGS...]
  local label=$1
  shift
  for pin in "" "taskset -c 0"; do
    printf '%-9s %-8s ' "$label" "$([ -n "$pin" ] && echo pinned || echo unpinned)"
    ip netns exec "$tag-a" $pin "$bench" --harrow-cookie="$work/cookie" --harrow-registry=none \
      "$@"
  done
}
nodes="--harrow-nodes=loop=tcp:127.0.0.1:7000,b=tcp:10.77.0.2:7000,btls=tcp:10.77.0.2:7001"
run local "$nodes"
# A child forked by this host's zygote: what a spawn would cost on a node that kept a zygote step
# (one srun per node, children forked there), less the relay's round trip.
HARROW_SPAWN=forkserver run local+zygote "$nodes"
run loopback --node=loop "$nodes"
run veth --node=b "$nodes"
run veth+insecure --node=b --harrow-nodes=b=tcp:10.77.0.2:7002 --harrow-insecure-links
# The TLS node's certificate names it "b": the root asks for it by that name.
run veth+tls --node=b --harrow-nodes=b=tcp:10.77.0.2:7001 $(tls a)
run ssh --host=b --harrow-hosts=b=ssh://root@10.77.0.2 --harrow-ssh-config="$work/ssh_config"

# Slurm: munged (its own key and socket), slurmctld in a, slurmd n1 in b (tests/cluster's
# start_slurm.sh); the root under salloc.
if started=$(bash "$here/../tests/cluster/start_slurm.sh" "$work/slurm" "$tag-a=10.77.0.1" \
               "$tag-b=10.77.0.2" 2> "$work/slurm.log"); then
  daemons+=($started)
  export SLURM_CONF="$work/slurm/slurm.conf"
  for pin in "" "taskset -c 0"; do
    printf '%-9s %-8s ' slurm "$([ -n "$pin" ] && echo pinned || echo unpinned)"
    ip netns exec "$tag-a" $pin salloc --quiet --nodes=1 "$bench" --harrow-cookie="$work/cookie" \
      --harrow-registry=none --host=n1 --harrow-hosts=n1=slurm://n1
  done
fi
