// SqliteStore: the embedded Store, one SQLite file through SQLiteCpp.
//
// WAL journal (readers never block the writer), a busy timeout for other
// processes on the same file, foreign keys on, BEGIN IMMEDIATE for every
// write transaction, prepared statements cached per connection.
// Writes share one connection behind a mutex: SQLite admits one writer at a
// time anyway, and waiting on a mutex is cheaper and fairer than SQLite's
// sleeping busy handler. Reads use a pool of connections in parallel.
#ifndef COACH_STORAGE_SQLITE_STORE_H_
#define COACH_STORAGE_SQLITE_STORE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "storage/store.h"

namespace coach {

struct SqliteOptions {
  std::string path;
  int busy_timeout_ms = 5000;
  int reader_connections = 4;
};

class SqliteStore final : public Store {
 public:
  // Opens (creating if needed) and migrates the database.
  static absl::StatusOr<std::unique_ptr<SqliteStore>> Open(
      const SqliteOptions& options);
  ~SqliteStore() override;

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

  class Connection;  // A database handle and its prepared statements.

 private:
  class ReaderLease;
  SqliteStore() = default;

  std::unique_ptr<Connection> AcquireReader();
  void ReleaseReader(std::unique_ptr<Connection> connection);
  // Every read: runs `body(reader)` on a pooled reader connection; a SQLite
  // exception becomes a Status naming `operation`.
  template <typename Body>
  auto Read(absl::string_view operation, Body&& body)
      -> decltype(body(std::declval<Connection&>()));
  // Every write: runs `body(writer)` under write_mu_ in one BEGIN IMMEDIATE
  // transaction, committed only if it returns OK; a SQLite exception
  // becomes a Status naming `operation`.
  template <typename Body>
  auto Write(absl::string_view operation, Body&& body)
      -> decltype(body(std::declval<Connection&>()));

  // After a delete of content: checkpoints the WAL and truncates it, so that
  // no page image of the deleted text is left in it (failures are logged).
  void Checkpoint();

  absl::Mutex write_mu_;
  std::unique_ptr<Connection> writer_ ABSL_GUARDED_BY(write_mu_);
  std::atomic<int64_t> write_transactions_{0};

  absl::Mutex readers_mu_;
  std::vector<std::unique_ptr<Connection>> idle_readers_
      ABSL_GUARDED_BY(readers_mu_);

  // The current run's owner.
  HoldOwner Owner();

  absl::Mutex run_mu_;
  HoldOwner owner_ ABSL_GUARDED_BY(run_mu_);
};

}  // namespace coach

#endif  // COACH_STORAGE_SQLITE_STORE_H_
