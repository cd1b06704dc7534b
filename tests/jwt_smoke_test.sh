#!/usr/bin/env bash
# COACH_AUTH=jwt with the real binaries, real curl and tools/dev-token.sh,
# as docs/operations.md shows it; then SIGHUP to both, which must keep
# serving.
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

# SIGHUP (systemctl reload) stops neither binary: each logs one line and
# goes on serving (issue 24: both used to die without a word).
# wait_for_line LOG TEXT: bounded (~10 s) wait for TEXT in LOG.
wait_for_line() {
  for _ in $(seq 1 200); do
    grep -qF "$2" "$1" && return 0
    read -r -t 0.05 <> <(:) || true
  done
  cat "$1" >&2
  fail "no '$2' in $1"
}
kill -HUP "$server_pid" "$proxy_pid"
wait_for_line "$dir/server.log" "SIGHUP: "
wait_for_line "$dir/proxy.log" "SIGHUP: "
kill -0 "$server_pid" 2>/dev/null || fail "coach-server died of SIGHUP"
kill -0 "$proxy_pid" 2>/dev/null || fail "coach-proxy died of SIGHUP"
[[ $(grep -c "SIGHUP" "$dir/server.log") == 1 ]] || fail "coach-server: not one SIGHUP line"
[[ $(grep -c "SIGHUP" "$dir/proxy.log") == 1 ]] || fail "coach-proxy: not one SIGHUP line"
code=$(curl -sS -o "$dir/body" -w '%{http_code}' \
  -H "Authorization: Bearer $alice" "$base/api/chat/sessions/$session")
[[ $code == 200 ]] || fail "alice after SIGHUP: $code $(cat "$dir/body")"
echo "jwt smoke: ok"
