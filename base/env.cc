#include "base/env.h"

#include <chrono>
#include <cstdio>
#include <string>

#include "absl/time/clock.h"

namespace coach {
namespace {

class RealEnv final : public Env {
 public:
  absl::Time Now() override { return absl::Now(); }

  absl::Duration MonotonicNow() override {
    return absl::FromChrono(
        std::chrono::steady_clock::now().time_since_epoch());
  }

  void Log(LogLevel level, absl::string_view message) override {
    const std::string time = absl::FormatTime(
        "%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
    // One fprintf per line: lines from concurrent threads do not interleave.
    std::fprintf(stderr, "%s %s %.*s\n", time.c_str(), LogLevelName(level),
                 static_cast<int>(message.size()), message.data());
  }
};

}  // namespace

const char* LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kWarning:
      return "WARN";
    case LogLevel::kError:
      return "ERROR";
  }
  return "?";
}

Env& Env::Default() {
  // Never destroyed: threads may log while the process exits.
  static Env* const env = new RealEnv();
  return *env;
}

}  // namespace coach
