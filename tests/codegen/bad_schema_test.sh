#!/bin/bash
# Runs each tests/codegen/bad/*.capnp through capnp with capnpc-harrow and checks that the
# build fails: a non-zero exit, every `# expect: <text>` line of the schema found in stderr,
# and nothing written.
# Usage: bad_schema_test.sh <capnpc-harrow> <schema>...
set -uo pipefail

plugin="$1"
shift
failures=0
for schema in "$@"; do
  out="$(mktemp -d "${TEST_TMPDIR:-/tmp}/bad.XXXXXX")"
  stderr="$out.stderr"
  capnp compile -I idl --no-standard-import -I /usr/include "-o$plugin:$out" "$schema" \
      2> "$stderr"
  status=$?
  if [[ $status -eq 0 ]]; then
    echo "FAIL $schema: accepted (exit status 0)"
    failures=$((failures + 1))
  fi
  if [[ -n "$(ls -A "$out")" ]]; then
    echo "FAIL $schema: wrote output although it failed:"; ls -R "$out"
    failures=$((failures + 1))
  fi
  expectations=0
  while IFS= read -r expected; do
    expectations=$((expectations + 1))
    if ! grep -qF -- "$expected" "$stderr"; then
      echo "FAIL $schema: stderr lacks: $expected"
      failures=$((failures + 1))
    fi
  done < <(sed -n 's/^# expect: //p' "$schema")
  if [[ $expectations -eq 0 ]]; then
    echo "FAIL $schema: no '# expect:' lines"
    failures=$((failures + 1))
  fi
  echo "--- $schema (exit status $status):"
  cat "$stderr"
done

if [[ $failures -ne 0 ]]; then
  echo "$failures failure(s)"
  exit 1
fi
echo "all $# bad schemas rejected as expected"
