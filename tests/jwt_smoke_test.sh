#!/usr/bin/env bash
# COACH_AUTH=jwt with the real binaries, real curl and tools/dev-token.sh,
# as the README shows it.
#   jwt_smoke_test.sh <coach-server> <coach-proxy>
set -euo pipefail
root="$(dirname "$0")/.."
source "$root/tests/lib/stack.sh"

export COACH_JWT_SECRET="smoke-test-secret-$(date +%s%N)"
COACH_AUTH=jwt start_stack "$1" "$2"

alice=$("$root/tools/dev-token.sh" alice)
bob=$("$root/tools/dev-token.sh" bob)

out=$(curl -sS -w '\n%{http_code}' -X POST "$base/api/chat/send" \
  -H "Authorization: Bearer $alice" -H "Content-Type: application/json" \
  -d '{"message": "Bonjour, comment prendre confiance en moi ?"}')
[[ $(tail -n1 <<<"$out") == 200 ]] || fail "alice's send: $out"
session=$(sed -n 's/.*"sessionId":"\([^"]*\)".*/\1/p' <<<"$out" | head -n1)

headers=$(curl -sS -D - -o "$dir/body" "$base/api/chat/sessions")
grep -q "^HTTP/1.1 401" <<<"$headers" || fail "no token: $headers"
grep -qi "^WWW-Authenticate: Bearer" <<<"$headers" || fail "no WWW-Authenticate"
grep -q '"code":"UNAUTHENTICATED"' "$dir/body" || fail "401 body"

code=$(curl -sS -o "$dir/body" -w '%{http_code}' \
  -H "Authorization: Bearer $bob" "$base/api/chat/sessions/$session")
[[ $code == 403 ]] || fail "bob on alice's session: $code $(cat "$dir/body")"

code=$(curl -sS -o "$dir/body" -w '%{http_code}' \
  -H "Authorization: Bearer $alice" "$base/api/chat/sessions/$session")
[[ $code == 200 ]] || fail "alice on her session: $code"
grep -q "warn\|WARN" "$dir/server.log" && grep -q "any caller can act" "$dir/server.log" &&
  fail "the none-mode warning in jwt mode"
echo "jwt smoke: ok"
