#!/usr/bin/env bash
# A release tarball of the committed tree (./dev dist): build/dist/harrow-VERSION.tar.gz, with
# every file under harrow-VERSION/, reproducible (git archive, gzip -n: the same commit gives
# the same bytes and sha256). Prints the http_archive stanza for a Bazel WORKSPACE.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
version=$(sed -n 's/^#define HARROW_VERSION "\(.*\)"$/\1/p' runtime/co/version.h)
[ -n "$version" ] || { echo "no HARROW_VERSION in runtime/co/version.h"; exit 1; }
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "note: uncommitted changes are not in the tarball (it is HEAD, $(git rev-parse --short HEAD))" >&2
fi
mkdir -p build/dist
tarball="build/dist/harrow-$version.tar.gz"
git archive --format=tar --prefix="harrow-$version/" HEAD | gzip -n -9 >"$tarball"
sha=$(sha256sum "$tarball" | cut -d' ' -f1)
echo "$tarball ($(du -h "$tarball" | cut -f1)), sha256 $sha"
cat <<STANZA

load("@bazel_tools//tools/build_defs/repo:http.bzl", "http_archive")

http_archive(
    name = "harrow",
    urls = ["https://YOUR-MIRROR/harrow-$version.tar.gz"],
    strip_prefix = "harrow-$version",
    sha256 = "$sha",
)
STANZA
