#!/usr/bin/env bash
# The benchmark: builds in Release, starts the stack on temporary databases,
# runs the scenarios of docs/performance.md next to their baselines (measured
# in the same run: this machine is shared, absolute figures drift), prints a
# table and writes it to docs/performance.md (with docs/latency.png).
#   ./tools/bench/run.sh            # about 5 minutes on 2 cores
# Load tools: wrk (REST), tools/bench/grpc-load (gRPC, on the generated stub).
# Everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

./tools/setup.sh
# Bench-only packages: load generator, plotting, and the Go toolchain and
# Debian's grpc-gateway for the peer (tools/bench/grpc_gateway_peer.sh).
for p in wrk gnuplot-nox golang-go golang-github-grpc-ecosystem-grpc-gateway-dev \
    golang-google-grpc-dev golang-goprotobuf-dev golang-google-protobuf-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || {
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
    $SUDO apt-get install -y -qq --no-install-recommends "$p" >/dev/null
  }
done

BUILD=${COACH_BENCH_BUILD_DIR:-build/bench}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build "$BUILD" -j "${COACH_JOBS:-2}" --target coach-server coach-proxy \
  fake-openai grpc-load bare-http no-rpc-stats trivial-grpc sqlite-write-limit \
  seed-store >&2
OUT=$BUILD/gateway tools/bench/grpc_gateway_peer.sh . >&2
BIN_GATEWAY=$BUILD/gateway/gwproject
BIN_SERVER=$BUILD/server/coach-server
BIN_PROXY=$BUILD/proxy/coach-proxy
B=$BUILD/tools/bench

DURATION=${COACH_BENCH_SECONDS:-5}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { echo "bench: $*" >&2; }

source tools/lib/port_from_log.sh

# start NAME CMD... : runs CMD in the background, logs to $WORK/NAME.log,
# records its pid in PID_NAME.
start() {
  local name=$1; shift
  "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  printf -v "PID_$name" '%s' "$!"
}
stop() { local pid=$1; kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }

peak_rss_mb() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
threads_of() { awk '/Threads/ {print $2}' "/proc/$1/status"; }

# wrk URL CONNECTIONS [SCRIPT] -> "req/s p50_ms p99_ms"
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; printf "%.2f", v}'; }
run_wrk() {
  local url=$1 conns=$2 script=${3:-}
  local out
  local threads=$(( conns < 2 ? conns : 2 ))
  out=$(wrk -t"$threads" -c"$conns" -d"${DURATION}s" --timeout 10s --latency ${script:+-s "$script"} "$url")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out" | to_ms)
  p99=$(awk '$1=="99%" {print $2}' <<<"$out" | to_ms)
  if grep -q "Non-2xx" <<<"$out"; then log "non-2xx answers: $(grep Non-2xx <<<"$out")"; fi
  echo "$rps $p50 $p99"
}
# grpc-load ARGS -> "req/s p50 p99 max"
run_grpc() {
  local out
  out=$("$B/grpc-load" "$@")
  sed -E 's/.*req\/s=([0-9.]+) p50_ms=([0-9.]+) p99_ms=([0-9.]+) max_ms=([0-9.]+).*/\1 \2 \3 \4/' <<<"$out"
}
# CPU time (user + system) a process has used so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))
# front_round URL PID CONNECTIONS -> "requests req/s p50_ms p99_ms cpu_ticks"
front_round() {
  local url=$1 pid=$2 conns=$3 out before after
  before=$(cpu_ticks "$pid")
  out=$(wrk -t2 -c"$conns" -d"${DURATION}s" --timeout 10s --latency "$url")
  after=$(cpu_ticks "$pid")
  if grep -q "Non-2xx" <<<"$out"; then log "non-2xx answers: $(grep Non-2xx <<<"$out")"; fi
  echo "$(awk '/requests in/ {print $1}' <<<"$out")" \
    "$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")" \
    "$(awk '$1=="50%" {print $2}' <<<"$out" | to_ms)" \
    "$(awk '$1=="99%" {print $2}' <<<"$out" | to_ms)" \
    "$((after - before))"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
verdict() { awk -v r="$1" -v t="$2" -v dir="${3:-ge}" 'BEGIN {ok = (dir == "ge") ? (r >= t) : (r <= t); print ok ? "met" : "missed"}'; }

ROWS=()
NORPC_ROWS=()
row() { ROWS+=("$(IFS='|'; echo "$*")"); }

# --- The stack (offline coach), and the baselines -----------------------------
start server env COACH_DB_PATH="$WORK/coach.db" COACH_GRPC_LISTEN=127.0.0.1:0 "$BIN_SERVER"
GRPC_PORT=$(port_from_log "$WORK/server.log" "$PID_server")
start proxy env COACH_GRPC_TARGET=127.0.0.1:$GRPC_PORT COACH_HTTP_LISTEN=127.0.0.1:0 \
  COACH_ACCESS_LOG=false "$BIN_PROXY"
HTTP_PORT=$(port_from_log "$WORK/proxy.log" "$PID_proxy")
start bare "$B/bare-http" --port=0
BARE_PORT=$(port_from_log "$WORK/bare.log" "$PID_bare")
start trivial "$B/trivial-grpc" --listen=127.0.0.1:0
TRIVIAL_PORT=$(port_from_log "$WORK/trivial.log" "$PID_trivial")
STATS="http://127.0.0.1:$HTTP_PORT/api/user/stats?userId=bench-reader"
# The bare server answers the very bytes the proxy answers.
BODY=$(curl -s "$STATS")
stop "$PID_bare"
start bare "$B/bare-http" --port=0 --body="$BODY"
BARE_PORT=$(port_from_log "$WORK/bare.log" "$PID_bare")
BARE="http://127.0.0.1:$BARE_PORT/api/user/stats?userId=bench-reader"
# The same work as our stack on the same database, with no RPC hop.
start norpc "$B/no-rpc-stats" --db_path="$WORK/coach.db"
NORPC_PORT=$(port_from_log "$WORK/norpc.log" "$PID_norpc")
NORPC="http://127.0.0.1:$NORPC_PORT/api/user/stats?userId=bench-reader"
[[ $(curl -s "$NORPC") == "$BODY" ]] || { log "no-rpc-stats answers other bytes"; exit 1; }

# 0. coach-proxy against grpc-gateway, both in front of the same coach-server,
# interleaved (ours, gateway, ours, gateway): req/s and latency averaged over
# the rounds, CPU per request = the front's CPU time over the rounds divided
# by the requests it answered.
start gateway "$BIN_GATEWAY" 127.0.0.1:0 127.0.0.1:$GRPC_PORT
GATEWAY_PORT=""
for _ in $(seq 1 100); do
  GATEWAY_PORT=$(ss -Htlnp 2>/dev/null | awk -v pid="pid=$PID_gateway," '$0 ~ pid {n = split($4, a, ":"); print a[n]; exit}')
  [[ -n $GATEWAY_PORT ]] && break
  read -r -t 0.05 <> <(:) || true
done
[[ -n $GATEWAY_PORT ]] || { log "grpc-gateway did not listen"; cat "$WORK/gateway.log" >&2; exit 1; }
GW_STATS="http://127.0.0.1:$GATEWAY_PORT/api/user/stats?userId=bench-reader"
log "grpc-gateway answers: $(curl -s "$GW_STATS")"
PEER_LINES=()
# Three consecutive runs (each two interleaved rounds per front): the target
# (≥ 2× the gateway's req/s, ≤ 0.5× its CPU per request) holds in each.
for c in 8 64; do
  ratios=() cpu_ratios=() all_ok=met
  for run in 1 2 3; do
    declare -A sum=()
    for k in req rps p50 p99 cpu greq grps gp50 gp99 gcpu; do sum[$k]=0; done
    for round in 1 2; do
      read -r req rps p50 p99 cpu < <(front_round "$STATS" "$PID_proxy" "$c")
      read -r greq grps gp50 gp99 gcpu < <(front_round "$GW_STATS" "$PID_gateway" "$c")
      for k in req rps p50 p99 cpu greq grps gp50 gp99 gcpu; do
        sum[$k]=$(awk -v a="${sum[$k]}" -v b="${!k}" 'BEGIN {print a + b}')
      done
    done
    avg() { awk -v a="${sum[$1]}" 'BEGIN {printf "%.'"${2:-0}"'f", a / 2}'; }
    us() { awk -v t="${sum[$1]}" -v n="${sum[$2]}" -v u="$TICK_US" 'BEGIN {printf "%.0f", t * u / n}'; }
    rps=$(avg rps); grps=$(avg grps); p99=$(avg p99 2); gp99=$(avg gp99 2)
    cpu_us=$(us cpu req); gcpu_us=$(us gcpu greq)
    r=$(ratio "$rps" "$grps"); cr=$(ratio "$cpu_us" "$gcpu_us")
    ratios+=("$r"); cpu_ratios+=("$cr")
    [[ $(verdict "$r" 2) == met && $(verdict "$cr" 0.5 le) == met ]] || all_ok=missed
    PEER_LINES+=("| $c | $run | $rps | $grps | $r× | $p99 / $gp99 | $cpu_us / $gcpu_us µs ($cr) |")
    log "peer c=$c run $run: ours $rps req/s ($cpu_us µs/req), gateway $grps req/s ($gcpu_us µs/req)"
  done
  row "0. REST GET /api/user/stats vs grpc-gateway, $c conn, 3 runs" "$rps" "$(avg p50 2)" "$p99" \
    "grpc-gateway: $grps req/s, p99 $gp99 ms (last run)" "${ratios[*]}" \
    "≥ 2× and CPU/req ≤ 0.5× (${cpu_ratios[*]}) in every run: $all_ok"
done
stop "$PID_gateway"

# 1. REST GET /api/user/stats vs a bare httplib server, and the latency curve.
: >"$WORK/curve.dat"
for c in 1 8 16 32 64 128; do
  read -r rps p50 p99 < <(run_wrk "$STATS" "$c")
  read -r brps bp50 bp99 < <(run_wrk "$BARE" "$c")
  read -r nrps np50 np99 < <(run_wrk "$NORPC" "$c")
  echo "$c $p50 $p99 $bp50 $bp99 $np50 $np99" >>"$WORK/curve.dat"
  if [[ $c == 8 || $c == 64 ]]; then
    r=$(ratio "$rps" "$brps")
    row "1. REST GET /api/user/stats, $c conn" "$rps" "$p50" "$p99" \
      "bare httplib: $brps" "$r" "≥ 0.5: $(verdict "$r" 0.5)"
    NORPC_ROWS+=("1. (ceiling) the same work with no RPC hop, $c conn|$nrps|$np50|$np99|bare httplib: $brps|$(ratio "$nrps" "$brps")|—")
  fi
  log "stats c=$c: $rps req/s (bare $brps, no RPC hop $nrps)"
done
ROWS+=("${NORPC_ROWS[@]}")
stop "$PID_norpc"

# 2. gRPC GetUserStats vs an empty unary call on a trivial gRPC server.
for c in 8 64; do
  read -r rps p50 p99 _ < <(run_grpc --target=127.0.0.1:$GRPC_PORT --rpc=stats \
    --concurrency=$c --duration=${DURATION}s)
  read -r brps _ _ _ < <(run_grpc --target=127.0.0.1:$TRIVIAL_PORT --rpc=health \
    --concurrency=$c --duration=${DURATION}s)
  r=$(ratio "$rps" "$brps")
  row "2. gRPC GetUserStats, $c streams" "$rps" "$p50" "$p99" \
    "empty unary call: $brps" "$r" "≥ 0.5: $(verdict "$r" 0.5)"
  log "grpc stats c=$c: $rps req/s (trivial $brps)"
done

# 3. REST POST /api/chat/send (offline coach) vs the same SQL in a plain loop.
read -r rps p50 p99 < <(run_wrk "http://127.0.0.1:$HTTP_PORT" 64 tools/bench/send.lua)
limit=$("$B/sqlite-write-limit" --db_path="$WORK/limit.db" --sends=20000 |
  sed -E 's/.*sends\/s=([0-9.]+).*/\1/')
r=$(ratio "$rps" "$limit")
row "3. REST POST /api/chat/send, 64 conn" "$rps" "$p50" "$p99" \
  "same SQL in a loop: $limit" "$r" "≥ 2000/s: $(verdict "$rps" 2000); ≥ 0.3: $(verdict "$r" 0.3)"
log "send: $rps req/s (limit $limit)"
# 3c. The same send, every request with an Idempotency-Key of its own (a
# claim, then the key completed in the exchange's transaction), next to 3.
read -r krps kp50 kp99 < <(COACH_BENCH_KEYED=1 run_wrk "http://127.0.0.1:$HTTP_PORT" 64 tools/bench/send.lua)
r=$(ratio "$krps" "$rps")
row "3c. REST send with an Idempotency-Key each, 64 conn" "$krps" "$kp50" "$kp99" \
  "without key (3.): $rps" "$r" "—"
log "send with keys: $krps req/s (without $rps)"
SERVER_RSS=$(peak_rss_mb "$PID_server"); PROXY_RSS=$(peak_rss_mb "$PID_proxy")
stop "$PID_proxy"; stop "$PID_server"

# 3b. The same send with COACH_AUTH=jwt (a token checked on every call) next
# to COACH_AUTH=none: one user, one session, interleaved.
read -r none_rps jwt_rps < <(tools/bench/auth_send.sh "$BUILD" "$DURATION" 64)
r=$(ratio "$jwt_rps" "$none_rps")
row "3b. REST send as one user, COACH_AUTH=jwt, 64 conn" "$jwt_rps" "" "" \
  "COACH_AUTH=none: $none_rps" "$r" "—"
log "send jwt: $jwt_rps req/s (none $none_rps)"

# 4. 1,000 sends in flight at once against an AI that answers in 2 s.
start fake "$B/fake-openai" --port=0 --delay=2s
FAKE_PORT=$(port_from_log "$WORK/fake.log" "$PID_fake")
start server4 env COACH_DB_PATH="$WORK/coach4.db" COACH_GRPC_LISTEN=127.0.0.1:0 \
  OPENAI_API_KEY=bench-fake-key OPENAI_BASE_URL=http://127.0.0.1:$FAKE_PORT/v1 "$BIN_SERVER"
GRPC4_PORT=$(port_from_log "$WORK/server4.log" "$PID_server4")
peak_threads=0
( while kill -0 "$PID_server4" 2>/dev/null; do threads_of "$PID_server4"; read -r -t 0.05 <> <(:) || true; done ) \
  >"$WORK/threads.txt" 2>/dev/null &
sampler=$!
read -r _ p50 p99 max < <(run_grpc --target=127.0.0.1:$GRPC4_PORT --rpc=send \
  --concurrency=1000 --calls_per_client=1 --deadline=30s || true)
kill "$sampler" 2>/dev/null || true
peak_threads=$(sort -n "$WORK/threads.txt" | tail -n1)
rss4=$(peak_rss_mb "$PID_server4")
ok=$(awk -v m="$max" 'BEGIN {print (m > 0 && m <= 2500) ? "met" : "missed"}')
row "4. 1,000 sends in flight, AI 2 s (gRPC)" "—" "$p50" "$p99" \
  "slowest: ${max} ms; server RSS ${rss4} MB; ${peak_threads} threads" "—" \
  "all ≤ 2.5 s: $ok; RSS ≤ 200 MB: $(verdict "$rss4" 200 le)"
log "1000 in flight: max ${max} ms, rss ${rss4} MB, threads ${peak_threads}"
stop "$PID_server4"; stop "$PID_fake"

# 5. Growth: the same reads with 10k and 100k sessions (10 messages each).
declare -A GROWTH
for n in 10000 100000; do
  log "seeding $n sessions"
  "$B/seed-store" --db_path="$WORK/growth$n.db" --sessions=$n >&2
  start "server$n" env COACH_DB_PATH="$WORK/growth$n.db" COACH_GRPC_LISTEN=127.0.0.1:0 "$BIN_SERVER"
  pid_s="PID_server$n"
  port=$(port_from_log "$WORK/server$n.log" "${!pid_s}")
  start "proxy$n" env COACH_GRPC_TARGET=127.0.0.1:$port COACH_HTTP_LISTEN=127.0.0.1:0 \
    COACH_ACCESS_LOG=false "$BIN_PROXY"
  pid_p="PID_proxy$n"
  hport=$(port_from_log "$WORK/proxy$n.log" "${!pid_p}")
  read -r _ h50 _ < <(run_wrk "http://127.0.0.1:$hport/api/chat/history?userId=bench-reader&limit=10" 8)
  read -r _ s50 _ < <(run_wrk "http://127.0.0.1:$hport/api/chat/sessions?userId=bench-reader" 8)
  GROWTH[$n]="$h50 $s50"
  stop "${!pid_p}"; stop "${!pid_s}"
done
read -r h10 s10 <<<"${GROWTH[10000]}"
read -r h100 s100 <<<"${GROWTH[100000]}"
rh=$(ratio "$h100" "$h10"); rs=$(ratio "$s100" "$s10")
row "5. GET /api/chat/history?limit=10, p50" "—" "10k: $h10 → 100k: $h100" "" "" "$rh" "≤ 1.2: $(verdict "$rh" 1.2 le)"
row "5. GET /api/chat/sessions, p50" "—" "10k: $s10 → 100k: $s100" "" "" "$rs" "≤ 1.2: $(verdict "$rs" 1.2 le)"

# 6. Past one machine (issue 13): SQLite with one server, PostgreSQL with one
# and with three servers behind one proxy, on these same 2 cores.
SCALE_LINES=()
while IFS='|' read -r label sends reads rss sends_cpu reads_cpu; do
  SCALE_LINES+=("| $label | $sends | $reads | $rss | $sends_cpu | $reads_cpu |")
  log "scale-out $label: sends $sends/s, reads $reads/s ($rss)"
done < <(tools/bench/scale_out.sh "$BUILD" "$DURATION" 64)

# 7. Many live streams (issue 30): COACH_BENCH_STREAMS (10,000) replies
# streamed at once through one coach-proxy and one coach-server from a fake
# AI taking 10 s each, a read every 50 ms meanwhile (tools/bench/streams.py).
STREAMS=${COACH_BENCH_STREAMS:-10000}
STREAMS_OUT=$(python3 tools/bench/streams.py "$BUILD" "$STREAMS" 10)
log "$STREAMS_OUT"
complete=$(awk '/complete/ {for (i = 2; i <= NF; i++) if ($i == "complete") print $(i-1)}' <<<"$STREAMS_OUT")
took=$(awk '/complete/ {print $(NF-1)}' <<<"$STREAMS_OUT")
read -r read_p99 read_max < <(awk '/reads meanwhile/ {gsub(/,/, ""); for (i = 1; i <= NF; i++) {if ($i == "p99") p = $(i+1); if ($i == "max") m = $(i+1)}; print p, m}' <<<"$STREAMS_OUT")
read -r s_kb s_threads < <(awk '/^server:/ {print $(NF-3), $4}' <<<"$STREAMS_OUT" | tr -d ',')
read -r p_kb p_threads < <(awk '/^proxy:/ {print $(NF-3), $4}' <<<"$STREAMS_OUT" | tr -d ',')
row "7. $STREAMS live streams, AI 10 s, a read every 50 ms" "—" "" "read p99 $read_p99, max $read_max" \
  "$complete complete in $took s; per stream: coach-server $s_kb KB ($s_threads threads), coach-proxy $p_kb KB ($p_threads threads)" "—" \
  "all complete: $( [[ $complete == "$STREAMS" ]] && echo met || echo missed); read < 1 s: $(verdict "$read_max" 1000 le); ≤ 20 KB / ≤ 10 KB: $(verdict "$s_kb" 20 le) / $(verdict "$p_kb" 10 le)"

# --- Report ---------------------------------------------------------------------
PLOT=docs/latency.png
gnuplot <<GP 2>/dev/null || log "gnuplot failed; no plot"
set terminal png size 900,500
set output "$PLOT"
set title "GET /api/user/stats: latency against concurrency"
set xlabel "connections (wrk)"
set ylabel "latency (ms)"
set logscale x 2
set key left top
plot "$WORK/curve.dat" using 1:2 with linespoints title "coach-proxy p50", \
     "$WORK/curve.dat" using 1:3 with linespoints title "coach-proxy p99", \
     "$WORK/curve.dat" using 1:4 with linespoints title "bare httplib p50", \
     "$WORK/curve.dat" using 1:5 with linespoints title "bare httplib p99", \
     "$WORK/curve.dat" using 1:6 with linespoints title "same work, no RPC hop p50"
GP

TABLE=$(
  echo "| Scenario | req/s | p50 (ms) | p99 (ms) | Baseline | Ratio | Target |"
  echo "|---|---|---|---|---|---|---|"
  for r in "${ROWS[@]}"; do echo "| ${r//|/ | } |"; done
)
echo "$TABLE"
# The sections written by hand after the generated ones (from the first
# heading that is neither of the two written below), kept as they are.
NOTES=$(awk '/^## / && $0 != "## coach-proxy against grpc-gateway (scenario 0)" &&
             $0 != "## Past one machine (scenario 6)" { keep = 1 }
             keep' docs/performance.md 2>/dev/null || true)
{
  echo "# Performance"
  echo
  echo "Measured by \`./tools/bench/run.sh\` on $(date -u +%Y-%m-%d), $(nproc) cores"
  echo "($(uname -m)), Release build; load generators share the machine. Peak RSS in"
  echo "scenarios 1–3: coach-server ${SERVER_RSS} MB, coach-proxy ${PROXY_RSS} MB."
  echo
  echo "$TABLE"
  echo
  echo "![latency](latency.png)"
  echo
  echo "## coach-proxy against grpc-gateway (scenario 0)"
  echo
  echo "Both in front of the same coach-server, \`wrk -t2 -d${DURATION}s\` on"
  echo "\`GET /api/user/stats\`, interleaved, three consecutive runs of two rounds"
  echo "each; CPU per request from \`/proc/PID/stat\` (user + system) over a run."
  echo
  echo "| connections | run | coach-proxy req/s | grpc-gateway req/s | ratio | p99 ms (ours / gateway) | front CPU per request (ours / gateway) |"
  echo "|---|---|---|---|---|---|---|"
  for l in "${PEER_LINES[@]}"; do echo "$l"; done
  echo
  echo "## Past one machine (scenario 6)"
  echo
  echo "Through one coach-proxy, 64 connections: sends as fresh users (offline coach),"
  echo "reads \`GET /api/user/stats\`. PostgreSQL runs with fsync off, in a temporary folder."
  echo
  echo "| set-up | sends/s | reads/s | peak RSS (MB) | CPU per send, µs (proxy / servers / PostgreSQL) | CPU per read, µs |"
  echo "|---|---|---|---|---|---|"
  for l in "${SCALE_LINES[@]}"; do echo "$l"; done
  echo
  if [[ -n $NOTES ]]; then printf '%s\n' "$NOTES"; fi
} >docs/performance.md
log "wrote docs/performance.md"
