# Sourced by tools/run.sh and tools/cluster.sh: sets up the machine and
# builds coach-server and coach-proxy in Release into $BUILD_DIR
# (COACH_RUN_BUILD_DIR, default build/release).
release_build() {
  ./tools/setup.sh
  BUILD_DIR=${COACH_RUN_BUILD_DIR:-build/release}
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
  cmake --build "$BUILD_DIR" -j "${COACH_JOBS:-2}" --target coach-server coach-proxy
}
