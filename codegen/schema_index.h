// Lookups over one CodeGeneratorRequest: nodes by id, their names in the schema and in C++,
// and their doc comments. Knows capnp's own C++ naming rules; nothing harrow-specific.

#pragma once

#include <capnp/schema.capnp.h>

#include <cstdint>
#include <map>
#include <string>

namespace harrow::codegen {

using capnp::schema::CodeGeneratorRequest;
using capnp::schema::Node;

class SchemaIndex {
public:
  explicit SchemaIndex(CodeGeneratorRequest::Reader request);

  // Adds the nodes of another request (an imported file compiled on its own: imports.h) that
  // this one lacks. `more`'s message must outlive the index.
  void add(CodeGeneratorRequest::Reader more);

  bool has(uint64_t id) const { return nodes.count(id) != 0; }
  Node::Reader node(uint64_t id) const;  // the node must exist

  // "Counter.Tick" for examples/counter/counter.capnp:Counter.Tick; "" for a file.
  std::string scopedName(uint64_t id) const;
  // The file a node is declared in ("examples/counter/counter.capnp"); "" if detached.
  std::string fileOf(uint64_t id) const;
  uint64_t fileIdOf(uint64_t id) const;  // 0 if detached (method param structs)

  // The C++ namespace of a file from $Cxx.namespace, without leading or trailing "::"
  // ("harrow::wire"); "" for the global namespace.
  std::string cxxNamespace(uint64_t fileId) const;
  // The fully qualified C++ name of a named struct, enum or interface ("::harrow::wire::Start").
  std::string cxxName(uint64_t id) const;
  // The C++ name capnp gives a method's implicit param or result struct ("AddParams").
  static std::string implicitStructName(const std::string& methodName, bool results);

  // The name capnp's C++ generator uses for a node, field or method: its $Cxx.name or `name`.
  static std::string cxxIdentifier(capnp::List<capnp::schema::Annotation>::Reader annotations,
                                   capnp::Text::Reader name);

  std::string docComment(uint64_t id) const;
  std::string memberDocComment(uint64_t id, unsigned member) const;

  // "struct", "enum", "interface", "const", "annotation" or "file".
  static const char* kindName(Node::Reader node);

private:
  std::map<uint64_t, Node::Reader> nodes;
  std::map<uint64_t, Node::SourceInfo::Reader> sourceInfo;

  std::string nameInParent(Node::Reader node) const;
};

// "add" -> "Add", as capnp's C++ generator capitalizes.
std::string titleCase(const std::string& name);

}  // namespace harrow::codegen
