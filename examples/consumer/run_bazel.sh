#!/usr/bin/env bash
# Builds this project with Bazel (a workspace of its own with harrow as the external repository
# @harrow), runs its program and checks what it prints, then runs its sh_test. (run_cmake.sh
# builds the same sources with CMake against an installed harrow.)
set -euo pipefail
cd "$(dirname "$0")"
bazel build //:kv
./check_output.sh bazel-bin/kv
bazel test //...
