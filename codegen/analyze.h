// Turns one requested schema file into the model the emitter writes out, checking everything
// harrow needs on the way (see idl/harrow/actor.capnp for the rules). Problems go to
// `diagnostics`; the model is only meaningful when there are none.

#pragma once

#include "codegen/diagnostics.h"
#include "codegen/model.h"
#include "codegen/schema_index.h"

namespace harrow::codegen {

FileModel analyzeFile(const SchemaIndex& index, CodeGeneratorRequest::RequestedFile::Reader file,
                      Diagnostics& diagnostics);

}  // namespace harrow::codegen
