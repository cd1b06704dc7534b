#include "server/app/storage_setup.h"

#include <unistd.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/url.h"
#include "server/app/coach_setup.h"
#include "storage/postgres_store.h"
#include "storage/sqlite_store.h"

namespace coach {

absl::StatusOr<std::unique_ptr<Store>> OpenStore(const Config& config) {
  if (!config.database_url.empty()) {
    auto store = PostgresStore::Open(
        PostgresOptions{.url = config.database_url,
                        .pool_size = config.postgres_pool_size,
                        .max_attempts = config.postgres_max_attempts});
    if (!store.ok()) return store.status();
    return std::unique_ptr<Store>(*std::move(store));
  }
  auto store = SqliteStore::Open(
      SqliteOptions{.path = config.db_path,
                    .busy_timeout_ms = config.sqlite_busy_timeout_ms,
                    .reader_connections = config.sqlite_reader_connections});
  if (!store.ok()) return store.status();
  return std::unique_ptr<Store>(*std::move(store));
}

std::string DescribeStore(const Config& config) {
  if (!config.database_url.empty()) {
    return absl::StrCat("PostgreSQL ", MaskUrlPassword(config.database_url),
                        " (", config.postgres_pool_size, " connections)");
  }
  return absl::StrCat("SQLite ", config.db_path);
}

absl::Duration HoldLifetime(const Config& config) {
  if (config.credit_reservation_ttl > absl::ZeroDuration()) {
    return config.credit_reservation_ttl;
  }
  return LongestReply(config) + kHoldMargin;
}

std::string InstanceName(const Config& config) {
  if (!config.instance.empty()) return config.instance;
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  const size_t colon = config.grpc_listen.rfind(':');
  const std::string port = colon == std::string::npos
                               ? config.grpc_listen
                               : config.grpc_listen.substr(colon + 1);
  int number = 0;
  if (!absl::SimpleAtoi(port, &number) || number == 0) {
    return absl::StrCat(host, ":0/", getpid());
  }
  return absl::StrCat(host, ":", port);
}

}  // namespace coach
