// Coach: the AI seam. Produces the assistant's reply from the system prompt
// and the conversation. Implementations: OfflineCoach (deterministic, no
// network), and an OpenAI chat-completions client.
//
// Contract: thread-safe; may be slow; may fail. A failure is a Status
// (UNAVAILABLE when no reply could be had — timeout, network, provider
// error; INTERNAL when the provider answered nonsense; or one of errors.h's
// reasoned errors, passed on to the user as is). No exception escapes.
#ifndef COACH_SERVER_COACH_COACH_H_
#define COACH_SERVER_COACH_COACH_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "storage/records.h"

namespace coach {

struct CoachTurn {
  Role role = Role::kUser;
  std::string content;
};

struct CoachRequest {
  absl::string_view system_prompt;
  // Oldest first; the last turn is the user's new message.
  std::vector<CoachTurn> conversation;
  // When the caller stops waiting: a reply after it is useless.
  absl::Time deadline = absl::InfiniteFuture();
};

struct CoachReply {
  std::string content;
  // Set by providers that report them (stored with the message).
  std::string model;
  std::optional<TokenUsage> usage;
};

class Coach {
 public:
  virtual ~Coach() = default;
  virtual absl::StatusOr<CoachReply> Reply(const CoachRequest& request) = 0;

  // False if Reply never waits on I/O (it may then run on a latency-critical
  // thread); true, the safe default, if it may take seconds.
  virtual bool MayBlock() const { return true; }

  // Makes the replies in progress fail now, and every later one: the server
  // is shutting down and its grace period is over. Thread-safe.
  virtual void CancelAll() {}
};

// The coach's system prompt (French), compiled in from system_prompt.fr.txt.
absl::string_view SystemPrompt();

}  // namespace coach

#endif  // COACH_SERVER_COACH_COACH_H_
