// Stack traces as people read them: a function name and file:line per frame, symbolized in the
// process that raised the error (only it has the addresses' meaning), with elfutils' libdw.
//
//   stack:
//   #0 KvImpl::remove(harrow::ServerCall<Kv::RemoveParams, Kv::RemoveResults>) at main.c++:50
//   … 29 frames in harrow and kj (HARROW_TRACE=full shows them)
//   #32 (the event loop)
//
// The user's frames come first; harrow's, KJ's, Cap'n Proto's, the C++ library's and libc's are
// folded into one line, as they are the same in every trace (Python's traceback hides its own
// frames likewise). A trace with no frame of the user's (an error harrow raised itself) is shown
// whole. HARROW_TRACE=full in the raising process's environment shows every frame; HARROW_TRACE=off
// sends no stack at all (stackTracesOff()).

#pragma once

#include <kj/array.h>
#include <kj/string.h>

namespace harrow::_ {

// One line per frame, innermost first: "#0 ns::function(args) at path/file.c++:42" — or the
// module and offset where there is no symbol, or the bare address where there is no module.
// File and line need line tables (-g1; harrow's Bazel macros and CMake targets add it to the
// user's code); names need a symbol table. The trace stops at the event loop: what lies below it
// is whoever runs the loop.
kj::String symbolize(kj::ArrayPtr<void* const> trace);

// HARROW_TRACE=off in this process's environment: the errors it sends carry no stack (the rest of
// the remote trace, KJ's context lines and the relayed traces, still goes). For programs that
// raise errors in bulk and read none of their stacks: symbolizing one costs more than the rest
// of an error's round trip (the fuzz harnesses spent a sixth of their time in it).
bool stackTracesOff();

// A demangled name without the compiler's noise: "(anonymous namespace)::" and
// " [clone .actor]" go, and a coroutine body GCC names "f(f(args)::_ZN…Frame*)" reads "f(args)".
kj::String cleanFunctionName(kj::StringPtr demangled);

// Who a frame belongs to: nullptr for the user's code, else the name of the library it is in
// ("harrow", "kj", "capnp", "std", "libc"). `file` is empty when the frame has no line table.
// A frame named in namespace harrow counts as the user's when its file is known and is not one of
// harrow's runtime (harrow's own tests and examples are "users").
kj::StringPtr frameOwner(kj::StringPtr cleanName, kj::StringPtr file, kj::StringPtr module);

}  // namespace harrow::_
