// A small line-oriented writer for generated C++: indentation, comments wrapped at 100 columns
// and argument lists wrapped the way a person would.

#pragma once

#include <string>
#include <vector>

namespace harrow::codegen {

class CodeWriter {
public:
  static constexpr size_t MAX_COLUMNS = 100;
  static constexpr size_t RULE_COLUMNS = 96;  // as in runtime/

  void indent() { depth += 2; }
  void outdent() { depth -= 2; }

  // One line at the current indentation; an empty string is a blank line.
  void line(const std::string& text = "");
  // Prose, word-wrapped into `// ` lines.
  void comment(const std::string& text);
  // A doc comment copied from the schema, line by line.
  void schemaComment(const std::string& doc);
  // A "// ----...----" separator.
  void rule();

  // `head` + items joined by ", " + `tail`, on one line if it fits, else wrapped with the items
  // aligned after `head` (or, for a long head, on continuation lines indented four more).
  void list(const std::string& head, const std::vector<std::string>& items,
            const std::string& tail);

  // Whether `text` fits on one line at the current indentation (plus `extra` columns).
  bool fits(const std::string& text, size_t extra = 0) const;
  size_t column() const { return depth; }

  std::string text() const { return out; }

private:
  std::string out;
  size_t depth = 0;

  void packed(const std::string& first, const std::vector<std::string>& items,
              size_t continuation, const std::string& tail);
};

std::string join(const std::vector<std::string>& items, const std::string& separator = ", ");

}  // namespace harrow::codegen
