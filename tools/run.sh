#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds in Release and runs the service:
#   ./tools/run.sh
# - coach-server (gRPC on 127.0.0.1:50051) on the SQLite file data/coach.db,
#   with the offline coach unless OPENAI_API_KEY is set;
# - coach-proxy (the REST API on :3000) in front of it;
# - a development admin token for the admin RPCs, in data/admin-token
#   (unless COACH_ADMIN_TOKEN is set).
# Starting over: stop it, then `rm -f data/coach.db*` (users, sessions and
# credits are gone; the admin token stays).
# Every setting can be changed through its environment variable (see
# docs/settings.md). Ctrl-C (or SIGTERM) stops both gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."

source tools/lib/release_build.sh
release_build
# buf, pinned (npm): the README's gRPC examples call the server with it.
./tools/npm-tools.sh

export COACH_DB_PATH=${COACH_DB_PATH:-data/coach.db}
mkdir -p "$(dirname "$COACH_DB_PATH")"

# A development admin token (SetPlan, GrantCredits), unless one is given:
# drawn once, kept beside the database, readable by this user only.
if [[ -z ${COACH_ADMIN_TOKEN:-} ]]; then
  token_file="$(dirname "$COACH_DB_PATH")/admin-token"
  if [[ ! -s $token_file ]]; then
    (umask 077; openssl rand -hex 16 >"$token_file")
  fi
  COACH_ADMIN_TOKEN=$(cat "$token_file")
  export COACH_ADMIN_TOKEN
  echo "run: development admin token in $token_file" \
       "(COACH_ADMIN_TOKEN=\$(cat $token_file))" >&2
fi

"$BUILD_DIR/server/coach-server" &
server_pid=$!
"$BUILD_DIR/proxy/coach-proxy" &
proxy_pid=$!

stop() {
  kill -TERM "$proxy_pid" "$server_pid" 2>/dev/null || true
  wait "$proxy_pid" "$server_pid" 2>/dev/null || true
}
trap stop INT TERM EXIT
# Either process ending ends the service.
wait -n "$server_pid" "$proxy_pid"
