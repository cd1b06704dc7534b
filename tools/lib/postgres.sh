# Sourced by tools/test.sh and tools/cluster.sh: a throwaway PostgreSQL
# server (Debian's `postgresql`) in a temporary folder, on a free loopback
# port, with its socket in that folder too.
#   pg_temp_start DBNAME   initdb, start, create DBNAME; sets PG_TEMP_DIR,
#                          PG_TEMP_PORT and PG_TEMP_URL (postgresql://...)
#   pg_temp_stop           stops it (immediate: nothing is worth keeping)
#                          and removes the folder; safe to call twice.
# Tuned for throwaway data: no fsync, no synchronous commit, no full-page
# writes (a crash loses the data, which is deleted anyway). initdb refuses
# root: as root, the server runs as the `postgres` user.
PG_TEMP_DIR=""
PG_TEMP_PORT=""
PG_TEMP_URL=""

pg_temp_bin() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [[ -x $bin/initdb ]] || { echo "postgres: initdb not found (apt-get install postgresql)" >&2; return 1; }
  echo "$bin"
}

pg_temp_as_owner() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_temp_start() {
  local dbname=$1 bin port attempt
  bin=$(pg_temp_bin) || return 1
  PG_TEMP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/coach-pg-XXXXXX")
  chmod 755 "$PG_TEMP_DIR"
  mkdir "$PG_TEMP_DIR/data" "$PG_TEMP_DIR/socket"
  if [[ $(id -u) -eq 0 ]]; then
    chown postgres: "$PG_TEMP_DIR/data" "$PG_TEMP_DIR/socket"
    touch "$PG_TEMP_DIR/log" && chown postgres: "$PG_TEMP_DIR/log"
  fi
  pg_temp_as_owner "$bin/initdb" -D "$PG_TEMP_DIR/data" -U postgres -A trust \
    -E UTF8 --locale=C --no-sync --no-instructions >"$PG_TEMP_DIR/initdb.log" 2>&1 \
    || { cat "$PG_TEMP_DIR/initdb.log" >&2; return 1; }
  # A port nothing listens on; another process may take it before the
  # server binds: then the start fails and the next port is tried.
  for attempt in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 30000))
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue; fi
    if pg_temp_as_owner "$bin/pg_ctl" -D "$PG_TEMP_DIR/data" -l "$PG_TEMP_DIR/log" \
         -w -t 30 -o "-p $port -k $PG_TEMP_DIR/socket -c listen_addresses=127.0.0.1 \
         -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
         -c max_connections=300" start >/dev/null; then
      PG_TEMP_PORT=$port
      break
    fi
  done
  [[ -n $PG_TEMP_PORT ]] || { cat "$PG_TEMP_DIR/log" >&2; echo "postgres: did not start" >&2; return 1; }
  "$bin/createdb" -h 127.0.0.1 -p "$PG_TEMP_PORT" -U postgres "$dbname" || return 1
  PG_TEMP_URL="postgresql://postgres@127.0.0.1:$PG_TEMP_PORT/$dbname"
  echo "postgres: $PG_TEMP_URL (data in $PG_TEMP_DIR)" >&2
}

pg_temp_stop() {
  [[ -n $PG_TEMP_DIR ]] || return 0
  local bin
  bin=$(pg_temp_bin) || true
  if [[ -n $bin && -f $PG_TEMP_DIR/data/postmaster.pid ]]; then
    pg_temp_as_owner "$bin/pg_ctl" -D "$PG_TEMP_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$PG_TEMP_DIR"
  PG_TEMP_DIR=""
}
