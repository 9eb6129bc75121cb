// Stack traces as people read them: a function name and file:line per frame, symbolized in the
// process that raised the error (only it has the addresses' meaning), with elfutils' libdw.

#pragma once

#include <kj/array.h>
#include <kj/string.h>

namespace harrow::_ {

// One line per frame, innermost first: "#0 ns::function(args) at path/file.c++:42" — or the
// module and offset where there is no symbol, or the bare address where there is no module.
// File and line need debug information (-g, as harrow's builds have); names need a symbol table.
// The trace stops at the event loop: what lies below it is whoever runs the loop.
kj::String symbolize(kj::ArrayPtr<void* const> trace);

}  // namespace harrow::_
