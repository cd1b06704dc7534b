#!/usr/bin/env bash
# Issue 13's measure: sends/s and reads/s through coach-proxy with
#   - SQLite and one coach-server,
#   - PostgreSQL and one coach-server,
#   - PostgreSQL and three coach-servers (COACH_GRPC_TARGET=ipv4:a,b,c),
# all on this machine, with the peak RSS of every process. Offline coach;
# sends as fresh users (tools/bench/send.lua), reads are GET
# /api/user/stats for one user. PostgreSQL runs in a temporary folder
# (tools/lib/postgres.sh) with fsync off: the figures leave out the disk.
#   scale_out.sh BUILD_DIR SECONDS CONNECTIONS
# Prints one line per set-up:
#   "label|sends/s|reads/s|peak RSS (MB)|CPU per send|CPU per read"
# where CPU per request is "proxy / coach-servers / PostgreSQL" in µs: the
# processes' CPU time (user + system, /proc/PID/stat) over the run divided
# by the requests answered.
set -euo pipefail
BUILD=$1 DURATION=$2 CONNS=$3
cd "$(dirname "$0")/../.."
source tools/lib/port_from_log.sh
source tools/lib/postgres.sh
work=$(mktemp -d)
pids=()
cleanup() {
  if ((${#pids[@]} > 0)); then kill "${pids[@]}" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  pg_temp_stop
  rm -rf "$work"
}
trap cleanup EXIT

peak_mb() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
rps() { awk '/Requests\/sec/ {printf "%.0f", $2}'; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))
# CPU ticks used so far by the processes PIDS...
ticks() { local t=0 pid; for pid in "$@"; do [[ -r /proc/$pid/stat ]] && t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done; echo "$t"; }
pg_pids() {
  [[ -n $PG_TEMP_DIR ]] || return 0
  local main; main=$(head -n1 "$PG_TEMP_DIR/data/postmaster.pid")
  echo "$main" $(pgrep -P "$main")
}
# load URL [SCRIPT] -> "req/s cpu_text", with PROXY, SERVERS and ENGINE set
load() {
  local url=$1 script=${2:-} pg=() out
  [[ $ENGINE == postgres ]] && read -r -a pg <<<"$(pg_pids)"
  local p0 s0 g0 p1 s1 g1
  p0=$(ticks "$PROXY"); s0=$(ticks "${SERVERS[@]}"); g0=$(ticks "${pg[@]}")
  out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" ${script:+-s "$script"} "$url")
  p1=$(ticks "$PROXY"); s1=$(ticks "${SERVERS[@]}"); g1=$(ticks "${pg[@]}")
  local n; n=$(awk '/requests in/ {print $1}' <<<"$out")
  local per='{printf "%.0f", ($2 - $1) * u / n}'
  local cpu
  cpu="$(echo "$p0 $p1" | awk -v u="$TICK_US" -v n="$n" "$per") / $(echo "$s0 $s1" | awk -v u="$TICK_US" -v n="$n" "$per")"
  if [[ $ENGINE == postgres ]]; then
    cpu+=" / $(echo "$g0 $g1" | awk -v u="$TICK_US" -v n="$n" "$per")"
  else
    cpu+=" / —"
  fi
  echo "$(rps <<<"$out")|$cpu"
}
# The sum of the peaks of the PostgreSQL server's processes (postmaster and
# one backend per pooled connection); shared memory counts in each.
pg_peak_mb() {
  local total=0 pid main
  main=$(head -n1 "$PG_TEMP_DIR/data/postmaster.pid")
  for pid in "$main" $(pgrep -P "$main"); do
    [[ -r /proc/$pid/status ]] || continue
    total=$((total + $(awk '/VmHWM/ {print $2}' "/proc/$pid/status")))
  done
  echo $((total / 1024))
}

pg_temp_start coach_bench >/dev/null
n=0
# run LABEL ENGINE SERVERS
run() {
  local label=$1 engine=$2 servers=$3 spids=() targets=() i
  n=$((n + 1))
  for ((i = 1; i <= servers; i++)); do
    local db_env=(COACH_DB_PATH="$work/coach$n.db")
    if [[ $engine == postgres ]]; then db_env=(COACH_DATABASE_URL="$PG_TEMP_URL"); fi
    : >"$work/s$n-$i.log"
    env "${db_env[@]}" COACH_GRPC_LISTEN=127.0.0.1:0 COACH_INSTANCE="bench-$n-$i" \
      "$BUILD/server/coach-server" 2>"$work/s$n-$i.log" &
    spids+=($!); pids+=($!)
    targets+=("127.0.0.1:$(port_from_log "$work/s$n-$i.log" "${spids[-1]}")")
  done
  : >"$work/p$n.log"
  env COACH_GRPC_TARGET="ipv4:$(IFS=,; echo "${targets[*]}")" COACH_HTTP_LISTEN=127.0.0.1:0 \
    COACH_ACCESS_LOG=false "$BUILD/proxy/coach-proxy" 2>"$work/p$n.log" &
  local ppid=$!; pids+=("$ppid")
  local port; port=$(port_from_log "$work/p$n.log" "$ppid")
  PROXY=$ppid SERVERS=("${spids[@]}") ENGINE=$engine
  local sends reads sends_cpu reads_cpu
  IFS='|' read -r sends sends_cpu < <(load "http://127.0.0.1:$port" tools/bench/send.lua)
  IFS='|' read -r reads reads_cpu < <(load "http://127.0.0.1:$port/api/user/stats?userId=bench-reader")
  local rss="proxy $(peak_mb "$ppid"); server"
  for i in "${!spids[@]}"; do rss+="$([[ $i -gt 0 ]] && echo ",") $(peak_mb "${spids[$i]}")"; done
  if [[ $engine == postgres ]]; then rss+="; PostgreSQL (all processes) $(pg_peak_mb)"; fi
  echo "$label|$sends|$reads|$rss|$sends_cpu|$reads_cpu"
  kill "$ppid" "${spids[@]}"; wait "$ppid" "${spids[@]}" 2>/dev/null || true
}
run "SQLite, 1 coach-server" sqlite 1
run "PostgreSQL, 1 coach-server" postgres 1
run "PostgreSQL, 3 coach-servers" postgres 3
