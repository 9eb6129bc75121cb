#!/usr/bin/env bash
# Builds harrow's Debian packages from the CMake install (./dev deb):
#   build/deb/harrow_VERSION_ARCH.deb      the `harrow` command and harrow-node
#   build/deb/harrow-dev_VERSION_ARCH.deb  headers, the runtime's libraries, capnpc-harrow, harrow's
#                                          schemas, HarrowConfig.cmake and harrow.pc
# The runtime's libraries are static archives (what CMake builds by default): a program of actors
# carries its runtime, and 0.x promises no ABI a shared library's soname would have to keep. So
# `harrow` needs no harrow-dev, and harrow-dev pulls in what a build against it links (Cap'n Proto,
# libsodium, libdw, OpenSSL). The version is harrow's one (runtime/co/version.h, via CMake).
# dpkg-shlibdeps computes the binaries' dependencies; dpkg-deb builds the packages.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/build/deb"
cmake_dir="$out/cmake"
stage="$out/stage"
mkdir -p "$out"

echo "== harrow: configure, build (Release, prefix /usr), install into $stage"
cmake -S "$root" -B "$cmake_dir" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
  -DHARROW_BUILD_PROGRAMS=ON >/dev/null
cmake --build "$cmake_dir" -j2
rm -rf "$stage"
DESTDIR="$stage/install" cmake --install "$cmake_dir" >/dev/null

version=$(sed -n 's/^Version: //p' "$stage/install/usr/lib/"*/pkgconfig/harrow.pc 2>/dev/null ||
          sed -n 's/^Version: //p' "$stage/install/usr/lib/pkgconfig/harrow.pc")
arch=$(dpkg --print-architecture)
[ -n "$version" ] || { echo "no version in the installed harrow.pc"; exit 1; }

# The two packages' trees: the programs in harrow, everything else in harrow-dev.
run="$stage/harrow"
dev="$stage/harrow-dev"
mkdir -p "$run/usr/bin" "$dev/usr"
mv "$stage/install/usr/bin/harrow" "$stage/install/usr/bin/harrow-node" "$run/usr/bin/"
cp -a "$stage/install/usr/." "$dev/usr/"
for p in "$run" "$dev"; do
  mkdir -p "$p/usr/share/doc/$(basename "$p")"
  cp "$root/LICENSE" "$p/usr/share/doc/$(basename "$p")/copyright"
done
cp "$root/CHANGELOG.md" "$dev/usr/share/doc/harrow-dev/"

# The libraries the binaries link, as Debian package dependencies. dpkg-shlibdeps wants a source
# package's debian/control beside it.
shlibdeps() {
  local work="$stage/shlibdeps"
  rm -rf "$work"; mkdir -p "$work/debian"
  printf 'Source: harrow\n\nPackage: harrow\nArchitecture: any\n' >"$work/debian/control"
  (cd "$work" && dpkg-shlibdeps -O "$@" 2>/dev/null) | sed -n 's/^shlibs:Depends=//p'
}
run_depends=$(shlibdeps "$run/usr/bin/harrow" "$run/usr/bin/harrow-node")
dev_depends=$(shlibdeps "$dev/usr/bin/capnpc-harrow")

control() {  # control PACKAGE DEPENDS SUMMARY DESCRIPTION
  local tree="$stage/$1"
  mkdir -p "$tree/DEBIAN"
  cat >"$tree/DEBIAN/control" <<CONTROL
Package: $1
Version: $version
Architecture: $arch
Maintainer: harrow maintainers <harrow@localhost>
Section: devel
Priority: optional
Installed-Size: $(du -sk --exclude=DEBIAN "$tree" | cut -f1)
Depends: $2
Description: $3
$4
CONTROL
}
control harrow "$run_depends" \
  "trees of actors in C++: the harrow command and harrow-node" \
" harrow runs each actor as an OS process, supervised in trees with structured
 concurrency. This package has the harrow command (ps, call, stacks, cancel on a
 running tree) and harrow-node (runs a tree's actors on other hosts)."
control harrow-dev "$dev_depends, g++ (>= 4:12), capnproto, libcapnp-dev (>= 0.9), \
libsodium-dev, libdw-dev, libbz2-dev, libssl-dev, pkg-config" \
  "trees of actors in C++: headers, libraries and code generator" \
" harrow runs each actor as an OS process, supervised in trees with structured
 concurrency. This package builds programs of actors: the runtime's headers and
 static libraries, capnpc-harrow (actor bindings from Cap'n Proto schemas),
 harrow's schemas, find_package(Harrow) for CMake and harrow.pc for pkg-config."

# harrow-dev builds programs; the harrow command looks at them running.
sed -i "/^Depends:/a Recommends: harrow (= $version)" "$dev/DEBIAN/control"

rm -f "$out"/harrow_*.deb "$out"/harrow-dev_*.deb
for p in harrow harrow-dev; do
  dpkg-deb --root-owner-group --build "$stage/$p" "$out/${p}_${version}_${arch}.deb" >/dev/null
  echo "built $out/${p}_${version}_${arch}.deb ($(du -h "$out/${p}_${version}_${arch}.deb" | cut -f1))"
done
