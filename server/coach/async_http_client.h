// AsyncHttpClient: HTTP(S) POSTs without a thread per request, on libcurl's
// multi interface. One event-loop thread drives every transfer and timer, so
// a thousand replies awaited from the AI cost a thousand sockets, not a
// thousand threads.
//
// Connections are kept alive and reused, multiplexed over HTTP/2 where an
// https server offers it; TLS certificates are verified against the system's
// CA store; redirects are not followed; only http and https are spoken; the
// proxy is the configured one, never one from the environment.
//
// Callbacks and tasks run on the loop thread: they must be quick (hand slow
// work to another thread), or every transfer waits for them.
//
// Time is the Env's: timers are due on its monotonic clock, and a request's
// deadline is read against its Now(). Under a clock moved by hand (a test's),
// the loop runs the timers due before the move returns. libcurl's own
// transfer timeouts (connect, whole transfer) run on real time, set from the
// Env's Now() when the transfer starts: a clock moved by hand does not cut a
// transfer already in flight.
#ifndef COACH_SERVER_COACH_ASYNC_HTTP_CLIENT_H_
#define COACH_SERVER_COACH_ASYNC_HTTP_CLIENT_H_

#include <curl/curl.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/env.h"

namespace coach {

struct HttpPost {
  std::string url;
  // "Name: value" lines. They may hold secrets: never logged.
  std::vector<std::string> headers;
  // Shared, not copied: a caller that may retry keeps the same bytes for
  // the next attempt while this one is sent (a stream's request lives as
  // long as its reply: one copy per stream, not two). Null: empty.
  std::shared_ptr<const std::string> body;
  // When the whole transfer must be over, from connecting to the last byte
  // of the answer: an answer trickled byte by byte is cut at it too.
  absl::Time deadline = absl::InfiniteFuture();
  absl::Duration connect_timeout = absl::Seconds(5);
  // Set: the body of a 2xx answer is given here as it arrives (on the loop
  // thread: quick, never blocking), not kept in HttpAnswer::body nor counted
  // against max_answer_bytes (the reader bounds what it keeps); the body of
  // any other answer is kept as usual. A status that is not OK aborts the
  // transfer, and `done` gets that status.
  absl::AnyInvocable<absl::Status(absl::string_view)> on_body = nullptr;
};

struct HttpAnswer {
  int status = 0;
  std::string body;
  // Names in lower case; a repeated header keeps its last value.
  absl::flat_hash_map<std::string, std::string> headers;

  // The value of `name` (lower case), or "".
  std::string Header(absl::string_view name) const;
};

struct AsyncHttpOptions {
  // Idle keep-alive connections kept for reuse; 0: none (a connection per
  // request).
  int max_idle_connections = 16;
  // A larger answer is abandoned (RESOURCE_EXHAUSTED) rather than buffered.
  size_t max_answer_bytes = 1 << 20;
  // "http://host:port" to go through a proxy; empty: connect directly, even
  // if http_proxy/HTTPS_PROXY are set (requests carry credentials: they go
  // through a proxy only when told to).
  std::string proxy;
};

class AsyncHttpClient final : private Env::ClockWatcher {
 public:
  // Runs exactly once, on the loop thread.
  using AnswerCallback = absl::AnyInvocable<void(absl::StatusOr<HttpAnswer>)>;
  using Task = absl::AnyInvocable<void()>;
  // Names a transfer or a task, for Cancel. Never reused.
  using Id = uint64_t;

  // Starts the loop thread. INTERNAL if libcurl cannot be set up. `env`
  // must outlive the client.
  static absl::StatusOr<std::unique_ptr<AsyncHttpClient>> Create(
      const AsyncHttpOptions& options, Env& env = Env::Default());
  // CancelAll, then waits for the loop to deliver every callback (including
  // those of work that callbacks add meanwhile) and end.
  ~AsyncHttpClient() override;

  AsyncHttpClient(const AsyncHttpClient&) = delete;
  AsyncHttpClient& operator=(const AsyncHttpClient&) = delete;

  // Sends `post`; `done` gets the answer, whatever its status code, or why
  // there is none: DEADLINE_EXCEEDED (post.deadline passed),
  // FAILED_PRECONDITION (the server's TLS certificate was refused),
  // RESOURCE_EXHAUSTED (answer over max_answer_bytes), CANCELLED (Cancel,
  // CancelAll), UNAVAILABLE (any other transport failure: refused, reset,
  // DNS...). Thread-safe.
  Id Post(HttpPost post, AnswerCallback done);

  // Runs `task` on the loop thread once `delay` has passed on the Env's
  // monotonic clock; at once once cancelled.
  Id RunAfter(absl::Duration delay, Task task);

  // Ends one transfer now (its callback gets CANCELLED), or runs one waiting
  // task now. No effect on what is already over. Thread-safe.
  void Cancel(Id id);

  // Cancels every transfer and task, and every later one. Thread-safe;
  // returns without waiting.
  void CancelAll();

 private:
  struct Transfer;
  struct TimedTask {
    Id id;
    Task task;
  };

  // What one round of the loop takes under mu_.
  struct Round;

  AsyncHttpClient(const AsyncHttpOptions& options, Env& env, CURLM* multi);
  void Loop();
  // Loop thread: takes, under mu_, the transfers posted, the cancels, and
  // the tasks due now or cancelled (removed from tasks_).
  Round TakeRound() ABSL_LOCKS_EXCLUDED(mu_);
  // Loop thread, outside mu_: starts the round's transfers (or fails them
  // once cancelled), ends the cancelled ones, runs the tasks taken.
  void RunRound(Round& round) ABSL_LOCKS_EXCLUDED(mu_);
  // Loop thread: sleeps until curl or `next_task` needs the loop, or Wake.
  void WaitForWork(std::optional<absl::Duration> next_task);
  // Env::ClockWatcher: wakes the loop and waits until it has run the tasks
  // due at the clock's new time.
  void ClockAdvanced() override;
  // Adds `transfer` to the multi handle, or fails it.
  void Start(std::unique_ptr<Transfer> transfer);
  // Removes a finished transfer and delivers its outcome (`code` is curl's).
  void Finish(CURL* easy, CURLcode code);
  void Wake();

  const AsyncHttpOptions options_;
  Env& env_;
  CURLM* const multi_;  // the loop thread's (Wake is thread-safe)

  absl::Mutex mu_;
  Id last_id_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::unique_ptr<Transfer>> incoming_ ABSL_GUARDED_BY(mu_);
  // By due time on env_.MonotonicNow().
  std::multimap<absl::Duration, TimedTask> tasks_ ABSL_GUARDED_BY(mu_);
  std::vector<Id> cancelled_ids_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Counts the clock's jumps; the loop records the last one whose due tasks
  // it has run (ClockAdvanced waits for it).
  uint64_t clock_jumps_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t jumps_caught_up_ ABSL_GUARDED_BY(mu_) = 0;

  // Loop thread only: the transfers curl is driving, by easy handle.
  absl::flat_hash_map<CURL*, std::unique_ptr<Transfer>> active_;
  std::thread loop_;
};

}  // namespace coach

#endif  // COACH_SERVER_COACH_ASYNC_HTTP_CLIENT_H_
