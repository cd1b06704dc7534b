# Sourced by the shell tests and the benchmark. port_from_log LOG PID: waits (bounded, ~10 s)
# for the "(port N)" line our binaries log once they listen, and prints N;
# fails with the log if the process exits or never listens.
port_from_log() {
  local log=$1 pid=$2 port=""
  for _ in $(seq 1 200); do
    port=$(sed -n 's/.*listening on .*(port \([0-9]*\)).*/\1/p' "$log")
    if [[ -n $port ]]; then echo "$port"; return 0; fi
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "process exited" >&2; return 1; }
    read -r -t 0.05 <> <(:) || true
  done
  cat "$log" >&2
  echo "never listened" >&2
  return 1
}
