#!/usr/bin/env bash
# Certificates for TLS between hosts (docs/CLUSTER.md shows the same steps): a tree CA, one
# certificate per name given (subjectAltName DNS:<name>, usable as server and client), a
# stranger's CA with a certificate of its own ("rogue"), and for each name a second certificate
# the tree's CA signed for it ("impostor-NAME": a relay's), for the tests that must be refused.
#
#   make_certs.sh DIR NAME...    -> DIR/ca.pem, DIR/NAME.pem + DIR/NAME.key, DIR/rogue.pem + .key,
#                                   DIR/impostor-NAME.pem + .key
set -euo pipefail
dir=$1
shift
mkdir -p "$dir"
cd "$dir"
umask 077

ca() {  # ca NAME: a self-signed CA, NAME.pem and NAME.key
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=harrow $1" -keyout "$1.key" -out "$1.pem" 2>/dev/null
}

issue() {  # issue CA NAME [DNS]: NAME.pem and NAME.key, signed by CA, for DNS:DNS (or NAME)
  local dns=${3:-$2}
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$dns" \
    -keyout "$2.key" -out "$2.csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$dns" > "$2.ext"
  openssl x509 -req -in "$2.csr" -CA "$1.pem" -CAkey "$1.key" -CAcreateserial -days 3650 \
    -extfile "$2.ext" -out "$2.pem" 2>/dev/null
  rm -f "$2.csr" "$2.ext"
}

ca ca
for name in "$@"; do issue ca "$name"; issue ca "impostor-$name" "$name"; done
ca stranger
issue stranger rogue
