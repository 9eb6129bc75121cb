// The imported files a capnp run did not load, compiled on their own so that the struct names in
// $Harrow.stream / $Harrow.context resolve through imports always (resolve.h).
//
//   ImportLoader imports;
//   for (auto file : request.getRequestedFiles()) imports.loadMissing(index, file);
//
// Why: capnp loads an imported file's declarations only when the schema's own code uses them. A
// struct named only in an annotation string (`item = "Shared"`) is not such a use, so when the
// imported file is not itself on the command line (harrow_capnp_library compiles `srcs`, and a
// schema shared through `capnp_deps` is not among them) its nodes are missing from the request.
// The loader runs the same capnp (the plugin's parent process, /proc/<ppid>/exe), in the same
// directory and with the same import path (its command line's -I / --import-path /
// --no-standard-import), on each missing import, `-o-` (the request on standard output), and
// adds the nodes to the index. An import it
// cannot compile is left out: resolution then reports the name as not found.

#pragma once

#include "codegen/schema_index.h"

#include <capnp/message.h>
#include <kj/memory.h>

#include <string>
#include <vector>

namespace harrow::codegen {

class ImportLoader {
public:
  ImportLoader();

  // Adds to `index` the nodes of every file `file` imports whose file node it lacks.
  void loadMissing(SchemaIndex& index, CodeGeneratorRequest::RequestedFile::Reader file);

private:
  std::string capnp;                      // the compiler to run
  std::string cwd;                        // the directory it ran in (paths are relative to it)
  std::vector<std::string> importFlags;   // as the parent run had them
  std::vector<std::string> importDirs;    // where "/x.capnp" imports are looked for
  std::vector<kj::Own<capnp::MessageReader>> loaded;  // the index refers into these

  // The path of import `name` of the file at `importer`, or "" if it is nowhere.
  std::string locate(const std::string& importer, const std::string& name) const;
};

}  // namespace harrow::codegen
