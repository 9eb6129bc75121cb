#!/bin/bash
# Runs the libFuzzer harnesses (fuzz/build.sh builds them first).
#
#   fuzz/run.sh short              every harness for 10,000 inputs from a fixed seed (at most 60 s
#                                  each), from the checked-in corpus (fuzz/corpus/<harness>/, left
#                                  untouched): the CI check, the same inputs on every run
#   fuzz/run.sh long [SECONDS]     the campaign: every harness for SECONDS (default 600), JOBS
#                                  (default 2) at a time; the grown corpus is kept in
#                                  fuzz/out/corpus/<harness>/ for the next campaign. Without
#                                  entropic scheduling (-entropic=0: 1.7x the engine's inputs per
#                                  second, docs/FUZZING.md); ENTROPIC=1 keeps it
#
# HARNESSES="engine registry" runs only those.
#
# Findings (crashes, leaks, timeouts, sanitizer reports) are written to
# fuzz/out/artifacts/<harness>/ and make the run fail; the logs are in fuzz/out/logs/. Reproduce
# one with `fuzz/out/<harness>_fuzz ARTIFACT` (HARROW_FUZZ_LOG=1 shows the runtime's log).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${FUZZ_OUT:-$ROOT/fuzz/out}
HARNESSES=${HARNESSES:-channel engine handshake registry sealed}
MODE=${1:-short}

"$ROOT/fuzz/build.sh" >&2

case "$MODE" in
  short) SECONDS_EACH=60; JOBS=1; LIMITS=(-runs=10000 -seed=1 -entropic=0) ;;
  long) SECONDS_EACH=${2:-600}; JOBS=${JOBS:-2}; LIMITS=()
        [[ ${ENTROPIC:-0} == 1 ]] || LIMITS=(-entropic=0) ;;
  *) echo "usage: $0 short | long [SECONDS]" >&2; exit 2 ;;
esac

mkdir -p "$OUT/logs"
run_one() {
  local h=$1 work
  if [[ $MODE == short ]]; then
    work=$(mktemp -d)
  else
    work="$OUT/corpus/$h"
    mkdir -p "$work"
  fi
  mkdir -p "$OUT/artifacts/$h"
  local limits=($LIMITS_STR) status=0 corpora=("$work" "$ROOT/fuzz/corpus/$h")
  # fuzz/regressions/<harness>/: inputs that once failed (a finding, minimised), run every time.
  [[ -d $ROOT/fuzz/regressions/$h ]] && corpora+=("$ROOT/fuzz/regressions/$h")
  # -timeout: a peer must not be able to hang the victim; -max_len: frames of a few messages.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$OUT/${h}_fuzz" "${limits[@]}" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
    -max_len=8192 -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$h/" \
    "${corpora[@]}" >"$OUT/logs/$h.log" 2>&1 || status=$?
  [[ $MODE == short ]] && rm -rf "$work"
  local runs
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$OUT/logs/$h.log" | tail -1)
  local verdict=ok
  [[ $status != 0 ]] && verdict="FAILED (exit $status, see fuzz/out/logs/$h.log)"
  printf '%-10s %8s executions in %3ss: %s\n' "$h" "${runs:-?}" "$SECONDS" "$verdict"
  if [[ $status != 0 ]]; then
    # CI keeps only what is printed: the end of the log and the finding itself, so that a
    # failure seen there reproduces anywhere (`base64 -d > input; fuzz/out/${h}_fuzz input`).
    tail -n 40 "$OUT/logs/$h.log" | sed "s/^/  $h| /"
    local artifact
    for artifact in "$OUT/artifacts/$h/"*; do
      [[ -f $artifact && $(stat -c %s "$artifact") -le 16384 ]] || continue
      echo "  $h| finding $(basename "$artifact"), base64:"
      base64 -w 100 "$artifact" | sed "s/^/  $h| /"
    done
  fi
  return "$status"
}
export -f run_one
export OUT ROOT MODE SECONDS_EACH LIMITS_STR="${LIMITS[*]}"

echo $HARNESSES | tr ' ' '\n' | xargs -P "$JOBS" -I{} bash -c 'run_one "$@"' _ {}
