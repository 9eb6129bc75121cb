#!/usr/bin/env bash
# The tutorial's apt line installs every Debian package HarrowConfig.cmake checks for (each named
# in its "not found" message), and nothing ./dev does not install too (what harrow is tested on).
#   docs/packages_test.sh TUTORIAL.md dev HarrowConfig.cmake.in
set -euo pipefail
tutorial="$1" dev="$2" config="$3"

tutorial_packages=$(grep -m1 '^sudo apt-get install -y ' "$tutorial" | sed 's/^sudo apt-get install -y //')
[ -n "$tutorial_packages" ] || { echo "no 'sudo apt-get install -y' line in $tutorial"; exit 1; }
dev_packages=$(sed -n '/^PACKAGES=(/,/)/p' "$dev" | sed 's/^PACKAGES=(//; s/)//')
config_packages=$(perl -0ne 'while (/_harrow_missing\((?:\s*"[^"]*")*?\s*"([^"]*)"\s*\)/g) { print "$1\n" }' "$config")
[ -n "$config_packages" ] || { echo "no _harrow_missing(... \"package\") in $config"; exit 1; }

status=0
for package in $config_packages; do
  grep -qw -- "$package" <<<"$tutorial_packages" || {
    echo "HarrowConfig.cmake needs $package; the tutorial's apt line does not install it"; status=1; }
done
for package in $tutorial_packages; do
  grep -qw -- "$package" <<<"$dev_packages" || {
    echo "the tutorial installs $package; ./dev's PACKAGES does not"; status=1; }
done
[ $status -eq 0 ] && echo "packages: tutorial ⊇ HarrowConfig ($(wc -w <<<"$config_packages")), tutorial ⊆ ./dev"
exit $status
