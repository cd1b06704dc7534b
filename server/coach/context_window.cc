#include "server/coach/context_window.h"

namespace coach {
namespace {

// BPE tokenizers average about 4 bytes of English or 3 of French per token;
// counting one token per 2 bytes stays above the real count even for
// accented text and emoji.
constexpr int kBytesPerTokenLowerBound = 2;
// Each chat message costs a few tokens of framing (role, separators).
constexpr int kTokensPerMessage = 4;

}  // namespace

int EstimateTokens(absl::string_view text) {
  return static_cast<int>((text.size() + kBytesPerTokenLowerBound - 1) /
                          kBytesPerTokenLowerBound) +
         kTokensPerMessage;
}

std::vector<CoachTurn> FitToBudget(const CoachRequest& request, int budget) {
  const std::vector<CoachTurn>& turns = request.conversation;
  if (turns.empty()) return {};
  int used = EstimateTokens(request.system_prompt) +
             EstimateTokens(turns.back().content);
  // Walk back from the newest earlier turn while it fits.
  size_t first = turns.size() - 1;
  while (first > 0) {
    const int cost = EstimateTokens(turns[first - 1].content);
    if (used + cost > budget) break;
    used += cost;
    --first;
  }
  return std::vector<CoachTurn>(turns.begin() + first, turns.end());
}

}  // namespace coach
