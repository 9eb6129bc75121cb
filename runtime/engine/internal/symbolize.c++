#include "runtime/engine/internal/symbolize.h"

#include <kj/debug.h>
#include <kj/vector.h>

#include <cxxabi.h>
#include <elfutils/libdwfl.h>
#include <stdlib.h>
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

  kj::String frame(uintptr_t address) {
    if (dwfl == nullptr) return kj::str("0x", kj::hex(address));
    // A return address points after the call: look up the call instruction itself.
    Dwarf_Addr at = address - 1;
    Dwfl_Module* module = dwfl_addrmodule(dwfl, at);
    if (module == nullptr) return kj::str("0x", kj::hex(address));
    kj::String name;
    if (const char* symbol = dwfl_module_addrname(module, at)) {
      int status = 0;
      char* demangled = abi::__cxa_demangle(symbol, nullptr, nullptr, &status);
      name = kj::str(status == 0 && demangled != nullptr ? demangled : symbol);
      free(demangled);
    } else {
      Dwarf_Addr start;
      const char* file = dwfl_module_info(module, nullptr, &start, nullptr, nullptr, nullptr,
                                          nullptr, nullptr);
      name = kj::str(file != nullptr ? file : "?", "+0x", kj::hex(at - start));
    }
    if (Dwfl_Line* line = dwfl_module_getsrc(module, at)) {
      int number = 0;
      const char* file = dwfl_lineinfo(line, nullptr, &number, nullptr, nullptr, nullptr);
      if (file != nullptr) return kj::str(name, " at ", file, ":", number);
    }
    return name;
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

kj::String symbolize(kj::ArrayPtr<void* const> trace) {
  // Per thread (an actor is one thread; tests may run several) and per process (see Modules).
  thread_local kj::Maybe<kj::Own<Modules>> modules;
  KJ_IF_MAYBE(m, modules) {
    if (!(*m)->current()) modules = nullptr;
  }
  if (modules == nullptr) modules = kj::heap<Modules>();
  Modules& m = *KJ_ASSERT_NONNULL(modules);
  kj::Vector<kj::String> lines;
  for (auto i : kj::indices(trace)) {
    auto frame = m.frame(reinterpret_cast<uintptr_t>(trace[i]));
    // Below the event loop's turn is whoever runs the loop (main, a test): nothing to do with
    // the error, and different from one run to the next. The trace ends there.
    if (frame.startsWith("kj::EventLoop::turn()") || frame.startsWith("kj::_::waitImpl(")) {
      lines.add(kj::str("#", i, " (the event loop)"));
      break;
    }
    lines.add(kj::str("#", i, " ", frame));
  }
  return kj::strArray(lines, "\n");
}

}  // namespace harrow::_
