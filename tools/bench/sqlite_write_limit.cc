// sqlite-write-limit: the write path's ceiling. The SQL of one successful
// send (reserve a credit, then the exchange: new session, both messages,
// charge) done through SqliteStore in a plain loop, in one process, with no
// RPC, no HTTP and no coach. Prints sends/s.
#include <cstdio>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/ids.h"
#include "server/app/server_config.h"
#include "server/app/storage_setup.h"
#include "server/core/credits.h"
#include "storage/sqlite_store.h"
#include "tools/bench/bench_store.h"

ABSL_FLAG(std::string, db_path, "/tmp/coach-write-limit.db", "SQLite file");
ABSL_FLAG(int, sends, 20000, "Sends to store");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const coach::Config config;
  auto store = coach::bench::OpenStore("sqlite-write-limit",
                                       absl::GetFlag(FLAGS_db_path), config,
                                       config.sqlite_reader_connections);
  if (store == nullptr) return 1;
  const coach::CreditPolicy credits(config.plans);
  const int sends = absl::GetFlag(FLAGS_sends);
  const absl::Time start = absl::Now();
  for (int i = 0; i < sends; ++i) {
    const absl::Time now = absl::Now();
    const coach::CreditTerms terms = credits.TermsAt(now);
    const std::string user = absl::StrCat("limit-", i);
    // Admitted as a send is (one transaction under the user's lock); the
    // domain's rules are left out: they cost no database work.
    auto admitted = store->AdmitSend(
        coach::SendAdmissionRequest{
            .user_id = user,
            .session_id = "",
            .terms = terms,
            .now = now,
            .expires_at = now + coach::HoldLifetime(config),
            .claim = std::nullopt},
        [](const coach::AdmissionState& state) {
          return coach::Admission{.rates = state.rates,
                                  .admitted = true,
                                  .key_response = std::nullopt};
        });
    if (!admitted.ok() || !admitted->reservation.has_value()) return 1;
    const std::optional<coach::CreditReservation>& reservation =
        admitted->reservation;
    coach::Exchange exchange;
    exchange.new_session =
        coach::SessionRecord{.id = coach::NewRandomId(),
                             .user_id = user,
                             .title = "Comment gagner en confiance ?",
                             .last_message = "",
                             .message_count = 0,
                             .created_at = now,
                             .updated_at = now};
    exchange.session_id = exchange.new_session->id;
    exchange.user_message =
        coach::MessageRecord{.id = coach::NewRandomId(),
                             .session_id = exchange.session_id,
                             .role = coach::Role::kUser,
                             .content = "Comment gagner en confiance ?",
                             .created_at = now,
                             .model = {},
                             .usage = std::nullopt};
    exchange.assistant_message = coach::MessageRecord{
        .id = coach::NewRandomId(),
        .session_id = exchange.session_id,
        .role = coach::Role::kAssistant,
        .content = std::string(600, 'x'),  // a reply's typical size
        .created_at = now,
        .model = {},
        .usage = std::nullopt};
    exchange.last_message = std::string(120, 'x');
    exchange.reservation = *reservation;
    exchange.terms = terms;
    exchange.now = now;
    if (!store->CommitExchange(exchange).ok()) return 1;
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::printf("sqlite-write-limit sends=%d seconds=%.2f sends/s=%.0f\n", sends,
              seconds, sends / seconds);
  return 0;
}
