#include "codegen/schema_index.h"

#include <kj/debug.h>

namespace harrow::codegen {

namespace {

// From /usr/include/capnp/c++.capnp.
constexpr uint64_t CXX_NAMESPACE_ANNOTATION_ID = 0xb9c6f99ebf805f2cull;
constexpr uint64_t CXX_NAME_ANNOTATION_ID = 0xf264a779fef191ceull;

}  // namespace

std::string titleCase(const std::string& name) {
  std::string result = name;
  if (!result.empty() && result[0] >= 'a' && result[0] <= 'z') result[0] += 'A' - 'a';
  return result;
}

SchemaIndex::SchemaIndex(CodeGeneratorRequest::Reader request) { add(request); }

void SchemaIndex::add(CodeGeneratorRequest::Reader more) {
  for (auto node : more.getNodes()) nodes.emplace(node.getId(), node);
  for (auto info : more.getSourceInfo()) sourceInfo.emplace(info.getId(), info);
}

Node::Reader SchemaIndex::node(uint64_t id) const {
  auto it = nodes.find(id);
  KJ_REQUIRE(it != nodes.end(), "node missing from the CodeGeneratorRequest", id);
  return it->second;
}

std::string SchemaIndex::scopedName(uint64_t id) const {
  auto displayName = node(id).getDisplayName();
  KJ_IF_MAYBE(colon, displayName.findFirst(':')) {
    return displayName.slice(*colon + 1).cStr();
  }
  return "";
}

uint64_t SchemaIndex::fileIdOf(uint64_t id) const {
  for (;;) {
    auto n = node(id);
    if (n.isFile()) return id;
    id = n.getScopeId();
    if (id == 0 || !has(id)) return 0;
  }
}

std::string SchemaIndex::fileOf(uint64_t id) const {
  uint64_t fileId = fileIdOf(id);
  return fileId == 0 ? "" : node(fileId).getDisplayName().cStr();
}

std::string SchemaIndex::cxxNamespace(uint64_t fileId) const {
  for (auto annotation : node(fileId).getAnnotations()) {
    if (annotation.getId() == CXX_NAMESPACE_ANNOTATION_ID) {
      std::string ns = annotation.getValue().getText().cStr();
      while (ns.starts_with("::")) ns = ns.substr(2);
      while (ns.ends_with("::")) ns.resize(ns.size() - 2);
      return ns;
    }
  }
  return "";
}

std::string SchemaIndex::cxxIdentifier(
    capnp::List<capnp::schema::Annotation>::Reader annotations, capnp::Text::Reader name) {
  for (auto annotation : annotations) {
    if (annotation.getId() == CXX_NAME_ANNOTATION_ID) {
      return annotation.getValue().getText().cStr();
    }
  }
  return name.cStr();
}

std::string SchemaIndex::nameInParent(Node::Reader n) const {
  auto parent = node(n.getScopeId());
  for (auto nested : parent.getNestedNodes()) {
    if (nested.getId() == n.getId()) return cxxIdentifier(n.getAnnotations(), nested.getName());
  }
  KJ_FAIL_REQUIRE("node not listed in its scope's nested nodes", n.getDisplayName());
}

std::string SchemaIndex::cxxName(uint64_t id) const {
  auto n = node(id);
  KJ_REQUIRE(!n.isFile() && n.getScopeId() != 0, "node has no C++ name of its own",
             n.getDisplayName());
  std::string name = nameInParent(n);
  auto parent = node(n.getScopeId());
  if (parent.isFile()) {
    std::string ns = cxxNamespace(parent.getId());
    return ns.empty() ? "::" + name : "::" + ns + "::" + name;
  }
  return cxxName(parent.getId()) + "::" + name;
}

std::string SchemaIndex::implicitStructName(const std::string& methodName, bool results) {
  return titleCase(methodName) + (results ? "Results" : "Params");
}

std::string SchemaIndex::docComment(uint64_t id) const {
  auto it = sourceInfo.find(id);
  return it == sourceInfo.end() ? "" : it->second.getDocComment().cStr();
}

std::string SchemaIndex::memberDocComment(uint64_t id, unsigned member) const {
  auto it = sourceInfo.find(id);
  if (it == sourceInfo.end()) return "";
  auto members = it->second.getMembers();
  return member < members.size() ? members[member].getDocComment().cStr() : "";
}

const char* SchemaIndex::kindName(Node::Reader node) {
  switch (node.which()) {
    case Node::FILE: return "file";
    case Node::STRUCT: return node.getStruct().getIsGroup() ? "group" : "struct";
    case Node::ENUM: return "enum";
    case Node::INTERFACE: return "interface";
    case Node::CONST: return "const";
    case Node::ANNOTATION: return "annotation";
  }
  return "declaration";
}

}  // namespace harrow::codegen
