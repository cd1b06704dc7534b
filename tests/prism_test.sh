#!/usr/bin/env bash
# Stoplight Prism in proxy mode (npm, pinned: tools/npm-tools.sh) between a
# client and the real coach-proxy: every request and every answer of the
# seed flow (a session created, a send, a stream, reads, paging, stats,
# history) and of its errors (400, 404, 405) is checked against the
# document coach-proxy serves (/openapi.json). With --errors Prism answers
# a violation itself (a 4xx/5xx describing it); any violation, or any
# status other than the one expected, fails the test.
#   prism_test.sh <coach-server> <coach-proxy> <tools/npm folder>
set -euo pipefail
npm_dir=$3
source "$(dirname "$0")/lib/stack.sh"
start_stack "$1" "$2"
curl -sS -o "$dir/openapi.json" "$base/openapi.json"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$npm_dir/node_modules/.bin/prism" proxy "$dir/openapi.json" "$base" \
  --host 127.0.0.1 --port "$port" --errors >"$dir/prism.log" 2>&1 &
prism_pid=$!
trap 'kill $prism_pid 2>/dev/null || true; stop_stack' EXIT
prism="http://127.0.0.1:$port"
# Bounded, polled: nothing signals that Prism listens.
deadline=$((SECONDS + 60))
until curl -sf -o /dev/null "$prism/healthz"; do
  (( SECONDS < deadline )) || fail "Prism did not start: $(tail -n 20 "$dir/prism.log")"
  kill -0 "$prism_pid" 2>/dev/null || fail "Prism exited: $(tail -n 20 "$dir/prism.log")"
  sleep 0.2
done

# call EXPECTED METHOD PATH [BODY]: through Prism; fails on another status.
call() {
  local expected=$1 method=$2 path=$3 body=${4:-}
  local args=(-sS -o "$dir/body" -w '%{http_code}' -X "$method" "$prism$path")
  [[ -z $body ]] || args+=(-H 'Content-Type: application/json' -d "$body")
  local status
  status=$(curl "${args[@]}")
  [[ $status == "$expected" ]] ||
    fail "$method $path: $status, not $expected: $(head -c 600 "$dir/body")"
}

call 200 POST /api/chat/sessions '{"userId":"prism","title":"Premier rendez-vous"}'
session=$(jq -r '.session.id' "$dir/body")
call 200 POST /api/chat/send "{\"userId\":\"prism\",\"sessionId\":\"$session\",\"message\":\"Bonjour\"}"
call 200 POST /api/chat/send '{"userId":"prism","message":"Une nouvelle conversation"}'
call 200 POST /api/chat/send/stream "{\"userId\":\"prism\",\"sessionId\":\"$session\",\"message\":\"Et ensuite ?\"}"
grep -q '"reply"' "$dir/body" || fail "the stream had no reply event"
call 200 GET "/api/chat/sessions?userId=prism"
call 200 GET "/api/chat/sessions?userId=prism&pageSize=1"
call 200 GET "/api/chat/sessions/$session?userId=prism"
call 200 PATCH "/api/chat/sessions/$session" '{"userId":"prism","title":"Renommée"}'
call 200 GET "/api/chat/history?userId=prism"
call 200 GET "/api/user/stats?userId=prism"
call 200 GET "/api/user/usage?userId=prism"
# Errors, in the documented body.
call 400 POST /api/chat/send '{"userId":"prism"}'
call 404 GET "/api/chat/sessions/no-such-session?userId=prism"
call 200 DELETE "/api/chat/sessions/$session?userId=prism"

if grep -qi 'violation' "$dir/prism.log"; then
  grep -i -A3 'violation' "$dir/prism.log" | head -40 >&2
  fail "Prism reported violations"
fi
echo "prism test: OK ($(grep -c 'Received forward response' "$dir/prism.log") answers checked)"
