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
# Prints one line per set-up: "label|sends/s|reads/s|peak RSS (MB) text".
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
    env "${db_env[@]}" COACH_GRPC_LISTEN=127.0.0.1:0 COACH_INSTANCE="bench-$n-$i" \
      "$BUILD/server/coach-server" 2>"$work/s$n-$i.log" &
    spids+=($!); pids+=($!)
    targets+=("127.0.0.1:$(port_from_log "$work/s$n-$i.log" "${spids[-1]}")")
  done
  env COACH_GRPC_TARGET="ipv4:$(IFS=,; echo "${targets[*]}")" COACH_HTTP_LISTEN=127.0.0.1:0 \
    COACH_ACCESS_LOG=false "$BUILD/proxy/coach-proxy" 2>"$work/p$n.log" &
  local ppid=$!; pids+=("$ppid")
  local port; port=$(port_from_log "$work/p$n.log" "$ppid")
  local sends reads
  sends=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" -s tools/bench/send.lua "http://127.0.0.1:$port" | rps)
  reads=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" \
    "http://127.0.0.1:$port/api/user/stats?userId=bench-reader" | rps)
  local rss="proxy $(peak_mb "$ppid"); server"
  for i in "${!spids[@]}"; do rss+="$([[ $i -gt 0 ]] && echo ",") $(peak_mb "${spids[$i]}")"; done
  if [[ $engine == postgres ]]; then rss+="; PostgreSQL (all processes) $(pg_peak_mb)"; fi
  echo "$label|$sends|$reads|$rss"
  kill "$ppid" "${spids[@]}"; wait "$ppid" "${spids[@]}" 2>/dev/null || true
}
run "SQLite, 1 coach-server" sqlite 1
run "PostgreSQL, 1 coach-server" postgres 1
run "PostgreSQL, 3 coach-servers" postgres 3
