#include "codegen/emit.h"

#include "codegen/code_writer.h"

#include <cinttypes>
#include <cstdio>

namespace harrow::codegen {

namespace {

std::string hexId(uint64_t id) {
  char buffer[24];
  snprintf(buffer, sizeof(buffer), "0x%016" PRIx64 "ull", id);
  return buffer;
}

// Spells types for code inside one interface's FooActor (class scope: `Schema` is the interface)
// and at namespace scope in the schema's namespace.
class Names {
public:
  Names(const FileModel& file, const Interface& interface)
      : file(file), interface(interface) {}

  // "::Counter::Tick" -> "Schema::Tick"; other types stay fully qualified.
  std::string inActor(const TypeRef& type) const { return inActor(type.cxx, true); }
  std::string inActor(const std::string& cxx, bool voidIfEmpty = false) const {
    if (cxx.empty() && voidIfEmpty) return "void";
    const std::string& prefix = interface.cxxName;
    if (cxx == prefix) return "Schema";
    if (cxx.starts_with(prefix + "::")) return "Schema" + cxx.substr(prefix.size());
    return cxx;
  }

  // "::Counter::Tick" -> "Counter::Tick" when the schema's namespace is the global one, etc.
  std::string inNamespace(const TypeRef& type) const {
    if (type.isVoid()) return "void";
    std::string prefix = file.cxxNamespace.empty() ? "::" : "::" + file.cxxNamespace + "::";
    if (type.cxx.starts_with(prefix)) return type.cxx.substr(prefix.size());
    return type.cxx;
  }

  std::string actorMember(const std::string& member) const {
    return interface.actorName + "::" + member;
  }

private:
  const FileModel& file;
  const Interface& interface;
};

// The schema's own name for a struct, for comments: "Tick" for Counter.Tick inside Counter.
std::string schemaName(const Interface& interface, const TypeRef& type) {
  std::string prefix = interface.name + ".";
  if (type.schema.starts_with(prefix)) return type.schema.substr(prefix.size());
  return type.schema;
}

std::string kindWord(MethodKind kind) {
  switch (kind) {
    case MethodKind::CALL: return "CALL";
    case MethodKind::STREAM: return "STREAM";
    case MethodKind::CONTEXT: return "CONTEXT";
  }
  return "";
}

std::string returnType(const Names& names, const Method& method) {
  if (method.kind == MethodKind::STREAM) return "harrow::Co<void>";
  return "harrow::Co<harrow::Received<" + names.inActor(method.results) + ">>";
}

std::string returnTypeInNamespace(const Names& names, const Method& method) {
  if (method.kind == MethodKind::STREAM) return "harrow::Co<void>";
  return "harrow::Co<harrow::Received<" + names.inNamespace(method.results) + ">>";
}

std::string titleCaseOf(const Method& method) {
  std::string callType = method.callTypeName();  // "CountCall"
  return callType.substr(0, callType.size() - 4);
}

std::string streamAlias(const Method& method) { return titleCaseOf(method) + "Stream"; }
std::string contextAlias(const Method& method) { return titleCaseOf(method) + "Context"; }

// The concept a stream's or context's block must satisfy (harrow/typed/typed.h), so that a wrong
// block fails at the caller's line.
std::string bodyConstraint(const Names& names, const Method& method) {
  if (method.kind == MethodKind::STREAM) {
    return "harrow::StreamBody<Body, " + streamAlias(method) + ">";
  }
  return "harrow::ContextBody<Body, " + contextAlias(method) + ", " +
         names.inActor(method.started) + ">";
}

// `return name<targs...>(args...);`, wrapped: template arguments first, then the call's
// arguments on a continuation line.
void emitReturnCall(CodeWriter& out, const std::string& name,
                    const std::vector<std::string>& templateArgs,
                    const std::vector<std::string>& args) {
  std::string head = "return " + name + "<";
  std::string single = head + join(templateArgs) + ">(" + join(args) + ");";
  if (out.fits(single)) {
    out.line(single);
    return;
  }
  out.list(head, templateArgs, ">(");
  out.indent();
  out.indent();
  out.list("", args, ");");
  out.outdent();
  out.outdent();
}

// The lambda a flattened overload passes as `fill`, and the call around it:
// `return <callee>([&](Params::Builder request) { request.setN(n); }<rest>);`
void emitFlatForward(CodeWriter& out, const Names& names, const Method& method,
                     const std::string& rest) {
  std::string builder = names.inActor(method.params) + "::Builder";
  std::string head = "return " + method.cxxName + "(";
  if (method.flatParams.empty()) {
    out.line(head + "[](" + builder + ") {}" + rest + ");");
    return;
  }
  std::vector<std::string> sets;
  for (auto& param : method.flatParams) {
    sets.push_back("request." + param.setter + "(" + param.name + ");");
  }
  std::string lambdaHead = "[&](" + builder + " request) {";
  std::string oneLineLambda = lambdaHead + " " + join(sets, " ") + " }";
  if (out.fits(head + oneLineLambda + rest + ");")) {
    out.line(head + oneLineLambda + rest + ");");
  } else if (rest.empty()) {
    // return add([&](Params::Builder request) {
    //   ...
    // });
    out.line(head + lambdaHead);
    out.indent();
    for (auto& set : sets) out.line(set);
    out.outdent();
    out.line("});");
  } else if (method.flatParams.size() == 1 && out.fits(head + oneLineLambda + ",")) {
    out.line(head + oneLineLambda + ",");
    out.line(std::string(head.size(), ' ') + rest.substr(2) + ");");
  } else {
    out.line(head);
    out.indent();
    out.indent();
    out.line(lambdaHead);
    out.indent();
    for (auto& set : sets) out.line(set);
    out.outdent();
    out.line("}" + rest.substr(0, 1));
    out.line(rest.substr(2) + ");");
    out.outdent();
    out.outdent();
  }
}

std::vector<std::string> flatSignature(const Names& names, const Method& method) {
  std::vector<std::string> params;
  for (auto& param : method.flatParams) {
    params.push_back(names.inActor(param.type) + " " + param.name);
  }
  return params;
}

// ---------------------------------------------------------------------------------------------
// The header

void emitActorStruct(CodeWriter& out, const Interface& interface) {
  out.rule();
  out.line("// " + interface.name);
  if (!interface.doc.empty()) {
    out.line("//");
    out.schemaComment(interface.doc);
  }
  out.line();
  out.line("struct " + interface.actorName + " {");
  out.indent();
  out.line("using Schema = " + interface.cxxName + ";");
  out.line("static constexpr uint64_t INTERFACE_ID = " + hexId(interface.id) + ";");
  out.line("static constexpr const char* NAME = \"" + interface.name + "\";");
  out.line();
  out.line("class Server;  // implement it in the actor");
  out.line("class Portal;  // call the actor through it");
  out.outdent();
  out.line("};");
  out.line();
}

void emitServerMethodComment(CodeWriter& out, const Interface& interface, const Method& method) {
  std::string ordinal = method.name + " @" + std::to_string(method.ordinal);
  switch (method.kind) {
    case MethodKind::CALL:
      out.comment(ordinal + ", a call: fill call.results().");
      break;
    case MethodKind::STREAM:
      out.comment(ordinal + ", a stream of " + schemaName(interface, method.item) +
                  ": `co_await call.yield(fill)` for each item.");
      break;
    case MethodKind::CONTEXT: {
      std::string streams;
      if (!method.callerSends.isVoid() || !method.calleeSends.isVoid()) {
        streams = " then may call.openStream(body) (";
        if (!method.callerSends.isVoid()) {
          streams += "receiving " + schemaName(interface, method.callerSends);
        }
        if (!method.callerSends.isVoid() && !method.calleeSends.isVoid()) streams += ", ";
        if (!method.calleeSends.isVoid()) {
          streams += "sending " + schemaName(interface, method.calleeSends);
        }
        streams += "),";
      }
      out.comment(ordinal + ", a context: `co_await call.started(fill)` with a " +
                  schemaName(interface, method.started) + "," + streams +
                  " and fills call.results().");
      break;
    }
  }
  if (!method.doc.empty()) out.schemaComment(method.doc);
}

void emitServer(CodeWriter& out, const Interface& interface, const Names& names) {
  out.comment("The skeleton of an actor implementing " + interface.name + ": one handler per "
              "method, each run as its own task. The task's result is sent when the handler's "
              "coroutine finishes; an exception it throws reaches the caller as a "
              "RemoteActorError.");
  out.line("class " + names.actorMember("Server") + " : public harrow::ActorServer {");
  out.line("public:");
  out.indent();
  out.line("using Interface = " + interface.actorName + ";  // what harrow::Implementations records");
  out.line();
  for (auto& method : interface.methods) {
    std::string head = "using " + method.callTypeName() + " = ";
    switch (method.kind) {
      case MethodKind::CALL:
        out.list(head + "harrow::ServerCall<",
                 {names.inActor(method.params), names.inActor(method.results)}, ">;");
        break;
      case MethodKind::STREAM:
        out.list(head + "harrow::ServerStream<",
                 {names.inActor(method.params), names.inActor(method.item)}, ">;");
        break;
      case MethodKind::CONTEXT:
        out.list(head + "harrow::ServerContext<",
                 {names.inActor(method.params), names.inActor(method.results),
                  names.inActor(method.started), names.inActor(method.callerSends),
                  names.inActor(method.calleeSends)},
                 ">;");
        break;
    }
  }
  for (auto& method : interface.methods) {
    out.line();
    emitServerMethodComment(out, interface, method);
    out.line("virtual harrow::Co<void> " + method.cxxName + "(" + method.callTypeName() +
             " call) = 0;");
  }
  out.line();
  out.line("// harrow::ActorServer");
  out.line("uint64_t interfaceId() const override;");
  out.line("kj::StringPtr interfaceName() const override;");
  out.line("kj::Maybe<harrow::MethodKind> methodKind(uint16_t methodId) const override;");
  out.line("kj::StringPtr methodName(uint16_t methodId) const override;");
  out.line("harrow::Co<void> dispatch(uint16_t methodId, harrow::IncomingTask& task) override;");
  out.line("kj::Maybe<MessageTypes> messageTypes(uint16_t methodId) const override;");
  out.outdent();
  out.line("};");
  out.line();
}

void emitPortalMethod(CodeWriter& out, const Interface& interface, const Names& names,
                      const Method& method) {
  std::string ordinal = method.name + " @" + std::to_string(method.ordinal);
  std::string params = names.inActor(method.params);
  std::string results = names.inActor(method.results);
  std::string ret = returnType(names, method);
  std::string fillConstraint = "requires std::invocable<Fill&, " + params + "::Builder>";
  std::vector<std::string> forwarded = {"*portal_", "INTERFACE_ID",
                                        std::to_string(method.ordinal), "kj::fwd<Fill>(fill)"};

  switch (method.kind) {
    case MethodKind::CALL:
      out.comment(ordinal + ": resolves to the results; an exception in the handler raises "
                  "RemoteActorError here.");
      if (!method.doc.empty()) out.schemaComment(method.doc);
      out.line("template <typename Fill>");
      out.line("  " + fillConstraint);
      out.line(ret + " " + method.cxxName + "(Fill&& fill) {");
      out.indent();
      emitReturnCall(out, "harrow::callMethod", {params, results}, forwarded);
      out.outdent();
      out.line("}");
      if (method.flattenable) {
        out.list(ret + " " + method.cxxName + "(", flatSignature(names, method), ");");
      }
      break;

    case MethodKind::STREAM:
      out.comment(ordinal + ": runs `body(" + streamAlias(method) + "& items)`, a coroutine "
                  "returning harrow::Co<void>, while the actor yields " +
                  schemaName(interface, method.item) + " items; leaving the body before the "
                  "stream ends cancels it.");
      if (!method.doc.empty()) out.schemaComment(method.doc);
      out.line("template <typename Fill, typename Body>");
      out.line("  " + fillConstraint);
      out.line("           && " + bodyConstraint(names, method));
      out.line(ret + " " + method.cxxName + "(Fill&& fill, Body body) {");
      out.indent();
      forwarded.push_back("kj::mv(body)");
      emitReturnCall(out, "harrow::streamMethod", {params, names.inActor(method.item)},
                     forwarded);
      out.outdent();
      out.line("}");
      break;

    case MethodKind::CONTEXT:
      out.comment(ordinal + ": once the actor has sent its " +
                  schemaName(interface, method.started) + ", runs `body(" +
                  contextAlias(method) + "& context, " + names.inActor(method.started) +
                  "::Reader started)`, a coroutine returning harrow::Co<void>; then resolves to "
                  "the results (empty if the body called context.cancel()).");
      if (!method.doc.empty()) out.schemaComment(method.doc);
      out.line("template <typename Fill, typename Body>");
      out.line("  " + fillConstraint);
      out.line("           && " + bodyConstraint(names, method));
      out.line(ret + " " + method.cxxName + "(Fill&& fill, Body body) {");
      out.indent();
      forwarded.push_back("kj::mv(body)");
      emitReturnCall(out, "harrow::contextMethod",
                     {params, results, names.inActor(method.started),
                      names.inActor(method.callerSends), names.inActor(method.calleeSends)},
                     forwarded);
      out.outdent();
      out.line("}");
      break;
  }

  if (method.kind != MethodKind::CALL && method.flattenable) {
    auto signature = flatSignature(names, method);
    signature.push_back("Body body");
    out.line("template <typename Body>");
    out.line("  requires " + bodyConstraint(names, method));
    out.list(ret + " " + method.cxxName + "(", signature, ") {");
    out.indent();
    emitFlatForward(out, names, method, ", kj::mv(body)");
    out.outdent();
    out.line("}");
  }
}

void emitPortal(CodeWriter& out, const Interface& interface, const Names& names) {
  out.comment("Calls an actor implementing " + interface.name + " over a channel. "
              "`fill(Params::Builder)` builds a method's params in place; a method whose params "
              "are all primitives, enums, Text or Data also takes them as arguments.");
  out.line("class " + names.actorMember("Portal") + " {");
  out.line("public:");
  out.indent();
  bool aliases = false;
  for (auto& method : interface.methods) {
    if (method.kind == MethodKind::STREAM) {
      if (!aliases) out.comment("What stream and context bodies receive.");
      aliases = true;
      out.line("using " + streamAlias(method) + " = harrow::ReceiveStream<" +
               names.inActor(method.item) + ">;");
    } else if (method.kind == MethodKind::CONTEXT) {
      if (!aliases) out.comment("What stream and context bodies receive.");
      aliases = true;
      out.list("using " + contextAlias(method) + " = harrow::CallerContext<",
               {names.inActor(method.started), names.inActor(method.callerSends),
                names.inActor(method.calleeSends)},
               ">;");
    }
  }
  if (aliases) out.line();
  out.line("explicit Portal(harrow::RawPortal& portal);");
  for (auto& method : interface.methods) {
    out.line();
    emitPortalMethod(out, interface, names, method);
  }
  out.line();
  out.line("harrow::RawPortal& raw() const { return *portal_; }");
  out.outdent();
  out.line();
  out.line("private:");
  out.indent();
  out.line("harrow::PortalHandle portal_;  // a portal outliving its channel fails safely");
  out.outdent();
  out.line("};");
}

// harrow::OneField<T> for each struct of the file's items and started values that has one field
// (model.h, OneFieldStruct). Guarded by the struct's id: two schemas that both send a struct
// from a third would otherwise define it twice.
void emitOneFields(CodeWriter& out, const FileModel& file) {
  if (file.oneFieldStructs.empty()) return;
  out.comment("Value shortcuts: these structs have one field, so send(), yield() and started() "
              "also take its value (stream.send(2) for [&](auto b) { b.setBy(2); }).");
  out.line("namespace harrow {");
  for (auto& one : file.oneFieldStructs) {
    std::string guard = "HARROW_ONE_FIELD_" + hexId(one.id).substr(2, 16);
    out.line("#ifndef " + guard);
    out.line("#define " + guard);
    out.line("template <>");
    out.line("struct OneField<" + one.cxx + "> {");
    out.indent();
    out.line("using Value = " + one.valueType + ";");
    out.line("static void set(" + one.cxx + "::Builder b, Value v) { b." + one.setter +
             "(v); }");
    out.outdent();
    out.line("};");
    out.line("#endif");
  }
  out.line("}  // namespace harrow");
  out.line();
}

void openNamespace(CodeWriter& out, const FileModel& file) {
  if (!file.cxxNamespace.empty()) {
    out.line("namespace " + file.cxxNamespace + " {");
    out.line();
  }
}

void closeNamespace(CodeWriter& out, const FileModel& file) {
  if (!file.cxxNamespace.empty()) {
    out.line();
    out.line("}  // namespace " + file.cxxNamespace);
  }
}

// ---------------------------------------------------------------------------------------------
// The source

void emitServerDefinitions(CodeWriter& out, const Interface& interface, const Names& names) {
  std::string server = names.actorMember("Server::");
  bool anyMethod = !interface.methods.empty();
  std::string methodIdParam = anyMethod ? "uint16_t methodId" : "uint16_t";

  out.line("uint64_t " + server + "interfaceId() const { return INTERFACE_ID; }");
  out.line();
  out.line("kj::StringPtr " + server + "interfaceName() const { return NAME; }");
  out.line();

  out.line("kj::Maybe<harrow::MethodKind> " + server + "methodKind(" + methodIdParam +
           ") const {");
  out.indent();
  if (anyMethod) {
    out.line("switch (methodId) {");
    out.indent();
    for (auto& method : interface.methods) {
      out.line("case " + std::to_string(method.ordinal) + ": return harrow::MethodKind::" +
               kindWord(method.kind) + ";");
    }
    out.outdent();
    out.line("}");
  }
  out.line("return nullptr;");
  out.outdent();
  out.line("}");
  out.line();

  out.line("kj::StringPtr " + server + "methodName(" + methodIdParam + ") const {");
  out.indent();
  if (anyMethod) {
    out.line("switch (methodId) {");
    out.indent();
    for (auto& method : interface.methods) {
      out.line("case " + std::to_string(method.ordinal) + ": return \"" + method.name + "\";");
    }
    out.outdent();
    out.line("}");
  }
  out.line("return nullptr;");
  out.outdent();
  out.line("}");
  out.line();

  // The struct types of each method's messages (for introspection: harrow call, harrow stacks).
  out.list("kj::Maybe<harrow::ActorServer::MessageTypes> " + server + "messageTypes(",
           {methodIdParam}, ") const {");
  out.indent();
  if (anyMethod) {
    out.line("MessageTypes types;");
    out.line("switch (methodId) {");
    out.indent();
    for (auto& method : interface.methods) {
      out.line("case " + std::to_string(method.ordinal) + ":");
      out.indent();
      auto set = [&](const std::string& field, const TypeRef& type) {
        if (type.isVoid()) return;
        out.line("types." + field + " = capnp::Schema::from<" + names.inActor(type) + ">();");
      };
      set("params", method.params);
      set("results", method.results);
      if (method.kind == MethodKind::STREAM) set("item", method.item);
      if (method.kind == MethodKind::CONTEXT) {
        set("started", method.started);
        set("callerSends", method.callerSends);
        set("calleeSends", method.calleeSends);
      }
      out.line("return types;");
      out.outdent();
    }
    out.outdent();
    out.line("}");
  }
  out.line("return nullptr;");
  out.outdent();
  out.line("}");
  out.line();

  out.list("harrow::Co<void> " + server + "dispatch(", {"uint16_t methodId",
           anyMethod ? "harrow::IncomingTask& task" : "harrow::IncomingTask&"}, ") {");
  out.indent();
  out.comment("evalNow: an exception while setting up the call rejects the promise instead of "
              "escaping.");
  out.line("return kj::evalNow([&]() -> kj::Promise<void> {");
  out.indent();
  if (anyMethod) {
    out.line("switch (methodId) {");
    out.indent();
    for (auto& method : interface.methods) {
      out.line("case " + std::to_string(method.ordinal) + ": return " + method.cxxName + "(" +
               method.callTypeName() + "(task));");
    }
    out.outdent();
    out.line("}");
  }
  out.line("KJ_FAIL_REQUIRE(\"" + interface.name + " has no method with this id\", methodId);");
  out.outdent();
  out.line("});");
  out.outdent();
  out.line("}");
}

void emitPortalDefinitions(CodeWriter& out, const Interface& interface, const Names& names) {
  std::string portal = names.actorMember("Portal::");
  out.line(portal + "Portal(harrow::RawPortal& portal) : portal_(portal) {}");
  for (auto& method : interface.methods) {
    if (method.kind != MethodKind::CALL || !method.flattenable) continue;
    out.line();
    out.list(returnTypeInNamespace(names, method) + " " + portal + method.cxxName + "(",
             flatSignature(names, method), ") {");
    out.indent();
    emitFlatForward(out, names, method, "");
    out.outdent();
    out.line("}");
  }
}

}  // namespace

std::string emitHeader(const FileModel& file) {
  CodeWriter out;
  out.comment("Generated by capnpc-harrow from " + file.path + ". Do not edit.");
  out.line("//");
  if (file.interfaces.empty()) {
    out.comment(file.baseName() + " declares no $Harrow.actor interface, so there is nothing "
                "here; the file exists so that every schema has the same outputs.");
    out.line();
    out.line("#pragma once");
    out.line();
    out.line("#include \"" + file.baseName() + ".h\"");
    return out.text();
  }
  out.comment("For each $Harrow.actor interface Foo in the schema, FooActor ties it to harrow: "
              "FooActor::Server is the skeleton an actor implements (one handler per method), "
              "FooActor::Portal the typed stub that calls it. The struct types are capnp's own, "
              "from " + file.baseName() + ".h; FooActor::Schema is the interface.");
  out.line();
  out.line("#pragma once");
  out.line();
  out.line("#include \"" + file.baseName() + ".h\"");
  for (auto& include : file.includes) out.line("#include " + include);
  out.line("#include <harrow/typed/typed.h>");
  out.line();
  out.line("#include <concepts>");
  out.line("#include <cstdint>");
  out.line();
  emitOneFields(out, file);
  openNamespace(out, file);
  for (size_t i = 0; i < file.interfaces.size(); ++i) {
    auto& interface = file.interfaces[i];
    Names names(file, interface);
    if (i > 0) out.line();
    emitActorStruct(out, interface);
    emitServer(out, interface, names);
    emitPortal(out, interface, names);
  }
  closeNamespace(out, file);
  return out.text();
}

std::string emitSource(const FileModel& file) {
  CodeWriter out;
  out.comment("Generated by capnpc-harrow from " + file.path + ". Do not edit.");
  if (file.interfaces.empty()) {
    out.line("//");
    out.comment(file.baseName() + " declares no $Harrow.actor interface; see " +
                file.baseName() + ".harrow.h.");
    out.line();
    out.line("#include \"" + file.baseName() + ".harrow.h\"");
    return out.text();
  }
  out.line();
  out.line("#include \"" + file.baseName() + ".harrow.h\"");
  out.line();
  out.line("#include <kj/debug.h>");
  out.line();
  openNamespace(out, file);
  for (size_t i = 0; i < file.interfaces.size(); ++i) {
    auto& interface = file.interfaces[i];
    Names names(file, interface);
    if (i > 0) out.line();
    out.rule();
    out.line("// " + names.actorMember("Server"));
    out.line();
    emitServerDefinitions(out, interface, names);
    out.line();
    out.rule();
    out.line("// " + names.actorMember("Portal"));
    out.line();
    emitPortalDefinitions(out, interface, names);
  }
  closeNamespace(out, file);
  return out.text();
}

}  // namespace harrow::codegen
