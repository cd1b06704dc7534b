#!/usr/bin/env bash
# Installation and packaging, as an operator would use them:
# - `cmake --install` into a temporary prefix puts both binaries (which then
#   run: their RPATH finds coach_protos), the systemd units and the example
#   environment files in place;
# - `systemd-analyze verify` accepts both units (syntax, the ExecStart
#   binaries, dependencies), and `systemd-analyze security --offline` rates
#   their hardening (exposure at most 2.0, "OK"); both reload with SIGHUP;
# - `cpack -G DEB` builds a .deb whose listing holds both binaries and both
#   units, and whose units start /usr/bin/coach-*.
# Skipped (exit 77) only where systemd-analyze is absent (tools/setup.sh
# installs systemd).
#   packaging_test.sh <build dir>
set -euo pipefail
build=$1
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
echo "packaging test: OK"
