// Children on other hosts through ssh, or as Slurm job steps (srun): no daemon, no port of ours on
// the remote host (issue 21). Slurm children ("slurm://NODE") take the same path with srun in
// ssh's place; docs/CLUSTER.md says what differs (the secret stays home, the cookie is shared,
// and since srun's relay is plain TCP both ends prove the secret and encrypt every frame:
// PeerOptions::parentChildOverRelay).
//
//   harrow::SpawnOptions options;
//   options.host = "ssh://deploy@10.0.0.2:2222";  // or a name from --harrow-hosts / HARROW_HOSTS
//   auto worker = co_await nursery.startActor<WorkerImpl>("w1", options);
//
// The parent runs the system's `ssh` client (OpenSSH) with a socketpair as its stdin and stdout:
//
//   ssh -T -o BatchMode=yes -o ServerAliveInterval=S -o ServerAliveCountMax=3 [-F CONFIG]
//       [-p PORT] [-l USER] HOST -- 'env HARROW_...=... PATH --harrow-ssh-child NAME; exit $?'
//
// and the child runs on HOST with the session's stdin/stdout as its parent channel (moved off fds
// 0 and 1 at once, so that nothing the actor prints can land in it). The parent's end of the
// socketpair is an ordinary child channel: the same handshake, the spawn spec, calls, streams and
// contexts as a local child's. ssh encrypts and authenticates the link (keys, known_hosts: the
// user's ssh configuration, or --harrow-ssh-config=FILE); the tree secret travels in the spawn spec
// inside that channel, never in argv or the environment. The remote program is PATH: the child's
// executable (this program by default) at the same path, or SpawnOptions::remotePath. Tree-wide
// settings that are not secret (log level and format, the host and node lists, the ssh config,
// the link timeout, the spawn backend) are passed as environment assignments on the command line.
//
// Before its handshake the child writes one line, "harrow-ssh-child PID [ADDRESS]", on the
// channel: the parent learns the remote pid (for errors and `harrow ps`) and the address the
// child's host reaches it at (ssh's SSH_CONNECTION, Slurm's SLURM_LAUNCH_NODE_IPADDR: where the
// tree's registry is exposed for it), and skips whatever a login script printed before it (up to
// 64 KiB).
//
// Guarantees, as for a local child:
//  - cancellation: cancel-actor through the channel; after the grace period the parent kills its
//    ssh client (SIGKILL), which ends the session.
//  - the remote process dies with its session: a child whose parent channel reaches end-of-file
//    (ssh ended: killed, the parent SIGKILLed, the connection lost) cancels itself like a local
//    orphan and exits, by SIGALRM, at the latest one grace period later; its own children follow
//    (their PR_SET_PDEATHSIG, their channel).
//  - exit status relayed: ssh exits with the remote command's status; 128+N (the remote shell's
//    way of saying "killed by signal N") is reported as killed by signal N. ssh's own status 255
//    (the connection failed or was lost: ServerAliveInterval, from --harrow-link-timeout) is
//    harrow.ActorUnreachable for a running child, harrow.SpawnFailed for one not yet started.
//  - errors name the host: "actor 'w1' (pid 4242) exited with status 3 on host 'deploy@10.0.0.2'".

#pragma once

#include <harrow/actor/actor.h>
#include <harrow/spawn/process.h>

namespace harrow {

// "name=value,name=value": the value of `name`, if listed.
kj::Maybe<kj::String> namedEntry(kj::StringPtr list, kj::StringPtr name);

// A host reached over ssh.
struct SshHost {
  kj::String user;  // empty: ssh's default (the config's, or the local user)
  kj::String host;
  uint16_t port = 0;  // 0: ssh's default
  // "slurm://NODE" (or "slurm://": any node): a job step of this process's Slurm allocation, run
  // with srun, whose stdin/stdout relay carries the channel as ssh's does (docs/CLUSTER.md).
  bool slurm = false;

  // "ssh://[USER@]HOST[:PORT]" (HOST may be [IPv6]) or "slurm://[NODE]"; throws
  // harrow.SpawnFailed otherwise.
  static SshHost parse(kj::StringPtr url);
  // "[USER@]HOST[:PORT]", as errors name it.
  kj::String toString() const;
};

// The ssh URL of `host`: from HARROW_HOSTS ("b=ssh://u@10.0.0.2,c=ssh://u@10.0.0.3", set by
// --harrow-hosts=...), or `host` itself if it is one ("ssh://..."). Throws harrow.SpawnFailed,
// listing the known hosts, for an unknown name.
kj::String sshHostUrl(kj::StringPtr host);

// The names in HARROW_HOSTS, in order: for a program that places children round-robin.
kj::Array<kj::String> hostNames();

// The command line ssh runs on the remote host for child `name` (tested, and shown in docs).
kj::String sshRemoteCommand(kj::StringPtr remotePath, kj::StringPtr name);

// The ssh client's argv that runs `remoteCommand` on `host` (a name or URL) as harrow's spawns
// run it: the same options (BatchMode, keepalives, --harrow-ssh-config); for a slurm:// host,
// srun's argv running the program `remoteCommand` as a step, with the options a child's step gets.
// bench/cluster_bench times `sshCommand(host, "/bin/true")` as a spawn's floor.
kj::Array<kj::String> sshCommand(kj::StringPtr host, kj::StringPtr remoteCommand);

// A child started through ssh: what its supervisor sees of it, and its channel's parent end.
struct SshChild {
  kj::Own<Process> process;
  kj::AutoCloseFd channelFd;  // handshakeWithChild on it, as on a local child's
  // Where the child's host reaches this one (an IP, IPv6 in brackets; "" if it could not tell):
  // the registry is exposed there for it (ActorAttachment::fillRemoteSpawnSpec).
  kj::String homeAddress;
};

// Runs ssh to `host` (a name or URL, above) for child `name`, running `remotePath` there.
// Resolves once the child has announced itself (its first line); throws harrow.SpawnFailed if ssh
// could not start it (no such host, refused key, unknown host key, no such program), naming the
// host and ssh's status; ssh's own message is on this process's stderr.
Co<SshChild> startSshChild(Actor& actor, kj::StringPtr host, kj::StringPtr name,
                           kj::StringPtr remotePath);

// A Slurm child's liveness: srun does not notice a node that died or was cut off (it waits for
// slurmctld, minutes), so the parent asks the step (Introspect.info on `peer`) every heartbeat
// of --harrow-link-timeout, and a step that has not answered within the bound is unreachable:
// `process` (startSshChild's) then reports harrow.ActorUnreachable instead of an exit status,
// once, and its srun is killed, which ends the channel. Resolves when the channel has ended;
// drop it with the child. An actor whose event loop is blocked that long counts as lost too.
kj::Promise<void> watchStep(Actor& actor, Process& process, Peer& peer);

// What a parent does to an ssh child's spawn spec: addresses that mean something only on this
// host (Unix sockets, loopback TCP) are cleared; an etcd registry or a routable TCP address stays,
// so children through ssh join an etcd registry like any other. With `withoutSecret` (a Slurm
// child: srun's relay is plain TCP) the tree secret goes too, zeroed; the child reads the cookie
// (--harrow-cookie, on a filesystem every node shares) instead.
void stripHostLocalAddresses(wire::SpawnSpec::Builder spec, bool withoutSecret = false);

// The child's side (harrow::main's `--harrow-ssh-child NAME` mode, `--harrow-slurm-child NAME` for
// a step): moves stdin/stdout off fds 0 and 1 (0 becomes /dev/null, 1 a copy of stderr),
// announces this process on the channel, and returns the channel's fds (read, write).
struct SshChildFds {
  kj::AutoCloseFd in;
  kj::AutoCloseFd out;
};
SshChildFds takeSshChannel(bool slurm);

// A stream over a pair of pipes (the ssh child's stdin and stdout): a Channel reads and writes
// through it. shutdownWrite() closes the write side.
kj::Own<kj::AsyncIoStream> pipePairStream(kj::LowLevelAsyncIoProvider& provider,
                                          SshChildFds fds);

}  // namespace harrow
