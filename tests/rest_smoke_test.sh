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

# Graceful stop: both exit 0 on SIGTERM.
kill -TERM "$proxy_pid" "$server_pid"
wait "$proxy_pid" || fail "coach-proxy exit status"
wait "$server_pid" || fail "coach-server exit status"
proxy_pid="" server_pid=""
echo "rest smoke test: OK"
