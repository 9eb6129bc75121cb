// Errors found in a schema, each naming the file, interface and method it is about.

#pragma once

#include <string>
#include <vector>

namespace harrow::codegen {

// Where in the schema a problem is; `interface` and `method` may be empty.
struct Where {
  std::string file;       // "examples/counter/counter.capnp"
  std::string interface;  // "Counter"
  std::string method;     // "count @1"
};

class Diagnostics {
public:
  void error(const Where& where, const std::string& message);

  bool hasErrors() const { return !messages_.empty(); }
  // One line per error, like "counter.capnp: error: interface Counter, method count @1: ...".
  const std::vector<std::string>& messages() const { return messages_; }

private:
  std::vector<std::string> messages_;
};

}  // namespace harrow::codegen
