// packet_tap: what an eavesdropper on a host's network interface reads, for cluster_test. Run in a
// host's namespace; records every frame its interface sends or receives (an AF_PACKET socket, so
// traffic no program of ours relays: srun's stdin/stdout forwarding between Slurm nodes).
//
//   packet_tap --interface=eth0 --capture=PATH
//
// Appends each frame, as it arrived, to PATH. Prints "packet_tap: capturing" once the socket is
// bound. On SIGTERM it records what is still queued and exits 0.

#include <kj/debug.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

int main(int argc, char** argv) {
  std::string interface = "eth0";
  std::string capture;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--interface=", 0) == 0) interface = arg.substr(12);
    if (arg.rfind("--capture=", 0) == 0) capture = arg.substr(10);
  }
  KJ_REQUIRE(!capture.empty(), "usage: packet_tap --interface=IF --capture=PATH");

  sigset_t terminate;
  sigemptyset(&terminate);
  sigaddset(&terminate, SIGTERM);
  KJ_SYSCALL(sigprocmask(SIG_BLOCK, &terminate, nullptr));
  int signals;
  KJ_SYSCALL(signals = signalfd(-1, &terminate, SFD_CLOEXEC));

  int out;
  KJ_SYSCALL(out = open(capture.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), capture);
  int packets;
  KJ_SYSCALL(packets = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL)));
  sockaddr_ll address{};
  address.sll_family = AF_PACKET;
  address.sll_protocol = htons(ETH_P_ALL);
  address.sll_ifindex = if_nametoindex(interface.c_str());
  KJ_REQUIRE(address.sll_ifindex != 0, "no such interface", interface);
  KJ_SYSCALL(bind(packets, reinterpret_cast<sockaddr*>(&address), sizeof(address)));
  printf("packet_tap: capturing\n");
  fflush(stdout);

  char frame[65536];
  auto record = [&](int flags) {
    for (;;) {
      ssize_t n = recv(packets, frame, sizeof(frame), flags);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      KJ_ASSERT(write(out, frame, n) == n);
      if (flags == 0) return;  // one frame per wake-up; drained with MSG_DONTWAIT at the end
    }
  };
  for (;;) {
    pollfd fds[2] = {{packets, POLLIN, 0}, {signals, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      KJ_ASSERT(errno == EINTR);
      continue;
    }
    if (fds[0].revents & POLLIN) record(0);
    if (fds[1].revents & POLLIN) {
      record(MSG_DONTWAIT);
      close(out);
      return 0;
    }
  }
}
