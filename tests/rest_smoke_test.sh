#!/usr/bin/env bash
# The real binaries, started as tools/run.sh starts them, answering the API
# page's three curl examples through real curl (ports aside).
#   rest_smoke_test.sh <coach-server> <coach-proxy>
set -euo pipefail
source "$(dirname "$0")/lib/stack.sh"
start_stack "$1" "$2"

# 1. Démarrer une conversation (as written on the page).
out=$(curl -sS -w '\n%{http_code}' -X POST "$base/api/chat/send" \
  -H "Content-Type: application/json" \
  -d '{
    "userId": "user123",
    "message": "Bonjour, j'\''ai besoin de conseils pour améliorer ma confiance en moi"
  }')
echo "$out"
[[ $(tail -n1 <<<"$out") == 200 ]] || fail "example 1 status"
grep -q '"remainingCredits":4' <<<"$out" || fail "example 1 credits"
session=$(sed -n 's/.*"sessionId":"\([^"]*\)".*/\1/p' <<<"$out" | head -n1)
[[ -n $session ]] || fail "example 1 sessionId"

# 2. Continuer une conversation, in session $1: as written ("session456" does
# not exist: 404 in the documented shape), then in the session the first
# call created.
continue_conversation() {
  curl -sS -w '\n%{http_code}' -X POST "$base/api/chat/send" \
    -H "Content-Type: application/json" \
    -d '{
    "userId": "user123",
    "sessionId": "'"$1"'",
    "message": "Comment puis-je me sentir plus à l'\''aise dans les situations sociales ?"
  }'
}
out=$(continue_conversation session456)
echo "$out"
[[ $(tail -n1 <<<"$out") == 404 ]] || fail "example 2 as written"
grep -q '"code":"SESSION_NOT_FOUND"' <<<"$out" || fail "example 2 body"
out=$(continue_conversation "$session")
echo "$out"
[[ $(tail -n1 <<<"$out") == 200 ]] || fail "example 2 with a real session"
grep -q "\"sessionId\":\"$session\"" <<<"$out" || fail "example 2 session"

# 3. Récupérer l'historique.
out=$(curl -sS -w '\n%{http_code}' "$base/api/chat/history?userId=user123&limit=10")
echo "$out"
[[ $(tail -n1 <<<"$out") == 200 ]] || fail "example 3 status"
grep -q '"stats":{"totalSessions":1,"totalMessages":4}' <<<"$out" || fail "example 3 stats"

# 4. A streamed reply, read as it comes (curl -N: no buffering): deltas,
# then the reply as the plain send returns it.
out=$(curl -sS -N --max-time 30 -X POST "$base/api/chat/send/stream" \
  -H "Content-Type: application/json" -H "Accept: text/event-stream" \
  -d '{"userId": "user123", "message": "Comment oser parler en public ?"}')
echo "$out"
grep -q '^data: {"delta":"' <<<"$out" || fail "stream: no delta event"
grep -q '^data: {"reply":{"sessionId":"' <<<"$out" || fail "stream: no reply event"

# Operations: liveness and readiness probes.
[[ $(curl -sS -o /dev/null -w '%{http_code}' "$base/healthz") == 200 ]] || fail "healthz"
[[ $(curl -sS -o /dev/null -w '%{http_code}' "$base/readyz") == 200 ]] || fail "readyz"

# Graceful stop, even with clients dripping half a request: both exit 0 on
# SIGTERM, the proxy at once (nothing is in progress; the drippers are
# closed, not waited for).
port=${base##*:}
drippers=()
for _ in 1 2 3 4 5; do
  exec {fd}<>"/dev/tcp/127.0.0.1/$port"
  printf 'GET /api/user/stats HTTP/1.1\r\nHost: x\r\n' >&"$fd"
  drippers+=("$fd")
done
stop_started=$SECONDS
kill -TERM "$proxy_pid" "$server_pid"
wait "$proxy_pid" || fail "coach-proxy exit status"
(( SECONDS - stop_started < 5 )) || fail "coach-proxy took $((SECONDS - stop_started)) s to stop"
wait "$server_pid" || fail "coach-server exit status"
proxy_pid="" server_pid=""
for fd in "${drippers[@]}"; do exec {fd}>&-; done
echo "rest smoke test: OK"
