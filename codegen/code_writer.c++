#include "codegen/code_writer.h"

namespace harrow::codegen {

std::string join(const std::vector<std::string>& items, const std::string& separator) {
  std::string result;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) result += separator;
    result += items[i];
  }
  return result;
}

void CodeWriter::line(const std::string& text) {
  if (!text.empty()) out += std::string(depth, ' ') + text;
  out += '\n';
}

bool CodeWriter::fits(const std::string& text, size_t extra) const {
  return depth + extra + text.size() <= MAX_COLUMNS;
}

void CodeWriter::comment(const std::string& text) {
  std::string current = "//";
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(' ', start);
    if (end == std::string::npos) end = text.size();
    std::string word = text.substr(start, end - start);
    start = end + 1;
    if (word.empty()) continue;
    if (current != "//" && !fits(current + " " + word)) {
      line(current);
      current = "//";
    }
    current += " " + word;
  }
  if (current != "//") line(current);
}

void CodeWriter::schemaComment(const std::string& doc) {
  size_t start = 0;
  std::vector<std::string> lines;
  while (start <= doc.size()) {
    size_t end = doc.find('\n', start);
    if (end == std::string::npos) end = doc.size();
    std::string text = doc.substr(start, end - start);
    while (!text.empty() && (text.back() == ' ' || text.back() == '\r')) text.pop_back();
    lines.push_back(text);
    start = end + 1;
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  for (auto& text : lines) line(text.empty() ? "//" : "// " + text);
}

void CodeWriter::rule() {
  line("// " + std::string(RULE_COLUMNS - depth - 3, '-'));
}

void CodeWriter::list(const std::string& head, const std::vector<std::string>& items,
                      const std::string& tail) {
  std::string single = head + join(items) + tail;
  if (fits(single) || items.empty()) {
    line(single);
    return;
  }
  if (head.size() <= 40) {
    packed(head, items, depth + head.size(), tail);
  } else {
    line(head);
    packed(std::string(4, ' '), items, depth + 4, tail);
  }
}

void CodeWriter::packed(const std::string& first, const std::vector<std::string>& items,
                        size_t continuation, const std::string& tail) {
  std::string current = first;
  bool empty = true;
  for (size_t i = 0; i < items.size(); ++i) {
    std::string item = items[i] + (i + 1 < items.size() ? "," : tail);
    std::string candidate = current + (empty ? "" : " ") + item;
    if (!empty && depth + candidate.size() > MAX_COLUMNS) {
      line(current);
      current = std::string(continuation - depth, ' ') + item;
    } else {
      current = candidate;
    }
    empty = false;
  }
  line(current);
}

}  // namespace harrow::codegen
