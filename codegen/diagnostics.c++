#include "codegen/diagnostics.h"

namespace harrow::codegen {

void Diagnostics::error(const Where& where, const std::string& message) {
  std::string line = where.file + ": error: ";
  if (!where.interface.empty()) line += "interface " + where.interface;
  if (!where.method.empty()) line += ", method " + where.method;
  if (!where.interface.empty()) line += ": ";
  messages_.push_back(line + message);
}

}  // namespace harrow::codegen
