#include "server/coach/async_http_client.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace coach {
namespace {

// curl_multi_poll needs a finite wait; new work and CancelAll wake the loop
// at once (curl_multi_wakeup), so this only bounds an idle loop's sleep.
constexpr int kIdleWaitMs = 1000;

long Milliseconds(absl::Duration d) {
  // 0 would mean "no timeout" to curl.
  return std::max<long>(1, static_cast<long>(absl::ToInt64Milliseconds(d)));
}

absl::Status TransportError(CURLcode code, const char* detail) {
  const std::string what = absl::StrCat(
      curl_easy_strerror(code), detail[0] != '\0' ? ": " : "", detail);
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
      return absl::DeadlineExceededError(what);
    // A certificate that fails verification will fail again.
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
      return absl::FailedPreconditionError(what);
    default:
      return absl::UnavailableError(what);
  }
}

}  // namespace

std::string HttpAnswer::Header(absl::string_view name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

// One POST in flight: what curl reads from and writes into.
struct AsyncHttpClient::Transfer {
  HttpPost post;
  AnswerCallback done;
  size_t max_answer_bytes = 0;

  CURL* easy = nullptr;
  curl_slist* header_list = nullptr;
  HttpAnswer answer;
  bool too_large = false;
  char error[CURL_ERROR_SIZE] = {};

  ~Transfer() {
    if (easy != nullptr) curl_easy_cleanup(easy);
    curl_slist_free_all(header_list);
  }

  static size_t OnBody(char* data, size_t size, size_t count, void* self) {
    auto* t = static_cast<Transfer*>(self);
    const size_t n = size * count;
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
    const AsyncHttpOptions& options) {
  // Once per process, before any other libcurl call (a static's
  // initialisation is thread-safe).
  static const CURLcode global_init = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (global_init != CURLE_OK) {
    return absl::InternalError(
        absl::StrCat("libcurl: ", curl_easy_strerror(global_init)));
  }
  CURLM* multi = curl_multi_init();
  if (multi == nullptr) return absl::InternalError("libcurl: no multi handle");
  curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS,
                    static_cast<long>(options.max_idle_connections));
  return std::unique_ptr<AsyncHttpClient>(new AsyncHttpClient(options, multi));
}

AsyncHttpClient::AsyncHttpClient(const AsyncHttpOptions& options, CURLM* multi)
    : options_(options), multi_(multi), loop_([this] { Loop(); }) {}

AsyncHttpClient::~AsyncHttpClient() {
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

void AsyncHttpClient::Post(HttpPost post, AnswerCallback done) {
  auto transfer = std::make_unique<Transfer>();
  transfer->post = std::move(post);
  transfer->done = std::move(done);
  transfer->max_answer_bytes = options_.max_answer_bytes;
  {
    absl::MutexLock lock(&mu_);
    incoming_.push_back(std::move(transfer));
  }
  Wake();
}

void AsyncHttpClient::RunAfter(absl::Duration delay, Task task) {
  {
    absl::MutexLock lock(&mu_);
    tasks_.emplace(absl::Now() + delay, std::move(task));
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
  curl_easy_setopt(easy, CURLOPT_POSTFIELDS, t->post.body.data());
  curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
                   static_cast<curl_off_t>(t->post.body.size()));
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, t->header_list);
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, Milliseconds(t->post.timeout));
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                   Milliseconds(t->post.connect_timeout));
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
  } else if (t->too_large) {
    t->done(absl::ResourceExhaustedError(absl::StrCat(
        "answer larger than ", t->max_answer_bytes, " bytes")));
  } else {
    t->done(TransportError(code, t->error));
  }
}

void AsyncHttpClient::Loop() {
  for (;;) {
    std::vector<std::unique_ptr<Transfer>> starting;
    std::vector<Task> due;
    bool cancelled = false;
    absl::Time next_task = absl::InfiniteFuture();
    {
      absl::MutexLock lock(&mu_);
      starting.swap(incoming_);
      cancelled = cancelled_;
      const absl::Time now = absl::Now();
      while (!tasks_.empty() &&
             (cancelled || tasks_.begin()->first <= now)) {
        due.push_back(std::move(tasks_.begin()->second));
        tasks_.erase(tasks_.begin());
      }
      if (!tasks_.empty()) next_task = tasks_.begin()->first;
    }

    // Callbacks run outside the lock: they may Post and RunAfter.
    if (cancelled) {
      auto aborted = std::move(active_);
      active_.clear();
      for (auto& [easy, t] : aborted) {
        curl_multi_remove_handle(multi_, easy);
        t->done(absl::CancelledError("cancelled"));
      }
    }
    for (std::unique_ptr<Transfer>& t : starting) {
      if (cancelled) {
        t->done(absl::CancelledError("cancelled"));
      } else {
        Start(std::move(t));
      }
    }
    for (Task& task : due) task();

    {
      absl::MutexLock lock(&mu_);
      if (stopping_ && incoming_.empty() && tasks_.empty() && active_.empty()) {
        return;
      }
      // Work that callbacks just added is taken on the next turn, at once.
      if (!incoming_.empty() || (cancelled_ && !tasks_.empty())) continue;
    }

    int running = 0;
    curl_multi_perform(multi_, &running);
    int queued = 0;
    while (CURLMsg* message = curl_multi_info_read(multi_, &queued)) {
      if (message->msg == CURLMSG_DONE) {
        Finish(message->easy_handle, message->data.result);
      }
    }

    long wait_ms = kIdleWaitMs;
    long curl_wants_ms = -1;
    curl_multi_timeout(multi_, &curl_wants_ms);
    if (curl_wants_ms >= 0) wait_ms = std::min(wait_ms, curl_wants_ms);
    if (next_task != absl::InfiniteFuture()) {
      const absl::Duration until = next_task - absl::Now();
      wait_ms = std::min<long>(
          wait_ms, std::max<long>(0, absl::ToInt64Milliseconds(
                                         absl::Ceil(until, absl::Milliseconds(1)))));
    }
    curl_multi_poll(multi_, nullptr, 0, static_cast<int>(wait_ms), nullptr);
  }
}

}  // namespace coach
