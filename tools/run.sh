#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds in Release and runs the service:
#   ./tools/run.sh
# coach-server (gRPC, 127.0.0.1:50051) on the SQLite file data/coach.db, with
# the offline coach unless OPENAI_API_KEY is set. Every setting can be changed
# through its environment variable (COACH_DB_PATH, COACH_GRPC_LISTEN, ...;
# see README.md) or flag (arguments are passed to coach-server).
# Ctrl-C stops it gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."

./tools/setup.sh

BUILD_DIR=${COACH_RUN_BUILD_DIR:-build/release}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build "$BUILD_DIR" -j "${COACH_JOBS:-2}" --target coach-server

export COACH_DB_PATH=${COACH_DB_PATH:-data/coach.db}
mkdir -p "$(dirname "$COACH_DB_PATH")"
exec "$BUILD_DIR/server/coach-server" "$@"
