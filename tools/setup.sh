#!/usr/bin/env bash
# Installs the Debian 12 packages that build, test and run Coach AI Hub.
# Idempotent: only missing packages are installed.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git ca-certificates curl
  ninja-build  # the generator tools/test.sh builds with
  mold         # the linker, when installed (tools/build_speed.cmake)
  ccache       # compiler cache, when installed (tools/build_speed.cmake)
  protobuf-compiler libprotobuf-dev
  libgrpc++-dev protobuf-compiler-grpc
  libabsl-dev
  libsqlitecpp-dev libsqlite3-dev sqlite3
  libpq-dev postgresql
  libcpp-httplib-dev nlohmann-json3-dev
  libssl-dev libcurl4-openssl-dev libcjose-dev libjansson-dev libicu-dev openssl
  libboost-dev
  libgoogle-perftools-dev  # tcmalloc, the servers' allocator
  libnghttp2-dev  # HTTP/2 framing of coach-proxy's gRPC client
  libgtest-dev libgmock-dev
  prometheus  # promtool: tests validate coach-server's /metrics text with it
  jq          # the README's examples read JSON answers with it
  systemd     # systemd-analyze: the packaging test verifies the units
  dpkg-dev    # dpkg-shlibdeps: cpack -G DEB finds the package's dependencies
  help2man    # the man pages, from --helpfull (packaging/)
  lintian     # packaging_test checks the .deb with it
  python3  # json_log_test parses every log line with its json module
  clang libclang-rt-14-dev  # libFuzzer (-fsanitize=fuzzer): tools/fuzz.sh
  clang-format  # tools/format.sh: CI checks the C++ is formatted
)

# Node.js and npm run the npm tools (tools/npm-tools.sh). Debian's nodejs
# and npm, unless a Node.js with its own npm is already there.
if ! command -v npm >/dev/null; then
  PACKAGES+=(nodejs npm)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done

if ((${#missing[@]} > 0)); then
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
