// What coach-server and coach-proxy do first in main, and how both report a
// SIGHUP: one place for the process's setup, so the two binaries behave
// alike under systemd (reload, stop, many connections).
//
// Thread-safety: PrepareProcess must run in main before any thread starts
// (threads inherit its signal mask); LogReload is thread-safe.
#ifndef COACH_BASE_PROCESS_H_
#define COACH_BASE_PROCESS_H_

#include <signal.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace coach {

// - absl::Mutex's deadlock detector off: Debian builds Abseil without
//   NDEBUG, which leaves it on, recording every lock (gRPC's too) in a
//   global graph; that check belongs to debug builds and tests.
// - SIGINT, SIGTERM and SIGHUP blocked in every thread, so that only the
//   thread that sigwait()s on the returned set receives them; blocked
//   first, so that a SIGHUP (systemctl reload) while the process starts
//   never takes its default action, which is to terminate it.
// - SIGPIPE ignored: a peer that disconnects mid-write must not kill the
//   process.
// - The open-file soft limit raised to the hard one: every connection and
//   stream is a descriptor (the soft limit is often 1,024).
sigset_t PrepareProcess();

// A SIGHUP's one log line: what `reloaded` says was re-read ("" when there
// was nothing to re-read: `nothing` says why), or its error; and that the
// settings are read at start only.
void LogReload(const absl::StatusOr<std::string>& reloaded,
               absl::string_view nothing);

}  // namespace coach

#endif  // COACH_BASE_PROCESS_H_
