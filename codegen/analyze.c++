#include "codegen/analyze.h"

#include "codegen/annotations.h"
#include "codegen/resolve.h"

#include <harrow/actor.capnp.h>

#include <algorithm>
#include <map>
#include <set>

namespace harrow::codegen {

namespace {

using capnp::schema::Field;
using capnp::schema::Type;
using StreamOptions = harrow::annotations::StreamOptions;
using ContextOptions = harrow::annotations::ContextOptions;

bool isCxxKeyword(const std::string& name) {
  static const std::set<std::string> keywords = {
      "alignas", "alignof", "and", "and_eq", "asm", "auto", "bitand", "bitor", "bool", "break",
      "case", "catch", "char", "char8_t", "char16_t", "char32_t", "class", "compl", "concept",
      "const", "consteval", "constexpr", "constinit", "const_cast", "continue", "co_await",
      "co_return", "co_yield", "decltype", "default", "delete", "do", "double", "dynamic_cast",
      "else", "enum", "explicit", "export", "extern", "false", "float", "for", "friend", "goto",
      "if", "inline", "int", "long", "mutable", "namespace", "new", "noexcept", "not", "not_eq",
      "nullptr", "operator", "or", "or_eq", "private", "protected", "public", "register",
      "reinterpret_cast", "requires", "return", "short", "signed", "sizeof", "static",
      "static_assert", "static_cast", "struct", "switch", "template", "this", "thread_local",
      "throw", "true", "try", "typedef", "typeid", "typename", "union", "unsigned", "using",
      "virtual", "void", "volatile", "wchar_t", "while", "xor", "xor_eq"};
  return keywords.count(name) != 0;
}

// Members of harrow::ActorServer and of the generated Portal that a method must not shadow.
bool isReservedMethodName(const std::string& name) {
  static const std::set<std::string> reserved = {"interfaceId", "interfaceName", "methodKind",
                                                 "methodName", "dispatch", "raw", "Interface"};
  return reserved.count(name) != 0;
}

// Names a flattened argument must not take: they would hide what the generated body uses.
bool isReservedArgumentName(const std::string& name) {
  static const std::set<std::string> reserved = {"body", "request", "kj", "harrow", "capnp",
                                                 "std"};
  return reserved.count(name) != 0;
}

// The C++ argument type of a param field for flattening, or "" if the field cannot be flattened.
std::string flatArgumentType(const SchemaIndex& index, Type::Reader type) {
  switch (type.which()) {
    case Type::BOOL: return "bool";
    case Type::INT8: return "int8_t";
    case Type::INT16: return "int16_t";
    case Type::INT32: return "int32_t";
    case Type::INT64: return "int64_t";
    case Type::UINT8: return "uint8_t";
    case Type::UINT16: return "uint16_t";
    case Type::UINT32: return "uint32_t";
    case Type::UINT64: return "uint64_t";
    case Type::FLOAT32: return "float";
    case Type::FLOAT64: return "double";
    case Type::TEXT: return "kj::StringPtr";
    case Type::DATA: return "kj::ArrayPtr<const kj::byte>";
    case Type::ENUM: {
      uint64_t id = type.getEnum().getTypeId();
      return index.has(id) ? index.cxxName(id) : "";
    }
    default: return "";  // void, lists, structs, interfaces, AnyPointer
  }
}

class FileAnalyzer {
public:
  FileAnalyzer(const SchemaIndex& index, CodeGeneratorRequest::RequestedFile::Reader file,
               Diagnostics& diagnostics)
      : index(index), file(file), diagnostics(diagnostics) {
    model.path = file.getFilename().cStr();
    model.cxxNamespace = index.cxxNamespace(file.getId());
  }

  FileModel run() {
    visit(file.getId());
    // capnp's header includes only the imports its own code uses; the structs named in
    // annotations may come from others.
    for (auto import : file.getImports()) {
      if (usedImports.count(import.getId()) == 0) continue;
      std::string name = import.getName().cStr();
      model.includes.push_back(name.starts_with("/") ? "<" + name.substr(1) + ".h>"
                                                     : "\"" + name + ".h\"");
    }
    return std::move(model);
  }

private:
  const SchemaIndex& index;
  CodeGeneratorRequest::RequestedFile::Reader file;
  Diagnostics& diagnostics;
  FileModel model;
  std::set<uint64_t> usedImports;  // files other than this one that annotations name structs in

  // Every declaration in the file, depth first in declaration order.
  void visit(uint64_t scope) {
    for (auto nested : index.node(scope).getNestedNodes()) {
      if (!index.has(nested.getId())) continue;
      auto node = index.node(nested.getId());
      if (node.isInterface()) {
        if (hasAnnotation(node.getAnnotations(), ACTOR_ANNOTATION_ID)) {
          analyzeInterface(node);
        } else {
          checkPlainInterface(node);
        }
      }
      visit(node.getId());
    }
  }

  static bool hasAnnotation(capnp::List<capnp::schema::Annotation>::Reader annotations,
                            uint64_t id) {
    for (auto annotation : annotations) {
      if (annotation.getId() == id) return true;
    }
    return false;
  }

  template <typename Options>
  static kj::Maybe<typename Options::Reader> annotationValue(
      capnp::List<capnp::schema::Annotation>::Reader annotations, uint64_t id) {
    for (auto annotation : annotations) {
      if (annotation.getId() == id) {
        return annotation.getValue().getStruct().template getAs<Options>();
      }
    }
    return nullptr;
  }

  Where whereMethod(const std::string& interface, const std::string& method, unsigned ordinal) {
    return {model.path, interface, method + " @" + std::to_string(ordinal)};
  }

  // $Harrow.stream and $Harrow.context only mean something in a $Harrow.actor interface.
  void checkPlainInterface(Node::Reader node) {
    auto methods = node.getInterface().getMethods();
    for (unsigned i = 0; i < methods.size(); ++i) {
      auto annotations = methods[i].getAnnotations();
      if (hasAnnotation(annotations, STREAM_ANNOTATION_ID) ||
          hasAnnotation(annotations, CONTEXT_ANNOTATION_ID)) {
        diagnostics.error(
            whereMethod(index.scopedName(node.getId()), methods[i].getName().cStr(), i),
            "$Harrow.stream/$Harrow.context on a method of an interface that is not "
            "$Harrow.actor; mark the interface `$Harrow.actor`");
      }
    }
  }

  void analyzeInterface(Node::Reader node) {
    Interface interface;
    interface.id = node.getId();
    interface.name = index.scopedName(node.getId());
    interface.cxxName = index.cxxName(node.getId());
    interface.doc = index.docComment(node.getId());

    // "::ns::Outer::Counter" -> "Outer_CounterActor" (next to capnp's types, in their namespace).
    std::string local = interface.cxxName.substr(
        model.cxxNamespace.empty() ? 2 : model.cxxNamespace.size() + 4);
    for (size_t colons; (colons = local.find("::")) != std::string::npos;) {
      local.replace(colons, 2, "_");
    }
    interface.actorName = local + "Actor";

    Where where{model.path, interface.name, ""};
    bool ok = true;
    if (node.getIsGeneric()) {
      diagnostics.error(where, "a generic interface (or one nested in a generic struct) cannot "
                               "be a harrow actor");
      ok = false;
    }
    if (node.getInterface().getSuperclasses().size() > 0) {
      diagnostics.error(where, "an actor interface cannot extend other interfaces (its methods "
                               "would have other interface ids); list the methods here");
      ok = false;
    }

    auto methods = node.getInterface().getMethods();
    for (unsigned i = 0; i < methods.size(); ++i) {
      Method method;
      if (analyzeMethod(interface, methods[i], i, method)) {
        interface.methods.push_back(std::move(method));
      } else {
        ok = false;
      }
    }
    ok &= checkCollisions(node, interface);
    if (ok) model.interfaces.push_back(std::move(interface));
  }

  // Every C++ name the generated code (and capnp's, for implicit param structs) declares in one
  // scope must be declared once: two methods that map to the same name would otherwise fail deep
  // inside the generated header. Scopes: FooActor::Server and FooActor::Portal share the handler
  // and call-type names and the stream/context aliases; capnp's struct for the interface holds
  // its nested declarations and the implicit `FooParams`/`FooResults` structs.
  bool checkCollisions(Node::Reader node, const Interface& interface) {
    struct Owner {
      std::string who;   // "method delete @0", "nested struct FooParams"
      std::string what;  // "its handler and portal method", ...
      const Method* method = nullptr;
    };
    bool ok = true;
    auto claim = [&](std::map<std::string, Owner>& scope, const std::string& name, Owner owner) {
      auto [it, fresh] = scope.emplace(name, owner);
      if (fresh) return;
      Where where = owner.method != nullptr
          ? whereMethod(interface.name, owner.method->name, owner.method->ordinal)
          : Where{model.path, interface.name, ""};
      diagnostics.error(where, "generates the C++ name \"" + name + "\" (" + owner.what +
                               "), which " + it->second.who + " also generates (" +
                               it->second.what + "); rename one of them, e.g. with "
                               "$Cxx.name(\"...\")");
      ok = false;
    };
    std::map<std::string, Owner> members;  // FooActor::Server / FooActor::Portal
    std::map<std::string, Owner> nested;   // capnp's ::Foo
    for (auto entry : node.getNestedNodes()) {
      nested.emplace(entry.getName().cStr(),
                     Owner{std::string("the nested declaration ") + entry.getName().cStr(),
                           "a type capnp declares", nullptr});
    }
    auto methods = node.getInterface().getMethods();
    for (auto& method : interface.methods) {
      std::string who = "method " + method.name + " @" + std::to_string(method.ordinal);
      claim(members, method.cxxName, {who, "its handler and portal method", &method});
      claim(members, method.callTypeName(), {who, "its handler's call type", &method});
      std::string title = method.callTypeName();
      title.resize(title.size() - 4);
      if (method.kind == MethodKind::STREAM) {
        claim(members, title + "Stream", {who, "its stream type", &method});
      }
      if (method.kind == MethodKind::CONTEXT) {
        claim(members, title + "Context", {who, "its context type", &method});
      }
      auto proto = methods[method.ordinal];
      std::string capnpName = SchemaIndex::cxxIdentifier(proto.getAnnotations(), proto.getName());
      for (bool results : {false, true}) {
        uint64_t id = results ? proto.getResultStructType() : proto.getParamStructType();
        if (index.node(id).getScopeId() != 0) continue;  // a named struct, declared elsewhere
        claim(nested, SchemaIndex::implicitStructName(capnpName, results),
              {who, results ? "capnp's struct for its results" : "capnp's struct for its params",
               &method});
      }
    }
    return ok;
  }

  bool analyzeMethod(const Interface& interface, capnp::schema::Method::Reader proto,
                     unsigned ordinal, Method& method) {
    method.name = proto.getName().cStr();
    method.ordinal = ordinal;
    method.doc = index.memberDocComment(interface.id, ordinal);
    std::string capnpName = SchemaIndex::cxxIdentifier(proto.getAnnotations(), proto.getName());
    method.cxxName = isCxxKeyword(capnpName) ? capnpName + "_" : capnpName;
    Where where = whereMethod(interface.name, method.name, ordinal);
    bool ok = true;

    if (isReservedMethodName(method.cxxName)) {
      diagnostics.error(where, "the name \"" + method.cxxName + "\" is taken by harrow's "
                               "generated Server or Portal; rename the method");
      ok = false;
    }
    if (proto.getImplicitParameters().size() > 0 ||
        proto.getParamBrand().getScopes().size() > 0 ||
        proto.getResultBrand().getScopes().size() > 0) {
      diagnostics.error(where, "generic methods and generic param/result structs are not "
                               "supported by harrow");
      return false;
    }

    auto annotations = proto.getAnnotations();
    auto stream = annotationValue<StreamOptions>(annotations, STREAM_ANNOTATION_ID);
    auto context = annotationValue<ContextOptions>(annotations, CONTEXT_ANNOTATION_ID);
    if (stream != nullptr && context != nullptr) {
      diagnostics.error(where, "has both $Harrow.stream and $Harrow.context; a method is a "
                               "call (no annotation), a stream or a context");
      return false;
    }

    method.params = paramStruct(interface, capnpName, proto.getParamStructType(), false);
    method.results = paramStruct(interface, capnpName, proto.getResultStructType(), true);

    KJ_IF_MAYBE(options, stream) {
      method.kind = MethodKind::STREAM;
      if (!options->hasItem() || options->getItem().size() == 0) {
        diagnostics.error(where, "a stream needs an item struct: "
                                 "$Harrow.stream(item = \"StructName\")");
        ok = false;
      } else {
        ok &= resolve(interface, where, "item", options->getItem().cStr(), method.item);
      }
      auto results = index.node(proto.getResultStructType()).getStruct();
      if (results.getFields().size() > 0) {
        diagnostics.error(where, "a stream's results must be empty, `-> ()`: the items are its "
                                 "output (use a context to also return a result)");
        ok = false;
      }
    }
    KJ_IF_MAYBE(options, context) {
      method.kind = MethodKind::CONTEXT;
      if (!options->hasStarted() || options->getStarted().size() == 0) {
        diagnostics.error(where, "a context needs a started struct: "
                                 "$Harrow.context(started = \"StructName\", ...)");
        ok = false;
      } else {
        ok &= resolve(interface, where, "started", options->getStarted().cStr(), method.started);
      }
      if (options->getCallerSends().size() > 0) {
        ok &= resolve(interface, where, "callerSends", options->getCallerSends().cStr(),
                      method.callerSends);
      }
      if (options->getCalleeSends().size() > 0) {
        ok &= resolve(interface, where, "calleeSends", options->getCalleeSends().cStr(),
                      method.calleeSends);
      }
    }

    flatten(proto.getParamStructType(), method);
    if (ok) {
      for (auto* sent : {&method.item, &method.started, &method.callerSends, &method.calleeSends}) {
        if (!sent->isVoid()) noteOneField(*sent);
      }
    }
    return ok;
  }

  // Records `type` as a OneFieldStruct if it is one (see model.h).
  void noteOneField(const TypeRef& type) {
    for (auto& known : model.oneFieldStructs) {
      if (known.id == type.id) return;
    }
    auto node = index.node(type.id).getStruct();
    if (node.getDiscriminantCount() > 0 || node.getFields().size() != 1) return;
    auto field = node.getFields()[0];
    if (!field.isSlot()) return;
    std::string valueType = flatArgumentType(index, field.getSlot().getType());
    if (valueType.empty()) return;
    std::string name = SchemaIndex::cxxIdentifier(field.getAnnotations(), field.getName());
    model.oneFieldStructs.push_back({type.id, type.cxx, valueType, "set" + titleCase(name)});
  }

  TypeRef paramStruct(const Interface& interface, const std::string& methodName, uint64_t id,
                      bool results) {
    auto node = index.node(id);
    if (node.getScopeId() == 0) {
      // An inline param list `(n :Int64)`: capnp nests the struct in the interface.
      return {interface.cxxName + "::" + SchemaIndex::implicitStructName(methodName, results),
              index.scopedName(id), id};
    }
    return {index.cxxName(id), index.scopedName(id), id};
  }

  bool resolve(const Interface& interface, const Where& where, const char* field,
               const std::string& name, TypeRef& out) {
    Resolved resolved = resolveStructName(index, interface.id, file, name);
    if (resolved.id == 0) {
      diagnostics.error(where, std::string(field) + " = \"" + name + "\": " + resolved.error);
      return false;
    }
    out = {index.cxxName(resolved.id), index.scopedName(resolved.id), resolved.id};
    uint64_t fileId = index.fileIdOf(resolved.id);
    if (fileId != file.getId()) usedImports.insert(fileId);
    return true;
  }

  void flatten(uint64_t paramsId, Method& method) {
    auto params = index.node(paramsId).getStruct();
    if (params.getDiscriminantCount() > 0) return;  // a union: pick the member with `fill`

    std::vector<Field::Reader> fields;
    for (auto field : params.getFields()) fields.push_back(field);
    std::sort(fields.begin(), fields.end(), [](Field::Reader a, Field::Reader b) {
      return a.getCodeOrder() < b.getCodeOrder();
    });
    std::vector<FlatParam> flat;
    for (auto field : fields) {
      if (!field.isSlot()) return;  // a group
      std::string type = flatArgumentType(index, field.getSlot().getType());
      if (type.empty()) return;
      std::string name = SchemaIndex::cxxIdentifier(field.getAnnotations(), field.getName());
      std::string argument =
          isCxxKeyword(name) || isReservedArgumentName(name) ? name + "_" : name;
      flat.push_back({argument, type, "set" + titleCase(name)});
    }
    method.flattenable = true;
    method.flatParams = std::move(flat);
  }
};

}  // namespace

FileModel analyzeFile(const SchemaIndex& index, CodeGeneratorRequest::RequestedFile::Reader file,
                      Diagnostics& diagnostics) {
  return FileAnalyzer(index, file, diagnostics).run();
}

}  // namespace harrow::codegen
