#include "base/env.h"

#include <chrono>
#include <cstdio>
#include <string>

#include "absl/time/clock.h"
#include "base/log.h"

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
    if (LogJson()) return WriteJsonLogLine(level, message);
    const std::string time = LogTimestamp();
    // One fprintf per line: lines from concurrent threads do not interleave.
    std::fprintf(stderr, "%s %s %.*s\n", time.c_str(), LogLevelName(level),
                 static_cast<int>(message.size()), message.data());
  }
};

}  // namespace

const char* LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "DEBUG";
    case LogLevel::kInfo: return "INFO";
    case LogLevel::kWarning: return "WARN";
    case LogLevel::kError: return "ERROR";
  }
  return "?";
}

Env& Env::Default() {
  // Never destroyed: threads may log while the process exits.
  static Env* const env = new RealEnv();
  return *env;
}

}  // namespace coach
