#include "base/process.h"

#include <sys/resource.h>

#include "absl/synchronization/mutex.h"
#include "base/log.h"

namespace coach {

sigset_t PrepareProcess() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  if (rlimit files; getrlimit(RLIMIT_NOFILE, &files) == 0 &&
                    files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  return signals;
}

void LogReload(const absl::StatusOr<std::string>& reloaded,
               absl::string_view nothing) {
  if (!reloaded.ok()) {
    LogError("SIGHUP: %s", reloaded.status().message());
  } else if (reloaded->empty()) {
    LogInfo(
        "SIGHUP: %s; settings are read at start only (restart to change "
        "them)",
        nothing);
  } else {
    LogInfo(
        "SIGHUP: re-read %s; settings are read at start only (restart to "
        "change them)",
        *reloaded);
  }
}

}  // namespace coach
