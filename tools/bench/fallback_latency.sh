#!/usr/bin/env bash
# Issue 27's measure: the latency of a send while the primary AI provider is
# down, before and after its circuit breaker opens. On loopback:
#   - "primary": a TCP server that accepts and never answers (a hung
#     provider: the costly way to be down), its timeout PRIMARY_TIMEOUT;
#   - "backup": a local OpenAI-compatible server that answers at once
#     (tools/bench/fake_openai_server.py's protocol, in Python here);
#   - coach-server with COACH_AI_PROVIDERS_FILE naming both, the breaker at
#     COACH_AI_BREAKER_FAILURES (3), then coach-proxy; sends with curl.
# Prints one line per send: its number, HTTP status and seconds.
#   fallback_latency.sh BUILD_DIR [SENDS] [PRIMARY_TIMEOUT]
set -euo pipefail
BUILD=$1 SENDS=${2:-8} PRIMARY_TIMEOUT=${3:-2s}
cd "$(dirname "$0")/../.."
source tools/lib/port_from_log.sh
work=$(mktemp -d)
pids=()
cleanup() {
  if ((${#pids[@]} > 0)); then kill "${pids[@]}" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
hung=$(free_port) backup=$(free_port)
python3 - "$hung" <<'EOF' &
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64)
held = []
while True:
    c, _ = s.accept(); held.append(c)  # never answered
EOF
pids+=($!)
python3 - "$backup" <<'EOF' &
import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"id": "x", "object": "chat.completion", "model": "backup-model",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "Réponse de secours."}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *args): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
pids+=($!)
cat >"$work/providers.json" <<EOF
[{"name": "primary", "baseUrl": "http://127.0.0.1:$hung/v1", "apiKeyEnv": "BENCH_KEY",
  "model": "primary-model", "timeout": "$PRIMARY_TIMEOUT"},
 {"name": "backup", "baseUrl": "http://127.0.0.1:$backup/v1", "apiKeyEnv": "BENCH_KEY",
  "model": "backup-model"}]
EOF
env BENCH_KEY=sk-bench COACH_AI_PROVIDERS_FILE="$work/providers.json" \
  COACH_AI_BREAKER_FAILURES=3 COACH_AI_BREAKER_COOLDOWN=10m OPENAI_MAX_RETRIES=0 \
  COACH_DB_PATH="$work/coach.db" COACH_GRPC_LISTEN=127.0.0.1:0 \
  COACH_FREE_MONTHLY_CREDITS=1000 \
  "$BUILD/server/coach-server" 2>"$work/server.log" &
pids+=($!)
grpc_port=$(port_from_log "$work/server.log" "${pids[-1]}")
env COACH_GRPC_TARGET="127.0.0.1:$grpc_port" COACH_HTTP_LISTEN=127.0.0.1:0 \
  "$BUILD/proxy/coach-proxy" 2>"$work/proxy.log" &
pids+=($!)
http_port=$(port_from_log "$work/proxy.log" "${pids[-1]}")
for ((i = 1; i <= SENDS; i++)); do
  curl -s -o /dev/null -w "send $i: %{http_code} in %{time_total} s\n" \
    -H 'Content-Type: application/json' \
    -d "{\"userId\":\"bench-$i\",\"message\":\"Bonjour\"}" \
    "http://127.0.0.1:$http_port/api/chat/send"
done
grep -o 'ai: provider primary skipped.*' "$work/server.log" | head -n 1 | cut -c1-100
