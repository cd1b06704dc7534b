#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (-DCOACH_FUZZ=ON, build/fuzz) and
# runs each for a bounded time:
#   ./tools/fuzz.sh                  # 30 s per target
#   COACH_FUZZ_SECONDS=600 ./tools/fuzz.sh
# Targets: upstream_wire_fuzz (proxy/upstream/fuzz/: the gRPC client's
# response reader, deframer and value parsers). The corpus grows in
# build/fuzz/corpus/<target>; a crash leaves its input in build/fuzz/ and
# fails the script. Needs clang and libFuzzer (Debian: clang,
# libclang-rt-14-dev; tools/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${COACH_FUZZ_SECONDS:-30}
BUILD=${COACH_FUZZ_BUILD_DIR:-build/fuzz}
TARGETS=(upstream_wire_fuzz)

if ! command -v clang++ >/dev/null; then
  echo "fuzz: clang++ not installed (tools/setup.sh)" >&2
  exit 1
fi
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B "$BUILD" "${generator[@]}" -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCOACH_FUZZ=ON -DBUILD_TESTING=OFF \
  -DCOACH_BUILD_BENCH=OFF >/dev/null
cmake --build "$BUILD" -j "${COACH_JOBS:-2}" --target "${TARGETS[@]}"

for target in "${TARGETS[@]}"; do
  corpus=$BUILD/corpus/$target
  mkdir -p "$corpus"
  echo "fuzz: $target for ${SECONDS_PER_TARGET}s" >&2
  (cd "$BUILD" && "./proxy/upstream/fuzz/$target" -max_total_time="$SECONDS_PER_TARGET" \
     -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "corpus/$target")
done
