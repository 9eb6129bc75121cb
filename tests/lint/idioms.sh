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
  "$(find runtime programs -name '*.c++' -o -name '*.h' | grep -v '^runtime/co/' | sort |
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
       runtime programs | grep -v '^runtime/co/errors\.c++:' | grep -vE '^[^:]+:[0-9]+: *//' |
     grep -v 'interfaceName')"

# 3. References into docs/PROTOCOL.md name sections by title, and resolve: `docs/PROTOCOL.md,
#    "Frame protection"` (several: `"hello", "authenticate" and "Threat model"`) names a heading the
#    document has; a number ("PROTOCOL.md 2.5", "section 9") fails, as renumbering would move it.
#    tests/lint/protocol_refs.py does the matching (a reference may wrap onto the next line).
report "PROTOCOL.md reference by number or to no heading" \
  "write docs/PROTOCOL.md, \"Title\" with a heading's title (without its number)" \
  "$(python3 tests/lint/protocol_refs.py)"

# 4. A coroutine copies what it borrows before it suspends: a kj::StringPtr, kj::ArrayPtr, T& or
#    kj::Maybe<T&> parameter of a coroutine (Co<...> or kj::Promise<...> with a co_await) is not
#    used after its first co_await unless its line says why it outlives the call.
#    tests/lint/coroutine_params.py does the matching; first it must find exactly the bad cases of
#    its fixture (tests/lint/fixtures/coroutine_params.*), so a broken heuristic fails here too.
report "coroutine_params.py self-test" \
  "the lint no longer finds what tests/lint/fixtures/coroutine_params.expected lists; fix it" \
  "$(python3 tests/lint/coroutine_params.py tests/lint/fixtures/coroutine_params.c++ |
     diff tests/lint/fixtures/coroutine_params.expected - | grep '^[<>]')"
report "borrowed parameter used after the coroutine suspended" \
  "copy it at entry (auto name = kj::str(nameParam);), or say on its line why it outlives the call" \
  "$(python3 tests/lint/coroutine_params.py runtime)"

exit "$failed"
