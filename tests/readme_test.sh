#!/usr/bin/env bash
# The README's examples, run as a reader would: every ```bash block marked
# `<!-- example -->` in README.md, in order, as one bash script (set -e),
# against the real binaries started as tools/run.sh starts them (with a
# development admin token in data/admin-token), in a folder laid out like
# the repository's. Only the addresses change (the stack's free ports for
# :3000 and :50051). Then what they must have done.
#   readme_test.sh <README.md> <coach-server> <coach-proxy> <buf>
set -euo pipefail
readme=$1 buf=$4
source "$(dirname "$0")/lib/stack.sh"
work=$(mktemp -d)
mkdir -p "$work/data" "$work/tools/npm/node_modules/.bin"
ln -s "$buf" "$work/tools/npm/node_modules/.bin/buf"
(umask 077; openssl rand -hex 16 >"$work/data/admin-token")
COACH_ADMIN_TOKEN=$(cat "$work/data/admin-token") start_stack "$2" "$3"
trap 'stop_stack; rm -rf "$work"' EXIT

# The marked blocks, in order.
script="$work/examples.sh"
awk '
  /^<!-- example -->$/ { marked = 1; next }
  marked && /^```bash$/ { inside = 1; marked = 0; next }
  inside && /^```$/ { inside = 0; print ""; next }
  inside { print }
  { marked = 0 }
' "$readme" >"$script"
blocks=$(grep -c '^<!-- example -->$' "$readme")
(( blocks >= 3 )) || fail "only $blocks marked examples"
grep -q 'localhost:3000' "$script" || fail "no REST example extracted"
sed -i -e "s#http://localhost:3000#$base#g" \
       -e "s#http://127.0.0.1:50051#http://127.0.0.1:$grpc_port#g" "$script"

echo "== README examples ($blocks blocks)"
out=$(cd "$work" && env -u COACH_ADMIN_TOKEN bash -euo pipefail "$script" 2>&1) \
  || { echo "$out"; fail "an example failed"; }
echo "$out"

# What the examples did, in order.
grep -q '"remainingCredits":4' <<<"$out" || fail "first send"
grep -q '"remainingCredits":3' <<<"$out" || fail "second send, in the same session"
grep -q '"title":"Confiance"' <<<"$out" || fail "PATCH"
grep -q '^data: {"reply":' <<<"$out" || fail "stream"
grep -q '"field":"message"' <<<"$out" || fail "400 naming the field"
grep -q '"status":"SERVING"' <<<"$out" || fail "probes"
grep -q '"/openapi.json"' <<<"$out" || fail "openapi.json"
grep -q 'coach.v1.ChatService' <<<"$out" || fail "gRPC list"
grep -q '"plan": "PREMIUM"' <<<"$out" || fail "SetPlan with the development token"
grep -q '"success":true' <<<"$out" || fail "DELETE"
# No example answered an error but the one meant to.
errors=$(grep -o '"code":"[A-Z_]*"' <<<"$out" | sort -u)
[[ $errors == '"code":"INVALID_ARGUMENT"' ]] || fail "unexpected errors: $errors"
grep -qi 'ADMIN_DISABLED\|NOT_FOUND\|UNAUTHENTICATED' <<<"$out" && fail "an error in the gRPC examples"
echo "readme test: OK"
