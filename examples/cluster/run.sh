#!/usr/bin/env bash
# The cluster example on one machine: three network namespaces as hosts a, b and c (joined by a
# bridge, 10.77.0.0/24 inside them only), harrow-node in b and c (or, with `ssh`, an sshd in each:
# the ssh backend, no harrow-node; with `slurm`, slurmctld in a and a slurmd in b and c: the
# Slurm backend, the root under salloc), the root in a starting a worker on each. Needs root and
# iproute2 (openssh-server for `ssh`, slurm-wlm and munge for `slurm`). Everything it made is
# removed on exit.
#
#   bazel build //examples/cluster //programs/harrow-node
#   sudo examples/cluster/run.sh [bazel-bin/examples/cluster/cluster] [bazel-bin/programs/harrow-node/harrow-node] [node|ssh|slurm]
set -euo pipefail
program=$(readlink -f "${1:-bazel-bin/examples/cluster/cluster}")
node=$(readlink -f "${2:-bazel-bin/programs/harrow-node/harrow-node}")
backend=${3:-node}
here=$(cd "$(dirname "$0")" && pwd)
if [[ $(id -u) != 0 ]] || ! command -v ip >/dev/null; then
  echo "run.sh needs root and iproute2's ip (network namespaces)" >&2
  exit 77
fi

tag=hwex$$
work=$(mktemp -d)
pids=()     # this shell's own children
daemons=()  # what start_sshd.sh / start_slurm.sh started (not our children), in start order
cleanup() {
  bash "$here/../../tests/cluster/stop_daemons.sh" "${daemons[@]}"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in a b c hub; do ip netns del "$tag-$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$tag-hub"
ip -n "$tag-hub" link add br0 type bridge
ip -n "$tag-hub" link set br0 up
i=1
for host in a b c; do
  ip netns add "$tag-$host"
  ip -n "$tag-$host" link add eth0 type veth peer name "v$tag$host" netns "$tag-hub"
  ip -n "$tag-$host" addr add "10.77.0.$i/24" dev eth0
  ip -n "$tag-$host" link set eth0 up
  ip -n "$tag-$host" link set lo up
  ip -n "$tag-hub" link set "v$tag$host" master br0
  ip -n "$tag-hub" link set "v$tag$host" up
  i=$((i + 1))
done

# One cookie for the whole tree (the nodes read it too).
(umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/cookie")
if [[ $backend == ssh ]]; then
  # The ssh backend: an sshd in b and c, keys and a strict known_hosts made here; no harrow-node.
  daemons+=($(bash "$here/../../tests/cluster/start_sshd.sh" "$work" "$tag-b=10.77.0.2" \
                "$tag-c=10.77.0.3"))
  ip netns exec "$tag-a" "$program" --workers=b,c \
    --harrow-hosts=b=ssh://root@10.77.0.2,c=ssh://root@10.77.0.3 \
    --harrow-ssh-config="$work/ssh_config" --harrow-cookie="$work/cookie" --harrow-registry=none
  exit
fi

if [[ $backend == slurm ]]; then
  # The Slurm backend: munged, slurmctld in a, slurmd n1 in b and n2 in c; the root under salloc,
  # each worker a job step. The cookie is on the "shared filesystem" (this machine's).
  started=$(bash "$here/../../tests/cluster/start_slurm.sh" "$work/slurm" "$tag-a=10.77.0.1" \
              "$tag-b=10.77.0.2" "$tag-c=10.77.0.3") || exit $?
  daemons+=($started)
  SLURM_CONF="$work/slurm/slurm.conf" ip netns exec "$tag-a" salloc --quiet --nodes=2 \
    "$program" --workers=b,c --harrow-hosts=b=slurm://n1,c=slurm://n2 \
    --harrow-cookie="$work/cookie" --harrow-registry=none
  exit
fi

nodes="b=tcp:10.77.0.2:7000,c=tcp:10.77.0.3:7000"
for host in b c; do
  address=$([[ $host == b ]] && echo 10.77.0.2 || echo 10.77.0.3)
  ip netns exec "$tag-$host" "$node" --listen="tcp:$address:7000" --allow="$program" \
    --harrow-cookie="$work/cookie" --name="node-$host" > "$work/node-$host.log" 2>&1 &
  pids+=($!)
done
for host in b c; do  # until each node listens
  until grep -q "listening" "$work/node-$host.log"; do
    kill -0 "${pids[0]}" "${pids[1]}" || { cat "$work"/node-*.log; exit 1; }
    sleep 0.05
  done
done

ip netns exec "$tag-a" "$program" --workers=b,c --harrow-nodes="$nodes" \
  --harrow-cookie="$work/cookie" --harrow-registry=none
echo "--- node b"; cat "$work/node-b.log"
echo "--- node c"; cat "$work/node-c.log"
