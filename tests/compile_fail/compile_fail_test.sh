#!/usr/bin/env bash
# See BUILD.bazel. Runs from the runfiles tree: headers are where the source tree has them, and
# <harrow/LAYER/x.h> is rebuilt as a folder of links, the way Bazel's include_prefix lays it out.
set -uo pipefail
root="$PWD"
inc="${TEST_TMPDIR:-$(mktemp -d)}/include"
mkdir -p "$inc/harrow"
for layer in co ipc typed engine actor discovery spawn; do
  mkdir -p "$inc/harrow/$layer"
  for h in "$root"/runtime/$layer/*.h; do ln -sf "$h" "$inc/harrow/$layer/"; done
done
ln -sf "$root"/runtime/*.h "$inc/harrow/"
for h in "$root"/idl/harrow/*.h; do ln -sf "$h" "$inc/harrow/"; done

compile() {
  g++ -std=c++20 -fsyntax-only -Wall -Wextra -Werror -Wno-unused-parameter \
      -I "$inc" -I "$root" -I "$root/idl" "$1" 2>&1
}

failed=0
cases=0
for src in "$root"/tests/compile_fail/cases/*.c++; do
  name=$(basename "$src")
  cases=$((cases + 1))
  out=$(compile "$src"); status=$?
  if [[ $name == ok_* ]]; then
    if [ $status -ne 0 ]; then
      echo "FAIL $name: must compile, but:"; echo "$out" | head -20; failed=$((failed + 1))
    else
      echo "ok   $name compiles"
    fi
    continue
  fi
  expect=$(sed -n 's|^// expect-error: ||p' "$src")
  if [ -z "$expect" ]; then echo "FAIL $name: no expect-error line"; failed=$((failed + 1)); continue; fi
  if [ $status -eq 0 ]; then
    echo "FAIL $name: compiled, but must fail with: $expect"; failed=$((failed + 1))
  elif ! grep -Eq -- "$expect" <<<"$out"; then
    echo "FAIL $name: failed, but not with: $expect"; echo "$out" | grep -E 'error' | head -10
    failed=$((failed + 1))
  else
    echo "ok   $name is refused: $(grep -Em1 -- "$expect" <<<"$out" | cut -c1-160)"
  fi
done
echo "$((cases - failed)) passed, $failed failed"
[ $failed -eq 0 ]
