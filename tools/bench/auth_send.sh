#!/usr/bin/env bash
# REST send throughput with COACH_AUTH=jwt (an HS256 token checked on every
# call) next to COACH_AUTH=none, same user, same session, offline coach,
# interleaved: none, jwt, none, jwt. Per-user limits are raised so that
# they do not cap the figure. Prints "none_rps jwt_rps".
#   auth_send.sh BUILD_DIR SECONDS CONNECTIONS
set -euo pipefail
BUILD=$1 DURATION=$2 CONNS=$3
cd "$(dirname "$0")/../.."
source tools/lib/port_from_log.sh
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

export COACH_JWT_SECRET="bench-secret-$(date +%s%N)"
run() {  # MODE -> req/s
  local mode=$1 db="$work/$1-$RANDOM.db"
  env COACH_AUTH="$mode" COACH_DB_PATH="$db" COACH_GRPC_LISTEN=127.0.0.1:0 \
    COACH_SEND_RATE_PER_MINUTE=100000000 COACH_MAX_CONCURRENT_SENDS_PER_USER=100000 \
    COACH_FREE_MONTHLY_CREDITS=100000000 "$BUILD/server/coach-server" 2>"$work/s.log" &
  local spid=$!; pids+=("$spid")
  local gport; gport=$(port_from_log "$work/s.log" "$spid")
  env COACH_GRPC_TARGET=127.0.0.1:$gport COACH_HTTP_LISTEN=127.0.0.1:0 COACH_ACCESS_LOG=false \
    "$BUILD/proxy/coach-proxy" 2>"$work/p.log" &
  local ppid=$!; pids+=("$ppid")
  local hport; hport=$(port_from_log "$work/p.log" "$ppid")
  local token="" auth=()
  if [[ $mode == jwt ]]; then
    token=$(tools/dev-token.sh bench-user)
    auth=(-H "Authorization: Bearer $token")
  fi
  local session
  session=$(curl -s "${auth[@]}" -H "Content-Type: application/json" \
    -d '{"userId":"bench-user","title":"Bench"}' "http://127.0.0.1:$hport/api/chat/sessions" |
    sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
  TOKEN=$token SESSION=$session USER_ID=bench-user \
    wrk -t2 -c"$CONNS" -d"${DURATION}s" -s tools/bench/send_one_session.lua \
    "http://127.0.0.1:$hport" | awk '/Requests\/sec/ {printf "%.0f", $2}'
  kill "$ppid" "$spid"; wait "$ppid" "$spid" 2>/dev/null || true
}
a=$(run none); b=$(run jwt); c=$(run none); d=$(run jwt)
echo "$(( (a + c) / 2 )) $(( (b + d) / 2 ))"
