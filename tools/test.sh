#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds everything and runs every test:
#   ./tools/test.sh
# Installs its Debian packages (tools/setup.sh) and buf (npm, pinned), lints
# the protos, builds with CMake (-j2) into build/test, runs CTest.
set -euo pipefail
cd "$(dirname "$0")/.."

./tools/setup.sh
./tools/npm-tools.sh

echo "== buf lint" >&2
tools/npm/node_modules/.bin/buf lint

BUILD_DIR=${COACH_TEST_BUILD_DIR:-build/test}
JOBS=${COACH_JOBS:-2}
echo "== build ($BUILD_DIR, -j$JOBS)" >&2
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=ON \
  -DCOACH_WERROR=ON >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS"

echo "== tests" >&2
ctest --test-dir "$BUILD_DIR" -j "$JOBS" --output-on-failure --timeout 300
