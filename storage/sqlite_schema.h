// The SQLite schema, versioned with PRAGMA user_version and migrated forward
// at open. A migration is appended, never edited once released.
#ifndef COACH_STORAGE_SQLITE_SCHEMA_H_
#define COACH_STORAGE_SQLITE_SCHEMA_H_

#include "absl/status/status.h"

namespace SQLite {
class Database;
}

namespace coach {

// The schema version this build writes.
int LatestSchemaVersion();

// Applies every migration newer than the database's version, each in its own
// IMMEDIATE transaction. FAILED_PRECONDITION if the file is newer than this
// build. Throws nothing.
absl::Status MigrateSchema(SQLite::Database& db);

}  // namespace coach

#endif  // COACH_STORAGE_SQLITE_SCHEMA_H_
