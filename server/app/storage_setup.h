// How coach-server's settings become its store and its credit holds:
// which engine (COACH_DATABASE_URL: PostgreSQL; else SQLite at
// COACH_DB_PATH), the server's instance name, and how long a hold lives.
#ifndef COACH_SERVER_APP_STORAGE_SETUP_H_
#define COACH_SERVER_APP_STORAGE_SETUP_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/app/server_config.h"
#include "storage/store.h"

namespace coach {

// Opens (and migrates) the database the settings name.
absl::StatusOr<std::unique_ptr<Store>> OpenStore(const Config& config);

// The database as the start log names it: "SQLite coach.db" or
// "PostgreSQL postgresql://coach:***@db:5432/coach" (password masked).
std::string DescribeStore(const Config& config);

// The settled longest life of a credit hold: the setting, or when it is 0
// the longest a send can take: OPENAI_TIMEOUT (the whole reply, retries and
// backoff included) + kHoldMargin (the commit, and clock differences
// between servers, which compare each other's expiry times).
inline constexpr absl::Duration kHoldMargin = absl::Seconds(15);
absl::Duration HoldLifetime(const Config& config);

// config.instance, or "<hostname>:<port of grpc_listen>" (a restarted server
// on the same host and port is the same instance). A listen port of 0 gives
// no stable name: then "<hostname>:0/<pid>", whose holds only expire.
std::string InstanceName(const Config& config);

}  // namespace coach

#endif  // COACH_SERVER_APP_STORAGE_SETUP_H_
