#!/usr/bin/env bash
# Makes a throwaway CA and certificates for the TLS examples (openssl from Debian's `openssl`).
# Usage: examples/certs/make-certs.sh   (writes into examples/certs/, skips files that exist)
set -euo pipefail
cd "$(dirname "$0")"
[ -f ca.pem ] && [ -f localhost.pem ] && [ -f client.pem ] && exit 0

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
  -subj "/CN=strait example CA" -keyout ca.key -out ca.pem 2>/dev/null

issue() { # name subject-alt-names extended-key-usage
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
    -keyout "$1.key" -out "$1.csr" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\n' "$2" "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
issue localhost "DNS:localhost,IP:127.0.0.1" serverAuth
issue client "URI:spiffe://example.org/client" clientAuth
echo "wrote $(pwd)/{ca,localhost,client}.{pem,key}"
