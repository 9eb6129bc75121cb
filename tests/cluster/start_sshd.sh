#!/usr/bin/env bash
# Starts an sshd for harrow's ssh backend in each of the given network namespaces: key-only
# (a client key made here, in DIR/client), a host key per namespace, a strict known_hosts
# (DIR/known_hosts) and an ssh configuration that uses them (DIR/ssh_config, for
# --harrow-ssh-config). Prints the sshds' pids, one a line, once each listens.
#
#   tests/cluster/start_sshd.sh DIR NETNS=ADDRESS [NETNS=ADDRESS...]
set -euo pipefail
source "$(dirname "$0")/started.sh"
dir=$1
shift
mkdir -p /run/sshd  # sshd's privilege separation directory
[ -f "$dir/client" ] || ssh-keygen -q -t ed25519 -N '' -C harrow -f "$dir/client"
cp "$dir/client.pub" "$dir/authorized_keys"
: > "$dir/known_hosts"
cat > "$dir/ssh_config" <<CONF
Host *
  User root
  IdentityFile $dir/client
  IdentitiesOnly yes
  UserKnownHostsFile $dir/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  LogLevel ERROR
CONF
for spec in "$@"; do
  ns=${spec%%=*}
  address=${spec#*=}
  ssh-keygen -q -t ed25519 -N '' -C harrow -f "$dir/host-$address"
  echo "$address $(cat "$dir/host-$address.pub")" >> "$dir/known_hosts"
  cat > "$dir/sshd_config-$address" <<CONF
ListenAddress $address
HostKey $dir/host-$address
PidFile none
AuthorizedKeysFile $dir/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
LogLevel INFO
CONF
  # sshd logs to stderr (-e); its "Server listening" line is the event.
  started "Server listening" "$dir/sshd-$address.log" \
    ip netns exec "$ns" /usr/sbin/sshd -D -e -f "$dir/sshd_config-$address"
done
