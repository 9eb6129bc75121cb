#!/usr/bin/env bash
# Builds harrow with CMake, installs it into a temporary prefix, follows docs/TUTORIAL.md against
# it, then builds this project against the installed copy with find_package(Harrow) and with
# pkg-config (run_installed.sh), running each. (run_bazel.sh builds the same sources with Bazel.)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"

echo "== harrow: configure, build, install into $prefix"
cmake -S "$root" -B "$tmp/harrow" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$tmp/harrow" -j2
cmake --install "$tmp/harrow" --prefix "$prefix" >/dev/null
for f in lib/cmake/Harrow/HarrowConfig.cmake lib/cmake/Harrow/HarrowConfigVersion.cmake \
         lib/pkgconfig/harrow.pc bin/capnpc-harrow bin/harrow include/harrow/harrow.h \
         include/harrow/actor.capnp include/harrow/typed/typed.h; do
  [ -e "$prefix/$f" ] || { echo "not installed: $f"; exit 1; }
done
if [ -e "$prefix/include/harrow/engine/internal" ]; then
  echo "the engine's internal headers were installed"; exit 1
fi

echo "== docs/TUTORIAL.md, followed to the letter against the installed copy"
"$root/docs/tutorial_test.sh" "$prefix"

"$here/run_installed.sh" "$prefix"
