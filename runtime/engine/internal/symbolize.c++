#include "runtime/engine/internal/symbolize.h"

#include <kj/debug.h>
#include <kj/vector.h>

#include <algorithm>
#include <cxxabi.h>
#include <elfutils/libdwfl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

namespace harrow::_ {
namespace {

// The process's modules as libdw sees them. Built on first use, per process: a child forked by
// the zygote has the same mappings but a pid of its own, and starts afresh. Errors are rare;
// this costs a few milliseconds once, then lookups are cheap.
class Modules {
public:
  Modules() : pid(getpid()) {
    dwfl = dwfl_begin(&callbacks);
    if (dwfl == nullptr) return;
    if (dwfl_linux_proc_report(dwfl, pid) != 0 || dwfl_report_end(dwfl, nullptr, nullptr) != 0) {
      dwfl_end(dwfl);
      dwfl = nullptr;
    }
  }
  ~Modules() {
    if (dwfl != nullptr) dwfl_end(dwfl);
  }
  KJ_DISALLOW_COPY(Modules);

  bool current() const { return pid == getpid(); }

  // One frame: its cleaned name, and its file and line when the module has line tables.
  struct Frame {
    kj::String name;
    kj::String file;  // empty without line tables
    int line = 0;
    kj::StringPtr module;  // the module's path, empty when there is none
  };

  Frame frame(uintptr_t address) {
    if (dwfl == nullptr) return {kj::str("0x", kj::hex(address)), kj::str(), 0, nullptr};
    // A return address points after the call: look up the call instruction itself.
    Dwarf_Addr at = address - 1;
    Dwfl_Module* module = dwfl_addrmodule(dwfl, at);
    if (module == nullptr) return {kj::str("0x", kj::hex(address)), kj::str(), 0, nullptr};
    Dwarf_Addr start;
    const char* path = dwfl_module_info(module, nullptr, &start, nullptr, nullptr, nullptr,
                                        nullptr, nullptr);
    Frame out{nullptr, kj::str(), 0, path != nullptr ? kj::StringPtr(path) : kj::StringPtr()};
    if (const char* symbol = dwfl_module_addrname(module, at)) {
      int status = 0;
      char* demangled = abi::__cxa_demangle(symbol, nullptr, nullptr, &status);
      out.name = cleanFunctionName(status == 0 && demangled != nullptr ? demangled : symbol);
      free(demangled);
    } else {
      out.name = kj::str(path != nullptr ? path : "?", "+0x", kj::hex(at - start));
    }
    if (Dwfl_Line* line = dwfl_module_getsrc(module, at)) {
      int number = 0;
      const char* file = dwfl_lineinfo(line, nullptr, &number, nullptr, nullptr, nullptr);
      if (file != nullptr) {
        // Bazel compiles in /proc/self/cwd (its -fdebug-prefix-map): the workspace-relative path.
        kj::StringPtr name = file;
        if (name.startsWith("/proc/self/cwd/")) name = name.slice(strlen("/proc/self/cwd/"));
        out.file = kj::str(name);
        out.line = number;
      }
    }
    return out;
  }

private:
  static inline char* debuginfoPath = nullptr;
  // Separate debug files are looked up by build id on this machine only (/usr/lib/debug, where
  // Debian's -dbgsym packages put them). Not dwfl_standard_find_debuginfo: with DEBUGINFOD_URLS
  // set it downloads them, and an actor formatting an error must not wait on the network.
  static inline const Dwfl_Callbacks callbacks = {
      dwfl_linux_proc_find_elf, dwfl_build_id_find_debuginfo, nullptr, &debuginfoPath};
  pid_t pid;
  Dwfl* dwfl = nullptr;
};

}  // namespace

namespace {

bool contains(kj::StringPtr text, kj::StringPtr part) {
  if (part.size() > text.size()) return false;
  for (size_t i = 0; i + part.size() <= text.size(); ++i) {
    if (memcmp(text.begin() + i, part.begin(), part.size()) == 0) return true;
  }
  return false;
}

// `text` with every occurrence of `part` removed.
kj::String without(kj::StringPtr text, kj::StringPtr part) {
  kj::Vector<char> out(text.size() + 1);
  for (size_t i = 0; i < text.size();) {
    if (text.slice(i).startsWith(part)) {
      i += part.size();
    } else {
      out.add(text[i++]);
    }
  }
  out.add('\0');
  return kj::String(out.releaseAsArray());
}

// The function a demangled name declares, without its return type and parameters:
// "kj::Maybe<kj::Exception> kj::runCatchingExceptions<F>(F&&)" -> "kj::runCatchingExceptions<F>".
kj::StringPtr functionPath(kj::StringPtr name, kj::String& storage) {
  size_t end = name.size();
  if (name.endsWith(" const")) end -= 6;
  if (end > 0 && name[end - 1] == ')') {
    int depth = 0;
    for (size_t i = end; i-- > 0;) {
      if (name[i] == ')') ++depth;
      if (name[i] == '(' && --depth == 0) {
        end = i;
        break;
      }
    }
  }
  size_t begin = 0;
  int depth = 0;
  for (size_t i = 0; i < end; ++i) {
    char c = name[i];
    if (c == '(' || c == '<' || c == '{') ++depth;
    if (c == ')' || c == '>' || c == '}') --depth;
    if (c == ' ' && depth == 0) begin = i + 1;
  }
  storage = kj::heapString(name.slice(begin, end));
  return storage;
}

// harrow's runtime sources as this build names them: "runtime/", "external/harrow/runtime/" or
// "/src/harrow/runtime/" (__FILE__ is runtime/engine/internal/symbolize.c++ under it).
kj::StringPtr runtimePrefix() {
  static const kj::String prefix = [] {
    kj::StringPtr self = __FILE__;
    constexpr kj::StringPtr TAIL = "engine/internal/symbolize.c++"_kj;
    return self.endsWith(TAIL) ? kj::heapString(self.begin(), self.size() - TAIL.size())
                               : kj::str("runtime/");
  }();
  return prefix;
}

// A file of harrow's: its runtime's sources, its public headers wherever they are included from
// (<harrow/LAYER/x.h>: an install's include/, CMake's or Bazel's staging folders), or code
// generated from a schema (capnp's, capnpc-harrow's).
bool isHarrowFile(kj::StringPtr file) {
  if (file.startsWith(runtimePrefix())) return true;
  for (kj::StringPtr layer : {"co", "ipc", "typed", "engine", "actor", "discovery", "spawn",
                              "node"}) {
    if (contains(file, kj::str("harrow/", layer, "/"))) return true;
  }
  return file.endsWith("/harrow/harrow.h") || file.endsWith("/harrow/main.h") ||
         file.endsWith(".capnp.harrow.c++") ||
         file.endsWith(".capnp.harrow.h") || file.endsWith(".capnp.c++") ||
         file.endsWith(".capnp.h");
}

kj::StringPtr baseName(kj::StringPtr path) {
  KJ_IF_MAYBE(slash, path.findLast('/')) return path.slice(*slash + 1);
  return path;
}

// "a", "a and b", "a, b and c".
kj::String listed(kj::ArrayPtr<const kj::StringPtr> names) {
  kj::Vector<kj::String> parts;
  for (auto i : kj::indices(names)) {
    kj::StringPtr separator = i == 0 ? "" : i + 1 == names.size() ? " and " : ", ";
    parts.add(kj::str(separator, names[i]));
  }
  return kj::strArray(parts, "");
}

}  // namespace

kj::String cleanFunctionName(kj::StringPtr demangled) {
  kj::String name = without(demangled, "(anonymous namespace)::");
  // " [clone .actor]", " [clone .cold]", " [clone .isra.0]": how GCC split the function.
  for (;;) {
    kj::StringPtr text = name;
    kj::Maybe<size_t> found;
    for (size_t i = 0; i + 8 <= text.size(); ++i) {
      if (text.slice(i).startsWith(" [clone ")) {
        found = i;
        break;
      }
    }
    KJ_IF_MAYBE(at, found) {
      size_t close = *at;
      while (close < text.size() && text[close] != ']') ++close;
      name = kj::str(text.slice(0, *at), text.slice(kj::min(close + 1, text.size())));
    } else {
      break;
    }
  }
  // A coroutine's body: "f(f(args)::_ZN…Frame*)" names the frame type; "f(args)" is the call.
  kj::StringPtr text = name;
  size_t mangled = 0;
  for (size_t i = 0; i + 4 <= text.size(); ++i) {
    if (text.slice(i).startsWith("::_Z")) mangled = i;
  }
  if (mangled > 0 && contains(text.slice(mangled), "Frame*)")) {
    for (size_t i = 0; i < mangled; ++i) {
      if (text[i] == '(' && text.slice(i + 1).startsWith(kj::heapString(text.slice(0, i)))) {
        size_t close = mangled;
        while (close < text.size() && text[close] != ')') ++close;
        return kj::str(text.slice(i + 1, mangled), text.slice(kj::min(close + 1, text.size())));
      }
    }
  }
  return name;
}

kj::StringPtr frameOwner(kj::StringPtr cleanName, kj::StringPtr file, kj::StringPtr module) {
  kj::String storage;
  kj::StringPtr path = functionPath(cleanName, storage);
  kj::StringPtr owner = nullptr;
  if (path.startsWith("harrow::")) {
    owner = "harrow";
  } else if (path.startsWith("kj::")) {
    owner = "kj";
  } else if (path.startsWith("capnp::")) {
    owner = "capnp";
  } else if (path.startsWith("std::") || path.startsWith("__gnu_cxx::") ||
             path.startsWith("__cxxabiv1::")) {
    owner = "std";
  } else if (contains(cleanName, "::Server::dispatch(unsigned short, harrow::IncomingTask&)")) {
    owner = "harrow";  // capnpc-harrow's bindings, when they have no line tables
  } else if (file.size() > 0 && isHarrowFile(file)) {
    owner = "harrow";  // generated bindings
  } else if (path.findFirst(':') == nullptr &&
             (path.startsWith("_") || path == "start_thread" || path == "clone" ||
              path == "clone3")) {
    owner = "libc";
  } else if (module.size() > 0) {
    kj::StringPtr base = baseName(module);
    if (base.startsWith("libc.so") || base.startsWith("ld-linux")) owner = "libc";
    if (base.startsWith("libstdc++") || base.startsWith("libgcc_s")) owner = "std";
    if (base.startsWith("libkj")) owner = "kj";
    if (base.startsWith("libcapnp")) owner = "capnp";
    if (base.startsWith("libharrow")) owner = "harrow";
  }
  // harrow's own tests and examples are code in namespace harrow too: the user's, not harrow's.
  if (owner == "harrow" && file.size() > 0 && !isHarrowFile(file)) owner = nullptr;
  return owner;
}

kj::String symbolize(kj::ArrayPtr<void* const> trace) {
  // Per thread (an actor is one thread; tests may run several) and per process (see Modules).
  thread_local kj::Maybe<kj::Own<Modules>> modules;
  KJ_IF_MAYBE(m, modules) {
    if (!(*m)->current()) modules = nullptr;
  }
  if (modules == nullptr) modules = kj::heap<Modules>();
  Modules& m = *KJ_ASSERT_NONNULL(modules);

  struct Line {
    size_t index;
    kj::String text;
    kj::StringPtr owner;  // nullptr: the user's
    kj::String name;
  };
  kj::Vector<Line> frames;
  kj::Maybe<size_t> loop;
  for (auto i : kj::indices(trace)) {
    auto frame = m.frame(reinterpret_cast<uintptr_t>(trace[i]));
    // Below the event loop's turn is whoever runs the loop (main, a test): nothing to do with
    // the error, and different from one run to the next. The trace ends there.
    if (frame.name.startsWith("kj::EventLoop::turn()") || frame.name.startsWith("kj::_::waitImpl(")) {
      loop = i;
      break;
    }
    auto owner = frameOwner(frame.name, frame.file, frame.module);
    auto text = frame.file.size() > 0 ? kj::str(frame.name, " at ", frame.file, ":", frame.line)
                                      : kj::str(frame.name);
    frames.add(Line{i, kj::mv(text), owner, kj::mv(frame.name)});
  }

  const char* mode = getenv("HARROW_TRACE");
  bool full = mode != nullptr && kj::StringPtr(mode) == "full";
  bool anyUsers = false;
  for (auto& f : frames) anyUsers = anyUsers || f.owner == nullptr;

  kj::Vector<kj::String> lines;
  if (full || !anyUsers) {
    for (auto& f : frames) lines.add(kj::str("#", f.index, " ", f.text));
  } else {
    kj::Vector<kj::StringPtr> owners;
    size_t folded = 0;
    kj::StringPtr previous;
    size_t previousIndex = 0;
    for (auto& f : frames) {
      if (f.owner != nullptr) {
        ++folded;
        bool seen = false;
        for (auto o : owners) seen = seen || o == f.owner;
        if (!seen) owners.add(f.owner);
        continue;
      }
      // A coroutine's body is called by its starting function of the same name (the ramp): one
      // call, shown once, at the line inside the body.
      if (lines.size() > 0 && f.index == previousIndex + 1 && f.name == previous) {
        previousIndex = f.index;
        continue;
      }
      lines.add(kj::str("#", f.index, " ", f.text));
      previous = f.name;
      previousIndex = f.index;
    }
    if (folded > 0) {
      // Always in this order, whichever came first in the trace.
      constexpr kj::StringPtr ORDER[] = {"harrow"_kj, "kj"_kj, "capnp"_kj, "std"_kj, "libc"_kj};
      auto rank = [&](kj::StringPtr owner) {
        for (auto i : kj::indices(ORDER)) if (ORDER[i] == owner) return i;
        return kj::size(ORDER);
      };
      std::sort(owners.begin(), owners.end(),
                [&](kj::StringPtr a, kj::StringPtr b) { return rank(a) < rank(b); });
      lines.add(kj::str("\u2026 ", folded, folded == 1 ? " frame in " : " frames in ",
                        listed(owners), " (HARROW_TRACE=full shows them)"));
    }
  }
  KJ_IF_MAYBE(i, loop) lines.add(kj::str("#", *i, " (the event loop)"));
  return kj::strArray(lines, "\n");
}

bool stackTracesOff() {
  const char* mode = getenv("HARROW_TRACE");
  return mode != nullptr && kj::StringPtr(mode) == "off";
}

}  // namespace harrow::_
