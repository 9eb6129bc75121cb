// What capnpc-harrow knows about one schema file once it has been checked: the actor
// interfaces, their methods and the C++ types involved. Built by analyze.h, read by emit.h.

#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace harrow::codegen {

enum class MethodKind { CALL, STREAM, CONTEXT };

// A struct (or enum) type as generated code names it.
struct TypeRef {
  std::string cxx;     // fully qualified C++ name, "::Counter::Tick"; "" for none (void)
  std::string schema;  // its name in the schema, "Counter.Tick", for comments
  uint64_t id = 0;     // its node id; 0 for none

  bool isVoid() const { return cxx.empty(); }
};

// One parameter of a flattened call: a field of the params struct taken as an argument.
struct FlatParam {
  std::string name;    // the C++ argument name ("upTo")
  std::string type;    // "uint32_t", "kj::StringPtr", or an enum's qualified name
  std::string setter;  // "setUpTo"
};

struct Method {
  std::string name;     // as in the schema, "count"
  std::string cxxName;  // the C++ member name of the handler and the portal method
  uint16_t ordinal = 0;
  MethodKind kind = MethodKind::CALL;
  std::string doc;  // the schema's doc comment, may be empty

  TypeRef params;
  TypeRef results;
  TypeRef item;         // streams
  TypeRef started;      // contexts
  TypeRef callerSends;  // contexts; void if the caller sends nothing
  TypeRef calleeSends;  // contexts; void if the callee sends nothing

  // Whether every field of the params is a primitive, enum, Text or Data (then the portal also
  // takes the params as arguments, in declaration order).
  bool flattenable = false;
  std::vector<FlatParam> flatParams;

  // The handler's call type name in the Server ("CountCall").
  std::string callTypeName() const;
};

struct Interface {
  uint64_t id = 0;
  std::string name;       // scoped name in the schema, "Counter" or "Outer.Counter"
  std::string cxxName;    // capnp's C++ type, "::Counter"
  std::string actorName;  // ours, "CounterActor"
  std::string doc;
  std::vector<Method> methods;  // by ordinal
};

// A struct sent as a stream item or a started value whose one field is a primitive, enum, Text or
// Data: the typed layer's send(), yield() and started() then also take that field's value
// (`stream.send(2)`, as tractor writes it), through a generated harrow::OneField<T>.
struct OneFieldStruct {
  uint64_t id = 0;
  std::string cxx;        // "::Counter::Tick"
  std::string valueType;  // "int64_t", as for a flattened param
  std::string setter;     // "setBy"
};

struct FileModel {
  std::string path;         // "examples/counter/counter.capnp", as given to capnp
  std::string cxxNamespace; // "" or "examples::counter"
  std::vector<Interface> interfaces;
  // Headers of imported schemas to include besides capnp's header for this one:
  // "<harrow/x.capnp.h>" or "\"common.capnp.h\"", spelled as capnp spells them.
  std::vector<std::string> includes;
  std::vector<OneFieldStruct> oneFieldStructs;  // in the order the methods name them

  std::string baseName() const;  // "counter.capnp"
};

}  // namespace harrow::codegen
