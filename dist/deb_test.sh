#!/usr/bin/env bash
# The Debian packages on a fresh Debian 12 (./dev deb-test, several minutes; not in ./dev test):
# a minimal bookworm chroot gets only build/deb/*.deb and the packages apt installs for their
# dependencies, then builds and runs examples/consumer with CMake (find_package) and with
# pkg-config — without harrow's source tree — and checks `harrow --version`.
#
# The debootstrapped base is cached in build/deb/chroot-base (Debian's mirror, once); each run
# works in a copy of it, build/deb/chroot-run, and keeps downloaded .debs in build/deb/apt-cache.
# Needs root (debootstrap, chroot, mounts).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/build/deb"
base="$out/chroot-base"
run="$out/chroot-run"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

shopt -s nullglob
debs=("$out"/harrow_*.deb "$out"/harrow-dev_*.deb)
[ ${#debs[@]} -eq 2 ] || { echo "no packages in $out: run ./dev deb first"; exit 1; }

if [ ! -x "$base/usr/bin/apt-get" ]; then
  echo "== debootstrap bookworm into $base (once)"
  rm -rf "$base.tmp"
  debootstrap --variant=minbase bookworm "$base.tmp" "$mirror" >"$out/debootstrap.log"
  mv "$base.tmp" "$base"
fi

mounted=()
cleanup() {

  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
rm -rf "$run"
cp -a "$base" "$run"
mkdir -p "$out/apt-cache" "$run/var/cache/apt/archives"
mount -t proc proc "$run/proc"; mounted+=("$run/proc")
mount -t tmpfs tmpfs "$run/dev/shm" 2>/dev/null && mounted+=("$run/dev/shm") || true
mount --bind "$out/apt-cache" "$run/var/cache/apt/archives"; mounted+=("$run/var/cache/apt/archives")
cp /etc/resolv.conf "$run/etc/resolv.conf"
echo "deb $mirror bookworm main" >"$run/etc/apt/sources.list"

# What the chroot gets of harrow: the two packages and the example project's four files.
mkdir -p "$run/root/debs" "$run/root/consumer"
cp "${debs[@]}" "$run/root/debs/"
cp "$root/examples/consumer/"{CMakeLists.txt,kv.capnp,main.c++,check_output.sh,run_installed.sh} \
   "$run/root/consumer/"

in_chroot() { chroot "$run" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin \
                LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }
echo "== apt-get install ./harrow*.deb (and their dependencies) in a fresh bookworm"
in_chroot apt-get update -qq
in_chroot sh -c 'apt-get install -y -qq --no-install-recommends /root/debs/*.deb cmake make >/dev/null'

echo "== harrow --version"
version=$(in_chroot harrow --version)
echo "$version"
expected=$(sed -n 's/^#define HARROW_VERSION "\(.*\)"$/\1/p' "$root/runtime/co/version.h")
[[ "$version" == "harrow $expected (wire protocol "* ]] || {
  echo "harrow --version says '$version', not harrow $expected"; exit 1; }
node_version=$(in_chroot harrow-node --version)
[ "$node_version" = "${version/harrow/harrow-node}" ] || {
  echo "harrow-node --version says '$node_version', harrow --version '$version'"; exit 1; }

echo "== examples/consumer against the installed packages"
in_chroot /root/consumer/run_installed.sh
echo "deb-test: harrow and harrow-dev install on a fresh Debian 12; the consumer builds and runs"
