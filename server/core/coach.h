// Coach: the AI seam. Produces the assistant's reply from the system prompt
// and the conversation. Implementations: OfflineCoach (deterministic, no
// network), and an OpenAI chat-completions client.
//
// Contract: thread-safe; asynchronous only: StartReply never waits on I/O, it
// starts the reply and returns; the reply comes back through a callback. It
// may fail. A failure is a Status
// (UNAVAILABLE when no reply could be had — timeout, network, provider
// error; INTERNAL when the provider answered nonsense; or one of errors.h's
// reasoned errors, passed on to the user as is). No exception escapes.
//
// Streaming: a request may carry `on_delta`; a coach then reports the reply's
// text as it is written, piece by piece (the offline coach by sentence, the
// OpenAI coach by the provider's chunks). A coach that does not stream just
// never calls it (the domain then sends the whole reply as one piece).
#ifndef COACH_SERVER_CORE_COACH_H_
#define COACH_SERVER_CORE_COACH_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/core/cancellation.h"
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
  // Raised if the caller gives up sooner (null: never). A coach that waits
  // on I/O stops then, and fails with CANCELLED.
  std::shared_ptr<Cancellation> cancellation = nullptr;
  // Null: the caller wants the whole reply only. Set: called with each piece
  // of the reply's text as it is written, in order, each non-empty and valid
  // UTF-8. On success the pieces concatenated are a prefix of (normally
  // equal to) CoachReply::content: a coach that post-processes its text
  // (none does) must only ever append. Every call returns before `done`
  // runs. It may run on the coach's event loop: it must be quick and never
  // block (the domain only queues the piece). No call after a failure is
  // reported, but pieces already reported are not taken back: the caller
  // reports the failure after them.
  std::function<void(absl::string_view piece)> on_delta = nullptr;
};

struct CoachReply {
  std::string content;
  // Set by providers that report them (stored with the message).
  std::string model;
  std::optional<TokenUsage> usage;
};

class Coach {
 public:
  // Runs exactly once, with the reply or why there is none.
  using ReplyCallback = absl::AnyInvocable<void(absl::StatusOr<CoachReply>)>;

  virtual ~Coach() = default;

  // Starts writing the reply to `request` and returns without waiting for
  // it. `done` runs before StartReply returns if the coach needs no I/O,
  // otherwise later on a thread of the coach's own that may block briefly
  // (the domain stores the reply there): never on an event-loop thread.
  virtual void StartReply(CoachRequest request, ReplyCallback done) = 0;

  // Makes the replies in progress fail now, and every later one: the server
  // is shutting down and its grace period is over. Thread-safe.
  virtual void CancelAll() {}

  // StartReply, then waits for `done`: for tools and tests.
  absl::StatusOr<CoachReply> Reply(CoachRequest request);
};

// The coach's system prompt (French), compiled in from system_prompt.fr.txt.
absl::string_view SystemPrompt();

}  // namespace coach

#endif  // COACH_SERVER_CORE_COACH_H_
