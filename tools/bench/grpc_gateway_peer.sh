#!/usr/bin/env bash
# The benchmark's peer: Debian's grpc-gateway (v1.6.4), the standard REST
# front for gRPC, generated from this checkout's protos (every service with
# google.api.http rules). Offline, from Debian packages only (GOPATH mode).
# Taken from the reference script (../shared/bench/grpc-gateway-peer.sh);
# tools/bench/run.sh installs the packages, builds the peer and runs it in
# front of the same coach-server as coach-proxy.
#   grpc_gateway_peer.sh CHECKOUT  -> $OUT/gwproject (default OUT=/tmp/gwbin)
#   gwproject LISTEN_ADDR GRPC_TARGET
#   (TLS to the server: GW_TLS_CA=ca.pem, and GW_TLS_CERT/GW_TLS_KEY for a
#   client certificate: mutual TLS, as coach-proxy's COACH_UPSTREAM_TLS_*)
# Needs: golang-go golang-github-grpc-ecosystem-grpc-gateway-dev
#   golang-google-grpc-dev golang-goprotobuf-dev golang-google-protobuf-dev
# The JSON options are the closest to coach-proxy's: lowerCamelCase names,
# defaults printed (EmitDefaults).
set -euo pipefail
checkout=$(cd "$1" && pwd)
GW=/usr/share/gocode/src/github.com/grpc-ecosystem/grpc-gateway
out=$(mkdir -p "${OUT:-/tmp/gwbin}" && cd "${OUT:-/tmp/gwbin}" && pwd)
gp=$(mktemp -d); pkgdir=$gp/src/gwproject/api
rm -rf "$gp"; mkdir -p "$out" "$pkgdir"
export GO111MODULE=off GOCACHE=${GOCACHE:-$out/gocache}
[ -x "$out/protoc-gen-grpc-gateway" ] || GOPATH=/usr/share/gocode go build -o "$out/protoc-gen-grpc-gateway" \
  github.com/grpc-ecosystem/grpc-gateway/protoc-gen-grpc-gateway
# Debian's protoc-gen-go predates proto3 `optional`: build from a copy with the keyword dropped
# (field presence does not matter for a throughput peer).
src=$gp/protos; cp -r "$checkout/protos" "$src"
find "$src" -name '*.proto' -exec sed -i -E 's/^([[:space:]]*)optional[[:space:]]+/\1/' {} +
cd "$src"
mapfile -t files < <(find . -name '*.proto' -not -path '*/google/*' | sed 's|^\./||' | sort)
M=""; for f in "${files[@]}"; do M="$M,M$f=gwproject/api"; done
protoc -I . -I "$GW/third_party/googleapis" -I /usr/include \
  -I "$checkout/third_party/googleapis" \
  --plugin=protoc-gen-grpc-gateway="$out/protoc-gen-grpc-gateway" \
  --go_out="plugins=grpc$M:$pkgdir" --grpc-gateway_out="logtostderr=true$M:$pkgdir" "${files[@]}"
# flatten: every generated file into one Go package
find "$pkgdir" -mindepth 2 -name '*.go' -exec mv {} "$pkgdir/" \;
sed -i 's/^package .*/package api/' "$pkgdir"/*.go
regs=$(grep -ho 'func Register[A-Za-z]*HandlerFromEndpoint' "$pkgdir"/*.gw.go | awk '{print $2}' | sort -u)
{
  echo 'package main'
  echo 'import ("context"; "crypto/tls"; "crypto/x509"; "io/ioutil"; "net/http"; "os"; "github.com/grpc-ecosystem/grpc-gateway/runtime"; "google.golang.org/grpc"; "google.golang.org/grpc/credentials"; api "gwproject/api")'
  echo 'func main() {'
  echo '  mux := runtime.NewServeMux(runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{OrigName: false, EmitDefaults: true}))'
  echo '  opts := []grpc.DialOption{grpc.WithInsecure()}'
  echo '  if ca := os.Getenv("GW_TLS_CA"); ca != "" {'
  echo '    pem, err := ioutil.ReadFile(ca); if err != nil { panic(err) }'
  echo '    pool := x509.NewCertPool(); if !pool.AppendCertsFromPEM(pem) { panic("GW_TLS_CA: no certificate") }'
  echo '    config := &tls.Config{RootCAs: pool}'
  echo '    if cert := os.Getenv("GW_TLS_CERT"); cert != "" {'
  echo '      pair, err := tls.LoadX509KeyPair(cert, os.Getenv("GW_TLS_KEY")); if err != nil { panic(err) }'
  echo '      config.Certificates = []tls.Certificate{pair}'
  echo '    }'
  echo '    opts = []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(config))}'
  echo '  }'
  for r in $regs; do echo "  if err := api.$r(context.Background(), mux, os.Args[2], opts); err != nil { panic(err) }"; done
  echo '  if err := http.ListenAndServe(os.Args[1], mux); err != nil { panic(err) }'
  echo '}'
} > "$gp/src/gwproject/main.go"
cd "$gp/src/gwproject" && gofmt -w main.go && GOPATH=$gp:/usr/share/gocode go build -o "$out/gwproject" gwproject
rm -rf "$gp"
echo "built $out/gwproject registering:" $regs >&2
