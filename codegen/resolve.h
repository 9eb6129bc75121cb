// Resolves the struct names written in $Harrow.stream / $Harrow.context ("Tick", "Common.Tick")
// to schema nodes. The rule, also documented in idl/harrow/actor.capnp:
//   1. The first part is looked up in the interface's nested declarations, then in each
//      enclosing scope outwards up to the file's top level, then among the top-level
//      declarations of the files the schema imports (found in two of them: ambiguous).
//   2. Each further part is looked up among the nested declarations of the previous one.
//   3. The result must be a non-generic struct.

#pragma once

#include "codegen/schema_index.h"

#include <string>

namespace harrow::codegen {

struct Resolved {
  uint64_t id = 0;    // the struct's node id, or 0 on error
  std::string error;  // why not, when id == 0: "no declaration named \"Tik\" in ..."
};

Resolved resolveStructName(const SchemaIndex& index, uint64_t interfaceId,
                           CodeGeneratorRequest::RequestedFile::Reader file,
                           const std::string& name);

}  // namespace harrow::codegen
