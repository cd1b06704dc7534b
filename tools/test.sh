#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds everything and runs every test:
#   ./tools/test.sh
# Installs its Debian packages (tools/setup.sh) and the npm tools, lints the
# protos, then builds three times with CMake and Ninja (-j2), each build
# followed by its tests (CTest):
#   build/test  optimised (-O2): the programs and the bench tools; the scripts
#               run against these binaries (tcmalloc, -O2), packaging_test
#               packages them. Then the fuzz targets, 30 s each (clang),
#               beside the ASan build.
#   build/asan  every gtest suite and the scripts again, under AddressSanitizer
#               + LeakSanitizer + UBSan (tools/sanitizers/);
#   build/tsan  the concurrent suites (TSAN_SUITES below), under ThreadSanitizer.
# Every test runs at least once; the gtest suites run under the sanitizers
# only (an optimised run of them found nothing these did not).
# COACH_SANITIZERS=0 skips the sanitizer builds (a quicker local check; CI
# runs them): build/test then builds and runs every suite itself.
# Prints the time (wall and CPU) of each phase at the end.
# docs/adr/0062-ci-build-time.md says what makes it fast.
# The PostgreSQL tests run on a throwaway server this script starts
# (tools/lib/postgres.sh: a temporary folder, a free loopback port) and
# stops on exit; each test works in a schema of its own
# (COACH_TEST_DATABASE_URL).
set -euo pipefail
cd "$(dirname "$0")/.."

JOBS=${COACH_JOBS:-2}
# Tests in parallel: twice the build's jobs. Most tests wait on sockets,
# processes and timers (under ASan, 94 s of CPU in 147 s at -j2 on two
# cores), so four at a time keep both cores busy.
TEST_JOBS=${COACH_TEST_JOBS:-$((JOBS * 2))}
TIMES=()
TIMES_FILE=$(mktemp)
# cpu_now: sets CPU_NOW to the CPU time (user + system, whole seconds) of
# every process this script has started and waited for, compilers and tests
# included. `times` must run in this shell, not in a $(...) subshell.
cpu_now() {
  times >"$TIMES_FILE"
  CPU_NOW=$(awk 'NR == 2 { n = 0
      for (i = 1; i <= 2; i++) { split($i, t, /[ms]/); n += t[1] * 60 + t[2] }
      printf "%d\n", n }' "$TIMES_FILE")
}
cpu_now
START_CPU=$CPU_NOW
# phase NAME COMMAND...: runs it, records its wall time and the CPU time it
# used (on a machine other work shares, the CPU time shows what the wall
# time cannot; with -j2, about twice the wall time when nothing else runs).
phase() {
  local name=$1 start=$SECONDS cpu_start
  cpu_now
  cpu_start=$CPU_NOW
  shift
  echo "== $name" >&2
  "$@"
  cpu_now
  TIMES+=("$(printf '%-28s %4ds   cpu %5ds' "$name" $((SECONDS - start)) \
             $((CPU_NOW - cpu_start)))")
}
report_times() {
  cpu_now
  echo "== times" >&2
  printf '  %s\n' "${TIMES[@]}" \
    "$(printf '%-28s %4ds   cpu %5ds' total $SECONDS $((CPU_NOW - START_CPU)))" >&2
  if [[ -r /proc/loadavg ]]; then
    echo "  load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  fi
  rm -f "$TIMES_FILE"
}
source tools/lib/postgres.sh
finish() {
  # A fuzzer still running beside a build that failed.
  if [[ -n ${FUZZ_PID:-} ]]; then kill -- "-$FUZZ_PID" 2>/dev/null || true; fi
  rm -f "${FUZZ_LOG:-}"
  pg_temp_stop
  report_times
}
trap finish EXIT

phase "setup" ./tools/setup.sh
phase "npm tools" ./tools/npm-tools.sh
phase "buf lint" tools/npm/node_modules/.bin/buf lint
# The C++ as .clang-format writes it (tools/format.sh rewrites it).
phase "format" tools/format.sh --check

start_postgres() {
  pg_temp_start coach_test
  export COACH_TEST_DATABASE_URL=$PG_TEMP_URL
}
phase "postgres start" start_postgres

# configure DIR [cmake options...]: Ninja, warnings as errors. A folder left
# by another generator is configured afresh.
configure() {
  local dir=$1
  shift
  if [[ -f $dir/CMakeCache.txt ]] &&
     ! grep -qx 'CMAKE_GENERATOR:INTERNAL=Ninja' "$dir/CMakeCache.txt"; then
    rm -rf "$dir"
  fi
  cmake -S . -B "$dir" -G Ninja -DBUILD_TESTING=ON -DCOACH_WERROR=ON "$@" \
        >/dev/null
}

# The optimised build: -g0 (no debug info: full -g made it a third slower,
# and nothing here reads it; the sanitizer builds keep line tables). With the sanitizer runs, it
# builds no gtest suite (COACH_TEST_SUITES=scripts); without, all of them.
# No unity build here: every file compiles on its own includes, as in
# tools/run.sh's build (a unity build hides a missing include behind the
# file before it).
BUILD_DIR=${COACH_TEST_BUILD_DIR:-build/test}
if [[ ${COACH_SANITIZERS:-1} == 0 ]]; then
  PLAIN_SUITES=
else
  PLAIN_SUITES=scripts
fi
build_plain() {
  configure "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
            "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g0 -DNDEBUG" \
            "-DCOACH_TEST_SUITES=$PLAIN_SUITES"
  cmake --build "$BUILD_DIR" -j "$JOBS"
}
phase "build ($BUILD_DIR)" build_plain
phase "tests ($BUILD_DIR)" \
  ctest --test-dir "$BUILD_DIR" -j "$TEST_JOBS" --output-on-failure --timeout 300

# The protocol parsers' fuzz targets, 30 s each (tools/fuzz.sh), when clang
# and libFuzzer are there (tools/setup.sh installs them). A fuzzer runs on
# one core: with the sanitizer runs, beside the ASan build (which then
# takes the other core and the fuzzer's pauses), its log printed and its
# status checked after that build.
FUZZ_PID=
FUZZ_LOG=$(mktemp)
if command -v clang++ >/dev/null &&
   ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a \
      >/dev/null 2>&1; then
  if [[ ${COACH_SANITIZERS:-1} == 0 ]]; then
    phase "fuzz (build/fuzz)" ./tools/fuzz.sh
  else
    echo "== fuzz (build/fuzz), beside the ASan build" >&2
    # A session of its own, so that a failure elsewhere stops the fuzzer
    # and its build with it (kill -- -PID in finish).
    COACH_JOBS=1 setsid ./tools/fuzz.sh >"$FUZZ_LOG" 2>&1 &
    FUZZ_PID=$!
  fi
else
  echo "== fuzz skipped: clang or libFuzzer not installed" >&2
fi
wait_fuzz() {
  [[ -n $FUZZ_PID ]] || return 0
  local status=0
  wait "$FUZZ_PID" || status=$?
  FUZZ_PID=
  if [[ $status != 0 ]]; then
    cat "$FUZZ_LOG" >&2
    echo "== fuzz failed (exit $status)" >&2
    return "$status"
  fi
  tail -n 20 "$FUZZ_LOG" >&2
}

if [[ ${COACH_SANITIZERS:-1} == 0 ]]; then
  echo "== sanitizer runs skipped (COACH_SANITIZERS=0)" >&2
  exit 0
fi

# Sanitizer builds: -O1 keeps stacks readable and builds faster than -O2;
# -g1 is enough for file:line in reports. The test code itself at -O0
# (COACH_TEST_COMPILE_OPTIONS): a third less compile time for the suites,
# the code under test keeps -O1.
# Unity builds (tools/build_speed.cmake): each target one translation unit.
SANITIZER_FLAGS=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCOACH_BUILD_BENCH=OFF
                 -DCOACH_UNITY_BUILD=ON
                 "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG"
                 -DCOACH_TEST_COMPILE_OPTIONS=-O0)
# Every test runs under the sanitizers too: the AI client's timing tests run
# on a fake clock, and the few that still use real time (curl's own
# timeouts) have windows far wider than a 2-15x slower build needs.

# Every suite, and the scripts against the binaries (packaging_test, which
# packages the optimised build, ran above).
build_asan() {
  configure build/asan "${SANITIZER_FLAGS[@]}" -DCOACH_SANITIZE=address \
            -DCOACH_TEST_SUITES=
  cmake --build build/asan -j "$JOBS"
}
phase "build (build/asan)" build_asan
phase "fuzz (waited for)" wait_fuzz
phase "tests (build/asan)" \
  ctest --test-dir build/asan -j "$TEST_JOBS" --output-on-failure --timeout 300 \
        -LE '^packaging_test$'

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
# TLS (the HTTPS front's server in the test process, and the binaries as
# children, built under TSan too); the offline coach's pacing thread.
# Left out: single-threaded units (text, validation, offline coach, proxy
# units) and the tests that start the binaries as processes (the same code
# runs in-process in the suites above).
TSAN_SUITES=(thread_pool_test cancellation_test async_http_client_test
             openai_coach_test chat_service_test user_service_test
             chat_caller_test proxy_test store_test limits_test
             send_admission_test stream_message_test http_front_test sse_test
             fallback_coach_test user_data_test
             metrics_test idempotency_test upstream_test jwt_verifier_test
             auth_test upstream_conformance_test tls_test offline_coach_test)
# Only these suites are compiled (COACH_TEST_SUITES), into the executables of
# their layers, and run.
build_tsan() {
  configure build/tsan "${SANITIZER_FLAGS[@]}" -DCOACH_SANITIZE=thread \
            "-DCOACH_TEST_SUITES=$(IFS=';'; echo "${TSAN_SUITES[*]}")"
  cmake --build build/tsan -j "$JOBS" --target all_tests
}
phase "build (build/tsan)" build_tsan
phase "tests (build/tsan)" \
  ctest --test-dir build/tsan -j "$TEST_JOBS" --output-on-failure --timeout 300
