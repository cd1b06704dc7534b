#!/usr/bin/env bash
# Several coach-servers on one PostgreSQL database, behind one coach-proxy,
# all on this machine (what issue 13's deployment looks like, in small):
#   ./tools/cluster.sh
# - PostgreSQL in a temporary folder on a free loopback port
#   (tools/lib/postgres.sh); its data is removed on exit;
# - three coach-servers on 127.0.0.1:50051, :50052 and :50053, sharing that
#   database (COACH_DATABASE_URL), each with its own COACH_INSTANCE;
# - coach-proxy (the REST API on :3000) with
#   COACH_GRPC_TARGET=ipv4:127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053,
#   its metrics on http://127.0.0.1:9465/metrics (COACH_PROXY_METRICS_LISTEN;
#   never on :3000) and each server's on 127.0.0.1:9464, :9466, :9467
#   (COACH_METRICS_LISTEN).
# Every other setting comes from the environment as with tools/run.sh (the
# offline coach unless OPENAI_API_KEY is set). Ctrl-C (or SIGTERM) stops
# everything; any process ending ends the cluster.
#
#   ./tools/cluster.sh --tls
# The same with TLS everywhere, from a throwaway CA made with `openssl` at
# start (tools/lib/tls_ca.sh; deleted on exit, its key at once): mutual TLS
# between coach-proxy and the coach-servers (COACH_GRPC_TLS_*,
# COACH_UPSTREAM_TLS_*), and HTTPS on :3000 (COACH_HTTP_TLS_*). It prints the
# CA's path, for `curl --cacert`.
set -euo pipefail
cd "$(dirname "$0")/.."

TLS=0
for arg in "$@"; do
  case $arg in
    --tls) TLS=1 ;;
    *) echo "usage: $0 [--tls]" >&2; exit 2 ;;
  esac
done

source tools/lib/release_build.sh
release_build

source tools/lib/postgres.sh
source tools/lib/tls_ca.sh
pids=()
stop() {
  if ((${#pids[@]} > 0)); then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  pg_temp_stop
  tls_ca_remove
}
trap stop EXIT
trap 'exit 130' INT TERM

pg_temp_start coach

server_tls=()
proxy_tls=()
if ((TLS)); then
  tls_ca_make
  server_tls=(COACH_GRPC_TLS_CERT="$TLS_CA_DIR/server.pem"
              COACH_GRPC_TLS_KEY="$TLS_CA_DIR/server.key"
              COACH_GRPC_TLS_CLIENT_CA="$TLS_CA_DIR/ca.pem")
  proxy_tls=(COACH_UPSTREAM_TLS_CA="$TLS_CA_DIR/ca.pem"
             COACH_UPSTREAM_TLS_CERT="$TLS_CA_DIR/proxy-client.pem"
             COACH_UPSTREAM_TLS_KEY="$TLS_CA_DIR/proxy-client.key"
             COACH_HTTP_TLS_CERT="$TLS_CA_DIR/server.pem"
             COACH_HTTP_TLS_KEY="$TLS_CA_DIR/server.key")
  echo "cluster: TLS from a throwaway CA: curl --cacert $TLS_CA_DIR/ca.pem https://localhost:3000/readyz"
fi

PORTS=(50051 50052 50053)
METRICS_PORTS=(9464 9466 9467)
targets=()
for i in "${!PORTS[@]}"; do
  port=${PORTS[$i]}
  env "${server_tls[@]}" \
    COACH_DATABASE_URL="$PG_TEMP_URL" COACH_GRPC_LISTEN=127.0.0.1:$port \
    COACH_METRICS_LISTEN=127.0.0.1:${METRICS_PORTS[$i]} \
    COACH_INSTANCE="cluster-$((i + 1))" "$BUILD_DIR/server/coach-server" &
  pids+=($!)
  targets+=("127.0.0.1:$port")
done
env "${proxy_tls[@]}" \
  COACH_PROXY_METRICS_LISTEN="${COACH_PROXY_METRICS_LISTEN:-127.0.0.1:9465}" \
  COACH_GRPC_TARGET="ipv4:$(IFS=,; echo "${targets[*]}")" "$BUILD_DIR/proxy/coach-proxy" &
pids+=($!)

wait -n "${pids[@]}"
