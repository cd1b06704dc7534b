#!/usr/bin/env bash
# The documents' examples, run as a reader would paste them into bash.
#   readme_test.sh <coach-server> <coach-proxy> <buf> <doc.md>...
# The rule, for every document given (README.md and docs/api.md in
# tests/CMakeLists.txt): every ```bash block is run, in order, as one bash
# script (set -euo pipefail), against a fresh stack (the real binaries
# started as tools/run.sh starts them, on an empty database, with a
# development admin token in data/admin-token), in a folder laid out like
# the repository's. Only the addresses change (the stack's free ports for
# :3000 and :50051). Then what that document's examples must have printed
# (check_<file name> below: a document without one fails the test).
# One exception, README.md's first block: the two commands (run the
# service, run the tests), which cannot run inside a test (they set up the
# machine, build, and run this test). It is not run; instead it must be the
# first bash block of README.md and hold exactly `./tools/run.sh` and
# `./tools/test.sh` (each with a comment), tools/run.sh must exist and be
# executable, and .ci/run must run the very test command (CI runs what the
# README says). A block that must not run has no place in these documents:
# show it in docs/operations.md (not run by this test) instead.
set -euo pipefail
server=$1 proxy=$2 buf=$3
shift 3
(( $# >= 1 )) || { echo "usage: $0 SERVER PROXY BUF DOC.md..." >&2; exit 2; }
source "$(dirname "$0")/lib/stack.sh"
work=$(mktemp -d)
trap 'stop_stack; rm -rf "$work"' EXIT
mkdir -p "$work/data" "$work/tools/npm/node_modules/.bin"
ln -s "$buf" "$work/tools/npm/node_modules/.bin/buf"
(umask 077; openssl rand -hex 16 >"$work/data/admin-token")

# blocks DOC: every ```bash block of DOC, each followed by a line
# `# ---- end of block`.
blocks() {
  awk '
    /^```bash$/ { inside = 1; next }
    inside && /^```$/ { inside = 0; print "# ---- end of block"; next }
    inside { print }
    END { if (inside) { print "unterminated bash block" > "/dev/stderr"; exit 1 } }
  ' "$1"
}

# README.md's first block: the two commands, checked, not run.
check_commands() {
  local readme=$1 root first run_cmd test_cmd
  root=$(dirname "$readme")
  first=$(blocks "$readme" | awk '/^# ---- end of block$/ { exit } { print }')
  [[ $(grep -c . <<<"$first") == 2 ]] ||
    fail "README.md's first bash block must be the two commands alone: $first"
  run_cmd=$(sed -n '1s/[[:space:]]*#.*//p' <<<"$first")
  test_cmd=$(sed -n '2s/[[:space:]]*#.*//p' <<<"$first")
  [[ $run_cmd == ./tools/run.sh ]] || fail "the run command is '$run_cmd'"
  [[ $test_cmd == ./tools/test.sh ]] || fail "the test command is '$test_cmd'"
  [[ -x $root/tools/run.sh ]] || fail "$root/tools/run.sh is not executable"
  [[ -x $root/tools/test.sh ]] || fail "$root/tools/test.sh is not executable"
  grep -qxE "(exec )?${test_cmd//./\\.}" "$root/.ci/run" ||
    fail ".ci/run does not run README.md's test command ($test_cmd)"
  echo "== README.md's two commands: $run_cmd (exists), $test_cmd (what .ci/run runs)"
}

# run_doc DOC: its blocks on a fresh stack; sets out (what they printed).
run_doc() {
  local doc=$1 name script count
  name=$(basename "$doc")
  script="$work/${name%.md}.sh"
  blocks "$doc" >"$script.all"
  if [[ $name == README.md ]]; then
    check_commands "$doc"
    # The first block (the two commands) is left out.
    awk 'skip { print } /^# ---- end of block$/ { skip = 1 }' "$script.all" >"$script"
  else
    cp "$script.all" "$script"
  fi
  count=$(grep -c '^# ---- end of block$' "$script" || true)
  (( count >= 1 )) || fail "no bash block to run in $doc"
  sed -i -e "s#http://localhost:3000#$base#g" \
         -e "s#http://127.0.0.1:50051#http://127.0.0.1:$grpc_port#g" "$script"
  echo "== $name: $count blocks"
  out=$(cd "$work" && env -u COACH_ADMIN_TOKEN bash -euo pipefail "$script" 2>&1) \
    || { echo "$out"; fail "an example of $name failed"; }
  echo "$out"
}

# No example answered an error but the ones meant to (ALLOWED: a regex of
# reason codes, or empty).
only_errors() {
  local allowed=$1 errors
  errors=$(grep -o '"code": *"[A-Z_]*"' <<<"$out" | grep -oE '[A-Z_]{2,}' | sort -u |
           grep -vxE "${allowed:-^$}" || true)
  [[ -z $errors ]] || fail "unexpected errors: $errors"
  grep -qi 'ADMIN_DISABLED\|NOT_FOUND\|UNAUTHENTICATED' <<<"$out" &&
    fail "an error in the gRPC examples"
  return 0
}

# What README.md's example must have done, in order.
check_README.md() {
  grep -q '"remainingCredits":4' <<<"$out" || fail "first send"
  grep -q '^data: {"delta":' <<<"$out" || fail "stream: no delta"
  grep -q '^data: {"reply":{.*"remainingCredits":3' <<<"$out" ||
    fail "stream: its reply, in the same session"
  [[ $(grep -o '"role":"ASSISTANT"' <<<"$out" | wc -l) -ge 4 ]] ||
    fail "the session read back with both replies"
  grep -q '"remainingCredits": 3' <<<"$out" || fail "gRPC GetUserStats"
  only_errors ''
}

# What docs/api.md's tour must have done, in order.
check_api.md() {
  grep -q '"remainingCredits":4' <<<"$out" || fail "first send"
  grep -q '"remainingCredits":3' <<<"$out" || fail "second send, in the same session"
  grep -q '"history":\[' <<<"$out" || fail "history"
  grep -q '"stats":{"totalChats":' <<<"$out" || fail "stats"
  grep -q '"sessions":\[' <<<"$out" || fail "sessions"
  grep -q '"title":"Confiance"' <<<"$out" || fail "PATCH"
  grep -q '^data: {"reply":{.*"remainingCredits":2' <<<"$out" || fail "stream"
  grep -q '"field":"message"' <<<"$out" || fail "400 naming the field"
  grep -q '"status":"SERVING"' <<<"$out" || fail "probes"
  grep -q '"/openapi.json"' <<<"$out" || fail "openapi.json"
  [[ $(grep -c '"remainingCredits":1' <<<"$out") -ge 2 ]] ||
    fail "a keyed send and its replay"
  grep -qi '^Idempotent-Replayed: true' <<<"$out" || fail "the replay's header"
  grep -q '"nextPageToken":"' <<<"$out" || fail "a first page"
  [[ $(grep -o '"sessions":\[' <<<"$out" | wc -l) -ge 3 ]] &&
    ! grep -q '"field":"pageToken"' <<<"$out" || fail "the next page"
  grep -q 'coach.v1.ChatService' <<<"$out" || fail "gRPC list"
  grep -q '"remainingCredits": 1' <<<"$out" || fail "gRPC GetUserStats"
  grep -q '"plan": "PREMIUM"' <<<"$out" || fail "SetPlan with the development token"
  grep -q '"assistantMessage": {' <<<"$out" || fail "gRPC SendMessage"
  grep -q '"reply": {' <<<"$out" || fail "gRPC StreamMessage"
  grep -q '"success":true' <<<"$out" || fail "DELETE"
  only_errors 'INVALID_ARGUMENT'
}

for doc in "$@"; do
  name=$(basename "$doc")
  declare -F "check_$name" >/dev/null || fail "no expectations for $name in $0"
  COACH_ADMIN_TOKEN=$(cat "$work/data/admin-token") start_stack "$server" "$proxy"
  trap 'stop_stack; rm -rf "$work"' EXIT
  run_doc "$doc"
  "check_$name"
  stop_stack
  unset server_pid proxy_pid dir
done
echo "readme test: OK ($*)"
