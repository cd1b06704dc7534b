#include "storage/sqlite_schema.h"

#include <SQLiteCpp/SQLiteCpp.h>

#include <array>
#include "absl/strings/string_view.h"

#include "absl/strings/str_cat.h"

namespace coach {
namespace {

// Times are UTC microseconds since the Unix epoch. Lists are served by an
// index each: a user's sessions by updated_at, a session's messages by seq
// (insertion order, which is time order).
constexpr std::array<absl::string_view, 7> kMigrations = {
    // 1: users, sessions, messages, credit reservations.
    R"sql(
CREATE TABLE users (
  id            TEXT PRIMARY KEY,
  plan          TEXT NOT NULL CHECK (plan IN ('FREE', 'BASIC', 'PREMIUM')),
  status        TEXT NOT NULL CHECK (status IN ('ACTIVE')),
  credits       INTEGER NOT NULL CHECK (credits >= 0),
  credit_period TEXT NOT NULL,
  created_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE sessions (
  id            TEXT PRIMARY KEY,
  user_id       TEXT NOT NULL REFERENCES users (id),
  title         TEXT NOT NULL,
  last_message  TEXT NOT NULL DEFAULT '',
  message_count INTEGER NOT NULL DEFAULT 0 CHECK (message_count >= 0),
  created_at    INTEGER NOT NULL,
  updated_at    INTEGER NOT NULL
) STRICT;
-- Scanned backwards for "newest first"; rowid breaks ties.
CREATE INDEX sessions_by_user_updated ON sessions (user_id, updated_at);

CREATE TABLE messages (
  seq        INTEGER PRIMARY KEY,
  id         TEXT NOT NULL UNIQUE,
  session_id TEXT NOT NULL REFERENCES sessions (id),
  role       TEXT NOT NULL CHECK (role IN ('USER', 'ASSISTANT')),
  content    TEXT NOT NULL,
  created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX messages_by_session ON messages (session_id, seq);

-- A credit held by a send while the coach replies. Expired rows are ignored
-- (a crashed server cannot hold credits forever) and swept lazily.
CREATE TABLE credit_reservations (
  id         INTEGER PRIMARY KEY,
  user_id    TEXT NOT NULL REFERENCES users (id),
  expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX credit_reservations_by_user
  ON credit_reservations (user_id, expires_at);
)sql",
    // 2: the model and token usage of assistant replies (NULL when the
    // coach reports none, as the offline coach).
    R"sql(
ALTER TABLE messages ADD COLUMN model TEXT;
ALTER TABLE messages ADD COLUMN prompt_tokens INTEGER;
ALTER TABLE messages ADD COLUMN completion_tokens INTEGER;
)sql",
    // 3: the server run a hold belongs to, so that a restarted server drops
    // the holds its previous run left (Store::BeginRun). Older holds belong
    // to instance '' and expire.
    R"sql(
ALTER TABLE credit_reservations ADD COLUMN instance TEXT NOT NULL DEFAULT '';
ALTER TABLE credit_reservations ADD COLUMN run TEXT NOT NULL DEFAULT '';
CREATE INDEX credit_reservations_by_run ON credit_reservations (instance, run);
)sql",
    // 4: idempotency keys (Store::ClaimIdempotencyKey), unique per user: a
    // send's key and the response replayed to its retries. `claim` is the
    // random id of the send running it, NULL once its response is stored;
    // an unfinished claim belongs to a server run, as a credit hold, and
    // frees the key at claim_expires_at. Purged by expires_at.
    R"sql(
CREATE TABLE idempotency_keys (
  user_id           TEXT NOT NULL,
  idempotency_key   TEXT NOT NULL,
  request_hash      TEXT NOT NULL,
  claim             TEXT,
  instance          TEXT NOT NULL DEFAULT '',
  run               TEXT NOT NULL DEFAULT '',
  claim_expires_at  INTEGER NOT NULL,
  expires_at        INTEGER NOT NULL,
  response          TEXT,
  remaining_credits INTEGER,
  PRIMARY KEY (user_id, idempotency_key),
  CHECK ((claim IS NULL) = (response IS NOT NULL))
) STRICT;
CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);
CREATE INDEX idempotency_keys_by_run ON idempotency_keys (instance, run)
  WHERE claim IS NOT NULL;
)sql",
    // 5: the per-user rate limits' state (RateState: GCRA's theoretical
    // arrival time of each limit), on the user's row, so that every server
    // sharing the database applies one limit; 0 (the epoch) is unused.
    R"sql(
ALTER TABLE users ADD COLUMN send_rate_tat INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN session_rate_tat INTEGER NOT NULL DEFAULT 0;
)sql",
    // 6: the usage ledger (Store::GetUsage): per user, month and model,
    // counted by the exchange's commit, kept when conversations are deleted
    // (no content in it). Keyed for a month's export by user; an index per
    // user for one user's months. Sessions by last update, for the
    // retention purge (Store::PurgeSessions).
    R"sql(
CREATE TABLE usage (
  month             TEXT NOT NULL,
  user_id           TEXT NOT NULL,
  model             TEXT NOT NULL,
  replies           INTEGER NOT NULL,
  credits_charged   INTEGER NOT NULL,
  prompt_tokens     INTEGER NOT NULL,
  completion_tokens INTEGER NOT NULL,
  PRIMARY KEY (month, user_id, model)
) STRICT, WITHOUT ROWID;
CREATE INDEX usage_by_user ON usage (user_id, month);
CREATE INDEX sessions_by_updated ON sessions (updated_at);
)sql",
    // 7: a hold's id is never reused. As a plain rowid, the highest id
    // deleted (an expired hold swept by an admission) went to the next hold
    // inserted, and the late release of the expired one (DELETE ... WHERE
    // id = ?) removed the new send's live hold. AUTOINCREMENT ids only grow
    // (PostgreSQL's identity column already did). The table is rebuilt, its
    // rows and their ids kept.
    R"sql(
CREATE TABLE credit_reservations_v7 (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id    TEXT NOT NULL REFERENCES users (id),
  expires_at INTEGER NOT NULL,
  instance   TEXT NOT NULL DEFAULT '',
  run        TEXT NOT NULL DEFAULT ''
) STRICT;
INSERT INTO credit_reservations_v7 (id, user_id, expires_at, instance, run)
  SELECT id, user_id, expires_at, instance, run FROM credit_reservations;
DROP TABLE credit_reservations;
ALTER TABLE credit_reservations_v7 RENAME TO credit_reservations;
CREATE INDEX credit_reservations_by_user
  ON credit_reservations (user_id, expires_at);
CREATE INDEX credit_reservations_by_run ON credit_reservations (instance, run);
)sql",
};

}  // namespace

int LatestSchemaVersion() { return static_cast<int>(kMigrations.size()); }

absl::Status MigrateSchema(SQLite::Database& db) {
  try {
    for (;;) {
      SQLite::Transaction txn(db, SQLite::TransactionBehavior::IMMEDIATE);
      const int version = db.execAndGet("PRAGMA user_version").getInt();
      if (version > LatestSchemaVersion()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "database schema version ", version, " is newer than this build's ",
            LatestSchemaVersion()));
      }
      if (version == LatestSchemaVersion()) return absl::OkStatus();
      db.exec(std::string(kMigrations[version]));
      // PRAGMA takes no bound parameters; the value is our own integer.
      db.exec(absl::StrCat("PRAGMA user_version = ", version + 1));
      txn.commit();
    }
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("schema migration failed: ", e.what()));
  }
}

}  // namespace coach
