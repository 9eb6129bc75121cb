#include <harrow/co/multi_error.h>

#include <harrow/co/errors.h>

#include <kj/debug.h>
#include <kj/vector.h>

namespace harrow {
namespace {

constexpr kj::StringPtr ITEM = "\n  ["_kj;

kj::String indented(kj::StringPtr text) {
  // Continuation lines of each error sit under its number.
  kj::Vector<char> out(text.size() + 16);
  for (char c : text) {
    out.add(c);
    if (c == '\n') out.addAll(kj::StringPtr("      "));
  }
  out.add('\0');
  return kj::String(out.releaseAsArray());
}

}  // namespace

kj::Exception makeMultiError(kj::Array<kj::Exception> errors) {
  KJ_REQUIRE(errors.size() > 0);
  if (errors.size() == 1) return kj::mv(errors[0]);

  kj::Vector<kj::String> parts;
  parts.add(kj::str(errorPrefix(ErrorKind::MULTI_ERROR), errors.size(), " errors"));
  for (auto i : kj::indices(errors)) {
    parts.add(kj::str(ITEM, i + 1, "] ", indented(errors[i].getDescription())));
  }
  auto& first = errors[0];
  return kj::Exception(first.getType(), first.getFile(), first.getLine(),
                       kj::strArray(parts, ""));
}

bool isMultiError(const kj::Exception& exception) {
  return is(exception, ErrorKind::MULTI_ERROR);
}

kj::Array<kj::String> errorsIn(const kj::Exception& exception) {
  kj::StringPtr text = exception.getDescription();
  if (!isMultiError(exception)) return kj::arr(kj::str(text));

  kj::Vector<kj::String> out;
  kj::Vector<char> current;
  bool inItem = false;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text.slice(i).startsWith(ITEM)) {
      if (inItem) { current.add('\0'); out.add(kj::String(current.releaseAsArray())); }
      inItem = true;
      i += ITEM.size();
      while (i < text.size() && text[i] != ']') ++i;  // skip the number
      i += 1;                                          // and the space after "]"
      current = kj::Vector<char>();
      continue;
    }
    if (!inItem) continue;
    if (text[i] == '\n' && text.slice(i + 1).startsWith("      ")) {
      current.add('\n');
      i += 6;
      continue;
    }
    current.add(text[i]);
  }
  if (inItem) { current.add('\0'); out.add(kj::String(current.releaseAsArray())); }
  return out.releaseAsArray();
}

namespace {

void collectFailures(const kj::Exception& exception, kj::Vector<kj::Exception>& out) {
  if (!isMultiError(exception)) {
    out.add(kj::cp(exception));
    return;
  }
  for (auto& text : errorsIn(exception)) {
    collectFailures(kj::Exception(exception.getType(), exception.getFile(), exception.getLine(),
                                  kj::mv(text)),
                    out);
  }
}

}  // namespace

kj::Array<kj::Exception> failuresIn(const kj::Exception& exception) {
  kj::Vector<kj::Exception> out;
  collectFailures(exception, out);
  return out.releaseAsArray();
}

}  // namespace harrow
