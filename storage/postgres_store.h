// PostgresStore: the Store on a PostgreSQL server, through libpq (Debian's
// libpq-dev), for several coach-servers sharing one database.
//
// A pool of `pool_size` connections, each used by one thread at a time; a
// call waits for an idle one. Every statement is prepared once per
// connection. Every write is one READ COMMITTED transaction that first locks
// the rows it decides on (the user row, `SELECT ... FOR UPDATE`, or the
// session row by updating it), so two servers deciding on the same user
// queue behind each other instead of both passing a check: a send's
// admission (live sends, credits minus live reservations, the rate state on
// the user's row) is decided under the user row's lock, the charge is a
// conditional UPDATE in the transaction that stores both messages. A
// transaction that fails with a serialization failure (40001) or a deadlock
// (40P01) is retried, `max_attempts` tries in all. A lost connection is
// UNAVAILABLE for that call and reconnected for the next.
//
// Times are stored as UTC microseconds (BIGINT) and lists ordered by an
// identity column, exactly as SqliteStore's rowid: the two engines answer
// the same (tests/store_test.cc runs one suite on both).
//
// The schema is migrated at Open under a transaction-scoped advisory lock
// (postgres_schema.h): replicas starting together migrate once.
#ifndef COACH_STORAGE_POSTGRES_STORE_H_
#define COACH_STORAGE_POSTGRES_STORE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "storage/store.h"

namespace coach {

struct PostgresOptions {
  // A libpq connection URI (postgresql://user:password@host:5432/db) or
  // key=value string. Holds a secret: never log it whole (MaskUrlPassword).
  std::string url;
  // Connections opened at start and shared by every call.
  int pool_size = 8;
  // Tries of a transaction that hits a serialization failure or deadlock.
  int max_attempts = 5;
};

class PostgresStore final : public Store {
 public:
  // Connects `pool_size` times and migrates the schema. UNAVAILABLE when
  // the server cannot be reached.
  static absl::StatusOr<std::unique_ptr<PostgresStore>> Open(
      const PostgresOptions& options);
  ~PostgresStore() override;

  absl::StatusOr<int> BeginRun(absl::string_view instance) override;
  absl::StatusOr<std::optional<UserRecord>> FindUser(
      absl::string_view user_id) override;
  absl::StatusOr<UserRecord> SetPlan(absl::string_view user_id, Plan plan,
                                     const CreditTerms& terms,
                                     absl::Time now) override;
  absl::StatusOr<UserRecord> AddCredits(absl::string_view user_id,
                                        int32_t credits, int32_t max_balance,
                                        const CreditTerms& terms,
                                        absl::Time now) override;
  absl::StatusOr<UserTotals> CountUserActivity(
      absl::string_view user_id) override;
  absl::StatusOr<UserActivity> FindUserActivity(
      absl::string_view user_id) override;
  absl::StatusOr<SendAdmissionResult> AdmitSend(
      const SendAdmissionRequest& request, AdmissionRule decide) override;
  absl::Status ReleaseCredit(const CreditReservation& reservation) override;
  absl::StatusOr<bool> CreateSession(const SessionRecord& session,
                                     const CreditTerms& terms, absl::Time now,
                                     AdmissionRule decide) override;
  absl::StatusOr<std::optional<SessionRecord>> FindSession(
      absl::string_view session_id) override;
  absl::StatusOr<std::vector<SessionRecord>> ListSessions(
      absl::string_view user_id, int limit) override;
  absl::StatusOr<std::vector<MessageRecord>> ListRecentMessages(
      absl::string_view session_id, int limit) override;
  absl::StatusOr<SessionPage> ListSessionsPage(
      absl::string_view user_id, const std::optional<SessionKey>& after,
      int page_size) override;
  absl::StatusOr<MessagePage> ListMessagesPage(absl::string_view session_id,
                                               std::optional<int64_t> after,
                                               int page_size) override;
  absl::StatusOr<SessionRecord> RenameSession(absl::string_view session_id,
                                              absl::string_view title,
                                              absl::Time now) override;
  absl::Status DeleteSession(absl::string_view session_id) override;
  absl::StatusOr<ExchangeResult> CommitExchange(
      const Exchange& exchange) override;
  absl::Status ReleaseIdempotencyKey(absl::string_view user_id,
                                     absl::string_view key,
                                     absl::string_view claim_id) override;
  absl::Status CompleteIdempotencyKey(absl::string_view user_id,
                                      absl::string_view key,
                                      absl::string_view claim_id,
                                      absl::string_view response) override;
  absl::StatusOr<int> PurgeIdempotencyKeys(absl::Time now, int limit) override;
  absl::StatusOr<UsageRecord> GetUsage(absl::string_view user_id,
                                       absl::string_view month) override;
  absl::StatusOr<std::vector<UsageRecord>> ListUserUsage(
      absl::string_view user_id) override;
  absl::StatusOr<UsagePage> ListUsage(absl::string_view month,
                                      const std::optional<std::string>& after,
                                      int page_size) override;
  absl::StatusOr<ErasedData> EraseUserData(absl::string_view user_id) override;
  absl::StatusOr<int> PurgeSessions(absl::Time cutoff, int limit) override;

  // Write transactions committed since Open: what a request costs the
  // database (a send is two). Thread-safe.
  int64_t write_transactions() const {
    return write_transactions_.load(std::memory_order_relaxed);
  }

  class Connection;  // A PGconn and the statements prepared on it.

 private:
  class Lease;
  explicit PostgresStore(int max_attempts);

  std::unique_ptr<Connection> Acquire();
  void Release(std::unique_ptr<Connection> connection);
  // One statement outside a transaction; a libpq error becomes a Status
  // naming `operation`.
  template <typename Body>
  auto Read(absl::string_view operation, Body&& body)
      -> decltype(body(std::declval<Connection&>()));
  // `body` in one transaction, committed only if it returns OK; retried
  // from the start on a serialization failure or a deadlock.
  template <typename Body>
  auto Write(absl::string_view operation, Body&& body)
      -> decltype(body(std::declval<Connection&>()));

  // The current run's owner.
  HoldOwner Owner();

  const int max_attempts_;
  std::atomic<int64_t> write_transactions_{0};

  absl::Mutex pool_mu_;
  std::vector<std::unique_ptr<Connection>> idle_ ABSL_GUARDED_BY(pool_mu_);

  absl::Mutex run_mu_;
  HoldOwner owner_ ABSL_GUARDED_BY(run_mu_);
};

}  // namespace coach

#endif  // COACH_STORAGE_POSTGRES_STORE_H_
