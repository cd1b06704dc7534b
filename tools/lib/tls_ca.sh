# Sourced by tools/cluster.sh and tools/bench/tls_ab.sh: a throwaway CA and
# the certificates of a local deployment, made with the `openssl` command
# (EC P-256 keys) in a new temporary folder.
#   tls_ca_make        sets TLS_CA_DIR, which then holds
#                        ca.pem                 the CA (trust it: curl --cacert)
#                        server.pem/.key        127.0.0.1 and localhost, for
#                                               coach-server and the HTTPS front
#                        proxy-client.pem/.key  coach-proxy's client certificate
#   tls_ca_remove      removes the folder (keys included); safe to call twice.
# The CA's key is deleted once the certificates are signed: nothing more can
# be issued by it.
TLS_CA_DIR=""

tls_ca_make() {
  TLS_CA_DIR=$(mktemp -d "${TMPDIR:-/tmp}/coach-tls-XXXXXX")
  chmod 700 "$TLS_CA_DIR"
  local d=$TLS_CA_DIR
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
  openssl req -x509 "${ec[@]}" -days 7 -subj "/CN=coach throwaway CA" \
    -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$d/server.ext"
  printf 'extendedKeyUsage=clientAuth\n' >"$d/client.ext"
  local name ext serial=1
  for name in server proxy-client; do
    ext=$d/server.ext
    [[ $name == proxy-client ]] && ext=$d/client.ext
    openssl req "${ec[@]}" -subj "/CN=coach-$name" -keyout "$d/$name.key" \
      -out "$d/$name.csr" 2>/dev/null
    openssl x509 -req -days 7 -in "$d/$name.csr" -CA "$d/ca.pem" \
      -CAkey "$d/ca.key" -set_serial $((serial++)) -extfile "$ext" \
      -out "$d/$name.pem" 2>/dev/null
  done
  rm -f "$d/ca.key" "$d"/*.csr "$d"/*.ext
  [[ -s $d/server.pem && -s $d/proxy-client.pem ]] ||
    { echo "tls: openssl could not make the certificates" >&2; return 1; }
}

tls_ca_remove() {
  [[ -n $TLS_CA_DIR ]] && rm -rf "$TLS_CA_DIR"
  TLS_CA_DIR=""
}
