#!/bin/bash
# Copies capnpc-harrow's output for the example schemas into generated/, replacing what is
# there. Run it as: bazel run //codegen:update_generated
# Arguments: the generated files, relative to the runfiles root (= their workspace paths).
set -euo pipefail

if [[ -z "${BUILD_WORKSPACE_DIRECTORY:-}" ]]; then
  echo "run this with: bazel run //codegen:update_generated" >&2
  exit 1
fi
dest="$BUILD_WORKSPACE_DIRECTORY/generated"

# Files this script wrote before and that are no longer generated go away.
if [[ -d "$dest" ]]; then
  find "$dest" -type f \( -name '*.harrow.h' -o -name '*.harrow.c++' \) -delete
fi
for file in "$@"; do
  mkdir -p "$dest/$(dirname "$file")"
  cp "$file" "$dest/$file"
  chmod 644 "$dest/$file"
  echo "generated/$file"
done
