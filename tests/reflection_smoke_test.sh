#!/usr/bin/env bash
# Starts the real coach-server on a free loopback port and checks, with an
# independent client (buf, through server reflection), that it lists both
# services and the health service, and answers a call.
#   reflection_smoke_test.sh <coach-server> <buf>
set -euo pipefail
source "$(dirname "$0")/../tools/lib/port_from_log.sh"
server=$1
buf=$2
dir=$(mktemp -d)
log="$dir/server.log"
cleanup() {
  [[ -n ${pid:-} ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

"$server" --db_path="$dir/coach.db" --grpc_listen=127.0.0.1:0 2>"$log" &
pid=$!

port=$(port_from_log "$log" "$pid")

services=$("$buf" curl --protocol grpc --http2-prior-knowledge --list-services "http://127.0.0.1:$port")
echo "$services"
for s in coach.v1.ChatService coach.v1.UserService grpc.health.v1.Health; do
  grep -qx "$s" <<<"$services" || { echo "missing service $s" >&2; exit 1; }
done

health=$("$buf" curl --protocol grpc --http2-prior-knowledge -d '{"service": "coach.v1.ChatService"}' \
  "http://127.0.0.1:$port/grpc.health.v1.Health/Check")
grep -q '"SERVING"' <<<"$health" || { echo "not SERVING: $health" >&2; exit 1; }

stats=$("$buf" curl --protocol grpc --http2-prior-knowledge -d '{"userId": "smoke"}' \
  "http://127.0.0.1:$port/coach.v1.UserService/GetUserStats")
grep -q '"plan": "FREE"' <<<"$stats" || { echo "unexpected stats: $stats" >&2; exit 1; }
echo "reflection smoke test: OK"
