#!/usr/bin/env bash
# Checks that the code keeps the house idioms (docs/ARCHITECTURE.md, "Idioms"), cheaply, without a
# build. Run from .ci/run; by hand: tests/lint/idioms.sh [REPOSITORY]. Each check prints the
# offending lines as FILE:LINE: text and what to do instead; the exit status is 1 if any fails.
set -uo pipefail
cd "${1:-$(dirname "$0")/../..}"

failed=0
report() {  # report NAME ADVICE OFFENDING-LINES
  local found=$3
  if [ -n "$found" ]; then
    echo "$found"
    echo "idioms: $1: $2"
    failed=1
  fi
}

# 1. Errors around suspension. C++ forbids co_await in a catch block, so code that awaits while
#    handling an error catches into a kj::Maybe first. That pattern is written once, in
#    runtime/co/ (errorOf, errorOr, finally); elsewhere a `catch (...)` whose next lines take
#    currentException() needs a reason on that line (// why not errorOf/errorOr/finally).
report "catch into a Maybe" \
  "use harrow::errorOf / errorOr / finally (runtime/co/cancel_scope.h), or say on the line why not" \
  "$(find runtime cli node -name '*.c++' -o -name '*.h' | grep -v '^runtime/co/' | sort |
     xargs awk '
       FNR == 1 { since = 99 }
       /catch \(\.\.\.\)/ { since = 0; next }
       { since++ }
       since <= 3 && /currentException\(\)/ && !/\/\// { print FILENAME ":" FNR ": " $0 }
     ')"

# 2. One error vocabulary. A harrow error is raised with makeError(ErrorKind::X, ...) (or, where it
#    keeps another's type, file and line, errorPrefix(ErrorKind::X)) and recognised with
#    is(e, ErrorKind::X): no "harrow.X: ..." literal outside runtime/co/errors.c++.
report "error name written by hand" \
  "raise it with harrow::makeError(ErrorKind::X, ...) and match it with is(e, ErrorKind::X)" \
  "$(grep -rnE '"harrow\.[A-Z][A-Za-z]*(: |"|_kj)' --include='*.c++' --include='*.h' \
       runtime cli node | grep -v '^runtime/co/errors\.c++:' | grep -vE '^[^:]+:[0-9]+: *//' |
     grep -v 'interfaceName')"

# 3. References into docs/PROTOCOL.md resolve: every "PROTOCOL.md N" or "PROTOCOL.md section N.M"
#    (a list such as "2.1, 2.2 and 7" included) names a section the document has.
sections=$(sed -nE 's/^#{2,3} ([0-9]+(\.[0-9]+)?)\.? .*/\1/p' docs/PROTOCOL.md | tr '\n' ' ')
report "PROTOCOL.md reference that resolves to no section" \
  "name a section docs/PROTOCOL.md has (its headings: $sections)" \
  "$(git ls-files | grep -E '\.(c\+\+|h|capnp|md|sh|bzl)$|BUILD' | grep -v '^docs/PROTOCOL\.md$' |
     xargs grep -noE 'PROTOCOL\.md,? (section |§ ?)?[0-9]+(\.[0-9]+)?((, | and )(section )?[0-9]+(\.[0-9]+)?)*' |
     while IFS= read -r hit; do
       refs=${hit#*PROTOCOL.md}
       for n in $(grep -oE '[0-9]+(\.[0-9]+)?' <<<"$refs"); do
         [[ " $sections " == *" $n "* ]] || echo "$hit (no section $n)"
       done
     done)"

exit "$failed"
