#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds everything and runs every test:
#   ./tools/test.sh
# Installs its Debian packages (tools/setup.sh) and buf (npm, pinned), lints
# the protos, builds with CMake (-j2) into build/test, runs CTest. Then again
# under sanitizers (tools/sanitizers/):
#   build/asan  every suite, under AddressSanitizer + LeakSanitizer + UBSan;
#   build/tsan  the concurrent suites (TSAN_SUITES below), under ThreadSanitizer.
# COACH_SANITIZERS=0 skips the sanitizer runs (a quicker local check; CI runs
# them). Prints the time of each phase at the end.
# The PostgreSQL tests run on a throwaway server this script starts
# (tools/lib/postgres.sh: a temporary folder, a free loopback port) and
# stops on exit; each test works in a schema of its own
# (COACH_TEST_DATABASE_URL).
set -euo pipefail
cd "$(dirname "$0")/.."

JOBS=${COACH_JOBS:-2}
TIMES=()
phase() {  # phase NAME COMMAND...: runs it, records how long it took
  local name=$1 start=$SECONDS
  shift
  echo "== $name" >&2
  "$@"
  TIMES+=("$(printf '%-28s %4ds' "$name" $((SECONDS - start)))")
}
report_times() {
  echo "== times" >&2
  printf '  %s\n' "${TIMES[@]}" >&2
}
source tools/lib/postgres.sh
finish() {
  pg_temp_stop
  report_times
}
trap finish EXIT

phase "setup" ./tools/setup.sh
phase "npm tools" ./tools/npm-tools.sh
phase "buf lint" tools/npm/node_modules/.bin/buf lint

start_postgres() {
  pg_temp_start coach_test
  export COACH_TEST_DATABASE_URL=$PG_TEMP_URL
}
phase "postgres start" start_postgres

# configure DIR [cmake options...]
configure() {
  local dir=$1
  shift
  cmake -S . -B "$dir" -DBUILD_TESTING=ON -DCOACH_WERROR=ON "$@" >/dev/null
}

BUILD_DIR=${COACH_TEST_BUILD_DIR:-build/test}
build_plain() {
  configure "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo
  cmake --build "$BUILD_DIR" -j "$JOBS"
}
phase "build ($BUILD_DIR)" build_plain
phase "tests ($BUILD_DIR)" \
  ctest --test-dir "$BUILD_DIR" -j "$JOBS" --output-on-failure --timeout 300

# The protocol parsers' fuzz targets, 30 s each (tools/fuzz.sh), when clang
# and libFuzzer are there (tools/setup.sh installs them).
if command -v clang++ >/dev/null &&
   ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a \
      >/dev/null 2>&1; then
  phase "fuzz (build/fuzz)" ./tools/fuzz.sh
else
  echo "== fuzz skipped: clang or libFuzzer not installed" >&2
fi

if [[ ${COACH_SANITIZERS:-1} == 0 ]]; then
  echo "== sanitizer runs skipped (COACH_SANITIZERS=0)" >&2
  exit 0
fi

# Sanitizer builds: -O1 keeps stacks readable and builds faster than -O2;
# -g1 is enough for file:line in reports.
SANITIZER_FLAGS=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCOACH_BUILD_BENCH=OFF
                 "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG")
# Every test runs under the sanitizers too: the AI client's timing tests run
# on a fake clock, and the few that still use real time (curl's own
# timeouts) have windows far wider than a 2-15x slower build needs.

# Every suite, the binaries' smoke tests included.
build_asan() {
  configure build/asan "${SANITIZER_FLAGS[@]}" -DCOACH_SANITIZE=address
  cmake --build build/asan -j "$JOBS"
}
phase "build (build/asan)" build_asan
phase "tests (build/asan)" \
  ctest --test-dir build/asan -j "$JOBS" --output-on-failure --timeout 300

# The suites where threads meet: the thread pool, cancellation, the AI
# client's event loop and the OpenAI coach on it, the gRPC services (callback
# reactors, concurrent sends and credit holds), a caller leaving mid-send, the
# proxy (HTTP server threads calling gRPC), the store under concurrent writers
# (threads and several stores, SQLite and PostgreSQL),
# the per-user limits (racing sends and creations, several stores on one
# database).
# The HTTP front (event loop, gRPC callbacks answering from their threads,
# hang-ups cancelling calls) and its event streams. The JWT verifier (keys
# re-read under concurrent verifications) and authentication end to end.
# The proxy's gRPC client, both implementations, against gRPC servers and
# the scripted HTTP/2 peer. The AI providers' fallback, and users' data.
# Left out: single-threaded units (text, validation, offline coach, proxy
# units) and the tests that start the binaries as processes (the same code
# runs in-process in the suites above).
TSAN_SUITES=(thread_pool_test cancellation_test async_http_client_test
             openai_coach_test chat_service_test user_service_test
             chat_caller_test proxy_test store_test limits_test
             send_admission_test stream_message_test http_front_test sse_test
             fallback_coach_test user_data_test
             metrics_test idempotency_test upstream_test jwt_verifier_test
             auth_test upstream_conformance_test)
build_tsan() {
  configure build/tsan "${SANITIZER_FLAGS[@]}" -DCOACH_SANITIZE=thread
  cmake --build build/tsan -j "$JOBS" --target "${TSAN_SUITES[@]}"
}
phase "build (build/tsan)" build_tsan
tsan_labels="^($(IFS='|'; echo "${TSAN_SUITES[*]}"))\$"
phase "tests (build/tsan)" \
  ctest --test-dir build/tsan -j "$JOBS" --output-on-failure --timeout 300 \
        -L "$tsan_labels"
