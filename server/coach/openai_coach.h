// OpenAiCoach: replies from an OpenAI-compatible chat-completions API
// (POST {base_url}/chat/completions), over cpp-httplib's client with TLS and
// certificate verification through OpenSSL.
//
// Failures behave as the official SDKs: up to `max_retries` retries with
// backoff (retry_policy.h), all within `timeout`. When no reply can be had
// the result is UNAVAILABLE (or DEADLINE_EXCEEDED); an answer that makes no
// sense is INTERNAL; a reply stopped by the provider's content filter is
// CONTENT_FILTERED. The API key is sent, never logged.
#ifndef COACH_SERVER_COACH_OPENAI_COACH_H_
#define COACH_SERVER_COACH_OPENAI_COACH_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/coach/coach.h"
#include "server/core/config.h"

namespace httplib {
class Client;
}

namespace coach {

class OpenAiCoach final : public Coach {
 public:
  // INVALID_ARGUMENT if the key is empty or the base URL is not
  // http(s)://host[:port][/path].
  static absl::StatusOr<std::unique_ptr<OpenAiCoach>> Create(
      const OpenAiOptions& options);
  ~OpenAiCoach() override;

  absl::StatusOr<CoachReply> Reply(const CoachRequest& request) override;
  // Shuts the sockets of the requests in flight (httplib's stop()) and
  // wakes retries from their backoff.
  void CancelAll() override;

 private:
  OpenAiCoach(const OpenAiOptions& options, std::string origin,
              std::string path);

  // A keep-alive connection to the API: an idle one, or a new one.
  std::unique_ptr<httplib::Client> TakeClient();
  void ReturnClient(std::unique_ptr<httplib::Client> client);
  // The body of one chat-completions request.
  std::string RequestBody(const CoachRequest& request) const;
  // `text` with the API key blotted out, for logs.
  std::string Redacted(std::string text) const;

  const OpenAiOptions options_;
  const std::string origin_;  // "https://api.openai.com"
  const std::string path_;    // "/v1/chat/completions"

  absl::Mutex mu_;
  std::vector<std::unique_ptr<httplib::Client>> idle_ ABSL_GUARDED_BY(mu_);
  // Connections with a request in flight, so that CancelAll can cut them.
  absl::flat_hash_set<httplib::Client*> in_flight_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace coach

#endif  // COACH_SERVER_COACH_OPENAI_COACH_H_
