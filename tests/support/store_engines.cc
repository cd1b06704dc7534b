#include "tests/support/store_engines.h"

#include <SQLiteCpp/SQLiteCpp.h>
#include <libpq-fe.h>

#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "base/ids.h"
#include "storage/postgres_store.h"
#include "storage/sqlite_store.h"

namespace coach::testing {

std::string PostgresSkipMessage() {
  return "COACH_TEST_DATABASE_URL is not set: PostgreSQL tests skipped "
         "(tools/test.sh starts a PostgreSQL server and sets it)";
}

std::unique_ptr<TestDatabase> NewTestDatabase(Engine engine) {
  if (engine == Engine::kPostgres) return std::make_unique<PostgresDatabase>();
  return std::make_unique<SqliteDatabase>();
}

// --- SQLite
// ---------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<Store>> SqliteDatabase::Open(int connections) {
  auto store = SqliteStore::Open(
      SqliteOptions{.path = path_, .reader_connections = connections});
  if (!store.ok()) return store.status();
  return std::unique_ptr<Store>(*std::move(store));
}

int64_t SqliteDatabase::Scalar(const std::string& sql) {
  try {
    SQLite::Database db(path_, SQLite::OPEN_READONLY);
    return db.execAndGet(sql).getInt64();
  } catch (const std::exception&) {
    return -1;
  }
}

int64_t SqliteDatabase::SchemaObjects() {
  return Scalar("SELECT COUNT(*) FROM sqlite_schema");
}

int SqliteDatabase::SchemaVersion() {
  return static_cast<int>(Scalar("PRAGMA user_version"));
}

// --- PostgreSQL
// -----------------------------------------------------------------

PostgresDatabase::PostgresDatabase() {
  const char* base = std::getenv("COACH_TEST_DATABASE_URL");
  if (base == nullptr || *base == '\0') {
    skip_reason_ = PostgresSkipMessage();
    return;
  }
  base_url_ = base;
  // A schema of its own: tests running at once never see each other's rows,
  // and dropping it leaves the database as it was.
  schema_ = absl::StrCat("t_", NewRandomId());
  absl::StrReplaceAll({{"-", "_"}}, &schema_);
  url_ = absl::StrCat(base, absl::StrContains(base, "?") ? "&" : "?",
                      "options=-csearch_path%3D", schema_);
  PGconn* conn = PQconnectdb(url_.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    skip_reason_ = absl::StrCat("cannot connect to COACH_TEST_DATABASE_URL: ",
                                PQerrorMessage(conn));
    PQfinish(conn);
    return;
  }
  inspector_ = conn;
  if (!Exec(absl::StrCat("CREATE SCHEMA ", schema_))) {
    skip_reason_ = "cannot create a schema";
    PQfinish(inspector_);
    inspector_ = nullptr;
  }
}

PostgresDatabase::~PostgresDatabase() {
  if (inspector_ == nullptr) return;
  Exec(absl::StrCat("DROP SCHEMA ", schema_, " CASCADE"));
  PQfinish(inspector_);
}

bool PostgresDatabase::Exec(const std::string& sql) {
  PGresult* result = PQexec(inspector_, sql.c_str());
  const ExecStatusType status = PQresultStatus(result);
  PQclear(result);
  return status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK;
}

absl::StatusOr<std::unique_ptr<Store>> PostgresDatabase::Open(int connections) {
  auto store = PostgresStore::Open(
      PostgresOptions{.url = url_, .pool_size = connections});
  if (!store.ok()) return store.status();
  return std::unique_ptr<Store>(*std::move(store));
}

int64_t PostgresDatabase::Scalar(const std::string& sql) {
  PGresult* result = PQexec(inspector_, sql.c_str());
  int64_t value = -1;
  if (PQresultStatus(result) == PGRES_TUPLES_OK && PQntuples(result) > 0 &&
      !absl::SimpleAtoi(PQgetvalue(result, 0, 0), &value)) {
    value = -1;
  }
  PQclear(result);
  return value;
}

int64_t PostgresDatabase::SchemaObjects() {
  return Scalar(
      absl::StrCat("SELECT COUNT(*) FROM pg_class c JOIN pg_namespace n "
                   "ON n.oid = c.relnamespace WHERE n.nspname = '",
                   schema_, "'"));
}

int PostgresDatabase::SchemaVersion() {
  return static_cast<int>(Scalar("SELECT version FROM coach_schema"));
}

}  // namespace coach::testing
