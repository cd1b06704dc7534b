// The two Store engines as tests use them: a fresh, empty database each,
// stores opened on it (as many as a test likes: several servers on one
// database), and a separate connection to inspect it as another process
// would.
//   SqliteDatabase: a file in a temporary directory.
//   PostgresDatabase: a schema of its own, named at random, in the database
//     of COACH_TEST_DATABASE_URL (tools/test.sh starts a server and sets
//     it), dropped afterwards. Unset: available() is false and the tests
//     skip with PostgresSkipMessage(); set but unusable: they fail
//     (COACH_USE_DATABASE_OR_SKIP).
#ifndef COACH_TESTS_SUPPORT_STORE_ENGINES_H_
#define COACH_TESTS_SUPPORT_STORE_ENGINES_H_

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "storage/store.h"
#include "tests/support/temp_dir.h"

typedef struct pg_conn PGconn;

namespace coach::testing {

enum class Engine { kSqlite, kPostgres };

// gtest prints a parameter with this (not as bytes).
inline void PrintTo(Engine engine, std::ostream* os) {
  *os << (engine == Engine::kSqlite ? "SQLite" : "PostgreSQL");
}

class TestDatabase {
 public:
  virtual ~TestDatabase() = default;
  // False: this engine cannot run here (why: skip_reason()).
  virtual bool available() const = 0;
  // True when the environment asks for this engine: unavailable is then a
  // failure, not a skip.
  virtual bool required() const { return true; }
  virtual std::string skip_reason() const = 0;
  // A new store on this database (a new server, as far as it can tell).
  virtual absl::StatusOr<std::unique_ptr<Store>> Open(int connections = 4) = 0;
  // The first column of the first row of `sql`, run on the inspection
  // connection; -1 if it fails (the test then fails on the value).
  virtual int64_t Scalar(const std::string& sql) = 0;
  // Tables, indexes and the like: what a second migration would add to.
  virtual int64_t SchemaObjects() = 0;
  virtual int SchemaVersion() = 0;
};

std::unique_ptr<TestDatabase> NewTestDatabase(Engine engine);

// What a PostgreSQL test prints when it skips.
std::string PostgresSkipMessage();

class SqliteDatabase : public TestDatabase {
 public:
  bool available() const override { return !dir_.path().empty(); }
  std::string skip_reason() const override { return "no temporary directory"; }
  absl::StatusOr<std::unique_ptr<Store>> Open(int connections = 4) override;
  int64_t Scalar(const std::string& sql) override;
  int64_t SchemaObjects() override;
  int SchemaVersion() override;
  const std::string& path() const { return path_; }
  TempDir& dir() { return dir_; }

 private:
  TempDir dir_;
  const std::string path_ = dir_.File("coach.db");
};

class PostgresDatabase : public TestDatabase {
 public:
  PostgresDatabase();
  ~PostgresDatabase() override;
  bool available() const override { return inspector_ != nullptr; }
  bool required() const override { return !base_url_.empty(); }
  std::string skip_reason() const override { return skip_reason_; }
  absl::StatusOr<std::unique_ptr<Store>> Open(int connections = 4) override;
  int64_t Scalar(const std::string& sql) override;
  int64_t SchemaObjects() override;
  int SchemaVersion() override;
  // Runs a statement on the inspection connection; false if it failed.
  bool Exec(const std::string& sql);
  // The URL stores open: the server's, in this test's schema.
  const std::string& url() const { return url_; }
  const std::string& schema() const { return schema_; }

 private:
  std::string skip_reason_;
  std::string base_url_;
  std::string schema_;
  std::string url_;
  PGconn* inspector_ = nullptr;
};

}  // namespace coach::testing

// In a test body or SetUp: returns from it, skipping the test when `db`'s
// engine is not asked for here, failing it when asked for but unusable.
#define COACH_USE_DATABASE_OR_SKIP(db)                   \
  do {                                                   \
    if (!(db).available()) {                             \
      if ((db).required()) FAIL() << (db).skip_reason(); \
      GTEST_SKIP() << (db).skip_reason();                \
    }                                                    \
  } while (false)

#endif  // COACH_TESTS_SUPPORT_STORE_ENGINES_H_
