#!/usr/bin/env bash
# Builds this project against an installed harrow two ways — find_package(Harrow) +
# harrow_generate_cpp() (CMake's default build type, then Release), and plain g++ with pkg-config
# (harrow.pc) — and runs each, checking what it prints (check_output.sh). Used by run_cmake.sh
# (a prefix of its own) and by the Debian package's test (dist/deb_test.sh, harrow in /usr).
#   run_installed.sh [PREFIX]      without PREFIX: harrow installed where the system looks
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
check="$here/check_output.sh"
prefix="${1:-}"
cmake_args=()
if [ -n "$prefix" ]; then
  cmake_args=(-DCMAKE_PREFIX_PATH="$prefix")
  export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== consumer with find_package(Harrow), CMake's default build type"
# No build type: no -g of CMake's, yet the remote trace names main.c++:LINE (harrow's targets add
# line tables), which check_output.sh checks.
cmake -S "$here" -B "$tmp/consumer" "${cmake_args[@]}" >/dev/null
cmake --build "$tmp/consumer" -j2
"$check" "$tmp/consumer/kv"

echo "== consumer with find_package(Harrow), Release"
# Release (-O3) with -Werror: harrow's headers must compile warning-free in a user's build.
cmake -S "$here" -B "$tmp/consumer-release" "${cmake_args[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$tmp/consumer-release" -j2
"$check" "$tmp/consumer-release/kv"

echo "== consumer with pkg-config"
mkdir "$tmp/pc"
capnp compile -I"$(pkg-config --variable=idldir harrow)" --src-prefix="$here" \
  -oc++:"$tmp/pc" -o"$(pkg-config --variable=capnpc_harrow harrow)":"$tmp/pc" "$here/kv.capnp"
# -g1: line tables, so the remote trace names main.c++:LINE (harrow.pc leaves debug flags to you).
# shellcheck disable=SC2046  # pkg-config's output is a list of flags
g++ -std=c++20 -O1 -g1 -Wall -Wextra -Werror -Wno-unused-parameter -I"$tmp/pc" \
  $(pkg-config --cflags harrow) -o "$tmp/pc/kv" "$here/main.c++" "$tmp/pc/kv.capnp.c++" \
  "$tmp/pc/kv.capnp.harrow.c++" $(pkg-config --libs harrow)
"$check" "$tmp/pc/kv"
echo "consumer against the installed harrow: 3 passed, 0 failed"
