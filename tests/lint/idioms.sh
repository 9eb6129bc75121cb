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

exit "$failed"
