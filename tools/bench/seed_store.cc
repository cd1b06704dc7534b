// seed-store: fills a coach database through the Store interface (the same
// SQL as the service) with `sessions` sessions of `messages_per_session`
// messages, spread over users of `sessions_per_user` sessions each, plus the
// user `reader` with `reader_sessions` sessions — the one the growth
// benchmark reads, so that only the size of everything else changes.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/ids.h"
#include "server/app/server_config.h"
#include "server/core/credits.h"
#include "storage/sqlite_store.h"
#include "tools/bench/bench_store.h"

ABSL_FLAG(std::string, db_path, "", "SQLite file to fill (created if missing)");
ABSL_FLAG(int, sessions, 10000, "Sessions of other users");
ABSL_FLAG(int, messages_per_session, 10, "Messages per session (even)");
ABSL_FLAG(int, sessions_per_user, 10, "Sessions per seeded user");
ABSL_FLAG(std::string, reader, "bench-reader", "The user the benchmark reads");
ABSL_FLAG(int, reader_sessions, 20, "The reader's sessions");

namespace {

// Stores one session of `messages` messages (pairs) for `user`.
absl::Status SeedSession(coach::Store& store, const std::string& user,
                         int messages, const coach::CreditTerms& terms,
                         absl::Time now) {
  const std::string session_id = coach::NewRandomId();
  for (int pair = 0; pair < messages / 2; ++pair) {
    coach::Exchange exchange;
    if (pair == 0) {
      exchange.new_session =
          coach::SessionRecord{.id = session_id,
                               .user_id = user,
                               .title = "Conversation de test",
                               .last_message = "",
                               .message_count = 0,
                               .created_at = now,
                               .updated_at = now};
    }
    exchange.session_id = session_id;
    exchange.user_message =
        coach::MessageRecord{.id = coach::NewRandomId(),
                             .session_id = session_id,
                             .role = coach::Role::kUser,
                             .content = "Comment puis-je gagner en confiance ?",
                             .created_at = now,
                             .model = {},
                             .usage = std::nullopt};
    exchange.assistant_message =
        coach::MessageRecord{.id = coach::NewRandomId(),
                             .session_id = session_id,
                             .role = coach::Role::kAssistant,
                             .content = std::string(400, 'x'),
                             .created_at = now,
                             .model = {},
                             .usage = std::nullopt};
    exchange.last_message = std::string(120, 'x');
    exchange.terms = terms;
    exchange.now = now;
    if (auto committed = store.CommitExchange(exchange); !committed.ok()) {
      return committed.status();
    }
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const coach::Config config;
  auto store = coach::bench::OpenStore("seed-store",
                                       absl::GetFlag(FLAGS_db_path), config,
                                       /*reader_connections=*/1);
  if (store == nullptr) return 1;
  const coach::CreditTerms terms =
      coach::CreditPolicy(config.plans).TermsAt(absl::Now());
  const int messages = absl::GetFlag(FLAGS_messages_per_session);
  const int per_user = absl::GetFlag(FLAGS_sessions_per_user);
  const int sessions = absl::GetFlag(FLAGS_sessions);
  const absl::Time start = absl::Now();
  for (int i = 0; i < sessions; ++i) {
    const std::string user = absl::StrCat("seed-", i / per_user);
    if (absl::Status s =
            SeedSession(*store, user, messages, terms, absl::Now());
        !s.ok()) {
      std::fprintf(stderr, "seed-store: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  for (int i = 0; i < absl::GetFlag(FLAGS_reader_sessions); ++i) {
    if (absl::Status s = SeedSession(*store, absl::GetFlag(FLAGS_reader),
                                     messages, terms, absl::Now());
        !s.ok()) {
      std::fprintf(stderr, "seed-store: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  std::printf("seed-store sessions=%d messages=%d seconds=%.1f\n", sessions,
              sessions * messages, absl::ToDoubleSeconds(absl::Now() - start));
  return 0;
}
