#!/usr/bin/env bash
# A/B of coach-proxy builds on the hot path: GET /api/user/stats through
# each proxy, over one coach-server (offline coach, a temporary SQLite
# file), with wrk at 8 and 64 connections, the proxies taking turns for
# several rounds (the machine is shared: alternating spreads its noise over
# both). Prints req/s, p50/p99 and the proxy's CPU per request (utime +
# stime over the run), per round and on average.
#   tools/bench/proxy_ab.sh <coach-server> <name>=<coach-proxy>[:ENV=V,...] ...
# e.g. (Release builds of both):
#   tools/bench/proxy_ab.sh build/rel/server/coach-server \
#     before=build/before/proxy/coach-proxy after=build/rel/proxy/coach-proxy \
#     after-grpc=build/rel/proxy/coach-proxy:COACH_UPSTREAM_CLIENT=grpc
# COACH_AB_SECONDS (10) per run, COACH_AB_ROUNDS (3). Needs wrk and curl.
#
# TLS between proxy and server (issue 25): with COACH_AB_TLS=1 a second
# coach-server (its own SQLite file) serves mutual TLS from a throwaway CA
# (tools/lib/tls_ca.sh), and a proxy whose settings mention @TLS@ (the CA's
# folder) is pointed at it instead, e.g.
#   COACH_AB_TLS=1 tools/bench/proxy_ab.sh build/rel/server/coach-server \
#     plain=build/rel/proxy/coach-proxy \
#     tls=build/rel/proxy/coach-proxy:COACH_UPSTREAM_TLS_CA=@TLS@/ca.pem,COACH_UPSTREAM_TLS_CERT=@TLS@/proxy-client.pem,COACH_UPSTREAM_TLS_KEY=@TLS@/proxy-client.key \
#     gateway-tls=gateway+/tmp/gwbin/gwproject:GW_TLS_CA=@TLS@/ca.pem,GW_TLS_CERT=@TLS@/proxy-client.pem,GW_TLS_KEY=@TLS@/proxy-client.key
# (`gateway+BINARY`: grpc-gateway built by tools/bench/grpc_gateway_peer.sh;
# such a proxy's name must start with "gateway".)
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/lib/port_from_log.sh
source tools/lib/tls_ca.sh

SERVER=$1
shift
SECONDS_PER_RUN=${COACH_AB_SECONDS:-10}
ROUNDS=${COACH_AB_ROUNDS:-3}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
  tls_ca_remove
}
trap cleanup EXIT

COACH_DB_PATH=$WORK/coach.db COACH_GRPC_LISTEN=127.0.0.1:0 \
  "$SERVER" >"$WORK/server.log" 2>&1 &
PIDS+=($!)
SERVER_PID=$!
GRPC_PORT=$(port_from_log "$WORK/server.log" "$SERVER_PID")
TLS_GRPC_PORT=""
if [[ ${COACH_AB_TLS:-0} == 1 ]]; then
  tls_ca_make
  COACH_DB_PATH=$WORK/coach-tls.db COACH_GRPC_LISTEN=127.0.0.1:0 \
    COACH_GRPC_TLS_CERT="$TLS_CA_DIR/server.pem" \
    COACH_GRPC_TLS_KEY="$TLS_CA_DIR/server.key" \
    COACH_GRPC_TLS_CLIENT_CA="$TLS_CA_DIR/ca.pem" \
    "$SERVER" >"$WORK/server-tls.log" 2>&1 &
  PIDS+=($!)
  TLS_GRPC_PORT=$(port_from_log "$WORK/server-tls.log" "$!")
fi

NAMES=()
declare -A PORT PID
for spec in "$@"; do
  name=${spec%%=*}
  rest=${spec#*=}
  binary=${rest%%:*}
  envs=()
  if [[ $rest == *:* ]]; then IFS=, read -r -a envs <<<"${rest#*:}"; fi
  port=$GRPC_PORT
  if [[ $rest == *@TLS@* ]]; then
    [[ -n $TLS_GRPC_PORT ]] || { echo "$name: @TLS@ needs COACH_AB_TLS=1" >&2; exit 1; }
    port=$TLS_GRPC_PORT
    envs=("${envs[@]//@TLS@/$TLS_CA_DIR}")
  fi
  if [[ $binary == gateway+* ]]; then
    # grpc-gateway (tools/bench/grpc_gateway_peer.sh): LISTEN TARGET as
    # arguments, its TLS from GW_TLS_*; it logs no port: one picked here.
    binary=${binary#gateway+}
    PORT[$name]=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    env "${envs[@]}" "$binary" "127.0.0.1:${PORT[$name]}" "127.0.0.1:$port" \
      >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    PID[$name]=$!
    for _ in $(seq 1 200); do
      curl -sf "http://127.0.0.1:${PORT[$name]}/api/user/stats?userId=bench-reader" >/dev/null && break
      read -r -t 0.05 <> <(:) || true
    done
  else
    env "${envs[@]}" COACH_GRPC_TARGET=127.0.0.1:$port \
      COACH_HTTP_LISTEN=127.0.0.1:0 COACH_ACCESS_LOG=false \
      "$binary" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    PID[$name]=$!
    PORT[$name]=$(port_from_log "$WORK/$name.log" "${PID[$name]}")
  fi
  NAMES+=("$name")
done

URL_PATH="/api/user/stats?userId=bench-reader"
# Same answer from each coach-proxy, and from each grpc-gateway (whose JSON
# differs in details: its own marshaller).
declare -A FIRST
for name in "${NAMES[@]}"; do
  kind=proxy
  [[ $name == gateway* ]] && kind=gateway
  body=$(curl -sf "http://127.0.0.1:${PORT[$name]}$URL_PATH")
  [[ -z ${FIRST[$kind]:-} || $body == "${FIRST[$kind]}" ]] ||
    { echo "$name answers other bytes" >&2; exit 1; }
  FIRST[$kind]=$body
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A SUM_RPS SUM_CPU
printf '%-12s %5s %6s %10s %8s %8s %12s\n' proxy conns round req/s p50_ms p99_ms cpu_us/req
for conns in 8 64; do
  for round in $(seq 1 "$ROUNDS"); do
    for name in "${NAMES[@]}"; do
      url="http://127.0.0.1:${PORT[$name]}$URL_PATH"
      wrk -t2 -c"$conns" -d2s "$url" >/dev/null  # warm up
      before=$(cpu_ticks "${PID[$name]}")
      out=$(wrk -t2 -c"$conns" -d"${SECONDS_PER_RUN}s" --latency "$url")
      after=$(cpu_ticks "${PID[$name]}")
      rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
      requests=$(awk '/requests in/ {print $1}' <<<"$out")
      p50=$(awk '$1=="50%" {print $2}' <<<"$out")
      p99=$(awk '$1=="99%" {print $2}' <<<"$out")
      hz=$(getconf CLK_TCK)
      cpu=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$requests" \
            'BEGIN {printf "%.1f", (n > 0 ? t / hz * 1e6 / n : 0)}')
      grep -q "Non-2xx" <<<"$out" && echo "$name: non-2xx answers" >&2
      printf '%-12s %5s %6s %10s %8s %8s %12s\n' "$name" "$conns" "$round" "$rps" "$p50" "$p99" "$cpu"
      SUM_RPS[$name.$conns]=$(( ${SUM_RPS[$name.$conns]:-0} + rps ))
      SUM_CPU[$name.$conns]=$(awk -v a="${SUM_CPU[$name.$conns]:-0}" -v b="$cpu" 'BEGIN {print a + b}')
    done
  done
done
echo "averages over $ROUNDS rounds of ${SECONDS_PER_RUN}s:"
for conns in 8 64; do
  for name in "${NAMES[@]}"; do
    printf '  %-12s c=%-3s %8d req/s %8.1f us CPU/req\n' "$name" "$conns" \
      $(( ${SUM_RPS[$name.$conns]} / ROUNDS )) \
      "$(awk -v s="${SUM_CPU[$name.$conns]}" -v r="$ROUNDS" 'BEGIN {print s / r}')"
  done
done
