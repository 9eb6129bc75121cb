// Writes the C++ for one checked schema file: `<file>.harrow.h` (FooActor, FooActor::Server,
// FooActor::Portal for each actor interface Foo) and `<file>.harrow.c++` (their out-of-line
// members). A file without actor interfaces gets a header and source that only say so.

#pragma once

#include "codegen/model.h"

#include <string>

namespace harrow::codegen {

std::string emitHeader(const FileModel& file);
std::string emitSource(const FileModel& file);

}  // namespace harrow::codegen
