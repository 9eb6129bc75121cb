#include "codegen/resolve.h"

#include <vector>

namespace harrow::codegen {

namespace {

std::vector<std::string> splitDotted(const std::string& name) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    size_t dot = name.find('.', start);
    parts.push_back(name.substr(start, dot - start));
    if (dot == std::string::npos) return parts;
    start = dot + 1;
  }
}

// The id of the declaration `name` nested directly in `scope`, or 0.
uint64_t findNested(const SchemaIndex& index, uint64_t scope, const std::string& name) {
  if (!index.has(scope)) return 0;
  for (auto nested : index.node(scope).getNestedNodes()) {
    if (name == nested.getName().cStr() && index.has(nested.getId())) return nested.getId();
  }
  return 0;
}

// "Counter" or "counter.capnp" for an error message.
std::string describeScope(const SchemaIndex& index, uint64_t id) {
  std::string scoped = index.scopedName(id);
  return scoped.empty() ? index.fileOf(id) : scoped;
}

// Step 1 of the rule: the first part of the name.
Resolved resolveFirst(const SchemaIndex& index, uint64_t interfaceId,
                      CodeGeneratorRequest::RequestedFile::Reader file, const std::string& part) {
  // The interface and its enclosing scopes, innermost first, ending with the file.
  for (uint64_t scope = interfaceId; scope != 0 && index.has(scope);) {
    if (uint64_t id = findNested(index, scope, part)) return {id, ""};
    auto node = index.node(scope);
    if (node.isFile()) break;
    scope = node.getScopeId();
  }

  // The top level of each imported file.
  Resolved found;
  std::string foundIn;
  for (auto import : file.getImports()) {
    uint64_t id = findNested(index, import.getId(), part);
    if (id == 0 || id == found.id) continue;
    std::string importName = import.getName().cStr();
    if (found.id != 0) {
      return {0, "\"" + part + "\" is declared in both " + foundIn + " and " + importName +
                     "; declare the struct in this file, or nest it so a dotted name is unique"};
    }
    found.id = id;
    foundIn = importName;
  }
  if (found.id != 0) return found;

  return {0, "no declaration named \"" + part + "\" in " + describeScope(index, interfaceId) +
                 ", its enclosing scopes, or the top level of " + std::string(file.getFilename()) +
                 " and the files it imports"};
}

}  // namespace

Resolved resolveStructName(const SchemaIndex& index, uint64_t interfaceId,
                           CodeGeneratorRequest::RequestedFile::Reader file,
                           const std::string& name) {
  auto parts = splitDotted(name);
  for (auto& part : parts) {
    if (part.empty()) return {0, "not a struct name"};
  }

  Resolved result = resolveFirst(index, interfaceId, file, parts[0]);
  for (size_t i = 1; i < parts.size() && result.id != 0; ++i) {
    uint64_t next = findNested(index, result.id, parts[i]);
    if (next == 0) {
      return {0, describeScope(index, result.id) +
                     " has no nested declaration named \"" + parts[i] + "\""};
    }
    result.id = next;
  }
  if (result.id == 0) return result;

  auto node = index.node(result.id);
  if (!node.isStruct() || node.getStruct().getIsGroup()) {
    return {0, std::string("names ") + SchemaIndex::kindName(node) + " " +
                   index.scopedName(result.id) + ", not a struct"};
  }
  if (node.getIsGeneric()) {
    return {0, "names generic struct " + index.scopedName(result.id) +
                   "; harrow streams and contexts need a concrete struct"};
  }
  return result;
}

}  // namespace harrow::codegen
