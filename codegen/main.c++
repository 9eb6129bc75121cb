// capnpc-harrow: the Cap'n Proto compiler plugin that generates harrow's actor bindings.
//
//   capnp compile -I idl --no-standard-import -I /usr/include -oc++:OUT
//       -o<path>/capnpc-harrow:OUT schema.capnp
//
// For every schema given on the command line it writes `<schema>.harrow.h` and
// `<schema>.harrow.c++` next to capnp's own `<schema>.h` (capnp runs plugins inside OUT). A
// schema without $Harrow.actor interfaces still gets both files, each saying so, so that a
// build knows the outputs from the file names alone. If any schema breaks a harrow rule, the
// errors go to stderr (file, interface, method), nothing is written, and the exit status is 1.

#include "codegen/analyze.h"
#include "codegen/emit.h"
#include "codegen/imports.h"

#include <capnp/serialize.h>
#include <kj/debug.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace harrow::codegen {
namespace {

// Creates the directories leading to `path` (a relative file path).
bool makeParents(const std::string& path) {
  for (size_t slash = path.find('/'); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    std::string dir = path.substr(0, slash);
    if (dir.empty()) continue;
    if (mkdir(dir.c_str(), 0777) != 0 && errno != EEXIST) {
      fprintf(stderr, "capnpc-harrow: cannot create %s: %s\n", dir.c_str(), strerror(errno));
      return false;
    }
  }
  return true;
}

bool writeFile(const std::string& path, const std::string& text) {
  if (!makeParents(path)) return false;
  FILE* file = fopen(path.c_str(), "w");
  if (file == nullptr) {
    fprintf(stderr, "capnpc-harrow: cannot write %s: %s\n", path.c_str(), strerror(errno));
    return false;
  }
  bool ok = fwrite(text.data(), 1, text.size(), file) == text.size();
  ok = fclose(file) == 0 && ok;
  if (!ok) fprintf(stderr, "capnpc-harrow: error writing %s\n", path.c_str());
  return ok;
}

int run() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = uint64_t(1) << 40;  // schemas can be large; we trust capnp
  capnp::StreamFdMessageReader message(STDIN_FILENO, options);
  auto request = message.getRoot<CodeGeneratorRequest>();

  SchemaIndex index(request);
  ImportLoader imports;  // holds the messages of the nodes it adds to `index`
  for (auto file : request.getRequestedFiles()) imports.loadMissing(index, file);
  Diagnostics diagnostics;
  std::vector<FileModel> files;
  for (auto file : request.getRequestedFiles()) {
    files.push_back(analyzeFile(index, file, diagnostics));
  }
  if (diagnostics.hasErrors()) {
    for (auto& message : diagnostics.messages()) fprintf(stderr, "%s\n", message.c_str());
    return 1;
  }

  for (auto& file : files) {
    if (!writeFile(file.path + ".harrow.h", emitHeader(file)) ||
        !writeFile(file.path + ".harrow.c++", emitSource(file))) {
      return 1;
    }
  }
  return 0;
}

}  // namespace
}  // namespace harrow::codegen

int main() {
  int status = 1;
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&] { status = harrow::codegen::run(); })) {
    fprintf(stderr, "capnpc-harrow: internal error: %s\n",
            kj::str(*exception).cStr());
    return 1;
  }
  return status;
}
