#!/usr/bin/env bash
# The C++ format check (.clang-format, clang-format 14), without reformatting the tree at once:
#   - every file listed in tests/lint/formatted.txt (those that conformed when the check began)
#     conforms wholly;
#   - every line of C++ changed since .clang-format was added is formatted as it says.
# Run by ./dev lint. To format what you changed: git diff -U0 main | clang-format-diff-14 -p1 -i
set -uo pipefail
cd "${1:-$(dirname "$0")/../..}"

cf=$(command -v clang-format-14 || command -v clang-format) || {
  echo "format: clang-format is not installed (./dev installs it)"
  exit 1
}
cfdiff=$(command -v clang-format-diff-14 || command -v clang-format-diff)
failed=0

while read -r file; do
  [ -f "$file" ] || continue
  if ! "$cf" --dry-run --Werror "$file" >/dev/null 2>&1; then
    "$cf" "$file" | diff -u "$file" - | head -20
    echo "format: $file conformed to .clang-format and no longer does"
    failed=1
  fi
done < tests/lint/formatted.txt

base=$(git log --diff-filter=A --format=%H -- .clang-format | tail -n1)
if [ -n "$base" ]; then
  changed=$(git diff -U0 --no-color "$base" -- '*.c++' '*.h' ':!generated/' |
            "$cfdiff" -p1 -binary "$cf" 2>&1)
  if [ -n "$changed" ]; then
    echo "$changed" | head -80
    echo "format: lines changed since .clang-format was added are not formatted as it says"
    failed=1
  fi
fi
exit "$failed"
