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
//   --depth=N     levels of actors below the root (default 3); the root is level 0
//   --width=N     children per node (default 2)
//   --fail=WHAT   which nodes fail: "leaves" (default), "none", or node names separated by commas,
//                 e.g. --fail=n0.1,n1 (the root's children are n0, n1, ...; theirs n0.0, n0.1, ...)
//   --raw         also print the error exactly as it reached the root
//
// How it works. The root and every inner node run the same code, growChildren() below: open an
// actor nursery (harrow::openActorNursery), start `width` Node actors in it, and call `grow` on
// each of them concurrently. A child's call either answers with the size of its subtree or fails
// with a RemoteActorError. The node waits for every child's answer (a failing child does not cut
// its siblings short), then raises the errors together: one error as it is, several as one
// MultiError. A MultiError from a child crosses the channel as one RemoteActorError of type
// harrow.MultiError, so at the root the errors are nested as deep as the tree; causesOf()
// (causes.h) unnests them again. When the nursery block ends, every child that is still running
// is cancelled and reaped: when this program exits, no process of the tree is left.
//
// Each node prints a line when it starts ("[n0.1] pid 1234: ...") so you can follow the tree.

#include <harrow/harrow.h>
#include "examples/tree/causes.h"
#include "examples/tree/tree.capnp.harrow.h"

#include <kj/debug.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>

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
Co<Grown> growChildren(kj::StringPtr self, uint32_t depth, uint32_t width, const FailAt& failAt) {
  Grown grown;
  co_await harrow::openActorNursery([&](harrow::ActorNursery& nursery) -> Co<void> {
    kj::Vector<NodeActor::Portal> children;
    for (uint32_t i = 0; i < width; ++i) {
      children.add(co_await nursery.startActor<NodeActor>(childName(self, i), "node"));
    }
    co_await harrow::openNursery([&](harrow::TaskNursery& calls) -> Co<void> {
      for (auto& each : children) {
        calls.start([&, child = &each]() -> Co<void> {
          kj::Maybe<kj::Exception> error;
          try {
            auto result = co_await child->grow([&](auto params) {
              params.setDepth(depth);
              params.setWidth(width);
              auto list = params.initFailAt(failAt.entries.size());
              for (auto i : kj::indices(failAt.entries)) list.set(i, failAt.entries[i]);
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
      say(self, fails ? "leaf, failing on purpose" : "leaf");
    } else {
      say(self, kj::str("growing ", width, " children, ", depth, " more level(s)",
                        fails ? ", then failing on purpose" : ""));
      grown = co_await growChildren(self, depth - 1, width, failAt);
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
};

[[noreturn]] void usage(kj::StringPtr problem) {
  fprintf(stderr,
          "tree: %s\n"
          "usage: tree [--depth=N] [--width=N] [--fail=leaves|none|NAME,NAME...] [--raw]\n",
          problem.cStr());
  exit(2);
}

uint32_t number(kj::StringPtr flag, kj::StringPtr value) {
  char* end;
  long n = strtol(value.cStr(), &end, 10);
  if (value.size() == 0 || *end != '\0' || n < 0 || n > 10) {
    usage(kj::str(flag, " wants a number from 0 to 10, not '", value, "'"));
  }
  return n;
}

Flags parseFlags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    kj::StringPtr arg = argv[i];
    if (arg.startsWith("--depth=")) {
      flags.depth = number("--depth", arg.slice(8));
    } else if (arg.startsWith("--width=")) {
      flags.width = number("--width", arg.slice(8));
    } else if (arg.startsWith("--fail=")) {
      flags.failText = kj::str(arg.slice(7));
    } else if (arg == "--raw") {
      flags.raw = true;
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
  auto causes = tree::causesOf(error);
  std::sort(causes.begin(), causes.end(), [](const tree::Cause& a, const tree::Cause& b) {
    auto name = [](const tree::Cause& c) -> kj::StringPtr {
      KJ_IF_MAYBE(origin, c.origin) return origin->name;
      return "";
    };
    return strcmp(name(a).cStr(), name(b).cStr()) < 0;
  });
  kj::String what = harrow::isMultiError(error)
      ? kj::str("a MultiError of ", harrow::errorsIn(error).size(), " errors (one per failing child)")
      : kj::str("one error");
  printf("\nThe root received %s, carrying %zu failure(s) in all:\n", what.cStr(), causes.size());
  for (auto i : kj::indices(causes)) {
    auto& cause = causes[i];
    KJ_IF_MAYBE(origin, cause.origin) {
      printf("  %zu. %s from actor '%s': %s\n", i + 1, cause.type.cStr(), origin->name.cStr(),
             cause.message.cStr());
      printf("       raised at %s:%u\n", cause.file.cStr(), cause.line);
    } else {
      printf("  %zu. %s\n", i + 1, cause.text.cStr());
    }
    printf("       relayed by %s\n", tree::pathText(cause.relayPath).cStr());
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
                                                       flags.failAt);
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
        kj::str("tree.Failed: ", tree::causesOf(error).size(), " node(s) failed")));
  });
}
