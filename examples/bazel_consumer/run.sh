#!/usr/bin/env bash
# Builds the out-of-tree Bazel consumer (a workspace of its own with harrow as the external
# repository @harrow), runs its program and checks what it prints, then runs its sh_test.
set -euo pipefail
cd "$(dirname "$0")"
bazel build //:kv
./check_output.sh bazel-bin/kv
bazel test //...
