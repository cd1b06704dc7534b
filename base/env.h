// Env: what code that keeps time and writes logs sees of the machine — a
// clock and a logger — in the manner of LevelDB's Env. The parts whose own
// timing tests must check (the AI client and its event loop) take one, so
// that a test can move time by hand and read the lines logged, instead of
// waiting on the wall clock and capturing stderr. Env::Default() is the real
// machine; base/log.h's free functions write through it.
//
// Thread-safety: every method may be called from any thread.
#ifndef COACH_BASE_ENV_H_
#define COACH_BASE_ENV_H_

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace coach {

// In increasing order of severity (base/log.h filters below a minimum).
enum class LogLevel { kDebug, kInfo, kWarning, kError };

// "DEBUG", "INFO", "WARN" or "ERROR".
const char* LogLevelName(LogLevel level);

class Env {
 public:
  virtual ~Env() = default;

  // The time of day: for deadlines (callers give theirs as absl::Time) and
  // for what is logged.
  virtual absl::Time Now() = 0;
  // Time since an arbitrary origin, never stepped back or forth with the
  // wall clock: for timers (a backoff must not stretch when the clock is
  // set). It advances with Now() except when the wall clock is set.
  virtual absl::Duration MonotonicNow() = 0;

  // Writes one line. Never pass a secret (API key, admin token).
  virtual void Log(LogLevel level, absl::string_view message) = 0;

  // Hears of the jumps of a clock moved by hand (a test's). The real clock
  // moves by itself and calls no watcher.
  class ClockWatcher {
   public:
    virtual ~ClockWatcher() = default;
    // Runs on the thread that moved the clock, after the move; may block
    // until the watcher has caught up with the new time (an event loop has
    // run the timers now due).
    virtual void ClockAdvanced() = 0;
  };
  // `watcher` is called on every jump until removed. RemoveClockWatcher
  // returns once no call to it is in progress.
  virtual void AddClockWatcher(ClockWatcher* /*watcher*/) {}
  virtual void RemoveClockWatcher(ClockWatcher* /*watcher*/) {}

  // The real machine: absl::Now(), std::chrono::steady_clock, and one line
  // per message to stderr, UTC time and level first, or one JSON object per
  // line (base/log.h: COACH_LOG_FORMAT=json). Lives forever.
  static Env& Default();
};

}  // namespace coach

#endif  // COACH_BASE_ENV_H_
