// Fitting a conversation into the AI's context budget: the system prompt and
// the new message always go; earlier turns are kept newest first while they
// fit, and the oldest are dropped. Token counts are estimated
// conservatively (over, never under), since a real tokenizer is not at hand.
#ifndef COACH_SERVER_COACH_CONTEXT_WINDOW_H_
#define COACH_SERVER_COACH_CONTEXT_WINDOW_H_

#include <vector>

#include "absl/strings/string_view.h"
#include "server/core/coach.h"

namespace coach {

// An upper bound of the tokens `text` takes as one chat message (content plus
// the message's framing).
int EstimateTokens(absl::string_view text);

// The turns of `request.conversation` to send: a suffix of it (oldest
// dropped) whose estimate, with the system prompt's, fits `budget`. The last
// turn (the new message) is always kept.
std::vector<CoachTurn> FitToBudget(const CoachRequest& request, int budget);

}  // namespace coach

#endif  // COACH_SERVER_COACH_CONTEXT_WINDOW_H_
