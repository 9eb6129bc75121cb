// # A supervision tree
//
// Every node of this tree is an actor in its own process, and every node supervises the nodes
// below it with an actor nursery of its own. Leaves (or any nodes you name) fail on purpose, and
// the root prints what reached it: each failure exactly once, with the actors it was relayed
// through on its way up.
//
//   bazel run //examples/tree -- --depth=3 --width=2 --fail=leaves
//
// Flags (all optional):
//   --depth=N     levels of actors below the root (default 3, at most 10); the root is level 0
//   --width=N     children per node (default 2, at most 64)
//   --fail=WHAT   which nodes fail: "leaves" (default), "none", or node names separated by commas,
//                 e.g. --fail=n0.1,n1 (the root's children are n0, n1, ...; theirs n0.0, n0.1, ...)
//   --raw         also print the error exactly as it reached the root
//   --hold        keep the tree up (leaves never answer) until Ctrl-C: for `harrow ps` (programs/harrow/)
//
// How it works. The root and every inner node run the same code, growChildren() below: open an
// actor nursery (harrow::openActorNursery), start `width` Node actors in it, and call `grow` on
// each of them concurrently. A child's call either answers with the size of its subtree or fails
// with a RemoteActorError. The node waits for every child's answer (a failing child does not cut
// its siblings short), then raises the errors together: one error as it is, several as one
// MultiError. A MultiError crosses a channel with each of its errors whole (origin, relay path,
// source line, trace), so at the root harrow::failuresIn() lists every original failure once and
// harrow::remoteErrorInfo() reads each one's fields: nothing is parsed back from text. When the
// nursery block ends, every child that is still running
// is cancelled and reaped: when this program exits, no process of the tree is left.
//
// Each node prints a line when it starts ("[n0.1] pid 1234: ...") so you can follow the tree.

#include <harrow/harrow.h>
#include "examples/tree/tree.capnp.harrow.h"

#include <kj/debug.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

namespace {

using harrow::Co;

void say(kj::StringPtr who, kj::StringPtr what) {
  printf("[%s] pid %d: %s\n", who.cStr(), getpid(), what.cStr());
  fflush(stdout);  // one write per line: lines from different processes do not mix
}

// Which nodes fail: "leaves", or node names.
struct FailAt {
  kj::Vector<kj::String> entries;

  bool matches(kj::StringPtr node, bool isLeaf) const {
    for (auto& entry : entries) {
      if (entry == node || (isLeaf && entry == "leaves")) return true;
    }
    return false;
  }
};

kj::String childName(kj::StringPtr parent, uint32_t i) {
  return parent == "root" ? kj::str("n", i) : kj::str(parent, ".", i);
}

// What a node's children grew: how many nodes, and the errors of those that failed.
struct Grown {
  uint32_t nodes = 0;
  kj::Vector<kj::Exception> errors;
};

// Spawns `width` children of actor `self` (the running actor) and has each grow `depth` more
// levels. Waits for every child; a child's error is collected, not raised, so that one failing
// child does not cancel its siblings before their own errors arrive.
Co<Grown> growChildren(kj::StringPtr self, uint32_t depth, uint32_t width, const FailAt& failAt,
                       bool hold) {
  Grown grown;
  co_await harrow::openActorNursery([&](harrow::ActorNursery& nursery) -> Co<void> {
    kj::Vector<NodeActor::Portal> children;
    for (uint32_t i = 0; i < width; ++i) {
      children.add(co_await nursery.startActor<NodeActor>(childName(self, i), "node"));
    }
    co_await harrow::openNursery([&](harrow::TaskNursery& calls) -> Co<void> {
      for (auto& each : children) {
        calls.startSoon([&, child = &each]() -> Co<void> {
          kj::Maybe<kj::Exception> error;
          try {
            auto result = co_await child->grow([&](auto params) {
              params.setDepth(depth);
              params.setWidth(width);
              auto list = params.initFailAt(failAt.entries.size());
              for (auto i : kj::indices(failAt.entries)) list.set(i, failAt.entries[i]);
              params.setHold(hold);
            });
            grown.nodes += result->getNodes();
          } catch (...) {
            error = harrow::currentException();
          }
          KJ_IF_MAYBE(e, error) {
            if (harrow::isCancelled(*e)) kj::throwFatalException(kj::mv(*e));  // not an error
            grown.errors.add(kj::mv(*e));
          }
        });
      }
      co_return;
    });
  });  // every child has been cancelled (if still running) and reaped here
  co_return kj::mv(grown);
}

// Runs in every child process.
class NodeImpl final : public NodeActor::Server {
public:
  Co<void> grow(GrowCall call) override {
    auto params = call.params();
    kj::StringPtr self = harrow::currentActor().identity().name;
    uint32_t depth = params.getDepth();
    uint32_t width = params.getWidth();
    FailAt failAt;
    for (auto entry : params.getFailAt()) failAt.entries.add(kj::str(entry));
    bool isLeaf = depth == 0 || width == 0;
    bool fails = failAt.matches(self, isLeaf);

    Grown grown;
    if (isLeaf) {
      say(self, fails ? "leaf, failing on purpose" : params.getHold() ? "leaf, holding" : "leaf");
      if (params.getHold() && !fails) co_await kj::Promise<void>(kj::NEVER_DONE);  // until cancelled
    } else {
      say(self, kj::str("growing ", width, " children, ", depth, " more level(s)",
                        fails ? ", then failing on purpose" : ""));
      grown = co_await growChildren(self, depth - 1, width, failAt, params.getHold());
    }
    if (fails) {
      grown.errors.add(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                                     kj::str("tree.NodeFailed: node ", self, " (pid ", getpid(),
                                             ") failed on purpose")));
    }
    if (grown.errors.size() > 0) {
      // One error is raised as it is; several as one MultiError.
      kj::throwFatalException(harrow::makeMultiError(grown.errors.releaseAsArray()));
    }
    call.results().setNodes(grown.nodes + 1);
  }
};

struct Flags {
  uint32_t depth = 3;
  uint32_t width = 2;
  FailAt failAt;
  kj::String failText = kj::str("leaves");
  bool raw = false;
  bool hold = false;
};

[[noreturn]] void usage(kj::StringPtr problem) {
  fprintf(stderr,
          "tree: %s\n"
          "usage: tree [--depth=N] [--width=N] [--fail=leaves|none|NAME,NAME...] [--raw]"
          " [--hold]\n",
          problem.cStr());
  exit(2);
}

uint32_t number(kj::StringPtr flag, kj::StringPtr value, long most) {
  char* end;
  long n = strtol(value.cStr(), &end, 10);
  if (value.size() == 0 || *end != '\0' || n < 0 || n > most) {
    usage(kj::str(flag, " wants a number from 0 to ", most, ", not '", value, "'"));
  }
  return n;
}

Flags parseFlags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    kj::StringPtr arg = argv[i];
    if (arg.startsWith("--depth=")) {
      flags.depth = number("--depth", arg.slice(8), 10);
    } else if (arg.startsWith("--width=")) {
      flags.width = number("--width", arg.slice(8), 64);
    } else if (arg.startsWith("--fail=")) {
      flags.failText = kj::str(arg.slice(7));
    } else if (arg == "--raw") {
      flags.raw = true;
    } else if (arg == "--hold") {
      flags.hold = true;
    } else if (arg.startsWith("--harrow-")) {
      // harrow's own (--harrow-log=LEVEL)
    } else {
      usage(kj::str("unknown argument '", arg, "'"));
    }
  }
  if (flags.failText != "none") {
    kj::StringPtr rest = flags.failText;
    while (rest.size() > 0) {
      KJ_IF_MAYBE(comma, rest.findFirst(',')) {
        flags.failAt.entries.add(kj::heapString(rest.begin(), *comma));
        rest = rest.slice(*comma + 1);
      } else {
        flags.failAt.entries.add(kj::str(rest));
        break;
      }
    }
  }
  return flags;
}

// What the root prints about the error that reached it: each original failure, sorted by the
// actor that raised it.
void report(const kj::Exception& error) {
  auto failures = harrow::failuresIn(error);
  auto originOf = [](const kj::Exception& e) -> kj::String {
    KJ_IF_MAYBE(info, harrow::remoteErrorInfo(e)) return kj::mv(info->origin.name);
    return kj::str("");
  };
  std::vector<size_t> order(failures.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return strcmp(originOf(failures[a]).cStr(), originOf(failures[b]).cStr()) < 0;
  });
  kj::String what = harrow::isMultiError(error)
      ? kj::str("a MultiError of ", harrow::errorsIn(error).size(), " errors")
      : kj::str("one error");
  printf("\nThe root received %s, carrying %zu failure(s) in all:\n", what.cStr(),
         failures.size());
  for (size_t i = 0; i < order.size(); ++i) {
    const kj::Exception& failure = failures[order[i]];
    KJ_IF_MAYBE(info, harrow::remoteErrorInfo(failure)) {
      printf("  %zu. %s from actor '%s': %s\n", i + 1, info->type.cStr(),
             info->origin.name.cStr(), info->message.cStr());
      printf("       raised at %s:%u\n", info->file.cStr(), info->line);
      kj::Vector<kj::StringPtr> path;
      for (auto& hop : info->relayPath) path.add(hop.name);
      printf("       relayed by %s\n",
             path.empty() ? "(none)" : kj::strArray(path, " -> ").cStr());
    } else {
      printf("  %zu. %s\n", i + 1, failure.getDescription().cStr());
    }
  }
  printf("(\"relayed by\": the actors a failure passed through on its way up, nearest last.)\n");
  fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  harrow::Implementations impls;
  impls.add<NodeImpl>("node");
  bool child = argc > 1 && kj::StringPtr(argv[1]) == "--harrow-child";
  Flags flags = child ? Flags{} : parseFlags(argc, argv);

  return harrow::main(argc, argv, impls, [&](harrow::Actor& root) -> Co<void> {
    printf("A tree of depth %u and width %u; failing: %s\n", flags.depth, flags.width,
           flags.failText.cStr());
    say("root", kj::str("growing ", flags.width, " children, ", flags.depth, " level(s)"));
    Grown grown;
    if (flags.depth > 0) grown = co_await growChildren("root", flags.depth - 1, flags.width,
                                                       flags.failAt, flags.hold);
    if (grown.errors.size() == 0) {
      printf("\nThe tree grew %u nodes below the root, and every one of them has exited.\n",
             grown.nodes);
      fflush(stdout);
      co_return;
    }
    auto error = harrow::makeMultiError(grown.errors.releaseAsArray());
    report(error);
    printf("Every actor of the tree has exited.\n");
    fflush(stdout);
    if (flags.raw) {
      printf("\nThe error as it reached the root:\n%s\n", error.getDescription().cStr());
      fflush(stdout);
    }
    // Exit status 1, with a short line on stderr (the whole error is above with --raw).
    kj::throwFatalException(kj::Exception(
        kj::Exception::Type::FAILED, __FILE__, __LINE__,
        kj::str("tree.Failed: ", harrow::failuresIn(error).size(), " node(s) failed")));
  });
}
