#!/usr/bin/env bash
# Reads a streamed reply from a real browser on another origin: serves
# tools/browser/stream_check.html on one port, runs coach-server and
# coach-proxy (offline coach) on others, loads the page in headless Chromium
# and prints the DOM's lines. The coach is the bench's fake OpenAI trickling
# its reply (5 pieces over 2 s), so that the page sees pieces arrive apart.
# Installs Debian's chromium if missing.
#   tools/browser/stream_check.sh BUILD_DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build/release}
source tests/lib/stack.sh
command -v chromium >/dev/null || sudo_apt=1
if [[ ${sudo_apt:-0} == 1 ]]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
ai_log=$(mktemp)
"$BUILD/tools/bench/fake-openai" --port=0 --delay=2s --stream_pieces=5 >"$ai_log" 2>&1 &
ai_pid=$!
ai_port=$(port_from_log "$ai_log" "$ai_pid")
export OPENAI_API_KEY=sk-browser-check OPENAI_BASE_URL=http://127.0.0.1:$ai_port/v1
start_stack "$BUILD/server/coach-server" "$BUILD/proxy/coach-proxy"
python3 -u -m http.server 0 --bind 127.0.0.1 --directory tools/browser >"$dir/page.log" 2>&1 &
page_pid=$!
trap 'kill $page_pid $ai_pid 2>/dev/null || true; rm -f "$ai_log"; stop_stack' EXIT
page_port=""
for _ in $(seq 1 100); do
  page_port=$(sed -n 's/^Serving HTTP on .* port \([0-9]*\) .*/\1/p' "$dir/page.log")
  [[ -n $page_port ]] && break
  read -r -t 0.05 <> <(:) || true
done
[[ -n $page_port ]] || { cat "$dir/page.log"; exit 1; }
# The page is http://127.0.0.1:P1, the API http://localhost:P2: two origins.
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$dir/chromium" \
  "http://127.0.0.1:$page_port/stream_check.html?api=$base" >"$dir/chromium.log" 2>&1 &
browser_pid=$!
# The page reports to its own server (GET /result?...) once the stream ends.
report=""
for _ in $(seq 1 600); do
  report=$(sed -n 's/.*"GET \/result?\([^ ]*\) HTTP.*/\1/p' "$dir/page.log")
  [[ -n $report ]] && break
  read -r -t 0.05 <> <(:) || true
done
kill "$browser_pid" 2>/dev/null || true
[[ -n $report ]] || { echo "no report from the page in 30 s" >&2; exit 1; }
python3 -c 'import sys, urllib.parse; print(urllib.parse.unquote(sys.argv[1]))' "$report"
grep -q "OPTIONS" "$dir/proxy.log" && echo "preflight: $(grep -c OPTIONS "$dir/proxy.log") OPTIONS answered"
