#include "codegen/model.h"

#include "codegen/schema_index.h"

namespace harrow::codegen {

std::string Method::callTypeName() const {
  std::string base = cxxName;
  while (!base.empty() && base.back() == '_') base.pop_back();  // "delete_" -> "DeleteCall"
  return titleCase(base) + "Call";
}

std::string FileModel::baseName() const {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace harrow::codegen
