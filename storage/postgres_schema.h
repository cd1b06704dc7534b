// The PostgreSQL schema, versioned in the one-row table coach_schema and
// migrated forward at open. A migration is appended, never edited once
// released.
//
// Several servers may start at once on an empty database: the migration
// runs in one transaction that first takes a transaction-scoped advisory
// lock (pg_advisory_xact_lock), so the others wait, then find the schema
// current and change nothing. PostgreSQL's DDL is transactional: a failed
// migration leaves the database as it was.
#ifndef COACH_STORAGE_POSTGRES_SCHEMA_H_
#define COACH_STORAGE_POSTGRES_SCHEMA_H_

#include <cstdint>

#include "absl/status/status.h"

typedef struct pg_conn PGconn;

namespace coach {

// The schema version this build writes.
int LatestPostgresSchemaVersion();

// The advisory lock key the migration takes (to be seen in pg_locks).
constexpr int64_t kPostgresMigrationLockKey = 0x636f6163682d6462;  // "coach-db"

// Applies every migration newer than the database's version, all in one
// transaction under the advisory lock. FAILED_PRECONDITION if the database
// is newer than this build. Throws nothing.
absl::Status MigratePostgresSchema(PGconn* connection);

}  // namespace coach

#endif  // COACH_STORAGE_POSTGRES_SCHEMA_H_
