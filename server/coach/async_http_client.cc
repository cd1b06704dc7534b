#include "server/coach/async_http_client.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace coach {
namespace {

constexpr long kReceiveBufferBytes = 1024;  // curl's minimum

// curl_multi_poll needs a finite wait; new work and CancelAll wake the loop
// at once (curl_multi_wakeup), so this only bounds an idle loop's sleep.
constexpr int kIdleWaitMs = 1000;

// Rounded up: never early.
long CeilMilliseconds(absl::Duration d) {
  return static_cast<long>(
      absl::ToInt64Milliseconds(absl::Ceil(d, absl::Milliseconds(1))));
}

// For curl's timeouts: at least 1, as 0 means "no timeout" to it.
long Milliseconds(absl::Duration d) {
  return std::max<long>(1, CeilMilliseconds(d));
}

absl::Status TransportError(CURLcode code, const char* detail) {
  const std::string what = absl::StrCat(curl_easy_strerror(code),
                                        detail[0] != '\0' ? ": " : "", detail);
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT: return absl::DeadlineExceededError(what);
    // A certificate that fails verification will fail again.
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
      return absl::FailedPreconditionError(what);
    default: return absl::UnavailableError(what);
  }
}

}  // namespace

std::string HttpAnswer::Header(absl::string_view name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

// One POST in flight: what curl reads from and writes into.
struct AsyncHttpClient::Transfer {
  Id id = 0;
  HttpPost post;
  AnswerCallback done;
  size_t max_answer_bytes = 0;

  CURL* easy = nullptr;
  curl_slist* header_list = nullptr;
  HttpAnswer answer;
  // The status line's code, known before the body (answer.status is set
  // from curl at the end).
  int status_seen = 0;
  // Why post.on_body stopped the transfer.
  absl::Status body_error;
  bool too_large = false;
  char error[CURL_ERROR_SIZE] = {};

  ~Transfer() {
    if (easy != nullptr) curl_easy_cleanup(easy);
    curl_slist_free_all(header_list);
  }

  static size_t OnBody(char* data, size_t size, size_t count, void* self) {
    auto* t = static_cast<Transfer*>(self);
    const size_t n = size * count;
    if (t->post.on_body && t->status_seen >= 200 && t->status_seen < 300) {
      t->body_error = t->post.on_body(absl::string_view(data, n));
      return t->body_error.ok() ? n : 0;  // anything but n aborts
    }
    if (t->answer.body.size() + n > t->max_answer_bytes) {
      t->too_large = true;
      return 0;  // anything but n aborts the transfer
    }
    t->answer.body.append(data, n);
    return n;
  }

  static size_t OnHeader(char* data, size_t size, size_t count, void* self) {
    auto* t = static_cast<Transfer*>(self);
    const size_t n = size * count;
    const absl::string_view line(data, n);
    // A status line starts an answer (after an interim 1xx, the final one).
    if (absl::StartsWith(line, "HTTP/")) {
      t->answer.headers.clear();
      // "HTTP/1.1 200 OK", "HTTP/2 200"
      const size_t space = line.find(' ');
      int code = 0;
      if (space != absl::string_view::npos &&
          !absl::SimpleAtoi(line.substr(space + 1, 3), &code)) {
        code = 0;
      }
      t->status_seen = code;
      return n;
    }
    const size_t colon = line.find(':');
    if (colon != absl::string_view::npos) {
      t->answer.headers[absl::AsciiStrToLower(line.substr(0, colon))] =
          std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    }
    return n;
  }
};

absl::StatusOr<std::unique_ptr<AsyncHttpClient>> AsyncHttpClient::Create(
    const AsyncHttpOptions& options, Env& env) {
  // Once per process, before any other libcurl call (a static's
  // initialisation is thread-safe).
  static const CURLcode global_init = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (global_init != CURLE_OK) {
    return absl::InternalError(
        absl::StrCat("libcurl: ", curl_easy_strerror(global_init)));
  }
  CURLM* multi = curl_multi_init();
  if (multi == nullptr) return absl::InternalError("libcurl: no multi handle");
  // (0 would mean curl's default; see Start for "keep none".)
  if (options.max_idle_connections > 0) {
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS,
                      static_cast<long>(options.max_idle_connections));
  }
  return std::unique_ptr<AsyncHttpClient>(
      new AsyncHttpClient(options, env, multi));
}

AsyncHttpClient::AsyncHttpClient(const AsyncHttpOptions& options, Env& env,
                                 CURLM* multi)
    : options_(options), env_(env), multi_(multi), loop_([this] { Loop(); }) {
  env_.AddClockWatcher(this);
}

AsyncHttpClient::~AsyncHttpClient() {
  // First: ClockAdvanced waits for the loop, which ends below.
  env_.RemoveClockWatcher(this);
  {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    stopping_ = true;
  }
  Wake();
  loop_.join();
  curl_multi_cleanup(multi_);
}

void AsyncHttpClient::Wake() { curl_multi_wakeup(multi_); }

void AsyncHttpClient::ClockAdvanced() {
  absl::MutexLock lock(&mu_);
  const uint64_t jump = ++clock_jumps_;
  Wake();
  const auto caught_up = [this, jump]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return jumps_caught_up_ >= jump;
  };
  mu_.Await(absl::Condition(&caught_up));
}

AsyncHttpClient::Id AsyncHttpClient::Post(HttpPost post, AnswerCallback done) {
  auto transfer = std::make_unique<Transfer>();
  transfer->post = std::move(post);
  transfer->done = std::move(done);
  transfer->max_answer_bytes = options_.max_answer_bytes;
  Id id = 0;
  {
    absl::MutexLock lock(&mu_);
    id = transfer->id = ++last_id_;
    incoming_.push_back(std::move(transfer));
  }
  Wake();
  return id;
}

AsyncHttpClient::Id AsyncHttpClient::RunAfter(absl::Duration delay, Task task) {
  // A monotonic clock: a step of the wall clock must not stretch a backoff.
  const absl::Duration due = env_.MonotonicNow() + delay;
  Id id = 0;
  {
    absl::MutexLock lock(&mu_);
    id = ++last_id_;
    tasks_.emplace(due, TimedTask{.id = id, .task = std::move(task)});
  }
  Wake();
  return id;
}

void AsyncHttpClient::Cancel(Id id) {
  {
    absl::MutexLock lock(&mu_);
    cancelled_ids_.push_back(id);
  }
  Wake();
}

void AsyncHttpClient::CancelAll() {
  {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
  }
  Wake();
}

void AsyncHttpClient::Start(std::unique_ptr<Transfer> t) {
  // Counted from now, when curl starts the clock, to the caller's deadline.
  const absl::Duration remaining = t->post.deadline - env_.Now();
  if (remaining <= absl::ZeroDuration()) {
    t->done(absl::DeadlineExceededError("deadline passed before sending"));
    return;
  }
  t->easy = curl_easy_init();
  if (t->easy == nullptr) {
    t->done(absl::UnavailableError("libcurl: cannot start a transfer"));
    return;
  }
  for (const std::string& header : t->post.headers) {
    t->header_list = curl_slist_append(t->header_list, header.c_str());
  }
  // No "Expect: 100-continue" round trip before a large body.
  t->header_list = curl_slist_append(t->header_list, "Expect:");

  CURL* easy = t->easy;
  curl_easy_setopt(easy, CURLOPT_URL, t->post.url.c_str());
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
  static const std::string kNoBody;
  const std::string& body = t->post.body ? *t->post.body : kNoBody;
  curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
                   static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, t->header_list);
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, Milliseconds(remaining));
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                   Milliseconds(std::min(t->post.connect_timeout, remaining)));
  // "" disables the proxy, including one from the environment.
  curl_easy_setopt(easy, CURLOPT_PROXY, options_.proxy.c_str());
  if (options_.max_idle_connections == 0) {
    curl_easy_setopt(easy, CURLOPT_FORBID_REUSE, 1L);
  }
  // Threads and signals do not mix: no SIGALRM for DNS timeouts.
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  // Small requests must not wait for Nagle (curl's default, stated).
  curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
  // Over TLS, wait to learn whether the server multiplexes (HTTP/2) rather
  // than open a connection per request. Plain http is HTTP/1.1 here: there
  // waiting would serialise requests behind the first answer.
  if (absl::StartsWithIgnoreCase(t->post.url, "https://")) {
    curl_easy_setopt(easy, CURLOPT_PIPEWAIT, 1L);
  }
  // curl's receive buffer (16 KiB by default, its smallest 1 KiB) is held
  // for the whole reply, and the pages a read touches stay resident: 10,000
  // streams on a slow AI held ~3 KB more each with 4 KiB (issue 30). A
  // streamed reply arrives in pieces of a few hundred bytes; a whole answer
  // (a few KiB) takes a few more reads.
  curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, kReceiveBufferBytes);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &Transfer::OnBody);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, t.get());
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &Transfer::OnHeader);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, t.get());
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, t->error);

  if (const CURLMcode added = curl_multi_add_handle(multi_, easy);
      added != CURLM_OK) {
    t->done(absl::UnavailableError(
        absl::StrCat("libcurl: ", curl_multi_strerror(added))));
    return;
  }
  active_.emplace(easy, std::move(t));
}

void AsyncHttpClient::Finish(CURL* easy, CURLcode code) {
  auto it = active_.find(easy);
  if (it == active_.end()) return;
  std::unique_ptr<Transfer> t = std::move(it->second);
  active_.erase(it);
  curl_multi_remove_handle(multi_, easy);

  if (code == CURLE_OK) {
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    t->answer.status = static_cast<int>(status);
    t->done(std::move(t->answer));
  } else if (!t->body_error.ok()) {
    t->done(std::move(t->body_error));
  } else if (t->too_large) {
    t->done(absl::ResourceExhaustedError(
        absl::StrCat("answer larger than ", t->max_answer_bytes, " bytes")));
  } else {
    t->done(TransportError(code, t->error));
  }
}

// What one round of the loop takes from the threads that post, cancel and
// time tasks.
struct AsyncHttpClient::Round {
  std::vector<std::unique_ptr<Transfer>> starting;
  std::vector<Id> to_cancel;
  std::vector<Task> due;
  bool cancelled = false;
  std::optional<absl::Duration> next_task;
  uint64_t clock_jumps = 0;
};

AsyncHttpClient::Round AsyncHttpClient::TakeRound() {
  Round round;
  absl::MutexLock lock(&mu_);
  round.starting.swap(incoming_);
  round.to_cancel.swap(cancelled_ids_);
  round.cancelled = cancelled_;
  // Read before the clock: the time read below is at least that jump's.
  round.clock_jumps = clock_jumps_;
  const absl::Duration now = env_.MonotonicNow();
  // Due tasks, and the cancelled ones (few wait at a time: a scan).
  for (auto it = tasks_.begin(); it != tasks_.end();) {
    const bool cancel = round.cancelled || it->first <= now ||
                        absl::c_linear_search(round.to_cancel, it->second.id);
    if (cancel) {
      round.due.push_back(std::move(it->second.task));
      it = tasks_.erase(it);
    } else {
      ++it;
    }
  }
  if (!tasks_.empty()) round.next_task = tasks_.begin()->first;
  return round;
}

void AsyncHttpClient::RunRound(Round& round) {
  for (std::unique_ptr<Transfer>& t : round.starting) {
    if (round.cancelled) {
      t->done(absl::CancelledError("cancelled"));
    } else {
      Start(std::move(t));
    }
  }
  // Cancelled transfers (rare: a scan of those in flight).
  std::vector<CURL*> aborting;
  for (const auto& [easy, t] : active_) {
    if (round.cancelled || absl::c_linear_search(round.to_cancel, t->id)) {
      aborting.push_back(easy);
    }
  }
  for (CURL* easy : aborting) {
    auto node = active_.extract(easy);
    curl_multi_remove_handle(multi_, easy);
    node.mapped()->done(absl::CancelledError("cancelled"));
  }
  for (Task& task : round.due) task();
}

void AsyncHttpClient::WaitForWork(std::optional<absl::Duration> next_task) {
  long wait_ms = kIdleWaitMs;
  long curl_wants_ms = -1;
  curl_multi_timeout(multi_, &curl_wants_ms);
  if (curl_wants_ms >= 0) wait_ms = std::min(wait_ms, curl_wants_ms);
  if (next_task.has_value()) {
    // In real time; under a clock moved by hand, ClockAdvanced wakes the
    // loop sooner.
    wait_ms = std::min(
        wait_ms,
        std::max(0L, CeilMilliseconds(*next_task - env_.MonotonicNow())));
  }
  curl_multi_poll(multi_, nullptr, 0, static_cast<int>(wait_ms), nullptr);
}

void AsyncHttpClient::Loop() {
  for (;;) {
    Round round = TakeRound();
    // Callbacks run outside the lock: they may Post, RunAfter and Cancel.
    RunRound(round);

    {
      absl::MutexLock lock(&mu_);
      jumps_caught_up_ = round.clock_jumps;
      if (stopping_ && incoming_.empty() && tasks_.empty() && active_.empty()) {
        return;
      }
    }

    int running = 0;
    curl_multi_perform(multi_, &running);
    int queued = 0;
    while (CURLMsg* message = curl_multi_info_read(multi_, &queued)) {
      if (message->msg == CURLMSG_DONE) {
        Finish(message->easy_handle, message->data.result);
      }
    }

    // Sleep until curl or the next task needs the loop, or Wake.
    WaitForWork(round.next_task);
  }
}

}  // namespace coach
