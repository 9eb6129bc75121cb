#!/usr/bin/env bash
# Builds harrow with CMake, installs it into a temporary prefix, then builds this project against
# the installed copy two ways — find_package(Harrow) + harrow_generate_cpp(), and plain g++ with
# pkg-config (harrow.pc) — and runs each, checking what it prints; and follows docs/TUTORIAL.md
# against the same install. (run_bazel.sh builds the same sources with Bazel.)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
check="$here/check_output.sh"

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

echo "== consumer with find_package(Harrow), CMake's default build type"
# No build type: no -g of CMake's, yet the remote trace names main.c++:LINE (harrow's targets add
# line tables), which check_output.sh checks.
cmake -S "$here" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$tmp/consumer" -j2
"$check" "$tmp/consumer/kv"

echo "== consumer with find_package(Harrow), Release"
# Release (-O3) with -Werror: harrow's headers must compile warning-free in a user's build.
cmake -S "$here" -B "$tmp/consumer-release" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$tmp/consumer-release" -j2
"$check" "$tmp/consumer-release/kv"

echo "== consumer with pkg-config"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
mkdir "$tmp/pc"
capnp compile -I"$(pkg-config --variable=idldir harrow)" --src-prefix="$here" \
  -oc++:"$tmp/pc" -o"$(pkg-config --variable=capnpc_harrow harrow)":"$tmp/pc" "$here/kv.capnp"
# shellcheck disable=SC2046  # pkg-config's output is a list of flags
g++ -std=c++20 -O1 -Wall -Wextra -Werror -Wno-unused-parameter -I"$tmp/pc" \
  $(pkg-config --cflags harrow) -o "$tmp/pc/kv" "$here/main.c++" "$tmp/pc/kv.capnp.c++" \
  "$tmp/pc/kv.capnp.harrow.c++" $(pkg-config --libs harrow)
"$check" "$tmp/pc/kv"
echo "cmake consumer: 3 passed, 0 failed"
