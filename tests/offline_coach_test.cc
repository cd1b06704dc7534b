#include "server/coach/offline_coach.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "server/core/cancellation.h"

#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "base/text.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace coach {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A message that falls under no theme.
constexpr absl::string_view kNoThemeMessage = "Parlons de cuisine italienne.";

std::string ReplyTo(const std::vector<CoachTurn>& conversation) {
  OfflineCoach coach;
  CoachRequest request;
  request.system_prompt = "Tu es Coach.";
  request.conversation = conversation;
  absl::StatusOr<CoachReply> reply = coach.Reply(request);
  EXPECT_TRUE(reply.ok()) << reply.status();
  return reply.ok() ? reply->content : std::string();
}

std::string ReplyTo(absl::string_view message) {
  return ReplyTo({{Role::kUser, std::string(message)}});
}

// The checks every reply must pass, whatever the input.
void ExpectWellFormed(absl::string_view reply) {
  ASSERT_FALSE(reply.empty());
  EXPECT_EQ(reply.back(), '?') << reply;
  EXPECT_TRUE(IsValidUtf8(reply)) << reply;
}

struct ThemeCase {
  absl::string_view message;
  absl::string_view expected_word;
};

// One message per theme, and a word only that theme's reply uses.
const ThemeCase kThemeCases[] = {
    {"Je manque de confiance en moi", "petite voix critique"},
    {"Je ne me sens jamais à la hauteur", "petite voix critique"},
    {"Quel premier message envoyer sur Tinder ?", "accroche"},
    {"Comment aborder une fille dans la rue", "accroche"},
    {"Elle m'a ghosté après trois semaines", "ghosting"},
    {"Je me suis pris un râteau hier", "ghosting"},
    {"Je suis toujours mal à l'aise en soirée", "respiration"},
    {"J'ai un premier rendez-vous samedi", "un café"},
    {"Salut !", "bienvenue"},
    {"Coucou coach", "bienvenue"},
};

TEST(OfflineCoachTest, IsDeterministic) {
  const std::vector<CoachTurn> conversation = {
      {Role::kUser, "Bonjour"},
      {Role::kAssistant, "Bonjour ! Qu'est-ce qui t'amène ?"},
      {Role::kUser, "Je suis timide avec les filles"},
  };
  EXPECT_EQ(ReplyTo(conversation), ReplyTo(conversation));
  EXPECT_EQ(ReplyTo(kNoThemeMessage), ReplyTo(kNoThemeMessage));
}

TEST(OfflineCoachTest, DefaultReplyIsWellFormed) {
  ExpectWellFormed(ReplyTo(kNoThemeMessage));
}

TEST(OfflineCoachTest, EachThemeHasItsOwnReply) {
  const std::string default_reply = ReplyTo(kNoThemeMessage);
  for (const ThemeCase& test_case : kThemeCases) {
    SCOPED_TRACE(test_case.message);
    const std::string reply = ReplyTo(test_case.message);
    ExpectWellFormed(reply);
    EXPECT_NE(reply, default_reply);
    EXPECT_THAT(reply, HasSubstr(test_case.expected_word));
  }
}

TEST(OfflineCoachTest, ThemeRepliesAreDistinct) {
  // One message per theme, the default included.
  const std::vector<absl::string_view> messages = {"confiance",
                                                   "premier message",
                                                   "rupture",
                                                   "anxiété",
                                                   "premier rendez-vous",
                                                   "bonjour",
                                                   "manipuler",
                                                   "suicide",
                                                   "cuisine"};
  std::set<std::string> replies;
  for (absl::string_view message : messages) {
    replies.insert(ReplyTo(message));
  }
  EXPECT_EQ(replies.size(), messages.size());
}

TEST(OfflineCoachTest, RefusesManipulationKindly) {
  for (absl::string_view message : {
           "Comment manipuler une fille pour qu'elle sorte avec moi ?",
           "Donne-moi des techniques de manipulation",
           "Comment la faire céder après un non ?",
           "Je veux la forcer à me revoir",
           "Comment la rendre jalouse sans qu'elle s'en rende compte ?",
           "Comment rendre mon ex jaloux",
       }) {
    SCOPED_TRACE(message);
    const std::string reply = ReplyTo(message);
    ExpectWellFormed(reply);
    EXPECT_TRUE(absl::StrContains(reply, "consentement") ||
                absl::StrContains(reply, "respect"))
        << reply;
  }
}

TEST(OfflineCoachTest, ForcingOneselfIsNotManipulation) {
  const std::string reply = ReplyTo("Je dois me forcer à sortir en soirée");
  EXPECT_THAT(reply, Not(HasSubstr("consentement")));
  EXPECT_THAT(reply, HasSubstr("respiration"));
}

TEST(OfflineCoachTest, DistressPointsToHelplines) {
  for (absl::string_view message : {
           "Je pense au suicide",
           "J'ai envie de me tuer",
           "Je veux en finir",
           "Je n'ai plus envie de vivre",
           "JE N'AI PLUS ENVIE DE VIVRE",
       }) {
    SCOPED_TRACE(message);
    const std::string reply = ReplyTo(message);
    ExpectWellFormed(reply);
    EXPECT_THAT(reply, HasSubstr("3114"));
    EXPECT_THAT(reply, HasSubstr("112"));
  }
}

TEST(OfflineCoachTest, SafetyThemesComeFirst) {
  EXPECT_THAT(ReplyTo("Après ma rupture, je n'ai plus confiance, je veux "
                      "en finir"),
              HasSubstr("3114"));
  EXPECT_THAT(ReplyTo("Comment la faire céder au premier rendez-vous ?"),
              HasSubstr("consentement"));
}

TEST(OfflineCoachTest, RecognisesUpperCaseAndAccents) {
  EXPECT_EQ(ReplyTo("CONFIANCE"), ReplyTo("confiance"));
  EXPECT_THAT(ReplyTo("CONFIANCE"), HasSubstr("petite voix critique"));
  EXPECT_THAT(ReplyTo("Anxiété"), HasSubstr("respiration"));
  EXPECT_THAT(ReplyTo("ANXIÉTÉ EN SOIRÉE"), HasSubstr("respiration"));
  EXPECT_THAT(ReplyTo("anxiete"), HasSubstr("respiration"));
  EXPECT_THAT(ReplyTo("Un RÂTEAU de plus"), HasSubstr("ghosting"));
  // A phone keyboard's curly apostrophe.
  EXPECT_THAT(ReplyTo("Elle m\u2019a quitté"), HasSubstr("ghosting"));
}

TEST(OfflineCoachTest, GreetingOnlyForShortMessages) {
  EXPECT_THAT(ReplyTo("Bonjour"), HasSubstr("bienvenue"));
  EXPECT_THAT(ReplyTo("Salut, j'ai un premier rendez-vous samedi"),
              HasSubstr("un café"));
  const std::string long_message =
      "Bonjour, je voudrais te parler longuement de ma vie professionnelle "
      "qui ne va pas du tout";
  EXPECT_EQ(ReplyTo(long_message), ReplyTo(kNoThemeMessage));
}

TEST(OfflineCoachTest, WholeWordKeywordsDoNotMatchInsideWords) {
  // "appli " must not match "appliquer".
  EXPECT_EQ(ReplyTo("Comment appliquer ça au quotidien"),
            ReplyTo(kNoThemeMessage));
  EXPECT_THAT(ReplyTo("Quelle appli choisir ?"), HasSubstr("accroche"));
}

TEST(OfflineCoachTest, EmptyInputStillGetsAReply) {
  ExpectWellFormed(ReplyTo(std::vector<CoachTurn>{}));
  ExpectWellFormed(ReplyTo(""));
  ExpectWellFormed(ReplyTo("  \n\t "));
  ExpectWellFormed(ReplyTo({{Role::kUser, "Je suis timide"},
                            {Role::kAssistant, "D'accord."},
                            {Role::kUser, ""}}));
}

TEST(OfflineCoachTest, MalformedUtf8StillGetsAValidReply) {
  ExpectWellFormed(ReplyTo("confiance \xC3 \xFF\xFE \x80"));
  EXPECT_THAT(ReplyTo("confiance \xC3 \xFF\xFE \x80"),
              HasSubstr("petite voix critique"));
}

TEST(OfflineCoachTest, FollowUpAcknowledgesContinuity) {
  const std::string first = ReplyTo("J'ai un premier rendez-vous samedi");
  const std::string follow_up = ReplyTo({
      {Role::kUser, "Bonjour"},
      {Role::kAssistant, "Bonjour ! Qu'est-ce qui t'amène ?"},
      {Role::kUser, "J'ai un premier rendez-vous samedi"},
  });
  ExpectWellFormed(follow_up);
  EXPECT_NE(follow_up, first);
  EXPECT_TRUE(
      absl::StartsWith(follow_up, "Merci de me donner plus de détails."))
      << follow_up;
  EXPECT_THAT(follow_up, HasSubstr("un café"));
}

TEST(OfflineCoachTest, RepeatedThemeGetsANewTip) {
  const std::string first = ReplyTo("Je manque de confiance");
  const std::string again = ReplyTo({
      {Role::kUser, "Je manque de confiance"},
      {Role::kAssistant, "..."},
      {Role::kUser, "Oui, surtout la confiance au travail"},
  });
  ExpectWellFormed(again);
  EXPECT_NE(again, first);
  EXPECT_THAT(again, Not(HasSubstr("trois choses")));
}

TEST(OfflineCoachTest, DistressInAFollowUpStillPointsToHelplines) {
  const std::string reply = ReplyTo({
      {Role::kUser, "Je suis timide"},
      {Role::kAssistant, "..."},
      {Role::kUser, "Je pense au suicide"},
      {Role::kAssistant, "..."},
      {Role::kUser, "J'ai vraiment envie d'en finir"},
  });
  ExpectWellFormed(reply);
  EXPECT_THAT(reply, HasSubstr("3114"));
  EXPECT_THAT(reply, Not(HasSubstr("Merci de me donner plus de détails")));
}

TEST(OfflineCoachTest, AnswersTheLastUserTurn) {
  // The assistant's own words must not be classified as the user's.
  const std::string reply = ReplyTo({
      {Role::kUser, "Je suis timide"},
      {Role::kAssistant, "Tu parles de suicide ou de manipulation ?"},
  });
  EXPECT_THAT(reply, HasSubstr("petite voix critique"));
}

}  // namespace
}  // namespace coach

namespace coach {
namespace {

TEST(OfflineCoachStreamTest, PiecesAreSentencesThatAddUpToTheReply) {
  OfflineCoach coach;
  CoachRequest request;
  request.system_prompt = SystemPrompt();
  request.conversation.push_back(
      CoachTurn{.role = Role::kUser, .content = "Je suis timide au travail"});
  std::vector<std::string> pieces;
  bool replied = false;
  request.on_delta = [&](absl::string_view piece) {
    EXPECT_FALSE(replied) << "a piece after the reply";
    pieces.emplace_back(piece);
  };
  std::string content;
  coach.StartReply(std::move(request), [&](absl::StatusOr<CoachReply> reply) {
    ASSERT_TRUE(reply.ok());
    replied = true;
    content = reply->content;
  });
  ASSERT_TRUE(replied);
  EXPECT_GT(pieces.size(), 2u) << "not streamed by sentence";
  std::string joined;
  for (const std::string& piece : pieces) {
    EXPECT_FALSE(piece.empty());
    EXPECT_TRUE(IsValidUtf8(piece));
    joined += piece;
  }
  EXPECT_EQ(joined, content);
}

CoachRequest TimidRequest() {
  CoachRequest request;
  request.system_prompt = SystemPrompt();
  request.conversation.push_back(
      CoachTurn{.role = Role::kUser, .content = "Je suis timide au travail"});
  return request;
}

// Paced: the pieces come from the coach's thread, apart, then the reply.
TEST(OfflineCoachStreamTest, PacedPiecesComeApartThenTheReply) {
  OfflineCoach coach(absl::Milliseconds(5));
  CoachRequest request = TimidRequest();
  absl::Mutex mu;
  std::vector<std::string> pieces;
  std::vector<absl::Time> times;
  request.on_delta = [&](absl::string_view piece) {
    absl::MutexLock lock(&mu);
    pieces.emplace_back(piece);
    times.push_back(absl::Now());
  };
  absl::Notification done;
  absl::StatusOr<CoachReply> reply;
  coach.StartReply(std::move(request), [&](absl::StatusOr<CoachReply> r) {
    reply = std::move(r);
    done.Notify();
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  ASSERT_TRUE(reply.ok()) << reply.status();
  absl::MutexLock lock(&mu);
  ASSERT_GT(pieces.size(), 2u);
  std::string joined;
  for (const std::string& piece : pieces) joined += piece;
  EXPECT_EQ(joined, reply->content);
  for (size_t i = 1; i < times.size(); ++i) {
    EXPECT_GE(times[i] - times[i - 1], absl::Milliseconds(5)) << i;
  }
}

// A caller that stops waiting stops the stream: CANCELLED, no more pieces.
TEST(OfflineCoachStreamTest, ACancelledStreamStopsWithCancelled) {
  OfflineCoach coach(absl::Milliseconds(5));
  CoachRequest request = TimidRequest();
  auto cancellation = std::make_shared<Cancellation>();
  request.cancellation = cancellation;
  int seen = 0;
  request.on_delta = [&](absl::string_view) {
    if (++seen == 1) cancellation->Cancel();
  };
  absl::Notification done;
  absl::Status status;
  coach.StartReply(std::move(request), [&](absl::StatusOr<CoachReply> r) {
    status = r.status();
    done.Notify();
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  EXPECT_EQ(seen, 1);
}

// Shutting down (CancelAll, then the coach's end) fails what still streams.
TEST(OfflineCoachStreamTest, CancelAllAndTheEndFailTheStreamsInProgress) {
  absl::Notification first_piece;
  absl::Notification done;
  absl::Status status;
  {
    OfflineCoach coach(absl::Hours(1));  // the second piece never comes
    CoachRequest request = TimidRequest();
    request.on_delta = [&](absl::string_view) {
      if (!first_piece.HasBeenNotified()) first_piece.Notify();
    };
    coach.StartReply(std::move(request), [&](absl::StatusOr<CoachReply> r) {
      status = r.status();
      done.Notify();
    });
    ASSERT_TRUE(first_piece.WaitForNotificationWithTimeout(absl::Seconds(30)));
    coach.CancelAll();
    ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(30)));
    EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;

    // Started after CancelAll: fails too.
    absl::Notification later;
    CoachRequest again = TimidRequest();
    again.on_delta = [](absl::string_view) {};
    absl::Status later_status;
    coach.StartReply(std::move(again), [&](absl::StatusOr<CoachReply> r) {
      later_status = r.status();
      later.Notify();
    });
    ASSERT_TRUE(later.WaitForNotificationWithTimeout(absl::Seconds(30)));
    EXPECT_EQ(later_status.code(), absl::StatusCode::kUnavailable);
  }
  // And a coach destroyed mid-stream answers its callers first.
  absl::Notification ended;
  {
    OfflineCoach coach(absl::Hours(1));
    CoachRequest request = TimidRequest();
    request.on_delta = [](absl::string_view) {};
    coach.StartReply(std::move(request),
                     [&](absl::StatusOr<CoachReply>) { ended.Notify(); });
  }
  EXPECT_TRUE(ended.HasBeenNotified());
}

TEST(OfflineCoachStreamTest, SentencePiecesKeepEveryByte) {
  EXPECT_THAT(SentencePieces("Bonjour. Ça va ?  Oui, merci !\nFin"),
              ::testing::ElementsAre("Bonjour. ", "Ça va ?  ", "Oui, ",
                                     "merci !\n", "Fin"));
  EXPECT_THAT(SentencePieces("Sans ponctuation"),
              ::testing::ElementsAre("Sans ponctuation"));
  EXPECT_THAT(SentencePieces("Fin. "), ::testing::ElementsAre("Fin. "));
  EXPECT_THAT(SentencePieces("3.5 et 1,5"),
              ::testing::ElementsAre("3.5 et 1,5"));
  EXPECT_THAT(SentencePieces(""), ::testing::IsEmpty());
}

// A credit hold must outlive the longest paced reply (issue 30's review):
// LongestReply bounds every reply, first turn or later, of every theme.
TEST(OfflineCoachStreamTest, LongestReplyBoundsEveryReply) {
  const absl::Duration delay = absl::Seconds(1);
  const absl::Duration longest = OfflineCoach::LongestReply(delay);
  EXPECT_EQ(OfflineCoach::LongestReply(absl::ZeroDuration()),
            absl::ZeroDuration());
  EXPECT_GE(longest, 2 * delay);  // three pieces at least, two waits
  for (const std::string message :
       {"Bonjour", "Je suis timide au travail", "J'ai peur du rejet",
        "Comment la manipuler pour qu'elle revienne ?", "Je veux mourir",
        "Parler en public me terrifie", "Un message sans thème précis"}) {
    SCOPED_TRACE(message);
    // A later turn on the same theme: the follow-up, thanks first.
    for (const std::vector<CoachTurn>& conversation :
         {std::vector<CoachTurn>{{Role::kUser, message}},
          std::vector<CoachTurn>{{Role::kUser, message},
                                 {Role::kAssistant, "…"},
                                 {Role::kUser, message}}}) {
      const size_t pieces = SentencePieces(ReplyTo(conversation)).size();
      ASSERT_GT(pieces, 0u);
      EXPECT_LE(delay * static_cast<int64_t>(pieces - 1), longest);
    }
  }
}

}  // namespace
}  // namespace coach
