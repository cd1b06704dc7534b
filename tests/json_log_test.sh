#!/usr/bin/env bash
# COACH_LOG_FORMAT and COACH_LOG_LEVEL on the real binaries:
# 1. json: every stderr line of both processes is one JSON object (parsed by
#    Python's json module) with ts (RFC 3339 UTC, ms), level and msg; a
#    request answered 404 has its line in each process, with request_id,
#    route, status (proxy), the gRPC code by name and the reason, and the
#    W3C trace the request named (traceparent) as trace_id in both, each
#    process under a span_id of its own.
# 2. warn (text): no info line at all, warnings still written, with the gRPC
#    code by name.
#   json_log_test.sh <coach-server> <coach-proxy>
set -euo pipefail
source "$(dirname "$0")/lib/stack.sh"
server_bin=$1 proxy_bin=$2

# --- 1. JSON -----------------------------------------------------------------
COACH_LOG_FORMAT=json start_stack "$server_bin" "$proxy_bin"
rid=json-log-test-1
traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
status=$(curl -sS -o /dev/null -w '%{http_code}' -H "X-Request-Id: $rid" \
  -H "traceparent: $traceparent" "$base/api/chat/sessions/no-such-session")
[[ $status == 404 ]] || fail "expected 404, got $status"
curl -sS -o /dev/null -H "X-Request-Id: $rid-no-trace" \
  "$base/api/chat/sessions?userId=user123&pageSize=1"
kill -TERM "$proxy_pid" "$server_pid"
wait "$proxy_pid" || fail "coach-proxy exit status"
wait "$server_pid" || fail "coach-server exit status"
proxy_pid="" server_pid=""

python3 - "$dir/server.log" "$dir/proxy.log" "$rid" <<'PY'
import json, re, sys
server_log, proxy_log, rid = sys.argv[1:4]
ts = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

def lines(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for n, text in enumerate(f, 1):
            try:
                obj = json.loads(text)
            except ValueError as e:
                sys.exit(f"FAIL: {path}:{n} is not JSON ({e}): {text!r}")
            if not isinstance(obj, dict):
                sys.exit(f"FAIL: {path}:{n} is not an object: {text!r}")
            for key in ("ts", "level", "msg"):
                if key not in obj:
                    sys.exit(f"FAIL: {path}:{n} has no {key}: {text!r}")
            if not ts.match(obj["ts"]):
                sys.exit(f"FAIL: {path}:{n} ts {obj['ts']!r}")
            if obj["level"] not in ("debug", "info", "warn", "error"):
                sys.exit(f"FAIL: {path}:{n} level {obj['level']!r}")
            out.append((text.rstrip("\n"), obj))
    if len(out) < 3:
        sys.exit(f"FAIL: {path}: only {len(out)} lines")
    return out

def request_line(path, route, expected):
    for text, obj in lines(path):
        if obj.get("request_id") == rid and obj.get("route") == route:
            for key, value in expected.items():
                if obj.get(key) != value:
                    sys.exit(f"FAIL: {path}: {key} is {obj.get(key)!r}, "
                             f"not {value!r}: {text}")
            if not isinstance(obj.get("duration_ms"), (int, float)):
                sys.exit(f"FAIL: {path}: duration_ms: {text}")
            return text
    sys.exit(f"FAIL: {path}: no line for request {rid} on {route}")

s = request_line(server_log, "/coach.v1.ChatService/GetSession",
                 {"level": "info", "code": "NOT_FOUND",
                  "reason": "SESSION_NOT_FOUND"})
p = request_line(proxy_log, "/api/chat/sessions/{session_id}",
                 {"level": "info", "method": "GET", "status": 404,
                  "code": "NOT_FOUND", "reason": "SESSION_NOT_FOUND"})
trace = "4bf92f3577b34da6a3ce929d0e0e4736"
spans = set()
for path, text in ((server_log, s), (proxy_log, p)):
    obj = json.loads(text)
    if obj.get("trace_id") != trace:
        sys.exit(f"FAIL: {path}: trace_id is {obj.get('trace_id')!r}, not {trace}")
    span = obj.get("span_id", "")
    if not re.fullmatch(r"[0-9a-f]{16}", span) or span == "00f067aa0ba902b7":
        sys.exit(f"FAIL: {path}: span_id {span!r} is not a span of its own")
    spans.add(span)
if len(spans) != 2:
    sys.exit("FAIL: the proxy and the server logged the same span_id")
# No traceparent: the proxy starts a trace, and the server logs the same.
started = {}
for path in (server_log, proxy_log):
    for text, obj in lines(path):
        if obj.get("request_id") == rid + "-no-trace":
            started[path] = obj.get("trace_id", "")
if len(started) != 2 or not re.fullmatch(r"[0-9a-f]{32}", started[proxy_log]) \
        or started[server_log] != started[proxy_log]:
    sys.exit(f"FAIL: a trace started by the proxy: {started}")
print("coach-server:", s)
print("coach-proxy: ", p)
PY

# --- 2. warn (text): info lines dropped --------------------------------------
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
grpc_port=$(free_port)
http_port=$(free_port)
COACH_LOG_LEVEL=warn COACH_DB_PATH="$dir/warn.db" COACH_GRPC_LISTEN=127.0.0.1:$grpc_port \
  "$server_bin" 2>"$dir/server-warn.log" &
server_pid=$!
COACH_UPSTREAM_READ_DEADLINE=1s COACH_LOG_LEVEL=warn COACH_GRPC_TARGET=127.0.0.1:$grpc_port COACH_HTTP_LISTEN=127.0.0.1:$http_port \
  "$proxy_bin" 2>"$dir/proxy-warn.log" &
proxy_pid=$!
# Bounded: the proxy answers /readyz 200 once coach-server serves.
ready=""
for _ in $(seq 1 100); do
  if [[ $(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$http_port/readyz" 2>/dev/null) == 200 ]]; then
    ready=1; break
  fi
  read -r -t 0.1 <> <(:) || true
done
[[ -n $ready ]] || { cat "$dir/server-warn.log" "$dir/proxy-warn.log" >&2; fail "warn stack never ready"; }
curl -sS -o /dev/null "http://127.0.0.1:$http_port/api/chat/sessions?userId=user123"
curl -sS -o /dev/null "http://127.0.0.1:$http_port/api/chat/sessions/nope"
# coach-server gone: the proxy's next call fails upstream, a warning.
kill -TERM "$server_pid"; wait "$server_pid" || fail "coach-server exit status"
server_pid=""
curl -sS -o /dev/null "http://127.0.0.1:$http_port/api/chat/sessions?userId=user123" || true
kill -TERM "$proxy_pid"; wait "$proxy_pid" || fail "coach-proxy exit status"
proxy_pid=""
cat "$dir/server-warn.log" "$dir/proxy-warn.log"
if grep -q ' INFO ' "$dir/server-warn.log" "$dir/proxy-warn.log"; then
  fail "an INFO line at COACH_LOG_LEVEL=warn"
fi
grep -q ' WARN upstream .*code=UNAVAILABLE' "$dir/proxy-warn.log" \
  || fail "no upstream warning (with the code's name) at COACH_LOG_LEVEL=warn"
echo "json log test: OK"
