# Sourced by the shell tests: the real coach-server and coach-proxy on
# loopback ports, on a database in a temporary folder, stopped at exit.
#   start_stack SERVER PROXY   # the environment passes to coach-server
# Sets: dir (the folder), base (http://localhost:PORT), grpc_port (coach-
# server's), server_pid, proxy_pid.
source "$(dirname "${BASH_SOURCE[0]}")/../../tools/lib/port_from_log.sh"

start_stack() {
  local server=$1 proxy=$2
  dir=$(mktemp -d)
  trap stop_stack EXIT
  COACH_DB_PATH="$dir/coach.db" COACH_GRPC_LISTEN=127.0.0.1:0 "$server" 2>"$dir/server.log" &
  server_pid=$!
  grpc_port=$(port_from_log "$dir/server.log" "$server_pid")
  COACH_GRPC_TARGET=127.0.0.1:$grpc_port COACH_HTTP_LISTEN=127.0.0.1:0 "$proxy" 2>"$dir/proxy.log" &
  proxy_pid=$!
  base="http://localhost:$(port_from_log "$dir/proxy.log" "$proxy_pid")"
  wait_ready
}

# Until GET /readyz answers 200 (the proxy reaches coach-server): a send
# fails fast while the proxy's connection is still being made. Bounded
# (30 s), polled: nothing signals it.
wait_ready() {
  local deadline=$((SECONDS + 30))
  until [[ $(curl -sS -o /dev/null -w '%{http_code}' "$base/readyz" 2>/dev/null) == 200 ]]; do
    (( SECONDS < deadline )) || fail "not ready after 30 s: $(tail -n 5 "$dir/proxy.log")"
    sleep 0.05
  done
}

stop_stack() {
  kill ${proxy_pid:-} ${server_pid:-} 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "${dir:-}"
}

fail() { echo "FAIL: $*" >&2; exit 1; }
