#!/usr/bin/env bash
# Runs the kv program and checks what it prints, its exit status, and that its child is gone.
# Shared by the Bazel and CMake consumers: check_output.sh PATH-TO-KV-BINARY
set -euo pipefail
binary="$1"
out=$(HARROW_REGISTRY=none "$binary" 2>&1) || { echo "kv failed:"; echo "$out"; exit 1; }
echo "$out"
for expected in "serving" "spawned actor kv-1" "put fruit/apple=red" "put fruit/apple=green (replaced)" \
                "get fruit/apple -> green" "get fruit/cherry -> (none)" \
                "remove fruit/cherry failed: harrow.RemoteActorError" "no such key" \
                "scan fruit/: fruit/apple=green" "scan fruit/: fruit/banana=yellow" \
                "nursery closed: kv-1 cancelled and reaped"; do
  grep -qF -- "$expected" <<<"$out" || { echo "missing: $expected"; exit 1; }
done
if grep -qF "scan fruit/: veg/" <<<"$out"; then echo "scan went past its prefix"; exit 1; fi
# The remote error's trace, as the build's defaults give it (line tables from harrow's Bazel macro
# or CMake target): the handler first, with its file and line, harrow's and KJ's frames folded.
frame0=$(grep -A1 -E '^    stack:$' <<<"$out" | tail -1)
line=$(grep -n 'KJ_FAIL_REQUIRE("no such key"' "$(dirname "$0")/main.c++" | cut -d: -f1)
[[ "$frame0" =~ ^\ \ \ \ \#0\ KvImpl::remove\(harrow::ServerCall\<.*\>\)\ at\ (.*/)?main\.c\+\+:$line$ ]] || {
  echo "the remote trace does not start at the handler, main.c++:$line: '$frame0'"; exit 1; }
grep -qE '^    … [0-9]+ frames in harrow' <<<"$out" || { echo "harrow's frames not folded"; exit 1; }
if grep -qE '^    #[0-9]+ (harrow|kj|capnp|std)::' <<<"$out"; then
  echo "a frame of harrow's or a library's is listed, not folded"; exit 1
fi
child_pid=$(grep -oE '^\[kv ([0-9]+)\]' <<<"$out" | head -1 | grep -oE '[0-9]+' || true)
if [ -n "$child_pid" ] && kill -0 "$child_pid" 2>/dev/null; then
  echo "child $child_pid is still alive"; exit 1
fi
echo "kv: output as expected"
