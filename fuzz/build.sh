#!/bin/bash
# Builds the libFuzzer harnesses with clang (-fsanitize=fuzzer,address,undefined) directly over
# the runtime's sources and capnp's generated code (Bazel's toolchain is gcc, and libFuzzer needs
# clang). Output in fuzz/out/ (or $FUZZ_OUT): one binary per harness, plus `seeds`, the seed
# corpus generator.
#
#   fuzz/build.sh            build everything (incrementally)
#   fuzz/build.sh seeds      also regenerate fuzz/corpus/ from fuzz/seeds.c++
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${FUZZ_OUT:-$ROOT/fuzz/out}
CXX=${CXX:-clang++-14}
JOBS=${JOBS:-2}
HARNESSES="channel engine handshake registry sealed"

mkdir -p "$OUT/include/harrow" "$OUT/gen/tests/engine" "$OUT/obj"

# A symlink, left alone when it is right (a new one would look newer than every object).
link() { [[ $(readlink "$2") == "$1" ]] || ln -sfn "$1" "$2"; }

# Public headers as <harrow/LAYER/x.h> (what runtime/layer.bzl does with include_prefix).
for layer in "$ROOT"/runtime/*/; do
  name=$(basename "$layer")
  link "$layer" "$OUT/include/harrow/$name"
done

# capnp's generated code for idl/harrow/*.capnp and the engine tests' probe schema; capnpc-harrow's
# output for the registry and for introspection (which every actor serves) is checked in
# (generated/).
# Generated into a scratch directory and copied over only where it changed: rewriting identical
# headers would make every object look stale (compile_one compares times) and rebuild them all.
regen() {  # out-dir src-prefix schema...
  local dir=$1 prefix=$2 scratch f; shift 2
  scratch=$(mktemp -d)
  capnp compile -I "$ROOT/idl" --no-standard-import -I /usr/include \
    -oc++:"$scratch" --src-prefix="$prefix" "$@"
  (cd "$scratch" && find . -type f) | while read -r f; do
    cmp -s "$scratch/$f" "$dir/$f" || { mkdir -p "$(dirname "$dir/$f")"; cp "$scratch/$f" "$dir/$f"; }
  done
  rm -rf "$scratch"
}
regen "$OUT/include" "$ROOT/idl" "$ROOT"/idl/harrow/*.capnp
regen "$OUT/gen/tests/engine" "$ROOT/tests/engine" "$ROOT/tests/engine/probe.capnp"
for f in "$ROOT"/generated/idl/harrow/*.capnp.harrow.*; do
  link "$f" "$OUT/include/harrow/$(basename "$f")"
done

COMMON=(-std=c++20 -g -O1 -fno-omit-frame-pointer -I "$OUT/include" -I "$OUT/gen" -I "$ROOT"
        -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers)
# Left out of -fsanitize=undefined: `function` (clang 14 cannot combine it with coverage
# instrumentation of coroutines: "Cannot represent a difference across sections") and
# `nonnull-attribute` (KJ 0.9.2's kj/table.h passes a null pointer with size 0 to memset when a
# hash index is empty: harmless, and in a system header).
SAN=(-fsanitize=address,undefined -fno-sanitize=function,nonnull-attribute
     -fno-sanitize-recover=undefined)
# (kj-http: the actor layer's metrics endpoint; kj-tls: etcd over TLS; capnp-json: its JSON log lines.)
LIBS=(-lkj-http -lkj-tls -lcapnp-json -lcapnp-rpc -lcapnp -lkj-async -lkj -lsodium -ldw -lelf -lpthread)

# Runtime sources (everything the actor layer needs), instrumented for coverage.
SOURCES=$(ls "$ROOT"/runtime/{co,ipc,typed,engine,actor,discovery}/{,internal/}*.c++ 2>/dev/null;
          ls "$OUT"/include/harrow/*.capnp.c++ "$OUT"/include/harrow/*.capnp.harrow.c++;
          ls "$OUT"/gen/tests/engine/*.capnp.c++)
export ROOT OUT CXX
export COMMON_FLAGS="${COMMON[*]}" SAN_FLAGS="${SAN[*]}"
compile_one() {
  local src=$1
  local obj="$OUT/obj/$(echo "${src#$ROOT/}" | tr '/' '_').o"
  local dep="${obj%.o}.d" stale
  # Rebuild when a file the object was compiled from (clang's dependency file) is newer than the
  # object, or gone; an object from before dependency files: when the source or any runtime header
  # is newer (runtime sources include no fuzz/ header).
  if [[ -f "$obj" && -f "$dep" ]]; then
    stale=$(find $(sed -e 's/^[^:]*://' -e 's/\\$//' "$dep") -newer "$obj" -print -quit 2>&1)
  elif [[ -f "$obj" ]]; then
    stale=$(find "$src" "$ROOT/runtime" "$OUT/include" -newer "$obj" \
            \( -name '*.h' -o -samefile "$src" \) -print -quit)
  else
    stale=yes
  fi
  if [[ -n $stale ]]; then
    echo "  CXX ${src#$ROOT/}" >&2
    $CXX $COMMON_FLAGS $SAN_FLAGS -fsanitize=fuzzer-no-link -MMD -MF "$dep" -c "$src" -o "$obj"
  fi
}
export -f compile_one
echo "$SOURCES" | xargs -P "$JOBS" -I{} bash -c 'compile_one "$@"' _ {}

OBJS=()
for src in $SOURCES; do OBJS+=("$OUT/obj/$(echo "${src#$ROOT/}" | tr '/' '_').o"); done

link_one() {  # harness name, or "seeds" (the corpus generator: no fuzzer main)
  local h=$1 src="$ROOT/fuzz/$1_fuzz.c++" fuzzer=-fsanitize=fuzzer
  [[ $h == seeds ]] && src="$ROOT/fuzz/seeds.c++" fuzzer=-fsanitize=fuzzer-no-link
  local bin="$OUT/$(basename "$src" .c++)"
  if [[ -f "$bin" && -z $(find "$OUT/obj" "$ROOT/fuzz" -newer "$bin" \( -name '*.o' -o -name '*.h' \
        -o -samefile "$src" \) -print -quit) ]]; then
    return 0
  fi
  echo "  LINK $(basename "$src" .c++)" >&2
  $CXX $COMMON_FLAGS $SAN_FLAGS $fuzzer "$src" $OBJ_LIST $LIB_LIST -o "$OUT/$(basename "$src" .c++)"
}
export -f link_one
export OBJ_LIST="${OBJS[*]}" LIB_LIST="${LIBS[*]}"
echo $HARNESSES seeds | tr ' ' '\n' | xargs -P "$JOBS" -I{} bash -c 'link_one "$@"' _ {}

if [[ "${1:-}" == seeds ]]; then
  rm -rf "$ROOT/fuzz/corpus"
  "$OUT/seeds" "$ROOT/fuzz/corpus"
fi
