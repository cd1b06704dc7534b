#!/usr/bin/env bash
# Installation and packaging, as an operator would use them:
# - `cmake --install` into a temporary prefix puts both binaries (which then
#   run: their RPATH finds coach_protos), the systemd units and the example
#   environment files in place;
# - `systemd-analyze verify` accepts both units (syntax, the ExecStart
#   binaries, dependencies), and `systemd-analyze security --offline` rates
#   their hardening (exposure at most 2.0, "OK"); both reload with SIGHUP;
# - the packaged coach-server.env, started as the unit starts it (its
#   Environment= lines, then the file with EnvironmentFile= semantics, the
#   installed binary in a clean environment), refuses to start, naming the
#   settings to fill; so does the unit without any environment file; with a
#   secret filled in, it serves;
# - `cpack -G DEB` builds a .deb whose listing holds both binaries and both
#   units, and whose units start /usr/bin/coach-*.
# Skipped (exit 77) only where systemd-analyze is absent (tools/setup.sh
# installs systemd).
#   packaging_test.sh <build dir>
set -euo pipefail
build=$1
source "$(dirname "$0")/../tools/lib/port_from_log.sh"
if ! command -v systemd-analyze >/dev/null; then
  echo "SKIP: systemd-analyze not installed (Debian: apt-get install systemd)"
  exit 77
fi
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== cmake --install --prefix $tmp/usr"
cmake --install "$build" --prefix "$tmp/usr" >"$tmp/install.log" || { cat "$tmp/install.log"; fail "install"; }
units="$tmp/usr/lib/systemd/system"
for f in bin/coach-server bin/coach-proxy lib/systemd/system/coach-server.service \
         lib/systemd/system/coach-proxy.service share/doc/coach-ai-hub/examples/coach-server.env \
         share/doc/coach-ai-hub/examples/coach-proxy.env; do
  [[ -e $tmp/usr/$f ]] || fail "not installed: $f"
done
"$tmp/usr/bin/coach-server" --version || fail "installed coach-server does not run"
"$tmp/usr/bin/coach-proxy" --version || fail "installed coach-proxy does not run"
grep -qx "ExecStart=$tmp/usr/bin/coach-server" "$units/coach-server.service" \
  || fail "coach-server.service does not start the installed binary"
for unit in coach-server coach-proxy; do
  grep -q '^EnvironmentFile=-/etc/coach-ai-hub/'"$unit"'.env$' "$units/$unit.service" \
    || fail "$unit.service: no EnvironmentFile"
  grep -q '^DynamicUser=yes$' "$units/$unit.service" || fail "$unit.service: no DynamicUser"
done
grep -q '^StateDirectory=coach-server$' "$units/coach-server.service" || fail "no StateDirectory"

for unit in coach-server coach-proxy; do
  grep -qx 'ExecReload=/bin/kill -HUP $MAINPID' "$units/$unit.service" \
    || fail "$unit.service: no ExecReload sending SIGHUP"
done

echo "== the packaged coach-server.env, started as its unit starts it"
# systemd's EnvironmentFile= semantics for the lines these files use: blank
# lines and lines starting with # or ; are skipped; KEY=VALUE, whitespace
# around both trimmed, one pair of surrounding quotes removed. Anything
# else fails the test rather than being misread. Prints NAME=VALUE lines.
read_env_file() {
  local line name value
  while IFS= read -r line || [[ -n $line ]]; do
    line="${line#"${line%%[![:space:]]*}"}"
    [[ -z $line || $line == \#* || $line == \;* ]] && continue
    [[ $line =~ ^([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*=[[:space:]]*(.*)$ ]] \
      || fail "$1: a line EnvironmentFile= semantics would not read so: $line"
    name=${BASH_REMATCH[1]}
    value=${BASH_REMATCH[2]}
    value="${value%"${value##*[![:space:]]}"}"
    [[ $value == *\\ ]] && fail "$1: a continued line, not handled here"
    if [[ $value =~ ^\"(.*)\"$ || $value =~ ^\'(.*)\'$ ]]; then
      value=${BASH_REMATCH[1]}
    fi
    printf '%s=%s\n' "$name" "$value"
  done <"$1"
}
# The unit's own Environment= lines (KEY=VALUE, unquoted here), then the
# environment file: later assignments win, as in systemd.
unit_env=()
while IFS= read -r assignment; do unit_env+=("$assignment"); done \
  < <(sed -n 's/^Environment=//p' "$units/coach-server.service")
exec_start=$(sed -n 's/^ExecStart=//p' "$units/coach-server.service")
[[ ${#unit_env[@]} -gt 0 && -x $exec_start ]] || fail "cannot read coach-server.service"
# run_as_unit [ENV_FILE]: the installed binary in a clean environment (as
# systemd gives it: no variable of this shell), its state directory made.
# Listening on a free port: if it started, it would not take another's.
run_as_unit() {
  local file_env=()
  if [[ $# -gt 0 ]]; then
    while IFS= read -r assignment; do file_env+=("$assignment"); done < <(read_env_file "$1")
  fi
  rm -rf "$tmp/state" && mkdir -p "$tmp/state"
  env -i "${unit_env[@]/\/var\/lib\/coach-server/$tmp/state}" "${file_env[@]}" \
    COACH_GRPC_LISTEN=127.0.0.1:0 timeout 20 "$exec_start" >"$tmp/start.log" 2>&1
}
examples="$tmp/usr/share/doc/coach-ai-hub/examples"
grep -qx 'COACH_AUTH=jwt' "$examples/coach-server.env" \
  || fail "the packaged coach-server.env does not set COACH_AUTH=jwt"
# As docs/operations.md installs it (the example copied to
# /etc/coach-ai-hub), and with no environment file at all (EnvironmentFile=-
# lets the unit start): both refuse to start, naming the settings to fill;
# neither fails open.
for case in "packaged env file" "no env file"; do
  status=0
  if [[ $case == "packaged env file" ]]; then
    run_as_unit "$examples/coach-server.env" || status=$?
  else
    run_as_unit || status=$?
  fi
  [[ $status != 0 && $status != 124 ]] \
    || { cat "$tmp/start.log"; fail "$case: coach-server started (exit $status), open to anyone"; }
  grep -q 'COACH_JWT_SECRET' "$tmp/start.log" && grep -q 'COACH_JWT_JWKS_FILE' "$tmp/start.log" \
    || { cat "$tmp/start.log"; fail "$case: the refusal does not name COACH_JWT_SECRET / COACH_JWT_JWKS_FILE"; }
  echo "$case: refused: $(grep -o 'COACH_AUTH=jwt.*' "$tmp/start.log")"
done
# With a key filled in, the same start serves: the file is otherwise good.
printf 'COACH_JWT_SECRET=%s\n' "$(openssl rand -hex 32)" >"$tmp/with-key.env"
cat "$examples/coach-server.env" >>"$tmp/with-key.env"
file_env=()
while IFS= read -r assignment; do file_env+=("$assignment"); done < <(read_env_file "$tmp/with-key.env")
rm -rf "$tmp/state" && mkdir -p "$tmp/state"
# env execs the binary: $! is coach-server's pid.
env -i "${unit_env[@]/\/var\/lib\/coach-server/$tmp/state}" "${file_env[@]}" \
  COACH_GRPC_LISTEN=127.0.0.1:0 "$exec_start" >"$tmp/start.log" 2>&1 &
server_pid=$!
port=$(port_from_log "$tmp/start.log" "$server_pid") \
  || { kill "$server_pid" 2>/dev/null; fail "with COACH_JWT_SECRET set, coach-server did not start"; }
kill -TERM "$server_pid"
wait "$server_pid" || fail "coach-server did not stop cleanly on SIGTERM"
echo "with COACH_JWT_SECRET filled in, it serves (port $port)"

echo "== systemd-analyze verify"
out=$(cd "$units" && systemd-analyze verify coach-server.service coach-proxy.service 2>&1) \
  || { echo "$out"; fail "systemd-analyze verify"; }
# Warnings (an unknown key...) do not change the exit status: none allowed.
[[ -z $out ]] || { echo "$out"; fail "systemd-analyze verify warned"; }
echo "both units verified"
for unit in coach-server coach-proxy; do
  line=$(systemd-analyze security --offline=true "$units/$unit.service" 2>&1 \
           | grep 'Overall exposure level') || fail "$unit: no security rating"
  echo "$line"
  score=$(sed -E 's/.*: ([0-9.]+) .*/\1/' <<<"$line")
  awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || fail "$unit: exposure $score above 2.0"
done

echo "== cpack -G DEB"
cpack -G DEB --config "$build/CPackConfig.cmake" -B "$tmp/package" >"$tmp/cpack.log" 2>&1 \
  || { cat "$tmp/cpack.log"; fail "cpack"; }
deb=$(ls "$tmp"/package/*.deb)
echo "$(basename "$deb")"
listing=$(dpkg-deb -c "$deb")
echo "$listing" | awk '{print $6}' | grep -E 'bin/|\.service|\.so|\.env'
for f in ./usr/bin/coach-server ./usr/bin/coach-proxy \
         ./usr/lib/systemd/system/coach-server.service \
         ./usr/lib/systemd/system/coach-proxy.service \
         ./usr/lib/coach-ai-hub/libcoach_protos.so; do
  awk '{print $6}' <<<"$listing" | grep -qx "$f" || fail "not in the .deb: $f"
done
dpkg-deb -I "$deb" | grep -E '^ (Package|Version|Depends):'
dpkg-deb -x "$deb" "$tmp/extracted"
grep -qx 'ExecStart=/usr/bin/coach-server' "$tmp/extracted/usr/lib/systemd/system/coach-server.service" \
  || fail "the packaged coach-server.service does not start /usr/bin/coach-server: $(grep ExecStart "$tmp/extracted/usr/lib/systemd/system/coach-server.service")"
grep -qx 'ExecStart=/usr/bin/coach-proxy' "$tmp/extracted/usr/lib/systemd/system/coach-proxy.service" \
  || fail "the packaged coach-proxy.service does not start /usr/bin/coach-proxy"
for f in ./usr/share/doc/coach-ai-hub/copyright \
         ./usr/share/doc/coach-ai-hub/changelog.gz \
         ./usr/share/man/man1/coach-server.1.gz \
         ./usr/share/man/man1/coach-proxy.1.gz; do
  awk '{print $6}' <<<"$listing" | grep -qx "$f" || fail "not in the .deb: $f"
done
# The changelog's version is the package's.
version=$(dpkg-deb -f "$deb" Version)
zcat "$tmp/extracted/usr/share/doc/coach-ai-hub/changelog.gz" | head -1 |
  grep -q "^coach-ai-hub ($version)" || fail "changelog's first entry is not $version"

# The maintainer scripts look after the services as Debian's own do
# (dh_installsystemd): stopped before the package is removed (they would
# serve on from deleted files), restarted after an upgrade (the fixed
# binaries serve), their enablement forgotten on purge. Read, not run: they
# act on the machine's systemd.
ctrl="$tmp/control"
dpkg-deb -e "$deb" "$ctrl"
for script in prerm postinst postrm; do
  [[ -x $ctrl/$script ]] || fail "no $script in the package"
  sh -n "$ctrl/$script" || fail "$script: not valid sh"
done
grep -q 'deb-systemd-invoke stop coach-proxy.service coach-server.service' "$ctrl/prerm" \
  || fail "prerm does not stop the services: a removed package's would keep running"
grep -q 'deb-systemd-invoke try-restart coach-server.service coach-proxy.service' "$ctrl/postinst" \
  || fail "postinst never restarts the services: after an upgrade the old binaries serve"
grep -q 'multi-user.target.wants/coach-server.service' "$ctrl/postrm" \
  || fail "postrm leaves the units' enablement behind on purge"

# Debian's own checker: no error, no warning (lintian, when installed:
# tools/setup.sh installs it).
if command -v lintian >/dev/null; then
  echo "== lintian"
  tags=$(lintian --tag-display-limit 0 "$deb" 2>&1 | grep -E '^[EW]: ' || true)
  [[ -z $tags ]] || fail "lintian: $tags"
else
  echo "lintian not installed: not checked"
fi
echo "packaging test: OK"
